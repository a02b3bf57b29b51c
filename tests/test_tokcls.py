"""Token classification (NER, PICO): sub-token alignment, words not scored, end-to-end runs with
the original flags, prediction-only runs from the saved folder, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from conftest import read_jsonl, run_task, sample_dir, write_jsonl
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

from linkbert.core.args import parse_args
from linkbert.core.errors import UserError
from linkbert.core.task import Labels, RecordError, TaskContext
from linkbert.tokcls.run_ner import IGNORE_INDEX, NerArguments, NerTask, first_token_positions

NCBI = sample_dir("NCBI-disease_hf")
PICO = sample_dir("ebmnlp_hf")
ZERO_WIDTH = "\u200b"  # a "word" BERT's normaliser removes entirely

# The original run_examples_blurb_biolinkbert-base.sh flags .
NCBI_FLAGS = ("--do_train --do_eval --do_predict --per_device_train_batch_size 32 --gradient_accumulation_steps 1 "
              "--fp16 --learning_rate 5e-5 --warmup_ratio 0.1 --num_train_epochs 20 --max_seq_length 512 "
              "--save_strategy no --evaluation_strategy no --overwrite_output_dir").split()
PICO_FLAGS = ("--do_train --do_eval --do_predict --return_macro_metrics --per_device_train_batch_size 32 "
              "--gradient_accumulation_steps 1 --fp16 --learning_rate 5e-5 --num_train_epochs 1 --max_seq_length 512 "
              "--save_strategy no --evaluation_strategy no --overwrite_output_dir").split()


def files(folder: Path) -> list[Path]:
    return [folder / f"{split}.json" for split in ("train", "dev", "test")]


def data_flags(folder: Path) -> list:
    train, dev, test = files(folder)
    return ["--train_file", train, "--validation_file", dev, "--test_file", test]






def scored_from_file(path: Path) -> tuple[list, list]:
    """The words of a predictions file that were scored (prediction not null)."""
    preds, golds = [], []
    for r in read_jsonl(path):
        keep = [i for i, p in enumerate(r["predictions"]) if p is not None]
        preds.append([r["predictions"][i] for i in keep])
        golds.append([r["labels"][i] for i in keep])
    return preds, golds


def make_task(model: str, *flags: str, max_seq_length: int = 512,
              pad_to_multiple_of: Optional[int] = None) -> tuple[NerTask, TaskContext]:
    """The task and the context the core would resolve for it, NCBI-disease's tags."""
    from transformers import AutoTokenizer

    task = NerTask(*parse_args(NerArguments, ["--model_name_or_path", model, "--output_dir", "unused", *flags]))
    return task, TaskContext(AutoTokenizer.from_pretrained(model), max_seq_length,
                             pad_to_multiple_of=pad_to_multiple_of, labels=Labels(("B-Disease", "I-Disease", "O")))


@pytest.fixture(scope="module")
def ncbi_model(tiny_model) -> str:
    return tiny_model(files(NCBI))


@pytest.fixture(scope="module")
def ncbi_run(ncbi_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ncbi_run")
    metrics = run_task(NerTask, ["--model_name_or_path", ncbi_model, *data_flags(NCBI), *NCBI_FLAGS,
                                 "--max_steps", 3, "--disable_tqdm", "--output_dir", out])
    return out, metrics


# -- alignment --------------------------------------------------------------------------------
def test_labels_sit_on_the_first_sub_token_of_each_word(ncbi_model):
    task, ctx = make_task(ncbi_model)
    words = ["The", "X-linked", "dystrophy", "."]  # the tokenizer splits "X-linked" into x, -, linked
    features = task.encode({"tokens": [words], "ner_tags": [["O", "B-Disease", "I-Disease", "O"]]}, ctx,
                           training=True)
    assert ctx.tokenizer.convert_ids_to_tokens(features["input_ids"][0]) == \
        ["[CLS]", "the", "x", "-", "linked", "dystrophy", ".", "[SEP]"]
    o, b, i = 2, 0, 1
    assert features["labels"][0] == [IGNORE_INDEX, o, b, IGNORE_INDEX, IGNORE_INDEX, i, o, IGNORE_INDEX]
    assert first_token_positions(features["word_ids"][0], len(words)) == [1, 2, 5, 6]

    all_tokens, ctx = make_task(ncbi_model, "--label_all_tokens")
    features = all_tokens.encode({"tokens": [words], "ner_tags": [["O", "B-Disease", "I-Disease", "O"]]}, ctx,
                                 training=True)
    assert features["labels"][0] == [IGNORE_INDEX, o, b, b, b, i, o, IGNORE_INDEX]


def test_words_cut_by_max_length_or_empty_after_tokenising_have_no_position(ncbi_model):
    task, ctx = make_task(ncbi_model, max_seq_length=6)
    words = ["The", ZERO_WIDTH, "X-linked", "retinal", "dystrophy"]
    features = task.encode({"tokens": [words], "ner_tags": [["O"] * 5]}, ctx, training=False)
    # [CLS] the x - linked [SEP]: "X-linked" keeps its first sub-tokens, so it is still scored.
    assert len(features["input_ids"][0]) == 6
    assert first_token_positions(features["word_ids"][0], len(words)) == [1, None, 2, None, None]
    assert "labels" not in features  # evaluation reads word_ids; gold stays as tag strings


def test_collator_pads_labels_and_to_a_multiple_of_8(ncbi_model):
    task, ctx = make_task(ncbi_model, pad_to_multiple_of=8)
    batch = task.encode({"tokens": [["The", "gene"], ["A", "retinal", "dystrophy", "."]],  # 4 and 6 tokens
                         "ner_tags": [["O", "O"], ["O", "B-Disease", "I-Disease", "O"]]}, ctx, training=True)
    rows = [{k: batch[k][i] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")} for i in range(2)]
    padded = task.collator(ctx)(rows)
    assert padded["input_ids"].shape == (2, 8) and padded["labels"].shape == (2, 8)
    assert padded["labels"][0, 3:].tolist() == [IGNORE_INDEX] * 5


# -- end to end -------------------------------------------------------------------------------
def test_ncbi_run_with_the_original_flags(ncbi_run):
    out, metrics = ncbi_run
    for name in ("train_results.json", "eval_results.json", "predict_results.json", "all_results.json",
                 "eval_predictions.jsonl", "predict_predictions.jsonl", "config.json", "model.safetensors"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    train_tags = sorted({t for r in read_jsonl(NCBI / "train.json") for t in r["ner_tags"]})
    assert [config["id2label"][str(i)] for i in range(len(train_tags))] == train_tags

    for prefix, split in (("eval", "dev"), ("predict", "test")):
        results = json.loads((out / f"{prefix}_results.json").read_text())
        records = read_jsonl(out / f"{prefix}_predictions.jsonl")
        gold = read_jsonl(NCBI / f"{split}.json")
        assert [r["id"] for r in records] == [g["id"] for g in gold]
        assert [r["tokens"] for r in records] == [g["tokens"] for g in gold]
        assert [r["labels"] for r in records] == [g["ner_tags"] for g in gold]
        assert all(len(r["predictions"]) == len(r["tokens"]) and set(r["predictions"]) <= set(train_tags)
                   for r in records)
        assert results[f"{prefix}_words_not_scored"] == 0
        preds, golds = scored_from_file(out / f"{prefix}_predictions.jsonl")
        assert results[f"{prefix}_precision"] == pytest.approx(precision_score(golds, preds), abs=1e-12)
        assert results[f"{prefix}_recall"] == pytest.approx(recall_score(golds, preds), abs=1e-12)
        assert results[f"{prefix}_f1"] == pytest.approx(f1_score(golds, preds), abs=1e-12)
        assert results[f"{prefix}_accuracy"] == pytest.approx(accuracy_score(golds, preds), abs=1e-12)
        assert metrics[f"{prefix}_f1"] == results[f"{prefix}_f1"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_prediction_only_run_from_the_saved_folder(ncbi_run, tmp_path):
    trained, _ = ncbi_run
    out = tmp_path / "predict"
    metrics = run_task(NerTask, ["--model_name_or_path", trained, "--test_file", NCBI / "test.json", "--do_predict",
                                 "--return_entity_level_metrics", "--disable_tqdm", "--output_dir", out])
    assert read_jsonl(out / "predict_predictions.jsonl") == read_jsonl(trained / "predict_predictions.jsonl")
    before = json.loads((trained / "predict_results.json").read_text())
    for key in ("precision", "recall", "f1", "accuracy"):
        assert metrics[f"predict_overall_{key}"] == before[f"predict_{key}"]
    preds, golds = scored_from_file(out / "predict_predictions.jsonl")
    report = classification_report(golds, preds, output_dict=True, zero_division=0)
    assert metrics["predict_Disease_f1"] == pytest.approx(report["Disease"]["f1-score"], abs=1e-12)
    assert metrics["predict_Disease_number"] == report["Disease"]["support"]
    assert not (out / "train_results.json").exists()


def test_cut_and_empty_words_are_left_out_of_the_score_and_counted(ncbi_run, tmp_path):
    trained, _ = ncbi_run
    gold = read_jsonl(NCBI / "test.json")
    gold.append({"id": "zw", "tokens": ["A", ZERO_WIDTH, "rare", "retinal", "dystrophy", "."],
                 "ner_tags": ["O", "B-Disease", "B-Disease", "I-Disease", "I-Disease", "O"]})
    test_file = write_jsonl(tmp_path / "test.json", gold)
    out, max_len = tmp_path / "predict", 16
    metrics = run_task(NerTask, ["--model_name_or_path", trained, "--test_file", test_file, "--do_predict",
                                 "--max_seq_length", max_len, "--disable_tqdm", "--output_dir", out])

    # Expected from the tokenizer alone: a word is scored if it has tokens and its first one fits
    # before [SEP] (max_len - 2 tokens of text after [CLS]).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained)
    expected_null = []
    for record in gold:
        start, nulls = 1, []
        for word in record["tokens"]:
            n = len(tokenizer(word, add_special_tokens=False)["input_ids"])
            nulls.append(n == 0 or start > max_len - 2)
            start += n
        expected_null.append(nulls)
    records = read_jsonl(out / "predict_predictions.jsonl")
    assert [[p is None for p in r["predictions"]] for r in records] == expected_null
    assert records[-1]["predictions"][1] is None and records[-1]["predictions"][2] is not None
    cut_sentences = sum(any(n) for n in expected_null[:-1])
    assert cut_sentences >= 1  # the long sample sentence is cut
    assert metrics["predict_words_not_scored"] == sum(map(sum, expected_null))
    preds, golds = scored_from_file(out / "predict_predictions.jsonl")
    assert metrics["predict_f1"] == pytest.approx(f1_score(golds, preds), abs=1e-12)
    assert metrics["predict_recall"] == pytest.approx(recall_score(golds, preds), abs=1e-12)


def test_pico_run_with_the_original_flags_reports_word_level_macro_f1(tiny_model, tmp_path):
    out = tmp_path / "pico"
    metrics = run_task(NerTask, ["--model_name_or_path", tiny_model(files(PICO)), *data_flags(PICO), *PICO_FLAGS,
                                 "--max_steps", 2, "--disable_tqdm", "--output_dir", out])
    results = json.loads((out / "predict_results.json").read_text())
    assert {"predict_macro_precision", "predict_macro_recall", "predict_macro_f1"} <= set(results)
    assert "predict_f1" not in results  # the original's macro mode reports only macro_* scores
    preds, golds = scored_from_file(out / "predict_predictions.jsonl")
    report = classification_report(golds, preds, output_dict=True, zero_division=0)
    types = [k for k in report if not k.endswith(" avg")]
    assert set(types) >= {"INT", "OUT", "PAR"}
    for key, name in (("macro_f1", "f1-score"), ("macro_precision", "precision"), ("macro_recall", "recall")):
        assert results[f"predict_{key}"] == pytest.approx(np.mean([report[t][name] for t in types]), abs=1e-12)
    assert metrics["eval_macro_f1"] == json.loads((out / "eval_results.json").read_text())["eval_macro_f1"]


# -- bad input --------------------------------------------------------------------------------
GOOD = {"id": "x", "tokens": ["Two", "cases", "of", "anemia"], "ner_tags": ["O", "O", "O", "B-Disease"]}


@pytest.mark.parametrize("bad, kind", [
    ({**GOOD, "ner_tags": ["O", "O", "O"]}, "unequal_lengths"),
    ({**GOOD, "ner_tags": ["O", "O", "O", "Disease"]}, "bad_tag"),
    ({**GOOD, "ner_tags": ["O", "O", "O", "E-Disease"]}, "bad_tag"),
    ({**GOOD, "tokens": [], "ner_tags": []}, "empty_input"),
    ({"id": "x", "tokens": GOOD["tokens"]}, "missing_field"),
    ({**GOOD, "tokens": "Two cases of anemia"}, "wrong_type"),
    ({**GOOD, "ner_tags": ["O", "O", "O", None]}, "wrong_type"),
])
def test_bad_training_record_names_file_and_line(bad, kind, ncbi_model, tmp_path):
    train = read_jsonl(NCBI / "train.json")
    bad_line = 7
    train_file = write_jsonl(tmp_path / "train.json", train[:bad_line - 1] + [bad] + train[bad_line - 1:])
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        run_task(NerTask, ["--model_name_or_path", ncbi_model, "--train_file", train_file, "--do_train",
                           "--output_dir", out])
    assert e.value.kind == kind
    assert f"{train_file}:{bad_line}:" in str(e.value)
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_dev_tag_unseen_in_train_is_refused(ncbi_model, tmp_path):
    dev = read_jsonl(NCBI / "dev.json")
    dev[2] = {**dev[2], "ner_tags": ["B-Gene"] + dev[2]["ner_tags"][1:]}
    dev_file = write_jsonl(tmp_path / "dev.json", dev)
    with pytest.raises(UserError) as e:
        run_task(NerTask, ["--model_name_or_path", ncbi_model, "--train_file", NCBI / "train.json",
                           "--validation_file", dev_file, "--do_train", "--do_eval", "--output_dir", tmp_path / "out"])
    assert e.value.kind == "unseen_label" and f"{dev_file}:3:" in str(e.value) and "B-Gene" in str(e.value)


def test_prediction_only_checks_gold_tags_against_the_models_labels(ncbi_run, tmp_path):
    trained, _ = ncbi_run
    test = read_jsonl(NCBI / "test.json")
    test[0] = {**test[0], "ner_tags": ["I-Gene"] + test[0]["ner_tags"][1:]}
    test_file = write_jsonl(tmp_path / "test.json", test)
    with pytest.raises(UserError) as e:
        run_task(NerTask, ["--model_name_or_path", trained, "--test_file", test_file, "--do_predict",
                           "--output_dir", tmp_path / "out"])
    assert e.value.kind == "unseen_label" and f"{test_file}:1:" in str(e.value)


def test_prediction_only_from_a_model_without_labels_is_refused(ncbi_model, tmp_path):
    with pytest.raises(UserError) as e:
        run_task(NerTask, ["--model_name_or_path", ncbi_model, "--test_file", NCBI / "test.json", "--do_predict",
                           "--output_dir", tmp_path / "out"])
    assert e.value.kind == "no_labels_for_prediction"


def test_tag_forms(ncbi_model):
    task, _ = make_task(ncbi_model)
    for tags in (["O", "B", "I"], ["B-Disease", "I-Disease", "B-cell_line"]):
        task.validate_record({"tokens": ["a", "b", "c"], "ner_tags": tags}, "train", None)
    for tag in ("X", "B_Disease", "BDisease", "B-", "o", ""):
        with pytest.raises(RecordError) as e:
            task.validate_record({"tokens": ["a"], "ner_tags": [tag]}, "train", None)
        assert e.value.kind == "bad_tag"


def test_other_column_names(ncbi_model):
    task, _ = make_task(ncbi_model, "--text_column_name", "words", "--task_name", "POS")
    assert task.validate_record({"words": ["a"], "pos_tags": ["O"]}, "train", None) == (None, ["O"])
    with pytest.raises(RecordError) as e:
        task.validate_record({"tokens": ["a"], "pos_tags": ["O"]}, "train", None)
    assert e.value.kind == "missing_field" and "--text_column_name" in e.value.message
