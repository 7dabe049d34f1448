"""vLLM vs plain generate() vs lab 03's continuous-batching server, and vLLM's engine arguments, in one run.

Same model (SmolLM2-135M-Instruct, float32), same seeded workload, same client (this lab's solution.py), side by
side. Part 1: output throughput and latency percentiles of each server at a few Poisson request rates. Part 2:
vLLM with prefix caching on and off, and with KV blocks of 32 and 128 tokens, on a workload whose prompts share
a long prefix (a system prompt): TTFT and the prefix-cache hit counter.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-04-vllm-deep-dive/bench.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time

import torch

import labkit
from labkit import assets

LAB = "llm-engineer/phase-09-inference-optimization/lab-04-vllm-deep-dive"


def lab03_server(impl):
    """lab 03's server around the same SmolLM2 weights, or (None, why not)."""
    try:
        lab3 = labkit.reuse("lab-03-continuous-batching-server")
        model, tokenizer = lab3.smollm2_engine_parts()
        app = lab3.build_app(model, tokenizer, model_name="model", limits=lab3.Limits(max_batch=16, token_budget=512))
        return lab3.RunningServer(app), None
    except Exception as err:                      # not there yet, or its API changed: say so in the table
        return None, f"lab 03 not available here ({type(err).__name__}: {str(err)[:120]})"


def sweep_rows(impl, name, url, workload, rates, concurrency):
    impl.benchmark(url, "model", workload[:1], extra={"ignore_eos": True})                    # warm-up
    rows = []
    for rate in rates:
        records, duration = asyncio.run(impl.run_benchmark(url, "model", workload, rate, concurrency, timeout=1800,
                                                           extra={"ignore_eos": True}))
        summary = impl.summarize(records, duration)
        rows.append((name, rate, summary))
        errors = [r.error for r in records if r.error]
        print(impl.format_row(f"{name} @ {rate:g}/s", summary) + (f"  first error: {errors[0]}" if errors else ""),
              flush=True)
    return rows


def vllm(impl, out, tag, **engine):
    port = impl.free_port()
    argv = impl.vllm_command(str(assets.smollm2_path()), port, **engine)
    return impl.ServerProcess(argv, port, out / f"vllm-{tag}.log", env=impl.vllm_env(), startup_timeout=900)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-words", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--rates", type=float, nargs="+", default=[2.0, math.inf])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="part 1 only, and no lab 03")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))       # so `with` blocks stop the servers they started
    impl = labkit.load_impl(LAB, "solution")
    out = labkit.output_dir(__file__)
    labkit.seed_everything(0)
    torch.set_num_threads(1)      # in-process servers: one thread each is steadier (and faster) on a shared CPU
    workload = impl.make_workload(args.requests, args.prompt_words, args.max_tokens, seed=0)
    print(f"SmolLM2-135M-Instruct float32; {args.requests} requests x {args.prompt_words} words -> {args.max_tokens} "
          f"tokens; rates {args.rates} req/s (inf = all at once); at most {args.concurrency} in flight; "
          f"torch threads of the in-process servers {torch.get_num_threads()}")
    print(impl.HEADER)
    rows, notes = [], []
    model, tokenizer = assets.smollm2()
    with torch.inference_mode(), impl.ThreadServer(impl.generate_app(model, tokenizer)) as server:
        rows += sweep_rows(impl, "generate()", server.url, workload, args.rates, args.concurrency)
    del model
    server, why = (None, "lab 03 skipped (--quick)") if args.quick else lab03_server(impl)
    if server is not None:
        with server:
            rows += sweep_rows(impl, "lab 03 server", server.url, workload, args.rates, args.concurrency)
    else:
        notes.append(why)
        print(f"{'lab 03 server':<22} -- {why}")
    why = impl.vllm_available()
    if why:
        print(f"vLLM: {why}")
        return
    with vllm(impl, out, "main", block_size=32, prefix_caching=True) as server:
        print(f"(vLLM server healthy after {server.startup_seconds:.0f} s)")
        rows += sweep_rows(impl, "vLLM", server.url, workload, args.rates, args.concurrency)
    base = {rate: s.output_throughput for name, rate, s in rows if name == "generate()"}
    print("\noutput throughput relative to generate() at the same rate:")
    for name, rate, s in rows:
        print(f"  {name:<14} @ {rate:g}/s: {s.output_throughput / base[rate]:.2f}x")
    for note in notes:
        print(f"  note: {note}")
    if args.quick:
        return

    print("\nvLLM engine arguments, on 8 prompts sharing a 200-word prefix (+16 words each, 4 tokens out, "
          "one at a time so every request can reuse the last one's blocks):")
    shared = impl.make_workload(8, 16, 4, shared_prefix_words=200, seed=1)
    print(f"{'config':<34} {'start s':>7} {'TTFT p50 ms':>11} {'E2E p50 ms':>10} {'cached tokens':>13}")
    for tag, engine in [("prefix caching on, block 32", dict(block_size=32, prefix_caching=True)),
                        ("prefix caching off, block 32", dict(block_size=32, prefix_caching=False)),
                        ("prefix caching on, block 128", dict(block_size=128, prefix_caching=True))]:
        with vllm(impl, out, tag.replace(" ", "-").replace(",", ""), **engine) as server:
            impl.benchmark(server.url, "model", impl.make_workload(2, 8, 2, seed=99), max_concurrency=1)
            hits = impl.counter_total(server.url, "vllm:prefix_cache_hits")
            started = time.perf_counter()
            s = impl.benchmark(server.url, "model", shared, max_concurrency=1)
            hits = impl.counter_total(server.url, "vllm:prefix_cache_hits") - hits
            print(f"{tag:<34} {server.startup_seconds:>7.0f} {1e3 * s.ttft['p50']:>11.1f} "
                  f"{1e3 * s.e2e['p50']:>10.1f} {hits:>13.0f}   ({time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    labkit.run(main)
