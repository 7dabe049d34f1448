"""Matmul throughput: this lab's `time_matmul` (torch) on the CPU and on CUDA when present, against NumPy's
matmul on the same CPU as the baseline, in the same run.

    python bench.py [--sizes 256 512 1024 2048] [--repeats 5]

GFLOP/s = 2 n^3 / seconds / 1e9 for an (n x n) @ (n x n) float32 product.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import labkit

lab = labkit.load_impl("llm-engineer/phase-01-foundations-text/lab-04-pytorch-essentials", "solution")


def numpy_matmul_seconds(n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", CUDA: {torch.cuda.get_device_name(0)}" if cuda else ", no CUDA device"))
    header = f"{'n':>6} | {'numpy CPU':>10} | {'torch CPU':>10} {'vs numpy':>9}"
    if cuda:
        header += f" | {'torch CUDA':>11} {'vs CPU':>8}"
    print(header + "   (GFLOP/s, float32)")
    for n in args.sizes:
        np_g = lab.matmul_gflops(n, numpy_matmul_seconds(n, args.repeats))
        cpu_g = lab.matmul_gflops(n, lab.time_matmul(n, "cpu", repeats=args.repeats))
        row = f"{n:6d} | {np_g:10.1f} | {cpu_g:10.1f} {cpu_g / np_g:8.2f}x"
        if cuda:
            gpu_g = lab.matmul_gflops(n, lab.time_matmul(n, "cuda", repeats=max(20, args.repeats)))
            row += f" | {gpu_g:11.0f} {gpu_g / cpu_g:7.0f}x"
        print(row)


if __name__ == "__main__":
    main()
