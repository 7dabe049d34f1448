"""Speed of the lab's Triton kernels against torch eager and torch.compile, with a roofline plot (CUDA).

On a GPU: each kernel at a few sizes in fp16, timed with triton.testing.do_bench (median of many runs, L2 flushed
between them) side by side with torch eager and torch.compile on the same inputs; the table gives ms, achieved
GB/s and TFLOP/s, and the ratio torch eager time / Triton time (> 1 means Triton is faster). The roofline plot
puts every point under the device's roofs: memory bandwidth x arithmetic intensity, and peak FLOP/s.
The peaks are the datasheet figures where the GPU is in the small table below, else the bandwidth computed from
the memory clock and bus width and a measured cuBLAS fp16 matmul as the compute ceiling.

Without a GPU: kernels run in Triton's interpreter, so only correctness and interpreter time can be measured;
the script prints that table and says GPU numbers need a GPU.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-07-triton-kernels/bench.py
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import labkit

LAB = "llm-engineer/phase-09-inference-optimization/lab-07-triton-kernels"

# dense fp16/bf16 tensor-core peak (FLOP/s) and memory bandwidth (B/s), from the vendors' datasheets
DATASHEET = {
    "H200": (989e12, 4.8e12), "H100 80GB HBM3": (989e12, 3.35e12), "H100 PCIe": (756e12, 2.0e12),
    "A100-SXM4-80GB": (312e12, 2.04e12), "A100-SXM4-40GB": (312e12, 1.56e12), "A100-PCIE-40GB": (312e12, 1.56e12),
    "L4": (121e12, 0.3e12), "Tesla T4": (65e12, 0.32e12), "A10G": (125e12, 0.6e12),
    "RTX 4090": (165e12, 1.01e12),
}


def cpu_table(impl) -> None:
    print("no CUDA device: the kernels run in Triton's interpreter (NumPy, one program after another).")
    print("These times measure the interpreter, not a GPU; speed, GB/s, TFLOP/s and the roofline need a GPU.")
    rows = impl.correctness_table(torch.device("cpu"))
    print(f"{'kernel':<24} {'shape':<22} {'max |ours - torch|':>18} {'interpreter':>12}")
    for r in rows:
        print(f"{r['kernel']:<24} {r['shape']:<22} {r['max_abs_err']:>18.2e} {r['seconds'] * 1e3:>9.0f} ms")


def device_peaks() -> tuple[float, float, str]:
    import triton.testing

    props = torch.cuda.get_device_properties(0)
    for key, (flops, bw) in DATASHEET.items():
        if key in props.name:
            return flops, bw, f"datasheet ({key})"
    bw = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8   # double data rate, kHz, bits
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    ms = triton.testing.do_bench(lambda: a @ a)
    return 2 * 8192 ** 3 / (ms * 1e-3), bw, "measured cuBLAS matmul / memory clock x bus width"


def cases(impl, dtype):
    """(kernel, size label, triton fn, torch fn, bytes moved, FLOPs) for each benchmark point."""
    dev, out = "cuda", []
    el = torch.finfo(dtype).bits // 8
    for n in (1 << 20, 1 << 24, 1 << 27):
        x, y = torch.randn(n, device=dev, dtype=dtype), torch.randn(n, device=dev, dtype=dtype)
        out.append(("vector add", f"n={n:,}", lambda x=x, y=y: impl.vector_add(x, y),
                    lambda x, y: x + y, (x, y), 3 * n * el, n))
    for rows, cols in ((4096, 1024), (4096, 4096), (16384, 8192)):
        x = torch.randn(rows, cols, device=dev, dtype=dtype)
        out.append(("softmax", f"{rows}x{cols}", lambda x=x: impl.softmax(x),
                    lambda x: torch.softmax(x, dim=1), (x,), 2 * rows * cols * el, 5 * rows * cols))
        w, b = torch.randn(cols, device=dev, dtype=dtype), torch.randn(cols, device=dev, dtype=dtype)
        out.append(("layernorm", f"{rows}x{cols}", lambda x=x, w=w, b=b: impl.layer_norm(x, w, b)[0],
                    lambda x, w, b: F.layer_norm(x, (x.shape[1],), w, b), (x, w, b),
                    2 * rows * cols * el, 8 * rows * cols))
    for m in (1024, 2048, 4096):
        a, b = torch.randn(m, m, device=dev, dtype=dtype), torch.randn(m, m, device=dev, dtype=dtype)
        out.append(("matmul", f"{m}^3", lambda a=a, b=b: impl.matmul(a, b, block_m=128, block_n=128, block_k=32),
                    lambda a, b: a @ b, (a, b), 3 * m * m * el, 2 * m ** 3))
    for seq in (1024, 4096):
        for causal in (False, True):
            q, k, v = (torch.randn(4, 16, seq, 64, device=dev, dtype=dtype) for _ in range(3))
            flops = 4 * 4 * 16 * seq * seq * 64 // (2 if causal else 1)
            out.append((f"attention{' causal' if causal else ''}", f"B4 H16 L{seq} d64",
                        lambda q=q, k=k, v=v, c=causal: impl.flash_attention(q, k, v, causal=c, block_m=64,
                                                                             block_n=64),
                        lambda q, k, v, c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c),
                        (q, k, v), 4 * 4 * 16 * seq * 64 * el, flops))
    return out


def gpu_bench(impl, dtype, plot: bool) -> None:
    import triton.testing

    peak_flops, peak_bw, source = device_peaks()
    print(f"{torch.cuda.get_device_name(0)}: peak {peak_flops / 1e12:.0f} TFLOP/s, {peak_bw / 1e9:.0f} GB/s "
          f"({source}); dtype {dtype}")
    header = (f"{'kernel':<18} {'size':<16} {'triton ms':>9} {'eager ms':>9} {'compile ms':>10} "
              f"{'triton GB/s':>11} {'TFLOP/s':>8} {'eager/triton':>12} {'compile/triton':>14}")
    print(header)
    print("-" * len(header))
    points = []
    for name, size, ours, ref, args, nbytes, flops in cases(impl, dtype):
        got, want = ours(), ref(*args)
        err = (got.float() - want.float()).abs().max().item()
        compiled = torch.compile(ref)
        compiled(*args)  # compile outside the timing
        t_ours = triton.testing.do_bench(ours)
        t_eager = triton.testing.do_bench(lambda: ref(*args))
        t_comp = triton.testing.do_bench(lambda: compiled(*args))
        gbs, tfs = nbytes / (t_ours * 1e-3) / 1e9, flops / (t_ours * 1e-3) / 1e12
        print(f"{name:<18} {size:<16} {t_ours:>9.3f} {t_eager:>9.3f} {t_comp:>10.3f} {gbs:>11.0f} {tfs:>8.1f} "
              f"{t_eager / t_ours:>11.2f}x {t_comp / t_ours:>13.2f}x  (max err {err:.1e})")
        for label, t in (("triton", t_ours), ("torch eager", t_eager), ("torch.compile", t_comp)):
            points.append((name, label, flops / nbytes, flops / (t * 1e-3)))
    if plot:
        path = roofline(points, peak_flops, peak_bw)
        print(f"roofline: {path}")


def roofline(points, peak_flops, peak_bw):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    intensity = [10 ** (e / 10) for e in range(-20, 41)]
    ax.loglog(intensity, [min(peak_flops, i * peak_bw) for i in intensity], "k-", label="roofline")
    markers = {"triton": "o", "torch eager": "s", "torch.compile": "^"}
    colours = {}
    for name, label, ai, fps in points:
        first = name not in colours  # one legend entry per kernel (colour); markers tell the implementations
        colour = colours.setdefault(name, f"C{len(colours)}")
        ax.scatter(ai, fps, marker=markers[label], color=colour, s=36, alpha=0.8, label=name if first else None)
    for label, marker in markers.items():
        ax.scatter([], [], marker=marker, color="grey", label=label)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"Roofline: {torch.cuda.get_device_name(0)}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    path = labkit.output_dir(__file__) / "roofline.png"
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)  # atomic: a reader never sees half a PNG
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    impl = labkit.load_impl(LAB, "solution")
    if impl.TRITON_MISSING:
        raise SystemExit(impl.TRITON_MISSING)
    start = time.perf_counter()
    if impl.interpreting():
        cpu_table(impl)
    else:
        gpu_bench(impl, getattr(torch, args.dtype), plot=not args.no_plot)
    print(f"bench took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    labkit.run(main)
