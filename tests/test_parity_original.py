"""Parity with the original release, measured: our task modules, given the model, data and flags
the original scripts were run with (tests/fixtures/parity, recorded by
scripts/parity/make_parity_fixtures.py on torch 1.10.1 / transformers 4.9.1), end with the same
weights and the same test predictions.

`--optim adamw_hf --attn_implementation eager` select the original's AdamW and attention; the
epoch order is the original's by default. Dropout is 0 in the fixture model, so nothing random
enters training: what is compared is data order, schedule, accumulation, clipping, the optimiser
and the arithmetic of the forward and backward pass.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from conftest import REPO, run_task
from safetensors.torch import load_file

from linkbert.tasks import TASKS as REGISTRY

FIXTURES = REPO / "tests" / "fixtures" / "parity"
TOLERANCE = 1e-5  # max |dw| over every parameter but those below

# Parameters the loss is exactly invariant to: a softmax over the choices (MC) or over the
# positions (QA start, QA end) does not change when the same number is added to every logit, and
# these parameters do just that (the MC classifier bias; the QA output bias, and the last layer's
# output LayerNorm bias, which adds one vector to every position before the QA head). Their exact
# gradient is zero; what they receive is rounding noise, which Adam, normalising each gradient,
# turns into steps of the order of the learning rate. Their value changes no output, and two runs
# of our own code that differ only in SDPA vs eager attention end up to 2e-5 apart in them (6e-8
# in every other QA parameter). They are not compared; every other parameter is.
SHIFT_INVARIANT = {"mc": {"classifier.bias"},
                   "qa": {"qa_outputs.bias", "bert.encoder.layer.1.output.LayerNorm.bias"}}

_spec = importlib.util.spec_from_file_location("make_parity_fixtures",
                                               REPO / "scripts" / "parity" / "make_parity_fixtures.py")
fixtures_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures_script)


def run_ours(task: str, tmp_path, extra: list[str]):
    """Train our module as the original was trained; return (oracle record, our final weights,
    our prediction records, our metrics)."""
    oracle = json.loads((FIXTURES / task / "oracle.json").read_text())
    config, vocab, weights = fixtures_script.fixture_model(task, FIXTURES)
    model_dir, output = tmp_path / "model", tmp_path / "output"
    fixtures_script.write_model_folder(model_dir, config, vocab, weights, torch_bin=False)
    argv = fixtures_script.fill(oracle["flags"], FIXTURES / task, model_dir, output) + extra
    metrics = run_task(REGISTRY[fixtures_script.TASKS[task]["samples"]].task_class, argv)
    final = load_file(str(output / "model.safetensors"))
    with open(output / "predict_predictions.jsonl") as f:
        records = [json.loads(line) for line in f]
    return oracle, final, records, metrics


def max_weight_difference(ours: dict, original: dict, names) -> tuple[float, str]:
    assert set(original) <= set(ours), f"parameters missing from our model: {sorted(set(original) - set(ours))}"
    worst = max(names, key=lambda k: float((ours[k].float() - original[k]).abs().max()))
    return float((ours[worst].float() - original[worst]).abs().max()), worst


def comparable(task: str, record: dict, keys: list[str]) -> dict:
    """A prediction record reduced to what the original's output holds. NER: the original has a
    label for each word that kept a first sub-token; our records hold None for the others
    (words cut by truncation), so those are dropped."""
    record = {k: record[k] for k in keys}
    if task == "ner":
        record["predictions"] = [p for p in record["predictions"] if p is not None]
    return record


@pytest.mark.parametrize("task", ["seqcls", "ner", "qa", "mc"])
def test_matches_the_original_release(task, tmp_path):
    # The original's padded batches (the CPU default packs them: --padding_free).
    oracle, final, records, metrics = run_ours(task, tmp_path, ["--optim", "adamw_hf", "--attn_implementation",
                                                               "eager", "--padding_free", "false"])
    original = load_file(str(FIXTURES / task / "final.safetensors"))
    invariant = SHIFT_INVARIANT.get(task, set())
    assert invariant <= set(original)
    # The fixture trains far enough for the tolerance to mean something.
    assert oracle["max_abs_update"] > 100 * TOLERANCE
    difference, where = max_weight_difference(final, original, [k for k in original if k not in invariant])
    assert difference <= TOLERANCE, f"{task}: max |dw| {difference:.3e} at {where}"
    assert math.isclose(metrics["train_loss"], oracle["train_loss"], rel_tol=1e-6)
    keys = list(oracle["predictions"][0])
    assert [comparable(task, r, keys) for r in records] == oracle["predictions"]


def test_the_oracle_metrics_are_the_projects():
    """oracle_run.py swaps the original's network-bound `load_metric` for local code: that code
    computes what our metrics compute (which tests/test_tokcls_metrics.py and test_qa_metric.py
    check against hand-computed values)."""
    from linkbert.metrics.ner import seqeval_report
    from linkbert.metrics.squad import squad_v1

    spec = importlib.util.spec_from_file_location("oracle_run", REPO / "scripts" / "parity" / "oracle_run.py")
    oracle_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle_run)

    golds = [["B-Disease", "I-Disease", "O", "B-Gene"], ["O", "B-Disease", "O", "O"], ["O", "O", "O", "O"]]
    predicted = [["B-Disease", "I-Disease", "O", "O"], ["I-Disease", "B-Disease", "O", "B-Gene"], ["O"] * 4]
    assert oracle_run.load_metric("seqeval").compute(predictions=predicted, references=golds) \
        == seqeval_report(predicted, golds)

    answers = [["the Denver Broncos", "Broncos"], ["Santa Clara, California"], ["1990"]]
    texts = ["Denver Broncos", "Levi's Stadium in Santa Clara", "the year 1991"]
    original = oracle_run.load_metric("squad").compute(
        predictions=[{"id": str(i), "prediction_text": t} for i, t in enumerate(texts)],
        references=[{"id": str(i), "answers": {"text": a, "answer_start": [0] * len(a)}}
                    for i, a in enumerate(answers)])
    assert original == pytest.approx(squad_v1(texts, answers))
    assert 0 < original["f1"] < 100 and original["exact_match"] == pytest.approx(100 / 3)
