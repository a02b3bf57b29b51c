"""GLUE scores, named as `evaluate`'s GLUE metric and HF `run_glue.py` name them.

    cola                 matthews_correlation
    sst2, qnli, rte      accuracy
    mnli                 accuracy (matched dev; the mismatched dev gets the suffix `_mm`)
    mrpc, qqp            f1, accuracy (f1 of the positive class "1": equivalent / duplicate)
    stsb                 pearson, spearmanr

`combined_score` (the mean of a task's scores) is added where a task has two, as `run_glue.py`
does. Scores are fractions. Labels are the GLUE tsv strings ("0"/"1", "entailment", ...); STS-B
labels are floats in [0, 5].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# The eight tasks the paper averages (WNLI left out, as the paper and BERT do), in GLUE order.
TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
# Label sets as the GLUE tsv files write them (STS-B: a similarity score from 0 to 5).
LABELS: dict[str, tuple[str, ...]] = {
    "cola": ("0", "1"), "sst2": ("0", "1"), "mrpc": ("0", "1"), "qqp": ("0", "1"),
    "mnli": ("contradiction", "entailment", "neutral"),
    "qnli": ("entailment", "not_entailment"), "rte": ("entailment", "not_entailment"),
}
STSB_RANGE = (0.0, 5.0)
METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"), "stsb": ("pearson", "spearmanr"), "mnli": ("accuracy",),
    "qnli": ("accuracy",), "rte": ("accuracy",),
}
POSITIVE_LABEL = "1"  # MRPC "equivalent", QQP "duplicate"


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    pairs = list(zip(predictions, labels, strict=True))
    return sum(p == g for p, g in pairs) / len(pairs) if pairs else 0.0


def binary_f1(predictions: Sequence, labels: Sequence, positive=POSITIVE_LABEL) -> float:
    """F1 of the positive class (sklearn's `f1_score` with its default `average="binary"`)."""
    pairs = list(zip(predictions, labels, strict=True))
    hits = sum(p == positive and g == positive for p, g in pairs)
    predicted = sum(p == positive for p, _ in pairs)
    gold = sum(g == positive for _, g in pairs)
    return 2 * hits / (predicted + gold) if predicted + gold else 0.0


def matthews_correlation(predictions: Sequence, labels: Sequence) -> float:
    """Matthews correlation for any number of classes (Gorodkin's form, as sklearn computes it);
    0 when either side holds one class only."""
    classes = sorted(set(labels) | set(predictions), key=str)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for p, g in zip(predictions, labels, strict=True):
        confusion[index[g], index[p]] += 1
    gold_totals, predicted_totals = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    numerator = correct * n - gold_totals @ predicted_totals
    denominator = np.sqrt((n * n - predicted_totals @ predicted_totals) * (n * n - gold_totals @ gold_totals))
    return float(numerator / denominator) if denominator else 0.0


def pearson(predictions: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float:
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator else 0.0


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties getting the mean of the ranks they span (as scipy's `rankdata`)."""
    array = np.asarray(values, dtype=np.float64)
    order = np.argsort(array, kind="stable")
    ranks = np.empty(len(array), dtype=np.float64)
    sorted_values = array[order]
    start = 0
    while start < len(array):
        end = start
        while end + 1 < len(array) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearmanr(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's over the (tie-averaged) ranks."""
    return pearson(_ranks(predictions), _ranks(labels))


def glue_metrics(task: str, predictions: Sequence, labels: Sequence) -> dict[str, float]:
    """The task's GLUE scores, plus `combined_score` where it has two."""
    if task not in METRICS:
        raise ValueError(f"unknown GLUE task {task!r}; one of {', '.join(TASKS)}")
    functions = {"matthews_correlation": matthews_correlation, "accuracy": accuracy, "f1": binary_f1,
                 "pearson": pearson, "spearmanr": spearmanr}
    if task == "stsb":
        predictions, labels = [float(p) for p in predictions], [float(g) for g in labels]
    else:
        predictions, labels = [str(p) for p in predictions], [str(g) for g in labels]
    scores = {name: functions[name](predictions, labels) for name in METRICS[task]}
    if len(scores) > 1:
        scores["combined_score"] = float(np.mean(list(scores.values())))
    return scores


def task_score(task: str, scores: dict[str, float], mismatched: dict[str, float] | None = None) -> float:
    """One number per task for the GLUE average: the mean of its scores (`combined_score` where
    it has two, as the GLUE leaderboard averages a task's metrics); MNLI the mean of matched and
    mismatched accuracy when the mismatched one is given."""
    if task == "mnli" and mismatched is not None:
        return (scores["accuracy"] + mismatched["accuracy"]) / 2
    return float(np.mean([scores[name] for name in METRICS[task]]))


# File names the GLUE server expects in a submission (MNLI: MNLI-m.tsv and MNLI-mm.tsv).
SUBMISSION_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
                    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}


def submission_tsv(task: str, records: Sequence[dict]) -> str:
    """`index<TAB>prediction` lines under a header, `index` being each test record's `id` (the
    index column of the GLUE test file); STS-B scores with three decimals, as `run_glue.py`."""
    lines = ["index\tprediction"]
    for record in records:
        prediction = record["prediction"]
        lines.append(f"{record['id']}\t{prediction:.3f}" if task == "stsb" else f"{record['id']}\t{prediction}")
    return "\n".join(lines) + "\n"
