"""The paper's GLUE protocol as a sweep: every configuration of a grid, then the best by dev score.

    python -m linkbert.sweep --task_name rte --model_name_or_path michiyasunaga/LinkBERT-base \
        --data_dir data/seqcls/glue/rte --output_dir runs/glue/rte/LinkBERT-base -- --fp16
    python -m linkbert.sweep ... --dry_run        # print one command per configuration
    python -m linkbert.sweep ... --pick_best      # only (re)write sweep_results.json

The LinkBERT paper fine-tunes GLUE with max_seq_length 128 and a grid over learning rate
(5e-6 to 5e-5), batch size (16, 32, 64) and epochs (3 to 10), without listing the grid's points.
`GRID` takes the two ends of each range and the usual BERT points between them: learning rates
5e-6, 1e-5, 2e-5, 3e-5, 5e-5; batch sizes 16, 32, 64; epochs 3, 5, 10 (45 configurations).
`--learning_rates`, `--batch_sizes`, `--epochs` narrow it (the large tasks are costly).

Each configuration is one `linkbert.seqcls.run_seqcls` run into `<sweep folder>/lr<LR>_bs<B>_ep<E>/`
(log in its log.txt). Runs go one after another; a configuration whose results are complete (and
whose run_args.json holds the same arguments) is skipped, so a rerun after a crash continues where
the sweep stopped. Then `pick_best` scores each configuration on dev with
`linkbert.metrics.glue.task_score` (a task's metrics averaged, MNLI matched and mismatched
averaged), writes `<sweep folder>/sweep_results.json` with every configuration's score and the chosen
one (ties: the first in grid order), and copies the chosen run's GLUE submission files beside it.
Parallel runs and clusters are a launcher's job: it takes the runs from `glue_runs` (an output
folder and argv each) and calls `pick_best` once they are done.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from linkbert.core.errors import RESUME_COMMAND_VARIABLE, UserError
from linkbert.core.results import read_json_or_none, write_json
from linkbert.launch.options import add_backend_flags, run_launch
from linkbert.launch.plan import Run
from linkbert.metrics import glue
from linkbert.tasks import MODULES

MODULE = MODULES["seqcls"]
GRID: dict[str, tuple] = {
    "learning_rate": (5e-6, 1e-5, 2e-5, 3e-5, 5e-5),
    "per_device_train_batch_size": (16, 32, 64),
    "num_train_epochs": (3, 5, 10),
}
MAX_SEQ_LENGTH = 128


@dataclass
class SweepRun:
    """One configuration: its run folder, and the arguments of `python -m MODULE`."""
    folder: Path
    argv: list[str]
    config: dict = field(default_factory=dict)
    module: str = MODULE

    @property
    def name(self) -> str:
        return self.folder.name

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-u", "-m", self.module, *self.argv]


def config_name(config: dict) -> str:
    return (f"lr{config['learning_rate']:g}_bs{config['per_device_train_batch_size']}"
            f"_ep{config['num_train_epochs']:g}")


def glue_runs(task: str, model: str, data_dir: str | Path, sweep_dir: str | Path,
              grid: Optional[Mapping[str, Sequence]] = None, extra_flags: Sequence[str] = ()) -> list[SweepRun]:
    """Every configuration of `grid` (default `GRID`) for one GLUE task, in grid order. Data:
    `data_dir/{train,dev,test}.json` as scripts/preprocess_glue.py writes them (MNLI also
    dev_mismatched.json and test_mismatched.json); every run trains, scores dev, predicts test."""
    if task not in glue.TASKS:
        raise UserError("bad_flag_value", f"--task_name {task!r}: choose one of {', '.join(glue.TASKS)}")
    grid = grid or GRID
    data, out = Path(data_dir), Path(sweep_dir)
    files = ["--train_file", data / "train.json", "--validation_file", data / "dev.json", "--test_file",
             data / "test.json"]
    if task == "mnli":
        files += ["--validation_mismatched_file", data / "dev_mismatched.json",
                  "--test_mismatched_file", data / "test_mismatched.json"]
    actions = ["--do_train", "--do_eval", "--do_predict"]
    runs = []
    for values in itertools.product(*(grid[k] for k in GRID)):
        config = dict(zip(GRID, values))
        folder = out / config_name(config)
        argv = ["--model_name_or_path", model, "--task_name", task, *files, *actions,
                "--max_seq_length", str(MAX_SEQ_LENGTH), "--learning_rate", f"{config['learning_rate']:g}",
                "--per_device_train_batch_size", str(config["per_device_train_batch_size"]),
                "--num_train_epochs", f"{config['num_train_epochs']:g}", "--save_strategy", "no",
                "--evaluation_strategy", "no", "--overwrite_output_dir", *extra_flags, "--output_dir", folder]
        runs.append(SweepRun(folder, [str(a) for a in argv], config))
    return runs


def is_finished(run: SweepRun) -> bool:
    """Its dev results (and test results, if it predicts) are written (a run writes them last), by
    a run with the same arguments (run_args.json; changed flags mean a new run)."""
    needed = ["eval_results.json"] + (["predict_results.json"] if "--do_predict" in run.argv else [])
    recorded = (read_json_or_none(run.folder / "run_args.json") or {}).get("argv") or []
    written = all(read_json_or_none(run.folder / name) is not None for name in needed)
    return recorded[-len(run.argv):] == run.argv and written


def missing_data(run: SweepRun) -> list[str]:
    """The data files a configuration reads that do not exist."""
    return [value for flag, value in zip(run.argv, run.argv[1:])
            if flag.endswith("_file") and not Path(value).is_file()]


def subprocess_runner(run: SweepRun) -> int:
    run.folder.mkdir(parents=True, exist_ok=True)
    with open(run.folder / "log.txt", "a", encoding="utf-8") as log:
        return subprocess.run(run.command(), stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def run_locally(runs: Sequence[SweepRun], runner: Callable[[SweepRun], int] = subprocess_runner) -> dict[str, int]:
    """Run the unfinished configurations one after another; a failed one does not stop the rest.
    Returns the exit status per configuration name (0 for skipped ones)."""
    status = {}
    for i, run in enumerate(runs, 1):
        if is_finished(run):
            print(f"[{i}/{len(runs)}] {run.name}: finished earlier, skipped")
            status[run.name] = 0
            continue
        print(f"[{i}/{len(runs)}] {run.name}: running (log: {run.folder / 'log.txt'})", flush=True)
        status[run.name] = runner(run)
        if status[run.name]:
            print(f"[{i}/{len(runs)}] {run.name}: FAILED (exit {status[run.name]})")
    return status


def dev_score(task: str, eval_results: dict) -> Optional[float]:
    """The dev number a sweep selects on (fraction), or None when the results lack a score."""
    scores = {k[len("eval_"):]: v for k, v in eval_results.items() if k.startswith("eval_")}
    try:
        mismatched = {"accuracy": scores["accuracy_mm"]} if task == "mnli" else None
        return glue.task_score(task, scores, mismatched)
    except KeyError:
        return None


def pick_best(task: str, runs: Sequence[SweepRun], sweep_dir: str | Path) -> dict:
    """Score every configuration on dev, write `sweep_dir/sweep_results.json`, and copy the best
    run's submission files into `sweep_dir`. Configurations without results are listed as missing."""
    sweep_dir = Path(sweep_dir)
    entries = []
    for run in runs:
        eval_results = read_json_or_none(run.folder / "eval_results.json") or {}
        score = dev_score(task, eval_results)
        entries.append({"name": run.name, "output_dir": str(run.folder), **run.config, "dev_score": score,
                        "eval": {k: v for k, v in eval_results.items() if not k.endswith(("runtime", "second"))}})
    scored = [e for e in entries if e["dev_score"] is not None]
    best = max(scored, key=lambda e: e["dev_score"]) if scored else None  # max keeps the first of ties
    results = {"task": task, "selection": "dev: " + ("mean of matched and mismatched accuracy" if task == "mnli"
                                                     else " and ".join(glue.METRICS[task]) + " averaged"),
               "configurations": entries, "missing": [e["name"] for e in entries if e["dev_score"] is None],
               "best": best}
    write_json(sweep_dir / "sweep_results.json", results)
    if best:
        chosen = next(run for run in runs if run.name == best["name"])
        for tsv in chosen.folder.glob("*.tsv"):
            shutil.copyfile(tsv, sweep_dir / tsv.name)
    return results


def launcher_runs(task: str, runs: Sequence[SweepRun], argv: list[str], extra: list[str]) -> list[Run]:
    """The grid as the launcher's runs (one SLURM job, or one GPU, each), then the pick-the-best
    step, which starts once every configuration has ended, however it ended, needs no GPU, and
    runs again on a relaunch when a configuration ended after it."""
    configurations = [Run(label=f"{task}/{r.name}", folder=str(r.folder), argv=r.command(), task=task)
                      for r in runs]
    own_flags, skip = [], False  # this command's flags less the launcher's, plus --pick_best
    for flag in argv:
        if skip or flag in ("--backend", "--dry-run", "--dry_run") or flag.startswith("--backend="):
            skip = flag == "--backend"
            continue
        own_flags.append(flag)
    sweep_dir = str(Path(runs[0].folder).parent)
    pick = Run(label=f"{task}/pick_best", folder=sweep_dir, task=task, after_any=True, cpu_only=True,
               after=[r.folder for r in configurations],
               argv=[sys.executable, "-m", "linkbert.sweep", *own_flags, "--pick_best", "--", *extra])
    return [*configurations, pick]


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # What resumes an interrupted grid: the run script's command when a script started this sweep.
    resume = os.environ.get(RESUME_COMMAND_VARIABLE) or shlex.join(["python", "-m", "linkbert.sweep", *argv])
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Flags after -- go to every run (e.g. -- --fp16).")
    parser.add_argument("--task_name", required=True, help=", ".join(glue.TASKS))
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--data_dir", required=True, type=Path, help="data/seqcls/glue/<task>")
    parser.add_argument("--output_dir", dest="sweep_dir", required=True, type=Path,
                        help="the sweep folder (one subfolder per run)")
    parser.add_argument("--learning_rates", nargs="+", type=float, default=GRID["learning_rate"])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=GRID["per_device_train_batch_size"])
    parser.add_argument("--epochs", nargs="+", type=float, default=GRID["num_train_epochs"])
    parser.add_argument("--pick_best", action="store_true", help="run nothing; score what is there")
    add_backend_flags(parser)  # --dry_run, and --backend slurm / PARALLEL=1: the launcher runs the grid
    args = parser.parse_args(argv)
    try:
        grid = {"learning_rate": args.learning_rates, "per_device_train_batch_size": args.batch_sizes,
                "num_train_epochs": args.epochs}
        runs = glue_runs(args.task_name.lower().replace("-", ""), args.model_name_or_path, args.data_dir,
                         args.sweep_dir, grid, extra)
        task = args.task_name.lower().replace("-", "")
        if not args.pick_best and (args.backend == "slurm" or os.environ.get("PARALLEL") == "1"):
            return run_launch(launcher_runs(task, runs, argv, extra), args, str(args.sweep_dir), dict(os.environ),
                              resume)
        missing = missing_data(runs[0])  # every configuration reads the same files
        if args.dry_run:
            if missing:
                print(f"# note: {len(missing)} data file(s) missing, e.g. {missing[0]} (convert GLUE with "
                      "scripts/preprocess_glue.py)", file=sys.stderr)
            for run in runs:
                print(shlex.join(run.command()))
            return 0
        if missing and not args.pick_best:  # one message, not one failed run each
            raise UserError("missing_file", f"{len(missing)} data file(s) missing, e.g. {missing[0]}; nothing ran. "
                            "Convert GLUE with scripts/preprocess_glue.py", path=args.data_dir)
        failed = 0 if args.pick_best else sum(1 for code in run_locally(runs).values() if code)
        results = pick_best(task, runs, args.sweep_dir)
    except UserError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the configuration running got the Ctrl-C too: it checkpointed and stopped
        print(f"interrupted; to resume, run:  {resume}", file=sys.stderr)
        return 130
    best = results["best"]
    print(f"{args.sweep_dir / 'sweep_results.json'}: best {best['name']} (dev {best['dev_score']:.4f})" if best
          else f"{args.sweep_dir / 'sweep_results.json'}: no configuration has dev results yet")
    if results["missing"]:
        print(f"  {len(results['missing'])} of {len(runs)} configurations without dev results")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
