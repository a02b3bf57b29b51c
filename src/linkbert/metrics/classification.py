"""Sequence-classification scores, as the original run_seqcls.py / utils_hoc.py compute them."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

NEGATIVE_CLASS = "0"  # preprocessing maps every "...false" relation label to "0"


def accuracy(predictions: Sequence, labels: Sequence) -> dict[str, float]:
    correct = sum(p == g for p, g in zip(predictions, labels, strict=True))
    return {"accuracy": correct / len(labels) if labels else 0.0}


def _prf(true_positives: int, predicted: int, gold: int) -> dict[str, float]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "F1": f1}


def micro_prf1(predictions: Sequence[Hashable], labels: Sequence[Hashable],
               negative: Hashable = NEGATIVE_CLASS) -> dict[str, float]:
    """Micro P/R/F1 over the non-negative classes (ChemProt, DDI, GAD: `--metric_name PRF1`).
    A hit is a prediction equal to the gold label that is not the negative class; precision's
    denominator is the non-negative predictions, recall's the non-negative gold labels."""
    pairs = list(zip(predictions, labels, strict=True))
    hits = sum(p == g and p != negative for p, g in pairs)
    return _prf(hits, sum(p != negative for p, _ in pairs), sum(g != negative for _, g in pairs))


def pearsonr(predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """Pearson correlation of regression outputs with gold scores (BIOSSES)."""
    from scipy.stats import pearsonr as scipy_pearsonr

    return {"pearsonr": float(scipy_pearsonr(np.asarray(labels, float), np.asarray(predictions, float))[0])}


def hoc_prf1(predictions: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], ids: Sequence[str]) -> dict[str, float]:
    """HoC: rows (sentences or documents) are grouped by document (id up to the first "_"),
    their 0/1 label vectors OR-ed, and micro P/R/F1 taken over documents x labels."""
    docs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for pred, gold, id_ in zip(predictions, labels, ids, strict=True):
        key = str(id_).split("_")[0]
        p, g = np.asarray(pred, int) != 0, np.asarray(gold, int) != 0
        if key in docs:
            docs[key] = (docs[key][0] | p, docs[key][1] | g)
        else:
            docs[key] = (p, g)
    pred_m = np.array([p for p, _ in docs.values()])
    gold_m = np.array([g for _, g in docs.values()])
    hits = int((pred_m & gold_m).sum())
    return _prf(hits, int(pred_m.sum()), int(gold_m.sum()))
