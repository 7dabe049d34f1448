"""RAG end-to-end latency: time to first token (TTFT) and tokens/s through the real service (uvicorn on
loopback, SSE, retrieval, SmolLM2), side by side with the same generation called directly (no HTTP, no
retrieval), plus retrieval alone and 4 concurrent requests.
"""
from __future__ import annotations

import statistics
import threading
import time

import httpx

import labkit
from labkit import assets

lab = labkit.load_impl("llm-engineer/phase-07-retrieval-rag-agents/lab-02-rag-pipeline", "solution")
QUESTIONS = ["How long is parental leave?", "What is the daily meal allowance when travelling?",
             "How quickly must the on-call primary acknowledge a page?", "How big is the yearly learning budget?"]
MAX_NEW = 48


def main():
    embedder, client = lab.load_embedder(), lab.connect()
    lab.ingest(client, "docs", embedder, lab.read_folder(lab.DOCS))
    model, tokenizer = assets.smollm2()
    generator = lab.SmolLM2Generator(model, tokenizer)
    n_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731

    retrieval_ms = []
    for q in QUESTIONS:
        start = time.perf_counter()
        lab.retrieve(client, "docs", embedder, q, k=3)
        retrieval_ms.append(1000 * (time.perf_counter() - start))

    direct = []   # baseline: the same prompt straight into the generator
    for q in QUESTIONS:
        messages = lab.build_messages(q, lab.retrieve(client, "docs", embedder, q, k=3))
        start, first, text = time.perf_counter(), None, ""
        for piece in generator.stream(messages, MAX_NEW):
            first = first or time.perf_counter()
            text += piece
        end = time.perf_counter()
        direct.append((first - start, n_tokens(text) / (end - start), n_tokens(text)))

    app = lab.create_app(client, embedder, generator, k=3, max_new_tokens=MAX_NEW)
    served = []
    with lab.RunningServer(app) as server:
        for q in QUESTIONS:
            r = lab.ask(server.url, q, echo=False)
            served.append((r["ttft_s"], n_tokens(r["answer"]) / r["total_s"], n_tokens(r["answer"])))
        results, threads = [], []
        start = time.perf_counter()
        for q in QUESTIONS:
            threads.append(threading.Thread(target=lambda q=q: results.append(lab.ask(server.url, q, echo=False))))
            threads[-1].start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    concurrent_tokens = sum(n_tokens(r["answer"]) for r in results)

    def row(name, rows):
        ttft = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        return name, ttft, rate, statistics.mean(r[2] for r in rows)

    table = [row("direct generate (no HTTP, retrieval done before)", direct),
             row("service: POST /query over SSE (retrieval + generate)", served)]
    print(f"SmolLM2-135M-Instruct, greedy, up to {MAX_NEW} new tokens, {len(QUESTIONS)} questions, k=3 chunks")
    print(f"retrieval alone (embed query + Qdrant local): median {statistics.median(retrieval_ms):.1f} ms")
    print("| path | median TTFT (s) | median tokens/s (end to end) | mean tokens |")
    print("|---|---:|---:|---:|")
    for name, ttft, rate, toks in table:
        print(f"| {name} | {ttft:.2f} | {rate:.1f} | {toks:.0f} |")
    print(f"service overhead on TTFT: {table[1][1] / table[0][1]:.2f}x of direct")
    print(f"4 concurrent requests: all {len(results)} completed in {wall:.1f} s, {concurrent_tokens} tokens, "
          f"{concurrent_tokens / wall:.1f} tokens/s aggregate (one model, requests served one at a time), "
          f"TTFT {min(r['ttft_s'] for r in results):.2f}..{max(r['ttft_s'] for r in results):.2f} s")


if __name__ == "__main__":
    main()
