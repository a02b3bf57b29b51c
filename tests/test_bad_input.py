"""Every bad input and flag combination of the error catalogue: the message kind, a non-zero
exit, and an output folder left without results. Task-specific kinds (NER tags, QA offsets,
multiple-choice endings) are tested with their tasks; test_error_catalogue.py raises every kind of
the catalogue from a real input."""

import json
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES, sample_dir
from linkbert.core.errors import catalogue_markdown
from linkbert.core.run import main
from linkbert.seqcls.run_seqcls import SeqClsTask

CHEMPROT = sample_dir("chemprot_hf")
ALL_FILES = sorted((SAMPLES / "seqcls").glob("*/*.json"))


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def expect_error(kind: str, argv: list, capsys, out: Path) -> str:
    existed = out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(SeqClsTask, [str(a) for a in argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()  # progress bars may come before it
    stderr = lines[-1]
    assert stderr.startswith(f"error [{kind}]"), lines
    assert sum(line.startswith("error [") for line in lines) == 1, "one clear line"
    assert "error [" not in captured.out, "printed once (stderr), not also in the log"
    if out.exists():
        assert existed, "a failed run leaves no empty --output_dir behind"
        assert not [p for p in out.rglob("*") if p.is_file()], "nothing written to the output folder"
    return stderr


@pytest.fixture
def base(tiny_model, tmp_path):
    out = tmp_path / "out"
    return out, ["--model_name_or_path", tiny_model(ALL_FILES), "--output_dir", out, "--max_steps", "1"]


def train_with(train: Path, base) -> list:
    out, argv = base
    return [*argv, "--train_file", train, "--do_train"]


def test_missing_file(base, capsys, tmp_path):
    msg = expect_error("missing_file", train_with(tmp_path / "nope.json", base), capsys, base[0])
    assert "nope.json" in msg and "download_data.sh" in msg


def test_unreadable_json_line(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [{"sentence": "a b", "label": "x"}, '{"sentence": "a b", "label": '])
    msg = expect_error("bad_json", train_with(train, base), capsys, base[0])
    assert f"{train}:2:" in msg


def test_missing_field(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [{"sentence": "a b", "label": "x"}, {"sentence": "c d"}])
    assert f"{train}:2:" in expect_error("missing_field", train_with(train, base), capsys, base[0])


def test_wrong_label_type(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [{"sentence": "a b", "label": {"x": 1}}])
    assert "'label'" in expect_error("wrong_type", train_with(train, base), capsys, base[0])


def test_mixed_label_types(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [{"sentence": "a b", "label": "yes"}, {"sentence": "c", "label": [0, 1]}])
    expect_error("mixed_label_types", train_with(train, base), capsys, base[0])


def test_empty_split(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [])
    expect_error("empty_split", train_with(train, base), capsys, base[0])


def test_empty_sentence(base, capsys, tmp_path):
    train = write(tmp_path / "train.json", [{"sentence": "a b", "label": "x"}, {"sentence": "  ", "label": "y"}])
    assert ":2:" in expect_error("empty_input", train_with(train, base), capsys, base[0])


def test_unseen_label(base, capsys, tmp_path):
    dev = write(tmp_path / "dev.json", [{"sentence": "a b", "label": "never-seen"}])
    argv = [*train_with(CHEMPROT / "train.json", base), "--validation_file", dev, "--do_eval"]
    assert "never-seen" in expect_error("unseen_label", argv, capsys, base[0])


@pytest.mark.parametrize("kind,flags", [
    ("conflicting_flags", ["--fp16", "--bf16"]),
    ("conflicting_flags", ["--evaluation_strategy", "steps", "--eval_strategy", "epoch"]),
    ("bad_flag_value", ["--evaluation_strategy", "sometimes"]),
    ("bad_flag_value", ["--report_to", "mlflow"]),
    ("unknown_flag", ["--learning_rat", "1e-5"]),
    ("unknown_metric", ["--metric_name", "f1_macro"]),
    ("unsupported_setup", ["--sharded_ddp", "zero_dp_3"]),
])
def test_bad_flags(kind, flags, base, capsys):
    expect_error(kind, [*train_with(CHEMPROT / "train.json", base), *flags], capsys, base[0])


def test_predict_without_test_file(base, capsys):
    out, argv = base
    msg = expect_error("missing_split", [*argv, "--do_predict"], capsys, out)
    assert "--test_file" in msg


def test_nothing_to_do(base, capsys):
    out, argv = base
    expect_error("nothing_to_do", [*argv, "--train_file", CHEMPROT / "train.json"], capsys, out)


def test_non_empty_output_dir_is_refused(base, capsys):
    out, argv = base
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    msg = expect_error("output_dir_not_empty", [*argv, "--train_file", CHEMPROT / "train.json", "--do_train"],
                       capsys, out / "nothing-else")
    assert "--overwrite_output_dir" in msg
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_output_dir_only_holding_a_run_script_log_is_fine(base, capsys):
    out, argv = base
    out.mkdir()
    (out / "log.txt").write_text("tee'd by a run script")
    main(SeqClsTask, [str(a) for a in [*argv, "--train_file", CHEMPROT / "train.json", "--do_train"]])
    assert (out / "train_results.json").is_file() and (out / "log.txt").read_text() == "tee'd by a run script"


def test_output_dir_not_writable(base, capsys, tmp_path):
    _, argv = base
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [a if a != base[0] else blocker / "out" for a in argv]
    expect_error("output_dir_not_writable", [*argv, "--train_file", CHEMPROT / "train.json", "--do_train"],
                 capsys, tmp_path / "none")


def test_model_folder_that_does_not_exist(base, capsys, tmp_path):
    out, argv = base
    argv = [*argv, "--train_file", CHEMPROT / "train.json", "--do_train"]
    argv[1] = tmp_path / "no-such-model"
    assert "no-such-model" in expect_error("missing_model", argv, capsys, out)


def test_incomplete_checkpoint(base, capsys, tmp_path):
    out, argv = base
    broken = tmp_path / "checkpoint-5"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    msg = expect_error("bad_checkpoint", [*train_with(CHEMPROT / "train.json", base), "--resume_from_checkpoint",
                                          broken], capsys, tmp_path / "none")
    assert "optimizer.pt" in msg


def test_prediction_only_from_a_model_without_labels(base, capsys):
    out, argv = base
    expect_error("no_labels_for_prediction", [*argv, "--test_file", CHEMPROT / "test.json", "--do_predict"],
                 capsys, out)


def test_readme_table_is_the_catalogue():
    readme = (REPO / "README.md").read_text()
    assert catalogue_markdown() in readme, "regenerate the README table: python -m linkbert.core.errors"

