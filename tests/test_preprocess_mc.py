"""scripts/preprocess_medqa.py and preprocess_mmlu.py on the invented samples in tests/raw_samples."""

import json
import shutil
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import preprocess_medqa as medqa  # noqa: E402
import preprocess_mmlu as mmlu  # noqa: E402
from preprocess_common import check_count, run_cli  # noqa: E402

SAMPLES = ROOT / "tests" / "raw_samples"
FIELDS = ["id", "sent1", "sent2", "ending0", "ending1", "ending2", "ending3", "label"]


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def one_line_error(main, argv, capsys) -> str:
    assert run_cli(main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


# ----------------------------------------------------------------------------- MedQA

def test_medqa_records(tmp_path):
    medqa.main(["--custom_data", "--raw_dir", str(SAMPLES / "medqa"), "--out_dir", str(tmp_path)])
    train = read_jsonl(tmp_path / "mc" / "medqa_usmle_hf" / "train.json")
    assert train[0] == {"id": "train-00000",
                        "sent1": "A 30-year-old juggler has sore wrists. Which is the next step?", "sent2": "",
                        "ending0": "Rest", "ending1": "Surgery", "ending2": "Casting", "ending3": "Ice baths",
                        "label": 0}
    assert [list(r) for r in train] == [FIELDS] * 2
    assert train[1]["id"] == "train-00001" and train[1]["label"] == 3 and train[1]["ending3"] == "\u00dc"
    assert read_jsonl(tmp_path / "mc" / "medqa_usmle_hf" / "dev.json")[0]["label"] == 1
    test = read_jsonl(tmp_path / "mc" / "medqa_usmle_hf" / "test.json")
    assert [(r["id"], r["label"]) for r in test] == [("test-00000", 2)]
    # ASCII-escaped like the original's json.dumps
    assert "\\u00dc" in (tmp_path / "mc" / "medqa_usmle_hf" / "train.json").read_text()


def test_medqa_known_counts_are_compared(tmp_path, capsys):
    medqa.main(["--custom_data", "--raw_dir", str(SAMPLES / "medqa"), "--out_dir", str(tmp_path), "--splits", "dev"])
    assert "medqa_usmle dev questions: 1, but the known size is 1272" in capsys.readouterr().out
    assert not (tmp_path / "mc" / "medqa_usmle_hf" / "train.json").exists()


def test_medqa_unknown_answer_letter(tmp_path, capsys):
    raw = Path(shutil.copytree(SAMPLES / "medqa", tmp_path / "medqa"))
    path = raw / "phrases_no_exclude_train.jsonl"
    path.write_text(path.read_text().replace('"answer_idx": "D"', '"answer_idx": "E"'))
    err = one_line_error(medqa.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"{path}:2: unknown answer letter 'E' (expected one of A, B, C, D) — ")
    assert not (tmp_path / "out").exists()


def test_medqa_truncated_json_line(tmp_path, capsys):
    raw = Path(shutil.copytree(SAMPLES / "medqa", tmp_path / "medqa"))
    path = raw / "phrases_no_exclude_test.jsonl"
    path.write_text(path.read_text()[:50])
    err = one_line_error(medqa.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"{path}:1: invalid JSON")


def test_medqa_missing_option(tmp_path, capsys):
    raw = Path(shutil.copytree(SAMPLES / "medqa", tmp_path / "medqa"))
    path = raw / "phrases_no_exclude_dev.jsonl"
    path.write_text(path.read_text().replace('"C": "Cold", ', ""))
    err = one_line_error(medqa.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"{path}:1: option C is missing")


# ----------------------------------------------------------------------------- MMLU

def test_mmlu_records_with_quoted_commas_and_newlines(tmp_path):
    mmlu.main(["--custom_data", "--raw_dir", str(SAMPLES / "mmlu"), "--out_dir", str(tmp_path)])
    target = tmp_path / "mc" / "mmlu_hf" / "professional_medicine"
    dev = read_jsonl(target / "dev.json")
    assert dev == [{"id": "professional_medicine_dev-00000", "sent1": "A child limps. Most likely?", "sent2": "",
                    "ending0": "Sprain", "ending1": "Fracture, hairline", "ending2": "Growing pains",
                    "ending3": "Gout", "label": 1}]
    val = read_jsonl(target / "val.json")
    assert [list(r) for r in val] == [FIELDS] * 2
    assert val[0]["sent1"] == "A man, 40, reports:\nfatigue and thirst. Test?"
    assert [(r["id"], r["label"]) for r in val] == [("professional_medicine_val-00000", 0),
                                                    ("professional_medicine_val-00001", 3)]
    assert read_jsonl(target / "test.json")[0]["ending2"] == 'say "three"'


def test_mmlu_test_count_accepts_both_public_versions(tmp_path, capsys):
    mmlu.main(["--custom_data", "--raw_dir", str(SAMPLES / "mmlu"), "--out_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "mmlu professional_medicine test questions: 1, but the known size is 272 or 282" in out
    assert "val questions: 2, but the known size is 31" in out
    assert check_count("test", 272, (272, 282)) and check_count("test", 282, (272, 282))
    assert not check_count("test", 281, (272, 282))


def test_mmlu_unknown_answer_letter_names_the_row_start(tmp_path, capsys):
    raw = Path(shutil.copytree(SAMPLES / "mmlu", tmp_path / "mmlu"))
    path = raw / "val" / "professional_medicine_val.csv"
    path.write_text(path.read_text().replace(",d,D\n", ",d,e\n"))
    err = one_line_error(mmlu.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir", str(tmp_path / "out")], capsys)
    # the first row spans lines 1-2, so the second row starts on line 3
    assert err.startswith(f"{path}:3: unknown answer letter 'e'")
    assert not (tmp_path / "out").exists()


def test_mmlu_wrong_column_count(tmp_path, capsys):
    raw = Path(shutil.copytree(SAMPLES / "mmlu", tmp_path / "mmlu"))
    path = raw / "test" / "professional_medicine_test.csv"
    path.write_text(path.read_text() + "Too few,a,b,C\n")
    err = one_line_error(mmlu.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"{path}:2: expected 6 comma-separated columns")


def test_mmlu_missing_file(tmp_path, capsys):
    err = one_line_error(mmlu.main, ["--custom_data", "--raw_dir", str(tmp_path), "--out_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"{tmp_path / 'dev' / 'professional_medicine_dev.csv'}: file not found — ")


def test_command_line_runs_from_any_directory(tmp_path):
    """As a script: imports its helpers from scripts/, exits 1 with one line on stderr."""
    script = ROOT / "scripts" / "preprocess_mmlu.py"
    ok = subprocess.run([sys.executable, str(script), "--custom_data", "--raw_dir", str(SAMPLES / "mmlu"), "--out_dir", "out"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "mc" / "mmlu_hf" / "professional_medicine" / "test.json").is_file()
    bad = subprocess.run([sys.executable, str(script), "--custom_data", "--raw_dir", "nowhere"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "nowhere/dev/professional_medicine_dev.csv: file not found" in bad.stderr


# ----------------------------------------------------------------------------- whole inputs only

def test_an_empty_or_partial_input_never_replaces_a_good_output(tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLES / "medqa", raw)
    out = tmp_path / "out"
    medqa.main(["--custom_data", "--raw_dir", str(raw), "--out_dir", str(out)])
    good = {p.name: p.read_bytes() for p in (out / "mc" / "medqa_usmle_hf").iterdir()}
    (raw / "phrases_no_exclude_dev.jsonl").write_text("")
    assert "no records" in one_line_error(medqa.main, ["--custom_data", "--raw_dir", str(raw), "--out_dir",
                                                       str(out)], capsys)
    # the samples are not the official sizes: without --custom_data that is an error, not a warning
    shutil.copy(SAMPLES / "medqa" / "phrases_no_exclude_dev.jsonl", raw)
    msg = one_line_error(medqa.main, ["--raw_dir", str(raw), "--out_dir", str(out)], capsys)
    assert "official split has 10178" in msg and "--custom_data" in msg
    assert {p.name: p.read_bytes() for p in (out / "mc" / "medqa_usmle_hf").iterdir()} == good
