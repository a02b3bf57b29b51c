"""BLURB sequence classification end to end on the samples, with the original flags."""

import json
from pathlib import Path

import pytest

from conftest import SAMPLES, run_task
from linkbert.core.errors import UserError
from linkbert.metrics import classification
from linkbert.seqcls.run_seqcls import SeqClsTask

SEQCLS = SAMPLES / "seqcls"
ALL_FILES = sorted(SEQCLS.glob("*/*.json"))

# Original flags (run_examples_blurb_biolinkbert-large.sh) plus --max_steps.
ORIGINAL_FLAGS = {
    "pubmedqa_hf": "--per_device_train_batch_size 8 --gradient_accumulation_steps 4 --fp16 --learning_rate 3e-5 "
                   "--warmup_ratio 0.5 --num_train_epochs 23 --max_seq_length 512",
    "chemprot_hf": "--metric_name PRF1 --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --fp16 "
                   "--learning_rate 2e-5 --warmup_ratio 0.5 --num_train_epochs 4 --max_seq_length 256",
    "BIOSSES_hf": "--metric_name pearsonr --per_device_train_batch_size 8 --gradient_accumulation_steps 4 --fp16 "
                  "--weight_decay 0.01 --adam_beta1 0.9 --adam_beta2 0.98 --adam_epsilon 1e-6 --learning_rate 3e-5 "
                  "--warmup_ratio 0.5 --num_train_epochs 100 --max_seq_length 512",
    "HoC_hf": "--metric_name hoc --per_device_train_batch_size 8 --gradient_accumulation_steps 4 --fp16 "
              "--learning_rate 3e-5 --warmup_ratio 0.5 --num_train_epochs 20 --max_seq_length 512",
}
SCORE_KEY = {"pubmedqa_hf": "accuracy", "chemprot_hf": "F1", "BIOSSES_hf": "pearsonr", "HoC_hf": "F1"}


def data_flags(task: str) -> list[str]:
    d = SEQCLS / task
    return ["--train_file", d / "train.json", "--validation_file", d / "dev.json", "--test_file", d / "test.json"]


def score_from_file(task: str, path: Path) -> float:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    preds, golds = [r["prediction"] for r in records], [r["label"] for r in records]
    if task == "pubmedqa_hf":
        return classification.accuracy(preds, golds)["accuracy"]
    if task == "chemprot_hf":
        return classification.micro_prf1(preds, golds)["F1"]
    if task == "BIOSSES_hf":
        return classification.pearsonr(preds, golds)["pearsonr"]
    return classification.hoc_prf1(preds, golds, [r["id"] for r in records])["F1"]


@pytest.mark.parametrize("task", list(ORIGINAL_FLAGS))
def test_original_flags_end_to_end(task, tiny_model, tmp_path):
    out = tmp_path / "run"
    metrics = run_task(SeqClsTask, [
        "--model_name_or_path", tiny_model(ALL_FILES), *data_flags(task), "--do_train", "--do_eval",
        "--do_predict", *ORIGINAL_FLAGS[task].split(), "--save_strategy", "no", "--evaluation_strategy", "no",
        "--overwrite_output_dir", "--output_dir", out, "--max_steps", "3"])
    key = SCORE_KEY[task]
    for name in ("all_results.json", "train_results.json", "eval_results.json", "predict_results.json",
                 "trainer_state.json", "run_args.json", "env.json", "model.safetensors", "config.json"):
        assert (out / name).is_file(), name
    predict = json.loads((out / "predict_results.json").read_text())
    assert predict[f"predict_{key}"] == pytest.approx(score_from_file(task, out / "predict_predictions.jsonl"))
    assert metrics[f"eval_{key}"] == pytest.approx(score_from_file(task, out / "eval_predictions.jsonl"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    test_lines = (SEQCLS / task / "test.json").read_text().splitlines()
    predictions = (out / "predict_predictions.jsonl").read_text().splitlines()
    assert [json.loads(p)["id"] for p in predictions] == [json.loads(t)["id"] for t in test_lines]


def test_prediction_only_run_uses_saved_labels(tiny_model, tmp_path):
    task = "chemprot_hf"
    trained = tmp_path / "trained"
    run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags(task), "--do_train",
                          "--do_predict", "--metric_name", "PRF1", "--max_steps", "4", "--output_dir", trained])
    again = tmp_path / "predict_only"
    metrics = run_task(SeqClsTask, ["--model_name_or_path", trained, "--test_file", SEQCLS / task / "test.json",
                                    "--do_predict", "--metric_name", "PRF1", "--output_dir", again])
    assert (again / "predict_predictions.jsonl").read_text() == (trained / "predict_predictions.jsonl").read_text()
    assert metrics["predict_F1"] == json.loads((trained / "predict_results.json").read_text())["predict_F1"]
    config = json.loads((trained / "config.json").read_text())
    assert sorted(config["label2id"]) == ["0", "CPR:3", "CPR:4", "CPR:9"]


@pytest.mark.parametrize("precision", ["--fp16", "--bf16"])
def test_mixed_precision_runs_on_cpu(precision, tiny_model, tmp_path):
    metrics = run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("pubmedqa_hf"),
                                    "--do_train", "--do_eval", precision, "--max_steps", "2",
                                    "--per_device_train_batch_size", "4", "--output_dir", tmp_path / "run"])
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert metrics["train_loss"] > 0


def test_evaluation_does_not_change_training(tiny_model, tmp_path):
    """Runs with evaluation during training and without it train identical weights."""
    from safetensors.torch import load_file

    common = ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("chemprot_hf"), "--do_train", "--do_eval",
              "--metric_name", "PRF1", "--max_steps", "6", "--per_device_train_batch_size", "8"]
    run_task(SeqClsTask, [*common, "--output_dir", tmp_path / "a", "--evaluation_strategy", "no"])
    run_task(SeqClsTask, [*common, "--output_dir", tmp_path / "b", "--evaluation_strategy", "steps",
                          "--eval_steps", "2"])
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    history = json.loads((tmp_path / "b" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_F1" in h] == [2, 4, 6]


def test_accumulation_leftover_carries_into_next_epoch(tiny_model, tmp_path):
    """48 examples, batch 10 -> 5 micro-batches; accumulation 2 -> 2 updates per epoch; the 5th
    micro-batch's gradient carries over. 2 epochs -> 4 updates."""
    out = tmp_path / "run"
    run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("chemprot_hf"), "--do_train",
                          "--per_device_train_batch_size", "10", "--gradient_accumulation_steps", "2",
                          "--num_train_epochs", "2", "--logging_steps", "1", "--output_dir", out])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [h["epoch"] for h in state["log_history"] if "loss" in h] == [0.4, 0.8, 1.4, 1.8]


def test_label_unseen_in_train_is_an_error(tiny_model, tmp_path):
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"id": "x", "sentence": "aspirin binds gene", "label": "CPR:99"}) + "\n")
    with pytest.raises(UserError) as err:
        run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), "--train_file",
                              SEQCLS / "chemprot_hf" / "train.json", "--validation_file", dev, "--do_train",
                              "--do_eval", "--output_dir", tmp_path / "out"])
    assert err.value.kind == "unseen_label" and err.value.line == 1 and str(dev) in str(err.value)
    assert not any((tmp_path / "out").glob("*"))


def test_unknown_metric_name(tiny_model, tmp_path):
    with pytest.raises(UserError) as err:
        run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("chemprot_hf"),
                              "--do_train", "--metric_name", "f1_macro", "--output_dir", tmp_path / "out"])
    assert err.value.kind == "unknown_metric" and "PRF1" in str(err.value)


def test_load_best_model_at_end_tests_the_best_dev_model(tiny_model, tmp_path):
    """Not the paper's protocol (it tests the last model), but offered: the saved model is the one
    with the best dev score seen at the evaluations."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("chemprot_hf"), "--do_train",
                          "--do_eval", "--metric_name", "PRF1", "--max_steps", "8", "--learning_rate", "1e-2",
                          "--per_device_train_batch_size", "8", "--evaluation_strategy", "steps", "--eval_steps", "2",
                          "--load_best_model_at_end", "--metric_for_best_model", "F1", "--save_steps", "8",
                          "--output_dir", out])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    scores = [h["eval_F1"] for h in history if "eval_F1" in h]
    assert len(scores) == 4
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] == max(scores)
    best, final = load_file(out / "best_model" / "model.safetensors"), load_file(out / "model.safetensors")
    assert all((best[k] == final[k]).all() for k in best)
    best_step = 2 * (scores.index(max(scores)) + 1)
    if best_step != 8:  # the last update's weights (checkpoint-8) are not the ones tested
        last = load_file(out / "checkpoint-8" / "model.safetensors")
        assert any((last[k] != final[k]).any() for k in last)
    assert json.loads((out / "eval_results.json").read_text())["eval_F1"] == max(scores)


def test_metric_for_best_model_must_be_a_dev_metric(tiny_model, tmp_path):
    with pytest.raises(UserError) as err:
        run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *data_flags("chemprot_hf"),
                              "--do_train", "--do_eval", "--metric_name", "PRF1", "--max_steps", "2",
                              "--evaluation_strategy", "steps", "--eval_steps", "1", "--load_best_model_at_end",
                              "--metric_for_best_model", "accuracy", "--output_dir", tmp_path / "out"])
    assert err.value.kind == "unknown_metric" and "eval_F1" in str(err.value)
