"""Multiple choice (linkbert.mc): the original MedQA -> MMLU flow on the tiny model, prediction-only
runs, the encoding and batching of the N choices, and gradient checkpointing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import read_jsonl, run_task, sample_dir
from linkbert.core.args import parse_args
from linkbert.core.errors import UserError
from linkbert.core.task import TaskContext
from linkbert.mc.run_multiple_choice import MultipleChoiceArguments, MultipleChoiceTask

MEDQA = sample_dir("medqa_usmle_hf")
MMLU = sample_dir("mmlu_professional_medicine_eval")
ALL_FILES = sorted(MEDQA.glob("*.json")) + sorted(MMLU.glob("*.json"))

# run_examples_medqa_biolinkbert-large.sh
MEDQA_LARGE_FLAGS = ["--do_train", "--do_eval", "--do_predict", "--per_device_train_batch_size", 2,
                     "--per_device_eval_batch_size", 2, "--gradient_accumulation_steps", 32, "--weight_decay", 0.01,
                     "--adam_beta1", 0.9, "--adam_beta2", 0.98, "--adam_epsilon", 1e-6, "--learning_rate", 3e-5,
                     "--warmup_steps", 500, "--num_train_epochs", 6, "--max_seq_length", 512, "--fp16",
                     "--save_strategy", "no", "--evaluation_strategy", "steps", "--eval_steps", 100,
                     "--overwrite_output_dir"]
MMLU_FLAGS = ["--do_predict", "--per_device_eval_batch_size", 4, "--max_seq_length", 512, "--fp16",
              "--overwrite_output_dir"]




@pytest.fixture(scope="module")
def medqa_run(tiny_model, tmp_path_factory):
    """Step one of the original flow: fine-tune on MedQA with the large-model flags (a few updates)."""
    out = tmp_path_factory.mktemp("medqa_usmle_hf") / "tiny"
    metrics = run_task(MultipleChoiceTask, [
        "--model_name_or_path", tiny_model(ALL_FILES), "--train_file", MEDQA / "train.json",
        "--validation_file", MEDQA / "dev.json", "--test_file", MEDQA / "test.json", "--output_dir", out,
        *MEDQA_LARGE_FLAGS,
        # test-sized: 4 questions, 2 updates (an epoch each), dev scored after each
        "--max_train_samples", 4, "--max_steps", 2, "--eval_steps", 1, "--disable_tqdm"])
    return out, metrics


def mmlu_predict(model_dir, out, *data_flags) -> dict:
    return run_task(MultipleChoiceTask, ["--model_name_or_path", model_dir, *data_flags, "--output_dir", out,
                                         *MMLU_FLAGS, "--disable_tqdm"])


def recompute_predictions(model_dir, records: list[dict]) -> list[int]:
    """Independent of the engine: the saved folder, the original encoding, one question at a time."""
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMultipleChoice.from_pretrained(model_dir).eval()
    predictions = []
    for r in records:
        endings = [r[f"ending{i}"] for i in range(4)]
        enc = tokenizer([r["sent1"]] * 4, [f"{r['sent2']} {e}" for e in endings], truncation=True, max_length=512,
                        padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits
        predictions.append(int(logits.argmax(-1)))
    return predictions


def test_medqa_train_then_mmlu_predict_from_saved_folder(medqa_run, tmp_path):
    medqa_out, medqa_metrics = medqa_run
    state = json.loads((medqa_out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [e["step"] for e in state["log_history"] if "eval_accuracy" in e] == [1, 2]
    config = json.loads((medqa_out / "config.json").read_text())
    assert config["architectures"] == ["BertForMultipleChoice"]
    for name in ("train_results.json", "eval_results.json", "predict_results.json", "model.safetensors"):
        assert (medqa_out / name).is_file(), name
    assert 0.0 <= medqa_metrics["predict_accuracy"] <= 1.0

    # Step two, exactly the original MMLU call: "train_file" is MMLU's dev split, only predicting.
    out = tmp_path / "mmlu_professional_medicine_eval"
    metrics = mmlu_predict(medqa_out, out, "--train_file", MMLU / "dev.json", "--validation_file",
                           MMLU / "val.json", "--test_file", MMLU / "test.json")
    results = json.loads((out / "predict_results.json").read_text())
    assert not (out / "train_results.json").exists() and not (out / "eval_results.json").exists()
    gold = read_jsonl(MMLU / "test.json")
    records = read_jsonl(out / "predict_predictions.jsonl")
    assert [r["id"] for r in records] == [g["id"] for g in gold]
    assert [r["label"] for r in records] == [g["label"] for g in gold]
    assert all(set(r) == {"id", "prediction", "label"} and r["prediction"] in range(4) for r in records)
    recomputed = sum(r["prediction"] == r["label"] for r in records) / len(records)
    assert results["predict_accuracy"] == recomputed == metrics["predict_accuracy"]
    assert results["predict_samples"] == len(gold)
    assert [r["prediction"] for r in records] == recompute_predictions(medqa_out, gold)


@pytest.mark.parametrize("train_file", ["none", "does_not_exist"])
def test_prediction_only_needs_no_train_file(medqa_run, tmp_path, train_file):
    medqa_out, _ = medqa_run
    train_flag = ["--train_file", tmp_path / "nowhere" / "dev.json"] if train_file == "does_not_exist" else []
    metrics = mmlu_predict(medqa_out, tmp_path / "out", *train_flag, "--test_file", MMLU / "val.json")
    records = read_jsonl(tmp_path / "out" / "predict_predictions.jsonl")
    assert len(records) == len(read_jsonl(MMLU / "val.json"))
    assert metrics["predict_accuracy"] == sum(r["prediction"] == r["label"] for r in records) / len(records)


def test_prediction_only_missing_test_file_is_an_error(medqa_run, tmp_path):
    medqa_out, _ = medqa_run
    missing = tmp_path / "test.json"
    with pytest.raises(UserError) as e:
        mmlu_predict(medqa_out, tmp_path / "out", "--train_file", MMLU / "dev.json", "--test_file", missing)
    assert e.value.kind == "missing_file" and str(missing) in str(e.value)
    with pytest.raises(UserError) as e:
        mmlu_predict(medqa_out, tmp_path / "out", "--train_file", MMLU / "dev.json")
    assert e.value.kind == "missing_split" and "--test_file" in str(e.value)


# -- encoding and batching ----------------------------------------------------------------------
@pytest.fixture()
def task(tmp_path):
    parsed = parse_args(MultipleChoiceArguments, ["--model_name_or_path", "unused", "--output_dir", str(tmp_path)])
    return MultipleChoiceTask(*parsed)


@pytest.fixture()
def ctx(tiny_model):
    from transformers import AutoTokenizer

    return TaskContext(AutoTokenizer.from_pretrained(tiny_model(ALL_FILES)), max_seq_length=512)


def test_encoding_pairs_question_with_header_and_ending(task, ctx):
    question = {"id": "q", "sent1": "Which drug treats gout?", "sent2": "In acute gout,", "ending0": "colchicine",
                "ending1": "insulin", "ending2": "warfarin", "label": 0}
    fmt = task.record_format(question, "train", None)
    assert task.validate_record(question, "train", fmt) == 0 and fmt.num_choices == 3
    batch = {k: [v] for k, v in question.items()}
    features = task.encode(batch, replace(ctx, record_format=fmt), training=True)
    assert len(features["input_ids"]) == 1 and len(features["input_ids"][0]) == 3
    for i, ending in enumerate(["colchicine", "insulin", "warfarin"]):
        expected = ctx.tokenizer(question["sent1"], f"In acute gout, {ending}")
        assert features["input_ids"][0][i] == expected["input_ids"]
        assert features["token_type_ids"][0][i] == expected["token_type_ids"]
    assert features["labels"] == [0]


def test_long_question_loses_its_end_not_the_ending(task, ctx):
    record = read_jsonl(MEDQA / "train.json")[5]  # the sample's vignette longer than 512 tokens
    fmt = task.record_format(record, "train", None)
    task.validate_record(record, "train", fmt)
    short = TaskContext(ctx.tokenizer, max_seq_length=64, record_format=fmt)
    features = task.encode({k: [v] for k, v in record.items()}, short, training=True)
    tok = ctx.tokenizer
    for i in range(4):
        ids = features["input_ids"][0][i]
        assert len(ids) == 64
        ending_ids = tok(f" {record[f'ending{i}']}", add_special_tokens=False)["input_ids"]
        question_ids = tok(record["sent1"], add_special_tokens=False)["input_ids"]
        assert ids[-1 - len(ending_ids):-1] == ending_ids  # the choice is whole
        assert ids[1:64 - len(ending_ids) - 2] == question_ids[:64 - len(ending_ids) - 3]  # the start of the question


@pytest.mark.parametrize("multiple", [None, 8])
def test_collator_pads_all_choices_together(task, ctx, multiple):
    records = read_jsonl(MEDQA / "dev.json")[:3]
    fmt = task.record_format(records[0], "validation", None)
    for r in records:
        task.validate_record(r, "validation", fmt)
    features = task.encode({k: [r[k] for r in records] for k in records[0]}, replace(ctx, record_format=fmt),
                           training=False)
    rows = [{k: features[k][j] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")}
            for j in range(3)]
    batch = task.collator(TaskContext(ctx.tokenizer, 512, pad_to_multiple_of=multiple))(rows)
    longest = max(task.feature_length(f) for f in features["input_ids"])
    expected = longest if multiple is None else -(-longest // multiple) * multiple
    assert batch["input_ids"].shape == (3, 4, expected)
    assert batch["labels"].tolist() == [r["label"] for r in records]
    assert batch["attention_mask"].sum(-1).tolist() == [[len(c) for c in f] for f in features["input_ids"]]


# -- memory: gradient checkpointing ------------------------------------------------------------
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(task, ctx, tiny_model):
    """What --gradient_checkpointing does in the engine, on the MC model with dropout off."""
    from transformers import AutoModelForMultipleChoice

    records = read_jsonl(MEDQA / "train.json")[4:6]  # a short and a > 512-token question: 2 x 4 x 512
    fmt = task.record_format(records[0], "train", None)
    for r in records:
        task.validate_record(r, "train", fmt)
    features = task.encode({k: [r[k] for r in records] for k in records[0]}, replace(ctx, record_format=fmt),
                           training=True)
    batch = task.collator(TaskContext(ctx.tokenizer, 512, pad_to_multiple_of=8))([{k: features[k][j] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")}
                              for j in range(2)])
    assert batch["input_ids"].shape == (2, 4, 512)
    model = AutoModelForMultipleChoice.from_pretrained(tiny_model(ALL_FILES, dropout=0.0)).train()
    calls = []
    # transformers checkpoints a layer's `forward` (its own hooks run once); a sub-module's hook runs again
    # when the backward pass recomputes the layer
    model.bert.encoder.layer[0].attention.register_forward_hook(lambda *_: calls.append(1))

    def loss_and_gradients():
        model.zero_grad()
        calls.clear()
        loss = model(**batch).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    loss, grads, forward_calls = loss_and_gradients()
    model.gradient_checkpointing_enable()
    loss_ckpt, grads_ckpt, forward_calls_ckpt = loss_and_gradients()
    assert forward_calls == 1 and forward_calls_ckpt == 2  # the layer was recomputed in backward
    assert loss_ckpt == pytest.approx(loss, abs=1e-6)
    assert grads_ckpt.keys() == grads.keys() and len(grads) == len(list(model.parameters()))
    for name, g in grads.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_gradient_checkpointing_flag_trains_the_same_model(tiny_model, tmp_path):
    from safetensors.torch import load_file

    model = tiny_model(ALL_FILES, dropout=0.0)
    weights = []
    for flag in ([], ["--gradient_checkpointing"]):
        out = tmp_path / ("ckpt" if flag else "plain")
        run_task(MultipleChoiceTask, ["--model_name_or_path", model, "--train_file", MEDQA / "train.json",
                                      "--do_train", "--max_train_samples", 4, "--per_device_train_batch_size", 2,
                                      "--learning_rate", 1e-3, "--max_steps", 2, "--save_strategy", "no",
                                      "--output_dir", out, "--disable_tqdm", *flag])
        weights.append(load_file(out / "model.safetensors"))
    initial = load_file(Path(model) / "model.safetensors")
    moved = weights[0]["bert.encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(moved, initial["encoder.layer.0.attention.self.query.weight"])
    for name, value in weights[0].items():
        np.testing.assert_allclose(weights[1][name].numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
