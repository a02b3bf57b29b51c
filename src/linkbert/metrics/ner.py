"""NER / PICO scores, as the original run_ner.py got them from the `seqeval` metric.

seqeval runs in its default lenient (conlleval-style) mode: an `I-X` after `O` or after another
type starts an entity, and bare `B` / `I` tags form entities of type `_`. Types are those found
in the gold tags or the predictions; a type with no correct entity scores 0 (0/0 counts 0).

    ner_scores([["B-Disease", "I-Disease", "O"]], [["B-Disease", "O", "O"]])
    # {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'accuracy': 0.666...}
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from seqeval.metrics import accuracy_score, classification_report


def seqeval_report(predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> dict:
    """The `seqeval` metric's result, shaped as the original got it from `load_metric("seqeval")`:
    one `{precision, recall, f1, number}` dict per entity type plus `overall_*` scores."""
    if len(predictions) != len(labels) or any(len(p) != len(g) for p, g in zip(predictions, labels)):
        raise ValueError("predictions and labels must have the same shape")
    with warnings.catch_warnings():  # seqeval's own macro average warns when there is no type at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(labels, predictions, output_dict=True, zero_division=0)
    overall = report.pop("micro avg")
    report.pop("macro avg", None)
    report.pop("weighted avg", None)
    scores: dict = {name: {"precision": float(s["precision"]), "recall": float(s["recall"]),
                           "f1": float(s["f1-score"]), "number": int(s["support"])}
                    for name, s in report.items()}
    scores.update({"overall_precision": float(overall["precision"]), "overall_recall": float(overall["recall"]),
                   "overall_f1": float(overall["f1-score"]),
                   "overall_accuracy": float(accuracy_score(labels, predictions))})
    return scores


def ner_scores(predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]],
               entity_level: bool = False, macro: bool = False) -> dict[str, float]:
    """The original's metric keys:
    - default: `precision`, `recall`, `f1`, `accuracy` (seqeval's overall micro scores);
    - `entity_level` (--return_entity_level_metrics): `overall_*` plus `<TYPE>_{precision,recall,f1,number}`;
    - `macro` (--return_macro_metrics): `macro_precision`, `macro_recall`, `macro_f1`, the mean of
      the per-type scores (EBM PICO, whose tags are all `B-`, gets word-level macro F1).
    The original returned only the entity-level keys when both flags were given; here both sets."""
    report = seqeval_report(predictions, labels)
    types = {name: s for name, s in report.items() if isinstance(s, dict)}
    out: dict[str, float] = {}
    if entity_level:
        for name, s in types.items():
            out.update({f"{name}_{k}": v for k, v in s.items()})
        out.update({k: v for k, v in report.items() if k.startswith("overall_")})
    if macro:
        for key in ("precision", "recall", "f1"):
            # No entity type at all (no entity in gold or predictions): 0, not NaN.
            out[f"macro_{key}"] = float(np.mean([s[key] for s in types.values()])) if types else 0.0
    if not entity_level and not macro:
        out = {key: report[f"overall_{key}"] for key in ("precision", "recall", "f1", "accuracy")}
    return out
