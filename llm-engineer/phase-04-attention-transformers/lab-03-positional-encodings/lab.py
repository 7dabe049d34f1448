"""Lab 03: positional encodings (sinusoidal, learned, RoPE, ALiBi) and how far each one extrapolates.

Attention is permutation-equivariant: shuffle the tokens and the outputs shuffle with them. Order has to be
injected. Two families:
- absolute, added to the token embeddings before the first layer: sinusoidal (fixed sin/cos features) and
  learned (a trained table with one row per position, so it has nothing to say past its last row);
- relative, applied inside every attention layer: RoPE rotates each (query, key) 2-D pair by an angle
  proportional to the position, so q_m·k_n depends on m - n only; ALiBi adds -slope·|i - j| to the scores,
  a per-head linear distance penalty, and uses no position vector at all.

The demo trains one tiny character-level LM per scheme on Shakespeare at context length L and evaluates it at
L, 2L and 4L, writing a loss-vs-length plot.

Shapes: positions are integer tensors (T,); per-head tensors are (B, H, T, d_head).
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

import labkit  # noqa: E402
from labkit import assets  # noqa: E402

SCHEMES = ("sinusoidal", "learned", "rope", "alibi")


# ----------------------------------------------------------------------------------------------- absolute

def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10_000.0) -> torch.Tensor:
    """(n_positions, d_model) table: PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = base^(-2i/d).

    Wavelengths run geometrically from 2π (i = 0) to about 2π·base, so nearby positions differ in the fast
    dimensions and far ones in the slow dimensions.
    """
    if d_model % 2 or d_model <= 0 or n_positions <= 0:
        raise ValueError(f"need a positive even d_model and n_positions >= 1, got d_model={d_model}, "
                         f"n_positions={n_positions}")
    # TODO [sinusoidal]: Outer product of positions and the d/2 frequencies; sin into even columns, cos into odd.
    raise NotImplementedError('TODO [sinusoidal]: Outer product of positions and the d/2 frequencies; sin into even columns, cos into odd.')


class LearnedPositions(nn.Module):
    """A trained (max_len, d_model) table, like GPT-2's wpe. Positions past the table raise, or with
    clamp=True reuse the last row (the simplest way to run such a model on longer inputs)."""

    def __init__(self, max_len: int, d_model: int, clamp: bool = False):
        super().__init__()
        self.max_len, self.clamp = max_len, clamp
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions: integer tensor of any shape -> (*positions.shape, d_model)."""
        # TODO [learned-positions]: Refuse negatives; past max_len raise a ValueError naming the limit, unless clamp (then clamp to max_len - 1); look the rows up.
        raise NotImplementedError('TODO [learned-positions]: Refuse negatives; past max_len raise a ValueError naming the limit, unless clamp (then clamp to max_len - 1); look the rows up.')


# ----------------------------------------------------------------------------------------------- RoPE

def rope_cos_sin(positions: torch.Tensor, d_head: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, d_head) in the rotate-half layout: dim i and dim i + d/2 form one pair, whose
    angle is position·θ_i with θ_i = base^(-2i/d). Both halves of the table repeat the same d/2 angles."""
    if d_head % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions, so d_head must be even, got {d_head}")
    theta = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (d/2,)
    angles = positions.to(torch.float64).unsqueeze(-1) * theta  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim: a 90° turn of every (x1_i, x2_i) pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotate x (..., T, d_head) by its positions (T,), rotate-half convention (Llama / Hugging Face).

    Each pair (a, b) = (x_i, x_{i+d/2}) becomes (a cos φ - b sin φ, a sin φ + b cos φ) with φ = pos·θ_i,
    i.e. x·cos + rotate_half(x)·sin. A rotation keeps norms, and R(m)ᵀR(n) = R(n - m), hence
    ⟨R(m)q, R(n)k⟩ depends on n - m only.
    """
    if x.shape[-2] != positions.shape[-1]:
        raise ValueError(f"x has {x.shape[-2]} positions along dim -2 but {positions.shape[-1]} positions were given")
    # TODO [rope]: Get cos/sin from rope_cos_sin (cast to x's dtype), then x*cos + rotate_half(x)*sin.
    raise NotImplementedError("TODO [rope]: Get cos/sin from rope_cos_sin (cast to x's dtype), then x*cos + rotate_half(x)*sin.")


def apply_rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """The same rotation written with complex numbers, in the interleaved layout of the RoFormer paper and
    Meta's original Llama code: pair i is (x_{2i}, x_{2i+1}) = the complex number z_i, and rotating it by φ
    is multiplying by e^{iφ}. Equal to apply_rope after permuting dims [0, 2, 4, …, 1, 3, 5, …]."""
    if x.shape[-1] % 2:
        raise ValueError(f"d_head must be even, got {x.shape[-1]}")
    # TODO [rope-complex]: view_as_complex over (..., d/2, 2), multiply by torch.polar(1, pos·θ), view_as_real, flatten back.
    raise NotImplementedError('TODO [rope-complex]: view_as_complex over (..., d/2, 2), multiply by torch.polar(1, pos·θ), view_as_real, flatten back.')


# ----------------------------------------------------------------------------------------------- ALiBi

def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes from the ALiBi paper (Press et al., 2022).

    n a power of two: the geometric sequence 2^(-8/n), 2^(-16/n), …, 2^(-8) (n = 8 gives 1/2, 1/4, …, 1/256).
    Otherwise, with m the largest power of two below n: the m slopes for m heads, followed by every other slope
    of the 2m-head sequence (the 1st, 3rd, 5th …) until there are n.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    # TODO [alibi]: Helper for powers of two (start = 2^(-8/n), slope_i = start^i); otherwise combine the m and the 2m sequences as described.
    raise NotImplementedError('TODO [alibi]: Helper for powers of two (start = 2^(-8/n), slope_i = start^i); otherwise combine the m and the 2m sequences as described.')


def alibi_bias(n_heads: int, t_q: int, t_k: int | None = None) -> torch.Tensor:
    """(n_heads, t_q, t_k) additive score bias: -slope_h · |i - j|, queries aligned to the end of the keys
    (query i sits at position t_k - t_q + i, as when decoding with a cache). Zero on the diagonal."""
    t_k = t_q if t_k is None else t_k
    if t_q > t_k:
        raise ValueError(f"need t_q <= t_k (queries are the last t_q of the keys), got t_q={t_q}, t_k={t_k}")
    # TODO [alibi]: Query positions (offset by t_k - t_q) against key positions, absolute distance, times -slope per head.
    raise NotImplementedError('TODO [alibi]: Query positions (offset by t_k - t_q) against key positions, absolute distance, times -slope per head.')


# ----------------------------------------------------------------------------------------------- the tiny LM

def positional_attention(q, k, v, scheme: str, positions: torch.Tensor) -> torch.Tensor:
    """Causal attention over (B, H, T, d_head) tensors with the scheme's in-attention part:
    rope rotates q and k by `positions`; alibi adds alibi_bias to the scores; the absolute schemes
    (sinusoidal, learned) add nothing here (they were added to the embeddings). Returns (B, H, T, d_head)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    t = q.shape[-2]
    # TODO [positional-attention]: rope: rotate q and k; scores q·kᵀ/√d; alibi: add the bias; fill future keys with -inf; softmax; times v.
    raise NotImplementedError('TODO [positional-attention]: rope: rotate q and k; scores q·kᵀ/√d; alibi: add the bias; fill future keys with -inf; softmax; times v.')


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, scheme: str):
        super().__init__()
        self.n_heads, self.scheme = n_heads, scheme
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = positional_attention(q, k, v, self.scheme, positions)  # (B, H, T, d_head)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """A small pre-norm decoder whose only difference between runs is the positional scheme."""

    def __init__(self, vocab_size: int, scheme: str, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 train_len: int = 64):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.tok = nn.Embedding(vocab_size, d_model)
        # learned positions clamp past the training length so that longer inputs still run
        self.learned = LearnedPositions(train_len, d_model, clamp=True) if scheme == "learned" else None
        self.blocks = nn.ModuleList(Block(d_model, n_heads, scheme) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V). `offset` shifts every position (the first token sits at
        `offset`); relative schemes must not notice it, absolute ones do."""
        t = idx.shape[1]
        positions = torch.arange(offset, offset + t, device=idx.device)
        x = self.tok(idx)
        if self.scheme == "sinusoidal":
            x = x + sinusoidal_encoding(offset + t, x.shape[-1]).to(x.device)[offset:]
        elif self.scheme == "learned":
            x = x + self.learned(positions)
        for block in self.blocks:
            x = block(x, positions)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------------------------- experiment

def char_data(n_chars: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Shakespeare as character ids, split 90/10 into train and validation."""
    text = assets.shakespeare(n_chars)
    vocab = sorted(set(text))
    stoi = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], len(vocab)


def batch(data: torch.Tensor, length: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.randint(0, len(data) - length - 1, (size,), generator=gen)
    x = torch.stack([data[s:s + length] for s in start.tolist()])
    y = torch.stack([data[s + 1:s + length + 1] for s in start.tolist()])
    return x, y


def train(model: nn.Module, data: torch.Tensor, length: int, steps: int, batch_size: int = 32, lr: float = 3e-3,
          seed: int = 0, progress: bool = True) -> list[float]:
    """AdamW with a short linear warmup; returns the training losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc=f"train {getattr(model, 'scheme', '')}", leave=False, disable=not progress):
        x, y = batch(data, length, batch_size, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, length: int, n_windows: int = 32, seed: int = 1) -> float:
    """Mean next-token loss over every position of `n_windows` random windows of `length` tokens."""
    model.eval()
    x, y = batch(data, length, n_windows, torch.Generator().manual_seed(seed))
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()


def plot_extrapolation(results: dict[str, list[float]], lengths: list[int], train_len: int, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for scheme, losses in results.items():
        ax.plot(lengths, losses, marker="o", label=scheme)
    ax.axvline(train_len, color="grey", linestyle="--", linewidth=1)
    ax.text(train_len, ax.get_ylim()[1], " train length", va="top", color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("evaluation context length (tokens)")
    ax.set_ylabel("validation loss (nats / char)")
    ax.set_title("Length extrapolation of positional schemes")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-len", type=int, default=32, help="context length L used in training")
    parser.add_argument("--steps", type=int, default=250, help="training steps per scheme")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chars", type=int, default=400_000, help="characters of Shakespeare to use")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; for a model this small, one thread beats two")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    labkit.seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    out_dir = labkit.output_dir(__file__)

    q, k = torch.randn(2, 16, dtype=torch.float64)
    dots = [(apply_rope(q[None], torch.tensor([m])) @ apply_rope(k[None], torch.tensor([m - 3])).T).item()
            for m in (3, 10, 100)]
    print(f"RoPE: q.k at positions (3,0), (10,7), (100,97): {', '.join(f'{d:.6f}' for d in dots)}  (same offset)")
    print(f"ALiBi slopes, 8 heads : {[f'1/{round(1 / s)}' for s in alibi_slopes(8).tolist()]}")
    print(f"ALiBi slopes, 12 heads: {[round(s, 4) for s in alibi_slopes(12).tolist()]}")

    train_data, val_data, vocab = char_data(args.chars)
    lengths = [args.train_len, 2 * args.train_len, 4 * args.train_len]
    print(f"\ntraining {len(args.schemes)} tiny LMs on {len(train_data):,} characters (vocab {vocab}), "
          f"L={args.train_len}, {args.steps} steps each")
    results = {}
    for scheme in args.schemes:
        torch.manual_seed(args.seed)
        model = TinyLM(vocab, scheme, train_len=args.train_len)
        losses = train(model, train_data, args.train_len, args.steps, args.batch_size, seed=args.seed)
        results[scheme] = [evaluate(model, val_data, n) for n in lengths]
        cells = "  ".join(f"{n}: {loss:.3f}" for n, loss in zip(lengths, results[scheme]))
        print(f"  {scheme:<10} final train loss {losses[-1]:.3f} | validation loss at {cells}")
    path = out_dir / "extrapolation.png"
    plot_extrapolation(results, lengths, args.train_len, path)
    print(f"\nplot written to {path}")


if __name__ == "__main__":
    labkit.run(main)
