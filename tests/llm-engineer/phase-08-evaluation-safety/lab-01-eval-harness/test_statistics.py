"""How sure a score is: Wilson intervals against statsmodels' proportion_confint, the bootstrap on hand-worked
cases and against scipy's bootstrap, McNemar's test against statsmodels (exact and chi-square)."""
import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint


@pytest.mark.task("intervals")
@pytest.mark.parametrize("successes, n", [(0, 10), (10, 10), (7, 20), (1, 1), (0, 1), (523, 1000), (50, 200),
                                          (3, 7)])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_wilson_equals_statsmodels(impl, successes, n, confidence):
    expected = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    low, high = impl.wilson_interval(successes, n, confidence)
    assert (low, high) == pytest.approx(expected, abs=1e-12), (successes, n, confidence)


@pytest.mark.task("intervals")
def test_wilson_default_is_95_percent_and_stays_in_range(impl):
    assert impl.wilson_interval(7, 20) == pytest.approx(proportion_confint(7, 20, method="wilson"), abs=1e-12)
    low, high = impl.wilson_interval(0, 5)
    assert low == pytest.approx(0.0, abs=1e-15) and 0 < high < 1, "0/n: starts at 0 but is not zero-width"
    low, high = impl.wilson_interval(5, 5)
    assert high == pytest.approx(1.0, abs=1e-15) and 0 < low < 1


def test_wilson_refuses_impossible_counts(impl):  # the checks are given code: not graded
    for args in ((3, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            impl.wilson_interval(*args)


@pytest.mark.task("intervals")
def test_bootstrap_by_hand(impl):
    # Two items scoring 1 and 0: resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5th
    # and 97.5th percentiles are 0 and 1.
    assert impl.bootstrap_interval([1, 0], n_boot=4000) == (0.5, 0.0, 1.0)
    # Three items 0, 1/2, 1: a resampled mean is 0 with probability 1/27 (3.7%) and 1/6 with 3/27 more, so
    # the 2.5th percentile is 0 but the 5th is 1/6 (and symmetrically 1 and 5/6 at the top).
    assert impl.bootstrap_interval([0, 0.5, 1], n_boot=20000) == pytest.approx((0.5, 0.0, 1.0))
    assert impl.bootstrap_interval([0, 0.5, 1], confidence=0.9, n_boot=20000) == pytest.approx((0.5, 1 / 6, 5 / 6))
    assert impl.bootstrap_interval([1, 1, 1, 1]) == (1.0, 1.0, 1.0)


@pytest.mark.task("intervals")
def test_bootstrap_agrees_with_scipy_and_repeats_with_its_seed(impl):
    scores = np.array([1] * 120 + [0] * 80)        # 200 items, accuracy 0.6
    mean, low, high = impl.bootstrap_interval(scores, n_boot=4000, seed=3)
    ref = stats.bootstrap((scores,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert mean == pytest.approx(0.6)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.012)
    assert impl.bootstrap_interval(scores, n_boot=500, seed=7) == impl.bootstrap_interval(scores, n_boot=500, seed=7)
    wide = impl.bootstrap_interval(scores[::10], n_boot=2000)     # 20 items: a wider interval
    assert wide[2] - wide[1] > 2 * (high - low)


def pairs_from_table(both, only_a, only_b, neither):
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return a, b


def statsmodels_mcnemar(both, only_a, only_b, neither, exact):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sm_mcnemar(np.array([[both, only_a], [only_b, neither]]), exact=exact, correction=True)
    return result.statistic, result.pvalue


@pytest.mark.task("mcnemar")
@pytest.mark.parametrize("table", [(10, 7, 2, 4), (50, 3, 12, 35), (5, 3, 3, 5), (40, 0, 6, 10), (1, 1, 0, 0),
                                   (20, 25, 40, 15), (0, 9, 1, 0)])
@pytest.mark.parametrize("exact", [True, False])
def test_mcnemar_equals_statsmodels(impl, table, exact):
    a, b = pairs_from_table(*table)
    expected = statsmodels_mcnemar(*table, exact)
    got = impl.mcnemar(a, b, exact=exact)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (table, exact)


@pytest.mark.task("mcnemar")
def test_mcnemar_on_shuffled_items_and_its_default(impl):
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.62
    b = np.where(rng.random(300) < 0.85, a, ~a)          # B mostly agrees with A, sometimes flips
    order = rng.permutation(300)
    both, only_a = int(np.sum(a & b)), int(np.sum(a & ~b))
    only_b, neither = int(np.sum(~a & b)), int(np.sum(~a & ~b))
    assert impl.mcnemar(list(a[order]), list(b[order])) == pytest.approx(
        statsmodels_mcnemar(both, only_a, only_b, neither, True), rel=1e-9)
    assert impl.mcnemar(list(b), list(a), exact=False) == pytest.approx(
        statsmodels_mcnemar(both, only_b, only_a, neither, False), rel=1e-9), "symmetric in A and B"


@pytest.mark.task("mcnemar")
def test_mcnemar_without_disagreements(impl):
    # Identical predictions: nothing tells the systems apart (statsmodels' chi-square divides by zero here).
    a = [1, 0, 1, 1, 0]
    assert impl.mcnemar(a, a) == (0.0, 1.0)
    assert impl.mcnemar(a, a, exact=False) == (0.0, 1.0)
