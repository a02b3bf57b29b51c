"""bench/gpu_check.py in its CPU smoke mode (tiny shapes on the CPU; GPU-only parts skipped), so
the one GPU check that users run first cannot rot while no GPU is at hand."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO


def test_gpu_check_cpu_smoke_runs_every_check_and_writes_its_report(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    with pytest.raises(SystemExit) as done:
        gpu_check.main(["--cpu_smoke", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    checks = report["checks"]
    assert done.value.code == 0, {k: v.get("error") for k, v in checks.items()}
    assert list(checks) == list(gpu_check.CHECKS) and report["mode"].startswith("CPU smoke")
    # What a CPU can run, ran; what needs CUDA says so.
    assert checks["tasks"]["status"] == "pass" and checks["throughput"]["status"] == "pass"
    assert {checks[name]["status"] for name in ("cpu_equal", "sharding", "host_syncs")} == {"skipped"}
    # padded against --padding_free, trained and scored (every default task on a GPU; seqcls here)
    assert checks["padding_free_equal"]["status"] == "pass"
    assert [row[::2] for row in checks["padding_free_equal"]["rows"]] == [["seqcls", "identical"]]
    assert float(checks["padding_free_equal"]["rows"][0][1]) <= gpu_check.PACKED_WEIGHT_GAP
    runs = [tuple(row[:3]) for row in checks["tasks"]["rows"]]
    assert runs == [("seqcls", "fp16", "no"), ("ner", "bf16", "yes"), ("qa", "bf16", "yes"), ("mc", "fp16", "yes"),
                    ("pretrain", "bf16", "yes")]
    assert "eval_mlm_loss" in checks["tasks"]["rows"][-1][4]
    assert all(row[5] == "all written" for row in checks["tasks"]["rows"])
    variants = [row[3] for row in checks["throughput"]["rows"]]
    assert variants == ["original", "defaults", "--padding_free"]
    assert all(float(row[4]) > 0 for row in checks["throughput"]["rows"])
    markdown = (tmp_path / "gpu_report.md").read_text()
    assert all(f"## {name}: " in markdown for name in checks)


def test_host_sync_variants_train_on_the_cpu(tmp_path):
    """The host-sync check's runs (its counting needs CUDA): fine-tuning and pretraining, with and
    without --padding_free, each trains one update through the engine on tiny shapes."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    variants = gpu_check.sync_variants(SimpleNamespace(cuda=False, out=tmp_path), steps=1, batch=2)
    assert [name for name, _ in variants] == ["defaults", "--padding_free", "pretraining", "pretraining --padding_free"]
    for name, train in variants:
        train(1)
    features = gpu_check.pretraining_features(4, 32, 30522)
    row = features[0]
    masked = [i for i, label in enumerate(row["mlm_labels"]) if label != -100]
    assert masked and all(row["mlm_labels"][i] == row["input_ids"][i] for i in masked)
    assert len(row["token_type_ids"]) == len(row["input_ids"]) and row["relation_label"] in (0, 1, 2)
