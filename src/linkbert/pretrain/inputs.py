"""LinkBERT inputs: `[CLS] X_A [SEP] X_B [SEP]` with a document relation and BERT's masking.

Each document's tokens are cut into segments of `segment_length` tokens (the last one shorter).
Every segment that has a successor in its document is an anchor `X_A` once; `X_B` is, with the
relation probabilities (default 1/3 each, as the paper),
- contiguous: the segment that follows `X_A` in its document;
- random: a uniformly chosen segment of a uniformly chosen other document of the pool;
- linked: a uniformly chosen segment of a document that `X_A`'s document links to, the linked
  document drawn with probability proportional to 1 / its in-degree (`inverse_in_degree`, the
  paper's "diversity" choice, so hub pages such as "United States" do not dominate) or uniformly.
An anchor whose document links to no document of the pool cannot be `linked`: its relation is
drawn again between contiguous and random, in proportion to their probabilities (evenly if both are
0), counted as `fell_back` and reported before training.

Masking is BERT's: `round(mlm_probability x tokens)` (at least one) of the non-special tokens are
chosen (whole words if asked), and each chosen token becomes [MASK] 80%, a random token 10%,
itself 10% of the time. Masks are drawn either
- dynamic (training's default, RoBERTa's choice): again every epoch, when a batch is made
  (`DynamicMasking`, from a generator seeded with (seed, split, document, segment, epoch)), so
  the inputs are stored unmasked; or
- static (validation always, training with `--masking static`, as BERT's
  create_pretraining_data): once, when the inputs are built, so every epoch sees the same masks.

Every random choice of an anchor comes from its own generator, seeded with (seed, split,
document, segment) and, for dynamic masks, the epoch: the inputs and masks do not depend on
`num_proc`, batch boundaries, order, the number of processes or where a run was resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELATIONS = ("contiguous", "random", "linked")
CONTIGUOUS, RANDOM, LINKED = range(3)
LINKED_SAMPLING = ("inverse_in_degree", "uniform")
MASKING = ("dynamic", "static")
IGNORE = -100
MASK_STREAM = 0x4D41534B  # in a dynamic mask's seed: its generator never repeats a pair generator's stream


@dataclass
class SegmentStore:
    """Every document's tokens in one flat array (4 bytes a token), cut into segments on the fly."""

    tokens: np.ndarray       # int32, all documents one after the other
    word_start: np.ndarray   # bool, True where a token starts a word (for whole-word masking)
    offsets: np.ndarray      # int64, document d is tokens[offsets[d]:offsets[d + 1]]
    segment_length: int

    @classmethod
    def from_dataset(cls, tokenised, segment_length: int) -> "SegmentStore":
        """From the tokenised documents (columns `input_ids`, `word_start`), read as Arrow arrays
        (no Python list per token)."""
        ids = tokenised.data.column("input_ids").combine_chunks()
        starts = tokenised.data.column("word_start").combine_chunks()
        return cls(ids.flatten().to_numpy().astype(np.int32), starts.flatten().to_numpy(zero_copy_only=False),
                   ids.offsets.to_numpy().astype(np.int64), segment_length)

    def num_segments(self, document: int) -> int:
        length = int(self.offsets[document + 1] - self.offsets[document])
        return -(-length // self.segment_length)

    def segment(self, document: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(self.offsets[document]) + index * self.segment_length
        end = min(start + self.segment_length, int(self.offsets[document + 1]))
        return self.tokens[start:end], self.word_start[start:end]


@dataclass
class PairSettings:
    relation_probabilities: tuple[float, float, float]
    linked_sampling: str
    mlm_probability: float
    whole_word_masking: bool
    seed: int
    cls_id: int
    sep_id: int
    mask_id: int
    vocab_size: int
    dynamic_masking: bool = False  # store the inputs unmasked; `DynamicMasking` masks them per epoch


class PairBuilder:
    """Draws the inputs of one split. `pool` marks the documents X_B may come from (training: the
    training documents, so held-out text is never trained on; validation: all documents)."""

    def __init__(self, store: SegmentStore, links: list[list[int]], in_degree: np.ndarray, pool: np.ndarray,
                 settings: PairSettings, split_code: int) -> None:
        self.store, self.settings, self.split_code = store, settings, split_code
        # Dynamic masking: unmasked ids, and where words start for the collator to mask them.
        self.columns = ("input_ids", "token_type_ids", *(("word_start",) if settings.dynamic_masking else
                                                       ("mlm_labels",)),
                        "relation_label", "document", "anchor_segment", "partner_document", "partner_segment",
                        "fell_back")
        usable = pool & (np.diff(store.offsets) > 0)
        self.pool_documents = np.flatnonzero(usable)
        self.pool_position = np.full(len(usable), -1, dtype=np.int64)
        self.pool_position[self.pool_documents] = np.arange(len(self.pool_documents))
        # Links into the pool and their sampling weights, per document.
        self.linked: list[tuple[np.ndarray, np.ndarray]] = []
        for targets in links:
            kept = np.array([t for t in targets if usable[t]], dtype=np.int64)
            if settings.linked_sampling == "inverse_in_degree":
                weights = 1.0 / in_degree[kept] if len(kept) else np.zeros(0)
            else:
                weights = np.ones(len(kept))
            # Cumulative, so that a draw is one uniform number and a binary search.
            self.linked.append((kept, np.cumsum(weights / weights.sum()) if len(kept) else weights))
        p = np.asarray(settings.relation_probabilities, dtype=float)
        self.relation_cdf = np.cumsum(p)
        fallback = p[:2] if p[:2].sum() > 0 else np.ones(2)  # linked only: fall back evenly
        self.fallback_cdf = np.cumsum(fallback / fallback.sum())

    def inputs_of_documents(self, documents: list[int]) -> dict[str, list]:
        """All inputs anchored in these documents (a `datasets.map(batched=True)` body)."""
        out: dict[str, list] = {k: [] for k in self.columns}
        for document in documents:
            for segment in range(self.store.num_segments(document) - 1):
                row = self.build(document, segment)
                for key, value in row.items():
                    out[key].append(value)
        return out

    def build(self, document: int, segment: int) -> dict:
        s = self.settings
        rng = np.random.default_rng([s.seed, self.split_code, document, segment])
        relation, fell_back = self.draw_relation(document, rng)
        partner_document, partner_segment = self.draw_partner(document, segment, relation, rng)
        a_ids, a_starts = self.store.segment(document, segment)
        b_ids, b_starts = self.store.segment(partner_document, partner_segment)
        input_ids = np.concatenate([[s.cls_id], a_ids, [s.sep_id], b_ids, [s.sep_id]]).astype(np.int64)
        token_type_ids = np.concatenate([np.zeros(len(a_ids) + 2, np.int64), np.ones(len(b_ids) + 1, np.int64)])
        # Where words start among the maskable positions (a segment starts one).
        starts = np.concatenate([a_starts, b_starts]).copy()
        starts[0] = True
        starts[len(a_ids)] = True
        row = {"input_ids": input_ids.tolist(), "token_type_ids": token_type_ids.tolist(), "relation_label": relation,
               "document": document, "anchor_segment": segment, "partner_document": partner_document,
               "partner_segment": partner_segment, "fell_back": fell_back}
        if s.dynamic_masking:
            row["word_start"] = starts.tolist()
        else:
            masked, labels = mask_tokens(input_ids, maskable_positions(len(a_ids), len(b_ids)), starts, s, rng)
            row.update(input_ids=masked.tolist(), mlm_labels=labels.tolist())
        return row

    def draw_relation(self, document: int, rng: np.random.Generator) -> tuple[int, bool]:
        relation = min(int(np.searchsorted(self.relation_cdf, rng.random(), side="right")), 2)
        if relation == LINKED and not len(self.linked[document][0]):
            return min(int(np.searchsorted(self.fallback_cdf, rng.random(), side="right")), 1), True
        return relation, False

    def draw_partner(self, document: int, segment: int, relation: int, rng: np.random.Generator) -> tuple[int, int]:
        if relation == CONTIGUOUS:
            return document, segment + 1
        if relation == LINKED:
            targets, cdf = self.linked[document]
            partner = int(targets[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(targets) - 1)])
        else:  # uniform over the pool, without the anchor's own document
            own = self.pool_position[document]
            size = len(self.pool_documents) - (own >= 0)
            pick = int(rng.integers(size))
            if own >= 0 and pick >= own:
                pick += 1
            partner = int(self.pool_documents[pick])
        return partner, int(rng.integers(self.store.num_segments(partner)))


class DynamicMasking:
    """Masks a training input when it is batched, afresh every epoch (`epoch` is set by the
    collator's `set_epoch`). The generator is seeded with (seed, split, document, segment, epoch):
    the masks of an epoch do not depend on the batch, the order, the rank or a resume."""

    def __init__(self, settings: PairSettings, split_code: int) -> None:
        self.settings, self.split_code, self.epoch = settings, split_code, 0

    def __call__(self, row: dict) -> tuple[np.ndarray, np.ndarray]:
        """(masked ids, labels) of one unmasked input (columns input_ids, token_type_ids,
        word_start, document, anchor_segment)."""
        s = self.settings
        input_ids = np.asarray(row["input_ids"], dtype=np.int64)
        a_length = int(np.count_nonzero(np.asarray(row["token_type_ids"]) == 0)) - 2  # [CLS] X_A [SEP]
        rng = np.random.default_rng([s.seed, self.split_code, row["document"], row["anchor_segment"], MASK_STREAM,
                                     self.epoch])
        return mask_tokens(input_ids, maskable_positions(a_length, len(input_ids) - a_length - 3),
                           np.asarray(row["word_start"], dtype=bool), s, rng)


def maskable_positions(a_length: int, b_length: int) -> np.ndarray:
    """Positions of X_A and X_B in `[CLS] X_A [SEP] X_B [SEP]` (special tokens are never masked)."""
    return np.concatenate([1 + np.arange(a_length), a_length + 2 + np.arange(b_length)])


def mask_tokens(input_ids: np.ndarray, candidates: np.ndarray, word_starts: np.ndarray, s: PairSettings,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking of `candidates` (positions in `input_ids`); returns (masked ids, labels)."""
    wanted = max(1, int(round(len(candidates) * s.mlm_probability)))
    if s.whole_word_masking:
        words = np.split(candidates, np.flatnonzero(word_starts)[1:])
        chosen_words, total = [], 0
        for w in rng.permutation(len(words)):
            if total + len(words[w]) <= wanted:
                chosen_words.append(words[w])
                total += len(words[w])
            if total == wanted:
                break
        chosen = np.sort(np.concatenate(chosen_words)) if chosen_words else candidates[:0]
    else:
        chosen = np.sort(rng.choice(candidates, size=min(wanted, len(candidates)), replace=False))
    labels = np.full(len(input_ids), IGNORE, dtype=np.int64)
    labels[chosen] = input_ids[chosen]
    masked = input_ids.copy()
    action = rng.random(len(chosen))
    masked[chosen[action < 0.8]] = s.mask_id
    replaced = chosen[(action >= 0.8) & (action < 0.9)]
    masked[replaced] = rng.integers(s.vocab_size, size=len(replaced))
    return masked, labels
