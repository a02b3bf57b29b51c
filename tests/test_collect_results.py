"""scripts/collect_results.py on fabricated run folders (both result layouts, seed sweeps, stale,
partial and missing runs): the table's numbers, the BLURB score against a hand computation, and
the chart."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO



def load_collector():
    spec = importlib.util.spec_from_file_location("collect_results", REPO / "scripts" / "collect_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


collect_results = load_collector()


def write_run(folder: Path, metric: str, value: float, layout: str = "ours", run_args: dict | None = None) -> None:
    """A finished run: ours = predict_results.json with predict_* keys; original = test_results.json
    (seqcls/NER) or predict_results.json (QA/MC) with test_* keys."""
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("training...\n")
    if layout == "ours":
        (folder / "predict_results.json").write_text(json.dumps({f"predict_{metric}": value, "predict_samples": 10}))
        (folder / "run_args.json").write_text(json.dumps(run_args or {"seed": 42, "max_steps": -1}))
    else:
        name = "test_results.json" if layout == "original_seqcls_ner" else "predict_results.json"
        (folder / name).write_text(json.dumps({f"test_{metric}": value, "test_samples": 10}))
    old = time.time() - 3600  # the log was last written before the results, as in a finished run
    os.utime(folder / "log.txt", (old, old))


def table_row(report: str, label: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{report}")


# BioLinkBERT-base fractions, chosen so the BLURB score is easy to compute by hand:
# NER (90 + 80 + 85 + 75 + 70) / 5 = 80; PICO 70; RE (75 + 80 + 85) / 3 = 80; BIOSSES seeds
# 90, 92, 94 -> 92; HoC 85; QA (60 + 90) / 2 = 75. BLURB = (80 + 70 + 80 + 92 + 85 + 75) / 6.
BASE = {"BC5CDR-chem_hf": ("f1", 0.90), "BC5CDR-disease_hf": ("f1", 0.80), "NCBI-disease_hf": ("f1", 0.85),
        "BC2GM_hf": ("f1", 0.75), "JNLPBA_hf": ("f1", 0.70), "ebmnlp_hf": ("macro_f1", 0.70),
        "chemprot_hf": ("F1", 0.75), "DDI_hf": ("F1", 0.80), "GAD_hf": ("F1", 0.85), "HoC_hf": ("F1", 0.85),
        "pubmedqa_hf": ("accuracy", 0.60), "bioasq_hf": ("accuracy", 0.90)}
HAND_BLURB = (80 + 70 + 80 + 92 + 85 + 75) / 6  # 80.333...


@pytest.fixture()
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for i, (task, (metric, value)) in enumerate(sorted(BASE.items())):
        write_run(root / task / "BioLinkBERT-base", metric, value, "ours" if i % 2 else "original_seqcls_ner")
    for seed, value in ((1, 0.90), (2, 0.92), (3, 0.94)):
        write_run(root / "BIOSSES_hf" / "BioLinkBERT-base" / f"seed{seed}", "pearsonr", value,
                  run_args={"seed": seed, "max_steps": -1})
    # BioLinkBERT-large: two tasks only; HoC rerun since its results (stale); GAD still running.
    write_run(root / "HoC_hf" / "BioLinkBERT-large", "F1", 0.86)
    hours_ago = time.time() - 7200
    os.utime(root / "HoC_hf" / "BioLinkBERT-large" / "predict_results.json", (hours_ago, hours_ago))
    # A log written a few seconds after the results is the run's own last lines, not a rerun.
    write_run(root / "chemprot_hf" / "BioLinkBERT-large", "F1", 0.80)
    os.utime(root / "chemprot_hf" / "BioLinkBERT-large" / "log.txt")
    (root / "GAD_hf" / "BioLinkBERT-large").mkdir(parents=True)
    (root / "GAD_hf" / "BioLinkBERT-large" / "log.txt").write_text("epoch 1...\n")
    # MRQA in the original layout: QA scores are already percent.
    write_run(root / "squad_hf" / "LinkBERT-base", "f1", 90.6, "original_qa_mc")
    # MedQA in the original layout (fraction), and a SMOKE run of MMLU.
    write_run(root / "medqa_usmle_hf" / "BioLinkBERT-large", "accuracy", 0.451, "original_qa_mc")
    write_run(root / "mmlu_professional_medicine_eval" / "BioLinkBERT-large", "accuracy", 0.25,
              run_args={"seed": 42, "max_steps": 20, "max_predict_samples": 100})
    return root


def test_blurb_score_equals_the_hand_computation(runs):
    report, _ = collect_results.build_report(runs)
    row = table_row(report, "**BLURB score**")
    # | label | metric | base ours | paper | Δ | large ours | paper | Δ |
    assert row[2] == f"{HAND_BLURB:.2f}" == "80.33"
    assert row[3] == "83.39" and row[4] == f"{HAND_BLURB - 83.39:+.2f}"
    assert row[5].startswith("missing") and "11 missing" in row[5]  # large: 2 of 13 tasks have a result
    assert row[6] == "84.30" and row[7] == ""


def test_per_task_numbers_layouts_and_seeds(runs):
    report, _ = collect_results.build_report(runs)
    assert table_row(report, "BC5-chem")[2:5] == ["90.00", "93.75", "-3.75"]
    assert table_row(report, "PubMedQA")[2] == "60.00"
    assert table_row(report, "BIOSSES")[2] == "92.00 ± 2.00 (n=3)"
    assert table_row(report, "HoC")[5] == "86.00 (stale)"
    assert table_row(report, "ChemProt")[5] == "80.00"
    assert table_row(report, "GAD")[5].startswith("missing (no test F1")
    assert table_row(report, "BC2GM")[5] == "missing"
    assert table_row(report, "SQuAD")[2:5] == ["90.60", "90.1", "+0.50"]
    assert table_row(report, "HotpotQA")[2] == "missing"
    assert table_row(report, "**Avg.**")[2].startswith("missing")
    assert table_row(report, "MedQA-USMLE")[2:5] == ["45.10", "44.6", "+0.50"]
    assert table_row(report, "MMLU prof. medicine")[2:5] == ["25.00 (partial)", "50.7", "-25.70"]


def test_paper_numbers_give_the_published_blurb_scores():
    tasks = [t.folder for t in collect_results.BLURB]
    for model, published in (("PubMedBERT-base", 81.10), ("BioLinkBERT-base", 83.39), ("BioLinkBERT-large", 84.30)):
        paper = {t: float(collect_results.PAPER[model][t]) for t in tasks}
        assert round(collect_results.blurb_score(paper), 2) == published
        del paper["HoC_hf"]
        assert collect_results.blurb_score(paper) is None


def test_model_names_pick_the_paper_column():
    assert collect_results.paper_model("BioLinkBERT-large") == "BioLinkBERT-large"
    assert collect_results.paper_model("linkbert-base") == "LinkBERT-base"
    assert collect_results.paper_model("BiomedNLP-PubMedBERT-base-uncased-abstract") == "PubMedBERT-base"
    assert collect_results.paper_model("bert-base-cased") is None


def test_command_line_writes_table_and_chart(runs, tmp_path):
    pytest.importorskip("matplotlib")
    assert collect_results.main([str(runs)]) == 0
    assert "| **BLURB score** | | 80.33 |" in (runs / "results.md").read_text()
    assert (runs / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert collect_results.main([str(tmp_path / "nowhere")]) == 2


def test_without_matplotlib_the_table_is_written_with_a_note(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert collect_results.main([str(runs)]) == 0
    assert "matplotlib is not installed" in (runs / "results.md").read_text()
    assert not (runs / "results.png").exists()


def write_sweep(folder: Path, dev_score: float | None, missing: int = 0) -> None:
    """A GLUE sweep folder as linkbert.sweep leaves it (the chosen run's folder holds run_args.json)."""
    best_dir = folder / "lr2e-05_bs32_ep3"
    best_dir.mkdir(parents=True)
    (best_dir / "run_args.json").write_text(json.dumps({"seed": 42, "max_steps": -1}))
    best = {"name": best_dir.name, "output_dir": str(best_dir), "dev_score": dev_score} if dev_score else None
    (folder / "sweep_results.json").write_text(json.dumps({
        "best": best, "missing": [f"c{i}" for i in range(missing)], "configurations": [{}] * 45}))


def test_glue_few_shot_and_distracting_documents_sections(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "squad_hf" / "LinkBERT-base", "f1", 90.0)
    glue_scores = {"cola": 0.60, "sst2": 0.93, "mrpc": 0.88, "qqp": 0.89, "stsb": 0.89, "mnli": 0.85, "qnli": 0.91}
    for task, score in glue_scores.items():
        write_sweep(runs / "glue" / task / "LinkBERT-base", score, missing=3 if task == "cola" else 0)
    write_run(runs / "hotpot_hf_fewshot10" / "LinkBERT-base", "f1", 71.0)
    report, _ = collect_results.build_report(runs)
    assert table_row(report, "CoLA")[2:5] == ["60.00 (3 of 45 configurations missing)", "—", ""]
    assert table_row(report, "MRPC")[1:3] == ["mean of F1, accuracy", "88.00"]
    assert table_row(report, "RTE")[2] == "missing"
    assert table_row(report, "**GLUE average**")[2:4] == ["missing (needs all 8 tasks; 1 missing)", "79.6"]
    few_shot = report.split("## Few-shot MRQA")[1].split("## ")[0]
    assert table_row(few_shot, "HotpotQA")[2:5] == ["71.00", "70.5", "+0.50"]
    assert table_row(few_shot, "TriviaQA")[2:4] == ["missing", "66.0"]
    assert table_row(report, "SQuAD + 1-2 distracting docs")[2:4] == ["missing", "89.6"]
    # All eight: the plain mean of the task scores.
    write_sweep(runs / "glue" / "rte" / "LinkBERT-base", 0.70)
    report, _ = collect_results.build_report(runs)
    expected = sum(list(glue_scores.values()) + [0.70]) / 8 * 100
    assert table_row(report, "**GLUE average**")[2:5] == [f"{expected:.2f} (3 of 45 configurations missing)", "79.6",
                                                          f"{expected - 79.6:+.2f}"]


def test_nothing_found_says_where_it_looked_and_what_was_lacking(tmp_path, capsys):
    (tmp_path / "chemprot_hf" / "BioLinkBERT-base").mkdir(parents=True)
    (tmp_path / "chemprot").mkdir()  # not a task folder name
    (tmp_path / "HoC_hf").mkdir()    # no model folder inside
    assert collect_results.main([str(tmp_path), "--no-chart"]) == 0
    report = capsys.readouterr().out
    assert "## No runs found" in report and "RUNS/<task>/<model>/" in report
    assert "`chemprot_hf/`: BioLinkBERT-base: no results file yet" in report
    assert "`chemprot/`: not a task folder name" in report and "`HoC_hf/`: no <model>/ folder inside" in report
    run_dir = tmp_path / "chemprot_hf" / "BioLinkBERT-base"
    (run_dir / "predict_results.json").write_text('{"predict_F1": 0.5}')
    collect_results.main([str(run_dir), "--no-chart"])
    assert "is itself a run folder" in capsys.readouterr().out


def test_an_unreadable_predict_results_is_never_replaced_by_all_results(tmp_path):
    folder = tmp_path / "run"
    write_run(folder, "accuracy", 0.60)
    (folder / "all_results.json").write_text(json.dumps({"predict_accuracy": 0.99}))  # an older score
    (folder / "predict_results.json").write_text('{"predict_accuracy": 0.6')  # cut off mid-write
    task = next(t for _, tasks in collect_results.SECTIONS for t in tasks if t.folder == "pubmedqa_hf")
    run = collect_results.read_run(folder, task)
    assert run.value is None and "unreadable" in " ".join(run.notes)
