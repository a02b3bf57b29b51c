"""QA post-processing: the vectorised choice equals a plain per-window loop written after the
original `utils_qa.postprocess_qa_predictions` (SQuAD v1 branch), on hand-made logits and on
thousands of random ones, float16 ties included."""

from __future__ import annotations

import numpy as np
import pytest

from linkbert.qa.postprocess import Windows, answer_text, nbest_entries, select_answers, top_k_desc


def reference_postprocess(contexts, feature_example, start_rows, end_rows, offset_mappings,
                          n_best_size=20, max_answer_length=30, argsort=np.argsort):
    """The original's loop: per question, per window, the n best starts x n best ends, pooled,
    sorted by score (stable), "empty" fallback. `offset_mappings[i][t]` is None outside the
    context. Features map to questions by index. Returns (answers, n-best lists)."""
    features_per_example = [[] for _ in contexts]
    for i, e in enumerate(feature_example):
        features_per_example[e].append(i)
    answers, nbests = [], []
    for e, context in enumerate(contexts):
        prelim = []
        for i in features_per_example[e]:
            start_logits, end_logits, offset_mapping = start_rows[i], end_rows[i], offset_mappings[i]
            start_indexes = argsort(start_logits)[-1:-n_best_size - 1:-1].tolist()
            end_indexes = argsort(end_logits)[-1:-n_best_size - 1:-1].tolist()
            for s in start_indexes:
                for t in end_indexes:
                    if s >= len(offset_mapping) or t >= len(offset_mapping) \
                            or offset_mapping[s] is None or offset_mapping[t] is None:
                        continue
                    if t < s or t - s + 1 > max_answer_length:
                        continue
                    prelim.append({"offsets": (offset_mapping[s][0], offset_mapping[t][1]),
                                   "score": start_logits[s] + end_logits[t],
                                   "start_logit": start_logits[s], "end_logit": end_logits[t]})
        predictions = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best_size]
        for p in predictions:
            a, b = p.pop("offsets")
            p["text"] = context[a:b]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        answers.append(predictions[0]["text"])
        nbests.append(predictions)
    return answers, nbests


def random_case(rng, num_examples, lengths, logits_kind, junk_columns=0):
    """Questions with 1-4 windows each: context token spans, character offsets (some tokens
    zero-width, some windows without context, some with a single empty-text candidate) and logits.
    Returns the arguments of both implementations."""
    contexts, feature_example, starts, ends, mappings = [], [], [], [], []
    lo_list, hi_list, flat_offsets, token_start, padded_rows = [], [], [], [0], []
    context = "".join(np.array(list("abcdefgh "))[rng.integers(0, 9, size=400)])
    for e in range(num_examples):
        contexts.append(context)
        special = rng.random()
        for _ in range(1 if special < 0.1 else int(rng.integers(1, 5))):
            length = int(rng.choice(lengths))
            if logits_kind == "float16_ties":  # a coarse grid: many equal logits and scores
                logits = (rng.integers(-12, 13, size=(2, length)) / 4).astype(np.float16)
            elif logits_kind == "float16":
                logits = (rng.normal(size=(2, length)) * 3).astype(np.float16)
            else:
                logits = (rng.normal(size=(2, length)) * 3).astype(np.float32)
            lo = int(rng.integers(1, max(2, length // 3)))
            hi = int(rng.integers(lo, length - 1))
            if special < 0.03:      # no context token in the window: no candidate
                lo, hi = 1, 0
            elif special < 0.1:     # one zero-width context token holding the best logits
                hi = lo
                logits[:, lo] = logits.max() + 1
            offsets = [(0, 0)] * length
            char = int(rng.integers(0, 50))
            for t in range(lo, hi + 1):
                width = 0 if (special < 0.1 or rng.random() < 0.05) else int(rng.integers(1, 6))
                offsets[t] = (char, char + width)
                char += width + int(rng.integers(0, 2))
            feature_example.append(e)
            starts.append(logits[0])
            ends.append(logits[1])
            mappings.append([o if lo <= t <= hi else None for t, o in enumerate(offsets)])
            lo_list.append(lo)
            hi_list.append(hi)
            flat_offsets += offsets
            token_start.append(token_start[-1] + length)
            # the engine may hand back rows longer than the window (batch padding): junk there
            junk = rng.normal(size=(2, junk_columns)).astype(logits.dtype) * 10
            padded_rows.append(np.concatenate([logits, junk], axis=1))
    windows = Windows(example_index=np.array(feature_example), context_start=np.array(lo_list),
                      context_end=np.array(hi_list), offsets=np.array(flat_offsets).reshape(-1, 2),
                      token_start=np.array(token_start))
    return (contexts, feature_example, starts, ends, mappings), (padded_rows, windows)


@pytest.mark.parametrize("logits_kind, lengths, junk", [
    ("float16_ties", (64,), 0),        # fp16 evaluation, windows padded to max length
    ("float16", (48, 64), 8),          # fp16, several lengths (dynamic padding), batch padding cut off
    ("float32", (12, 40), 0),          # fp32; windows shorter than n_best_size
])
def test_vectorised_choice_equals_reference_loop(logits_kind, lengths, junk):
    rng = np.random.default_rng(1234)
    num_examples = 1000
    reference_args, (rows, windows) = random_case(rng, num_examples, lengths, logits_kind, junk)
    expected, expected_nbest = reference_postprocess(*reference_args)
    dtype = np.float16 if logits_kind.startswith("float16") else np.float32
    choices = select_answers(rows, windows, num_examples, 20, 30, dtype=dtype, keep_nbest=True)
    contexts = reference_args[0]
    got = [answer_text(c, s, e, n) for c, s, e, n in
           zip(contexts, choices.char_start, choices.char_end, choices.num_candidates)]
    assert got == expected
    # the cases the test is meant to reach did occur
    assert expected.count("empty") >= 20
    assert sum(len(n) == 20 for n in expected_nbest) >= num_examples // 2
    for context, cands, n, ref in zip(contexts, choices.nbest, choices.num_candidates, expected_nbest):
        entries = nbest_entries(context, cands, n)
        assert [(x["text"], x["start_logit"], x["end_logit"]) for x in entries] == \
               [(r["text"], float(r["start_logit"]), float(r["end_logit"])) for r in ref]
        assert sum(x["probability"] for x in entries) == pytest.approx(1.0)


def test_tie_order_decides_answers():
    """The equality above is not an accident of tie-free data: on the tie-heavy logits, ordering
    equal logits by position (a stable sort) instead of numpy's argsort changes many answers."""
    rng = np.random.default_rng(7)
    reference_args, _ = random_case(rng, 500, (64,), "float16_ties")
    expected, _ = reference_postprocess(*reference_args)
    stable, _ = reference_postprocess(*reference_args, argsort=lambda x: np.argsort(x, kind="stable"))
    assert sum(a != b for a, b in zip(stable, expected)) >= 20


def test_float16_scores_round_as_the_original():
    """Under --fp16 the original summed float16 logits in float16: (fox, fox) = 1000 + 0 and
    (red, red) = 999.5 + 0.7 both round to 1000, and the first in pool order (start rank 0) wins.
    In float32 (red, red) = 1000.2 wins."""
    start = np.array([-5, -5, -5, 999.5, 1000, -5, -5, -5], dtype=np.float16)
    end = np.array([-5, -5, -5, 0.7, 0, -5, -5, -5], dtype=np.float16)
    windows = Windows(example_index=np.array([0]), context_start=np.array([3]), context_end=np.array([6]),
                      offsets=np.array(OFFSETS), token_start=np.array([0, 8]))
    answers = {}
    for dtype in (np.float16, np.float32):
        c = select_answers([np.stack([start, end]).astype(np.float32)], windows, 1, dtype=dtype)
        answers[dtype] = answer_text(CONTEXT, int(c.char_start[0]), int(c.char_end[0]), int(c.num_candidates[0]))
    assert answers == {np.float16: "fox", np.float32: "red"}
    assert reference_postprocess([CONTEXT], [0], [start], [end], [[o if 3 <= t <= 6 else None
                                                                  for t, o in enumerate(OFFSETS)]])[0] == ["fox"]


def test_top_k_desc_matches_argsort_with_ties():
    rng = np.random.default_rng(3)
    for dtype in (np.float16, np.float32):
        x = (rng.integers(-5, 6, size=(500, 64)) / 2).astype(dtype)
        x[::7, :] = 1.0            # whole rows of ties
        x[1, 5] = np.nan
        for k in (1, 20, 64, 80):
            got = top_k_desc(x, k)
            want = np.stack([np.argsort(row)[-1:-k - 1:-1] for row in x])
            assert np.array_equal(got, want)


def _one_question(start, end, lo, hi, offsets, context, max_answer_length=30, n_best_size=20):
    """Hand-made windows of one question: lists of start/end logit lists."""
    rows = [np.array([s, e], dtype=np.float32) for s, e in zip(start, end)]
    windows = Windows(example_index=np.zeros(len(rows), int), context_start=np.array(lo), context_end=np.array(hi),
                      offsets=np.array([o for window in offsets for o in window]).reshape(-1, 2),
                      token_start=np.concatenate([[0], np.cumsum([len(s) for s in start])]))
    c = select_answers(rows, windows, 1, n_best_size, max_answer_length, keep_nbest=True)
    return answer_text(context, int(c.char_start[0]), int(c.char_end[0]), int(c.num_candidates[0])), c


CONTEXT = "red fox ran far"
#           [CLS] q   [SEP] red    fox    ran     far      [SEP]
OFFSETS = [(0, 0), (0, 1), (0, 0), (0, 3), (4, 7), (8, 11), (12, 15), (0, 0)]


def test_hand_made_logits():
    # best pair (fox, ran) = 5 + 4; the [CLS]/question logits are higher but outside the context
    start = [9, 9, 0, 1, 5, 2, 0, 0]
    end = [9, 9, 0, 0, 1, 4, 2, 0]
    text, c = _one_question([start], [end], [3], [6], [OFFSETS], CONTEXT)
    assert text == "fox ran" and c.num_candidates[0] > 0
    # end before start is not a candidate: best start "far" (7) and best end "red" (8) do not
    # pair; the best valid pair is (red, red) = 1 + 8
    text, _ = _one_question([[0, 0, 0, 1, 0, 0, 7, 0]], [[0, 0, 0, 8, 0, 0, 0, 0]], [3], [6], [OFFSETS], CONTEXT)
    assert text == "red"
    # --max_answer_length 2 rules out (red .. far) and keeps the best pair of at most 2 tokens
    start, end = [0, 0, 0, 6, 0, 2, 1, 0], [0, 0, 0, 0, 0, 1, 6, 0]   # (red, far) 12; (ran, far) 8
    assert _one_question([start], [end], [3], [6], [OFFSETS], CONTEXT)[0] == "red fox ran far"
    assert _one_question([start], [end], [3], [6], [OFFSETS], CONTEXT, max_answer_length=2)[0] == "ran far"


def test_windows_pooled_and_ties_go_to_the_first_window():
    # two windows of the same question; the second holds the highest score
    w1 = ([0, 0, 0, 3, 0, 0, 0, 0], [0, 0, 0, 3, 0, 0, 0, 0])      # (red, red) = 6
    w2 = ([0, 0, 0, 0, 0, 0, 4, 0], [0, 0, 0, 0, 0, 0, 4, 0])      # (far, far) = 8
    text, c = _one_question([w1[0], w2[0]], [w1[1], w2[1]], [3, 3], [6, 6], [OFFSETS, OFFSETS], CONTEXT)
    assert text == "far"
    # equal best scores in both windows: the first window's wins (stable sort over the pool)
    w2 = ([0, 0, 0, 0, 0, 0, 3, 0], [0, 0, 0, 0, 0, 0, 3, 0])      # (far, far) = 6
    text, c = _one_question([w1[0], w2[0]], [w1[1], w2[1]], [3, 3], [6, 6], [OFFSETS, OFFSETS], CONTEXT)
    assert text == "red"
    assert [x["text"] for x in nbest_entries(CONTEXT, c.nbest[0], int(c.num_candidates[0]))][:2] == ["red", "far"]


def test_empty_fallbacks():
    # no context token at all: "empty"
    text, c = _one_question([[5] * 8], [[5] * 8], [1], [0], [OFFSETS], CONTEXT)
    assert text == "empty" and c.num_candidates[0] == 0
    entries = nbest_entries(CONTEXT, c.nbest[0], 0)
    assert entries == [{"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "probability": 1.0}]
    # one candidate whose text is empty (a zero-width token): "empty", as the original
    offsets = OFFSETS[:3] + [(4, 4)] + OFFSETS[4:]
    text, c = _one_question([[0, 0, 0, 9, 0, 0, 0, 0]], [[0, 0, 0, 9, 0, 0, 0, 0]], [3], [3], [offsets], CONTEXT)
    assert text == "empty" and c.num_candidates[0] == 1
    # an empty best text among several candidates is kept as "" (the original only replaced a lone one)
    text, c = _one_question([[0, 0, 0, 9, 0, 0, 0, 0]], [[0, 0, 0, 9, 0, 0, 0, 0]], [3], [4], [offsets], CONTEXT)
    assert text == "" and c.num_candidates[0] > 1
