"""GLUE sweeps: the grid as runs, local resumable running, selection by dev score."""

import json

import pytest
from conftest import run_task
from test_glue import glue_data, glue_model, read_jsonl  # noqa: F401  (module fixtures)

from linkbert import sweep
from linkbert.metrics import glue
from linkbert.seqcls.run_seqcls import SeqClsTask
from linkbert.tasks import MODULES


def test_the_grid_and_its_commands(tmp_path):
    runs = sweep.glue_runs("mnli", "michiyasunaga/LinkBERT-base", tmp_path / "data", tmp_path / "out")
    assert len(runs) == 5 * 3 * 3
    assert {r.config["learning_rate"] for r in runs} == {5e-6, 1e-5, 2e-5, 3e-5, 5e-5}
    assert len({r.folder for r in runs}) == 45 and runs[0].name == "lr5e-06_bs16_ep3"
    argv = runs[0].argv
    assert argv[argv.index("--max_seq_length") + 1] == "128" and "--validation_mismatched_file" in argv
    assert "--do_predict" in argv and "--test_mismatched_file" in argv
    assert argv[-2:] == ["--output_dir", str(tmp_path / "out" / "lr5e-06_bs16_ep3")]
    assert sweep.main(["--task_name", "rte", "--model_name_or_path", "m", "--data_dir", str(tmp_path),
                       "--output_dir", str(tmp_path / "o"), "--epochs", "3", "--dry_run", "--", "--fp16"]) == 0


def write_eval(run, **scores):
    run.folder.mkdir(parents=True)
    (run.folder / "eval_results.json").write_text(json.dumps({f"eval_{k}": v for k, v in scores.items()}))


def test_pick_best_uses_the_glue_task_score(tmp_path):
    runs = sweep.glue_runs("mnli", "m", tmp_path, tmp_path / "sweep", {"learning_rate": (1e-5, 2e-5, 3e-5),
                           "per_device_train_batch_size": (32,), "num_train_epochs": (3,)})
    write_eval(runs[0], accuracy=0.80, accuracy_mm=0.90)  # mean 0.85
    write_eval(runs[1], accuracy=0.86, accuracy_mm=0.82)  # mean 0.84: best matched, not best mean
    results = sweep.pick_best("mnli", runs, tmp_path / "sweep")
    assert results["best"]["name"] == runs[0].name and results["best"]["dev_score"] == pytest.approx(0.85)
    assert results["missing"] == [runs[2].name]
    assert json.loads((tmp_path / "sweep" / "sweep_results.json").read_text()) == json.loads(json.dumps(results))


def test_two_config_sweep_on_the_tiny_model(glue_data, glue_model, tmp_path):  # noqa: F811
    grid = {"learning_rate": (1e-4, 5e-2), "per_device_train_batch_size": (4,), "num_train_epochs": (1,)}
    runs = sweep.glue_runs("mrpc", glue_model, glue_data / "mrpc", tmp_path / "sweep", grid,
                           ["--max_steps", "2", "--disable_tqdm"])
    ran = []
    runner = lambda run: ran.append(run.name) or run_task(SeqClsTask, run.argv) and 0  # noqa: E731
    assert sweep.run_locally(runs, runner) == {r.name: 0 for r in runs}
    assert ran == [r.name for r in runs]
    results = sweep.pick_best("mrpc", runs, tmp_path / "sweep")
    recomputed = {}
    for run in runs:
        records = read_jsonl(run.folder / "eval_predictions.jsonl")
        scores = glue.glue_metrics("mrpc", [r["prediction"] for r in records], [r["label"] for r in records])
        recomputed[run.name] = (scores["f1"] + scores["accuracy"]) / 2
    best = max(recomputed, key=recomputed.get)  # the first of equal scores, as pick_best
    assert results["best"]["name"] == best
    assert {e["name"]: e["dev_score"] for e in results["configurations"]} == pytest.approx(recomputed)
    assert (tmp_path / "sweep" / "MRPC.tsv").read_text() == (runs[[r.name for r in runs].index(best)].folder
                                                            / "MRPC.tsv").read_text()
    # Resumable: finished configurations are skipped; an unfinished one runs again.
    (runs[1].folder / "eval_results.json").unlink()
    ran.clear()
    sweep.run_locally(runs, runner)
    assert ran == [runs[1].name]
    changed = sweep.glue_runs("mrpc", glue_model, glue_data / "mrpc", tmp_path / "sweep", grid,
                              ["--max_steps", "3", "--disable_tqdm"])
    assert not any(sweep.is_finished(run) for run in changed)  # other flags: not the same runs


@pytest.mark.parametrize("model", ["base", "large"])
def test_glue_run_scripts_sweep_every_task(model):
    from test_run_scripts import dry_run, split_command

    from linkbert.core.args import parse_args
    from linkbert.seqcls.run_seqcls import SeqClsArguments

    commands = dry_run(f"run_examples_glue_linkbert-{model}.sh")
    assert len(commands) == 8 * 45
    tasks = set()
    for cmd in commands:
        module, flags = split_command(cmd)
        task = flags["--task_name"]
        tasks.add(task)
        assert module == MODULES["seqcls"] and flags["--max_seq_length"] == "128"
        assert flags["--train_file"] == f"data/seqcls/glue/{task}/train.json" and flags["--fp16"] is True
        assert flags["--output_dir"].startswith(f"runs/glue/{task}/LinkBERT-{model}/lr")
        assert flags["--model_name_or_path"] == f"michiyasunaga/LinkBERT-{model}"
    assert tasks == set(glue.TASKS)
    parse_args(SeqClsArguments, cmd[4:])  # the flags parse (the last one: RTE)
    assert len(dry_run(f"run_examples_glue_linkbert-{model}.sh", "rte", "stsb")) == 90


def test_the_grid_goes_to_the_launcher_with_a_pick_step_after_every_run(tmp_path, capsys):
    """--backend slurm: one job per configuration, then pick_best once they all ended (afterany)."""
    flags = ["--task_name", "rte", "--model_name_or_path", "m", "--data_dir", str(tmp_path / "d"),
             "--output_dir", str(tmp_path / "sweep"), "--epochs", "3", "--batch_sizes", "16",
             "--learning_rates", "1e-5", "2e-5", "--backend", "slurm", "--partition", "gpu", "--dry-run"]
    assert sweep.main([*flags, "--", "--fp16"]) == 0
    printed = capsys.readouterr().out
    jobs = [line for line in printed.splitlines() if line.startswith("# rte/")]
    assert [j.split(":")[0] for j in jobs] == ["# rte/lr1e-05_bs16_ep3", "# rte/lr2e-05_bs16_ep3", "# rte/pick_best"]
    assert all("--fp16" in j and "--partition" not in j for j in jobs[:2])
    assert "--pick_best" in jobs[2] and "--backend" not in jobs[2] and "--dry-run" not in jobs[2]
    assert f"afterany:<job of {tmp_path / 'sweep' / 'lr1e-05_bs16_ep3'}>" in printed
    configuration, pick = printed.split("# rte/")[2:]  # each job's script
    assert "--gpus-per-node=1" in configuration and "--cpus-per-task=8" in configuration
    assert "--gpus-per-node" not in pick and "--cpus-per-task=1\n" in pick  # scoring needs no GPU
    assert not (tmp_path / "sweep").exists()  # a dry run submits and writes nothing


def test_the_glue_script_says_which_data_is_missing_and_that_nothing_ran(tmp_path):
    from test_run_scripts import run_script

    env = {"DATA_DIR": str(tmp_path / "data"), "OUT_DIR": str(tmp_path / "runs")}
    (tmp_path / "data" / "seqcls" / "glue" / "rte").mkdir(parents=True)
    (tmp_path / "data" / "seqcls" / "glue" / "rte" / "train.json").write_text("{}\n")
    dry = run_script("run_examples_glue_linkbert-base.sh", "rte", "--dry-run", **env)
    assert dry.returncode == 0 and len(dry.stdout.splitlines()) == 45
    assert f"# note: 2 data file(s) missing, e.g. {tmp_path}/data/seqcls/glue/rte/dev.json" in dry.stderr
    real = run_script("run_examples_glue_linkbert-base.sh", "rte", "stsb", **env)
    assert real.returncode == 1
    assert "2 data file(s) missing, e.g." in real.stderr and "nothing ran" in real.stderr
    assert "run_examples_glue_linkbert-base.sh: nothing ran for: stsb rte (the error lines above say why)" in real.stderr  # script order
    assert "log.txt" not in real.stderr + real.stdout and "Results beside" not in real.stdout
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_in_a_glue_sweep_stops_the_script_and_names_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    import subprocess

    from conftest import REPO
    from test_run_scripts import script_env

    # The sweep, stopped by Ctrl-C while a configuration runs, names the command it was given.
    monkeypatch.setenv("LINKBERT_RESUME_COMMAND", "bash run_examples_glue_linkbert-base.sh rte")

    def interrupted(runs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_locally", interrupted)
    data = tmp_path / "rte"
    data.mkdir()
    for name in ("train", "dev", "test"):
        (data / f"{name}.json").write_text("{}\n")
    flags = ["--task_name", "rte", "--model_name_or_path", "m", "--data_dir", str(data), "--output_dir",
             str(tmp_path / "sweep"), "--epochs", "3"]
    assert sweep.main(flags) == 130
    assert "interrupted; to resume, run:  bash run_examples_glue_linkbert-base.sh rte" in capsys.readouterr().err
    # The script stops at the interrupted sweep (no further task, no "failed" line) and hands the
    # sweep its own command, with the switches given in the environment.
    fake = tmp_path / "fake_python"
    fake.write_text('#!/usr/bin/env bash\necho "$LINKBERT_RESUME_COMMAND" >> "$RECORD"\nexit 130\n')
    fake.chmod(0o755)
    record = tmp_path / "record.txt"
    result = subprocess.run(["bash", str(REPO / "run_examples_glue_linkbert-base.sh"), "rte", "stsb"], cwd=tmp_path,
                            env=script_env(PYTHON=str(fake), RECORD=str(record), OUT_DIR="my runs"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 130 and "failed" not in result.stderr and "Results beside" not in result.stdout
    assert record.read_text().splitlines() == [
        f"OUT_DIR=my\\ runs PYTHON={fake} bash {REPO / 'run_examples_glue_linkbert-base.sh'} rte stsb"]
