"""GLUE scores against hand-computed values and against sklearn / scipy."""

import random

import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from linkbert.metrics import glue


def test_hand_computed_values():
    # 2x2 confusion: TP=2 (1,1), TN=1 (0,0), FP=1, FN=1 -> MCC = (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    preds, golds = ["1", "1", "1", "0", "0"], ["1", "1", "0", "0", "1"]
    assert glue.matthews_correlation(preds, golds) == pytest.approx(1 / 6)
    assert glue.accuracy(preds, golds) == pytest.approx(3 / 5)
    assert glue.binary_f1(preds, golds) == pytest.approx(2 * 2 / (3 + 3))
    scores = glue.glue_metrics("mrpc", preds, golds)
    assert scores == pytest.approx({"f1": 2 / 3, "accuracy": 0.6, "combined_score": (2 / 3 + 0.6) / 2})
    # Perfectly monotone but not linear: Spearman 1, Pearson below 1; a tie takes the mean rank.
    assert glue.spearmanr([1, 2, 3, 10], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert glue.pearson([1, 2, 3, 10], [0.1, 0.2, 0.3, 0.4]) < 0.95
    assert list(glue._ranks([5, 1, 5, 2])) == [3.5, 1, 3.5, 2]
    assert glue.matthews_correlation(["1", "1"], ["0", "1"]) == 0.0  # one predicted class: 0, as sklearn


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn_and_scipy(seed):
    rng = random.Random(seed)
    n = 60
    golds = [rng.choice("01") for _ in range(n)]
    preds = [g if rng.random() < 0.7 else rng.choice("01") for g in golds]
    assert glue.matthews_correlation(preds, golds) == pytest.approx(matthews_corrcoef(golds, preds))
    assert glue.binary_f1(preds, golds) == pytest.approx(f1_score(golds, preds, pos_label="1"))
    assert glue.accuracy(preds, golds) == pytest.approx(accuracy_score(golds, preds))
    three = ["entailment", "neutral", "contradiction"]
    golds3 = [rng.choice(three) for _ in range(n)]
    preds3 = [g if rng.random() < 0.6 else rng.choice(three) for g in golds3]
    assert glue.matthews_correlation(preds3, golds3) == pytest.approx(matthews_corrcoef(golds3, preds3))
    scores = [round(rng.uniform(0, 5), 1) for _ in range(n)]  # rounded: ties happen
    outputs = [s + rng.gauss(0, 1) for s in scores]
    result = glue.glue_metrics("stsb", outputs, scores)
    assert result["pearson"] == pytest.approx(stats.pearsonr(outputs, scores)[0])
    assert result["spearmanr"] == pytest.approx(stats.spearmanr(outputs, scores)[0])
    assert result["combined_score"] == pytest.approx((result["pearson"] + result["spearmanr"]) / 2)


def test_metric_names_per_task():
    names = {task: sorted(glue.glue_metrics(task, *sample(task))) for task in glue.TASKS}
    assert names == {"cola": ["matthews_correlation"], "sst2": ["accuracy"], "qnli": ["accuracy"],
                     "rte": ["accuracy"], "mnli": ["accuracy"], "mrpc": ["accuracy", "combined_score", "f1"],
                     "qqp": ["accuracy", "combined_score", "f1"],
                     "stsb": ["combined_score", "pearson", "spearmanr"]}
    with pytest.raises(ValueError, match="wnli"):
        glue.glue_metrics("wnli", ["0"], ["0"])


def sample(task):
    if task == "stsb":
        return [1.0, 2.5, 4.0], [1.2, 2.0, 4.5]
    labels = list(glue.LABELS[task])
    return labels, labels[::-1]


def test_task_score_convention():
    assert glue.task_score("mrpc", {"f1": 0.9, "accuracy": 0.8, "combined_score": 0.85}) == pytest.approx(0.85)
    assert glue.task_score("mnli", {"accuracy": 0.8}, {"accuracy": 0.9}) == pytest.approx(0.85)
    assert glue.task_score("cola", {"matthews_correlation": 0.5}) == 0.5
