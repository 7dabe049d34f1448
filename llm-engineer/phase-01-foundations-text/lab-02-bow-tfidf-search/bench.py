"""Query latency of this lab's search against scikit-learn (and BM25 against rank_bm25), same corpus, same run.

    python bench.py [--queries 300]

Both sides answer the same queries over every Shakespeare speech; each query is timed end to end (vectorise the
query, score every document, take the top 5). Prints p50/p99 in milliseconds and our/their ratios.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from rank_bm25 import BM25Okapi
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel

import labkit

lab = labkit.load_impl("llm-engineer/phase-01-foundations-text/lab-02-bow-tfidf-search", "solution")


def latencies(fn, queries) -> np.ndarray:
    fn(queries[0])  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1e3


def sklearn_top5(vec, matrix):
    def search(query):
        scores = linear_kernel(vec.transform([query]), matrix).ravel()
        best = np.argpartition(-scores, 5)[:5]
        return best[np.argsort(-scores[best])]
    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--bm25-queries", type=int, default=20, help="rank_bm25 is slow; fewer queries for it")
    args = parser.parse_args()

    ids, texts = lab.shakespeare_speeches()
    rng = np.random.default_rng(0)
    queries = []
    for doc in rng.integers(0, len(texts), args.queries):   # 2-6 consecutive words from a random speech
        words = lab.tokenize(texts[doc])
        start = int(rng.integers(0, max(1, len(words) - 6)))
        queries.append(" ".join(words[start:start + int(rng.integers(2, 7))]))

    t = time.perf_counter(); index = lab.build_index(texts, sublinear_tf=True); build_ours = time.perf_counter() - t
    t = time.perf_counter()
    vec = TfidfVectorizer(sublinear_tf=True, dtype=np.float64); matrix = vec.fit_transform(texts)
    build_sk = time.perf_counter() - t
    t = time.perf_counter(); bm25 = BM25Okapi([lab.tokenize(x) for x in texts]); build_rb = time.perf_counter() - t

    rows = [("TF-IDF cosine top-5", latencies(lambda q: lab.top_k(lab.cosine_scores(index, q), 5), queries),
             "sklearn transform+linear_kernel", latencies(sklearn_top5(vec, matrix), queries))]
    few = queries[:args.bm25_queries]
    rows.append(("BM25 top-5", latencies(lambda q: lab.top_k(lab.bm25_scores(index, q, 1.5, 0.75, "robertson"), 5), few),
                 "rank_bm25 get_scores", latencies(lambda q: np.argsort(-bm25.get_scores(lab.tokenize(q)))[:5], few)))

    print(f"corpus: {len(texts):,} speeches, {len(index.vocab):,} terms; {len(queries)} queries "
          f"({len(few)} for BM25)")
    print(f"index build: ours {build_ours:.2f} s | sklearn fit_transform {build_sk:.2f} s | rank_bm25 {build_rb:.2f} s")
    print(f"{'ours':<22}{'p50 ms':>8}{'p99 ms':>8} | {'baseline':<32}{'p50 ms':>8}{'p99 ms':>8} | "
          f"{'p50 ratio':>9}{'p99 ratio':>10}")
    for name, ours, base_name, base in rows:
        o50, o99, b50, b99 = np.percentile(ours, 50), np.percentile(ours, 99), np.percentile(base, 50), np.percentile(base, 99)
        print(f"{name:<22}{o50:8.2f}{o99:8.2f} | {base_name:<32}{b50:8.2f}{b99:8.2f} | "
              f"{o50 / b50:8.2f}x{o99 / b99:9.2f}x")
    print("ratio = ours / baseline (below 1 means ours is faster)")


if __name__ == "__main__":
    main()
