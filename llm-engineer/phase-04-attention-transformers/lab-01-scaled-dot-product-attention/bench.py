"""Benchmark: the lab's three attention implementations against torch's fused SDPA, side by side.

For each sequence length T it times one causal self-attention call (batch 1, 4 heads, d_k 64, float32) and
measures the peak bytes of tensors it materialises:
- on CPU by accounting every tensor an operator returns while it is alive (a TorchDispatchMode; it sees the
  T×T score and weight matrices of the matmul versions, but not scratch memory inside a fused kernel);
- on CUDA with torch.cuda.max_memory_allocated (everything the caching allocator hands out).
Ratios are against SDPA measured in the same run. The loop version runs only at small T (Python per element).

    python bench.py [--lengths 32 256 1024] [--loops-max 32]
"""
from __future__ import annotations

import argparse
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import labkit
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-04-attention-transformers/lab-01-scaled-dot-product-attention"


class PeakTensorBytes(TorchDispatchMode):
    """Peak of the summed sizes of the tensors that operators allocate while the mode is active."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, ptr: int) -> None:
        self.current -= self.live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            ptr = t.untyped_storage().data_ptr()
            if ptr == 0 or ptr in inputs or ptr in self.live:  # views of inputs and repeats are not new memory
                continue
            self.live[ptr] = t.untyped_storage().nbytes()
            self.current += self.live[ptr]
            self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._free, ptr)
        return out


def peak_bytes(fn, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return peak
    mode = PeakTensorBytes()
    with mode:
        out = fn()
    del out
    return mode.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--loops-max", type=int, default=32, help="largest T the Python-loop version runs at")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-k", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives steadier timings on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    impl = labkit.load_impl(LAB, "solution")
    device = labkit.pick_device()
    torch.manual_seed(0)
    print(f"device={device}, threads={torch.get_num_threads()}, batch 1, heads {args.heads}, d_k {args.d_k}, "
          f"float32, causal")
    header = f"{'T':>5}  {'impl':<7} {'time ms':>9} {'x SDPA':>8} {'peak MiB':>9} {'x SDPA':>8} {'max |diff|':>11}"
    print(header)
    print("-" * len(header))
    for t in args.lengths:
        q, k, v = (torch.randn(1, args.heads, t, args.d_k, device=device) for _ in range(3))
        mask = torch.ones(t, t, dtype=torch.bool, device=device).tril()
        runs = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                "einsum": lambda: impl.attention_einsum(q, k, v, mask)[0],
                "bmm": lambda: impl.attention_bmm(q, k, v, mask)[0]}
        if t <= args.loops_max:
            runs["loops"] = lambda: impl.attention_loops(q, k, v, mask)[0]
        reference = runs["sdpa"]()
        base_time = base_mem = None
        for name, fn in runs.items():
            took = best_seconds(fn, 1 if name == "loops" else args.repeats, device)
            mem = peak_bytes(fn, device)
            diff = (fn() - reference).abs().max().item()
            if name == "sdpa":
                base_time, base_mem = took, max(mem, 1)
            print(f"{t:>5}  {name:<7} {took * 1e3:>9.2f} {took / base_time:>8.1f} {mem / 2**20:>9.2f} "
                  f"{mem / base_mem:>8.1f} {diff:>11.1e}")
        score_mib = args.heads * t * t * 4 / 2**20
        print(f"{'':>5}  (one float32 T x T score matrix for {args.heads} heads = {score_mib:.2f} MiB)")


if __name__ == "__main__":
    main()
