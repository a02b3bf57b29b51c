"""Run one script of the original LinkBERT release in its own environment (Python 3.8,
torch 1.10.1, transformers 4.9.1, datasets 1.11.0), with one change: `datasets.load_metric`,
which downloads metric code from GitHub, is replaced by local code that computes the same
numbers. Nothing else of the script or of its libraries is touched.

    ORACLE_PYTHON oracle_run.py ORIGINAL_REPO/src/seqcls/run_seqcls.py --flag ...

Runs under Python 3.8: no syntax newer than that here.
"""
import collections
import os
import re
import runpy
import string
import sys

import datasets


class Accuracy:
    """datasets 1.11 metrics/accuracy: sklearn's accuracy_score."""

    def compute(self, predictions, references, normalize=True, sample_weight=None):
        from sklearn.metrics import accuracy_score

        return {"accuracy": float(accuracy_score(references, predictions, normalize=normalize,
                                                 sample_weight=sample_weight))}


class Seqeval:
    """datasets 1.11 metrics/seqeval: seqeval's classification_report (default, lenient mode)."""

    def compute(self, predictions, references, suffix=False, scheme=None, mode=None, sample_weight=None,
                zero_division="warn"):
        from seqeval.metrics import accuracy_score, classification_report

        report = classification_report(y_true=references, y_pred=predictions, suffix=suffix, output_dict=True,
                                       scheme=scheme, mode=mode, sample_weight=sample_weight,
                                       zero_division=zero_division)
        report.pop("macro avg")
        report.pop("weighted avg")
        overall = report.pop("micro avg")
        scores = {name: {"precision": s["precision"], "recall": s["recall"], "f1": s["f1-score"],
                         "number": s["support"]} for name, s in report.items()}
        scores["overall_precision"] = overall["precision"]
        scores["overall_recall"] = overall["recall"]
        scores["overall_f1"] = overall["f1-score"]
        scores["overall_accuracy"] = accuracy_score(y_true=references, y_pred=predictions)
        return scores


def _normalize_answer(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _f1(prediction, truth):
    pred_tokens, truth_tokens = _normalize_answer(prediction).split(), _normalize_answer(truth).split()
    common = collections.Counter(pred_tokens) & collections.Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


class Squad:
    """datasets 1.11 metrics/squad: the SQuAD v1.1 evaluation script (max over gold answers, percent)."""

    def compute(self, predictions, references):
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        em = f1 = 0.0
        for ref in references:
            pred, golds = by_id[ref["id"]], ref["answers"]["text"]
            em += max(float(_normalize_answer(pred) == _normalize_answer(g)) for g in golds)
            f1 += max(_f1(pred, g) for g in golds)
        return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1 / len(references)}


LOCAL_METRICS = {"accuracy": Accuracy, "seqeval": Seqeval, "squad": Squad}


def load_metric(path, *args, **kwargs):
    if path not in LOCAL_METRICS:
        raise SystemExit(f"oracle_run.py: no local equivalent of load_metric({path!r})")
    return LOCAL_METRICS[path]()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    script = os.path.abspath(sys.argv[1])
    datasets.load_metric = load_metric  # the scripts import it from `datasets` after this
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(script))  # as `python script.py` would (trainer_qa, utils_qa...)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
