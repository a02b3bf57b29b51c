"""Sequence-classification scores against hand-computed values."""

import pytest

from linkbert.metrics.classification import accuracy, hoc_prf1, micro_prf1, pearsonr


def test_accuracy():
    assert accuracy(["yes", "no", "maybe", "no"], ["yes", "yes", "maybe", "no"])["accuracy"] == 0.75


def test_micro_prf1_ignores_the_negative_class():
    preds = ["CPR:3", "0", "CPR:4", "CPR:4", "0"]
    golds = ["CPR:3", "CPR:3", "CPR:9", "CPR:4", "0"]
    # hits: items 0 and 3 (item 4 is a correct negative and does not count)
    # precision = 2 / 3 non-negative predictions, recall = 2 / 4 non-negative golds
    m = micro_prf1(preds, golds)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["F1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_micro_prf1_with_no_positive_predictions_is_zero_not_an_error():
    m = micro_prf1(["0", "0"], ["DDI-effect", "0"])
    assert m == {"precision": 0.0, "recall": 0.0, "F1": 0.0}


def test_micro_prf1_class_never_predicted():
    m = micro_prf1(["A", "A", "0"], ["A", "B", "B"])
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(1 / 3)


def test_pearsonr():
    assert pearsonr([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])["pearsonr"] == pytest.approx(1.0)
    assert pearsonr([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["pearsonr"] == pytest.approx(-1.0)


def test_hoc_groups_sentences_by_document_and_ors_labels():
    # document 7 is split over two lines: its gold is {0, 2}, its prediction {0, 1}
    ids = ["7_1", "7_2", "9_1"]
    golds = [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    preds = [[1, 1, 0], [1, 0, 0], [0, 1, 0]]
    m = hoc_prf1(preds, golds, ids)
    # documents x labels: hits = doc7/label0 + doc9/label1 = 2; predicted = 3; gold = 3
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["F1"] == pytest.approx(2 / 3)
    # scored per line instead, label 0 of document 7 would count as predicted twice
    per_line = hoc_prf1(preds, golds, ["a", "b", "c"])
    assert per_line["precision"] == pytest.approx(2 / 4)
