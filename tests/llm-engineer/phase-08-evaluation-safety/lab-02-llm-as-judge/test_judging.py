"""Verdict parsing, swap-position averaging against hand-built biased judges, the two bias measurements on
hand-counted cases, Cohen's kappa against scikit-learn and the Wilson interval against statsmodels."""
import random

import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.proportion import proportion_confint


@pytest.mark.task("parse-verdict")
@pytest.mark.parametrize("reply, expected", [("A", "A"), ("b.", "B"), ("[[B]]", "B"), ("Tie", "tie"),
                                             ("Verdict: A", "A"), ("**A** because it is right", "A"),
                                             ("  tie - both are wrong", "tie"), ('"B"', "B")])
def test_replies_that_are_verdicts(impl, reply, expected):
    assert impl.parse_verdict(reply) == expected


@pytest.mark.task("parse-verdict")
@pytest.mark.parametrize("reply", ["", "Both are fine", "Answer A", "Ab", "C", "tied", "A1", "I think B"])
def test_replies_that_are_not_verdicts_get_a_one_line_error(impl, reply):
    with pytest.raises(ValueError) as error:
        impl.parse_verdict(reply)
    assert "\n" not in str(error.value) and "verdict" in str(error.value)


def scripted(table):
    """A judge answering from a table keyed by (slot A, slot B)."""
    return lambda question, first, second: table[(first, second)]


@pytest.mark.task("swap")
@pytest.mark.parametrize("ab, ba, expected", [("A", "B", 1.0), ("B", "A", 0.0), ("A", "A", 0.5), ("B", "B", 0.5),
                                              ("tie", "tie", 0.5), ("A", "tie", 0.75), ("tie", "A", 0.25),
                                              ("tie", "B", 0.75)])
def test_swap_score_by_hand(impl, ab, ba, expected):
    judge = scripted({("x", "y"): ab, ("y", "x"): ba})
    assert impl.swap_score(judge, "q", "x", "y") == expected


@pytest.mark.task("swap")
def test_swap_calls_both_orders_and_parses_replies(impl):
    calls = []

    def judge(question, first, second):
        calls.append((question, first, second))
        return "[[A]]"
    assert impl.swap_score(judge, "q", "x", "y") == 0.5  # always slot A: a flip, so a tie
    assert calls == [("q", "x", "y"), ("q", "y", "x")]
    with pytest.raises(ValueError):
        impl.swap_score(lambda q, a, b: "no idea", "q", "x", "y")


@pytest.mark.task("swap")
def test_swap_removes_a_first_slot_preference(impl):
    # A judge that prefers slot A on 70% of pairs, deterministic per pair; the truth is that x_n beats y_n.
    rng = random.Random(0)
    lazy = {n: rng.random() < 0.7 for n in range(200)}

    def judge(question, first, second):
        n = int(question)
        return "A" if lazy[n] else ("A" if first.startswith("x") else "B")
    scores = [impl.swap_score(judge, str(n), f"x{n}", f"y{n}") for n in range(200)]
    mirrored = [impl.swap_score(judge, str(n), f"y{n}", f"x{n}") for n in range(200)]
    assert all(s + m == 1.0 for s, m in zip(scores, mirrored))  # order of the pair no longer matters
    assert all(s == (0.5 if lazy[n] else 1.0) for n, s in enumerate(scores))


@pytest.mark.task("bias")
def test_first_slot_win_rate_by_hand(impl):
    assert impl.first_slot_win_rate(["A", "B", "tie", "A", "tie", "A"]) == 0.75
    assert impl.first_slot_win_rate(["B", "B", "A"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        impl.first_slot_win_rate(["tie", "tie"])


@pytest.mark.task("bias")
def test_longer_win_rate_by_hand(impl):
    pairs = [("long answer", "short", "A"),   # longer in A wins
             ("short", "long answer", "B"),   # longer in B wins
             ("short", "long answer", "A"),   # shorter wins
             ("same1", "same2", "A"),         # equal lengths: not counted
             ("long answer", "short", "tie"),  # tie: not counted
             ("tiny", "a longer one", "B")]   # longer in B wins
    assert impl.longer_win_rate(pairs) == 0.75
    with pytest.raises(ValueError):
        impl.longer_win_rate([("same1", "same2", "A"), ("a", "bb", "tie")])


@pytest.mark.task("bias")
def test_biases_measured_and_removed_on_the_scripted_judges(impl):
    questions = impl.make_questions(40)
    answers = impl.candidate_answers(questions)
    pairs = impl.equal_quality_pairs(impl.length_biased_judge, questions, answers, "verbose", "hasty")
    assert impl.longer_win_rate(pairs) == 1.0
    controlled = impl.equal_quality_pairs(impl.normalised(impl.length_biased_judge), questions, answers,
                                          "verbose", "hasty")
    assert all(v == "tie" for *_, v in controlled)  # normalised, the judge sees equal-quality answers as equal
    verdicts = [impl.position_biased_judge(q, a, b) for (q, _), a, b in
                zip(questions, (x for x, _ in answers["careful"]), (x for x, _ in answers["sloppy"]))]
    assert impl.first_slot_win_rate(verdicts) > 0.6


@pytest.mark.task("kappa")
@pytest.mark.parametrize("seed", range(6))
def test_kappa_equals_scikit_learn(impl, seed):
    rng = random.Random(seed)
    labels = ["A", "B", "tie"][: 2 + seed % 2]
    first = [rng.choice(labels) for _ in range(30 + seed)]
    second = [x if rng.random() < 0.6 else rng.choice(labels) for x in first]
    assert impl.cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)


@pytest.mark.task("kappa")
def test_kappa_by_hand(impl):
    # p_o = 3/4; both raters say A half the time, so p_e = 1/2 and kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert impl.cohen_kappa(["A", "A", "B", "B"], ["A", "A", "B", "A"]) == pytest.approx(
        cohen_kappa_score(["A", "A", "B", "B"], ["A", "A", "B", "A"]))
    # a label only one rater uses still counts in p_o's complement; skewed marginals
    first, second = ["A"] * 8 + ["B"] * 2, ["A"] * 7 + ["tie"] + ["B"] * 2
    assert impl.cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    assert impl.cohen_kappa(["A", "B", "A"], ["B", "A", "B"]) == pytest.approx(
        cohen_kappa_score(["A", "B", "A"], ["B", "A", "B"]), abs=1e-12)


@pytest.mark.task("kappa")
@pytest.mark.parametrize("successes, n, confidence", [(0, 10, 0.95), (3, 10, 0.95), (10, 10, 0.95), (47, 60, 0.95),
                                                      (47, 60, 0.9), (1, 3, 0.99)])
def test_wilson_interval_equals_statsmodels(impl, successes, n, confidence):
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert impl.wilson_interval(successes, n, confidence) == pytest.approx((low, high), abs=1e-9)
