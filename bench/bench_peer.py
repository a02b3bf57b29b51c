"""The project's scripts against HF transformers' own example scripts, as child processes on the
same real-length data files, model, batch size, epochs and max_seq_length.

    python bench/bench_peer.py --hf_examples ~/transformers/examples/pytorch --threads 1
    python bench/bench_peer.py --quick --skip_hf      # smoke run (~1 min): the project's seqcls side only

| task | the project | HF's example script |
|---|---|---|
| seqcls | `linkbert.seqcls.run_seqcls` | `text-classification/run_glue.py` |
| ner | `linkbert.tokcls.run_ner` | `token-classification/run_ner.py` |
| qa | `linkbert.qa.run_qa` | `question-answering/run_qa.py` (+ `trainer_qa.py`, `utils_qa.py`) |

HF's scripts are not in the transformers wheel: `--hf_examples` is the `examples/pytorch` folder of
a transformers checkout at (or close to) the installed version's tag, since the scripts follow the
library's API. Their `evaluate.load(...)` fetches metric code from the hub, so they run with
`bench/hf_shim` first on their PYTHONPATH: a local `evaluate` answering accuracy, mse, seqeval
and squad from `linkbert.metrics`. HF's Trainer needs `accelerate` (in the `bench` extra).

Data (written to a temporary folder at run time, never into the repository) comes from the real
NCBI-disease files under `--real_data` (default `../shared/data`): RE-like sentences (two disease
mentions replaced by ChemProt's `@CHEMICAL$`/`@GENE$` markers) for seqcls, the tagged sentences
for NER, and for QA contexts of 5 consecutive real sentences (a SQuAD-paragraph length) with a
disease mention as the answer to a fixed question.

Each run is a fresh child process (one thread: `OMP_NUM_THREADS`), timed by its CPU time
(`getrusage(RUSAGE_CHILDREN)` deltas: the whole script, imports and tokenisation included) and
wall clock, and by the script's own `train_runtime` / `eval_runtime` (its training or
evaluation loop alone, wall clock), which for the project includes the one-off build of its CPU
kernels (torch.compile, seconds, in the first update): the last column takes out what the
project's log says the builds took, the loop a run of many more updates approaches. Training
(`--do_train`, one epoch) and evaluation (`--do_eval`, from the pretrained weights) are separate
runs. Every repeat runs every variant once, the first variant rotating; the project's script runs
twice, and the ratio of those two runs is the noise floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import real_data  # noqa: E402

SHIM = Path(__file__).resolve().parent / "hf_shim"
OURS, OURS_AGAIN = "project", "project again (noise floor)"


@dataclass(frozen=True)
class Task:
    ours: str                 # the project's module (python -m)
    hf: str                   # HF's script under --hf_examples
    batch: int
    max_seq_length: int
    variants: dict            # name -> (HF script?, flags)
    comparisons: tuple        # (label, slower variant, faster variant): ratio = slower time / faster time


OURS_PADDED = "project --padding_free false (dynamic padding)"
TASKS = {
    # HF's run_glue pads every example to max_seq_length unless --pad_to_max_length False. The
    # project's CPU default for seqcls and NER is padding-free; --padding_free false pads each batch
    # to its longest (dynamic padding), as HF at --pad_to_max_length False: equal padding.
    "seqcls": Task("linkbert.seqcls.run_seqcls", "text-classification/run_glue.py", 32, 256,
                   {OURS: (False, []), OURS_PADDED: (False, ["--padding_free", "false"]),
                    "HF run_glue, defaults (pads to max_seq_length)": (True, []),
                    "HF run_glue, --pad_to_max_length False": (True, ["--pad_to_max_length", "False"]),
                    OURS_AGAIN: (False, [])},
                   (("project (padding-free, its CPU default) over HF defaults",
                     "HF run_glue, defaults (pads to max_seq_length)", OURS),
                    ("project (padding-free) over HF --pad_to_max_length False",
                     "HF run_glue, --pad_to_max_length False", OURS),
                    ("project --padding_free false over HF --pad_to_max_length False = equal padding",
                     "HF run_glue, --pad_to_max_length False", OURS_PADDED))),
    # HF's run_ner pads dynamically by default (its --pad_to_max_length defaults to False).
    "ner": Task("linkbert.tokcls.run_ner", "token-classification/run_ner.py", 32, 512,
                {OURS: (False, []), OURS_PADDED: (False, ["--padding_free", "false"]),
                 "HF run_ner, defaults (dynamic padding)": (True, []), OURS_AGAIN: (False, [])},
                (("project (padding-free, its CPU default) over HF defaults",
                  "HF run_ner, defaults (dynamic padding)", OURS),
                 ("project --padding_free false over HF defaults = equal padding",
                  "HF run_ner, defaults (dynamic padding)", OURS_PADDED))),
    # HF's run_qa and the project's QA both pad windows to max_seq_length by default (equal
    # padding); dynamic padding is --pad_to_max_length False there, --dynamic_padding here.
    "qa": Task("linkbert.qa.run_qa", "question-answering/run_qa.py", 12, 384,
               {OURS: (False, []), "project --dynamic_padding": (False, ["--dynamic_padding"]),
                "HF run_qa, defaults (pads to max_seq_length)": (True, []),
                "HF run_qa, --pad_to_max_length False": (True, ["--pad_to_max_length", "False"]),
                OURS_AGAIN: (False, [])},
               (("project over HF, both defaults (pad to max) = equal padding",
                 "HF run_qa, defaults (pads to max_seq_length)", OURS),
                ("project --dynamic_padding over HF --pad_to_max_length False",
                 "HF run_qa, --pad_to_max_length False", "project --dynamic_padding"))),
}
QA_QUESTION = "Which disease is named in this text ?"


# -- data ---------------------------------------------------------------------------------------
def write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def qa_records(sentences: list[tuple[list[str], list[str]]], per_context: int = 5) -> list[dict]:
    """Contexts of `per_context` consecutive sentences; the answer is the first disease mention."""
    records = []
    for start in range(0, len(sentences) - per_context + 1, per_context):
        words = [w for ws, _ in sentences[start:start + per_context] for w in ws]
        tags = [t for _, ts in sentences[start:start + per_context] for t in ts]
        spans = real_data.mentions(tags)
        if not spans:
            continue
        a, b = spans[0]
        answer_start = len(" ".join(words[:a])) + (1 if a else 0)
        answer = " ".join(words[a:b])
        records.append({"id": f"qa.{start}", "question": QA_QUESTION, "context": " ".join(words),
                        "answers": {"answer_start": [answer_start], "text": [answer]}})
    return records


def write_task_data(task: str, folder: Path, data_dir: Path, n_train: int, n_dev: int) -> dict[str, Path]:
    """train/dev files of a task from the real data: {"ours": folder, "hf": folder} (the same
    records; HF's run_qa reads one JSON object with a "data" list, the project JSON Lines)."""
    ours, hf = folder / task / "ours", folder / task / "hf"
    ours.mkdir(parents=True)
    hf.mkdir(parents=True)
    ncbi = real_data.ncbi_folder(data_dir)
    splits = {"train": n_train, "dev": n_dev}
    for split, n in splits.items():
        if task == "seqcls":
            labels = common.SHAPES["re"].labels
            records = real_data.real_re_records(data_dir, n, seed=0 if split == "train" else 1, labels=labels)
            records = [{"sentence": r["sentence"], "label": r["label"]} for r in records]  # run_glue pairs a 2nd column
        elif task == "ner":
            sentences = real_data.read_conll(ncbi / f"{split}.tsv")[:n]
            records = [{"tokens": w, "ner_tags": t, "id": str(i)} for i, (w, t) in enumerate(sentences)]
        else:
            records = qa_records(real_data.read_conll(ncbi / f"{split}.tsv"))[:n]
        write_jsonl(ours / f"{split}.json", records)
        if task == "qa":
            (hf / f"{split}.json").write_text(json.dumps({"version": "bench", "data": records}), encoding="utf-8")
        else:
            write_jsonl(hf / f"{split}.json", records)
    return {"ours": ours, "hf": hf}


# -- runs ---------------------------------------------------------------------------------------
def command(task: Task, hf: bool, flags: list[str], phase: str, data: Path, model: str, out: Path,
            hf_examples: Path | None) -> list[str]:
    """The child's command line: the same model, files, batch, epochs and lengths for both."""
    common_args = ["--model_name_or_path", model, "--output_dir", str(out), f"--do_{phase}",
                   "--max_seq_length", str(task.max_seq_length), "--per_device_train_batch_size", str(task.batch),
                   "--per_device_eval_batch_size", "8", "--num_train_epochs", "1", "--learning_rate", "5e-5",
                   "--seed", "42", "--save_strategy", "no", "--disable_tqdm", "True"]
    # The training file in both phases: run_glue and run_ner take the label list from it.
    files = ["--train_file", str(data / "train.json"), "--validation_file", str(data / "dev.json")]
    if task.hf.startswith("question-answering"):
        common_args += ["--doc_stride", "128"]
    if hf:
        assert hf_examples is not None
        return [sys.executable, str(hf_examples / task.hf), *common_args, *files, "--report_to", "none", *flags]
    return [sys.executable, "-m", task.ours, *common_args, *files, *flags]


def child_env(hf: bool, threads: int, cache: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=str(cache))  # a fresh cache: every run tokenises, as a first run does
    if hf:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Run:
    cpu: float      # the child's user + system CPU seconds
    wall: float
    inner: float    # the script's own train_runtime / eval_runtime (its loop, wall clock)
    build: float    # of which the project's one-off CPU kernel builds, from its log (0: HF, or none built)

    @property
    def loop(self) -> float:
        """The loop without the one-off kernel builds: what a run of many more updates approaches."""
        return self.inner - self.build


#: the project's log line per kernel build (`linkbert.core.cpu_attention.build_once`)
BUILD_LINE = re.compile(r"kernel built by torch\.compile in ([0-9.]+) s")


def run_child(cmd: list[str], env: dict[str, str], out: Path, phase: str, log: Path) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not (out / f"{phase}_results.json").is_file():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        what = f"exited {done.returncode}" if done.returncode else f"wrote no {phase}_results.json"
        sys.exit(f"error: {' '.join(cmd[:3])} ... {what}; its last line: {tail[0]}")
    results = json.loads((out / f"{phase}_results.json").read_text(encoding="utf-8"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    build = sum(float(s) for s in BUILD_LINE.findall(log.read_text(encoding="utf-8", errors="replace")))
    return Run(cpu, wall, float(results[f"{phase}_runtime"]), build)


def bench_task(name: str, data: dict[str, Path], model: str, opts, work: Path) -> None:
    """Training runs, then evaluation runs of the model the project's first training run saved
    (an evaluation needs a fine-tuned head and its label names; every variant evaluates it)."""
    task = TASKS[name]
    variants = {v: spec for v, spec in task.variants.items() if not (opts.skip_hf and spec[0])}
    names = list(variants)
    for phase in ("train", "eval"):
        runs: dict[str, list[Run]] = {v: [] for v in variants}
        for r in range(opts.repeats):
            for v in names[r % len(names):] + names[:r % len(names)]:
                hf, flags = variants[v]
                out = Path(tempfile.mkdtemp(prefix=f"{name}-{phase}-", dir=work)) / "out"
                cmd = command(task, hf, flags, phase, data["hf" if hf else "ours"], model, out, opts.hf_examples)
                runs[v].append(run_child(cmd, child_env(hf, opts.threads, out.parent / "cache"), out, phase,
                                         out.parent / "log.txt"))
                if phase == "train" and v == OURS and len(runs[v]) == 1:
                    trained = str(out)
        report(name, phase, task, runs, opts)
        model = trained


def ratio_cell(slow: list[float], fast: list[float]) -> str:
    ratios = [s / f for s, f in zip(slow, fast)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def report(name: str, phase: str, task: Task, runs: dict[str, list[Run]], opts) -> None:
    clocks = ("cpu", "wall", "inner", "loop")
    rows = [[v, *(f"{statistics.median(getattr(r, clock) for r in rs):.1f}" for clock in clocks)]
            for v, rs in runs.items()]
    loop_column = f"{phase}_runtime less the kernel build"  # the project's one-off torch.compile of its CPU kernels
    common.print_table(f"{name}, {phase}: seconds per run (median)",
                       ["variant", "child CPU s", "child wall s", f"script's own {phase}_runtime s",
                        f"{loop_column} s"], rows)
    comparisons = [c for c in task.comparisons if c[1] in runs and c[2] in runs]
    comparisons.append(("noise floor: project over project again", OURS_AGAIN, OURS))
    ratio_rows = [[label, *(ratio_cell([getattr(r, clock) for r in runs[slow]], [getattr(r, clock) for r in runs[fast]])
                            for clock in clocks)] for label, slow, fast in comparisons]
    common.print_table(f"{name}, {phase}: speed-up, median (range) over {opts.repeats} alternating repeats",
                       ["comparison", "child CPU time", "child wall clock", f"{phase}_runtime", loop_column], ratio_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf_examples", type=Path, default=None,
                        help="examples/pytorch of a transformers checkout at the installed version")
    parser.add_argument("--skip_hf", action="store_true", help="the project's scripts only (a smoke run)")
    parser.add_argument("--tasks", default=None, help="comma-separated: seqcls, ner, qa (default all; --quick seqcls)")
    parser.add_argument("--train_examples", type=int, default=None, help="per task (default 256; QA 96)")
    parser.add_argument("--eval_examples", type=int, default=None, help="per task (default 256; QA 96)")
    parser.add_argument("--quick", action="store_true", help="tiny random BERT, 16 examples, 1 repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each child (OMP_NUM_THREADS)")
    parser.add_argument("--real_data", type=Path, default=real_data.DEFAULT_DIR,
                        help="folder holding blurb_raw/NCBI-disease (default ../shared/data)")
    opts = parser.parse_args()
    tasks = (opts.tasks or ("seqcls" if opts.quick else "seqcls,ner,qa")).split(",")
    real_data.ncbi_folder(opts.real_data)
    if not opts.skip_hf:
        missing = [TASKS[t].hf for t in tasks if opts.hf_examples is None or not (opts.hf_examples / TASKS[t].hf).is_file()]
        if missing:
            sys.exit(f"error: HF's {missing[0]} not found under --hf_examples {opts.hf_examples}: give the "
                     f"examples/pytorch folder of a transformers checkout at the installed version (or --skip_hf)")
        check = [sys.executable, "-c", "import accelerate, evaluate"]
        if subprocess.run(check, env=child_env(True, 1, Path(common.WORKDIR)), capture_output=True).returncode:
            sys.exit("error: HF's Trainer needs `accelerate`, which this Python cannot import: install the bench "
                     "extra (bash scripts/install.sh --core bench)")
    if opts.quick:
        opts.repeats = 1
    common.quiet()
    work = Path(common.WORKDIR)
    data = {t: write_task_data(t, work / "data", opts.real_data,
                               opts.train_examples or (16 if opts.quick else 96 if t == "qa" else 256),
                               opts.eval_examples or (16 if opts.quick else 96 if t == "qa" else 256)) for t in tasks}
    model = common.model_path(opts.quick, [data[t]["ours"] for t in tasks])
    import transformers

    print(f"transformers {transformers.__version__}, HF examples {opts.hf_examples or '(skipped)'}; "
          f"children with {opts.threads} thread(s)")
    common.header(opts.quick, model, opts.real_data)
    for t in tasks:
        bench_task(t, data[t], model, opts, work)


if __name__ == "__main__":
    main()
