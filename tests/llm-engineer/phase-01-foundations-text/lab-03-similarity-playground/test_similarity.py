"""Lab 03 checks: hand-computed values, scipy.spatial.distance as the reference, and hypothesis properties
(ranges, symmetry, the triangle inequality where it holds, cosine == dot on unit vectors).

Each property test first calls the function once on a fixed input, so an unfinished TODO fails at once instead of
sending hypothesis off to shrink a NotImplementedError."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial import distance
from scipy.spatial.distance import cdist

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)
finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


def vectors(count, nonzero=False):
    """`count` float vectors of one shared length 1..8 (optionally each with norm > 1e-3)."""
    def build(d):
        one = arrays(np.float64, d, elements=finite)
        if nonzero:
            one = one.filter(lambda v: np.linalg.norm(v) > 1e-3)
        return st.tuples(*[one] * count)
    return st.integers(1, 8).flatmap(build)


def bits(count):
    return st.integers(1, 12).flatmap(lambda d: st.tuples(*[arrays(np.int64, d, elements=st.integers(0, 1))] * count))


# ------------------------------------------------------------------ dot and cosine

@pytest.mark.task("dot-cosine")
def test_dot_and_cosine_hand_values(impl):
    assert impl.dot([1, 2, 3], [4, -5, 6]) == 12.0, f"1*4 - 2*5 + 3*6 = 12, got {impl.dot([1, 2, 3], [4, -5, 6])}"
    got = impl.cosine_similarity([1, 0], [1, 1])
    assert math.isclose(got, 1 / math.sqrt(2), rel_tol=1e-12), f"cos 45° = 0.70711, got {got}"
    assert math.isclose(impl.cosine_similarity([2, 0], [-3, 0]), -1.0), "opposite vectors have cosine -1"
    assert abs(impl.cosine_similarity([1, 0], [0, 5])) < 1e-15, "orthogonal vectors have cosine 0"


@pytest.mark.task("dot-cosine")
def test_cosine_of_a_vector_with_itself_stays_within_one(impl):
    # a.a / (|a| |a|) rounds above 1 for about a quarter of random vectors; arccos of that is NaN.
    rng = np.random.default_rng(0)
    for v in rng.normal(size=(200, 5)):
        same, opposite = impl.cosine_similarity(v, v), impl.cosine_similarity(v, -v)
        assert -1.0 <= opposite and same <= 1.0, f"cosine must stay in [-1, 1] despite rounding, got {same}, {opposite}"
        angle = impl.angular_distance(v, v)
        assert 0.0 <= angle < 1e-7, f"the angle of {v} with itself must be ~0 (not NaN), got {angle}"


@pytest.mark.task("dot-cosine")
def test_cosine_matches_scipy_and_properties(impl):
    impl.cosine_similarity([1.0], [2.0])

    @FAST
    @given(vectors(2, nonzero=True))
    def check(pair):
        a, b = pair
        got = impl.cosine_similarity(a, b)
        assert -1.0 <= got <= 1.0, f"cosine must lie in [-1, 1], got {got}"
        assert math.isclose(got, impl.cosine_similarity(b, a), abs_tol=1e-12), "cosine must be symmetric"
        assert math.isclose(1 - got, distance.cosine(a, b), abs_tol=1e-9), \
            f"1 - cosine should equal scipy's cosine distance {distance.cosine(a, b):.6f}, got {1 - got:.6f}"
        assert math.isclose(impl.cosine_similarity(3.5 * a, b), got, abs_tol=1e-9), "cosine ignores positive scaling"
        assert math.isclose(impl.dot(a, b), float(np.dot(a, b)), rel_tol=1e-12, abs_tol=1e-9), "dot differs from np.dot"
    check()


@pytest.mark.task("dot-cosine")
def test_cosine_equals_dot_on_unit_vectors(impl):
    impl.cosine_similarity([1.0], [2.0])

    @FAST
    @given(vectors(2, nonzero=True))
    def check(pair):
        a, b = (v / np.linalg.norm(v) for v in pair)
        cos, dp = impl.cosine_similarity(a, b), impl.dot(a, b)
        assert math.isclose(cos, dp, abs_tol=1e-9), f"on unit vectors cosine ({cos}) should equal dot ({dp})"
        # and squared Euclidean distance is 2 - 2 cos: the three rank neighbours identically
        assert math.isclose(np.sum((a - b) ** 2), 2 - 2 * cos, abs_tol=1e-9), "|a-b|^2 should equal 2 - 2 cos"
    check()


@pytest.mark.task("dot-cosine")
def test_cosine_distance_breaks_triangle_inequality(impl):
    x, y, z = np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([0.0, 1.0])
    direct = 1 - impl.cosine_similarity(x, z)
    detour = (1 - impl.cosine_similarity(x, y)) + (1 - impl.cosine_similarity(y, z))
    assert math.isclose(direct, 1.0) and math.isclose(detour, 2 - math.sqrt(2)), \
        f"expected d(x,z)=1 and d(x,y)+d(y,z)=2-√2≈0.586, got {direct:.4f} and {detour:.4f}"
    assert direct > detour, "this counterexample must violate the triangle inequality for 1 - cosine"


@pytest.mark.task("dot-cosine")
def test_angle_is_a_metric(impl):
    impl.angular_distance([1.0], [2.0])

    @FAST
    @given(vectors(3, nonzero=True))
    def check(triple):
        a, b, c = triple
        ab, bc, ac = impl.angular_distance(a, b), impl.angular_distance(b, c), impl.angular_distance(a, c)
        assert ac <= ab + bc + 1e-7, f"angular distance broke the triangle inequality: {ac} > {ab} + {bc}"
    check()


# ------------------------------------------------------------------ Euclidean and Manhattan

@pytest.mark.task("euclidean-manhattan")
def test_euclidean_manhattan_hand_values(impl):
    assert math.isclose(impl.euclidean([0, 0], [3, 4]), 5.0), f"3-4-5 triangle: got {impl.euclidean([0, 0], [3, 4])}"
    assert math.isclose(impl.manhattan([0, 0], [3, -4]), 7.0), f"|3| + |-4| = 7, got {impl.manhattan([0, 0], [3, -4])}"
    assert impl.euclidean([1, 2], [1, 2]) == 0.0 and impl.manhattan([1, 2], [1, 2]) == 0.0, "d(a, a) must be 0"


@pytest.mark.task("euclidean-manhattan")
def test_euclidean_manhattan_are_metrics(impl):
    impl.euclidean([1.0], [2.0]), impl.manhattan([1.0], [2.0])

    @FAST
    @given(vectors(3))
    def check(triple):
        a, b, c = triple
        for name, fn, ref in (("euclidean", impl.euclidean, distance.euclidean),
                              ("manhattan", impl.manhattan, distance.cityblock)):
            ab, bc, ac = fn(a, b), fn(b, c), fn(a, c)
            assert math.isclose(ab, ref(a, b), rel_tol=1e-9, abs_tol=1e-9), f"{name} {ab} differs from scipy's {ref(a, b)}"
            assert ab >= 0 and math.isclose(ab, fn(b, a), rel_tol=1e-12, abs_tol=1e-12), f"{name}: negative or asymmetric"
            assert ac <= ab + bc + 1e-9 * (1 + ab + bc), f"{name}: triangle inequality broken: {ac} > {ab} + {bc}"
        # L2 <= L1 <= sqrt(d) * L2
        l1, l2 = impl.manhattan(a, b), impl.euclidean(a, b)
        assert l2 <= l1 + 1e-9 and l1 <= math.sqrt(len(a)) * l2 + 1e-9, f"norm inequalities fail: L1={l1}, L2={l2}"
    check()


# ------------------------------------------------------------------ Jaccard

@pytest.mark.task("jaccard")
def test_jaccard_hand_values(impl):
    assert impl.jaccard_sets({"to", "be", "or"}, {"not", "to", "be"}) == 0.5, "2 shared of 4 distinct words: 0.5"
    assert impl.jaccard_sets(set(), set()) == 1.0, "two empty sets are identical (similarity 1)"
    assert impl.jaccard_sets({1}, {2}) == 0.0, "disjoint sets have similarity 0"
    got = impl.jaccard_binary([1, 0, 1, 1], [1, 1, 0, 1])
    assert math.isclose(got, 0.5), f"positions {{0,2,3}} vs {{0,1,3}}: 2/4 = 0.5, got {got}"
    got = impl.jaccard_binary([1, 0, 0, 0], [1, 1, 0, 0])
    assert math.isclose(got, 0.5), f"positions {{0}} vs {{0,1}}: 1/2 = 0.5 (shared zeros do not count), got {got}"
    assert impl.jaccard_binary([0, 0, 0], [0, 0, 0]) == 1.0, "two all-zero vectors are identical (similarity 1)"


@pytest.mark.task("jaccard")
def test_jaccard_binary_matches_scipy_and_sets(impl):
    impl.jaccard_binary([1, 0], [1, 1])

    @FAST
    @given(bits(3))
    def check(triple):
        u, v, w = triple
        got = impl.jaccard_binary(u, v)
        assert 0.0 <= got <= 1.0, f"Jaccard must lie in [0, 1], got {got}"
        reference = distance.jaccard(u.astype(bool), v.astype(bool))
        assert math.isclose(1 - got, reference, abs_tol=1e-12), \
            f"1 - jaccard {1 - got} differs from scipy's jaccard distance {reference}"
        as_sets = impl.jaccard_sets(set(np.flatnonzero(u)), set(np.flatnonzero(v)))
        assert math.isclose(got, as_sets), f"binary ({got}) and set ({as_sets}) Jaccard should agree"
        d = lambda p, q: 1 - impl.jaccard_binary(p, q)  # noqa: E731
        assert d(u, w) <= d(u, v) + d(v, w) + 1e-12, "Jaccard distance is a metric: triangle inequality broken"
    check()


# ------------------------------------------------------------------ pairwise

@pytest.mark.task("pairwise")
@pytest.mark.parametrize("metric,scipy_metric", [("cosine", "cosine"), ("euclidean", "euclidean"),
                                                 ("manhattan", "cityblock"), ("jaccard", "jaccard")])
def test_pairwise_matches_cdist(impl, metric, scipy_metric):
    rng = np.random.default_rng(0)
    if metric == "jaccard":
        X, Y = rng.random((30, 16)) < 0.3, rng.random((20, 16)) < 0.3
        X[0] = Y[0] = False  # all-zero rows: scipy says distance 0
        want = cdist(X, Y, scipy_metric)
        X, Y = X.astype(float), Y.astype(float)
    else:
        X, Y = rng.normal(size=(30, 16)), rng.normal(size=(20, 16))
        Y[3] = X[5]  # an exact duplicate: distance 0 must not come out as NaN
        want = cdist(X, Y, scipy_metric)
    got = impl.pairwise(X, Y, metric)
    assert got.shape == (30, 20), f"expected shape (30, 20), got {got.shape}"
    gap = np.abs(got - want).max()
    assert gap < 1e-9, f"{metric}: differs from scipy cdist by {gap:.2e}"


@pytest.mark.task("pairwise")
def test_pairwise_cosine_of_a_zero_row_is_nan(impl):
    X = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    Y = np.array([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    want = cdist(X, Y, "cosine")  # NaN wherever a zero row is involved; 1 - 11/15 at [1, 0]
    got = impl.pairwise(X, Y, "cosine")
    np.testing.assert_allclose(got, want, atol=1e-12, equal_nan=True,
                               err_msg="a zero row has no direction: its cosine distance is NaN, as in scipy")


@pytest.mark.task("pairwise")
def test_pairwise_euclidean_of_a_point_with_itself_is_zero_not_nan(impl):
    # |x|^2 + |x|^2 - 2 x.x rounds below 0 on about a quarter of these rows; sqrt of that is NaN.
    X = np.random.default_rng(0).normal(size=(100, 16))
    got = impl.pairwise(X, X, "euclidean")
    assert np.all(np.isfinite(got)), f"{np.sum(~np.isfinite(got))} distances are NaN: clamp rounding at 0"
    gap = np.abs(got - cdist(X, X)).max()
    assert gap < 1e-6, f"distances differ from scipy cdist by {gap:.2e}"


@pytest.mark.task("pairwise")
def test_pairwise_dot_and_unit_ranking(impl):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    dots = impl.pairwise(X[:1], X, "dot").ravel()
    assert np.allclose(dots, X @ X[0]), "dot matrix differs from X @ Y.T"
    eu = impl.pairwise(X[:1], X, "euclidean").ravel()
    assert np.array_equal(np.argsort(-dots, kind="stable")[:10], np.argsort(eu, kind="stable")[:10]), \
        "on unit vectors the largest dot products must be the smallest Euclidean distances"


# ------------------------------------------------------------------ concentration

@pytest.mark.task("concentration")
def test_relative_contrast_hand_value(impl):
    assert impl.relative_contrast([1.0, 2.0, 3.0]) == 2.0, "(3 - 1) / 1 = 2"
    assert impl.relative_contrast([4.0, 4.0]) == 0.0, "equal distances have no contrast"


@pytest.mark.task("concentration")
def test_concentration_curve_matches_a_cdist_replay(impl):
    # Replays the documented draws with scipy: per dimension and trial, a (1, d) query then (n_points, d) points
    # from one generator seeded once, Manhattan distances, (max - min) / min, averaged over the trials.
    dims, n_points, trials, seed = [1, 3, 20], 40, 4, 7
    rng = np.random.default_rng(seed)
    want = []
    for d in dims:
        contrasts = []
        for _ in range(trials):
            query, points = rng.random((1, d)), rng.random((n_points, d))
            dist = cdist(query, points, "cityblock").ravel()
            contrasts.append((dist.max() - dist.min()) / dist.min())
        want.append(np.mean(contrasts))
    got = impl.concentration_curve(dims, n_points=n_points, trials=trials, metric="manhattan", seed=seed)
    assert np.allclose(got, want, rtol=1e-9), \
        f"expected the mean Manhattan contrast over {trials} fresh trials per dimension {np.round(want, 4)}, got {np.round(got, 4)}"


@pytest.mark.task("concentration")
def test_contrast_shrinks_with_dimension(impl):
    dims = [2, 16, 128, 1024]
    curve = impl.concentration_curve(dims, n_points=200, trials=3)
    assert curve.shape == (4,), f"expected one value per dimension, got shape {curve.shape}"
    assert np.all(np.diff(curve) < 0), f"relative contrast should fall as the dimension grows, got {np.round(curve, 3)}"
    assert curve[0] > 3 and curve[-1] < 0.2, f"expected > 3 at d=2 and < 0.2 at d=1024, got {np.round(curve, 3)}"


def test_bad_inputs_raise_clear_errors(impl):
    with pytest.raises(ValueError, match="zero vector"):
        impl.cosine_similarity([0, 0], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        impl.euclidean([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="0/1"):
        impl.jaccard_binary([0, 2], [1, 1])
    with pytest.raises(ValueError, match="unknown metric"):
        impl.pairwise(np.ones((2, 2)), np.ones((2, 2)), "hamming")
