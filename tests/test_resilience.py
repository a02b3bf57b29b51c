"""Nothing lost when a run dies: exact resume, pre-emption by SIGTERM, SIGKILL, non-finite loss."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SAMPLES, assert_same_weights, run_task, sample_dir
from linkbert.core.errors import UserError
from linkbert.seqcls.run_seqcls import SeqClsTask
from linkbert.tasks import TASKS

CHEMPROT = sample_dir("chemprot_hf")
PUBMEDQA = sample_dir("pubmedqa_hf")
ALL_FILES = sorted((SAMPLES / "seqcls").glob("*/*.json"))


def flags(data: Path, out: Path, *extra) -> list[str]:
    return ["--train_file", data / "train.json", "--validation_file", data / "dev.json",
            "--test_file", data / "test.json", "--do_train", "--do_eval", "--do_predict",
            "--output_dir", out, *extra]


@pytest.mark.parametrize("attention", ["sdpa", "dropout kernel", "dropout kernel, --padding_free"])
def test_resume_from_epoch_checkpoint_with_pending_gradients_is_exact(attention, tiny_model, tmp_path, monkeypatch):
    """48 examples in micro-batches of 10 with accumulation 2: each epoch ends with a left-over
    micro-batch whose gradient carries into the next update, so the epoch checkpoints hold
    pending gradients. Resuming from the middle gives the uninterrupted run's weights exactly;
    also where attention dropout and the hidden dropout are drawn by cpu_attention's and
    cpu_dropout's kernels (whose keys come from the generator state a checkpoint keeps), padded
    and per length bucket."""
    from linkbert.core import cpu_attention, cpu_dropout

    calls: list[str] = []
    if attention != "sdpa":  # the tiny model is below the kernels' sizes; lift that
        monkeypatch.setattr(cpu_attention, "MIN_SCORES", 1)
        monkeypatch.setattr(cpu_dropout, "MIN_ELEMENTS", 1)
        for name, function in (("attention", cpu_attention._DropoutAttention), ("hidden", cpu_dropout._HashDropout)):
            monkeypatch.setattr(function, "apply", lambda *a, n=name, f=function.apply: calls.append(n) or f(*a))
    common = ["--model_name_or_path", tiny_model(ALL_FILES), "--metric_name", "PRF1",
              "--per_device_train_batch_size", "10", "--gradient_accumulation_steps", "2",
              "--num_train_epochs", "4", "--warmup_ratio", "0.5", "--save_strategy", "epoch", "--logging_steps", "1",
              "--padding_free", "true" if "padding_free" in attention else "false"]
    full = tmp_path / "full"
    run_task(SeqClsTask, [*flags(CHEMPROT, full), *common])
    assert (full / "checkpoint-4" / "pending_grads.pt").is_file()

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-4", resumed / "checkpoint-4")
    # No --overwrite_output_dir: the folder holds a checkpoint, so the run resumes from it.
    run_task(SeqClsTask, [*flags(CHEMPROT, resumed), *common])
    assert_same_weights(resumed, full)
    for name in ("eval_predictions.jsonl", "predict_predictions.jsonl"):
        assert (full / name).read_text() == (resumed / name).read_text()
    full_state = json.loads((full / "trainer_state.json").read_text())
    resumed_state = json.loads((resumed / "trainer_state.json").read_text())
    losses = lambda s: [h["loss"] for h in s["log_history"] if "loss" in h]  # noqa: E731
    assert losses(full_state) == losses(resumed_state) and len(losses(full_state)) == 8
    train = lambda d: json.loads((d / "train_results.json").read_text())["train_loss"]  # noqa: E731
    assert train(full) == pytest.approx(train(resumed), rel=1e-9)
    assert set(calls) == (set() if attention == "sdpa" else {"attention", "hidden"})


# -- killed and pre-empted runs, in real subprocesses ----------------------------------------
SLOW_STEPS = 60


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A model big enough that a step takes tens of milliseconds, so a run can be hit mid-way."""
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    return build_tiny_model(tmp_path_factory.mktemp("slow_model"), texts_from_jsonl(ALL_FILES),
                            hidden_size=128, num_layers=4, num_heads=4)


def train_command(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", TASKS["pubmedqa_hf"].module, "--model_name_or_path", str(model),
            *map(str, flags(PUBMEDQA, out)), "--max_steps", str(SLOW_STEPS), "--save_steps", "10",
            "--per_device_train_batch_size", "8", "--max_seq_length", "256", "--disable_tqdm",
            "--padding_free", "false"]  # padded: the steps this slow model was sized for


def subprocess_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def uninterrupted(slow_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(train_command(slow_model, out), env=subprocess_env(), check=True, capture_output=True)
    return out


def start_and_wait_for(model: Path, out: Path, checkpoint: str) -> subprocess.Popen:
    proc = subprocess.Popen(train_command(model, out), env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / checkpoint / "trainer_state.json").exists():
        assert proc.poll() is None, f"run ended before {checkpoint}: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.02)
    return proc


def resume_and_compare(model: Path, out: Path, reference: Path) -> None:
    done = subprocess.run(train_command(model, out), env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout
    assert_same_weights(out, reference)
    for name in ("eval_predictions.jsonl", "predict_predictions.jsonl", "all_results.json"):
        ours, theirs = (out / name).read_text(), (reference / name).read_text()
        if name.endswith(".json"):  # runtimes and rates (MFU too) differ; every score must not
            ours, theirs = ({k: v for k, v in json.loads(t).items()
                             if "runtime" not in k and "per_second" not in k and "mfu" not in k and k != "run"}
                            for t in (ours, theirs))
        assert ours == theirs, name


def test_sigkill_after_a_checkpoint_then_resume_gives_the_same_result(slow_model, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait_for(slow_model, out, "checkpoint-10")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "all_results.json").exists(), "the run finished before it could be killed"
    resume_and_compare(slow_model, out, uninterrupted)


def test_sigterm_writes_a_checkpoint_and_exits_non_zero(slow_model, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait_for(slow_model, out, "checkpoint-10")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    # The update in flight was finished and saved. Which update that is depends on when the
    # signal landed: while checkpoint-10 was still being rotated and logged (its files already
    # in place), update 10 itself; later, the update after it. The message names it.
    stopped = re.search(r"SIGTERM received: stopped after update (\d+), checkpoint (\S+) written", stderr)
    assert stopped, stderr[-2000:]
    step = int(stopped.group(1))
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert step >= 10 and steps[-1] == step and Path(stopped.group(2)) == out / f"checkpoint-{step}", (step, steps)
    assert json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["global_step"] == step
    assert not (out / "predict_results.json").exists()
    resume_and_compare(slow_model, out, uninterrupted)


# -- non-finite loss ------------------------------------------------------------------------
def write_exploding_regression(folder: Path) -> Path:
    """A BIOSSES-like set whose labels overflow the squared error to inf."""
    folder.mkdir()
    for split in ("train", "dev", "test"):
        lines = [json.dumps({"id": str(i), "sentence1": "aspirin binds the receptor", "sentence2": "it does",
                             "label": 3.0e30 if i % 2 else -3.0e30}) for i in range(8)]
        (folder / f"{split}.json").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("precision", [[], ["--fp16"]])
def test_loss_that_stays_non_finite_stops_the_run_and_keeps_checkpoints(precision, tiny_model, tmp_path):
    data = write_exploding_regression(tmp_path / "data")
    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)  # an earlier good checkpoint must survive
    (out / "checkpoint-3" / "marker").write_text("keep me")
    with pytest.raises(UserError) as err:
        run_task(SeqClsTask, ["--model_name_or_path", tiny_model(ALL_FILES), *flags(data, out), "--metric_name",
                              "pearsonr", "--max_steps", "40", "--per_device_train_batch_size", "4",
                              "--overwrite_output_dir", "--save_strategy", "no", *precision])
    assert err.value.kind == "non_finite_loss"
    # --overwrite_output_dir set the earlier run's checkpoint aside, intact
    assert [p.read_text() for p in out.glob("previous_runs/*/checkpoint-3/marker")] == ["keep me"]
    assert not (out / "all_results.json").exists() and not (out / "model.safetensors").exists()
    if precision:  # fp16: the scaler skipped steps first, until the scale collapsed
        assert "25 fp16 steps skipped" in str(err.value)


def test_sigterm_on_one_rank_stops_every_rank_after_a_checkpoint(tmp_path):
    """Under torchrun only rank 1 gets SIGTERM: the ranks vote at each update, so both stop after
    the same update and write one complete checkpoint, with no deadlock."""
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    model = build_tiny_model(tmp_path / "model", texts_from_jsonl(ALL_FILES), dropout=0.0)
    out = tmp_path / "run"
    argv = ["--model_name_or_path", model, *flags(CHEMPROT, out), "--max_steps", "400", "--save_steps", "5",
            "--per_device_train_batch_size", "4", "--metric_name", "PRF1", "--disable_tqdm"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(Path(__file__).parent / "dist_signal_worker.py"), str(out / "checkpoint-5" / "trainer_state.json"),
               *map(str, argv)]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.count("SIGTERM") >= 2, done.stderr[-3000:]  # both ranks say why they stopped
    assert "SIGTERM (on another rank)" in done.stderr
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps[-1] > 5 and steps[-1] < 400, steps
    assert not (out / "predict_results.json").exists()
    state = json.loads((out / f"checkpoint-{steps[-1]}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps[-1]
