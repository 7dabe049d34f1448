"""Memory-efficient backprop: trade compute for activation memory, by hand and with PyTorch's tools.

Autograd keeps, for every operation, the tensors its backward will need ("saved tensors"). For a deep network
those activations, not the weights, are what fills memory during training. You will:
- write a custom torch.autograd.Function (linear + GELU) whose backward recomputes the pre-activation instead
  of saving it, and prove its gradients with a float64 gradcheck;
- count the bytes autograd saves, with torch.autograd.graph.saved_tensors_hooks;
- write activation checkpointing by hand: a Function that runs a block without a graph in forward, keeps only
  the block's inputs, and re-runs the block with a graph inside backward (same result as torch.utils.checkpoint);
- apply it to every decoder layer of a transformers model and train it in a custom loop, with gradients equal
  to the plain model's and to transformers' own gradient_checkpointing_enable().
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- 1. a custom autograd Function

class LinearGELU(torch.autograd.Function):
    """y = gelu(x @ W^T + b) with exact (erf) GELU, saving only x, W and b: z is recomputed in backward.

    gelu(z) = z * Phi(z)        d gelu / dz = Phi(z) + z * phi(z)
    with Phi the standard normal CDF and phi its density.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # TODO [linear-gelu]: Save only the inputs (not z), then return gelu of the affine map.
        raise NotImplementedError('TODO [linear-gelu]: Save only the inputs (not z), then return gelu of the affine map.')

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        # TODO [linear-gelu]: Recompute z, chain through GELU's derivative, then the three linear-layer gradients.
        raise NotImplementedError("TODO [linear-gelu]: Recompute z, chain through GELU's derivative, then the three linear-layer gradients.")


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"shapes do not fit: x {tuple(x.shape)}, weight {tuple(weight.shape)} (out, in), "
                         f"bias {tuple(bias.shape)}")
    return LinearGELU.apply(x, weight, bias)


# ---------------------------------------------------------------- 2. counting what autograd saves

def saved_tensor_bytes(fn, *args, exclude=()) -> tuple[int, object]:
    """Run fn(*args) and count the bytes of every tensor autograd saves for backward.

    Each storage is counted once (views of one tensor share it); storages of `exclude` (e.g. the parameters,
    which exist anyway) are left out. Returns (bytes, fn's output) so the caller can still call backward.
    """
    # TODO [saved-bytes]: A pack hook sees each saved tensor: record its storage's nbytes keyed by data_ptr, skip the excluded ones.
    raise NotImplementedError("TODO [saved-bytes]: A pack hook sees each saved tensor: record its storage's nbytes keyed by data_ptr, skip the excluded ones.")


# ---------------------------------------------------------------- 3. activation checkpointing by hand

class _Recompute(torch.autograd.Function):
    """Forward: run the block under no_grad and keep only its inputs (and the RNG state).
    Backward: re-run the block with a graph, from the same RNG state, and backprop through that copy."""

    @staticmethod
    def forward(ctx, run, preserve_rng: bool, *inputs):
        # TODO [checkpoint-by-hand]: Remember run and the RNG state, save the inputs, compute the output without building a graph.
        raise NotImplementedError('TODO [checkpoint-by-hand]: Remember run and the RNG state, save the inputs, compute the output without building a graph.')

    @staticmethod
    def backward(ctx, grad_output):
        # TODO [checkpoint-by-hand]: Detached copies of the inputs; fork and restore the RNG; re-run under enable_grad; autograd.backward; return the inputs' grads.
        raise NotImplementedError("TODO [checkpoint-by-hand]: Detached copies of the inputs; fork and restore the RNG; re-run under enable_grad; autograd.backward; return the inputs' grads.")


def checkpoint_by_hand(run, *inputs: torch.Tensor, preserve_rng: bool = True) -> torch.Tensor:
    """run(*inputs) -> one tensor, computed without keeping its internal activations.

    At least one input must require grad: otherwise autograd never calls our backward and the parameters
    inside `run` get no gradient (the same rule as torch.utils.checkpoint(use_reentrant=True)).
    """
    if not torch.is_grad_enabled():
        return run(*inputs)  # inference: nothing to save anyway
    # TODO [checkpoint-by-hand]: Refuse inputs that all lack requires_grad, then go through _Recompute.apply.
    raise NotImplementedError('TODO [checkpoint-by-hand]: Refuse inputs that all lack requires_grad, then go through _Recompute.apply.')


# ---------------------------------------------------------------- 4. on a transformers model

def enable_manual_checkpointing(layers: nn.ModuleList) -> None:
    """Make every layer (e.g. model.model.layers of a LlamaForCausalLM) run through checkpoint_by_hand.

    The hidden states are the checkpointed input; every other argument (mask, rotary cos/sin) is closed over.
    The KV-cache is dropped while training: a recomputed layer would append its keys a second time.
    """
    # TODO [checkpoint-hf-layers]: Replace each layer's forward on the instance by one that wraps the original in checkpoint_by_hand.
    raise NotImplementedError("TODO [checkpoint-hf-layers]: Replace each layer's forward on the instance by one that wraps the original in checkpoint_by_hand.")


def train_loop(model, batches: list[torch.Tensor], optimizer: torch.optim.Optimizer, *, max_norm: float = 1.0,
               progress: bool = False) -> list[float]:
    """A plain custom loop over a causal LM: labels = inputs (the model shifts them), clip, step."""
    model.train()
    losses = []
    for ids in tqdm(batches, disable=not progress, desc="train", unit="step"):
        # TODO [checkpoint-hf-layers]: Forward with labels and use_cache=False, backward, clip, step, zero the grads.
        raise NotImplementedError('TODO [checkpoint-hf-layers]: Forward with labels and use_cache=False, backward, clip, step, zero the grads.')
    return losses


# ---------------------------------------------------------------- measuring (given)

class Block(nn.Module):
    """A pre-norm residual MLP block: x + W2 gelu(W1 LN(x)) (with dropout), the shape of a transformer's FFN."""

    def __init__(self, d: int, dropout: float = 0.0):
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.down(F.gelu(self.up(self.norm(x)))))


def stack_forward(blocks: nn.ModuleList, x: torch.Tensor, mode: str = "plain") -> torch.Tensor:
    """Run the blocks in sequence; mode 'plain', 'by-hand' (ours) or 'torch' (torch.utils.checkpoint)."""
    if mode not in ("plain", "by-hand", "torch"):
        raise ValueError(f"mode must be 'plain', 'by-hand' or 'torch', got {mode!r}")
    for block in blocks:
        if mode == "plain":
            x = block(x)
        elif mode == "by-hand":
            x = checkpoint_by_hand(block, x)
        else:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
    return x


def measure(step, params, repeats: int = 3) -> tuple[int, float]:
    """(bytes autograd saves excluding params, best seconds for forward+backward) of step() -> scalar loss."""
    saved, loss = saved_tensor_bytes(step, exclude=params)
    loss.backward()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step().backward()
        best = min(best, time.perf_counter() - start)
    return saved, best


def tiny_llama(layers: int = 4, hidden: int = 128, vocab: int = 512, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return LlamaForCausalLM(config)


def main(argv: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args(argv)
    labkit.seed_everything(0)

    # 1. The custom Function keeps less than the two library ops it replaces.
    x = torch.randn(args.batch, args.width, requires_grad=True)
    lin = nn.Linear(args.width, 4 * args.width)
    ref, _ = saved_tensor_bytes(lambda: F.gelu(lin(x)), exclude=list(lin.parameters()))
    ours, _ = saved_tensor_bytes(lambda: linear_gelu(x, lin.weight, lin.bias), exclude=list(lin.parameters()))
    print(f"linear+GELU saves {ref / 2**20:.2f} MiB with autograd, {ours / 2**20:.2f} MiB with LinearGELU "
          f"(the (batch, 4d) pre-activation is recomputed)")

    # 2. Checkpointing a stack of blocks: memory kept vs time paid.
    blocks = nn.ModuleList(Block(args.width) for _ in range(args.blocks))
    params = list(blocks.parameters())
    inp = torch.randn(args.batch, args.width, requires_grad=True)
    results = {mode: measure(lambda m=mode: stack_forward(blocks, inp, m).square().mean(), params)
               for mode in ("plain", "by-hand", "torch")}
    base_mem, base_time = results["plain"]
    print(f"\n{args.blocks} residual MLP blocks, width {args.width}, batch {args.batch}")
    print(f"{'mode':<10}{'saved MiB':>10}{'memory':>9}{'fwd+bwd ms':>12}{'time':>8}")
    for mode, (mem, sec) in results.items():
        print(f"{mode:<10}{mem / 2**20:>10.2f}{mem / base_mem:>8.2f}x{sec * 1e3:>12.1f}{sec / base_time:>7.2f}x")

    # 3. A transformers model in a custom loop, with our checkpointing on every decoder layer.
    plain, wrapped = tiny_llama(), tiny_llama()
    enable_manual_checkpointing(wrapped.model.layers)
    data = [torch.randint(0, 512, (8, 128), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    batches = [data[i % len(data)] for i in range(args.train_steps)]  # 4 batches seen again and again
    curves = {}
    for name, model in (("plain", plain), ("checkpointed", wrapped)):
        mem, _ = saved_tensor_bytes(lambda: model(input_ids=batches[0], labels=batches[0], use_cache=False).loss,
                                    exclude=list(model.parameters()))
        start = time.perf_counter()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        curves[name] = train_loop(model, batches, opt, progress=True)
        print(f"tiny Llama {name:<13} saved {mem / 2**20:6.2f} MiB per step, {args.train_steps} steps in "
              f"{time.perf_counter() - start:.1f} s, loss {curves[name][0]:.3f} -> {curves[name][-1]:.3f}")
    gap = max(abs(a - b) for a, b in zip(curves["plain"], curves["checkpointed"]))
    print(f"largest loss difference between the two runs: {gap:.1e}")

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    names = list(results)
    ax.bar([n + "\nmemory" for n in names], [results[n][0] / base_mem for n in names], color="tab:blue")
    ax.bar([n + "\ntime" for n in names], [results[n][1] / base_time for n in names], color="tab:orange")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(ylabel="relative to plain", title="Activation checkpointing: memory saved vs time paid")
    fig.tight_layout()
    out = labkit.output_dir(__file__) / "memory_vs_time.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    labkit.run(main)
