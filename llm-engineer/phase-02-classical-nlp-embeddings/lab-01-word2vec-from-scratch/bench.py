"""Training throughput of skip-gram with negative sampling: NumPy (hand-written gradients, SGD) vs PyTorch
(autograd, SparseAdam), on the same stream of (centre, context, negatives) batches, measured in one run.

    python bench.py            # pairs per second for a few batch sizes, with the PyTorch / NumPy ratio
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import labkit

lab = labkit.load_impl("llm-engineer/phase-02-classical-nlp-embeddings/lab-01-word2vec-from-scratch", "solution")


def pairs_per_second(step, batches, repeats: int = 3) -> float:
    step(*batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            step(*batch)
        best = min(best, time.perf_counter() - start)
    return sum(len(b[0]) for b in batches) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=40_000, help="pairs per timed pass")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    counts = np.sort(rng.zipf(1.3, size=args.vocab))[::-1].astype(np.int64)  # a Zipf-like vocabulary
    table = lab.noise_table(counts)
    print(f"vocab {args.vocab}, dim {args.dim}, K={args.negatives}, {args.pairs:,} pairs per pass, "
          f"torch threads {torch.get_num_threads()}, best of 3 passes")
    print(f"{'batch':>6}  {'numpy pairs/s':>14}  {'torch pairs/s':>14}  {'torch/numpy':>11}")
    for batch_size in (64, 256, 1024):
        n = args.pairs // batch_size
        batches = [(rng.integers(0, args.vocab, batch_size), rng.integers(0, args.vocab, batch_size),
                    table[rng.integers(0, len(table), (batch_size, args.negatives))]) for _ in range(n)]

        w_in, w_out = lab.init_numpy(args.vocab, args.dim, rng)
        w_out += rng.normal(scale=0.01, size=w_out.shape)
        numpy_rate = pairs_per_second(lambda c, o, k: lab.numpy_sgd_step(w_in, w_out, c, o, k, lr=0.025), batches)

        model = lab.SkipGramNS(args.vocab, args.dim)
        optimiser = torch.optim.SparseAdam(model.parameters(), lr=0.01)
        tensors = [tuple(torch.as_tensor(a) for a in b) for b in batches]

        def torch_step(c, o, k):
            optimiser.zero_grad()
            model(c, o, k).backward()
            optimiser.step()

        torch_rate = pairs_per_second(torch_step, tensors)
        print(f"{batch_size:>6}  {numpy_rate:>14,.0f}  {torch_rate:>14,.0f}  {torch_rate / numpy_rate:>10.2f}x")


if __name__ == "__main__":
    main()
