"""A stand-in for the `evaluate` package, for bench_peer.py only: HF's example scripts call
`evaluate.load(name)`, which fetches the metric's code from the hub and fails offline. This
module answers the metrics those scripts load (accuracy, mse, seqeval, squad) from the project's
local implementations (`linkbert.metrics`), with the same `compute(...)` keywords and result keys.
It is put first on the HF scripts' PYTHONPATH by bench_peer.py; nothing else imports it."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


class Metric:
    def __init__(self, name: str, compute: Callable[..., dict]) -> None:
        self.name, self._compute = name, compute

    def compute(self, *, predictions: Any, references: Any, **kwargs: Any) -> dict:
        return self._compute(predictions, references)


def _accuracy(predictions, references) -> dict:
    return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def _mse(predictions, references) -> dict:
    return {"mse": float(np.mean((np.asarray(predictions, float) - np.asarray(references, float)) ** 2))}


def _seqeval(predictions, references) -> dict:
    from linkbert.metrics.ner import seqeval_report

    return seqeval_report(predictions, references)


def _squad(predictions, references) -> dict:
    from linkbert.metrics.squad import squad_v1

    gold = {r["id"]: r["answers"]["text"] for r in references}
    return squad_v1([p["prediction_text"] for p in predictions], [gold[p["id"]] for p in predictions])


METRICS = {"accuracy": _accuracy, "mse": _mse, "seqeval": _seqeval, "squad": _squad}


def load(name: str, *args: Any, **kwargs: Any) -> Metric:
    if name not in METRICS:
        raise ValueError(f"bench/hf_shim/evaluate: no local metric {name!r} (have: {', '.join(METRICS)})")
    return Metric(name, METRICS[name])
