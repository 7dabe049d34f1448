"""Embeddings and vector search: turn text into unit vectors, find nearest neighbours exactly, then fast.

A sentence embedder maps a text to a point on the unit sphere (all-MiniLM-L6-v2 here: 384 dimensions) so that
texts with similar meaning land close together. Search is then geometry: the documents whose vectors have the
largest cosine similarity with the query's vector. What you build:

1. `embed`: batched, L2-normalised MiniLM embeddings with a progress bar.
2. `exact_search`: brute force by one matrix product, the ground truth every approximate index is judged by.
3. `kmeans`: Lloyd's algorithm on the sphere, the training step of an IVF index.
4. `IVFIndex`: an inverted-file index; a query scans only the `nprobe` lists nearest to it.
5. `recall_at_k` / `ndcg_at_k`: how close an approximate index is to exact search, and how good a ranking is
   against human relevance labels.
6. `qdrant_*`: the same corpus in Qdrant (in-process by default, a server when QDRANT_URL is set), with the
   HNSW parameters a production index is tuned by.
7. `faiss_*`: the library most vector stores build on: `IndexFlatIP` (exact, must equal `exact_search`),
   `IndexHNSWFlat` (a graph index, tuned at query time by efSearch) and `IndexIVFFlat` (faiss's IVF, tuned by
   nprobe), all with inner-product scores, on the same recall/latency plot as your IVF.
8. `LSAEmbedder`: TF-IDF and a truncated SVD (latent semantic analysis), a classical second embedder to compare
   with MiniLM on the labelled queries (MiniLM is the only neural embedder shipped for offline use).

Shapes: a corpus is D (N, d) float32 with unit rows; queries are Q (q, d); search returns (scores, ids), both
(q, k), best first.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import labkit
from labkit import assets

DATA = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------------------------------------- data

def load_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_corpus() -> tuple[list[dict], list[dict]]:
    """(documents, queries) shipped with the lab: 200 short texts on 10 topics and 40 labelled queries.

    A document is {"id", "topic", "text"}; a query is {"id", "text", "relevant": {doc_id: grade}} with grade 2
    for a document that answers the query and 1 for one that is on topic and useful (unlisted = 0).
    """
    return load_jsonl(DATA / "corpus.jsonl"), load_jsonl(DATA / "queries.jsonl")


# ---------------------------------------------------------------------------------------------- embeddings

def load_embedder(device: str = "cpu"):
    """all-MiniLM-L6-v2 as a sentence-transformers model, from the copy shipped in a pinned package (offline).

    Online you would write SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2"); the loading code is
    the same, only the path differs.
    """
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_path()), device=device)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def embed(model, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(len(texts), d) float32 unit vectors, encoded `batch_size` texts at a time.

    Normalising makes the dot product equal to the cosine similarity, so search becomes one matrix product
    and Qdrant's cosine distance and our scores agree.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("embed: texts must be a list of strings (wrap a single text in a list)")
    if batch_size < 1:
        raise ValueError(f"embed: batch_size must be >= 1, got {batch_size}")
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    # TODO [embed]: Encode slices of batch_size texts (tqdm over the batches), stack, then unit-normalise the rows.
    raise NotImplementedError('TODO [embed]: Encode slices of batch_size texts (tqdm over the batches), stack, then unit-normalise the rows.')


# ---------------------------------------------------------------------------------------------- exact search

def _check_search_args(queries: np.ndarray, corpus: np.ndarray, k: int) -> None:
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries (q, d) and corpus (N, d) must share d; got {queries.shape} and {corpus.shape}")
    if not 1 <= k <= corpus.shape[0]:
        raise ValueError(f"k must be between 1 and the corpus size {corpus.shape[0]}, got {k}")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k columns of each row of `scores` (q, N), sorted best first: (values, indices), both (q, k)."""
    # argpartition finds the k largest in O(N); only those k are then sorted.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, ids, axis=1), ids


def exact_search(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k for unit vectors by brute force: scores (q, k) and corpus row ids (q, k), best first."""
    queries, corpus = np.atleast_2d(queries), np.atleast_2d(corpus)
    _check_search_args(queries, corpus, k)
    # TODO [exact-search]: On unit vectors cosine = dot product: one (q, d) @ (d, N) product, then the k best per row.
    raise NotImplementedError('TODO [exact-search]: On unit vectors cosine = dot product: one (q, d) @ (d, N) product, then the k best per row.')


# ---------------------------------------------------------------------------------------------- IVF

def kmeans(x: np.ndarray, n_clusters: int, n_iter: int = 20, seed: int = 0) -> np.ndarray:
    """Spherical k-means (Lloyd's algorithm with cosine similarity): (n_clusters, d) unit centroids.

    Seeding is k-means++: the first centroid is a random row, each next one a row drawn with probability
    proportional to its squared distance to the nearest centroid so far (on unit vectors ||x - c||^2 = 2 - 2 x.c),
    which spreads the seeds out; plain random seeds often put two in one cluster and none in another.
    Then repeat: assign every vector to its most similar centroid, move each centroid to the normalised mean of
    its members. An empty cluster keeps its old centroid.
    """
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"kmeans: n_clusters must be between 1 and the number of vectors {len(x)}, got {n_clusters}")
    rng = np.random.default_rng(seed)
    # TODO [kmeans]: k-means++ seeds (draw rows with p ~ squared distance to the nearest seed); then loop: argmax assigns, renormalised member means update.
    raise NotImplementedError('TODO [kmeans]: k-means++ seeds (draw rows with p ~ squared distance to the nearest seed); then loop: argmax assigns, renormalised member means update.')


class IVFIndex:
    """Inverted-file index: k-means cells over the corpus, one list of row ids per cell.

    A query ranks the cells by centroid similarity, scans only the `nprobe` best cells exactly, and returns the
    best k among those candidates. nprobe = n_lists scans everything (exact); smaller nprobe is faster and may
    miss a neighbour that sits just across a cell border.
    """

    def __init__(self, corpus: np.ndarray, n_lists: int, n_iter: int = 20, seed: int = 0):
        corpus = np.asarray(corpus, dtype=np.float32)
        if corpus.ndim != 2:
            raise ValueError(f"IVFIndex: corpus must be (N, d), got shape {corpus.shape}")
        self.corpus = corpus
        self.dim = corpus.shape[1]
        # TODO [ivf-index]: Train kmeans centroids; assign each row to its nearest one; per list keep the row ids and a copy of their vectors.
        raise NotImplementedError('TODO [ivf-index]: Train kmeans centroids; assign each row to its nearest one; per list keep the row ids and a copy of their vectors.')

    @property
    def n_lists(self) -> int:
        return len(self.centroids)

    def search(self, queries: np.ndarray, k: int = 10, nprobe: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (q, k), best first. Rows with fewer than k candidates are padded with -inf / -1."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        _check_search_args(queries, self.corpus, k)
        if not 1 <= nprobe <= self.n_lists:
            raise ValueError(f"nprobe must be between 1 and n_lists={self.n_lists}, got {nprobe}")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        # TODO [ivf-index]: Per query: the nprobe best centroids; score only those cells' vectors; top k of the candidates.
        raise NotImplementedError("TODO [ivf-index]: Per query: the nprobe best centroids; score only those cells' vectors; top k of the candidates.")


# ---------------------------------------------------------------------------------------------- metrics

def recall_at_k(retrieved: list, relevant, k: int = 10) -> float:
    """Share of the relevant items found in the first k retrieved: |top-k ∩ relevant| / |relevant|.

    Against exact search, `relevant` is the exact top-k, so this is the fraction of true neighbours an
    approximate index recovered. An empty relevant set is undefined: ValueError.
    """
    relevant = set(relevant)
    if not relevant:
        raise ValueError("recall_at_k: the relevant set is empty, so recall is undefined; skip this query")
    # TODO [metrics]: Intersect the first k retrieved with the relevant set; divide by the relevant count.
    raise NotImplementedError('TODO [metrics]: Intersect the first k retrieved with the relevant set; divide by the relevant count.')


def ndcg_at_k(retrieved: list, relevance: dict, k: int = 10) -> float:
    """Normalised discounted cumulative gain of a ranking, with graded labels {item: grade}.

    DCG@k = sum over ranks i = 1..k of grade_i / log2(i + 1)   (linear gain, as sklearn and trec_eval use;
    some papers use 2^grade - 1 instead). nDCG = DCG / IDCG, where IDCG is the DCG of the labels sorted best
    first, so a perfect ranking scores 1 and a ranking with no relevant item in the top k scores 0.
    """
    if not relevance or max(relevance.values()) <= 0:
        raise ValueError("ndcg_at_k: no item has a positive grade, so nDCG is undefined; skip this query")
    # TODO [metrics]: DCG of the first k retrieved (missing items grade 0) over the DCG of the k best grades.
    raise NotImplementedError('TODO [metrics]: DCG of the first k retrieved (missing items grade 0) over the DCG of the k best grades.')


def evaluate(ranked_ids: list[list[str]], queries: list[dict], k: int = 10) -> dict[str, float]:
    """Mean nDCG@k and recall@k over labelled queries (relevant = any grade > 0)."""
    ndcg = [ndcg_at_k(r, q["relevant"], k) for r, q in zip(ranked_ids, queries)]
    recall = [recall_at_k(r, [d for d, g in q["relevant"].items() if g > 0], k) for r, q in zip(ranked_ids, queries)]
    return {f"ndcg@{k}": float(np.mean(ndcg)), f"recall@{k}": float(np.mean(recall))}


# ---------------------------------------------------------------------------------------------- Qdrant

def qdrant_client(url: str | None = None):
    """QdrantClient for `url`, else $QDRANT_URL, else an in-process in-memory instance (no server needed).

    Local mode (":memory:" or path=...) runs in Python and searches exhaustively; a real server
    (docker run -p 6333:6333 qdrant/qdrant, then QDRANT_URL=http://localhost:6333) builds HNSW graphs.
    """
    from qdrant_client import QdrantClient

    location = url or os.environ.get("QDRANT_URL") or ":memory:"
    return QdrantClient(location=location)


def qdrant_index(client, name: str, vectors: np.ndarray, payloads: list[dict] | None = None, m: int = 16,
                 ef_construct: int = 100, batch_size: int = 256) -> None:
    """(Re)create collection `name` with cosine distance and HNSW(m, ef_construct); upsert vectors as points 0..N-1.

    m: links per node in the HNSW graph (more = better recall, more memory); ef_construct: candidate-list size
    while building (more = better graph, slower build). Local mode stores both and ignores them.
    """
    from qdrant_client import models

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"qdrant_index: vectors must be (N, d), got shape {vectors.shape}")
    if payloads is not None and len(payloads) != len(vectors):
        raise ValueError(f"qdrant_index: {len(payloads)} payloads for {len(vectors)} vectors")
    # TODO [qdrant]: Drop the collection if it exists, create it (VectorParams cosine + HnswConfigDiff), upsert PointStructs in batches.
    raise NotImplementedError('TODO [qdrant]: Drop the collection if it exists, create it (VectorParams cosine + HnswConfigDiff), upsert PointStructs in batches.')


def qdrant_search(client, name: str, queries: np.ndarray, k: int = 10, ef: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (q, k), from Qdrant's query_points (qdrant-client 1.20 has no .search()).

    ef (hnsw_ef): candidate-list size while searching the graph; at least k, larger = better recall, slower.
    """
    from qdrant_client import models

    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    # TODO [qdrant]: One query_points call per query with SearchParams(hnsw_ef=ef); read .points (id, score).
    raise NotImplementedError('TODO [qdrant]: One query_points call per query with SearchParams(hnsw_ef=ef); read .points (id, score).')


# ---------------------------------------------------------------------------------------------- FAISS

def _as_faiss_input(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)  # faiss takes C-contiguous float32 only
    if x.ndim != 2:
        raise ValueError(f"faiss indexes take (N, d) vectors, got shape {x.shape}")
    return x


def faiss_flat(corpus: np.ndarray):
    """faiss.IndexFlatIP holding the corpus: exact inner-product search (cosine on unit rows)."""
    import faiss

    corpus = _as_faiss_input(corpus)
    # TODO [faiss]: IndexFlatIP(d), then add the corpus (row i gets id i).
    raise NotImplementedError('TODO [faiss]: IndexFlatIP(d), then add the corpus (row i gets id i).')


def faiss_hnsw(corpus: np.ndarray, m: int = 32, ef_construction: int = 200):
    """faiss.IndexHNSWFlat with m links per node, built with an ef_construction candidate list, scoring by
    inner product (faiss's default metric here is L2)."""
    import faiss

    corpus = _as_faiss_input(corpus)
    # TODO [faiss]: IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT); set hnsw.efConstruction before adding.
    raise NotImplementedError('TODO [faiss]: IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT); set hnsw.efConstruction before adding.')


def faiss_ivf(corpus: np.ndarray, n_lists: int, seed: int = 0):
    """faiss.IndexIVFFlat: an IndexFlatIP coarse quantizer over n_lists k-means cells, inner-product scores,
    trained on the corpus itself, then filled with it."""
    import faiss

    corpus = _as_faiss_input(corpus)
    if not 1 <= n_lists <= len(corpus):
        raise ValueError(f"n_lists must be between 1 and the corpus size {len(corpus)}, got {n_lists}")
    # TODO [faiss]: quantizer = IndexFlatIP(d); IndexIVFFlat(quantizer, d, n_lists, METRIC_INNER_PRODUCT); cp.seed = seed; train, then add.
    raise NotImplementedError('TODO [faiss]: quantizer = IndexFlatIP(d); IndexIVFFlat(quantizer, d, n_lists, METRIC_INNER_PRODUCT); cp.seed = seed; train, then add.')


def faiss_search(index, queries: np.ndarray, k: int = 10, ef_search: int | None = None,
                 nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (q, k), best first, from any of the indexes above; ef_search sets an HNSW index's
    efSearch, nprobe an IVF index's nprobe (the recall/latency dials). Missing results are -1 ids."""
    queries = _as_faiss_input(queries)
    if queries.shape[1] != index.d:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the index {index.d}")
    if not 1 <= k <= index.ntotal:
        raise ValueError(f"k must be between 1 and the index size {index.ntotal}, got {k}")
    # TODO [faiss]: Set index.hnsw.efSearch (when ef_search is given) and index.nprobe (when nprobe is given), then index.search(queries, k) returns (scores, ids).
    raise NotImplementedError('TODO [faiss]: Set index.hnsw.efSearch (when ef_search is given) and index.nprobe (when nprobe is given), then index.search(queries, k) returns (scores, ids).')


# ---------------------------------------------------------------------------------------------- a second embedder

class LSAEmbedder:
    """Latent semantic analysis: TF-IDF vectors of the texts, projected onto the top `dim` right singular
    vectors of the corpus's TF-IDF matrix, then unit-normalised. No neural network: words count, synonyms only
    meet through the words they co-occur with.

    TF-IDF (scikit-learn's defaults): tf = raw count, idf(t) = ln((1 + n) / (1 + df(t))) + 1, each row then
    scaled to unit length. LSA: X = U S V^T (SVD of the n x V corpus matrix); a text's vector is x V_dim."""

    def __init__(self, dim: int = 100):
        if dim < 1:
            raise ValueError(f"LSAEmbedder: dim must be >= 1, got {dim}")
        self.dim = dim

    def fit(self, texts: list[str]) -> "LSAEmbedder":
        from sklearn.feature_extraction.text import CountVectorizer

        self.counter = CountVectorizer()                     # tokenisation and vocabulary only
        counts = self.counter.fit_transform(texts).toarray().astype(np.float64)   # (n, V)
        if self.dim > min(counts.shape):
            raise ValueError(f"LSAEmbedder: dim={self.dim} exceeds min(documents, vocabulary) = {min(counts.shape)}")
        # TODO [lsa]: idf from the document frequencies (smoothed, + 1); the corpus TF-IDF rows; SVD; keep the first dim rows of V^T as components (dim, V).
        raise NotImplementedError('TODO [lsa]: idf from the document frequencies (smoothed, + 1); the corpus TF-IDF rows; SVD; keep the first dim rows of V^T as components (dim, V).')
        return self

    def tfidf(self, texts: list[str]) -> np.ndarray:
        """(len(texts), V) float64 TF-IDF rows of unit length; words outside the fitted vocabulary are ignored."""
        counts = self.counter.transform(texts).toarray().astype(np.float64)
        # TODO [lsa]: Weight the counts by idf, then scale every row to unit length.
        raise NotImplementedError('TODO [lsa]: Weight the counts by idf, then scale every row to unit length.')

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, comparable with each other by dot product."""
        # TODO [lsa]: Project the TF-IDF rows onto the components, then unit-normalise.
        raise NotImplementedError('TODO [lsa]: Project the TF-IDF rows onto the components, then unit-normalise.')


# ---------------------------------------------------------------------------------------------- demo

def clustered_vectors(n: int, dim: int, n_centers: int, spread: float = 2.5, seed: int = 0) -> np.ndarray:
    """Unit vectors around `n_centers` random directions: a stand-in for a large embedded corpus (which clusters
    by topic too), so the recall/latency curve can be drawn at a size where an index matters."""
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.normal(size=(n_centers, dim)))
    points = centers[rng.integers(n_centers, size=n)] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return l2_normalize(points).astype(np.float32)


def time_per_query(search, queries: np.ndarray, repeats: int = 1) -> float:
    """Median milliseconds per query, one query at a time (the latency a user sees), on one BLAS thread so
    that the comparison does not depend on how many idle cores the machine happens to have."""
    times = []
    with threadpool_limits(1):
        for _ in range(repeats):
            for query in queries:
                start = time.perf_counter()
                search(query[None, :])
                times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def recall_curve(index: IVFIndex, queries: np.ndarray, corpus: np.ndarray, k: int,
                 nprobes: list[int]) -> list[dict]:
    truth = exact_search(queries, corpus, k)[1]
    rows = [{"nprobe": "exact", "recall": 1.0,
             "ms": time_per_query(lambda q: exact_search(q, corpus, k), queries)}]
    for nprobe in tqdm(nprobes, desc="nprobe sweep", unit="setting"):
        found = index.search(queries, k, nprobe)[1]
        recall = float(np.mean([recall_at_k(f, t, k) for f, t in zip(found, truth)]))
        rows.append({"nprobe": nprobe, "recall": recall,
                     "ms": time_per_query(lambda q: index.search(q, k, nprobe), queries)})
    return rows


def faiss_curve(index, queries: np.ndarray, truth: np.ndarray, k: int, knob: str, values: list[int]) -> list[dict]:
    """recall@k against exact ids `truth` and ms/query of a faiss index over a sweep of one knob
    ("ef_search" for HNSW, "nprobe" for IVF)."""
    rows = []
    for value in tqdm(values, desc=f"faiss {knob} sweep", unit="setting"):
        found = faiss_search(index, queries, k, **{knob: value})[1]
        recall = float(np.mean([recall_at_k(f, t, k) for f, t in zip(found, truth)]))
        rows.append({knob: value, "recall": recall,
                     "ms": time_per_query(lambda q: faiss_search(index, q, k, **{knob: value}), queries)})
    return rows


def plot_curves(curves: dict[str, tuple[str, list[dict]]], exact_ms: float, path: Path, title: str) -> None:
    """One recall-vs-latency line per index: curves = {label: (knob name, rows)}; each point is labelled with its
    knob value; a dashed line marks exact search's latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, (knob, rows)), marker in zip(curves.items(), "os^v"):
        ax.plot([r["ms"] for r in rows], [r["recall"] for r in rows], marker + "-", label=f"{label} ({knob})")
        for r in rows:
            ax.annotate(str(r[knob]), (r["ms"], r["recall"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)
    ax.axvline(exact_ms, color="gray", ls="--", label=f"exact: {exact_ms:.2f} ms/query")
    ax.set(xscale="log", xlabel="ms per query (median, one query at a time, log scale)",
           ylabel="recall@10 vs exact", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ann-size", type=int, default=20000, help="vectors for the recall/latency curve")
    parser.add_argument("--n-lists", type=int, default=64, help="IVF cells for the curve")
    parser.add_argument("--n-queries", type=int, default=100, help="queries for the curve")
    parser.add_argument("--qdrant-url", default=None, help="Qdrant server (default: $QDRANT_URL, else in-memory)")
    parser.add_argument("--lsa-dim", type=int, default=100, help="dimensions of the TF-IDF + LSA embedder")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    docs, queries = load_corpus()
    print(f"corpus: {len(docs)} documents, {len(queries)} labelled queries")
    model = load_embedder()
    doc_vecs = embed(model, [d["text"] for d in docs], batch_size=args.batch_size)
    query_vecs = embed(model, [q["text"] for q in queries], batch_size=args.batch_size)
    print(f"embeddings: {doc_vecs.shape}, norms {np.linalg.norm(doc_vecs, axis=1).min():.4f}.."
          f"{np.linalg.norm(doc_vecs, axis=1).max():.4f}")

    doc_ids = [d["id"] for d in docs]
    scores, rows = exact_search(query_vecs, doc_vecs, args.k)
    for q, s, r in list(zip(queries, scores, rows))[:3]:
        print(f"\nquery: {q['text']!r}")
        for score, row in zip(s[:3], r[:3]):
            mark = q["relevant"].get(doc_ids[row], 0)
            print(f"  {score:.3f}  [grade {mark}] {docs[row]['text'][:80]}")
    exact_quality = evaluate([[doc_ids[i] for i in r] for r in rows], queries, args.k)
    print(f"\nexact search on MiniLM: nDCG@{args.k} = {exact_quality[f'ndcg@{args.k}']:.3f}, "
          f"recall@{args.k} = {exact_quality[f'recall@{args.k}']:.3f}")

    lsa = LSAEmbedder(dim=args.lsa_dim).fit([d["text"] for d in docs])
    lsa_rows = exact_search(lsa.encode([q["text"] for q in queries]), lsa.encode([d["text"] for d in docs]), args.k)[1]
    lsa_quality = evaluate([[doc_ids[i] for i in r] for r in lsa_rows], queries, args.k)
    print(f"exact search on TF-IDF + LSA ({args.lsa_dim} dims, scikit-learn's TF-IDF weighting): "
          f"nDCG@{args.k} = {lsa_quality[f'ndcg@{args.k}']:.3f}, recall@{args.k} = {lsa_quality[f'recall@{args.k}']:.3f}")
    tfidf_rows = exact_search(lsa.tfidf([q["text"] for q in queries]), lsa.tfidf([d["text"] for d in docs]), args.k)[1]
    tfidf_quality = evaluate([[doc_ids[i] for i in r] for r in tfidf_rows], queries, args.k)
    print(f"exact search on plain TF-IDF ({lsa.idf.size} words, no SVD): nDCG@{args.k} = "
          f"{tfidf_quality[f'ndcg@{args.k}']:.3f}, recall@{args.k} = {tfidf_quality[f'recall@{args.k}']:.3f}")

    flat_scores, flat_rows = faiss_search(faiss_flat(doc_vecs), query_vecs, args.k)
    print(f"faiss IndexFlatIP: {np.mean(flat_rows == rows):.0%} of top-{args.k} ids equal exact search, "
          f"max score gap {np.abs(flat_scores - scores).max():.1e}")

    small = IVFIndex(doc_vecs, n_lists=10, seed=0)
    for nprobe in (1, 3, 10):
        found = small.search(query_vecs, args.k, nprobe)[1]
        quality = evaluate([[doc_ids[i] for i in r if i >= 0] for r in found], queries, args.k)
        print(f"IVF (10 lists) nprobe={nprobe:>2}: nDCG@{args.k} = {quality[f'ndcg@{args.k}']:.3f}")

    client = qdrant_client(args.qdrant_url)
    qdrant_index(client, "lab01", doc_vecs, [{"doc_id": d["id"], "text": d["text"]} for d in docs])
    q_scores, q_rows = qdrant_search(client, "lab01", query_vecs, args.k)
    same = float(np.mean(q_rows == rows))
    q_ms = time_per_query(lambda q: qdrant_search(client, "lab01", q, args.k), query_vecs)
    print(f"Qdrant ({'server' if (args.qdrant_url or os.environ.get('QDRANT_URL')) else 'local in-memory'}): "
          f"{same:.0%} of top-{args.k} ids equal exact search, {q_ms:.2f} ms/query")

    print(f"\nrecall/latency curve on {args.ann_size} clustered 384-d vectors, {args.n_lists} IVF lists:")
    vectors = clustered_vectors(args.ann_size + args.n_queries, doc_vecs.shape[1], n_centers=200, seed=0)
    corpus, probe = vectors[:args.ann_size], vectors[args.ann_size:]      # queries: held-out points
    start = time.perf_counter()
    index = IVFIndex(corpus, n_lists=args.n_lists, n_iter=10, seed=0)
    print(f"IVF build (k-means, 10 iterations): {time.perf_counter() - start:.1f} s")
    nprobes = [p for p in (1, 2, 4, 8, 16, 32, 64, args.n_lists) if p <= args.n_lists]
    curve = recall_curve(index, probe, corpus, args.k, sorted(set(nprobes)))
    for r in curve:
        print(f"  nprobe {r['nprobe']!s:>5}: recall@{args.k} {r['recall']:.3f}  {r['ms']:.3f} ms/query")
    exact_row, ours = curve[0], curve[1:]
    truth = exact_search(probe, corpus, args.k)[1]
    start = time.perf_counter()
    hnsw = faiss_hnsw(corpus, m=32, ef_construction=200)
    print(f"faiss HNSW build (m=32, efConstruction=200): {time.perf_counter() - start:.1f} s")
    hnsw_rows = faiss_curve(hnsw, probe, truth, args.k, "ef_search", [10, 16, 32, 64, 128, 256])
    ivf_rows = faiss_curve(faiss_ivf(corpus, args.n_lists), probe, truth, args.k, "nprobe", sorted(set(nprobes)))
    for label, knob, rows_ in (("faiss HNSW", "ef_search", hnsw_rows), ("faiss IVF", "nprobe", ivf_rows)):
        for r in rows_:
            print(f"  {label} {knob} {r[knob]:>4}: recall@{args.k} {r['recall']:.3f}  {r['ms']:.3f} ms/query")
    plot = out / "recall_vs_latency.png"
    plot_curves({"our IVF": ("nprobe", ours), "faiss IVFFlat": ("nprobe", ivf_rows),
                 "faiss HNSWFlat": ("ef_search", hnsw_rows)}, exact_row["ms"], plot,
                f"{args.ann_size} vectors, 384-d; IVF with {args.n_lists} lists")
    print(f"plot: {plot.relative_to(labkit.ROOT)}")


if __name__ == "__main__":
    labkit.run(main)
