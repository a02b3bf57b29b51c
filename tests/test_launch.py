"""The launcher without SLURM: relaunching skips what is done and resumes what was stopped,
`status`, plan files with dependencies, paths resolved against the repository, the SLURM dry run.
(The run scripts' flags and scheduling: test_run_scripts.py; SLURM for real: test_slurm.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_run_scripts import fake_setup, read_record, run_script, script_env

from linkbert.launch import Run, launch
from linkbert.launch.process import attempt_argv
from linkbert.launch.slurm import minutes
from linkbert.launch.state import write_state

SCRIPT = "run_examples_blurb_biolinkbert-base.sh"


def status(folder: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "linkbert.launch", "status", str(folder)], env=script_env(),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return {line.split()[1]: line for line in out.splitlines() if str(folder) in line}


def test_relaunch_skips_done_runs_reruns_failed_ones_and_status_says_which(tmp_path):
    env, record = fake_setup(tmp_path, {f"seqcls/{t}": ["train", "dev", "test"] for t in ("HoC_hf", "GAD_hf")})
    first = run_script(SCRIPT, "HoC_hf", "GAD_hf", FAIL_TASK="HoC_hf", **env)
    assert first.returncode == 1
    hoc, gad = (str(tmp_path / "runs" / t / "BioLinkBERT-base") for t in ("HoC_hf", "GAD_hf"))
    shown = status(tmp_path / "runs")
    assert shown[gad].startswith("done")
    assert shown[hoc].startswith("failed") and "exit 3" in shown[hoc] and f"fake run of {hoc}" in shown[hoc]

    again = run_script(SCRIPT, "HoC_hf", "GAD_hf", **env)  # HoC no longer fails
    assert again.returncode == 0, again.stdout + again.stderr
    assert "GAD_hf  (finished earlier with the same command; skipped: delete" in again.stdout
    starts = [out for event, _, _, out in read_record(record) if event == "start"]
    assert starts.count(gad) == 1 and starts.count(hoc) == 2
    assert all(line.startswith("done") for line in status(tmp_path / "runs").values())


def test_a_stopped_run_resumes_from_its_checkpoint_a_changed_one_starts_over(tmp_path):
    out = tmp_path / "run"
    run = Run(label="x", folder=str(out), argv=["python", "-m", "m", "--do_train", "--overwrite_output_dir"])
    assert attempt_argv(run) == (run.argv, None)
    for step in (40, 120):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-200").mkdir()  # not a checkpoint: no trainer_state.json
    write_state(out, argv=run.argv, state="interrupted")
    argv, checkpoint = attempt_argv(run)
    assert checkpoint == out / "checkpoint-120" and argv == [*run.argv, "--resume_from_checkpoint", str(checkpoint)]
    write_state(out, argv=[*run.argv, "--learning_rate", "1"])  # an earlier, different command
    assert attempt_argv(run) == (run.argv, None)
    write_state(out, argv=run.argv, state="done")
    assert attempt_argv(run) == (run.argv, None)


def test_a_plan_waits_for_success_or_for_the_end_of_its_runs(tmp_path):
    """`after`: only once they succeeded; `after_any` (a pick-the-best step): once they ended."""
    def run(name: str, code: int, **kw) -> Run:
        script = f"echo ran {name} >> {tmp_path}/order; exit {code}"
        return Run(label=name, folder=str(tmp_path / name), argv=["bash", "-c", script], **kw)

    configs = [run("a", 0), run("b", 3)]
    dirs = [r.folder for r in configs]
    plan = [*configs, run("needs_all", 0, after=dirs), run("pick_best", 0, after=dirs, after_any=True)]
    lines: list[str] = []
    assert launch(plan, say=lines.append) == 1
    assert (tmp_path / "order").read_text().split("\n")[:-1] == ["ran a", "ran b", "ran pick_best"]
    assert "  SKIPPED needs_all  (a run it waits for failed)" in lines


def test_a_relaunch_reruns_a_pick_step_whose_runs_ended_after_it(tmp_path):
    """A pick-the-best step that ran while a configuration had failed runs again once that
    configuration reruns, and again when a configuration ended after it started; not otherwise."""
    flag = tmp_path / "b_fails"
    flag.write_text("")

    def run(name: str, script: str, **kw) -> Run:
        return Run(label=name, folder=str(tmp_path / name), argv=["bash", "-c", f"echo {name} >> {tmp_path}/order; {script}"],
                   **kw)

    configs = [run("a", "true"), run("b", f"test ! -e {flag}")]
    plan = [*configs, run("pick", "true", after=[r.folder for r in configs], after_any=True, cpu_only=True)]
    assert launch(plan, say=lambda line: None) == 1
    flag.unlink()
    lines: list[str] = []
    assert launch(plan, say=lines.append) == 0
    assert any(line.startswith("again   pick") for line in lines), lines
    assert launch(plan, say=lambda line: None) == 0  # nothing new: every run is skipped
    later = json.loads((tmp_path / "pick" / "launch.json").read_text())["started"] + 1
    write_state(tmp_path / "a", ended=later)  # `a` rerun on its own after the pick started
    assert launch(plan, say=lambda line: None) == 0
    assert (tmp_path / "order").read_text().split() == ["a", "b", "pick", "b", "pick", "pick"]


def test_in_parallel_a_cpu_only_step_takes_no_gpu(tmp_path):
    def run(name: str, **kw) -> Run:
        script = f"echo {name}=[$CUDA_VISIBLE_DEVICES] >> {tmp_path}/seen"
        return Run(label=name, folder=str(tmp_path / name), argv=["bash", "-c", script], **kw)

    plan = [run("a"), run("pick", after=[str(tmp_path / "a")], after_any=True, cpu_only=True)]
    assert launch(plan, gpus=["7"], say=lambda line: None) == 0
    assert (tmp_path / "seen").read_text().split() == ["a=[7]", "pick=[]"]


def test_a_plan_file_names_each_run_folder_as_folder_or_as_output_dir(tmp_path):
    """Plan files written before the rename (key "output_dir") still read; a run without either is
    one bad_flag_value line naming the file."""
    from linkbert.core.errors import UserError
    from linkbert.launch.plan import plan_file_runs

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [{"folder": "runs/a", "argv": ["true"]},
                                         {"label": "b", "output_dir": "runs/b", "argv": ["true"], "after": ["runs/a"]}]}))
    runs = plan_file_runs(plan)
    assert [(r.label, r.folder, r.after) for r in runs] == [("runs/a", "runs/a", []), ("b", "runs/b", ["runs/a"])]
    plan.write_text(json.dumps({"runs": [{"label": "c", "argv": ["true"]}]}))
    with pytest.raises(UserError, match="not a plan file") as refused:
        plan_file_runs(plan)
    assert refused.value.kind == "bad_flag_value" and str(plan) in str(refused.value)


def test_paths_resolve_against_the_repository_from_any_folder(tmp_path, monkeypatch):
    result = subprocess.run(["bash", str(REPO / SCRIPT), "--dry-run", "HoC_hf"], cwd=tmp_path, env=script_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    cmd = result.stdout.split()
    assert cmd[cmd.index("--train_file") + 1] == f"{REPO}/data/seqcls/HoC_hf/train.json"
    assert cmd[cmd.index("--output_dir") + 1] == f"{REPO}/runs/HoC_hf/BioLinkBERT-base"
    from linkbert.launch.__main__ import fetch_hint

    monkeypatch.chdir(tmp_path)  # the hint for missing data works from here too
    assert f"with:  bash {REPO}/scripts/download_data.sh\n" in fetch_hint(REPO, None)
    monkeypatch.chdir(REPO)
    assert "with:  bash scripts/download_data.sh\n" in fetch_hint(REPO, None)


def test_the_samples_folder_is_not_offered_as_a_download_target():
    result = run_script(SCRIPT, "GAD_hf", DATA_DIR="data/samples")
    assert result.returncode == 1
    assert "data/samples/seqcls/GAD_hf/train.json" in result.stderr
    assert "holds only the project's small test samples" in result.stderr
    assert "DATA_DIR=data/samples bash" not in result.stderr and "bash scripts/download_data.sh" in result.stderr


def test_slurm_dry_run_prints_the_job_scripts_and_submits_nothing():
    result = run_script("run_examples_medqa_biolinkbert-large.sh", "--dry-run", "--backend", "slurm",
                        "--partition", "gpu", "--account", "lab", "--time", "2-00:00:00", "--mem", "64G",
                        "--sbatch", "constraint=a100")
    assert result.returncode == 0, result.stderr
    scripts = result.stdout.split("#!/bin/bash")
    assert len(scripts) == 3  # one job script per run
    for flag in ("--partition=gpu", "--account=lab", "--time=2880", "--mem=64G", "--gpus-per-node=1",
                 "--cpus-per-task=8", "--signal=USR2@300", "--requeue", "--constraint=a100"):
        assert f"#SBATCH {flag}" in scripts[1] and f"#SBATCH {flag}" in scripts[2], flag
    assert "--dependency" not in scripts[1]
    assert "#SBATCH --dependency='afterok:<job of runs/medqa_usmle_hf/BioLinkBERT-large>'" in scripts[2]
    assert "--output_dir runs/mmlu_professional_medicine_eval/BioLinkBERT-large" in scripts[1].split("\n")[-2]


@pytest.mark.parametrize("text,expected", [("90", 90), ("30:00", 30), ("12:00:00", 720), ("1-00:00:00", 1440),
                                           ("2-12", 3600), ("0:30:30", 31)])
def test_slurm_time_formats(text, expected):
    assert minutes(text) == expected


def test_plan_file_errors_are_one_line(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [{"label": "no folder"}]}))
    result = subprocess.run([sys.executable, "-m", "linkbert.launch", "plan", str(plan)], env=script_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.startswith("error [bad_flag_value]: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_status_checks_the_recorded_state_against_the_queue_and_the_process():
    import socket

    from linkbert.launch.state import current_state

    queue = {"7": "PENDING", "8_1": "RUNNING"}
    assert current_state({"state": "queued", "job_id": "7"}, queue) == ("queued", "job 7, pending")
    assert current_state({"state": "interrupted", "job_id": "8_1", "attempts": 2}, queue) == \
        ("running", "job 8_1, running, attempt 2")  # pre-empted, requeued, running again
    name, detail = current_state({"state": "queued", "job_id": "9"}, queue)
    assert name == "failed" and "left the queue before starting" in detail
    assert current_state({"state": "done", "job_id": "9"}, queue) == ("done", "job 9")
    dead = {"state": "running", "host": socket.gethostname(), "pid": 2 ** 22 + 12345}  # above pid_max
    assert current_state(dead, None)[0] == "interrupted"
    assert current_state({**dead, "pid": os.getpid()}, None)[0] == "running"


def test_a_warning_lead_longer_than_half_the_time_limit_is_refused():
    result = run_script("run_examples_medqa_biolinkbert-base.sh", "--dry-run", "--backend", "slurm", "--time", "8")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error [conflicting_flags]: --signal-lead 300 s is not well under --time 8")


def test_prune_deletes_all_but_the_newest_set_aside_runs(tmp_path):
    from linkbert.core.rundir import PREVIOUS_RUNS_DIR, set_aside

    run_dirs = [tmp_path / "runs" / task / "BioLinkBERT-base" for task in ("HoC_hf", "GAD_hf")]
    for attempt in range(3):  # three --overwrite_output_dir reruns of HoC (within a second: <stamp>-2, -3)
        (run_dirs[0] / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (run_dirs[0] / "model.safetensors").write_text(f"attempt {attempt}" * 1000)
        set_aside(run_dirs[0])
    run_dirs[1].mkdir(parents=True)
    (run_dirs[1] / "all_results.json").write_text("{}")
    set_aside(run_dirs[1])

    def prune(*flags: str) -> str:
        done = subprocess.run([sys.executable, "-m", "linkbert.launch", "prune", str(tmp_path / "runs"), *flags],
                              env=script_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def kept(run_dir: Path) -> list[str]:
        return [(p / "model.safetensors").read_text()[:9] for p in sorted((run_dir / PREVIOUS_RUNS_DIR).iterdir())]

    assert "2 set-aside run(s), would free" in prune("--keep", "1", "--dry-run")
    assert kept(run_dirs[0]) == ["attempt 0", "attempt 1", "attempt 2"]  # a dry run deletes nothing
    assert "2 set-aside run(s), freed" in prune("--keep", "1")
    assert kept(run_dirs[0]) == ["attempt 2"] and len(list((run_dirs[1] / PREVIOUS_RUNS_DIR).iterdir())) == 1
    assert "nothing to delete" in prune("--keep", "1")
    prune("--keep", "0")
    assert not any((d / PREVIOUS_RUNS_DIR).exists() for d in run_dirs)
    refused = subprocess.run([sys.executable, "-m", "linkbert.launch", "prune", str(tmp_path), "--keep", "-1"],
                             env=script_env(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.startswith("error [bad_flag_value]")


def test_a_relaunch_reruns_a_run_that_loads_a_rerun_model_but_not_one_that_only_waited(tmp_path):
    """MMLU loads MedQA's folder: a MedQA rerun reruns it. A run that only waited (a barrier)
    is not repeated for it: a finished training run is never redone for nothing."""
    medqa = tmp_path / "medqa"

    def run(name: str, *argv: str, **kw) -> Run:
        return Run(label=name, folder=str(tmp_path / name),
                   argv=["bash", "-c", f"echo {name} >> {tmp_path}/order", name, *argv], **kw)

    plan = [run("medqa"), run("mmlu", "--model_name_or_path", str(medqa), after=[str(medqa)]),
            run("waited", after=[str(medqa)])]
    assert launch(plan, say=lambda line: None) == 0
    write_state(medqa, state="failed")  # as if MedQA failed later, e.g. rerun by hand
    assert launch(plan, say=lambda line: None) == 0
    assert (tmp_path / "order").read_text().split() == ["medqa", "mmlu", "waited", "medqa", "mmlu"]


def test_an_interrupted_run_is_reported_as_interrupted_with_the_command_that_resumes(tmp_path):
    env, record = fake_setup(tmp_path, {f"seqcls/{t}": ["train", "dev", "test"] for t in ("HoC_hf", "GAD_hf")})
    # HoC exits as a run stopped by Ctrl-C does, after its checkpoint: 130.
    result = run_script(SCRIPT, "HoC_hf", "GAD_hf", FAIL_TASK="HoC_hf", FAIL_CODE="130", SMOKE="1", **env)
    assert result.returncode == 130, result.stdout + result.stderr
    hoc = tmp_path / "runs" / "HoC_hf" / "BioLinkBERT-base"
    assert f"  interrupted  HoC_hf  (exit 130; stopped at its last checkpoint, {hoc}/log.txt)" in result.stdout
    assert "FAILED" not in result.stdout and "some runs failed" not in result.stderr
    assert status(tmp_path / "runs")[str(hoc)].startswith("interrupted")
    resume = result.stdout.split("interrupted; to resume, run:  ")[1].splitlines()[0]
    assert resume == (f"DATA_DIR={env['DATA_DIR']} OUT_DIR={env['OUT_DIR']} PYTHON={env['PYTHON']} SMOKE=1 "
                      f"bash {REPO / SCRIPT} HoC_hf GAD_hf")
    # The command given resumes: the interrupted run runs again, the finished one is skipped.
    again = subprocess.run(["bash", "-c", resume], cwd=tmp_path, env=script_env(RECORD=env["RECORD"]),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "GAD_hf  (finished earlier with the same command" in again.stdout
    assert [out for event, _, _, out in read_record(record) if event == "start"].count(str(hoc)) == 2


def test_a_launched_run_names_the_launcher_command_when_interrupted(tmp_path, monkeypatch):
    from linkbert.core.engine import TrainingInterrupted

    monkeypatch.delenv("LINKBERT_RESUME_COMMAND", raising=False)
    out = tmp_path / "run"
    out.mkdir()
    show = "import os; print('resume:', os.environ.get('LINKBERT_RESUME_COMMAND'))"
    run = Run(label="x", folder=str(out), argv=[sys.executable, "-c", show])
    assert launch([run], resume="SMOKE=1 bash run_examples_x.sh", say=lambda line: None) == 0
    assert "resume: SMOKE=1 bash run_examples_x.sh" in (out / "log.txt").read_text()
    assert "LINKBERT_RESUME_COMMAND" not in os.environ  # set for the runs only
    # The run's own message: its command would start afresh under a script (--overwrite_output_dir).
    assert "Run the same command again (without --overwrite_output_dir" in str(TrainingInterrupted("SIGINT", 9, None))
    monkeypatch.setenv("LINKBERT_RESUME_COMMAND", "SMOKE=1 bash run_examples_x.sh")
    message = str(TrainingInterrupted("SIGINT", 9, out / "checkpoint-9"))
    assert message.endswith(f"checkpoint {out / 'checkpoint-9'} written. To continue, run:  SMOKE=1 bash run_examples_x.sh")


def test_ctrl_c_in_the_terminal_stops_the_launcher_with_the_command_that_resumes(tmp_path):
    import signal
    import time

    env, record = fake_setup(tmp_path, {"seqcls/HoC_hf": ["train", "dev", "test"]})
    # A terminal's Ctrl-C reaches processes that take SIGINT; pytest started in the background
    # (`pytest &`) ignores it, and so would every child, so the script starts with it restored.
    process = subprocess.Popen(["bash", str(REPO / SCRIPT), "HoC_hf"], cwd=REPO, start_new_session=True,
                               env=script_env(FAKE_SLEEP="60", **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not (record.exists() and "start" in record.read_text()):  # the run has started
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets SIGINT
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "HoC_hf stopped at its checkpoint" in out and "some runs failed" not in err
    assert f"interrupted; to resume, run:  DATA_DIR={env['DATA_DIR']} " in out and f"bash {REPO / SCRIPT} HoC_hf" in out


PRETRAIN = "run_examples_pretrain_linkbert.sh"


def test_pretraining_goes_through_the_launcher_and_status_lists_it(tmp_path):
    env, record = fake_setup(tmp_path, {})
    corpus = tmp_path / "wiki.jsonl"
    missing = run_script(PRETRAIN, "LinkBERT-base", WIKI_CORPUS=str(corpus), **env)
    assert missing.returncode == 1 and str(corpus) in missing.stderr
    assert "build_linked_corpus.py wikipedia" in missing.stderr and not record.exists()

    corpus.write_text("{}\n")
    done = run_script(PRETRAIN, "LinkBERT-base", "--nproc_per_node", "1", WIKI_CORPUS=str(corpus),
                      OUT_DIR=str(tmp_path / "runs" / "pretrain"), **{k: v for k, v in env.items() if k != "OUT_DIR"})
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "runs" / "pretrain" / "LinkBERT-base"
    assert [out for event, _, _, out in read_record(record) if event == "start"] == [str(folder)]
    assert status(tmp_path / "runs")[str(folder)].startswith("done")
    argv = json.loads((folder / "launch.json").read_text())["argv"]
    assert argv[1:4] == ["-u", "-m", "linkbert.pretrain.run_pretrain"] and f"--corpus_file {corpus}" in " ".join(argv)


def test_pretraining_on_two_slurm_nodes_dry_run_prints_one_job_of_two_nodes(tmp_path):
    result = run_script(PRETRAIN, "--backend", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--dry-run")
    assert result.returncode == 0, result.stderr
    scripts = result.stdout.split("#!/bin/bash")[1:]
    assert len(scripts) == 4  # one job per released model
    for script in scripts:
        for flag in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR2@300", "--requeue"):
            assert f"#SBATCH {flag}" in script, flag
        assert "srun " in script and "--kill-on-bad-exit=1" in script
    assert result.stdout.count("# on each of the 2 node(s): 8 task(s)") == 4
    assert "WORLD_SIZE=16" in result.stdout
    # Locally, several nodes: the command to start on each, torchrun meeting through c10d.
    local = run_script(PRETRAIN, "LinkBERT-base", "--nodes", "2", "--gpus-per-node", "8", "--dry-run")
    assert local.returncode == 0, local.stderr
    command = [line for line in local.stdout.splitlines() if not line.startswith("#")][0].split()
    assert command[1:9] == ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "8",
                            "--rdzv-backend", "c10d"]
    (tmp_path / "wiki.jsonl").write_text("{}\n")
    refused = run_script(PRETRAIN, "LinkBERT-base", "--nodes", "2", WIKI_CORPUS=str(tmp_path / "wiki.jsonl"))
    assert refused.returncode == 2 and refused.stderr.startswith("error [unsupported_setup]: --nodes 2 with --backend local")


def test_parallel_runs_of_two_processes_each_take_two_gpus_under_torchrun(tmp_path):
    """PARALLEL=1 with --nproc_per_node 2: each run is a torchrun of 2 processes pinned to 2 GPUs,
    never sharing one with another run at the same time."""
    env, record = fake_setup(tmp_path, {f"seqcls/{t}": ["train", "dev", "test"] for t in ("HoC_hf", "GAD_hf")})
    result = run_script(SCRIPT, "HoC_hf", "GAD_hf", "--nproc_per_node", "2", PARALLEL="1", GPUS="0 1 2 3",
                        SEEDS="1 2 3", FAKE_SLEEP="0.3", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_record(record)
    starts = {out: (t, gpu) for event, t, gpu, out in rows if event == "start"}
    ends = {out: t for event, t, _, out in rows if event == "end"}
    assert len(starts) == 6
    for out, (start, gpus) in starts.items():
        assert len(set(gpus.split(","))) == 2 and set(gpus.split(",")) <= {"0", "1", "2", "3"}, gpus
        for other, (other_start, other_gpus) in starts.items():
            if other != out and other_start < ends[out] and start < ends[other]:
                assert not set(gpus.split(",")) & set(other_gpus.split(","))
        argv = json.loads((Path(out) / "launch.json").read_text())["argv"]
        assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
