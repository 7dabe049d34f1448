"""Lab 02 checks: every piece against scikit-learn (the same conventions), BM25 against rank_bm25 and a hand
computation, top-k against a brute-force sort."""
import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel
from sklearn.preprocessing import normalize

from labkit import assets

SKLEARN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern
EDGE_TEXTS = ["The cat sat on the mat.", "", "I a", "Don't STOP me now -- naïve café, 2024!", "x" * 3 + " yy_zz 12"]


@pytest.fixture(scope="module")
def speeches():
    """The first 300 speeches of Macbeth, plus a few edge cases (an empty text, one with only 1-letter words)."""
    text = assets.shakespeare_plays()["macbeth"]
    return text.split("\n\n")[:300] + EDGE_TEXTS


def sklearn_tfidf(docs, sublinear, smooth):
    vec = TfidfVectorizer(token_pattern=SKLEARN_PATTERN, lowercase=True, sublinear_tf=sublinear,
                          smooth_idf=smooth, norm="l2", dtype=np.float64)
    return vec, vec.fit_transform(docs)


@pytest.mark.task("tokenize")
def test_tokenize_matches_sklearn_analyzer(impl, speeches):
    analyzer = CountVectorizer(token_pattern=SKLEARN_PATTERN, lowercase=True).build_analyzer()
    for i, text in enumerate(speeches[:50] + EDGE_TEXTS):
        got, want = impl.tokenize(text), analyzer(text)
        assert got == want, f"text #{i}: expected tokens {want[:12]}, got {got[:12]}"


@pytest.mark.task("tokenize")
def test_tokenize_uses_the_pattern_given(impl):
    # A pattern that keeps one-letter words: "I" and "a" now count, as in CountVectorizer with the same pattern.
    pattern = r"(?u)\b\w+\b"
    analyzer = CountVectorizer(token_pattern=pattern, lowercase=True).build_analyzer()
    for text in ["I am a cat", "To be, or not to be: a question."]:
        got, want = impl.tokenize(text, pattern), analyzer(text)
        assert got == want, f"with pattern {pattern!r}, expected {want} for {text!r}, got {got}"


@pytest.mark.task("count-matrix")
def test_count_matrix_hand_example(impl):
    tokens = [["bb", "aa", "aa"], ["cc"], []]
    vocab = impl.build_vocabulary(tokens)
    assert vocab == {"aa": 0, "bb": 1, "cc": 2}, f"expected alphabetical columns {{aa:0, bb:1, cc:2}}, got {vocab}"
    m = impl.count_matrix(tokens, vocab)
    assert sparse.isspmatrix_csr(m) or isinstance(m, sparse.csr_array), f"expected a CSR matrix, got {type(m)}"
    assert m.shape == (3, 3), f"expected shape (3, 3), got {m.shape}"
    assert m.indptr.tolist() == [0, 2, 3, 3], f"expected indptr [0, 2, 3, 3], got {m.indptr.tolist()}"
    assert m.indices.tolist() == [0, 1, 2], f"expected indices [0, 1, 2], got {m.indices.tolist()}"
    assert m.data.tolist() == [2, 1, 1], f"expected data [2, 1, 1], got {m.data.tolist()}"
    unknown = impl.count_matrix([["zz", "aa"]], vocab)
    assert unknown.toarray().tolist() == [[1, 0, 0]], f"unknown words must be skipped, got {unknown.toarray()}"


@pytest.mark.task("count-matrix")
def test_count_matrix_matches_count_vectorizer(impl, speeches):
    vec = CountVectorizer(token_pattern=SKLEARN_PATTERN, lowercase=True)
    want = vec.fit_transform(speeches)
    tokens = [CountVectorizer(token_pattern=SKLEARN_PATTERN).build_analyzer()(t) for t in speeches]
    vocab = impl.build_vocabulary(tokens)
    assert vocab == vec.vocabulary_, f"vocabulary differs from CountVectorizer's ({len(vocab)} vs {len(vec.vocabulary_)} terms)"
    got = impl.count_matrix(tokens, vocab)
    assert got.shape == want.shape, f"expected shape {want.shape}, got {got.shape}"
    diff = abs(got - want).max()
    assert diff == 0, f"counts differ from CountVectorizer's by up to {diff}"
    assert got.nnz == want.nnz, f"expected {want.nnz} stored entries (no explicit zeros), got {got.nnz}"


@pytest.mark.task("tf-weighting")
def test_tf_weighting_raw_and_sublinear(impl):
    counts = sparse.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 10.0, 0.0]]))
    raw = impl.tf_weight(counts, sublinear=False).toarray()
    assert np.array_equal(raw, counts.toarray()), f"raw TF should be the counts, got {raw}"
    sub = impl.tf_weight(counts, sublinear=True)
    want = np.array([[1.0, 0.0, 1 + math.log(3)], [0.0, 1 + math.log(10), 0.0]])
    assert np.allclose(sub.toarray(), want, atol=1e-12), f"expected 1 + ln(tf) on non-zeros {want}, got {sub.toarray()}"
    assert sub.nnz == 3, f"sublinear TF must stay sparse (3 stored entries), got {sub.nnz}"
    assert counts[0, 2] == 3.0, "tf_weight changed its input matrix; work on a copy"


@pytest.mark.task("idf")
@pytest.mark.parametrize("smooth", [True, False])
def test_idf_matches_tfidf_transformer(impl, speeches, smooth):
    counts = CountVectorizer(token_pattern=SKLEARN_PATTERN).fit_transform(speeches).astype(np.float64).tocsr()
    df = impl.document_frequency(counts)
    want_df = np.asarray((counts > 0).sum(axis=0)).ravel()
    assert np.array_equal(df, want_df), "document frequencies differ from the count of non-zero rows per column"
    want = TfidfTransformer(smooth_idf=smooth).fit(counts).idf_
    got = impl.idf_weights(counts, smooth=smooth)
    assert np.allclose(got, want, atol=1e-12), (f"idf (smooth={smooth}) differs from sklearn's by up to "
                                                f"{np.abs(got - want).max():.2e}")


@pytest.mark.task("l2-normalize")
def test_l2_normalize_matches_sklearn(impl):
    m = sparse.random(20, 30, density=0.2, random_state=0, format="csr")
    m = sparse.vstack([m, sparse.csr_matrix((1, 30))]).tocsr()  # an all-zero last row
    got = impl.l2_normalize_rows(m)
    want = normalize(m, norm="l2")
    assert sparse.issparse(got), f"expected a sparse matrix back, got {type(got)}"
    assert np.allclose(got.toarray(), want.toarray(), atol=1e-12), "rows differ from sklearn.preprocessing.normalize"
    assert np.all(np.isfinite(got.toarray())) and got[20].nnz == 0, "an all-zero row must stay zero (no NaN)"


@pytest.mark.task("l2-normalize")
@pytest.mark.parametrize("sublinear,smooth", [(False, True), (True, True), (True, False), (False, False)])
def test_cosine_matrix_matches_tfidf_vectorizer(impl, speeches, sublinear, smooth):
    vec, theirs = sklearn_tfidf(speeches, sublinear, smooth)
    index = impl.build_index(speeches, sublinear_tf=sublinear, smooth_idf=smooth)
    assert index.vocab == vec.vocabulary_, "vocabulary differs from TfidfVectorizer's"
    gap = abs(index.matrix - theirs).max()
    assert gap < 1e-6, f"TF-IDF matrix differs from TfidfVectorizer's by {gap:.2e} (allowed 1e-6)"
    ours_cos = (index.matrix @ index.matrix.T).toarray()
    want_cos = linear_kernel(theirs)
    worst = np.abs(ours_cos - want_cos).max()
    assert worst < 1e-6, f"cosine matrix differs from sklearn's by {worst:.2e} (allowed 1e-6)"


@pytest.mark.task("search")
def test_top_k_against_brute_force(impl):
    scores = np.array([0.5, 0.9, 0.5, 0.0, 0.9, -0.2, 0.5])
    got = impl.top_k(scores, 3)
    assert got == [(1, 0.9), (4, 0.9), (0, 0.5)], f"expected [(1, 0.9), (4, 0.9), (0, 0.5)], got {got}"
    got = impl.top_k(scores, 10)
    assert [d for d, _ in got] == [1, 4, 0, 2, 6], f"k above the positive count keeps positives only, got {got}"
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = np.round(rng.normal(size=200), 1)  # many ties
        k = int(rng.integers(1, 30))
        want = sorted([(i, v) for i, v in enumerate(s) if v > 0], key=lambda p: (-p[1], p[0]))[:k]
        got = impl.top_k(s, k)
        assert [d for d, _ in got] == [d for d, _ in want], f"k={k}: expected {want[:5]}…, got {got[:5]}…"


@pytest.mark.task("search")
@pytest.mark.parametrize("sublinear", [False, True])
def test_query_scores_match_sklearn(impl, speeches, sublinear):
    vec, theirs = sklearn_tfidf(speeches, sublinear, True)
    index = impl.build_index(speeches, sublinear_tf=sublinear)
    for query in ["thane of cawdor", "Is this a dagger which I see before me", "blood will have blood blood",
                  "zebra quantum"]:
        want = linear_kernel(vec.transform([query]), theirs).ravel()
        got = impl.cosine_scores(index, query)
        gap = np.abs(got - want).max()
        assert gap < 1e-6, f"query {query!r}: scores differ from TfidfVectorizer + linear_kernel by {gap:.2e}"


@pytest.mark.task("search")
def test_known_query_finds_its_speech(impl, capsys):
    impl.main(["a horse my kingdom for a horse", "--top", "3", "--plays", "richard-iii"])
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.strip().startswith("1."))
    assert "kingdom for a horse" in first, f"expected King Richard's 'my kingdom for a horse' first, got: {first}"


@pytest.mark.task("bm25")
def test_bm25_hand_computed(impl):
    docs = ["cat sat", "cat cat dog", "dog"]  # lengths 2, 3, 1 -> avgdl 2
    index = impl.build_index(docs)
    got = impl.bm25_scores(index, "cat", k1=1.2, b=0.75)
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))           # lucene idf, df(cat) = 2 of 3
    want = [idf * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 2)),
            idf * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2)),
            0.0]
    assert np.allclose(got, want, atol=1e-12), f"expected {np.round(want, 6)}, got {np.round(got, 6)}"
    twice = impl.bm25_scores(index, "cat cat", k1=1.2, b=0.75)
    assert np.allclose(twice, 2 * np.asarray(want)), "a query word given twice should count twice"
    flat = impl.bm25_scores(index, "cat", k1=1.2, b=0.0)
    assert np.isclose(flat[1], idf * 2 * 2.2 / (2 + 1.2)), f"b=0 removes length normalisation, got {flat[1]:.6f}"


@pytest.mark.task("bm25")
def test_bm25_idf_variants(impl):
    df = np.array([1, 2, 3])
    got_l = impl.bm25_idf(df, 4, "lucene")
    got_r = impl.bm25_idf(df, 4, "robertson")
    assert np.allclose(got_l, [math.log(1 + 3.5 / 1.5), math.log(1 + 2.5 / 2.5), math.log(1 + 1.5 / 3.5)]), \
        f"lucene idf for df=1,2,3 of 4 docs: got {got_l}"
    assert np.allclose(got_r, [math.log(3.5 / 1.5), 0.0, math.log(1.5 / 3.5)]), \
        f"robertson idf for df=1,2,3 of 4 docs: got {got_r}"


@pytest.mark.task("bm25")
@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (1.2, 0.3)])
def test_bm25_matches_rank_bm25(impl, speeches, k1, b):
    """rank_bm25's BM25Okapi uses the robertson idf and floors negative idfs at 0.25 x the mean idf; the queries
    use only words found in fewer than half the speeches, so the floor never applies."""
    docs = speeches[:300]
    analyzer = CountVectorizer(token_pattern=SKLEARN_PATTERN).build_analyzer()
    tokens = [analyzer(d) for d in docs]
    reference = BM25Okapi(tokens, k1=k1, b=b)
    index = impl.build_index(docs)
    for query in ["thane of cawdor", "sleep no more macbeth does murder sleep", "blood blood will have"]:
        q = analyzer(query)
        assert all(reference.idf.get(t, 1.0) > 0 for t in q), "test setup: a query word is in half the speeches"
        want = reference.get_scores(q)
        got = impl.bm25_scores(index, query, k1=k1, b=b, idf="robertson")
        gap = np.abs(got - want).max()
        assert gap < 1e-9, f"query {query!r}: BM25 scores differ from rank_bm25's by {gap:.2e}"


def test_bad_inputs_raise_clear_errors(impl):
    with pytest.raises(ValueError, match="at least one document"):
        impl.build_index([])
    with pytest.raises(ValueError, match="k must be"):
        impl.top_k(np.ones(3), 0)
    with pytest.raises(ValueError, match="unknown BM25 idf"):
        impl.bm25_idf(np.ones(2), 3, "okapi")
