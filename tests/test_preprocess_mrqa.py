"""scripts/preprocess_mrqa.py on the invented MRQA samples in tests/raw_samples/mrqa."""

import gzip
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import preprocess_mrqa as mrqa  # noqa: E402
from preprocess_common import DataError, run_cli  # noqa: E402

SAMPLES = ROOT / "tests" / "raw_samples" / "mrqa"


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A writable copy of the samples: <tmp>/mrqa/{train,dev,inhouse_splits}."""
    return Path(shutil.copytree(SAMPLES, tmp_path / "mrqa"))


def convert(raw: Path, out: Path) -> None:
    mrqa.main(["--custom_data", "--raw_dir", str(raw), "--split_dir", str(raw / "inhouse_splits"),
               "--out_dir", str(out), "--datasets", "squad"])


def test_train_records_field_by_field(tmp_path, capsys):
    convert(SAMPLES, tmp_path)
    records = read_jsonl(tmp_path / "qa" / "squad_hf" / "train.json")
    assert [list(r) for r in records] == [["id", "question", "context", "answers"]] * 3
    first, second, third = records
    # `id` wins over `qid` when both exist; otherwise `qid`
    assert [r["id"] for r in records] == ["sq-0001", "q-bbb", "q-ccc"]
    # questions are stripped, the context is kept as is
    assert first["question"] == "When did the glass bridge open?"
    assert second["question"] == "Who painted the bridge?"
    assert first["context"] == second["context"]
    assert first["context"].startswith("The glass bridge over the Vell river")
    # gold answers: every detected answer's text, start of its first char span
    assert first["answers"] == {"answer_start": [47], "text": ["1931"]}
    assert second["answers"] == {"answer_start": [77, 82], "text": ["Mara Lindqvist", "Lindqvist"]}
    assert first["context"][77:77 + len("Mara Lindqvist")] == "Mara Lindqvist"
    # a normalised answer ("3" for "three") is kept and counted, not fatal
    assert third["answers"] == {"answer_start": [55], "text": ["3"]}
    out = capsys.readouterr().out
    assert "differs from the context at their span: 1" in out
    assert "SQuAD.jsonl:3" in out


def test_inhouse_split_follows_the_split_files_order(tmp_path):
    convert(SAMPLES, tmp_path)
    target = tmp_path / "qa" / "squad_hf"
    # split file: {"dev": [2, 0], "test": [3, 1]}; the header line is not a paragraph
    assert [r["id"] for r in read_jsonl(target / "dev.json")] == ["dev-q2", "dev-q0"]
    assert [r["id"] for r in read_jsonl(target / "test.json")] == ["dev-q3", "dev-q1"]
    dev = read_jsonl(target / "dev.json")
    assert dev[0]["context"] == "Paragraph two: tea from the Halden hills tastes of smoke."
    assert dev[0]["answers"] == {"answer_start": [51], "text": ["smoke"]}


def test_output_is_json_dumps_default_style(tmp_path):
    convert(SAMPLES, tmp_path)
    line = (tmp_path / "qa" / "squad_hf" / "dev.json").read_text().splitlines()[0]
    assert line.startswith('{"id": "dev-q2", "question": ')  # ", " and ": " separators, as upstream


def test_gzip_input_official_names_and_no_header(raw, tmp_path):
    # MRQA's own file name, gzipped, for train; a dev file without a header line
    train = raw / "train" / "SQuAD.jsonl"
    hotpot_train = raw / "train" / "HotpotQA.jsonl.gz"
    with gzip.open(hotpot_train, "wt", encoding="utf-8") as f:
        f.write(train.read_text(encoding="utf-8"))
    dev_lines = (raw / "dev" / "SQuAD.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (raw / "dev" / "HotpotQA.jsonl").write_text("".join(dev_lines[1:]), encoding="utf-8")
    (raw / "inhouse_splits" / "inhouse_split_hotpot.json").write_text('{"dev": [1, 2], "test": [0, 3]}')
    mrqa.main(["--custom_data", "--raw_dir", str(raw), "--split_dir", str(raw / "inhouse_splits"),
               "--out_dir", str(tmp_path / "out"), "--datasets", "hotpot"])
    target = tmp_path / "out" / "qa" / "hotpot_hf"
    assert [r["id"] for r in read_jsonl(target / "train.json")] == ["sq-0001", "q-bbb", "q-ccc"]
    # no header: index 0 is the first line of the file
    assert [r["id"] for r in read_jsonl(target / "dev.json")] == ["dev-q1", "dev-q2"]
    assert [r["id"] for r in read_jsonl(target / "test.json")] == ["dev-q0", "dev-q3"]


def test_triviaqa_web_name_is_found(raw):
    (raw / "dev" / "SQuAD.jsonl").rename(raw / "dev" / "TriviaQA-web.jsonl")
    assert mrqa.raw_file(raw, "dev", "triviaqa").name == "TriviaQA-web.jsonl"


@pytest.mark.parametrize("split, message", [
    ({"dev": [2, 0], "test": [3, 4]}, "test[1] = 4 is out of range"),
    ({"dev": [2, 0], "test": [3, -1]}, "test[1] = -1 is out of range"),
    ({"dev": [2, 0], "test": [3, 0]}, "paragraph 0 is listed twice (dev[1] and test[1])"),
    ({"dev": [2, 0], "test": [3]}, "1 of the 4 paragraphs"),
    ({"dev": [2, 0], "test": [3, "1"]}, "test[1] = '1' is not an integer"),
    ({"dev": [2, 0, 3, 1]}, "split file has no field 'test'"),
])
def test_bad_split_file_fails_naming_file_and_line(raw, tmp_path, capsys, split, message):
    split_file = raw / "inhouse_splits" / "inhouse_split_squad.json"
    split_file.write_text(json.dumps(split))
    argv = ["--custom_data", "--raw_dir", str(raw), "--split_dir", str(raw / "inhouse_splits"),
            "--out_dir", str(tmp_path / "out"), "--datasets", "squad"]
    assert run_cli(mrqa.main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    assert message in err
    assert err.startswith(str(split_file))
    assert not (tmp_path / "out" / "qa").exists()  # checked before anything is written


def test_split_error_points_at_the_line_of_the_bad_index(raw):
    split_file = raw / "inhouse_splits" / "inhouse_split_squad.json"
    split_file.write_text('{\n"dev": [2, 0],\n"test": [3,\n 9]\n}\n')
    with pytest.raises(DataError) as info:
        convert(raw, raw.parent / "out")
    assert (info.value.path, info.value.line) == (str(split_file), 4)


def test_truncated_json_line(raw, tmp_path, capsys):
    path = raw / "train" / "SQuAD.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + lines[1] + lines[2][:40] + "\n", encoding="utf-8")
    argv = ["--custom_data", "--raw_dir", str(raw), "--split_dir", str(raw / "inhouse_splits"),
            "--out_dir", str(tmp_path / "out"), "--datasets", "squad"]
    assert run_cli(mrqa.main, argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:3: invalid JSON")
    assert " — " in err  # says what to do
    # the atomic writer left neither a partial train.json nor a temporary file
    assert not (tmp_path / "out" / "qa" / "squad_hf" / "train.json").exists()
    assert list((tmp_path / "out" / "qa" / "squad_hf").iterdir()) == []


def test_truncated_gzip_file(raw, tmp_path):
    data = gzip.compress((raw / "train" / "SQuAD.jsonl").read_bytes())
    (raw / "train" / "SQuAD.jsonl").unlink()
    (raw / "train" / "SQuAD.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        convert(raw, tmp_path / "out")


def test_header_in_the_middle_is_an_error(raw, tmp_path):
    path = raw / "dev" / "SQuAD.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:3] + [lines[0]] + lines[3:]), encoding="utf-8")
    with pytest.raises(DataError) as info:
        convert(raw, tmp_path / "out")
    assert info.value.line == 4 and "header" in info.value.problem


def test_answer_start_outside_the_context_is_fatal(raw, tmp_path):
    path = raw / "train" / "SQuAD.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    paragraph = json.loads(lines[2])
    paragraph["qas"][0]["detected_answers"][0]["char_spans"] = [[500, 504]]
    lines[2] = json.dumps(paragraph)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        convert(raw, tmp_path / "out")
    assert info.value.line == 3 and "starts at 500, outside the context" in info.value.problem


def test_question_without_any_id(raw, tmp_path):
    path = raw / "train" / "SQuAD.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    paragraph = json.loads(lines[2])
    del paragraph["qas"][0]["qid"]
    lines[2] = json.dumps(paragraph)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="neither 'id' nor 'qid'"):
        convert(raw, tmp_path / "out")


def test_missing_raw_file_says_what_to_do(tmp_path):
    with pytest.raises(DataError) as info:
        mrqa.main(["--custom_data", "--raw_dir", str(tmp_path), "--out_dir", str(tmp_path / "out"), "--datasets", "newsqa"])
    assert info.value.path == str(tmp_path / "dev" / "NewsQA.jsonl")
    assert "file not found" in info.value.problem and "download_raw_data.sh" in info.value.fix


def test_known_paragraph_counts_are_compared(tmp_path, capsys):
    convert(SAMPLES, tmp_path)
    err = capsys.readouterr().out
    assert "squad dev paragraphs: 2, but the known size is 1033" in err
    assert "squad test paragraphs: 2, but the known size is 1034" in err
