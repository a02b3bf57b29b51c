"""The launcher's SLURM backend on a real single-node SLURM started on this machine
(scripts/local_slurm.sh: slurmctld + slurmd from the Debian packages, no cgroups): a three-run
seed sweep as a job array, a run pre-empted mid-training that is requeued and ends identical to
an uninterrupted one, MMLU after MedQA as a SLURM dependency, a failed run (and the run that
needed it) shown as failed, and relaunching skips what is done.

Every scenario is submitted at once (the jobs run side by side); each test waits for its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, sample_dir
from safetensors.torch import load_file

from linkbert.core.rundir import sorted_checkpoints
from linkbert.tasks import TASKS

pytestmark = pytest.mark.skipif(shutil.which("slurmctld") is None,
                                reason="no slurmctld on this machine (apt-get install -y slurm-wlm munge)")

SLURM_FLAGS = ["--backend", "slurm", "--gpus-per-run", "0", "--cpus-per-run", "1", "--time", "15"]
SMOKE_FLAGS = "--max_steps 2 --max_train_samples 16 --max_eval_samples 8 --max_predict_samples 8"
PUBMEDQA = sample_dir("pubmedqa_hf")
WAIT_S = 400


def read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "launch.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(predicate, what: str, timeout: float = WAIT_S, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ended(folder: Path) -> dict:
    """The run's launch.json once it is done or failed (its attempts over)."""
    return wait_until(lambda: (s := read_state(folder)).get("state") in ("done", "failed") and s,
                      f"{folder} to end ({read_state(folder)})")


def start_cluster(folder: Path, nodes: int = 1):
    """A local SLURM of 1 or 2 nodes (scripts/local_slurm.sh) and the environment to use it; stop it after."""
    started = subprocess.run(["bash", str(REPO / "scripts" / "local_slurm.sh"), "start", str(folder), str(nodes)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "PYTHON": sys.executable,
           "LAUNCHER_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    for name in ("SMOKE", "SEEDS", "RESUMABLE", "PARALLEL", "DATA_DIR", "OUT_DIR", "MODEL", "MODEL_PATH"):
        env.pop(name, None)
    yield env
    subprocess.run(["bash", str(REPO / "scripts" / "local_slurm.sh"), "stop", str(folder)], timeout=120, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """Two SLURM nodes on this machine: one slurmd each (`slurmd -N`), as Debian's slurmd allows."""
    yield from start_cluster(tmp_path_factory.mktemp("slurm2"), nodes=2)


def launch_script(env: dict, script: str, *args: str, **switches: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(REPO / script), *args, *SLURM_FLAGS], env={**env, **switches},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def launch_plan(env: dict, plan: Path, runs: list[dict]) -> subprocess.CompletedProcess:
    plan.write_text(json.dumps({"runs": runs}))
    result = subprocess.run([sys.executable, "-m", "linkbert.launch", "plan", str(plan), *SLURM_FLAGS,
                             "--signal-lead", "60"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def seqcls_command(model: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-u", "-m", TASKS["pubmedqa_hf"].module, "--model_name_or_path", model,
            "--train_file", str(PUBMEDQA / "train.json"), "--validation_file", str(PUBMEDQA / "dev.json"),
            "--test_file", str(PUBMEDQA / "test.json"), "--do_train", "--do_eval", "--do_predict",
            *extra, "--output_dir", str(out)]


@pytest.fixture(scope="module")
def scenarios(cluster, tiny_model, tmp_path_factory):
    """Submits all four scenarios; returns their folders."""
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    root = tmp_path_factory.mktemp("launch")
    texts = sorted(SAMPLES.glob("*/*/*.json")) + sorted(SAMPLES.glob("*/*/*/*.json"))
    tiny = tiny_model(texts)
    smoke = {"SMOKE": "1", "SMOKE_FLAGS": SMOKE_FLAGS, "MODEL_PATH": tiny, "DATA_DIR": str(SAMPLES)}
    out: dict = {"root": root}

    # 1. Three seeds of one task: one job array.
    out["sweep"] = launch_script(cluster, "run_examples_blurb_biolinkbert-base.sh", "HoC_hf", SEEDS="1 2 3",
                                 OUT_DIR=str(root / "sweep"), **smoke)
    # 2. MedQA, then MMLU on the MedQA model.
    out["medqa"] = launch_script(cluster, "run_examples_medqa_biolinkbert-large.sh", OUT_DIR=str(root / "medqa"),
                                 **smoke)
    # 3. The same training twice, with the paper scripts' flags (no checkpoints of its own); one is
    #    pre-empted in the middle. A model big enough that an update takes a few milliseconds.
    slow = str(build_tiny_model(root / "slow_model", texts_from_jsonl(texts), hidden_size=128, num_layers=4,
                                num_heads=4))
    flags = ["--max_steps", "100", "--logging_steps", "2", "--per_device_train_batch_size", "8",
             "--max_seq_length", "128", "--disable_tqdm", "--save_strategy", "no", "--overwrite_output_dir"]
    out["plain"], out["preempted"] = root / "pre" / "plain", root / "pre" / "preempted"
    launch_plan(cluster, root / "preemption.json", [
        {"label": name, "folder": str(out[name]), "argv": seqcls_command(slow, out[name], *flags)}
        for name in ("plain", "preempted")])
    # 4. A run that fails (a typo'd flag) and one that needs it.
    out["broken"], out["after_broken"] = root / "fail" / "broken", root / "fail" / "after_broken"
    out["fail_runs"] = [
        {"label": "broken", "folder": str(out["broken"]),
         "argv": seqcls_command(tiny, out["broken"], "--learning_rat", "1e-3")},
        {"label": "after_broken", "folder": str(out["after_broken"]), "after": [str(out["broken"])],
         "argv": seqcls_command(tiny, out["after_broken"], "--max_steps", "1")},
        # A "pick the best" step reads whatever its runs left: it runs once they ended, however.
        {"label": "pick", "folder": str(root / "fail" / "pick"), "after": [str(out["broken"])],
         "after_any": True, "argv": ["bash", "-c", "echo picked"]}]
    launch_plan(cluster, root / "fail.json", out["fail_runs"])
    return out


def status(env: dict, folder: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "linkbert.launch", "status", str(folder)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def squeue_ids(env: dict) -> set[str]:
    listed = subprocess.run(["squeue", "--array", "--noheader", "--format=%i"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    return set(listed.stdout.split())


def test_preempted_run_is_requeued_and_ends_identical(cluster, scenarios):
    preempted, plain = scenarios["preempted"], scenarios["plain"]
    wait_until(lambda: "'loss'" in ((preempted / "log.txt").read_text() if (preempted / "log.txt").exists() else ""),
               "the run to be training")
    job = read_state(preempted)["job_id"]
    # What SLURM sends --signal-lead seconds before the time limit or a pre-emption.
    subprocess.run(["scancel", "--signal=USR2", job], env=cluster, check=True, timeout=60)
    state = wait_ended(preempted)
    wait_ended(plain)
    log = (preempted / "log.txt").read_text()
    assert state["state"] == "done" and state["attempts"] == 2, (state, log[-3000:])
    assert "SIGTERM received" in log and "=== launcher: resuming from" in log and "Resumed from" in log
    assert state["resumed_from"] and Path(state["resumed_from"]).name.startswith("checkpoint-")
    assert read_state(plain)["attempts"] == 1
    a, b = load_file(plain / "model.safetensors"), load_file(preempted / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for name in ("eval_predictions.jsonl", "predict_predictions.jsonl"):
        assert (plain / name).read_text() == (preempted / name).read_text(), name
    scores = [{k: v for k, v in json.loads((d / "all_results.json").read_text()).items()
               if "runtime" not in k and "per_second" not in k and "mfu" not in k and k != "run"}
               for d in (plain, preempted)]
    assert scores[0] == scores[1]


def test_three_run_sweep_is_one_job_array_and_a_relaunch_skips_it(cluster, scenarios):
    root = scenarios["root"] / "sweep"
    folders = [root / "HoC_hf" / "BioLinkBERT-base" / f"seed{s}" for s in (1, 2, 3)]
    states = [wait_ended(f) for f in folders]
    assert [s["state"] for s in states] == ["done"] * 3, states
    jobs = [s["job_id"] for s in states]
    array = {j.split("_")[0] for j in jobs}
    assert len(array) == 1 and sorted(j.split("_")[1] for j in jobs) == ["0", "1", "2"], jobs
    for folder, seed in zip(folders, (1, 2, 3)):
        assert "predict_F1" in json.loads((folder / "predict_results.json").read_text())
        assert json.loads((folder / "run_args.json").read_text())["seed"] == seed
    shown = status(cluster, root)
    assert shown.count("done") >= 3 and "3 done" in shown, shown
    again = launch_script(cluster, "run_examples_blurb_biolinkbert-base.sh", "HoC_hf", SEEDS="1 2 3",
                          OUT_DIR=str(root), SMOKE="1", SMOKE_FLAGS=SMOKE_FLAGS, DATA_DIR=str(SAMPLES),
                          MODEL_PATH=json.loads((folders[0] / "run_args.json").read_text())["model_name_or_path"])
    assert again.stdout.count("finished earlier with the same command; skipped") == 3, again.stdout
    assert "queued" not in again.stdout  # nothing submitted
    assert [read_state(f)["job_id"] for f in folders] == jobs


def test_mmlu_starts_after_medqa_through_a_slurm_dependency(cluster, scenarios):
    root = scenarios["root"] / "medqa"
    medqa, mmlu = root / "medqa_usmle_hf" / "BioLinkBERT-large", root / "mmlu_professional_medicine_eval" / "BioLinkBERT-large"
    first, second = wait_ended(medqa), wait_ended(mmlu)
    assert first["state"] == second["state"] == "done", (first, second)
    script = (root / ".slurm" / second["job_id"] / f"{second['job_id']}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{first['job_id']}" in script
    assert second["started"] >= first["ended"]
    assert json.loads((mmlu / "run_args.json").read_text())["model_name_or_path"] == str(medqa)
    assert "predict_accuracy" in json.loads((mmlu / "predict_results.json").read_text())


def test_a_failed_run_and_the_run_that_needed_it_show_as_failed(cluster, scenarios):
    broken, after = scenarios["broken"], scenarios["after_broken"]
    state = wait_ended(broken)
    assert state["state"] == "failed" and state["exit_code"] == 2
    # SLURM cancels the dependent job (its dependency can never be met): it never ran.
    wait_until(lambda: read_state(after)["job_id"] not in squeue_ids(cluster), "the dependent job to be cancelled")
    assert read_state(after)["state"] == "queued" and not (after / "log.txt").exists()
    shown = {line.split()[1]: line for line in status(cluster, broken.parent).splitlines() if str(broken.parent) in line}
    assert shown[str(broken)].startswith("failed") and "exit 2" in shown[str(broken)]
    assert "error [unknown_flag]" in shown[str(broken)] and "--learning_rat" in shown[str(broken)]
    assert shown[str(after)].startswith("failed") and "left the queue before starting" in shown[str(after)]
    pick = broken.parent / "pick"
    assert wait_ended(pick)["state"] == "done" and (pick / "log.txt").read_text() == "picked\n"
    job = read_state(pick)["job_id"]
    script = (broken.parent / ".slurm" / job / f"{job}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterany:{state['job_id']}" in script
    # Launching again reruns the failed run (and queues the one that needs it behind it), and the
    # pick step that read it: it is done, but would report on the old attempt.
    again = launch_plan(cluster, scenarios["root"] / "fail_again.json", scenarios["fail_runs"])
    assert again.stdout.count("queued  ") == 3 and read_state(broken)["job_id"] != state["job_id"]
    assert f"again   pick  (done earlier, but {broken} has ended since or runs again" in again.stdout
    assert read_state(pick)["job_id"] != job
    assert wait_ended(broken)["state"] == "failed"


def test_a_job_sbatch_refuses_is_one_error_line_and_shows_as_not_submitted(cluster, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [{"label": "x", "folder": str(tmp_path / "x"), "argv": ["true"]}]}))
    result = subprocess.run([sys.executable, "-m", "linkbert.launch", "plan", str(plan), *SLURM_FLAGS,
                             "--partition", "no_such_partition"], env=cluster, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error [bad_flag_value]: sbatch refused the job (")
    assert "Invalid partition" in result.stderr.splitlines()[-1]
    assert read_state(tmp_path / "x")["state"] == "failed"
    assert "not submitted: " in status(cluster, tmp_path)


def preempted_job_ends_with_the_one_process_weights(env: dict, tiny_model, tmp_path: Path,
                                                    shape: list[str]) -> tuple[str, str]:
    """A run of 2 processes (`shape`: the launcher's flags) submitted, warned mid-training (USR2):
    task 0 stops its rank, the stop vote stops the other after the same update, one checkpoint,
    the job is requeued and both ranks resume from it; its weights are those of one process with
    the same global batch (dropout off). Returns (the job script, the other task's log)."""
    from conftest import assert_same_weights, run_task, sample_dir

    from linkbert.seqcls.run_seqcls import SeqClsTask

    chemprot = sample_dir("chemprot_hf")
    model = tiny_model(sorted(chemprot.glob("*.json")), dropout=0.0)

    def flags(batch: int, out: Path) -> list[str]:
        return ["--model_name_or_path", model, "--train_file", str(chemprot / "train.json"),
                "--validation_file", str(chemprot / "dev.json"), "--do_train", "--metric_name", "PRF1",
                "--max_steps", "150", "--learning_rate", "1e-3", "--adam_epsilon", "1e-6", "--logging_steps", "10",
                "--save_strategy", "steps", "--save_steps", "10", "--save_total_limit", "2", "--disable_tqdm",
                "--per_device_train_batch_size", str(batch), "--output_dir", str(out)]

    out = tmp_path / "two_processes"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [{"label": "two_processes", "folder": str(out), "argv": [
        sys.executable, "-u", "-m", TASKS["chemprot_hf"].module, *flags(4, out)]}]}))
    submitted = subprocess.run([sys.executable, "-m", "linkbert.launch", "plan", str(plan), *SLURM_FLAGS,
                                *shape, "--signal-lead", "60"], env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = read_state(out)["job_id"]
    # Any complete checkpoint: with --save_total_limit 2 the first one may be rotated away between
    # two looks. The reference is computed only after the warning: computed first, on a loaded
    # machine it could outlast the whole job, which then ended before it was warned.
    wait_until(lambda: sorted_checkpoints(out), "the first checkpoint")
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=60)
    reference = tmp_path / "one_process"
    run_task(SeqClsTask, flags(8, reference))  # meanwhile, here
    state = wait_ended(out)
    log = (out / "log.txt").read_text()
    assert state["state"] == "done" and state["attempts"] == 2, (state, log[-3000:])
    assert "processes = 2" in log and "SIGTERM received: stopped after update" in log
    assert "=== launcher: resuming from" in log and "Resumed from" in log
    assert_same_weights(out, reference, atol=1e-5)
    # The other task ran its rank beside task 0, in its own submitit log, and stopped with it.
    other = (tmp_path / ".slurm" / job / f"{job}_1_log.out").read_text()
    assert "SIGTERM (on another rank)" in other or "SIGTERM received" in other, other[-3000:]
    script = (tmp_path / ".slurm" / job / f"{job}_submission.sh").read_text()
    return script, other


def test_a_two_task_job_is_preempted_requeued_and_ends_with_the_one_process_weights(cluster, tiny_model, tmp_path):
    """`--nproc_per_node 2`: one job of 2 tasks (2 gloo processes, torchrun's environment from SLURM's)."""
    script, _ = preempted_job_ends_with_the_one_process_weights(
        cluster, tiny_model, tmp_path, ["--gpus-per-node", "0", "--nproc_per_node", "2"])
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --nodes=1" in script


def test_a_two_node_job_is_preempted_requeued_and_ends_with_the_one_process_weights(two_node_cluster, tiny_model,
                                                                                   tmp_path):
    """`--nodes 2`: one job on two SLURM nodes (two slurmd on this machine), one task on each."""
    script, other = preempted_job_ends_with_the_one_process_weights(
        two_node_cluster, tiny_model, tmp_path, ["--nodes", "2", "--gpus-per-node", "0", "--nproc_per_node", "1"])
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "node=1(2), global_rank=1(2)" in other  # the second task ran on the second node
