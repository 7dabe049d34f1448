"""Embeddings and vector search checks. References: the sentence-transformers library's own normalised
encode, known MiniLM similarities, brute force with NumPy (argsort of every score), sklearn's ndcg_score,
hand-computed recall, and Qdrant's in-process engine."""
import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from labkit import assets
from labkit.labs import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")  # MiniLM on a few sentences: one torch thread (labkit plugin)

LAB = ROOT / "llm-engineer/phase-07-retrieval-rag-agents/lab-01-embeddings-vector-search"


@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM, loaded once for the module."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_path()), device="cpu")


def unit_rows(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(queries, corpus, k):
    """Every score, fully sorted: the slowest, most obviously correct top-k."""
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# --------------------------------------------------------------------------- data shipped with the lab

def test_labelled_set_is_consistent():
    docs = [json.loads(line) for line in (LAB / "data/corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (LAB / "data/queries.jsonl").read_text().splitlines()]
    ids = {d["id"] for d in docs}
    assert len(ids) == len(docs) >= 150, f"expected >= 150 documents with unique ids, got {len(docs)}"
    assert 30 <= len(queries) <= 40, f"expected 30-40 labelled queries, got {len(queries)}"
    for q in queries:
        assert q["relevant"] and set(q["relevant"]) <= ids, f"{q['id']}: labels must name corpus documents"
        assert max(q["relevant"].values()) == 2, f"{q['id']}: every query needs a grade-2 answer"


# --------------------------------------------------------------------------- embed

class RawEncoder:
    """A stand-in encoder without a Normalize layer: text -> [length, vowels, spaces, 1], never unit length.
    It records the size of every encode call."""

    def __init__(self):
        self.calls = []

    def get_embedding_dimension(self):
        return 4

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False, **kwargs):
        self.calls.append(len(texts))
        return np.array([[len(t), sum(c in "aeiou" for c in t), t.count(" "), 1.0] for t in texts], dtype=np.float32)


@pytest.mark.task("embed")
def test_embed_normalises_each_row_of_a_raw_encoder(impl):
    texts = ["a", "banana split", "the cat sat on the mat", "xyz", "queue of ideas"]
    encoder = RawEncoder()
    got = impl.embed(encoder, texts, batch_size=2, progress=False)
    raw = np.array([[len(t), sum(c in "aeiou" for c in t), t.count(" "), 1.0] for t in texts])
    want = raw / np.linalg.norm(raw, axis=1, keepdims=True)                # each row over its own norm
    assert got.shape == (5, 4), f"expected one row per text, (5, 4), got {got.shape}"
    assert np.allclose(got, want, atol=1e-6), \
        f"each row should be divided by its own L2 norm (the encoder does not normalise); got {got} want {want}"
    assert max(encoder.calls) <= 2 and sum(encoder.calls) == 5, \
        f"texts should be encoded 2 at a time, each once; encode got batches of {encoder.calls}"


@pytest.mark.task("embed")
def test_embeddings_are_unit_norm_and_match_the_library(impl, minilm):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
             "Coral reefs are built by tiny animals.", "How do I fix a flat tyre?"]
    got = impl.embed(minilm, texts, batch_size=2, progress=False)
    assert got.shape == (5, 384) and got.dtype == np.float32, f"expected (5, 384) float32, got {got.shape} {got.dtype}"
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, 1, atol=1e-5), f"expected unit-norm rows, got norms {norms}"
    want = minilm.encode(texts, normalize_embeddings=True)
    assert np.allclose(got, want, atol=1e-5), \
        f"embeddings differ from SentenceTransformer.encode(normalize_embeddings=True) by {np.abs(got - want).max():.2e}"


@pytest.mark.task("embed")
def test_known_minilm_similarities(impl, minilm):
    a, b, c = impl.embed(minilm, ["A man is eating food.", "A man is eating a piece of bread.",
                                  "The stock market fell sharply today."], progress=False)
    assert abs(float(a @ b) - 0.755) < 0.005, f"expected cosine 0.755 for the two eating sentences, got {a @ b:.4f}"
    assert abs(float(a @ c)) < 0.05, f"expected cosine near 0 for eating vs stock market, got {a @ c:.4f}"


@pytest.mark.task("embed")
def test_batch_size_does_not_change_the_vectors(impl, minilm):
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(7)]
    one = impl.embed(minilm, texts, batch_size=1, progress=False)
    all_at_once = impl.embed(minilm, texts, batch_size=64, progress=False)
    assert np.allclose(one, all_at_once, atol=1e-5), "batch_size 1 and 64 should give the same vectors"


# --------------------------------------------------------------------------- exact-search

@pytest.mark.task("exact-search")
def test_exact_search_equals_brute_force(impl):
    corpus, queries = unit_rows(500, 32, seed=1), unit_rows(20, 32, seed=2)
    scores, ids = impl.exact_search(queries, corpus, k=10)
    want = brute_force(queries, corpus, 10)
    assert ids.shape == (20, 10), f"expected ids of shape (20, 10), got {ids.shape}"
    assert np.array_equal(ids, want), f"top-10 ids differ from a full argsort, first row: {ids[0]} vs {want[0]}"
    assert np.allclose(scores, np.take_along_axis(queries @ corpus.T, want, axis=1), atol=1e-5), \
        "scores should be the cosine similarities of the returned rows"
    assert np.all(np.diff(scores, axis=1) <= 0), "scores should be sorted best first"


@pytest.mark.task("exact-search")
def test_a_document_finds_itself_first(impl):
    corpus = unit_rows(100, 16, seed=3)
    scores, ids = impl.exact_search(corpus[[5, 42]], corpus, k=1)
    assert ids[:, 0].tolist() == [5, 42], f"a corpus row used as query should return itself, got {ids[:, 0]}"
    assert np.allclose(scores[:, 0], 1, atol=1e-5), f"its score should be cosine 1, got {scores[:, 0]}"


# --------------------------------------------------------------------------- kmeans

@pytest.mark.task("kmeans")
def test_kmeans_separates_obvious_clusters(impl):
    rng = np.random.default_rng(4)
    centers = np.eye(8, dtype=np.float32)[:4]
    x = centers[np.repeat(np.arange(4), 50)] + 0.05 * rng.normal(size=(200, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = impl.kmeans(x, 4, n_iter=10, seed=0)
    assert got.shape == (4, 8), f"expected (4, 8) centroids, got {got.shape}"
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5), "centroids should be unit vectors"
    best = np.sort((got @ centers.T).max(axis=0))
    assert best.min() > 0.95, f"each true center should have a centroid within cosine 0.95, got {best}"


def tight_clusters(sizes, dim, noise, seed):
    """Unit vectors around the first len(sizes) axes, sizes[i] of them around axis i: (sum(sizes), dim)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = np.eye(dim, dtype=np.float32)[labels] + noise * rng.normal(size=(len(labels), dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.mark.task("kmeans")
def test_kmeans_plus_plus_seeds_one_per_cluster(impl):
    # with n_iter=0 the seeds come back as they are. Four tight orthogonal clusters: a second seed in an occupied
    # cluster has probability ~ distance 0.001 against ~2 elsewhere, so k-means++ puts one seed in each cluster;
    # uniform seeds would do so only with probability 4!/4^4 ~ 0.09 per run.
    x, labels = tight_clusters([40, 40, 40, 40], 8, 0.02, seed=11)
    for seed in range(8):
        seeds = impl.kmeans(x, 4, n_iter=0, seed=seed)
        hit = np.argmax(seeds[:, :4], axis=1)                                 # the axis each seed sits on
        assert sorted(hit.tolist()) == [0, 1, 2, 3], \
            f"seed={seed}: k-means++ seeds should land one per cluster, got clusters {sorted(hit.tolist())}"


@pytest.mark.task("kmeans")
def test_kmeans_result_is_a_lloyd_fixed_point(impl):
    # after convergence, assigning every vector to its most similar centroid and renormalising the member means
    # must give back the same centroids
    x, _ = tight_clusters([30, 50, 20], 6, 0.3, seed=12)
    got = impl.kmeans(x, 3, n_iter=30, seed=0)
    assign = np.argmax(x @ got.T, axis=1)
    for c in range(3):
        members = x[assign == c]
        assert len(members), f"cluster {c} ended up empty on three well-separated clusters"
        mean = members.sum(axis=0) / np.linalg.norm(members.sum(axis=0))
        assert np.allclose(got[c], mean, atol=1e-4), \
            f"centroid {c} should be the normalised mean of the vectors most similar to it"


@pytest.mark.task("kmeans")
def test_kmeans_empty_cluster_keeps_its_centroid(impl):
    # 3 distinct points (each 5 times) and 4 clusters: one seed duplicates a point and its cluster stays empty
    x = np.repeat(np.eye(5, dtype=np.float32)[:3], 5, axis=0)
    got = impl.kmeans(x, 4, n_iter=3, seed=0)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5), \
        f"an empty cluster should keep its (unit) centroid, got norms {np.linalg.norm(got, axis=1)}"
    assert np.allclose(np.sort((got @ x.T).max(axis=1)), 1, atol=1e-5), "every centroid should sit on a data point"


# --------------------------------------------------------------------------- ivf-index

@pytest.fixture(scope="module")
def ivf_setup(impl):
    corpus, queries = unit_rows(2000, 24, seed=5), unit_rows(50, 24, seed=6)
    return impl.IVFIndex(corpus, n_lists=16, n_iter=8, seed=0), corpus, queries, brute_force(queries, corpus, 10)


def mean_recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.mark.task("ivf-index")
def test_ivf_every_row_finds_itself_with_one_probe(ivf_setup):
    # a row lives in the cell of its most similar centroid, and a query probes that same cell first
    index, corpus, _, _ = ivf_setup
    scores, ids = index.search(corpus[:300], k=1, nprobe=1)
    missed = np.flatnonzero(ids[:, 0] != np.arange(300))
    assert len(missed) == 0, f"{len(missed)} of 300 corpus rows did not find themselves with nprobe=1, e.g. {missed[:5]}"
    assert np.allclose(scores[:, 0], 1, atol=1e-5), "a row's score against itself should be cosine 1"


@pytest.mark.task("ivf-index")
def test_ivf_pads_when_the_probed_cell_is_small(impl):
    x, labels = tight_clusters([3, 30], 8, 0.02, seed=13)
    index = impl.IVFIndex(x, n_lists=2, n_iter=5, seed=0)
    assert sorted(len(ids) for ids in index.lists) == [3, 30], "two well-separated clusters should give lists 3 and 30"
    scores, ids = index.search(x[:1], k=5, nprobe=1)                      # a query in the 3-row cluster
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2], f"the 3 rows of the probed cell come first, got {ids[0]}"
    assert ids[0, 3:].tolist() == [-1, -1] and np.all(np.isneginf(scores[0, 3:])), \
        f"the 2 missing places should be padded with id -1 and score -inf, got {ids[0]} {scores[0]}"


@pytest.mark.task("ivf-index")
def test_ivf_lists_partition_the_corpus(ivf_setup):
    index, corpus, _, _ = ivf_setup
    members = np.sort(np.concatenate(index.lists))
    assert np.array_equal(members, np.arange(len(corpus))), "every corpus row should be in exactly one list"


@pytest.mark.task("ivf-index")
def test_ivf_at_full_nprobe_is_exact(ivf_setup):
    index, _, queries, truth = ivf_setup
    _, ids = index.search(queries, k=10, nprobe=16)
    recall = mean_recall(ids, truth)
    assert recall == 1.0, f"scanning all 16 lists should give recall@10 = 1.0 against brute force, got {recall:.3f}"


@pytest.mark.task("ivf-index")
def test_ivf_recall_falls_with_fewer_probes(ivf_setup):
    index, _, queries, truth = ivf_setup
    recalls = [mean_recall(index.search(queries, k=10, nprobe=p)[1], truth) for p in (1, 2, 4, 8, 16)]
    assert recalls[0] < 0.9, f"one probe out of 16 lists on random data should miss neighbours, got {recalls[0]:.3f}"
    assert all(a <= b + 1e-12 for a, b in zip(recalls, recalls[1:])), \
        f"recall should not drop when probing more lists, got {recalls} for nprobe 1, 2, 4, 8, 16"


# --------------------------------------------------------------------------- metrics

@pytest.mark.task("metrics")
def test_recall_by_hand(impl):
    assert impl.recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, k=4) == pytest.approx(2 / 3)
    assert impl.recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, k=2) == pytest.approx(1 / 3), \
        "only the first k retrieved count"
    assert impl.recall_at_k([3, 1, 2], [1, 2, 3], k=3) == 1.0
    # chunk-level hits mapped to documents can repeat a document: it still counts once
    assert impl.recall_at_k(["b", "b", "d"], {"b", "d", "z"}, k=3) == pytest.approx(2 / 3), \
        "a relevant item retrieved twice counts once"


@pytest.mark.task("metrics")
def test_ndcg_matches_sklearn(impl):
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = 30
        grades = rng.integers(0, 3, size=n) * (rng.random(n) < 0.3)
        if grades.max() == 0:
            grades[0] = 2
        scores = rng.permutation(n).astype(float)               # distinct scores: no ties
        ranking = list(np.argsort(-scores))
        relevance = {i: int(g) for i, g in enumerate(grades) if g > 0}
        for k in (1, 5, 10):
            want = ndcg_score([grades], [scores], k=k)
            got = impl.ndcg_at_k(ranking, relevance, k=k)
            assert got == pytest.approx(want, abs=1e-9), f"trial {trial}, k={k}: sklearn says {want:.6f}, got {got:.6f}"


@pytest.mark.task("metrics")
def test_ndcg_hand_case(impl):
    # grades 2 at rank 2 and 1 at rank 1: DCG = 1/log2(2) + 2/log2(3); ideal = 2 + 1/log2(3)
    want = (1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3))
    assert impl.ndcg_at_k(["x", "y", "z"], {"y": 2, "x": 1}, k=3) == pytest.approx(want)
    assert impl.ndcg_at_k(["p", "q"], {"y": 2}, k=2) == 0.0, "no relevant item retrieved should give 0"


# --------------------------------------------------------------------------- qdrant

@pytest.mark.task("qdrant")
def test_qdrant_returns_the_exact_top_k(impl):
    corpus, queries = unit_rows(300, 32, seed=8), unit_rows(10, 32, seed=9)
    client = impl.qdrant_client(":memory:")
    impl.qdrant_index(client, "t", corpus, [{"row": i} for i in range(len(corpus))], m=16, ef_construct=100)
    assert client.count("t").count == 300, "the collection should hold 300 points"
    scores, ids = impl.qdrant_search(client, "t", queries, k=10, ef=64)
    want = brute_force(queries, corpus, 10)
    assert np.array_equal(ids, want), f"Qdrant top-10 should equal brute force; first row {ids[0]} vs {want[0]}"
    assert np.allclose(scores, np.take_along_axis(queries @ corpus.T, want, axis=1), atol=1e-4), \
        "Qdrant cosine scores should equal the dot products of unit vectors"


@pytest.mark.task("qdrant")
def test_qdrant_honours_k_above_and_below_ten(impl):
    corpus, queries = unit_rows(40, 8, seed=10), unit_rows(3, 8, seed=11)
    client = impl.qdrant_client(":memory:")
    impl.qdrant_index(client, "k", corpus)
    for k in (3, 15):
        _, ids = impl.qdrant_search(client, "k", queries, k=k)
        want = brute_force(queries, corpus, k)
        assert np.array_equal(ids, want), f"k={k}: Qdrant should return the exact top-{k}, got {ids[0]} vs {want[0]}"


class Spy:
    """Forwards everything to a real client and records the arguments of create_collection (local mode accepts
    HNSW settings but does not store them, so the call itself is what we can check)."""

    def __init__(self, client):
        self.client, self.created = client, []

    def create_collection(self, *args, **kwargs):
        self.created.append(kwargs)
        return self.client.create_collection(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.task("qdrant")
def test_qdrant_collection_gets_the_hnsw_settings_and_reindexing_replaces(impl):
    client = Spy(impl.qdrant_client(":memory:"))
    impl.qdrant_index(client, "h", unit_rows(50, 8), m=32, ef_construct=200)
    impl.qdrant_index(client, "h", unit_rows(20, 8, seed=1), m=32, ef_construct=200)
    hnsw = client.created[-1].get("hnsw_config")
    assert hnsw is not None and hnsw.m == 32 and hnsw.ef_construct == 200, \
        f"create_collection should get hnsw_config with m=32, ef_construct=200, got {hnsw}"
    vectors = client.created[-1].get("vectors_config")
    assert vectors is not None and vectors.size == 8 and str(vectors.distance).lower().endswith("cosine"), \
        f"create_collection should get 8-d cosine vectors_config, got {vectors}"
    assert client.count("h").count == 20, "indexing again under the same name should replace the collection"


def test_qdrant_url_from_the_environment(impl, monkeypatch):
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:6333")
    with warnings.catch_warnings():  # no server listens there: the client's version check warns
        warnings.simplefilter("ignore")
        client = impl.qdrant_client()
    assert "QdrantRemote" in type(client._client).__name__, "with QDRANT_URL set the client should talk to a server"
    monkeypatch.delenv("QDRANT_URL")
    assert "QdrantLocal" in type(impl.qdrant_client()._client).__name__, "without it, an in-process instance"
