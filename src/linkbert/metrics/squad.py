"""SQuAD v1.1 exact match and F1, the MRQA scores (percent, as the original reported them).

Written here rather than loaded with `evaluate.load("squad")`, which fetches the metric's code
from the hub at run time. The definition is the official v1.1 evaluation script's: normalise
both strings (lower-case, drop punctuation, drop the articles a/an/the, fold white space),
exact match = equal normalised strings, F1 = bag-of-tokens F1; each question takes its best
score over its gold answers; the result is the mean over questions, times 100.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, remove ASCII punctuation, remove whole-word a/an/the, fold white space
    (in that order, as the official script)."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1. As in v1.1 (unlike v2), two empty token lists score 0, not 1."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """`exact_match` and `f1` in percent: per question the best over its gold answers, then
    the mean over questions. Every question needs at least one gold answer."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not golds:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(max(exact_match_score(p, g) for g in gs) for p, gs in zip(predictions, golds))
    f1 = sum(max(f1_score(p, g) for g in gs) for p, gs in zip(predictions, golds))
    return {"exact_match": 100.0 * em / len(golds), "f1": 100.0 * f1 / len(golds)}
