"""One linear layer of SmolLM2's MLP size (576 -> 1536), quantized every way: weight bytes and CPU time per
forward at 1 token (decode) and 256 tokens (prefill), as ratios against float32 measured in the same run.

Ours dequantize the whole weight in every forward (plain PyTorch, no fused kernel), so they pay for memory
savings with time; the libraries' CPU paths show what their kernels do. Random weights, one torch thread.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-02-quantization/bench.py
"""
from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn as nn

import labkit
from labkit.bench import median_ms

LAB = "llm-engineer/phase-09-inference-optimization/lab-02-quantization"


def bnb_layer(linear: nn.Linear, kind: str) -> nn.Module:
    import bitsandbytes as bnb

    if kind == "int8":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False, has_fp16_weights=False,
                                    threshold=6.0)
        layer.weight = bnb.nn.Int8Params(linear.weight.detach().clone(), requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, quant_type="nf4",
                                  compute_dtype=torch.float32)
        layer.weight = bnb.nn.Params4bit(linear.weight.detach().clone(), requires_grad=False, quant_type="nf4")
    return layer.to("cpu").eval()   # moving to a device is what quantizes the weight


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")  # bnb, once per call
    labkit.seed_everything(0)
    impl = labkit.load_impl(LAB, "solution")

    linear = nn.Linear(576, 1536, bias=False).eval()
    w = linear.weight.detach()
    layers = {
        "fp32 nn.Linear": linear,
        "ours int8 per-channel": impl.QuantLinear.int8(linear),
        "ours int4 g64": impl.QuantLinear.int4(linear, impl.rtn_int4(w, 64)),
        "torchao int8 weight-only": impl.torchao_model(nn.Sequential(linear), "int8")[0],
        "torchao int4 g64 (asym)": impl.torchao_model(nn.Sequential(linear), "int4", 64)[0],
        "quanto qint8": impl.quanto_model(nn.Sequential(linear), "int8")[0],
        "quanto qint4": impl.quanto_model(nn.Sequential(linear), "int4")[0],
        "bnb LLM.int8": bnb_layer(linear, "int8"),
        "bnb NF4": bnb_layer(linear, "nf4"),
    }
    inputs = {"1 token": torch.randn(1, 1, 576), "256 tokens": torch.randn(1, 256, 576)}
    base_bytes = impl.weight_bytes(linear)
    base_ms = {}
    print(f"layer 576 -> 1536 ({w.numel():,} weights), torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} runs")
    print(f"| layer | weight KiB | x smaller | {' | '.join(f'{k} ms | x fp32' for k in inputs)} | max |Δy| / max |y| |")
    print("|---|---:|---:|" + "---:|---:|" * len(inputs) + "---:|")
    with torch.no_grad():
        y_ref = linear(inputs["256 tokens"])
        for name, layer in layers.items():
            nbytes = impl.weight_bytes(layer)
            cells = []
            for key, x in inputs.items():
                ms = median_ms(lambda: layer(x), repeats=args.repeats)
                base_ms.setdefault(key, ms)
                cells.append(f"{ms:.3f} | {ms / base_ms[key]:.2f}")
            rel = ((layer(inputs["256 tokens"]).float() - y_ref).abs().max() / y_ref.abs().max()).item()
            print(f"| {name} | {nbytes / 1024:.0f} | {base_bytes / nbytes:.2f} | {' | '.join(cells)} | {rel:.4f} |")


if __name__ == "__main__":
    labkit.run(main)
