"""Lab 03 checks: BM25 against rank_bm25, dense scores against sentence-transformers' own cosine, RRF and the
metrics against hand computations and scikit-learn, the fusion on the shipped labelled set."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rank_bm25 import BM25Okapi
from sentence_transformers import util
from sklearn.metrics import ndcg_score

from labkit import assets

DATA = Path(__file__).resolve().parents[4] / "llm-engineer/phase-07-retrieval-rag-agents/lab-03-hybrid-retrieval-reranking/data"


def read(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


@pytest.fixture(scope="module")
def corpus():
    return read("corpus.jsonl")


@pytest.fixture(scope="module")
def queries():
    return read("queries.jsonl")


@pytest.fixture(scope="module")
def embedder():
    return assets.sentence_embedder()


def tokens_of(impl, corpus):
    return [impl.tokenize(f"{d['title']}. {d['text']}") for d in corpus]


@pytest.mark.task("bm25")
def test_bm25_hand_example(impl):
    bm25 = impl.BM25([["a", "b"], ["a"], ["c"]], k1=1.5, b=0.75)
    # N = 3, df(b) = 1: idf = ln(2.5) - ln(1.5); avgdl = 4/3; doc 0 has tf 1 and length 2.
    idf = math.log(2.5) - math.log(1.5)
    want = idf * 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / (4 / 3)))
    got = bm25.scores(["b"])
    assert np.allclose(got, [want, 0, 0], atol=1e-12), f"expected scores [{want:.6f}, 0, 0] for query 'b', got {got}"
    twice = bm25.scores(["b", "b"])
    assert np.allclose(twice, [2 * want, 0, 0], atol=1e-12), f"a repeated query word counts twice: got {twice}"
    assert np.allclose(bm25.scores(["zzz"]), 0), "a word absent from the corpus must add nothing"


@pytest.mark.task("bm25")
@pytest.mark.parametrize("k1,b,epsilon", [(1.5, 0.75, 0.25), (1.2, 0.5, 0.1)])
def test_bm25_matches_rank_bm25_on_the_corpus(impl, corpus, queries, k1, b, epsilon):
    docs = tokens_of(impl, corpus)
    ours, ref = impl.BM25(docs, k1=k1, b=b, epsilon=epsilon), BM25Okapi(docs, k1=k1, b=b, epsilon=epsilon)
    common = [w for w in ref.idf if sum(w in d for d in docs) > len(docs) / 2]
    assert common, "the corpus should hold words found in more than half the documents (the epsilon floor case)"
    texts = [impl.tokenize(q["query"]) for q in queries] + [common[:2] + ["e-417", "nonexistentword"], common[:1] * 3]
    for tokens in texts:
        got, want = ours.scores(tokens), np.asarray(ref.get_scores(tokens))
        assert got.shape == want.shape, f"expected {want.shape} scores, got {got.shape}"
        assert np.allclose(got, want, atol=1e-9), \
            f"query {tokens}: max |ours - rank_bm25| = {np.abs(got - want).max():.3g} (expected within 1e-9)"


class RawEmbedder:
    """A stand-in encoder that does not normalise unless asked (as sentence-transformers' normalize_embeddings):
    text -> [length, vowels, spaces, 1]."""

    def encode(self, texts, normalize_embeddings=False, **kwargs):
        x = np.array([[len(t), sum(c in "aeiou" for c in t), t.count(" "), 1.0] for t in texts], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if normalize_embeddings else x


@pytest.mark.task("dense")
def test_dense_normalises_documents_and_query_itself(impl):
    texts = ["a", "banana split", "the cat sat on the mat", "xyz"]
    index = impl.DenseIndex(RawEmbedder(), texts)
    raw = RawEmbedder().encode(texts).astype(np.float64)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(index.vectors, unit, atol=1e-6), "document vectors should be unit length (cosine = dot)"
    q = RawEmbedder().encode(["queue of ideas"])[0].astype(np.float64)
    want = unit @ (q / np.linalg.norm(q))
    got = index.scores("queue of ideas")
    assert np.allclose(got, want, atol=1e-6), f"scores should be cosines in [-1, 1]: expected {want}, got {got}"


@pytest.mark.task("dense")
def test_dense_scores_are_sentence_transformers_cosines(impl, corpus, embedder):
    texts = [f"{d['title']}. {d['text']}" for d in corpus[:40]]
    index = impl.DenseIndex(embedder, texts)
    assert index.vectors.shape == (40, 384), f"expected (40, 384) document vectors, got {index.vectors.shape}"
    norms = np.linalg.norm(index.vectors, axis=1)
    assert np.allclose(norms, 1, atol=1e-4), f"document vectors must be unit length, norms range {norms.min():.4f}..{norms.max():.4f}"
    query = "my kettle shows an error"
    want = util.cos_sim(embedder.encode([query]), embedder.encode(texts)).numpy()[0]
    got = index.scores(query)
    assert np.allclose(got, want, atol=1e-4), f"expected sentence-transformers' cosines, max diff {np.abs(got - want).max():.3g}"


@pytest.mark.task("rrf")
def test_rrf_hand_example(impl):
    got = impl.rrf([["a", "b", "c"], ["b", "c", "d"]], k=60)
    want = [("b", 1 / 62 + 1 / 61), ("c", 1 / 63 + 1 / 62), ("a", 1 / 61), ("d", 1 / 63)]
    assert [d for d, _ in got] == [d for d, _ in want], f"expected order b, c, a, d, got {[d for d, _ in got]}"
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-15), f"expected scores {want}, got {got}"
    assert impl.rrf([["x", "y"]], k=0) == [("x", 1.0), ("y", 0.5)], "with k = 0 the scores are 1/rank"
    # "x" and "a" swap places between the two rankings: both score 1/61 + 1/62 exactly, and "x" was seen first;
    # "q" and "m" (one list each, rank 3) tie too, "q" first
    tied = [d for d, _ in impl.rrf([["x", "a", "q"], ["a", "x", "m"]], k=60)]
    assert tied == ["x", "a", "q", "m"], f"equal scores keep first-seen order: expected x, a, q, m, got {tied}"
    with pytest.raises(ValueError):
        impl.rrf([["x"]], k=-1)


@pytest.mark.task("metrics")
def test_ndcg_matches_sklearn(impl):
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(30)]
    for _ in range(25):
        grades = rng.choice([0, 0, 0, 1, 2], size=30)
        if grades.sum() == 0:
            grades[3] = 1
        ranked = list(rng.permutation(ids))
        relevant = {d: int(g) for d, g in zip(ids, grades) if g > 0}
        y_true = np.array([[relevant.get(d, 0) for d in ranked]])
        y_score = np.array([np.arange(len(ranked), 0, -1)])  # strictly decreasing: no ties
        for k in (1, 5, 10):
            want = ndcg_score(y_true, y_score, k=k)
            got = impl.ndcg_at_k(ranked, relevant, k)
            assert math.isclose(got, want, abs_tol=1e-12), f"nDCG@{k}: sklearn says {want:.6f}, got {got:.6f}"
    assert impl.ndcg_at_k(["x"], {}, 10) == 0.0, "no relevant documents: nDCG is 0"


@pytest.mark.task("metrics")
def test_mrr_and_recall_hand_examples(impl):
    relevant = {"b": 1, "d": 2, "z": 1}
    ranked = ["a", "b", "c", "d"]
    assert impl.mrr_at_k(ranked, relevant, 10) == 0.5, "first relevant at rank 2: MRR 1/2"
    assert impl.mrr_at_k(ranked, relevant, 1) == 0.0, "nothing relevant in the top 1: MRR 0"
    assert math.isclose(impl.recall_at_k(ranked, relevant, 10), 2 / 3), "2 of the 3 relevant ids retrieved"
    assert math.isclose(impl.recall_at_k(ranked, relevant, 3), 1 / 3), "only 'b' within the top 3"
    # qrels often list judged non-relevant documents with grade 0: they are not relevant
    judged = {"a": 0, "c": 1, "x": 0}
    assert impl.mrr_at_k(ranked, judged, 10) == 1 / 3, "'a' has grade 0: the first relevant is 'c' at rank 3"
    assert impl.recall_at_k(ranked, judged, 10) == 1.0, "the only relevant id (grade > 0) is 'c', retrieved"


def sklearn_ndcg(run, queries, all_ids):
    values = []
    for q in queries:
        ranked = run[q["qid"]]
        rest = [d for d in all_ids if d not in set(ranked)]
        order = ranked + rest
        y_true = np.array([[q["relevant"].get(d, 0) for d in order]])
        values.append(ndcg_score(y_true, np.array([np.arange(len(order), 0, -1)]), k=10))
    return float(np.mean(values))


@pytest.mark.task("rrf")
def test_fusion_helps_on_the_labelled_set(impl, corpus, queries, embedder):
    ids = [d["id"] for d in corpus]
    texts = [f"{d['title']}. {d['text']}" for d in corpus]
    bm25 = BM25Okapi([impl.tokenize(t) for t in texts])
    vectors = embedder.encode(texts, normalize_embeddings=True)
    qvecs = embedder.encode([q["query"] for q in queries], normalize_embeddings=True)
    runs = {"bm25": {}, "dense": {}, "hybrid": {}}
    for q, qv in zip(queries, qvecs):
        lexical = [ids[i] for i in np.argsort(-bm25.get_scores(impl.tokenize(q["query"])), kind="stable")[:100]]
        semantic = [ids[i] for i in np.argsort(-(vectors @ qv), kind="stable")[:100]]
        runs["bm25"][q["qid"]], runs["dense"][q["qid"]] = lexical, semantic
        runs["hybrid"][q["qid"]] = [d for d, _ in impl.rrf([lexical, semantic], k=60)]
    scores = {name: sklearn_ndcg(run, queries, ids) for name, run in runs.items()}
    assert scores["hybrid"] > max(scores["bm25"], scores["dense"]), \
        f"RRF of BM25 and dense should beat both on this set (nDCG@10): {scores}"
