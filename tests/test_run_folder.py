"""A run folder is recognised, never assumed (issue 25): a folder that is a repository or holds
a run's inputs is refused before anything moves; --overwrite_output_dir and `launch prune` touch
only what a run wrote; one writer per run; every results file says what wrote it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_task
# The fixtures of a finished run of 4 updates with test predictions (a copy per test), shared with test_faults.
from test_faults import ALL_FILES, CHEMPROT, model, refused, train_argv, trained, trained_once  # noqa: F401
from test_run_scripts import script_env
from linkbert.core import engine as engine_module
from linkbert.core.rundir import PREVIOUS_RUNS_DIR, RunFolder, set_aside
from linkbert.core.run import main
from linkbert.seqcls.run_seqcls import SeqClsTask


def project_folder(root: Path) -> Path:
    """A researcher's project folder: a repository, sources, notes."""
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "src").mkdir()
    (root / "src" / "train.py").write_text("print('mine')\n")
    (root / "notes.md").write_text("results so far\n")
    return root


# -- refused before anything moves ------------------------------------------------------------
def test_output_dir_with_a_git_folder_is_refused_and_nothing_moves(model, tmp_path, capsys):
    project = project_folder(tmp_path / "project")
    line = refused("output_dir_unsafe", train_argv(model, project, "--overwrite_output_dir"), capsys, project)
    assert "repository" in line and str(project) in line


def test_the_current_repository_and_a_folder_holding_it_are_refused(model, tmp_path, capsys, monkeypatch):
    project = project_folder(tmp_path / "work" / "project")
    monkeypatch.chdir(project)
    refused("output_dir_unsafe", train_argv(model, ".", "--overwrite_output_dir"), capsys, project)
    refused("output_dir_unsafe", train_argv(model, tmp_path / "work", "--overwrite_output_dir"), capsys,
            tmp_path / "work")
    run_task(SeqClsTask, train_argv(model, "runs/first", "--max_steps", "1"))  # a folder inside it is fine
    assert (project / "runs" / "first" / "model.safetensors").exists()


def test_the_data_folder_is_refused_and_nothing_moves(model, tmp_path, capsys):
    data = Path(shutil.copytree(CHEMPROT, tmp_path / "data"))
    argv = train_argv(model, data, "--overwrite_output_dir", data=data, predict=True)
    assert "--train_file" in refused("output_dir_unsafe", argv, capsys, data)
    # a prediction-only run too: its test file would sit among its results
    predict = ["--model_name_or_path", model, "--test_file", data / "test.json", "--do_predict", "--output_dir", data]
    assert "--test_file" in refused("output_dir_unsafe", predict, capsys, data)


def test_the_model_folder_of_a_training_run_is_refused_and_nothing_moves(model, tmp_path, capsys):
    start = Path(shutil.copytree(model, tmp_path / "start"))
    line = refused("output_dir_unsafe", train_argv(start, start, "--overwrite_output_dir"), capsys, start)
    assert "--model_name_or_path" in line
    # a folder that holds it (the model one level down) as well
    refused("output_dir_unsafe", train_argv(start, tmp_path, "--overwrite_output_dir"), capsys, tmp_path)


def test_prediction_into_the_trained_folder_it_loads_is_still_allowed(trained):
    run_task(SeqClsTask, ["--model_name_or_path", trained, "--test_file", CHEMPROT / "test.json", "--do_predict",
                          "--output_dir", trained, "--overwrite_output_dir", "--disable_tqdm", "True"])
    assert (trained / "predict_results.json").exists()


# -- --overwrite_output_dir and prune touch only what a run wrote ---------------------------------
def test_overwrite_sets_aside_only_run_files_and_names_the_rest(model, trained, caplog):
    (trained / "notes.md").write_text("mine\n")
    (trained / "analysis").mkdir()
    (trained / "analysis" / "plot.py").write_text("pass\n")
    with caplog.at_level(logging.WARNING, logger="linkbert"):
        run_task(SeqClsTask, train_argv(model, trained, "--max_steps", "2", "--overwrite_output_dir"))
    assert (trained / "notes.md").read_text() == "mine\n" and (trained / "analysis" / "plot.py").exists()
    (aside,) = (trained / PREVIOUS_RUNS_DIR).iterdir()
    moved = {p.name for p in aside.iterdir()}
    assert {"model.safetensors", "train_results.json", "checkpoint-4", "predict_results.json"} <= moved
    assert not moved & {"notes.md", "analysis"}
    left = [r.getMessage() for r in caplog.records if "left in place" in r.getMessage()]
    assert left == ["--overwrite_output_dir: left in place, not written by a run: analysis, notes.md"]


def test_a_file_a_run_wrote_is_set_aside_by_its_recorded_name_and_a_like_named_one_stays(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_text("RTE.tsv", "index\tprediction\n")  # a GLUE submission file: no known name
    (folder.path / "mine.tsv").write_text("my own table\n")
    aside = set_aside(folder.path)
    assert aside is not None and (aside / "RTE.tsv").exists() and not (folder.path / "RTE.tsv").exists()
    assert (folder.path / "mine.tsv").read_text() == "my own table\n"


def test_prune_deletes_only_what_a_run_wrote(tmp_path):
    run_dir = tmp_path / "runs" / "task" / "model"
    old = run_dir / PREVIOUS_RUNS_DIR / "20260101T000000Z"  # set aside by an older version: everything moved
    project_folder(old)
    (old / "model.safetensors").write_text("weights" * 100)
    (old / "checkpoint-4").mkdir()
    (old / "checkpoint-4" / "trainer_state.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "linkbert.launch", "prune", str(tmp_path / "runs"), "--keep", "0"],
                          env=script_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in old.iterdir()) == [".git", "notes.md", "src"]
    assert (old / "src" / "train.py").read_text() == "print('mine')\n"
    assert "left, not written by a run: .git, notes.md, src" in done.stdout


# -- one writer per run -----------------------------------------------------------------------------
def test_a_second_launcher_skips_the_live_run_and_writes_nothing_into_it(tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    # "started" once the launcher has put the first line into log.txt (it copies the run's output
    # there as it comes), so that the second launcher is the only other writer the test could see.
    script = (f"echo first line; until grep -q 'first line' {out}/log.txt 2>/dev/null; do sleep 0.05; done; "
              f"touch {tmp_path}/started; while [ ! -e {go} ]; do sleep 0.05; done; echo last line")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [{"label": "slow", "folder": str(out), "argv": ["bash", "-c", script]}]}))
    command = [sys.executable, "-m", "linkbert.launch", "plan", str(plan)]
    first = subprocess.Popen(command, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(1200):  # until the run is under way (at most a minute)
            if (tmp_path / "started").exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        assert (tmp_path / "started").exists(), f"the first launcher did not start its run (exit {first.poll()})"
        log, state = (out / "log.txt").read_bytes(), (out / "launch.json").read_bytes()
        second = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=120)
        assert "slow: skipped, being written by another launcher (process" in second.stdout, second.stdout
        assert "BUSY" in second.stdout
        assert (out / "log.txt").read_bytes() == log and (out / "launch.json").read_bytes() == state
    finally:
        go.touch()
        output = first.communicate(timeout=120)[0]
    assert first.returncode == 0, output
    assert (out / "log.txt").read_text() == "first line\nlast line\n"
    assert json.loads((out / "launch.json").read_text())["state"] == "done"


# -- results say what they are ----------------------------------------------------------------------
def test_every_results_file_records_the_command_that_wrote_it(trained):
    for name, phase in (("train_results.json", "train"), ("predict_results.json", "predict")):
        record = json.loads((trained / name).read_text())["run"]
        assert record["phase"] == phase and record["complete"] is True
        assert "--output_dir" in record["command"] and record["written_at"].endswith("Z")
    train = json.loads((trained / "train_results.json").read_text())
    assert train["run"]["partial"] is True  # --max_steps 4 stops before the 3 epochs
    predict = json.loads((trained / "predict_results.json").read_text())
    # Scored with the whole test split, but by a model whose training --max_steps cut: partial too.
    assert predict["run"]["partial"] is True and "predict_accuracy" in predict
    merged = json.loads((trained / "all_results.json").read_text())
    assert set(merged["run"]["phases"]) == {"train", "predict"} and merged["run"]["partial"] is True


def test_re_prediction_of_three_samples_says_it_is_partial(model, trained):
    run_task(SeqClsTask, ["--model_name_or_path", trained, "--test_file", CHEMPROT / "test.json", "--do_predict",
                          "--max_predict_samples", "3", "--output_dir", trained, "--overwrite_output_dir",
                          "--disable_tqdm", "True"])
    predict = json.loads((trained / "predict_results.json").read_text())
    assert predict["predict_samples"] == 3 and predict["run"]["partial"] is True
    assert "--max_predict_samples" in predict["run"]["command"]
    merged = json.loads((trained / "all_results.json").read_text())
    assert merged["run"]["phases"]["predict"]["partial"] is True and merged["predict_samples"] == 3


def test_re_prediction_stopped_by_sigterm_leaves_no_old_score_in_all_results(model, trained, capsys, monkeypatch):
    old = json.loads((trained / "all_results.json").read_text())
    assert "predict_accuracy" in old
    original = engine_module.Engine.predict

    def killed(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    monkeypatch.setattr(engine_module.Engine, "predict", killed)
    with pytest.raises(SystemExit) as exit_info:
        main(SeqClsTask, [str(a) for a in ["--model_name_or_path", trained, "--test_file", CHEMPROT / "test.json",
                                           "--do_predict", "--output_dir", trained, "--overwrite_output_dir",
                                           "--disable_tqdm", "True"]])
    assert exit_info.value.code == 143
    assert not (trained / "predict_results.json").exists()
    merged = json.loads((trained / "all_results.json").read_text())
    assert not any(k.startswith("predict_") for k in merged) and "predict" not in merged["run"]["phases"]
    assert {k: v for k, v in merged.items() if k != "run"} == {k: v for k, v in old.items()
                                                                  if not k.startswith("predict_") and k != "run"}
    (aside,) = (trained / PREVIOUS_RUNS_DIR).iterdir()
    assert json.loads((aside / "all_results.json").read_text()) == old  # nothing lost


def test_epoch_after_a_mid_epoch_resume_is_the_uninterrupted_runs(model, tmp_path, monkeypatch):
    # 48 examples, batch 4: 12 updates an epoch; stopped after update 2, resumed, ended at update 6.
    argv = ["--max_steps", "6", "--save_steps", "2", "--logging_steps", "1"]
    with monkeypatch.context() as m:
        original = engine_module.Engine.save_checkpoint

        def save_then_signal(self, *a, **k):
            path = original(self, *a, **k)
            os.kill(os.getpid(), signal.SIGTERM)
            return path

        m.setattr(engine_module.Engine, "save_checkpoint", save_then_signal)
        with pytest.raises(engine_module.TrainingInterrupted):
            run_task(SeqClsTask, train_argv(model, tmp_path / "resumed", *argv))
    run_task(SeqClsTask, train_argv(model, tmp_path / "resumed", *argv))
    run_task(SeqClsTask, train_argv(model, tmp_path / "straight", *argv))

    def epochs(folder: str) -> tuple[float, list[tuple[int, float]]]:
        history = json.loads((tmp_path / folder / "trainer_state.json").read_text())["log_history"]
        return (json.loads((tmp_path / folder / "train_results.json").read_text())["epoch"],
                [(e["step"], e["epoch"]) for e in history if "loss" in e])

    assert epochs("resumed") == epochs("straight")
    final, logged = epochs("resumed")
    assert final == 0.5 and logged == [(step, round(step / 12, 2)) for step in range(1, 7)]


def test_the_run_folder_and_the_launcher_import_no_torch():
    code = "import sys, linkbert.core.rundir, linkbert.launch.__main__; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=script_env(), capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
