"""The core's label resolution (linkbert.core.run.resolve_labels): the label space from the
training file or from a fine-tuned model's config, every gold label checked against it, and the
config given its label maps once, as `from_pretrained(..., **label_kwargs)` would have."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkbert.core.args import parse_args
from conftest import write_jsonl
from linkbert.core.data import CheckedSplits, load_splits
from linkbert.core.errors import UserError
from linkbert.core.run import resolve_labels
from linkbert.core.task import Labels
from linkbert.seqcls.run_seqcls import SeqClsArguments, SeqClsTask, TextFormat
from linkbert.tokcls.run_ner import NerArguments, NerTask


def seqcls(*flags: str) -> SeqClsTask:
    return SeqClsTask(*parse_args(SeqClsArguments, ["--model_name_or_path", "m", "--output_dir", "o", *flags]))


def saved_config(tmp_path: Path, **kwargs):
    """A model config as a folder holds it, read back the way a run reads it."""
    from transformers import AutoConfig, BertConfig

    BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
               **kwargs).save_pretrained(tmp_path)
    return AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("train", [["b", "a", "c", "a"], [[0, 1, 1], [1, 0, 0]], [0.5, 4, 2.5]])
def test_training_labels_reach_the_config_as_from_pretrained_would_write_them(train, tmp_path):
    from transformers import AutoConfig

    task = seqcls()
    config = saved_config(tmp_path)
    labels = resolve_labels(task, CheckedSplits(kept={"train": train}), config)
    assert labels == task.label_space(train)
    assert config.to_dict() == AutoConfig.from_pretrained(tmp_path, **labels.config_kwargs()).to_dict()
    if isinstance(train[0], str):
        assert labels.names == ("a", "b", "c") and config.label2id == {"a": 0, "b": 1, "c": 2}


def test_prediction_only_takes_the_saved_labels_and_refuses_one_the_model_lacks(tmp_path):
    task = seqcls()
    config = saved_config(tmp_path, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1},
                          problem_type="single_label_classification")
    # what the check of dev.json kept: line 2 was blank, so the third label sits on line 4
    checked = CheckedSplits(kept={"validation": ["yes", "no", "maybe"]}, lines={"validation": [1, 3, 4]},
                            paths={"validation": tmp_path / "dev.json"})
    with pytest.raises(UserError) as e:
        resolve_labels(task, checked, config)
    assert e.value.kind == "unseen_label" and "dev.json:4:" in str(e.value) and "'maybe'" in str(e.value)
    assert "the model's labels (no, yes)" in str(e.value)
    good = CheckedSplits(kept={"validation": ["yes", "no"]})
    assert resolve_labels(task, good, config) == Labels(("no", "yes"), "single_label_classification")


def test_prediction_only_from_a_config_without_label_names(tmp_path):
    ner = NerTask(*parse_args(NerArguments, ["--model_name_or_path", "m", "--output_dir", "o"]))
    with pytest.raises(UserError) as e:
        resolve_labels(ner, CheckedSplits(kept={"test": [(None, ["O"])]}), saved_config(tmp_path / "a"))
    assert e.value.kind == "no_labels_for_prediction" and "names no tags" in str(e.value)
    # a regression head needs no names
    regression = saved_config(tmp_path / "b", num_labels=1, problem_type="regression")
    assert resolve_labels(seqcls(), CheckedSplits(kept={"test": [0.5]}), regression) == Labels((), "regression")


PAIR = {"sentence1": "a b", "sentence2": "c d", "label": "yes"}


def test_record_format_is_read_per_file_and_checking_keeps_no_state(tmp_path):
    """Each file's first record gives its format (the text fields of the run's first file, whether
    this file is labelled); the task object learns nothing from the check."""
    train = write_jsonl(tmp_path / "train.json", [PAIR, {**PAIR, "label": "no"}])
    test = write_jsonl(tmp_path / "test.json", [{"sentence1": "e", "sentence2": "f"}])
    task = seqcls("--train_file", str(train), "--test_file", str(test), "--cache_dir", str(tmp_path / "cache"))
    before = dict(vars(task))
    _, checked = load_splits(task, ["train", "test"])
    assert vars(task) == before
    keys = ("sentence1", "sentence2")
    assert checked.formats == {"train": TextFormat(keys, "train", True), "test": TextFormat(keys, "train", False)}
    assert checked.record_format is checked.formats["train"]


def test_later_files_must_have_the_first_files_text_fields(tmp_path):
    train = write_jsonl(tmp_path / "train.json", [PAIR])
    dev = write_jsonl(tmp_path / "dev.json", [PAIR, {"sentence": "a b", "label": "no"}])
    task = seqcls("--train_file", str(train), "--validation_file", str(dev))
    with pytest.raises(UserError) as e:
        load_splits(task, ["train", "validation"])
    assert e.value.kind == "missing_field" and f"{dev}:2:" in str(e.value)
    assert "first record of the train file set the text fields to sentence1, sentence2" in str(e.value)
