"""The speed-ups that are on by default change no prediction.

The original padded every seqcls example to --max_seq_length and evaluated in file order; the
project pads each batch to its longest feature and evaluates in length-sorted batches, put back
into file order. Padding is masked, so both must give the same logits (within float rounding)
and the same prediction records. The reference here is computed independently of
`Engine.predict`: a plain loop over features padded to max length, in file order, batch 8.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

import pytest
import torch

from conftest import SAMPLES, assert_same_weights, run_task
from linkbert.core.args import parse_args
from linkbert.core.data import load_splits
from linkbert.core.distributed import DistState
from linkbert.core.engine import Engine
from linkbert.core.run import build_features, load_model, resolve_context
from linkbert.core.task import batch_pad_multiple
from linkbert.seqcls.run_seqcls import SeqClsTask

SEQCLS = SAMPLES / "seqcls"
ALL_FILES = sorted(SEQCLS.glob("*/*.json"))
# Sample folder -> (--metric_name, --max_seq_length as the original scripts pass them).
TASKS = {"chemprot_hf": ("PRF1", 256), "pubmedqa_hf": ("accuracy", 512),
         "BIOSSES_hf": ("pearsonr", 512), "HoC_hf": ("hoc", 512)}


def prepare(model_dir: str, name: str, tmp_path, flags: list[str]):
    """Task, model and the features of the split scored here (the 48-example training file,
    given as the dev file so batches of 8 hold different lengths)."""
    from transformers import set_seed

    metric, max_len = TASKS[name]
    d = SEQCLS / name
    argv = ["--model_name_or_path", model_dir, "--train_file", str(d / "train.json"),
            "--validation_file", str(d / "train.json"), "--do_eval", "--metric_name", metric,
            "--max_seq_length", str(max_len), "--output_dir", str(tmp_path / "out"), "--disable_tqdm",
            "--allow_untrained_head", "--padding_free", "false", *flags]  # padded batches are the subject here
    model_args, data_args, args, task_args = parse_args(SeqClsTask.arguments, argv)
    task = SeqClsTask(model_args, data_args, args, task_args)
    splits, checked = load_splits(task, ["train", "validation"])
    ctx, config = resolve_context(task, checked)
    set_seed(args.seed)
    model = load_model(task, config)
    features = build_features(task, ctx, "validation", splits["validation"], training=False)
    return task, ctx, model, args, splits["validation"], features


def file_order_logits(engine: Engine, features, batch_size: int = 8) -> list[np.ndarray]:
    """The original's evaluation: consecutive batches in file order, no sorting."""
    engine.model.eval()
    rows: list[np.ndarray] = []
    with torch.no_grad():
        consecutive = [list(range(start, min(start + batch_size, len(features))))
                       for start in range(0, len(features), batch_size)]
        for batch in engine.feeder.loader(features, consecutive):  # the engine's own batching of model inputs
            batch.pop("labels", None)
            rows += list(engine.model(**batch).logits.float().numpy())
    return rows


@pytest.mark.parametrize("name", list(TASKS))
def test_dynamic_padding_and_sorted_eval_change_no_prediction(name, tiny_model, tmp_path):
    model_dir = tiny_model(ALL_FILES)
    padded_task, padded_ctx, model, padded_args, examples, padded = prepare(model_dir, name, tmp_path,
                                                                           ["--pad_to_max_length"])
    task, ctx, _, args, _, dynamic = prepare(model_dir, name, tmp_path, [])

    # Not a vacuous comparison: the padded features are all max_seq_length long, the dynamic
    # ones vary in length, and sorting by length really reorders them.
    max_len = TASKS[name][1]
    lengths = [len(ids) for ids in dynamic["input_ids"]]
    assert {len(ids) for ids in padded["input_ids"]} == {max_len}
    assert len(set(lengths)) > 1 and max(lengths) < max_len
    assert sorted(range(len(lengths)), key=lengths.__getitem__) != list(range(len(lengths)))

    reference = file_order_logits(Engine(model, padded_task, padded_ctx, padded_args, DistState(padded_args)), padded)
    theirs = padded_task.prediction_records(reference, examples, padded, padded_ctx)
    # Labels and multi-label sets must be equal; a regression score (BIOSSES) within rounding.
    approx = lambda r: {**r, "prediction": pytest.approx(r["prediction"], rel=1e-5)} \
        if isinstance(r["prediction"], float) else r
    for eval_batch in (8, 5):  # the default, and one that leaves a ragged last batch
        batch_args = dataclasses.replace(args, per_device_eval_batch_size=eval_batch)
        project = Engine(model, task, ctx, batch_args, DistState(batch_args)).predict(dynamic)  # same weights
        assert len(project) == len(reference) == len(examples)
        np.testing.assert_allclose(np.stack(project), np.stack(reference), rtol=1e-4, atol=1e-5)
        assert task.prediction_records(project, examples, dynamic, ctx) == [approx(r) for r in theirs]


def test_model_uses_sdpa_attention(tiny_model, tmp_path):
    # The default is SDPA through cpu_attention (its kernel only for CPU training with attention
    # dropout); --attn_implementation torch_sdpa is transformers' own SDPA; nothing may turn it off.
    from linkbert.core import cpu_attention

    _, _, model, *_ = prepare(tiny_model(ALL_FILES), "chemprot_hf", tmp_path, [])
    assert model.config._attn_implementation == cpu_attention.ATTENTION_NAME
    _, _, model, *_ = prepare(tiny_model(ALL_FILES), "chemprot_hf", tmp_path / "t", ["--attn_implementation",
                                                                                     "torch_sdpa"])
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("precision", ["--bf16", "--fp16"])
def test_mixed_precision_pads_batches_to_multiple_of_8_on_a_gpu_only(precision, tiny_model, tmp_path, monkeypatch):
    """The original's fp16 collators rounded batch widths up to 8 for the GPU's tensor cores; on
    the CPU that is only more work, so there batches pad to their longest feature."""
    task, ctx, model, args, _, features = prepare(tiny_model(ALL_FILES), "chemprot_hf", tmp_path, [precision])
    engine = Engine(model, task, ctx, args, DistState(args))
    batches = [list(range(s, s + 8)) for s in (0, 8, 16)]
    widths = [batch["input_ids"].shape[1] for batch in engine.feeder.loader(features, batches)]
    assert widths == [max(len(features[i]["input_ids"]) for i in b) for b in batches]
    assert any(w % 8 for w in widths)  # the sample has such widths: the check above could fail

    assert batch_pad_multiple(args) is None  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert batch_pad_multiple(args) == 8
    assert batch_pad_multiple(dataclasses.replace(args, use_cpu=True)) is None
    assert batch_pad_multiple(dataclasses.replace(args, padding_free=True)) is None


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipping, and a norm below the bound (factor 1)
def test_multi_tensor_clipping_equals_torch_clip_grad_norm_bit_for_bit(max_norm, tiny_model):
    from transformers import BertForSequenceClassification

    from linkbert.core.optim import clip_grad_norm

    model = BertForSequenceClassification.from_pretrained(tiny_model(ALL_FILES))
    ids = torch.randint(5, 50, (4, 12))
    model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    before = [p.grad.clone() for p in model.parameters()]
    twin = [g.clone() for g in before]
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    expected = [p.grad.clone() for p in model.parameters()]
    for p, g in zip(model.parameters(), twin):
        p.grad = g
    clip_grad_norm(model.parameters(), max_norm)
    assert all(torch.equal(p.grad, e) for p, e in zip(model.parameters(), expected))
    assert any(not torch.equal(e, g) for e, g in zip(expected, before)) == (max_norm < 1)


def test_dynamic_padding_trains_to_the_same_predictions(tiny_model, tmp_path):
    """End to end (train 3 updates, then score dev): with dropout off, padding to max length and
    dynamic padding give the same predictions. With dropout on, the masks are drawn for a
    different tensor shape, so the runs differ as two seeds would (DEVIATIONS.md)."""
    model_dir = tiny_model(ALL_FILES, dropout=0.0)
    d = SEQCLS / "chemprot_hf"
    common = ["--model_name_or_path", model_dir, "--train_file", d / "train.json", "--validation_file",
              d / "dev.json", "--do_train", "--do_eval", "--metric_name", "PRF1", "--max_seq_length", "256",
              "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--max_steps", "3",
              "--save_strategy", "no", "--disable_tqdm", "--padding_free", "false"]  # packing would hide the padding
    padded = run_task(SeqClsTask, [*common, "--pad_to_max_length", "--output_dir", tmp_path / "padded"])
    dynamic = run_task(SeqClsTask, [*common, "--output_dir", tmp_path / "dynamic"])

    assert dynamic["train_loss"] == pytest.approx(padded["train_loss"], rel=1e-5)
    read = lambda run: (tmp_path / run / "eval_predictions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in read("dynamic")] == [json.loads(line) for line in read("padded")]
    assert dynamic["eval_F1"] == padded["eval_F1"]
    # The trained weights themselves, not only the argmax of the logits.
    assert_same_weights(tmp_path / "dynamic", tmp_path / "padded", rtol=1e-4, atol=1e-6)
