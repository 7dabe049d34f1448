"""Continuous vs static batching (and one-at-a-time) on the same model and the same request mix.

A closed loop of C clients (default 16): each sends a request, waits for its last token, sends the next. The three
servers differ only in the scheduler: continuous admits at every step; static admits a new batch only when the
running one is empty (a batch waits for its longest request; finished requests stop computing, which is
kinder to static than padding them as `generate()` does); one-at-a-time runs a single request. Outputs have
fixed lengths (EOS ignored, as serving benchmarks do) drawn from a long-tailed mix: most short, one in eight long.

Reported: aggregate throughput (generated tokens per wall second, and per CPU second of this process, which
other jobs on a shared machine disturb less; one torch thread, so CPU time is the work done), time to first token (from the client's send)
and inter-token latency, p50/p99, and the ratios against static batching measured in the same run.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-03-continuous-batching-server/bench.py
     (add --model smollm2 for SmolLM2-135M-Instruct; slower on CPU)
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import deque

import torch
from tqdm import tqdm

import labkit

LAB = "llm-engineer/phase-09-inference-optimization/lab-03-continuous-batching-server"


class IgnoreEOS:
    """Every request runs to max_tokens, so both schedulers do exactly the same useful work."""
    eos_id = None

    def decode(self, ids):
        return ""


def workload(n: int, vocab: int, seed: int, long_every: int, long_len: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        prompt = [rng.randrange(vocab) for _ in range(rng.randint(8, 64))]
        out = long_len if rng.randrange(long_every) == 0 else rng.randint(8, 48)
        jobs.append((prompt, out))
    return jobs


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def serve(impl, model, jobs, policy: str, clients: int, max_batch: int, desc: str) -> dict:
    limits = impl.Limits(max_batch=max_batch, token_budget=max(512, max_batch), kv_capacity=1 << 30)
    engine = impl.Engine(model, IgnoreEOS(), limits, policy=policy)
    pending, requests = deque(jobs), []

    def send():
        prompt, out = pending.popleft()
        req = impl.Request(f"r{len(requests)}", prompt, impl.SamplingParams(max_tokens=out, temperature=0))
        engine.add(req)                                   # arrival = now: the client's send time
        requests.append(req)

    bar = tqdm(total=sum(out for _, out in jobs), desc=desc, leave=False, unit="tok")
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(min(clients, len(pending))):
        send()
    while engine.has_work:
        events = engine.step()
        bar.update(len(events))
        for event in events:
            if event.finish_reason is not None and pending:
                send()                                    # that client's next request
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    bar.close()
    tokens = sum(len(r.token_times) for r in requests)
    ttft = [r.first_token_at - r.arrival for r in requests]
    itl = [b - a for r in requests for a, b in zip(r.token_times, r.token_times[1:])]
    return {"tok/s": tokens / wall, "tok/cpu-s": tokens / cpu, "tokens": tokens, "wall": wall, "steps": engine.steps,
            "ttft50": percentile(ttft, 50), "ttft99": percentile(ttft, 99),
            "itl50": percentile(itl, 50), "itl99": percentile(itl, 99),
            "outputs": [r.output_ids for r in requests]}


def build_model(impl, name: str):
    if name == "smollm2":
        model, _ = impl.smollm2_engine_parts()
        return model
    torch.manual_seed(0)
    config = impl.kvlab.GPTConfig(vocab_size=8192, block_size=512, n_layer=4, n_head=8, n_kv_head=2, n_embd=256,
                                  ffn_hidden=768)
    return impl.kvlab.GPT(config).eval().to(labkit.pick_device())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["random", "smollm2"], default="random",
                        help="random: a 4-layer d=256 Llama-layout GPT (7M params); smollm2: SmolLM2-135M-Instruct")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--long-every", type=int, default=8, help="one request in N is long")
    parser.add_argument("--long-len", type=int, default=192)
    parser.add_argument("--no-sequential", action="store_true", help="skip the one-at-a-time baseline")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    impl = labkit.load_impl(LAB, "solution")
    model = build_model(impl, args.model)
    params = sum(p.numel() for p in model.parameters())
    jobs = workload(args.requests, model.config.vocab_size, 0, args.long_every, args.long_len)
    outs = [n for _, n in jobs]
    print(f"model: {args.model} ({params / 1e6:.1f}M params) on {next(model.parameters()).device}, torch threads {torch.get_num_threads()}; "
          f"{len(jobs)} requests, prompts 8-64 tokens, outputs {min(outs)}-{max(outs)} tokens "
          f"(mean {statistics.mean(outs):.0f}, {sum(o == args.long_len for o in outs)} long), {args.clients} clients")
    serve(impl, model, jobs[:4], "continuous", 4, 4, "warm-up")

    runs = {"continuous": serve(impl, model, jobs, "continuous", args.clients, args.clients, "continuous"),
            "static": serve(impl, model, jobs, "static", args.clients, args.clients, "static")}
    if not args.no_sequential:
        runs["one at a time"] = serve(impl, model, jobs, "continuous", args.clients, 1, "one at a time")

    head = (f"{'scheduler':>14} | {'tok/s':>7} | {'steps':>5} | {'tok/step':>8} | {'TTFT p50':>9} | {'TTFT p99':>9} | "
            f"{'ITL p50':>8} | {'ITL p99':>8} | {'tok/s vs static':>15} | {'tok/CPU-s':>9} | {'vs static':>9}")
    print(head + "\n" + "-" * len(head))
    base, cpu_base = runs["static"]["tok/s"], runs["static"]["tok/cpu-s"]
    for name, r in runs.items():
        print(f"{name:>14} | {r['tok/s']:7.1f} | {r['steps']:5d} | {r['tokens'] / r['steps']:8.1f} | {r['ttft50'] * 1e3:7.0f}ms | "
              f"{r['ttft99'] * 1e3:7.0f}ms | {r['itl50'] * 1e3:6.1f}ms | {r['itl99'] * 1e3:6.1f}ms | "
              f"{r['tok/s'] / base:14.2f}x | {r['tok/cpu-s']:9.1f} | {r['tok/cpu-s'] / cpu_base:8.2f}x")
    ref = runs["continuous"]["outputs"]
    same = {k: sum(a == b for a, b in zip(r["outputs"], ref)) for k, r in runs.items() if k != "continuous"}
    c, s = runs["continuous"], runs["static"]
    print(f"\ncontinuous / static: throughput {c['tok/s'] / s['tok/s']:.2f}x, TTFT p50 {s['ttft50'] / c['ttft50']:.2f}x "
          f"lower, ITL p50 {c['itl50'] / s['itl50']:.2f}x (a fuller batch makes each step slower)")
    print(f"continuous / static per CPU-second (robust to other jobs on a shared machine): "
          f"{c['tok/cpu-s'] / s['tok/cpu-s']:.2f}x")
    print(f"model calls (steps) static / continuous: {s['steps'] / c['steps']:.2f}x: the throughput ratio where a step "
          f"costs about the same at any batch size (a GPU far from its compute limit)")
    if "one at a time" in runs:
        print(f"continuous / one at a time: throughput {c['tok/s'] / runs['one at a time']['tok/s']:.2f}x")
    print("requests with the same greedy tokens as under continuous batching (float32: a near-tie can flip): " +
          ", ".join(f"{k} {n}/{len(ref)}" for k, n in same.items()))


if __name__ == "__main__":
    labkit.run(main)
