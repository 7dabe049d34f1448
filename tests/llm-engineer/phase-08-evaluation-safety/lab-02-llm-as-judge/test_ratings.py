"""Elo by hand (K = 32: a win between equals moves 16 points each way; order matters), Bradley-Terry against a
direct scipy maximum-likelihood fit, and the bootstrap against exact resampling distributions worked by hand."""
import itertools
import math
import random

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_expit


def elo_expected(r_i, r_j):
    return 1 / (1 + 10 ** ((r_j - r_i) / 400))


@pytest.mark.task("elo")
def test_one_win_between_equals_moves_sixteen_points(impl):
    assert impl.elo_ratings([("x", "y", 1.0)], ["x", "y"]) == {"x": 1016.0, "y": 984.0}
    assert impl.elo_ratings([("x", "y", 0.5)], ["x", "y"]) == {"x": 1000.0, "y": 1000.0}
    assert impl.elo_ratings([("x", "y", 0.0)], ["x", "y"], k=10) == {"x": 995.0, "y": 1005.0}


@pytest.mark.task("elo")
def test_two_matches_by_hand_and_order_dependence(impl):
    # x beats y (x 1016, y 984), then y beats x: y's expectation is 1 / (1 + 10^(32/400))
    e_y = elo_expected(984, 1016)
    got = impl.elo_ratings([("x", "y", 1.0), ("y", "x", 1.0)], ["x", "y"])
    assert got["y"] == pytest.approx(984 + 32 * (1 - e_y)) and got["x"] == pytest.approx(1016 - 32 * (1 - e_y))
    reversed_order = impl.elo_ratings([("y", "x", 1.0), ("x", "y", 1.0)], ["x", "y"])
    assert reversed_order["x"] == pytest.approx(got["y"]) and reversed_order["x"] != pytest.approx(got["x"])


@pytest.mark.task("elo")
def test_elo_is_zero_sum_and_matches_a_reference_loop(impl):
    rng = random.Random(1)
    models = ["a", "b", "c", "d"]
    matches = [(*rng.sample(models, 2), rng.choice([0.0, 0.5, 1.0])) for _ in range(60)]
    ratings = {m: 1500.0 for m in models}
    for i, j, s in matches:
        e_i, e_j = elo_expected(ratings[i], ratings[j]), elo_expected(ratings[j], ratings[i])
        ratings[i], ratings[j] = ratings[i] + 24 * (s - e_i), ratings[j] + 24 * ((1 - s) - e_j)
    got = impl.elo_ratings(matches, models, k=24, initial=1500)
    assert got == pytest.approx(ratings, abs=1e-9)
    assert sum(got.values()) == pytest.approx(1500 * 4)


def scipy_bradley_terry(matches, models):
    index = {m: n for n, m in enumerate(models)}

    def nll(free):
        theta = np.append(free, -free.sum())  # mean zero
        total = 0.0
        for i, j, s in matches:
            d = theta[index[i]] - theta[index[j]]
            total -= s * log_expit(d) + (1 - s) * log_expit(-d)
        return total
    fit = minimize(nll, np.zeros(len(models) - 1), method="BFGS", options={"gtol": 1e-10})
    theta = np.append(fit.x, -fit.x.sum())
    return dict(zip(models, theta))


def simulated_matches(strengths, rounds, seed, ties=True):
    rng = random.Random(seed)
    matches = []
    for _ in range(rounds):
        for i, j in itertools.combinations(strengths, 2):
            p = 1 / (1 + math.exp(strengths[j] - strengths[i]))
            u = rng.random()
            s = 0.5 if ties and abs(u - p) < 0.05 else float(u < p)
            matches.append((i, j) + (s,) if rng.random() < 0.5 else (j, i, 1.0 - s))
    return matches


@pytest.mark.task("bradley-terry")
@pytest.mark.parametrize("seed", range(3))
def test_bradley_terry_equals_a_direct_maximum_likelihood_fit(impl, seed):
    strengths = {"a": 1.0, "b": 0.3, "c": 0.0, "d": -1.2}
    matches = simulated_matches(strengths, rounds=15, seed=seed)
    expected = scipy_bradley_terry(matches, list(strengths))
    got = impl.bradley_terry(matches, list(strengths))
    assert got == pytest.approx(expected, abs=1e-5)
    assert sum(got.values()) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.task("bradley-terry")
def test_bradley_terry_by_hand_and_bad_input(impl):
    # two models, x wins 3 of 4 (one of them listed as y's loss): theta_x - theta_y = ln 3, centred
    got = impl.bradley_terry([("x", "y", 1.0), ("y", "x", 0.0), ("x", "y", 1.0), ("y", "x", 1.0)], ["x", "y"])
    assert got == pytest.approx({"x": math.log(3) / 2, "y": -math.log(3) / 2}, abs=1e-7)
    # a tie is half a win each: 1 win + 2 ties of 4 -> 2 of 4 -> equal strengths
    got = impl.bradley_terry([("x", "y", 1.0), ("x", "y", 0.5), ("y", "x", 0.5), ("y", "x", 1.0)], ["x", "y"])
    assert got == pytest.approx({"x": 0.0, "y": 0.0}, abs=1e-7)
    with pytest.raises(ValueError, match="all or none"):
        impl.bradley_terry([("x", "y", 1.0), ("y", "x", 0.0)], ["x", "y"])


@pytest.mark.task("bradley-terry")
def test_bradley_terry_recovers_the_order_and_elo_scale(impl):
    strengths = {"a": 1.5, "b": 0.5, "c": -2.0}
    got = impl.bradley_terry(simulated_matches(strengths, 80, seed=3, ties=False), list(strengths))
    assert got["a"] > got["b"] > got["c"]
    assert got["a"] - got["c"] == pytest.approx(3.5, abs=0.6)


@pytest.mark.task("bootstrap")
def test_bootstrap_percentiles_by_hand(impl):
    # fit = x's mean score. With scores (1, 0, 0) the resampled mean is 0, 1/3, 2/3, 1 with probabilities
    # 8/27, 12/27, 6/27, 1/27: the 95% interval is (0, 1), the 90% one (0, 2/3).
    matches = [("x", "y", 1.0), ("x", "y", 0.0), ("x", "y", 0.0)]

    def fit(ms):
        return {"x": sum(s for _, _, s in ms) / len(ms)}
    assert impl.bootstrap_ratings(matches, fit, n_boot=4000) == {"x": (0.0, 1.0)}
    low, high = impl.bootstrap_ratings(matches, fit, n_boot=4000, confidence=0.9)["x"]
    assert (low, high) == (0.0, pytest.approx(2 / 3))


@pytest.mark.task("bootstrap")
def test_bootstrap_resamples_with_replacement_and_repeats_with_its_seed(impl):
    matches = [("x", "y", float(n % 2)) for n in range(40)]
    sizes = []

    def fit(ms):
        sizes.append(len(ms))
        return {"x": sum(s for _, _, s in ms) / len(ms)}
    first = impl.bootstrap_ratings(matches, fit, n_boot=300, seed=5)
    assert sizes == [40] * 300
    assert impl.bootstrap_ratings(matches, fit, n_boot=300, seed=5) == first
    low, high = first["x"]
    assert low < 0.5 < high and high - low > 0.15  # resampling with replacement moves the mean


@pytest.mark.task("bootstrap")
def test_bootstrap_skips_resamples_the_fit_refuses(impl):
    matches = [("x", "y", 1.0), ("x", "y", 0.0)]
    calls = []

    def fit(ms):
        calls.append(1)
        if all(s == 1.0 for *_, s in ms):
            raise ValueError("x never loses")
        return {"x": sum(s for *_, s in ms) / len(ms)}
    low, high = impl.bootstrap_ratings(matches, fit, n_boot=400)["x"]
    assert len(calls) == 400 and (low, high) == (0.0, 0.5)
