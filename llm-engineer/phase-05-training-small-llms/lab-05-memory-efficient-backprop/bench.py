"""Activation checkpointing: memory saved against time paid, side by side in one run.

Memory is what autograd saves for backward (excluding the parameters), counted with saved_tensors_hooks, and
on CUDA also the peak allocated memory. Time is the best of a few forward+backward passes."""
from __future__ import annotations

import time

import torch
import torch.nn as nn

import labkit

lab = labkit.load_impl("llm-engineer/phase-05-training-small-llms/lab-05-memory-efficient-backprop", "solution")
REPEATS = 5


def cost(step, params, device) -> tuple[float, float, float | None]:
    """(saved MiB, best ms, CUDA peak MiB or None) for step() -> scalar loss."""
    saved, loss = lab.saved_tensor_bytes(step, exclude=params)
    loss.backward()
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step().backward()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    best = float("inf")
    for _ in range(REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return saved / 2**20, best * 1e3, peak


def table(title, rows):
    base_mem, base_ms, _ = rows["plain"]
    print(f"\n{title}")
    print(f"{'mode':<26}{'saved MiB':>10}{'memory':>9}{'ms':>9}{'time':>8}{'CUDA peak MiB':>15}")
    for name, (mem, ms, peak) in rows.items():
        print(f"{name:<26}{mem:>10.2f}{mem / base_mem:>8.2f}x{ms:>9.1f}{ms / base_ms:>7.2f}x"
              f"{'-' if peak is None else f'{peak:.0f}':>15}")


def main() -> None:
    device = labkit.pick_device()
    torch.manual_seed(0)
    print(f"device {device}, {torch.get_num_threads()} CPU threads, best of {REPEATS}")

    width, batch = (256, 512) if device.type == "cpu" else (1024, 8192)
    blocks = nn.ModuleList(lab.Block(width) for _ in range(8)).to(device)
    x = torch.randn(batch, width, device=device, requires_grad=True)
    params = list(blocks.parameters())
    table(f"8 residual MLP blocks, width {width}, batch {batch}",
          {f"{mode}": cost(lambda m=mode: lab.stack_forward(blocks, x, m).square().mean(), params, device)
           for mode in ("plain", "by-hand", "torch")})

    seq = 256 if device.type == "cpu" else 1024
    rows = {}
    for name in ("plain", "by-hand", "transformers"):
        model = lab.tiny_llama(layers=4, hidden=128, vocab=512).to(device).train()
        if name == "by-hand":
            lab.enable_manual_checkpointing(model.model.layers)
        elif name == "transformers":
            model.gradient_checkpointing_enable()
        ids = torch.randint(0, 512, (8, seq), device=device)
        rows[name] = cost(lambda m=model, i=ids: m(input_ids=i, labels=i, use_cache=False).loss,
                          list(model.parameters()), device)
    table(f"tiny Llama (4 layers, d=128), batch 8 x {seq} tokens", rows)


if __name__ == "__main__":
    main()
