"""Optimizer step time and state memory, side by side: torch.optim.Adam (fp32 moments) as the baseline, our fp32
and 8-bit Adam, bitsandbytes' Adam8bit, and our paged 8-bit Adam with a resident budget of a quarter of its state.

Every optimizer steps the same parameter set (a few large matrices and small vectors) with the same gradients;
step time is the median over repeats of the CPU time of this process (one torch thread, so CPU time is the work
done, and other jobs on a shared machine disturb it far less than wall time), measured in one run and reported as
a ratio to torch.optim.Adam; wall time is printed too. Memory
is the bytes held by state tensors (tensor nbytes), resident bytes for the paged optimizer, and the growth of the
process RSS across the first step (which allocates the state); each optimizer runs in a fresh subprocess so that
memory freed by one cannot be reused by the next.
Run: .venv/bin/python llm-engineer/phase-10-distributed-production/lab-05-paged-optimizer/bench.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from tqdm import tqdm

import labkit

LAB = "llm-engineer/phase-10-distributed-production/lab-05-paged-optimizer"


def make_params(n_big: int, side: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(side, side)] * n_big + [(side,)] * n_big
    return [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in shapes]


def median_cpu_and_wall_ms(fn, repeats: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return 1000 * statistics.median(cpu), 1000 * statistics.median(wall)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="each big matrix is side x side")
    parser.add_argument("--matrices", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", choices=["torch", "fp32", "8bit", "bnb8", "paged8"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    impl = labkit.load_impl(LAB, "solution")
    n_params = sum(p.numel() for p in make_params(args.matrices, args.side))
    state_8bit = sum(impl.expected_state_bytes(p.numel(), "8bit") for p in make_params(args.matrices, args.side))
    kinds = ("torch", "fp32", "8bit", "bnb8", "paged8")
    if args.one:
        params = make_params(args.matrices, args.side)
        grads = [torch.randn_like(p) * 1e-3 for p in params]
        budget = max(state_8bit // 4, 2 * args.side ** 2 + 8192)
        opt = impl.make_optimizer(args.one, params, lr=1e-3, budget_bytes=budget)

        def step():
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()

        rss_before = impl.rss_bytes()
        step()                                                           # allocates the state
        rss = impl.rss_bytes() - rss_before
        ms, wall_ms = median_cpu_and_wall_ms(step, args.repeats)
        if args.one == "paged8":
            held, note = opt.store.peak_resident_bytes, f"peak resident, budget {opt.store.budget_bytes:,} B"
            opt.close()
        else:
            held, note = impl.measured_state_bytes(opt), "state tensors"
        print("RESULT " + json.dumps([ms, wall_ms, held, rss, note]))
        return
    results = {}
    for kind in tqdm(kinds, desc="optimizers (one subprocess each)"):
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--side", str(args.side), "--matrices",
                              str(args.matrices), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, timeout=1800)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"bench for {kind} failed: {out.stderr.strip().splitlines()[-1:]}")
        results[kind] = tuple(json.loads(lines[-1][len("RESULT "):]))
    base_ms, base_bytes = results["torch"][0], results["torch"][2]
    print(f"\n{n_params:,} parameters ({args.matrices} x {args.side}x{args.side} + vectors), one thread")
    print(f"{'optimizer':<8} {'CPU ms':>8} {'x Adam':>7} {'wall ms':>8} {'state B':>12} {'B/param':>8} {'x Adam':>7} "
          f"{'RSS growth':>11}")
    for kind, (ms, wall_ms, held, rss, note) in results.items():
        print(f"{kind:<8} {ms:>8.1f} {ms / base_ms:>7.2f} {wall_ms:>8.1f} {held:>12,} {held / n_params:>8.3f} "
              f"{held / base_bytes:>7.3f} {rss / 2**20:>9.1f} MB  ({note})")
    print("CPU ms: median CPU time of one step (one torch thread); x Adam: ratio to torch.optim.Adam in this run")


if __name__ == "__main__":
    labkit.run(main)
