"""Lab 02: multi-head attention from scratch, equal to torch.nn.MultiheadAttention, plus MQA and GQA.

Multi-head attention runs h scaled dot-product attentions side by side, each in its own d_head = d_model / h
slice of a projected space, then concatenates the heads and mixes them with an output projection:

    head_i = Attention(X W_q[i], X W_k[i], X W_v[i]);    MHA(X) = concat(head_1..head_h) W_o

The naive layout gives every head its own three small projections (d_model -> d_head) and loops over the
heads; the "reshape trick" (the fused layout) does all heads in one batched call: project once to
(B, T, h·d_head), view as (B, T, h, d_head), transpose to (B, h, T, d_head). Both compute the same function:
W_q stacks the per-head W_q[i] as row blocks, so head i's slice of the fused projection is exactly X W_q[i]. Grouped-query attention (GQA) keeps h query heads but only
n_kv_heads key/value heads, each shared by h / n_kv_heads query heads; n_kv_heads = 1 is multi-query
attention (MQA), n_kv_heads = h is ordinary MHA. Fewer KV heads means a smaller KV cache at inference:

    KV-cache bytes = 2 (K and V) · batch · seq_len · n_layers · n_kv_heads · d_head · bytes per element

The attention core itself is lab 01's einsum implementation (same masks: True = may attend).
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import torch
from torch import nn

import labkit

LAB01 = labkit.reuse("llm-engineer/phase-04-attention-transformers/lab-01-scaled-dot-product-attention")


# ----------------------------------------------------------------------------------------------- reshapes

def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, n_heads·d_head) -> (B, n_heads, T, d_head)."""
    if x.ndim != 3 or x.shape[-1] % n_heads:
        raise ValueError(f"expected (B, T, n_heads*d_head) with a last dim divisible by {n_heads}, "
                         f"got shape {tuple(x.shape)}")
    # TODO [heads-reshape]: view the last dim as (n_heads, d_head), then swap the T and head dims.
    raise NotImplementedError('TODO [heads-reshape]: view the last dim as (n_heads, d_head), then swap the T and head dims.')


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_heads, T, d_head) -> (B, T, n_heads·d_head): the concatenation of the heads."""
    if x.ndim != 4:
        raise ValueError(f"expected (B, n_heads, T, d_head), got shape {tuple(x.shape)}")
    # TODO [heads-reshape]: Undo split_heads: transpose back, make it contiguous, flatten the last two dims.
    raise NotImplementedError('TODO [heads-reshape]: Undo split_heads: transpose back, make it contiguous, flatten the last two dims.')


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv_heads, T, d_head) -> (B, n_kv_heads·n_rep, T, d_head); KV head g serves query heads
    g·n_rep … g·n_rep + n_rep - 1 (consecutive query heads share a group, as in Llama)."""
    if n_rep < 1:
        raise ValueError(f"n_rep must be >= 1, got {n_rep}")
    # TODO [repeat-kv]: Insert a size-n_rep dim after the head dim, expand it (no copy), then reshape heads × n_rep into one dim.
    raise NotImplementedError('TODO [repeat-kv]: Insert a size-n_rep dim after the head dim, expand it (no copy), then reshape heads × n_rep into one dim.')


# ----------------------------------------------------------------------------------------------- the module

class MultiHeadAttention(nn.Module):
    """MHA (n_kv_heads = n_heads, the default), GQA (1 < n_kv_heads < n_heads) or MQA (n_kv_heads = 1).

    Separate q/k/v projections so that k and v can be narrower than q: q_proj maps d_model -> n_heads·d_head,
    k_proj and v_proj map d_model -> n_kv_heads·d_head, out_proj maps d_model -> d_model.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads} (each KV head "
                             "serves the same number of query heads)")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        # TODO [attention-forward]: Four nn.Linear layers: q and out are d_model wide, k and v are n_kv_heads*d_head wide.
        raise NotImplementedError('TODO [attention-forward]: Four nn.Linear layers: q and out are d_model wide, k and v are n_kv_heads*d_head wide.')

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values as a KV cache would store them: two (B, n_kv_heads, T, d_head) tensors."""
        # TODO [attention-forward]: Project with k_proj and v_proj and split into n_kv_heads heads.
        raise NotImplementedError('TODO [attention-forward]: Project with k_proj and v_proj and split into n_kv_heads heads.')

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """query (B, T_q, d_model); key/value (B, T_k, d_model), defaulting to query (self-attention).

        key_padding_mask: bool (B, T_k), True on real tokens (lab 01's convention, the opposite of
        nn.MultiheadAttention's). causal: each query i sees keys j <= i. Returns (B, T_q, d_model).
        """
        key = query if key is None else key
        value = key if value is None else value
        if query.ndim != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, T, {self.d_model}), got shape {tuple(query.shape)}")
        # TODO [attention-forward]: Project and split heads (q: n_heads, k/v: n_kv_heads), repeat_kv, build a (B, 1, T_q, T_k) keep-mask, run LAB01.attention_einsum, merge heads, out_proj.
        raise NotImplementedError('TODO [attention-forward]: Project and split heads (q: n_heads, k/v: n_kv_heads), repeat_kv, build a (B, 1, T_q, T_k) keep-mask, run LAB01.attention_einsum, merge heads, out_proj.')


class PerHeadAttention(nn.Module):
    """The naive layout of multi-head attention (MHA only): each head owns three nn.Linear(d_model, d_head)
    projections, kept in the ModuleLists q_heads, k_heads and v_heads (head i at index i); forward loops over the
    heads, runs attention on each (B, T, d_head) slice, concatenates the h outputs in head order and applies
    out_proj, an nn.Linear(d_model, d_model). Same function as MultiHeadAttention, with 3h small matmuls and a
    Python loop instead of three wide ones."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        # TODO [per-head-loop]: Three nn.ModuleLists of n_heads separate Linear(d_model, d_head) layers (a fresh layer per head), and out_proj.
        raise NotImplementedError('TODO [per-head-loop]: Three nn.ModuleLists of n_heads separate Linear(d_model, d_head) layers (a fresh layer per head), and out_proj.')

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Same arguments and result as MultiHeadAttention.forward: (B, T_q, d_model)."""
        key = query if key is None else key
        value = key if value is None else value
        if query.ndim != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, T, {self.d_model}), got shape {tuple(query.shape)}")
        # TODO [per-head-loop]: One keep-mask for 3-D scores (B, T_q, T_k); for each head, its own q/k/v Linears and LAB01.attention_einsum; cat the heads on the feature dim; out_proj.
        raise NotImplementedError('TODO [per-head-loop]: One keep-mask for 3-D scores (B, T_q, T_k); for each head, its own q/k/v Linears and LAB01.attention_einsum; cat the heads on the feature dim; out_proj.')


def copy_from_fused(loop: PerHeadAttention, fused: MultiHeadAttention) -> PerHeadAttention:
    """Load a fused MultiHeadAttention's weights into the per-head module: head i's q/k/v Linears get rows
    [i·d_head, (i+1)·d_head) of q_proj, k_proj and v_proj (weights and biases); out_proj is copied whole."""
    if fused.n_kv_heads != fused.n_heads:
        raise ValueError("the per-head module has one K/V projection per query head; build the fused one as MHA "
                         "(n_kv_heads=None)")
    if (fused.d_model, fused.n_heads) != (loop.d_model, loop.n_heads):
        raise ValueError(f"shape mismatch: fused has d_model={fused.d_model}, heads={fused.n_heads}; per-head "
                         f"has d_model={loop.d_model}, heads={loop.n_heads}")
    if (fused.q_proj.bias is None) != (loop.out_proj.bias is None):
        raise ValueError("build both modules with the same bias setting")
    with torch.no_grad():
        # TODO [per-head-loop]: For each projection and head, copy_ the head's contiguous block of d_head rows (weight and bias); then out_proj.
        raise NotImplementedError("TODO [per-head-loop]: For each projection and head, copy_ the head's contiguous block of d_head rows (weight and bias); then out_proj.")
    return loop


def copy_from_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> MultiHeadAttention:
    """Load an nn.MultiheadAttention's weights into `ours` (same d_model and heads, n_kv_heads == n_heads).

    torch stacks the three input projections in one in_proj_weight of shape (3·d_model, d_model): rows
    [0, d) are W_q, [d, 2d) are W_k, [2d, 3d) are W_v (in_proj_bias likewise); out_proj is a plain Linear.
    """
    if ours.n_kv_heads != ours.n_heads:
        raise ValueError("nn.MultiheadAttention has one KV head per query head; build ours with n_kv_heads=None")
    if (theirs.embed_dim, theirs.num_heads) != (ours.d_model, ours.n_heads):
        raise ValueError(f"shape mismatch: torch module has d_model={theirs.embed_dim}, heads={theirs.num_heads}; "
                         f"ours has d_model={ours.d_model}, heads={ours.n_heads}")
    if theirs.in_proj_weight is None:
        raise ValueError("the torch module uses separate q/k/v weights (kdim/vdim != embed_dim); not supported")
    if (theirs.in_proj_bias is None) != (ours.q_proj.bias is None):
        raise ValueError("build both modules with the same bias setting")
    with torch.no_grad():
        # TODO [copy-weights]: chunk in_proj_weight (and in_proj_bias) into three along dim 0; copy_ each piece and out_proj.
        raise NotImplementedError('TODO [copy-weights]: chunk in_proj_weight (and in_proj_bias) into three along dim 0; copy_ each piece and out_proj.')
    return ours


# ----------------------------------------------------------------------------------------------- formulas

def attention_param_count(d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True) -> int:
    """Parameters of one attention layer: W_q and W_o are d×d, W_k and W_v are d×(n_kv_heads·d_head),
    plus one bias vector per projection when `bias`. MHA without bias: 4d²."""
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    if d_model % n_heads or n_heads % n_kv_heads:
        raise ValueError(f"need d_model % n_heads == 0 and n_heads % n_kv_heads == 0, got d_model={d_model}, "
                         f"n_heads={n_heads}, n_kv_heads={n_kv_heads}")
    # TODO [param-count]: d_kv = n_kv_heads * d_head; weights 2d² + 2·d·d_kv; biases 2d + 2·d_kv.
    raise NotImplementedError('TODO [param-count]: d_kv = n_kv_heads * d_head; weights 2d² + 2·d·d_kv; biases 2d + 2·d_kv.')


def kv_cache_bytes(batch: int, seq_len: int, n_layers: int, n_kv_heads: int, d_head: int,
                   bytes_per_element: int = 2) -> int:
    """Bytes a KV cache holds: K and V, for every layer, KV head, position and sequence (bf16 = 2 bytes)."""
    if min(batch, seq_len, n_layers, n_kv_heads, d_head, bytes_per_element) < 1:
        raise ValueError("every size must be a positive integer")
    # TODO [kv-memory]: Multiply every factor, counting 2 for K and V.
    raise NotImplementedError('TODO [kv-memory]: Multiply every factor, counting 2 for K and V.')


# ----------------------------------------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    labkit.seed_everything(args.seed)

    theirs = nn.MultiheadAttention(args.d_model, args.heads, batch_first=True).double().eval()
    ours = copy_from_torch(MultiHeadAttention(args.d_model, args.heads).double(), theirs).eval()
    x = torch.randn(2, args.seq_len, args.d_model, dtype=torch.float64)
    keep = torch.ones(2, args.seq_len, dtype=torch.bool)
    keep[1, -4:] = False  # the second sequence ends in four padding tokens
    causal = torch.ones(args.seq_len, args.seq_len, dtype=torch.bool).tril()
    with torch.no_grad():
        ref, _ = theirs(x, x, x, key_padding_mask=~keep, attn_mask=~causal, need_weights=False)
        got = ours(x, key_padding_mask=keep, causal=True)
    print(f"ours vs nn.MultiheadAttention (float64, causal + padding): max |diff| = {(got - ref).abs().max():.2e}")
    loop = copy_from_fused(PerHeadAttention(args.d_model, args.heads).double(), ours)
    with torch.no_grad():
        looped = loop(x, key_padding_mask=keep, causal=True)
    print(f"per-head loop vs fused, same weights (float64, causal + padding): max |diff| = "
          f"{(looped - got).abs().max():.2e}  ({args.heads} heads: {3 * args.heads} Linear({args.d_model}, "
          f"{args.d_model // args.heads}) vs 3 Linear({args.d_model}, {args.d_model}); `make bench` times both)")

    print(f"\nattention parameters and KV cache, d_model={args.d_model}, {args.heads} query heads, "
          f"T={args.seq_len}, float32:")
    print(f"{'variant':<10} {'kv heads':>8} {'formula':>8} {'numel':>8} {'kv bytes':>9} {'measured':>9}")
    for n_kv in sorted({args.heads, max(args.heads // 4, 1), 1}, reverse=True):
        name = "MHA" if n_kv == args.heads else "MQA" if n_kv == 1 else "GQA"
        m = MultiHeadAttention(args.d_model, args.heads, n_kv)
        k, v = m.project_kv(torch.randn(1, args.seq_len, args.d_model))
        measured = sum(t.numel() * t.element_size() for t in (k, v))
        print(f"{name:<10} {n_kv:>8} {attention_param_count(args.d_model, args.heads, n_kv):>8} "
              f"{sum(p.numel() for p in m.parameters()):>8} "
              f"{kv_cache_bytes(1, args.seq_len, 1, n_kv, m.d_head, 4):>9} {measured:>9}")

    print("\nKV cache of a Llama-3-8B-shaped model (32 layers, 32 query heads, d_head 128, bf16), batch 1:")
    for n_kv in (32, 8, 1):
        for t in (8_192, 131_072):
            gib = kv_cache_bytes(1, t, 32, n_kv, 128, 2) / 2**30
            print(f"  n_kv_heads={n_kv:>2}  seq_len={t:>7,}  {gib:7.2f} GiB")


if __name__ == "__main__":
    labkit.run(main)
