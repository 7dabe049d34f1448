"""Checks for the embedding-evaluation harness against scipy, sklearn, hand-written benchmark files and
hand-built vectors."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata, spearmanr
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

DATA = Path(__file__).parent / "data"  # small files in the WordSim-353, SimLex-999 and Google analogy formats


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
    # the premise, worked out here: the raw offset b - a + c = (9, 1, 1) is nearest to 'e', not to 'd'
    raw = vectors.matrix[2] - vectors.matrix[0] + vectors.matrix[1]
    candidates = {w: vectors[w] @ raw / np.linalg.norm(vectors[w]) / np.linalg.norm(raw) for w in ("d", "e")}
    assert max(candidates, key=candidates.get) == "e", f"fixture broken: raw offsets should pick 'e', {candidates}"
    got = impl.analogy(vectors, "a", "b", "c", k=1)
    assert got[0][0] == "d", f"3CosAdd over unit vectors should answer 'd' (cosine 0.995), got {got}"


@pytest.mark.task("analogy")
def test_analogy_unit_offsets_when_the_query_words_have_very_different_lengths(impl):
    # Frequent words get long vectors. Here 'man' (a) is 20 times longer than the others, so the raw offset
    # king - man + woman = (-19, 1, 1) points away from 'man' and lands on 'antiman'; over unit vectors the offset is
    # (-0.05, 1, 1) / ..., whose nearest word is 'queen'. Both answers are worked out below from the definitions.
    table = {"man": [20.0, 0.0, 0.0], "king": [1.0, 1.0, 0.0], "woman": [1.0, 0.0, 1.0],
             "queen": [0.0, 1.0, 1.0], "antiman": [-1.0, 0.05, 0.05]}
    vectors = _vectors(impl, table)
    m = {w: np.array(v) for w, v in table.items()}
    unit = {w: v / np.linalg.norm(v) for w, v in m.items()}

    def best(target):
        scores = {w: unit[w] @ target / np.linalg.norm(target) for w in ("queen", "antiman")}
        return max(scores, key=scores.get)

    assert best(m["king"] - m["man"] + m["woman"]) == "antiman", "fixture broken: raw offsets should pick 'antiman'"
    assert best(unit["king"] - unit["man"] + unit["woman"]) == "queen", "fixture broken: unit offsets pick 'queen'"
    got = impl.analogy(vectors, "man", "king", "woman", k=1)
    assert got[0][0] == "queen", f"3CosAdd adds unit vectors, so man : king :: woman : queen; got {got}"


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


# ------------------------------------------------------------------ benchmark files

@pytest.mark.task("load-benchmarks")
def test_wordsim_file_with_header(impl):
    got = impl.load_similarity(DATA / "wordsim_sample.tab")
    expected = [("tiger", "cat", 7.35), ("king", "queen", 8.10), ("coffee", "cup", 6.50),
                ("car", "automobile", 9.00), ("noon", "string", 0.50), ("king", "cabbage", 0.25)]
    assert got == expected, f"the header row is skipped and the words lowercased: expected {expected}, got {got}"


@pytest.mark.task("load-benchmarks")
def test_wordsim_file_without_header_keeps_its_first_pair(impl):
    got = impl.load_similarity(DATA / "wordsim_no_header.txt")
    expected = [("tiger", "cat", 7.35), ("book", "paper", 7.46), ("noon", "string", 0.54)]
    assert got == expected, f"a first row with a numeric score is data, blank lines are skipped: expected " \
                            f"{expected}, got {got}"


@pytest.mark.task("load-benchmarks")
def test_simlex_file_reads_the_simlex999_column(impl):
    got = impl.load_similarity(DATA / "simlex_sample.txt")
    expected = [("old", "new", 1.58), ("smart", "intelligent", 9.20), ("hard", "difficult", 8.77), ("cup", "mug", 6.58)]
    assert got == expected, f"SimLex's score is the 'SimLex999' column (the 4th): expected {expected}, got {got}"
    assoc = impl.load_similarity(DATA / "simlex_sample.txt", score_column="Assoc(USF)")
    assert [g for _, _, g in assoc] == [7.25, 7.11, 5.94, 3.05], f"a named column: got {assoc}"
    by_index = impl.load_similarity(DATA / "simlex_sample.txt", score_column=9, lowercase=False)
    assert by_index[-1] == ("Cup", "mug", 1.35), f"column 9 (SD) without lowercasing: got {by_index[-1]}"


@pytest.mark.task("load-benchmarks")
def test_similarity_file_with_windows_line_ends_and_comments(impl, tmp_path):
    path = tmp_path / "ws.tab"
    path.write_bytes(b"# a comment line\r\nWord 1\tWord 2\tHuman (mean)\r\nlove\tsex\t6.77\r\n")
    got = impl.load_similarity(path)
    assert got == [("love", "sex", 6.77)], f"expected [('love', 'sex', 6.77)], got {got}"


@pytest.mark.task("load-benchmarks")
def test_similarity_errors_name_the_line(impl, tmp_path):
    bad = tmp_path / "bad.tab"
    bad.write_text("tiger\tcat\t7.35\nbook\tpaper\tseven\n")
    with pytest.raises(ValueError, match=r"bad\.tab:2"):
        impl.load_similarity(bad)
    short = tmp_path / "short.tab"
    short.write_text("tiger\tcat\t7.35\nbook paper 7.46\n")  # spaces, not tabs
    with pytest.raises(ValueError, match=r"short\.tab:2"):
        impl.load_similarity(short)
    with pytest.raises(ValueError, match="Nope"):
        impl.load_similarity(DATA / "simlex_sample.txt", score_column="Nope")


@pytest.mark.task("load-benchmarks")
def test_google_analogy_file(impl):
    got = impl.load_analogies(DATA / "analogies_sample.txt")
    expected = {
        "capital-common-countries": [("athens", "greece", "berlin", "germany"), ("berlin", "germany", "paris", "france"),
                                     ("paris", "france", "athens", "greece")],
        "family": [("boy", "girl", "king", "queen"), ("king", "queen", "man", "woman")],
        "gram2-opposite": [("possible", "impossible", "sure", "unsure")],
    }
    assert list(got) == list(expected), f"sections in file order: expected {list(expected)}, got {list(got)}"
    for name, questions in expected.items():
        assert [tuple(q) for q in got[name]] == questions, f"section {name!r}: expected {questions}, got {got[name]}"


@pytest.mark.task("load-benchmarks")
def test_google_analogy_errors_name_the_line(impl, tmp_path):
    three = tmp_path / "three.txt"
    three.write_text(": family\nboy girl king queen\nking queen man\n")
    with pytest.raises(ValueError, match=r"three\.txt:3"):
        impl.load_analogies(three)
    orphan = tmp_path / "orphan.txt"
    orphan.write_text("boy girl king queen\n: family\n")
    with pytest.raises(ValueError, match=r"orphan\.txt:1"):
        impl.load_analogies(orphan)


@pytest.mark.task("load-benchmarks")
def test_loaded_files_feed_the_evaluation(impl):
    # The family questions of the sample file on role + gender vectors: all correct; the other sections' words are
    # unknown, so they are not covered.
    rng = np.random.default_rng(5)
    role = {r: rng.normal(size=12) for r in ("child", "ruler", "adult")}
    sex = {s: rng.normal(size=12) for s in ("m", "f")}
    words = {"boy": ("child", "m"), "girl": ("child", "f"), "king": ("ruler", "m"), "queen": ("ruler", "f"),
             "man": ("adult", "m"), "woman": ("adult", "f")}
    vectors = _vectors(impl, {w: role[r] + sex[s] for w, (r, s) in words.items()})
    sections = impl.load_analogies(DATA / "analogies_sample.txt")
    result = impl.analogy_accuracy(vectors, [q for qs in sections.values() for q in qs])
    assert (result.correct, result.covered, result.total) == (2, 2, 6), \
        f"expected 2 of 2 covered correct (6 questions), got {result.correct}/{result.covered} ({result.total})"


# ------------------------------------------------------------------ t-SNE

@pytest.fixture
def one_openmp_thread():
    with threadpool_limits(limits=1):  # scikit-learn's OpenMP threads spin against each other on a busy machine
        yield


def _reference_tsne(x, perplexity, seed=0, max_iter=250):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)  # distances between unit rows follow the cosine
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=max_iter).fit_transform(unit)


@pytest.mark.task("tsne")
def test_tsne_matches_sklearn_on_unit_rows(impl, one_openmp_thread):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 12)) * rng.uniform(0.2, 5.0, size=(40, 1))  # lengths vary: only directions may count
    got = impl.tsne_2d(x, perplexity=10, seed=0, max_iter=250)
    expected = _reference_tsne(x, perplexity=10)
    assert got.shape == (40, 2), f"expected (40, 2) coordinates, got {np.shape(got)}"
    assert np.allclose(got, expected, atol=1e-6), \
        f"differs from sklearn's TSNE(perplexity=10, init='pca') on unit rows by {np.abs(got - expected).max():.3g}"


@pytest.mark.task("tsne")
def test_tsne_caps_the_perplexity_for_few_points(impl, one_openmp_thread):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(7, 5))
    got = impl.tsne_2d(x, perplexity=30.0, seed=0, max_iter=250)  # 30 > 7 points: capped at (7 - 1) / 3 = 2
    expected = _reference_tsne(x, perplexity=2.0)
    assert np.allclose(got, expected, atol=1e-6), \
        f"with 7 points the perplexity should be capped at 2; off sklearn's map by {np.abs(got - expected).max():.3g}"


@pytest.mark.task("tsne")
def test_tsne_plots_are_written(impl, tmp_path, one_openmp_thread):
    rng = np.random.default_rng(8)
    words = [f"w{i}" for i in range(30)]
    first = impl.WordVectors(words, rng.normal(size=(30, 6)))
    second = impl.WordVectors(words[5:] + ["other"], rng.normal(size=(26, 6)))
    png = impl.plot_tsne(first, tmp_path / "frequent.png", n_words=12, pairs=[("w0", "w20")], perplexity=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "plot_tsne should save a PNG file"
    both = impl.plot_side_by_side({"first": first, "second": second}, tmp_path / "both.png", n_words=20,
                                  pairs=[("w6", "w7")], perplexity=5)
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "plot_side_by_side should save a PNG file"


# ------------------------------------------------------------------ file format (not a learner task)

def test_word2vec_text_round_trip(impl, tmp_path):
    vectors = impl.WordVectors(["x", "y"], np.array([[0.5, -1.0], [2.0, 0.25]]))
    back = impl.load_word2vec_text(impl.save_word2vec_text(tmp_path / "v.txt", vectors))
    assert back.words == ["x", "y"] and np.allclose(back.matrix, vectors.matrix)
    with pytest.raises(ValueError):
        impl.WordVectors(["x"], np.zeros((2, 3)))
