"""SQuAD v1.1 exact match / F1 against values computed by hand from the official definition."""

import pytest

from linkbert.metrics.squad import exact_match_score, f1_score, normalize_answer, squad_v1


@pytest.mark.parametrize("text, normalised", [
    ("The Eiffel Tower", "eiffel tower"),                 # article and case
    ("an apple a day", "apple day"),                      # all three articles
    ("Theory of the atom", "theory of atom"),             # "the" inside a word stays
    ("  New\tYork\n City ", "new york city"),             # white space folded
    ("U.S.A.!", "usa"),                                   # punctuation removed, no space left behind
    ("rock-n-roll, (1950s)", "rocknroll 1950s"),
    ("a", ""),
    ("Café's «menu»", "cafés «menu»"),                    # only ASCII punctuation is removed
])
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_and_f1_by_hand():
    assert exact_match_score("the Blue Marrow!", "Blue marrow") == 1.0
    assert exact_match_score("Blue Marrow cheese", "Blue Marrow") == 0.0
    # pred tokens [cat, sat], gold [cat, sat, on, mat]: P = 1, R = 1/2, F1 = 2/3
    assert f1_score("The cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: pred [b, b, c], gold [b, c, c]
    # overlap = min(2,1) b + min(1,2) c = 2; P = 2/3, R = 2/3, F1 = 2/3
    assert f1_score("b b c", "b c c") == pytest.approx(2 / 3)
    assert f1_score("red", "blue") == 0.0
    # v1.1 quirk: two answers that normalise to nothing are an exact match but F1 0
    assert exact_match_score("the", "a") == 1.0
    assert f1_score("the", "a") == 0.0


def test_squad_v1_max_over_golds_mean_over_questions():
    predictions = ["Pellham", "the city", "nine days long", "empty"]
    golds = [["the town of Pellham", "Pellham"],       # EM 1, F1 1
             ["Garnford", "the city of Garnford"],      # EM 0, F1: [city] vs [city, of, garnford]: P 1, R 1/3 -> 1/2
             ["nine days"],                             # EM 0, F1: P 2/3, R 1 -> 4/5
             ["Blue Marrow"]]                           # 0, 0
    scores = squad_v1(predictions, golds)
    assert scores["exact_match"] == pytest.approx(100 * 1 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.5 + 0.8 + 0) / 4)
    assert set(scores) == {"exact_match", "f1"}


def test_squad_v1_needs_a_gold_answer_per_question():
    with pytest.raises(ValueError):
        squad_v1(["x"], [[]])
    with pytest.raises(ValueError):
        squad_v1(["x", "y"], [["x"]])
