"""From the start/end logits of every window to one answer per question, vectorised with numpy.

The choice is the original's (`utils_qa.postprocess_qa_predictions`, SQuAD v1 branch):

- per window, the `n_best_size` highest start logits and end logits, in the order of
  `np.argsort(logits)[-1:-n_best_size-1:-1]`;
- every (start, end) pair of those with both tokens inside the context, end >= start and at most
  `max_answer_length` tokens is a candidate, scored start logit + end logit (in the logits' own
  dtype: float16 sums under --fp16, as the original's float16 arrays);
- candidates of all windows of a question are pooled in order (window, start rank, end rank) and
  the best is the first of the highest score (a stable sort: equal scores keep pool order);
- the answer is the context cut at the candidate's character offsets; with no candidate at all,
  or a single one whose text is empty, the answer is the literal string "empty".

Instead of a Python loop over 20 x 20 pairs per window, whole blocks of windows are scored at
once, and a question's best is the best of its windows' bests (the first window holding the
highest score wins, as in the pooled stable sort). `tests/test_qa_postprocess.py` checks this
against a plain per-window loop on thousands of random and tie-heavy float16 logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

EMPTY_ANSWER = "empty"  # the original's answer when no span qualifies
BLOCK = 1024  # windows scored together: (BLOCK, 20, 20) arrays, a few MB


@dataclass
class Windows:
    """What post-processing needs to know about each window (feature), in feature order."""

    example_index: np.ndarray  # (F,) position of the window's question in its split
    context_start: np.ndarray  # (F,) first context token of the window
    context_end: np.ndarray  # (F,) last context token (inclusive); < context_start if none
    offsets: np.ndarray  # (total tokens, 2) character span of each token, windows concatenated
    token_start: np.ndarray  # (F + 1,) where each window's tokens begin in `offsets`

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.token_start)


@dataclass
class Choices:
    """Per question: character span of the best candidate, how many candidates there were,
    and (when asked) the n best candidates."""

    char_start: np.ndarray
    char_end: np.ndarray
    num_candidates: np.ndarray
    nbest: Optional[list[list[dict]]] = None


def top_k_desc(x: np.ndarray, k: int) -> np.ndarray:
    """Per row, positions of the k largest values, largest first, ordered exactly as the
    original's `np.argsort(row)[-1:-k-1:-1]`, ties included (float16 logits have many).

    Rows are sorted as float32, which numpy sorts ~4x faster than float16. Where the k+1 largest
    values of a row are all distinct, the order does not depend on the sort algorithm; the other
    rows (a tie that decides order or membership) are sorted again in their own dtype, the call
    the original made."""
    order = np.argsort(x.astype(np.float32, copy=False), axis=1)[:, -1:-k - 2:-1]
    if x.dtype != np.float32:
        top = np.take_along_axis(x, order, axis=1)
        redo = (top[:, 1:] == top[:, :-1]).any(axis=1) | np.isnan(top).any(axis=1)
        if redo.any():
            order[redo] = np.argsort(x[redo], axis=1)[:, -1:-k - 2:-1]
    return order[:, :k]


def _score_block(start: np.ndarray, end: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 n_best_size: int, max_answer_length: int):
    """Candidates of a block of windows of one length: positions (G, K), validity and scores
    (G, K, K) for every (start rank, end rank) pair."""
    top_s, top_e = top_k_desc(start, n_best_size), top_k_desc(end, n_best_size)
    s, e = top_s[:, :, None], top_e[:, None, :]
    lo, hi = lo[:, None, None], hi[:, None, None]
    valid = (s >= lo) & (s <= hi) & (e >= lo) & (e <= hi) & (e >= s) & (e - s < max_answer_length)
    start_logit = np.take_along_axis(start, top_s, axis=1)
    end_logit = np.take_along_axis(end, top_e, axis=1)
    score = start_logit[:, :, None] + end_logit[:, None, :]  # stays in the logits' dtype
    return top_s, top_e, valid, score, start_logit, end_logit


def select_answers(logits: Sequence[np.ndarray], windows: Windows, num_examples: int,
                   n_best_size: int = 20, max_answer_length: int = 30,
                   dtype: type = np.float32, keep_nbest: bool = False) -> Choices:
    """`logits[i]` is window i's (2, length) start/end logits (longer rows are cut to the
    window's length: batch padding never holds candidates). `dtype` is the precision the scores
    are computed in: float16 reproduces an fp16 evaluation of the original."""
    num_windows = len(windows.example_index)
    if len(logits) != num_windows:
        raise ValueError(f"{len(logits)} logit rows for {num_windows} windows")
    lengths = windows.lengths
    neg_inf: np.ndarray = np.array(-np.inf, dtype=dtype)
    best_score: np.ndarray = np.full(num_windows, neg_inf, dtype=dtype)
    best_start = np.zeros(num_windows, np.int64)
    best_end = np.zeros(num_windows, np.int64)
    num_valid = np.zeros(num_windows, np.int64)
    window_nbest: list = [None] * num_windows

    for length in np.unique(lengths):
        same = np.flatnonzero(lengths == length)
        for block in np.array_split(same, -(-len(same) // BLOCK)):
            rows: np.ndarray = np.stack([logits[i][:, :length] for i in block]).astype(dtype, copy=False)
            top_s, top_e, valid, score, start_logit, end_logit = _score_block(
                rows[:, 0], rows[:, 1], windows.context_start[block], windows.context_end[block],
                n_best_size, max_answer_length)
            k_end = top_e.shape[1]
            flat = np.where(valid, score, neg_inf).reshape(len(block), -1)
            pos = flat.argmax(axis=1)  # first of the highest: pool order within the window
            best_score[block] = flat[np.arange(len(block)), pos]
            best_start[block] = top_s[np.arange(len(block)), pos // k_end]
            best_end[block] = top_e[np.arange(len(block)), pos % k_end]
            num_valid[block] = valid.reshape(len(block), -1).sum(axis=1)
            if keep_nbest:
                # Each window's candidates best first (stable), at most n_best_size of them: the
                # question's n best are the best of these, merged in window order.
                key = np.where(valid, -score, np.inf).reshape(len(block), -1)
                ranked = np.argsort(key, axis=1, kind="stable")[:, :n_best_size]
                for r, i in enumerate(block):
                    keep = ranked[r, :min(num_valid[i], n_best_size)]
                    si, ei = keep // k_end, keep % k_end
                    window_nbest[i] = (score[r].reshape(-1)[keep], start_logit[r, si], end_logit[r, ei],
                                       top_s[r, si], top_e[r, ei])

    # The question's best window: highest best score, first window among equals.
    examples = windows.example_index
    order = np.lexsort((np.arange(num_windows), -best_score.astype(np.float32), examples))
    first = order[np.r_[True, examples[order][1:] != examples[order][:-1]]]
    # The last questions may have no window left when --max_*_samples cut the windows (as the
    # original): they get no candidate, hence the answer "empty".
    if len(first) > num_examples or not np.array_equal(examples[first], np.arange(len(first))):
        raise ValueError("every question needs at least one window, in question order")
    rows_at = windows.token_start[first]
    char_start = np.zeros(num_examples, np.int64)
    char_end = np.zeros(num_examples, np.int64)
    char_start[:len(first)] = windows.offsets[rows_at + best_start[first], 0]
    char_end[:len(first)] = windows.offsets[rows_at + best_end[first], 1]
    choices = Choices(char_start=char_start, char_end=char_end,
                      num_candidates=np.bincount(examples, weights=num_valid, minlength=num_examples).astype(int))
    if keep_nbest:
        choices.nbest = _merge_nbest(window_nbest, windows, num_examples, n_best_size)
    return choices


def _merge_nbest(window_nbest: list, windows: Windows, num_examples: int, n_best_size: int) -> list[list[dict]]:
    per_example: list[list] = [[] for _ in range(num_examples)]
    for i, cands in enumerate(window_nbest):
        per_example[windows.example_index[i]].append((i, cands))
    merged = []
    for parts in per_example:
        score = np.concatenate([c[0] for _, c in parts])
        top = np.argsort(-score, kind="stable")[:n_best_size]
        window = np.concatenate([np.full(len(c[0]), i) for i, c in parts])[top]
        start_logit, end_logit, s, e = (np.concatenate([c[j] for _, c in parts])[top] for j in range(1, 5))
        base = windows.token_start[window]
        merged.append([{"char_start": int(windows.offsets[b + si, 0]), "char_end": int(windows.offsets[b + ei, 1]),
                        "score": float(sc), "start_logit": float(sl), "end_logit": float(el)}
                       for b, si, ei, sc, sl, el in zip(base, s, e, score[top], start_logit, end_logit)])
    return merged


def answer_text(context: str, char_start: int, char_end: int, num_candidates: int) -> str:
    """The context cut at the best candidate, or "empty" as the original: no candidate, or one
    candidate whose text is empty."""
    text = context[char_start:char_end] if num_candidates else ""
    return EMPTY_ANSWER if num_candidates == 0 or (num_candidates == 1 and text == "") else text


def nbest_entries(context: str, candidates: list[dict], num_candidates: int) -> list[dict]:
    """The original's n-best list: text, probability (softmax over the listed scores),
    start_logit, end_logit; "empty" (score 0) first where the answer is "empty"."""
    entries = [{"text": context[c["char_start"]:c["char_end"]], "score": c["score"],
                "start_logit": c["start_logit"], "end_logit": c["end_logit"]} for c in candidates]
    if num_candidates == 0 or (num_candidates == 1 and entries[0]["text"] == ""):
        entries.insert(0, {"text": EMPTY_ANSWER, "score": 0.0, "start_logit": 0.0, "end_logit": 0.0})
    scores = np.array([e.pop("score") for e in entries], dtype=np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    return [{**e, "probability": float(p)} for e, p in zip(entries, probs)]
