"""Benchmark: the lab's fused MultiHeadAttention, its per-head loop and torch.nn.MultiheadAttention, side by side.

Self-attention forward passes, float32, eval mode under no_grad (where torch takes its fused "fast path"),
and with autograd on (training mode, where torch runs its composite path). The same weights are copied into
all three modules. Extra rows show the lab's GQA and MQA variants and the KV-cache bytes they keep per layer.
Ratios are "x torch": time of the row / time of torch's module in the same setting; the summary gives
loop / fused for each setting. A plot of time against T is saved next to the lab's other outputs.

    python bench.py [--lengths 32 128 256] [--d-model 256] [--heads 8]
"""
from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import labkit  # noqa: E402

LAB = "llm-engineer/phase-04-attention-transformers/lab-02-multi-head-attention"
MODES = ("eval, no_grad", "train, backward")


def best_side_by_side(fns: dict, repeats: int, device) -> dict:
    """Fastest of `repeats` timed calls of each function, taking turns (a, b, c, a, b, c, ...) so that a burst of
    load from other jobs on the machine hits every contender alike. One warm-up call each first."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def plot(times: dict, lengths: list[int], path) -> None:
    """Milliseconds against T per mode (log scale) for torch, the fused module and the per-head loop, and a third
    panel with the loop / fused ratio."""
    fig, axes = plt.subplots(1, len(MODES) + 1, figsize=(15, 4.2), squeeze=False)
    for ax, mode in zip(axes[0], MODES):
        for name, style in (("torch MHA", "k--"), ("ours fused MHA", "o-"), ("ours per-head loop", "s-")):
            ax.plot(lengths, [times[t, mode, name] * 1e3 for t in lengths], style, label=name)
        ax.set(xlabel="sequence length T", ylabel="ms (best of runs)", yscale="log", title=mode)
        ax.legend(fontsize=8)
    ratio_ax = axes[0][-1]
    for mode in MODES:
        ratio_ax.plot(lengths, [times[t, mode, "ours per-head loop"] / times[t, mode, "ours fused MHA"]
                                for t in lengths], "o-", label=mode)
    ratio_ax.axhline(1.0, color="0.5", lw=0.8)
    ratio_ax.set(xlabel="sequence length T", ylabel="loop time / fused time", title="per-head loop / fused")
    ratio_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives steadier timings on a shared machine)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    impl = labkit.load_impl(LAB, "solution")
    device = labkit.pick_device()
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(args.d_model, args.heads, batch_first=True).to(device)
    ours = impl.copy_from_torch(impl.MultiHeadAttention(args.d_model, args.heads).to(device), theirs)
    loop = impl.copy_from_fused(impl.PerHeadAttention(args.d_model, args.heads).to(device), ours)
    variants = {f"ours GQA kv={max(args.heads // 4, 1)}": impl.MultiHeadAttention(args.d_model, args.heads,
                                                                                  max(args.heads // 4, 1)).to(device),
                "ours MQA kv=1": impl.MultiHeadAttention(args.d_model, args.heads, 1).to(device)}
    d_head = args.d_model // args.heads
    print(f"device={device}, threads={torch.get_num_threads()}, batch {args.batch}, d_model {args.d_model}, "
          f"{args.heads} heads, float32, causal self-attention")
    header = f"{'T':>5}  {'module':<19} {'mode':<16} {'time ms':>9} {'x torch':>8} {'KV KiB/layer':>13}"
    print(header)
    print("-" * len(header))
    times = {}
    for t in args.lengths:
        x = torch.randn(args.batch, t, args.d_model, device=device)
        causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
        for mode in MODES:
            training = mode.startswith("train")
            for m in (theirs, ours, loop, *variants.values()):
                m.train(training)

            def run_torch():
                out, _ = theirs(x, x, x, attn_mask=~causal, need_weights=False, is_causal=True)
                return out

            def run(m):
                return lambda: m(x, causal=True)

            rows = [("torch MHA", run_torch, args.heads), ("ours fused MHA", run(ours), args.heads),
                    ("ours per-head loop", run(loop), args.heads)]
            rows += [(name, run(m), m.n_kv_heads) for name, m in variants.items()]
            if training:
                best = best_side_by_side({name: (lambda fn=fn: fn().sum().backward()) for name, fn, _ in rows},
                                         args.repeats, device)
            else:
                with torch.no_grad():
                    best = best_side_by_side({name: fn for name, fn, _ in rows}, args.repeats, device)
            for name, _, n_kv in rows:
                took = times[t, mode, name] = best[name]
                kv_kib = impl.kv_cache_bytes(args.batch, t, 1, n_kv, d_head, 4) / 1024
                print(f"{t:>5}  {name:<19} {mode:<16} {took * 1e3:>9.2f} {took / times[t, mode, 'torch MHA']:>8.2f} "
                      f"{kv_kib:>13.0f}")

    print(f"\nper-head loop / fused ({args.heads} heads: {3 * args.heads} Linear({args.d_model}, {d_head}) and a "
          f"Python loop, against 3 Linear({args.d_model}, {args.d_model}) and one batched attention):")
    for mode in MODES:
        print(f"  {mode:<16} " + "  ".join(
            f"T={t}: {times[t, mode, 'ours per-head loop'] / times[t, mode, 'ours fused MHA']:.2f}x"
            for t in args.lengths))
    path = labkit.output_dir(__file__) / "bench_loop_vs_fused.png"
    plot(times, args.lengths, path)
    print(f"plot: {path}")

    with torch.no_grad():
        x = torch.randn(2, 16, args.d_model, device=device)
        theirs.eval(), ours.eval(), loop.eval()
        gap = (ours(x) - theirs(x, x, x, need_weights=False)[0]).abs().max().item()
        loop_gap = (loop(x) - ours(x)).abs().max().item()
    print(f"\nparity check: max |ours - torch| = {gap:.1e}, max |loop - fused| = {loop_gap:.1e} (float32)")


if __name__ == "__main__":
    main()
