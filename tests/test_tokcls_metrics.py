"""NER / PICO scores against values worked out by hand."""

from __future__ import annotations

import pytest

from linkbert.metrics.ner import ner_scores, seqeval_report


def test_lenient_mode_counts_i_after_o_as_an_entity():
    # Gold has one X entity written leniently as I-X I-X after O (conlleval reads it as an entity
    # starting at the I-X); the prediction writes it properly as B-X I-X. Strict IOB2 would
    # reject the gold entity; the lenient mode matches the two.
    gold = [["O", "I-X", "I-X", "O"]]
    pred = [["O", "B-X", "I-X", "O"]]
    scores = ner_scores(pred, gold)
    assert scores == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 0.75}  # tags: 3 of 4 equal


def test_micro_scores_by_hand():
    # Gold entities: (X, 0-1), (Y, 3), (X, 0 of sentence 2) -> 3.
    # Predicted: (X, 0-1) correct, (Y, 3-4) wrong span, (X, 0 of sentence 2) correct -> 3, 2 correct.
    gold = [["B-X", "I-X", "O", "B-Y", "O"], ["B-X", "O"]]
    pred = [["B-X", "I-X", "O", "B-Y", "I-Y"], ["B-X", "O"]]
    scores = ner_scores(pred, gold)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(6 / 7)  # only the last word of sentence 1 differs


def test_macro_is_mean_over_types_in_gold_or_predictions():
    # PICO-style word-level tags (every word B-): each tagged word is its own entity.
    gold = [["B-PAR", "B-PAR", "O", "B-INT", "B-OUT"]]
    pred = [["B-PAR", "O", "B-INT", "B-INT", "B-INT"]]
    # PAR: tp 1, pred 1, gold 2 -> P 1, R 1/2, F1 2/3
    # INT: tp 1, pred 3, gold 1 -> P 1/3, R 1, F1 1/2
    # OUT: tp 0, pred 0, gold 1 -> P 0 (0/0 counts 0), R 0, F1 0
    scores = ner_scores(pred, gold, macro=True)
    assert set(scores) == {"macro_precision", "macro_recall", "macro_f1"}
    assert scores["macro_precision"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert scores["macro_recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_macro_counts_a_type_found_only_in_predictions():
    gold = [["B-PAR", "O"]]
    pred = [["B-PAR", "B-OUT"]]  # OUT only predicted: F1 0, and it still counts as a type
    assert ner_scores(pred, gold, macro=True)["macro_f1"] == pytest.approx((1 + 0) / 2)


def test_macro_without_any_entity_is_zero_not_nan():
    assert ner_scores([["O", "O"]], [["O", "O"]], macro=True)["macro_f1"] == 0.0


def test_entity_level_keys_flatten_the_report():
    gold = [["B-X", "O", "B", "I"]]  # bare B / I form entities of type "_"
    pred = [["B-X", "O", "O", "O"]]
    scores = ner_scores(pred, gold, entity_level=True)
    assert scores["X_f1"] == 1.0 and scores["X_number"] == 1
    assert scores["__f1"] == 0.0 and scores["__number"] == 1
    assert scores["overall_precision"] == 1.0
    assert scores["overall_recall"] == pytest.approx(1 / 2)
    assert scores["overall_f1"] == pytest.approx(2 / 3)
    assert scores["overall_accuracy"] == pytest.approx(2 / 4)
    assert "f1" not in scores  # the original's entity-level mode has only overall_* and per-type keys
    both = ner_scores(pred, gold, entity_level=True, macro=True)
    assert both["macro_f1"] == pytest.approx((1 + 0) / 2) and both["overall_f1"] == scores["overall_f1"]


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        seqeval_report([["O"]], [["O", "O"]])
