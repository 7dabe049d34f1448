"""Checks for the embedding-evaluation harness against scipy, sklearn and hand-built vectors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata, spearmanr
from sklearn.decomposition import PCA


def _vectors(impl, table: dict[str, list[float]]):
    return impl.WordVectors(list(table), np.array(list(table.values()), dtype=float))


# ------------------------------------------------------------------ Spearman

@pytest.mark.task("spearman")
def test_ranks_average_ties_like_scipy(impl):
    values = [3.0, 1.0, 3.0, 2.0, 3.0, 1.0]
    got = impl.rank_average(values)
    expected = rankdata(values)  # [5, 1.5, 5, 3, 5, 1.5]
    assert np.allclose(got, expected), f"expected average ranks {expected.tolist()}, got {list(got)}"


@pytest.mark.task("spearman")
def test_spearman_hand_case(impl):
    assert impl.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert impl.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    got = impl.spearman([1, 2, 3, 4], [1, 4, 9, 100])
    assert got == pytest.approx(1.0), f"any increasing relation has rank correlation 1 (Pearson's would be 0.82), got {got}"


@pytest.mark.task("spearman")
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=3, max_size=30))
def test_spearman_equals_scipy_with_ties(impl, pairs):
    x, y = map(list, zip(*pairs))
    if len(set(x)) < 2 or len(set(y)) < 2:
        return  # a constant side has no defined correlation
    expected = spearmanr(x, y).statistic
    got = impl.spearman(x, y)
    assert got == pytest.approx(expected, abs=1e-12), f"scipy.stats.spearmanr gives {expected}, got {got} for {pairs}"


# ------------------------------------------------------------------ similarity benchmark

@pytest.mark.task("similarity-eval")
def test_similarity_eval_against_scipy_and_coverage(impl):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    vectors = impl.WordVectors(words, rng.normal(size=(12, 5)))
    chosen = sorted({(int(i), int(j)) for i, j in rng.integers(0, 12, (20, 2)) if i < j})  # distinct pairs: no tied cosines
    pairs = [(words[i], words[j], float(rng.integers(0, 4))) for i, j in chosen]
    pairs += [("w0", "unknown", 3.0), ("nope", "w1", 1.0)]
    result = impl.evaluate_similarity(vectors, pairs)
    known = pairs[:-2]

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    expected = spearmanr([cos(vectors[a], vectors[b]) for a, b, _ in known], [g for _, _, g in known]).statistic
    assert (result.covered, result.total) == (len(known), len(pairs)), \
        f"coverage should be {len(known)}/{len(pairs)}, got {result.covered}/{result.total}"
    assert result.rho == pytest.approx(expected, abs=1e-12), f"expected Spearman {expected:.6f}, got {result.rho}"


@pytest.mark.task("similarity-eval")
def test_similarity_eval_with_one_covered_pair_is_nan(impl):
    vectors = _vectors(impl, {"w0": [1.0, 0.0], "w1": [0.0, 1.0]})
    result = impl.evaluate_similarity(vectors, [("w0", "w1", 1.0), ("w0", "nope", 2.0)])
    assert (result.covered, result.total) == (1, 2), f"coverage should be 1/2, got {result.covered}/{result.total}"
    assert np.isnan(result.rho), f"one covered pair has no rank correlation: expected NaN, got {result.rho}"


# ------------------------------------------------------------------ neighbours

@pytest.mark.task("nearest-neighbours")
def test_nearest_by_cosine_excluding_query(impl):
    vectors = _vectors(impl, {"a": [1, 0], "b": [10, 1], "c": [0, 1], "d": [-1, 0], "e": [1, 1]})
    got = impl.nearest(vectors, "a", k=3)
    words = [w for w, _ in got]
    assert words == ["b", "e", "c"], f"cosine order from 'a' (length must not matter) is b, e, c; got {words}"
    assert got[1][1] == pytest.approx(np.sqrt(0.5)), f"cos(a, e) = 0.7071, got {got[1][1]}"
    assert all(-1 - 1e-12 <= s <= 1 + 1e-12 for _, s in impl.nearest(vectors, "d", k=4)), "cosines lie in [-1, 1]"


@pytest.mark.task("nearest-neighbours")
def test_nearest_with_negative_cosines_and_k_beyond_the_vocabulary(impl):
    # every other word points away from 'a': its neighbours have negative cosines, and 'a' must still not appear
    vectors = _vectors(impl, {"a": [1.0, 0.0], "b": [-1.0, 0.1], "c": [-1.0, -0.3]})
    got = impl.nearest(vectors, "a", k=10)
    words = [w for w, _ in got]
    # cos(a, c) = -1/sqrt(1.09) = -0.958 is larger than cos(a, b) = -1/sqrt(1.01) = -0.995
    assert words == ["c", "b"], f"k=10 over 2 candidates: expected ['c', 'b'] (negative cosines), got {got}"
    assert all(-1.0 <= s < 0 for _, s in got), f"both cosines are negative and finite, got {got}"


@pytest.mark.task("nearest-neighbours")
def test_nearest_matches_brute_force(impl):
    rng = np.random.default_rng(1)
    vectors = impl.WordVectors([f"w{i}" for i in range(40)], rng.normal(size=(40, 8)))
    query = rng.normal(size=8)
    cos = vectors.matrix @ query / np.linalg.norm(vectors.matrix, axis=1) / np.linalg.norm(query)
    expected = [f"w{i}" for i in np.argsort(-cos)[:5] if f"w{i}" != "w3"][:4]
    got = [w for w, _ in impl.nearest(vectors, query, k=4, exclude=("w3",))]
    assert got == expected, f"top 4 by cosine (w3 excluded): expected {expected}, got {got}"


# ------------------------------------------------------------------ analogies

@pytest.mark.task("analogy")
def test_analogy_exact_offsets_score_one(impl):
    rng = np.random.default_rng(2)
    role = {r: rng.normal(size=16) for r in ("ruler", "adult", "child")}
    sex = {s: rng.normal(size=16) for s in ("m", "f")}
    names = {("ruler", "m"): "king", ("ruler", "f"): "queen", ("adult", "m"): "man", ("adult", "f"): "woman",
             ("child", "m"): "boy", ("child", "f"): "girl"}
    vectors = _vectors(impl, {name: role[r] + sex[s] for (r, s), name in names.items()})
    questions = [("man", "king", "woman", "queen"), ("boy", "girl", "man", "woman"), ("queen", "king", "girl", "boy"),
                 ("man", "king", "alien", "queen"), ("man", "king", "woman", "empress")]  # the last two: not covered
    result = impl.analogy_accuracy(vectors, questions)
    assert (result.correct, result.covered, result.total) == (3, 3, 5), \
        f"expected 3 correct of 3 covered (5 asked; an unknown d is not covered either), got " \
        f"{result.correct}/{result.covered} ({result.total})"
    assert result.accuracy == pytest.approx(1.0)


@pytest.mark.task("analogy")
def test_analogy_never_returns_a_query_word(impl):
    # b - a + c is almost b itself (a and c nearly equal); b must be skipped and d returned
    vectors = _vectors(impl, {"a": [1, 0, 0], "c": [1, 0.02, 0], "b": [0, 1, 0], "d": [0.3, 1, 0.3],
                              "z": [0, 0, 1]})
    got = impl.analogy(vectors, "a", "b", "c", k=2)
    words = [w for w, _ in got]
    assert words[0] == "d" and not {"a", "b", "c"} & set(words), f"expected 'd' first and no query word, got {words}"
    # 'z' is second, not first: only the top answer counts
    result = impl.analogy_accuracy(vectors, [("a", "b", "c", "z")])
    assert (result.correct, result.covered) == (0, 1), f"'z' is not the top answer: expected 0 of 1 correct, got {result}"


@pytest.mark.task("analogy")
def test_analogy_adds_unit_vectors(impl):
    # c is ten times longer than a but points almost the same way. With unit vectors b - a + c is close to b, so
    # 'd' wins; with raw vectors c dominates the sum and 'e', which points like c, would win instead.
    vectors = _vectors(impl, {"a": [1, 0, 0], "b": [0, 1, 0], "c": [10, 0, 1], "d": [0.1, 1, 0.1], "e": [1, 0.1, 0.1]})
    got = impl.analogy(vectors, "a", "b", "c", k=1)
    assert got[0][0] == "d", f"3CosAdd over unit vectors should answer 'd' (cosine 0.995), got {got}"


# ------------------------------------------------------------------ PCA

@pytest.mark.task("pca-2d")
def test_pca_matches_sklearn_up_to_sign(impl):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6)) + 4.0
    coords, ratio = impl.pca_2d(x)
    reference = PCA(n_components=2, svd_solver="full").fit(x)
    expected = reference.transform(x)
    assert coords.shape == (60, 2), f"expected (60, 2) coordinates, got {coords.shape}"
    for j in range(2):
        sign = np.sign(coords[:, j] @ expected[:, j])
        assert np.allclose(sign * coords[:, j], expected[:, j], atol=1e-8), \
            f"component {j} differs from sklearn's PCA beyond a sign flip"
    assert np.allclose(ratio, reference.explained_variance_ratio_, atol=1e-10), \
        f"explained variance ratio {ratio} differs from sklearn's {reference.explained_variance_ratio_}"


@pytest.mark.task("pca-2d")
def test_projection_plot_is_written(impl, tmp_path):
    rng = np.random.default_rng(4)
    vectors = impl.WordVectors([f"w{i}" for i in range(8)], rng.normal(size=(8, 5)))
    path = impl.plot_projection(vectors, vectors.words, tmp_path / "pca.png", pairs=[("w0", "w1")])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "plot_projection should save a PNG file"


# ------------------------------------------------------------------ file format (not a learner task)

def test_word2vec_text_round_trip(impl, tmp_path):
    vectors = impl.WordVectors(["x", "y"], np.array([[0.5, -1.0], [2.0, 0.25]]))
    back = impl.load_word2vec_text(impl.save_word2vec_text(tmp_path / "v.txt", vectors))
    assert back.words == ["x", "y"] and np.allclose(back.matrix, vectors.matrix)
    with pytest.raises(ValueError):
        impl.WordVectors(["x"], np.zeros((2, 3)))
