"""Bad multiple-choice input stops the run with one UserError naming the file, the line and the
problem, before anything is written to the output folder."""

from __future__ import annotations

import json

import pytest

from conftest import SAMPLES, run_task, write_jsonl
from linkbert.core.errors import UserError
from linkbert.mc.run_multiple_choice import MultipleChoiceTask, label_index

GOOD = {"id": "q", "sent1": "Which drug treats acute gout?", "sent2": "", "ending0": "colchicine",
        "ending1": "insulin", "ending2": "warfarin", "ending3": "heparin", "label": 0}


def without(key: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != key}


BAD = {  # name: (record, kind, words the message must hold)
    "five_endings": ({**GOOD, "ending4": "aspirin"}, "bad_choice_count", "5 choices"),
    "three_endings": (without("ending3"), "bad_choice_count", "3 choices"),
    "one_ending": ({k: v for k, v in GOOD.items() if k not in ("ending1", "ending2", "ending3")}, "bad_choice_count",
                   "at least 2"),
    "gap_in_endings": ({**without("ending2"), "ending4": "aspirin"}, "missing_field", "'ending2'"),
    "zero_padded_ending": ({**without("ending1"), "ending01": "insulin"}, "missing_field", "'ending1'"),
    "no_endings": ({k: v for k, v in GOOD.items() if not k.startswith("ending")}, "missing_field", "'ending0'"),
    "label_too_big": ({**GOOD, "label": 4}, "label_out_of_range", "0..3"),
    "label_negative": ({**GOOD, "label": -1}, "label_out_of_range", "0..3"),
    "no_sent1": (without("sent1"), "missing_field", "'sent1'"),
    "no_label": (without("label"), "missing_field", "'label'"),
    "empty_sent1": ({**GOOD, "sent1": "  "}, "empty_input", "'sent1'"),
    "sent1_list": ({**GOOD, "sent1": ["Which drug?"]}, "wrong_type", "'sent1' must be a string"),
    "sent2_null": ({**GOOD, "sent2": None}, "wrong_type", "'sent2' must be a string"),
    "ending_number": ({**GOOD, "ending1": 5}, "wrong_type", "'ending1' must be a string"),
    "label_word": ({**GOOD, "label": "B"}, "wrong_type", "'label'"),
    "label_float": ({**GOOD, "label": 1.5}, "wrong_type", "'label'"),
    "label_bool": ({**GOOD, "label": True}, "wrong_type", "'label'"),
}




def run(tmp_path, *flags) -> UserError:
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        run_task(MultipleChoiceTask, ["--model_name_or_path", "not-loaded-before-the-data-check",
                                      "--output_dir", out, *flags])
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return e.value


@pytest.mark.parametrize("name", BAD)
def test_bad_record_names_file_line_and_problem(tmp_path, name):
    record, kind, words = BAD[name]
    train = tmp_path / "train.json"
    write_jsonl(train, [GOOD, GOOD, record, GOOD])
    error = run(tmp_path, "--train_file", train, "--do_train")
    assert error.kind == kind
    assert f"{train}:3: " in str(error) and words in str(error)


def test_choice_count_must_match_across_splits(tmp_path):
    train, test = tmp_path / "train.json", tmp_path / "test.json"
    write_jsonl(train, [GOOD, GOOD])
    write_jsonl(test, [GOOD, {**GOOD, "ending4": "aspirin"}])
    error = run(tmp_path, "--train_file", train, "--test_file", test, "--do_train", "--do_predict")
    assert error.kind == "bad_choice_count" and f"{test}:2: " in str(error)
    assert "first record of the train file has 4" in str(error)


def test_prediction_only_takes_the_choice_count_from_the_test_file(tmp_path):
    test = tmp_path / "test.json"
    write_jsonl(test, [without("ending3"), without("ending3"), GOOD])  # 3-way questions, then a 4-way one
    error = run(tmp_path, "--test_file", test, "--do_predict")
    assert error.kind == "bad_choice_count" and f"{test}:3: " in str(error) and "has 3" in str(error)


def test_bad_json_line(tmp_path):
    test = tmp_path / "test.json"
    test.write_text(json.dumps(GOOD) + "\n{\"sent1\": \n", encoding="utf-8")
    error = run(tmp_path, "--test_file", test, "--do_predict")
    assert error.kind == "bad_json" and f"{test}:2: " in str(error)


def test_sample_files_are_valid(tmp_path):
    from linkbert.core.args import parse_args
    from linkbert.core.data import validate_split
    from linkbert.mc.run_multiple_choice import MultipleChoiceArguments

    task = MultipleChoiceTask(*parse_args(MultipleChoiceArguments, ["--model_name_or_path", "unused",
                                                                    "--output_dir", str(tmp_path)]))
    labels, run_format = [], None
    for path in sorted((SAMPLES / "mc").rglob("*.json")):
        kept, fmt = validate_split(path, "test", task, run_format=run_format)
        labels, run_format = labels + kept, run_format or fmt
    assert run_format.num_choices == 4 and sorted(set(labels)) == [0, 1, 2, 3]


def test_labels_as_digit_strings_count():
    # the original's collator called int() on every label, so "2" is the label 2
    values = (2, "2", " 3 ", "-1", "B", "2.0", 2.0, True, None)
    assert [label_index(v) for v in values] == [2, 2, 3, -1, None, None, None, None, None]
