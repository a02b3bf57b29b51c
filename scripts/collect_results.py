"""Put your fine-tuning results beside the LinkBERT paper's: a Markdown table and a bar chart.

    python scripts/collect_results.py runs/                    # writes runs/results.md, runs/results.png
    python scripts/collect_results.py runs/ --out report.md --chart report.png
    python scripts/collect_results.py runs/ --no-chart

Reads every run folder `RUNS/<task>/<model>/` and seed sweeps `RUNS/<task>/<model>/seed<N>/`
(what the run_examples scripts write), in this project's layout (`predict_results.json` with
`predict_*` keys) or the original code's (`test_results.json` / `predict_results.json` with
`test_*` keys). Scores are shown in percent, as the paper reports them. The paper column
compared against is picked by the model folder's name (LinkBERT-base, LinkBERT-large,
BioLinkBERT-base, BioLinkBERT-large; a name containing PubMedBERT gets the paper's PubMedBERT row).

In the table: a task with no run says "missing" (never 0); several seeds give mean ± sample std
(n); "stale" marks a result older than its run's log.txt (the folder was rerun since, or is being
rerun); "partial" marks runs with --max_steps or --max_*_samples (SMOKE=1). The BLURB score is
the mean over six task types of the mean within each type, shown only when all 13 tasks are there.

GLUE comes from each task's sweep (`RUNS/glue/<task>/<model>/sweep_results.json`, written by
`linkbert.sweep`): the dev score of the configuration the sweep chose (GLUE test labels are not
public; the paper does not say which split it reports). A task's score is the mean of its GLUE
metrics (MRPC, QQP: F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched
accuracy; CoLA: Matthews correlation; SST-2, QNLI, RTE: accuracy), and the GLUE average is the
plain mean over the eight tasks (WNLI left out, as the paper does). Few-shot MRQA and SQuAD with
distracting documents are test F1 like the MRQA table (folders `<task>_fewshot10`, `squad_distract_hf`).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from linkbert.core.results import read_json_or_none
from linkbert.tasks import of_benchmark

# A log written this long after the results is a rerun, not the lines a run logs after writing them.
STALE_AFTER_S = 60


@dataclass(frozen=True)
class Task:
    folder: str    # run folder name under RUNS/
    label: str     # the paper's name
    metric: str    # result key without its predict_/test_ prefix
    percent: bool  # the result files already hold percent (QA); otherwise fractions
    group: str = ""  # BLURB task type
    sweep: bool = False  # GLUE: the chosen configuration's dev score from sweep_results.json


def _from_registry(benchmark: str) -> list[Task]:
    return [Task(t.name, t.label, t.metric, t.percent, t.group) for t in of_benchmark(benchmark)]


MRQA, BLURB, MEDQA, MMLU = (_from_registry(b) for b in ("MRQA", "BLURB", "MedQA", "MMLU"))
FEW_SHOT, DISTRACT = (_from_registry(b) for b in ("MRQA few-shot", "MRQA distracting"))
GLUE = [Task(f"glue/{f}", l, m, False, sweep=True) for f, l, m in [
    ("cola", "CoLA", "matthews_correlation"), ("sst2", "SST-2", "accuracy"), ("mrpc", "MRPC", "f1_accuracy"),
    ("qqp", "QQP", "f1_accuracy"), ("stsb", "STS-B", "pearson_spearmanr"), ("mnli", "MNLI-m/mm", "accuracy_m_mm"),
    ("qnli", "QNLI", "accuracy"), ("rte", "RTE", "accuracy")]]
SECTIONS: list[tuple[str, list[Task]]] = [
    ("MRQA (F1, in-house test split)", MRQA),
    ("BLURB (test)", BLURB),
    ("MedQA-USMLE (accuracy, test)", MEDQA),
    ("MMLU professional medicine (accuracy, test)", MMLU),
    ("GLUE (dev, the configuration each sweep chose)", GLUE),
    ("Few-shot MRQA (F1, 10% of the training questions, in-house test split)", FEW_SHOT),
    ("SQuAD with distracting documents (F1, in-house test split)", DISTRACT),
]
# Sections this project adds to the release's tables: shown for every model the paper reports there.
EXTRA_SECTIONS = {title for title, tasks in SECTIONS if tasks in (GLUE, FEW_SHOT, DISTRACT)}
METRIC_NAMES = {"f1": "F1", "macro_f1": "macro F1", "F1": "micro F1", "pearsonr": "Pearson",
                "accuracy": "accuracy", "matthews_correlation": "Matthews corr.",
                "f1_accuracy": "mean of F1, accuracy", "pearson_spearmanr": "mean of Pearson, Spearman",
                "accuracy_m_mm": "mean of m, mm accuracy"}
MRQA_AVERAGE, BLURB_SCORE, GLUE_AVERAGE = "Avg.", "BLURB score", "GLUE average"
# The aggregate row of a section, by the first word of its title.
AGGREGATES = {"MRQA": MRQA_AVERAGE, "BLURB": BLURB_SCORE, "GLUE": GLUE_AVERAGE}

# The paper's numbers (Yasunaga et al., ACL 2022, Tables 1-3), as printed there.
PAPER: dict[str, dict[str, str]] = {
    "LinkBERT-base": dict(zip([t.folder for t in MRQA], "78.2 73.9 76.8 78.3 69.3 90.1".split()),
                          **dict(zip([t.folder for t in FEW_SHOT], "70.5 66.0 70.2 82.8".split())),
                          **{MRQA_AVERAGE: "77.8", GLUE_AVERAGE: "79.6", "squad_distract_hf": "89.6"}),
    "LinkBERT-large": dict(zip([t.folder for t in MRQA], "80.8 78.2 80.5 81.0 72.6 92.7".split()),
                           **{MRQA_AVERAGE: "81.0", GLUE_AVERAGE: "81.1"}),
    "PubMedBERT-base": dict(zip([t.folder for t in BLURB],
                                "93.33 85.62 87.82 84.52 80.06 73.38 77.24 82.36 82.34 92.30 82.32 55.84 87.56"
                                .split()), **{BLURB_SCORE: "81.10", "medqa_usmle_hf": "38.1"}),
    "BioLinkBERT-base": dict(zip([t.folder for t in BLURB],
                                 "93.75 86.10 88.18 84.90 79.03 73.97 77.57 82.72 84.39 93.25 84.35 70.20 91.43"
                                 .split()), **{BLURB_SCORE: "83.39", "medqa_usmle_hf": "40.0"}),
    "BioLinkBERT-large": dict(zip([t.folder for t in BLURB],
                                  "94.04 86.39 88.76 85.18 80.06 74.19 79.98 83.35 84.90 93.63 84.87 72.18 94.82"
                                  .split()), **{BLURB_SCORE: "84.30", "medqa_usmle_hf": "44.6",
                                                "mmlu_professional_medicine_eval": "50.7"}),
}
MODEL_ORDER = ["LinkBERT-base", "LinkBERT-large", "PubMedBERT-base", "BioLinkBERT-base", "BioLinkBERT-large"]


def paper_model(model: str) -> Optional[str]:
    """The paper row a run folder's model name is compared with (None: the paper has none)."""
    for name in PAPER:
        if model.lower() == name.lower():
            return name
    return "PubMedBERT-base" if "pubmedbert" in model.lower() else None


@dataclass
class Run:
    folder: Path
    value: Optional[float]  # percent; None when the folder holds no result for the metric
    seed: Optional[int]
    source: str = ""        # the results file the value came from
    notes: list[str] = field(default_factory=list)


def _partial(args: dict) -> bool:
    return (args.get("max_steps") or -1) > 0 or any(
        args.get(f"max_{s}_samples") is not None for s in ("train", "eval", "predict"))


def read_sweep(folder: Path) -> Optional[Run]:
    """GLUE: the dev score (percent) of the configuration a sweep chose."""
    results = read_json_or_none(folder / "sweep_results.json")
    if results is None:
        return Run(folder, None, None, notes=["no sweep_results.json yet"]) if folder.is_dir() else None
    best, missing = results.get("best"), results.get("missing") or []
    notes = [f"{len(missing)} of {len(results.get('configurations', []))} configurations missing"] if missing else []
    if not best:
        return Run(folder, None, None, notes=notes or ["no configuration has dev results"])
    args = read_json_or_none(Path(best["output_dir"]) / "run_args.json") or {}
    if _partial(args):
        notes.append("partial")
    return Run(folder, float(best["dev_score"]) * 100, args.get("seed"), "sweep_results.json", notes)


def read_run(folder: Path, task: Task) -> Optional[Run]:
    """The test score of one run folder, or None if the folder holds neither results nor a log."""
    if task.sweep:
        return read_sweep(folder)
    args = read_json_or_none(folder / "run_args.json") or {}
    match = re.fullmatch(r"seed(\d+)", folder.name)
    seed = args.get("seed", int(match.group(1)) if match else None)
    log = folder / "log.txt"
    # Ours: predict_results.json (predict_*); the original: test_results.json (seqcls, NER) or
    # predict_results.json (QA, MC), both with test_* keys; all_results.json holds them all.
    for name in ("predict_results.json", "test_results.json", "all_results.json"):
        results = read_json_or_none(folder / name)
        if results is None and (folder / name).exists():
            # never fall back to another file (all_results.json may be an older run's score)
            return Run(folder, None, seed, name, notes=[f"{name} is unreadable: rerun the prediction"])
        if not results:
            continue
        for key in (f"predict_{task.metric}", f"test_{task.metric}"):
            if isinstance(results.get(key), (int, float)):
                value = float(results[key]) * (1 if task.percent else 100)
                run = Run(folder, value, seed, name)
                if log.exists() and log.stat().st_mtime > (folder / name).stat().st_mtime + STALE_AFTER_S:
                    run.notes.append("stale")
                if _partial(args):
                    run.notes.append("partial")
                return run
    if log.exists() or any(folder.glob("*_results.json")):
        return Run(folder, None, seed, notes=[f"no test {task.metric} yet: running or failed, see log.txt"])
    return None


def collect(runs_dir: Path) -> dict[str, dict[str, list[Run]]]:
    """model name -> task folder -> runs (the model folder itself and its seed<N> subfolders)."""
    found: dict[str, dict[str, list[Run]]] = {}
    for _, tasks in SECTIONS:
        for task in tasks:
            task_dir = runs_dir / task.folder
            if not task_dir.is_dir():
                continue
            for model_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
                if task.sweep:  # the subfolders are the sweep's configurations
                    run = read_run(model_dir, task)
                    if run is not None:
                        found.setdefault(model_dir.name, {})[task.folder] = [run]
                    continue
                folders = [model_dir] + sorted((p for p in model_dir.iterdir()
                                                if p.is_dir() and re.fullmatch(r"seed\d+", p.name)),
                                               key=lambda p: int(p.name[4:]))
                runs = [r for r in (read_run(f, task) for f in folders) if r is not None]
                if runs:
                    found.setdefault(model_dir.name, {})[task.folder] = runs
    return found


RESULT_FILES = ("predict_results.json", "test_results.json", "all_results.json")


def why_nothing_found(runs_dir: Path) -> list[str]:
    """What each folder under RUNS lacked, for a report that found no run at all."""
    task_folders = {t.folder for _, tasks in SECTIONS for t in tasks}
    lines = [f"Looked for RUNS/<task>/<model>/ (or .../<model>/seed<N>/) holding one of {', '.join(RESULT_FILES)}, "
             f"with RUNS = `{runs_dir}`:"]
    if any((runs_dir / name).is_file() for name in RESULT_FILES):
        lines.append(f"- `{runs_dir}` is itself a run folder: give the folder two levels above it")
    subfolders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for folder in subfolders:
        if folder.name not in task_folders:
            lines.append(f"- `{folder.name}/`: not a task folder name (e.g. {', '.join(sorted(task_folders)[:4])}, ...)")
            continue
        models = [p for p in folder.iterdir() if p.is_dir()]
        if not models:
            lines.append(f"- `{folder.name}/`: no <model>/ folder inside")
        elif any((folder / name).is_file() for name in RESULT_FILES):
            lines.append(f"- `{folder.name}/`: results directly in the task folder; the layout is <task>/<model>/")
        else:
            lines.append(f"- `{folder.name}/`: {', '.join(sorted(p.name for p in models))}: no results file yet")
    if not subfolders:
        lines.append("- it holds no folders")
    return lines


@dataclass
class Score:
    mean: Optional[float]  # None: missing
    std: Optional[float]   # sample std over seeds (n > 1)
    n: int
    notes: list[str]

    def text(self) -> str:
        if self.mean is None:
            return "missing" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        out = f"{self.mean:.2f}"
        if self.n > 1:
            out += f" ± {self.std:.2f} (n={self.n})"
        return out + (f" ({', '.join(self.notes)})" if self.notes else "")


def summarize(runs: list[Run]) -> Score:
    values = [r.value for r in runs if r.value is not None]
    notes = sorted({n for r in runs for n in r.notes if r.value is not None})
    if not values:
        return Score(None, None, 0, sorted({n for r in runs for n in r.notes}))
    if len(values) < len(runs):
        notes.append(f"{len(runs) - len(values)} of {len(runs)} runs without a result")
    std = statistics.stdev(values) if len(values) > 1 else None
    return Score(statistics.fmean(values), std, len(values), notes)


def blurb_score(values: dict[str, float]) -> Optional[float]:
    """Mean over the six BLURB task types of the mean within each type; None unless all 13 are given."""
    if any(t.folder not in values for t in BLURB):
        return None
    groups: dict[str, list[float]] = {}
    for t in BLURB:
        groups.setdefault(t.group, []).append(values[t.folder])
    return statistics.fmean(statistics.fmean(v) for v in groups.values())


def _aggregate_row(tasks: list[Task], scores: dict[str, Score], label: str) -> Optional[Score]:
    """MRQA average or BLURB score over the per-task means; None when a task is missing."""
    present = [t for t in tasks if scores.get(t.folder) and scores[t.folder].mean is not None]
    if len(present) < len(tasks):
        return Score(None, None, 0, [f"needs all {len(tasks)} tasks; {len(tasks) - len(present)} missing"])
    means = {t.folder: scores[t.folder].mean for t in tasks}
    value = blurb_score(means) if label == BLURB_SCORE else statistics.fmean(means.values())
    notes = sorted({n for t in tasks for n in scores[t.folder].notes})
    return Score(value, None, 1, notes)


def _fmt_delta(ours: Optional[float], paper: Optional[str]) -> str:
    if ours is None or paper is None:
        return ""
    return f"{ours - float(paper):+.2f}"


def _model_sort_key(model: str) -> tuple:
    name = paper_model(model)
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), model)


def _in_section(model: str, per_task: dict, title: str, tasks: list[Task]) -> bool:
    """A model has rows in a section if it has runs there or, in the sections this project adds,
    runs elsewhere and a paper number there (its rows then say missing)."""
    if any(t.folder in per_task for t in tasks):
        return True
    paper = PAPER.get(paper_model(model) or "", {})
    keys = [t.folder for t in tasks] + [AGGREGATES.get(title.split()[0])]
    return title in EXTRA_SECTIONS and any(key in paper for key in keys)


def build_report(runs_dir: Path) -> tuple[str, list[dict]]:
    """The Markdown report, and the rows the chart draws."""
    found = collect(runs_dir)
    lines = ["# Results beside the LinkBERT paper", "",
             f"Run folders read from `{runs_dir}`. Percent; Δ = ours − paper; ± is the sample standard "
             "deviation over seeds (n runs). *missing*: no run; *stale*: the run's log.txt is newer than "
             "its results (rerun since, or running); *partial*: --max_steps / --max_*_samples were set "
             "(SMOKE=1), not a full run.", ""]
    chart_rows: list[dict] = []
    details: list[str] = []
    for title, tasks in SECTIONS:
        models = sorted((m for m in found if _in_section(m, found[m], title, tasks)), key=_model_sort_key)
        lines += [f"## {title}", ""]
        if not models:
            lines += ["No runs found.", ""]
            continue
        header = "| Task | Metric |" + "".join(f" {m} (ours) | paper | Δ |" for m in models)
        lines += [header, "|---|---|" + "---|---|---|" * len(models)]
        scores = {m: {t.folder: summarize(found[m].get(t.folder, [])) for t in tasks} for m in models}
        for t in tasks:
            row = f"| {t.label} | {METRIC_NAMES[t.metric]} |"
            for m in models:
                score, paper = scores[m][t.folder], PAPER.get(paper_model(m) or "", {}).get(t.folder)
                row += f" {score.text()} | {paper or '—'} | {_fmt_delta(score.mean, paper)} |"
                chart_rows.append({"section": title, "model": m, "task": t.label, "ours": score.mean,
                                   "std": score.std, "paper": float(paper) if paper else None})
                for run in found[m].get(t.folder, []):
                    value = f"{run.value:.2f}" if run.value is not None else "—"
                    details.append(f"| `{run.folder.relative_to(runs_dir)}` | {run.seed if run.seed is not None else '?'}"
                                   f" | {value} | {run.source or '—'} | {', '.join(run.notes)} |")
            lines.append(row)
        aggregate = AGGREGATES.get(title.split()[0])
        if aggregate:
            row = f"| **{aggregate}** | |"
            for m in models:
                score = _aggregate_row(tasks, scores[m], aggregate)
                paper = PAPER.get(paper_model(m) or "", {}).get(aggregate)
                row += f" {score.text()} | {paper or '—'} | {_fmt_delta(score.mean, paper)} |"
            lines.append(row)
        lines.append("")
    if details:
        lines += ["## Run folders", "", "| folder | seed | score | read from | notes |", "|---|---|---|---|---|",
                  *details, ""]
    if not found:
        lines += ["## No runs found", "", *why_nothing_found(runs_dir), ""]
    return "\n".join(lines), chart_rows


def draw_chart(rows: list[dict], path: Path) -> Optional[str]:
    """Bars of ours (± std) vs the paper, one panel per section and model. Returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    panels: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        panels.setdefault((row["section"], row["model"]), []).append(row)
    if not panels:
        return "not drawn (no runs to draw)"
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.9 * max(len(r) for r in panels.values()) + 2),
                                                      3.2 * len(panels)), squeeze=False)
    for ax, ((section, model), items) in zip(axes[:, 0], panels.items()):
        x = range(len(items))
        ours = [r["ours"] if r["ours"] is not None else math.nan for r in items]
        paper = [r["paper"] if r["paper"] is not None else math.nan for r in items]
        ax.bar([i - 0.2 for i in x], ours, 0.4, label="ours")
        ax.bar([i + 0.2 for i in x], paper, 0.4, label="paper")
        for i, r in enumerate(items):
            if r["ours"] is None:
                ax.text(i - 0.2, 1, "missing", rotation=90, ha="center", va="bottom", fontsize=8)
            elif r["std"]:  # seed sweep: ± one standard deviation
                ax.errorbar(i - 0.2, r["ours"], yerr=r["std"], fmt="none", ecolor="black", capsize=3)
        pad = max(0.0, (3 - len(items)) / 2)  # keep one- or two-task panels from stretching the bars
        ax.set_xlim(-0.6 - pad, len(items) - 0.4 + pad)
        ax.set_xticks(list(x))
        ax.set_xticklabels([r["task"] for r in items], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("%")
        ax.set_title(f"{model}: {section}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path, help="the folder the run scripts wrote to (default layout: runs/)")
    parser.add_argument("--out", type=Path, help="Markdown file (default RUNS_DIR/results.md)")
    parser.add_argument("--chart", type=Path, help="PNG bar chart (default RUNS_DIR/results.png)")
    parser.add_argument("--no-chart", action="store_true", help="write no chart")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"collect_results.py: {args.runs_dir} is not a folder", file=sys.stderr)
        return 2
    report, rows = build_report(args.runs_dir)
    chart = args.chart or args.runs_dir / "results.png"
    note = None if args.no_chart else draw_chart(rows, chart)
    if args.no_chart:
        note = "chart not drawn (--no-chart)"
    report += f"\n{'Chart: ' + note if note else f'Chart: `{chart}`'}\n"
    out = args.out or args.runs_dir / "results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(report)
    print(f"wrote {out}" + ("" if note else f" and {chart}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
