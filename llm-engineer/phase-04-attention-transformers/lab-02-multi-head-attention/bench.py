"""Benchmark: the lab's MultiHeadAttention against torch.nn.MultiheadAttention, side by side.

Self-attention forward passes, float32, eval mode under no_grad (where torch takes its fused "fast path"),
and with autograd on (training mode, where torch runs its composite path). The same weights are copied into
both modules. Extra rows show the lab's GQA and MQA variants and the KV-cache bytes they keep per layer.
Ratios are "x torch": time of the row / time of torch's module in the same setting.

    python bench.py [--lengths 128 256] [--d-model 256] [--heads 8]
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

import labkit
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-04-attention-transformers/lab-02-multi-head-attention"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives steadier timings on a shared machine)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    impl = labkit.load_impl(LAB, "solution")
    device = labkit.pick_device()
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(args.d_model, args.heads, batch_first=True).to(device)
    ours = impl.copy_from_torch(impl.MultiHeadAttention(args.d_model, args.heads).to(device), theirs)
    variants = {f"ours GQA kv={args.heads // 4}": impl.MultiHeadAttention(args.d_model, args.heads,
                                                                          max(args.heads // 4, 1)).to(device),
                "ours MQA kv=1": impl.MultiHeadAttention(args.d_model, args.heads, 1).to(device)}
    d_head = args.d_model // args.heads
    print(f"device={device}, threads={torch.get_num_threads()}, batch {args.batch}, d_model {args.d_model}, "
          f"{args.heads} heads, float32, causal self-attention")
    header = f"{'T':>5}  {'module':<16} {'mode':<14} {'time ms':>9} {'x torch':>8} {'KV KiB/layer':>13}"
    print(header)
    print("-" * len(header))
    for t in args.lengths:
        x = torch.randn(args.batch, t, args.d_model, device=device)
        causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
        for mode in ("eval, no_grad", "train, backward"):
            training = mode.startswith("train")
            for m in (theirs, ours, *variants.values()):
                m.train(training)

            def run_torch():
                out, _ = theirs(x, x, x, attn_mask=~causal, need_weights=False, is_causal=True)
                return out

            def run(m):
                return lambda: m(x, causal=True)

            rows = [("torch MHA", run_torch), ("ours MHA", run(ours))]
            rows += [(name, run(m)) for name, m in variants.items()]
            base = None
            for name, fn in rows:
                if training:
                    step = lambda fn=fn: fn().sum().backward()  # noqa: E731
                    took = best_seconds(step, args.repeats, device)
                else:
                    with torch.no_grad():
                        took = best_seconds(fn, args.repeats, device)
                base = took if base is None else base
                n_kv = {"torch MHA": args.heads, "ours MHA": args.heads}.get(name) or \
                    (variants[name].n_kv_heads if name in variants else args.heads)
                kv_kib = impl.kv_cache_bytes(args.batch, t, 1, n_kv, d_head, 4) / 1024
                print(f"{t:>5}  {name:<16} {mode:<14} {took * 1e3:>9.2f} {took / base:>8.2f} {kv_kib:>13.0f}")
    with torch.no_grad():
        x = torch.randn(2, 16, args.d_model, device=device)
        theirs.eval(), ours.eval()
        gap = (ours(x) - theirs(x, x, x, need_weights=False)[0]).abs().max().item()
    print(f"\nparity check: max |ours - torch| = {gap:.1e} (float32)")


if __name__ == "__main__":
    main()
