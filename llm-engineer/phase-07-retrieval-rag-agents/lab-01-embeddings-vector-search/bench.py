"""Our IVF, faiss (IndexFlatIP, IndexIVFFlat over nprobe, IndexHNSWFlat over efSearch) and exact search:
recall@10 against exact search and latency per query, side by side in one run, plus Qdrant's query latency.
The recall/latency curves are drawn on one plot (outputs/.../bench_recall_vs_latency.png).

The corpus is clustered synthetic unit vectors in 384 dimensions (MiniLM's width), large enough for an index to
matter; queries are held-out points from the same clusters. Latency is the median over single queries on one
BLAS thread (the number a user sees); the batched exact row shows what a matrix product over all queries costs
per query when latency does not matter.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import labkit

lab = labkit.load_impl("llm-engineer/phase-07-retrieval-rag-agents/lab-01-embeddings-vector-search", "solution")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--n-lists", type=int, default=128)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--qdrant-n", type=int, default=10000)
    parser.add_argument("--m", type=int, default=32, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=200, help="HNSW build-time candidate list")
    args = parser.parse_args(argv)
    k = 10

    vectors = lab.clustered_vectors(args.n + args.queries, 384, n_centers=300, seed=0)
    corpus, queries = vectors[:args.n], vectors[args.n:]
    truth = lab.exact_search(queries, corpus, k)[1]

    start = time.perf_counter()
    index = lab.IVFIndex(corpus, n_lists=args.n_lists, n_iter=10, seed=0)
    build = time.perf_counter() - start
    exact_ms = lab.time_per_query(lambda q: lab.exact_search(q, corpus, k), queries)
    with threadpool_limits(1):
        start = time.perf_counter()
        lab.exact_search(queries, corpus, k)
        batched_ms = 1000 * (time.perf_counter() - start) / len(queries)

    print(f"{args.n} x 384 corpus, {args.queries} queries, k={k}; IVF with {args.n_lists} lists built in {build:.1f} s")
    print(f"| method | recall@{k} | ms/query | speed vs exact |")
    print("|---|---:|---:|---:|")
    print(f"| exact, one query at a time | 1.000 | {exact_ms:.3f} | 1.0x |")
    print(f"| exact, all queries in one matmul (amortised) | 1.000 | {batched_ms:.3f} | {exact_ms / batched_ms:.1f}x |")
    nprobes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= args.n_lists]
    ours = []
    for nprobe in nprobes:
        found = index.search(queries, k, nprobe)[1]
        recall = float(np.mean([lab.recall_at_k(f, t, k) for f, t in zip(found, truth)]))
        ms = lab.time_per_query(lambda q: index.search(q, k, nprobe), queries)
        ours.append({"nprobe": nprobe, "recall": recall, "ms": ms})
        print(f"| our IVF nprobe={nprobe} ({nprobe / args.n_lists:.0%} of lists) | {recall:.3f} | {ms:.3f} | "
              f"{exact_ms / ms:.1f}x |")

    flat = lab.faiss_flat(corpus)
    flat_ids = lab.faiss_search(flat, queries, k)[1]
    flat_ms = lab.time_per_query(lambda q: lab.faiss_search(flat, q, k), queries)
    print(f"| faiss IndexFlatIP (ids equal to exact: {np.mean(flat_ids == truth):.0%}) | "
          f"{np.mean([lab.recall_at_k(f, t, k) for f, t in zip(flat_ids, truth)]):.3f} | {flat_ms:.3f} | "
          f"{exact_ms / flat_ms:.1f}x |")
    start = time.perf_counter()
    ivf = lab.faiss_ivf(corpus, args.n_lists)
    ivf_build = time.perf_counter() - start
    ivf_rows = lab.faiss_curve(ivf, queries, truth, k, "nprobe", nprobes)
    for r in ivf_rows:
        print(f"| faiss IVFFlat nprobe={r['nprobe']} | {r['recall']:.3f} | {r['ms']:.3f} | "
              f"{exact_ms / r['ms']:.1f}x |")
    start = time.perf_counter()
    hnsw = lab.faiss_hnsw(corpus, m=args.m, ef_construction=args.ef_construction)
    hnsw_build = time.perf_counter() - start
    hnsw_rows = lab.faiss_curve(hnsw, queries, truth, k, "ef_search", [10, 16, 32, 64, 128, 256, 512])
    for r in hnsw_rows:
        print(f"| faiss HNSWFlat efSearch={r['ef_search']} | {r['recall']:.3f} | {r['ms']:.3f} | "
              f"{exact_ms / r['ms']:.1f}x |")
    print(f"builds: our IVF {build:.1f} s, faiss IVFFlat {ivf_build:.1f} s, faiss HNSWFlat "
          f"(m={args.m}, efConstruction={args.ef_construction}) {hnsw_build:.1f} s")
    plot = labkit.output_dir(__file__) / "bench_recall_vs_latency.png"
    lab.plot_curves({"our IVF": ("nprobe", ours), "faiss IVFFlat": ("nprobe", ivf_rows),
                     "faiss HNSWFlat": ("ef_search", hnsw_rows)}, exact_ms, plot,
                    f"{args.n} x 384 vectors; IVF with {args.n_lists} lists")
    print(f"plot: {plot}")

    small = corpus[:args.qdrant_n]
    client = lab.qdrant_client()
    start = time.perf_counter()
    lab.qdrant_index(client, "bench", small, m=16, ef_construct=100)
    upsert = time.perf_counter() - start
    ids = lab.qdrant_search(client, "bench", queries, k)[1]
    agree = float(np.mean(ids == lab.exact_search(queries, small, k)[1]))
    q_ms = lab.time_per_query(lambda q: lab.qdrant_search(client, "bench", q, k), queries)
    e_ms = lab.time_per_query(lambda q: lab.exact_search(q, small, k), queries)
    kind = "server" if "Remote" in type(client._client).__name__ else "local in-process"
    print(f"\nQdrant ({kind}) on {args.qdrant_n} points: upsert {upsert:.1f} s; query {q_ms:.2f} ms "
          f"vs our exact {e_ms:.2f} ms ({q_ms / e_ms:.1f}x); top-{k} ids equal to exact: {agree:.0%}")


if __name__ == "__main__":
    main()
