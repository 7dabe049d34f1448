"""Lab 01: scaled dot-product attention, written three ways and checked against PyTorch's kernel.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + mask) V

You write the same operation three times (explicit loops, batched matmul, einsum) so that the loops show
exactly what is computed and the vectorised forms show how it is computed fast. Along the way:

- a softmax that stays finite for huge logits (1e4) and gives a defined answer for rows where every key is
  masked: all-zero weights, hence an all-zero output row (PyTorch's own SDPA does the same; plain
  torch.softmax returns NaN there);
- causal and padding masks, as boolean tensors where True means "this query may look at this key"
  (the convention of torch.nn.functional.scaled_dot_product_attention's bool attn_mask);
- the reason for dividing by √d_k, measured: with unit-variance entries, q·k has variance d_k, and
  q·k/√d_k has variance 1.

Shapes: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v); any leading dims (batch, heads) are allowed.
A mask broadcasts to (..., T_q, T_k). Every attention function returns (output (..., T_q, d_v),
weights (..., T_q, T_k)).
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import labkit  # noqa: E402


# ----------------------------------------------------------------------------------------------- softmax

def naive_softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / Σ exp(x), exactly as written on paper. Shown for contrast: exp(1e4) overflows to inf."""
    e = scores.exp()
    return e / e.sum(dim=dim, keepdim=True)


def stable_softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along `dim` that never overflows and maps a row of all -inf to all zeros (not NaN).

    softmax(x) = softmax(x - c) for any constant c, so subtract the row maximum: the largest exponent is then
    exp(0) = 1 and nothing overflows. A fully masked row has max = -inf and -inf - (-inf) = NaN, so such rows use
    c = 0 instead: every exp is 0, the sum is 0, and dividing that row by 1 (not by its zero sum) leaves exact
    zeros with zero gradients. The shift is a constant, so it carries no gradient (detach it).
    """
    # TODO [stable-softmax]: Shift by the detached row max (a -inf max becomes 0), exponentiate, divide by the sum (1 where the sum is 0).
    raise NotImplementedError('TODO [stable-softmax]: Shift by the detached row max (a -inf max becomes 0), exponentiate, divide by the sum (1 where the sum is 0).')


# ----------------------------------------------------------------------------------------------- masks

def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """Bool (t_q, t_k): True where key j <= query i (a token sees itself and the past, never the future).

    Same alignment as SDPA's is_causal=True (the top-left corner: query 0 sees key 0 only).
    """
    t_k = t_q if t_k is None else t_k
    if t_q <= 0 or t_k <= 0:
        raise ValueError(f"causal_mask needs positive sizes, got t_q={t_q}, t_k={t_k}")
    # TODO [masks]: Compare a column of query indices with a row of key indices (key <= query).
    raise NotImplementedError('TODO [masks]: Compare a column of query indices with a row of key indices (key <= query).')


def padding_mask(lengths: torch.Tensor | list[int], t_k: int) -> torch.Tensor:
    """Bool (B, 1, t_k): True where key j < lengths[b] (a real token), False on the right padding.

    The middle dim of size 1 lets it broadcast over the queries of (B, T_q, T_k) scores.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (one length per sequence), got shape {tuple(lengths.shape)}")
    if (lengths < 0).any() or (lengths > t_k).any():
        raise ValueError(f"every length must lie in [0, t_k={t_k}], got {lengths.tolist()}")
    # TODO [masks]: A row of key positions compared with a column of lengths, then one extra dim for queries.
    raise NotImplementedError('TODO [masks]: A row of key positions compared with a column of lengths, then one extra dim for queries.')


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError("q, k and v need at least 2 dims (..., T, d)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale


# ----------------------------------------------------------------------------------------------- three ways

def attention_loops(q, k, v, mask=None, scale=None):
    """The definition, one number at a time: s_ij = q_i·k_j·scale; a_i = softmax(s_i); o_i = Σ_j a_ij v_j.

    Pedagogical and slow (Python loops over batch, queries and keys). Returns (output, weights).
    """
    _check_qkv(q, k, v, mask)
    scale = _scale(q, scale)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    t_q, t_k, d_v = q.shape[-2], k.shape[-2], v.shape[-1]
    # Flatten every leading dim into one batch dim so the loops only see (N, T, d).
    qf = q.expand(*lead, *q.shape[-2:]).reshape(-1, t_q, q.shape[-1])
    kf = k.expand(*lead, *k.shape[-2:]).reshape(-1, t_k, k.shape[-1])
    vf = v.expand(*lead, *v.shape[-2:]).reshape(-1, t_k, d_v)
    mf = None if mask is None else mask.expand(*lead, t_q, t_k).reshape(-1, t_q, t_k)
    out = torch.zeros(qf.shape[0], t_q, d_v, dtype=v.dtype, device=v.device)
    weights = torch.zeros(qf.shape[0], t_q, t_k, dtype=q.dtype, device=q.device)
    # TODO [attention-loops]: For each batch row and query: a score per key (-inf where masked), stable_softmax, then a weighted sum of the v rows.
    raise NotImplementedError('TODO [attention-loops]: For each batch row and query: a score per key (-inf where masked), stable_softmax, then a weighted sum of the v rows.')
    return out.reshape(*lead, t_q, d_v), weights.reshape(*lead, t_q, t_k)


def attention_bmm(q, k, v, mask=None, scale=None):
    """Vectorised with torch.bmm: S = Q Kᵀ · scale as one batched matmul, then P V as another."""
    _check_qkv(q, k, v, mask)
    scale = _scale(q, scale)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    t_q, t_k = q.shape[-2], k.shape[-2]
    qf = q.expand(*lead, *q.shape[-2:]).reshape(-1, t_q, q.shape[-1])  # (N, T_q, d_k)
    kf = k.expand(*lead, *k.shape[-2:]).reshape(-1, t_k, k.shape[-1])  # (N, T_k, d_k)
    vf = v.expand(*lead, *v.shape[-2:]).reshape(-1, t_k, v.shape[-1])  # (N, T_k, d_v)
    # TODO [attention-bmm]: bmm with k transposed on its last two dims, masked_fill(~mask, -inf), stable_softmax, bmm with v.
    raise NotImplementedError('TODO [attention-bmm]: bmm with k transposed on its last two dims, masked_fill(~mask, -inf), stable_softmax, bmm with v.')
    return out.reshape(*lead, t_q, -1), weights.reshape(*lead, t_q, t_k)


def attention_einsum(q, k, v, mask=None, scale=None):
    """Vectorised with einsum, index names as in the formula: s_ij = Σ_d q_id k_jd, o_id = Σ_j a_ij v_jd."""
    _check_qkv(q, k, v, mask)
    scale = _scale(q, scale)
    # TODO [attention-einsum]: Two einsums with '...' for the leading dims; mask and stable_softmax in between.
    raise NotImplementedError("TODO [attention-einsum]: Two einsums with '...' for the leading dims; mask and stable_softmax in between.")
    return out, weights


# ----------------------------------------------------------------------------------------------- why √d_k

def score_variance(d_k: int, n_samples: int = 20_000, scaled: bool = False, seed: int = 0) -> float:
    """Sample variance of q·k (or q·k/√d_k when `scaled`) for q, k with i.i.d. N(0, 1) entries.

    Each product q_d k_d has mean 0 and variance 1, and the d_k products are independent, so
    Var(q·k) = d_k; dividing by √d_k divides the variance by d_k, leaving 1 whatever the head size.
    """
    if d_k <= 0 or n_samples < 2:
        raise ValueError(f"need d_k >= 1 and n_samples >= 2, got d_k={d_k}, n_samples={n_samples}")
    gen = torch.Generator().manual_seed(seed)
    # TODO [scaling-variance]: Draw (n_samples, d_k) q and k from the generator in float64, dot row by row, divide by √d_k if scaled, take the variance.
    raise NotImplementedError('TODO [scaling-variance]: Draw (n_samples, d_k) q and k from the generator in float64, dot row by row, divide by √d_k if scaled, take the variance.')


def softmax_peak(d_k: int, t: int = 16, scaled: bool = True, n_rows: int = 2_000, seed: int = 0) -> float:
    """Mean of the largest attention weight per row for random unit-variance q, k: 1/t is uniform, 1.0 is one-hot."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_rows, 1, d_k, generator=gen)
    k = torch.randn(n_rows, t, d_k, generator=gen)
    scores = (q @ k.transpose(1, 2)).squeeze(1)
    if scaled:
        scores = scores / math.sqrt(d_k)
    return torch.softmax(scores, dim=-1).amax(dim=-1).mean().item()


# ----------------------------------------------------------------------------------------------- demo

def find_the_token(t: int = 12, d: int = 16, target: int = 7, seed: int = 0):
    """A toy retrieval: one query aligned with one key (the needle); attention should put its weight there."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(1, t, d, generator=gen)
    q = 3.0 * k[:, target:target + 1] + 0.1 * torch.randn(1, 1, d, generator=gen)  # (1, 1, d)
    v = torch.eye(t).unsqueeze(0)  # value j is the one-hot vector e_j, so the output is the weight row itself
    return q, k, v


def plot_heatmaps(panels: list[tuple[str, torch.Tensor]], path) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), layout="constrained")
    for ax, (title, w) in zip(axes, panels):
        im = ax.imshow(w.detach().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=10, help="tokens in the demo sequence")
    parser.add_argument("--d-k", type=int, default=16, help="head size of the demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    labkit.seed_everything(args.seed)
    out_dir = labkit.output_dir(__file__)

    print("1) softmax on logits [1e4, 0, -1e4]:")
    big = torch.tensor([1e4, 0.0, -1e4])
    print(f"   naive : {naive_softmax(big).tolist()}")
    print(f"   stable: {stable_softmax(big).tolist()}")
    masked_row = torch.full((3,), float("-inf"))
    print(f"   fully masked row -> torch.softmax {torch.softmax(masked_row, -1).tolist()}, "
          f"stable_softmax {stable_softmax(masked_row).tolist()}")

    print("\n2) three implementations vs torch SDPA (float64, causal + padding mask):")
    t, d = args.seq_len, args.d_k
    q, k, v = (torch.randn(2, 2, t, d, dtype=torch.float64) for _ in range(3))
    mask = causal_mask(t) & padding_mask([t, t - 3], t).unsqueeze(1)  # (2, 1, t, t): heads broadcast
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    for name, fn in [("loops", attention_loops), ("bmm", attention_bmm), ("einsum", attention_einsum)]:
        out, _ = fn(q, k, v, mask)
        print(f"   {name:<7} max |ours - SDPA| = {(out - reference).abs().max().item():.2e}")

    print("\n3) why divide by sqrt(d_k): variance of q.k for unit-variance entries")
    print(f"   {'d_k':>5} {'Var(q.k)':>10} {'Var(q.k/sqrt d)':>16} {'max weight raw':>15} {'scaled':>8}")
    for dk in (4, 16, 64, 256):
        print(f"   {dk:>5} {score_variance(dk):>10.2f} {score_variance(dk, scaled=True):>16.3f} "
              f"{softmax_peak(dk, scaled=False):>15.3f} {softmax_peak(dk):>8.3f}")

    qs, ks, vs = (torch.randn(1, t, d) for _ in range(3))
    _, w_full = attention_einsum(qs, ks, vs)
    _, w_causal = attention_einsum(qs, ks, vs, causal_mask(t))
    _, w_pad = attention_einsum(qs, ks, vs, causal_mask(t) & padding_mask([t - 3], t))
    _, w_raw = attention_einsum(qs * 4, ks * 4, vs)  # larger logits: the softmax sharpens towards one-hot
    fq, fk, fv = find_the_token(t=max(t, 8), d=d, target=min(7, max(t, 8) - 1))
    out, _ = attention_einsum(fq, fk, fv)
    print(f"\n4) find-the-token: the needle is key {min(7, max(t, 8) - 1)}; the output (= the weights) "
          f"puts {out[0, 0].max().item():.3f} on key {int(out[0, 0].argmax())}")
    path = out_dir / "attention_heatmaps.png"
    plot_heatmaps([("no mask", w_full[0]), ("causal", w_causal[0]), ("causal + 3 pad keys", w_pad[0]),
                   ("logits x16 (sharper)", w_raw[0])], path)
    print(f"\nheatmaps written to {path}")


if __name__ == "__main__":
    labkit.run(main)
