"""Mini transformer: a decoder-only language model built from its parts.

What this lab teaches
- causal multi-head self-attention written out by hand: softmax(QK^T / sqrt(d_head) + M) V;
- the transformer block: attention and MLP sub-layers on a residual stream, with LayerNorm placed before each
  sub-layer (pre-norm, GPT-2 and Llama) or after the residual add (post-norm, the 2017 paper);
- the full decoder: token + learned position embeddings, N blocks, a final norm, and an LM head that shares
  its weight matrix with the token embedding (weight tying);
- counting parameters with a closed formula, and two sanity checks every LM should pass: a fresh model's loss
  is ln(V), and the model can memorise one batch;
- sampling text one token at a time: crop the context to block_size, scale the last logits by 1/temperature,
  keep the top k, draw from the softmax with torch.multinomial.

The demo trains tiny models on Shakespeare characters, compares pre-norm with post-norm, saves the loss
curves and the attention maps as PNGs, and samples text from the trained model.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import matplotlib
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit
from labkit import assets

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class GPTConfig:
    vocab_size: int = 1000
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 256            # the MLP's hidden width, usually 4 * d_model
    block_size: int = 32       # the longest context the position table covers
    dropout: float = 0.0
    bias: bool = False         # biases in the Linear layers (GPT-2 has them; most recent models do not)
    tie_weights: bool = True   # the LM head reuses the token-embedding matrix
    norm_first: bool = True    # pre-norm (True) or post-norm (False)

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}; "
                             "pick n_head among the divisors of d_model")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only sees positions <= t."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # W_q, W_k, W_v stacked in one matmul
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)     # W_o: mixes the heads back together
        self.drop = nn.Dropout(cfg.dropout)
        # True on and below the diagonal: query i may look at key j when j <= i. Not saved in the state dict.
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, cfg.block_size, cfg.block_size), persistent=False)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x: (B, T, C) -> (B, T, C); with return_weights, also the attention weights (B, n_head, T, T)."""
        B, T, C = x.shape
        # BEGIN SOLUTION [causal-attention] Project to q, k, v and split into heads; scale the scores, mask the future with -inf, softmax over keys, mix values, merge heads, project.
        q, k, v = self.qkv(x).split(C, dim=-1)                                  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)               # (B, H, T, T)
        scores = scores.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))   # future keys get zero weight
        weights = F.softmax(scores, dim=-1)                                     # each row sums to 1
        y = self.drop(weights) @ v                                              # (B, H, T, d_head)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                        # heads side by side again
        out = self.drop(self.proj(y))
        # END SOLUTION
        return (out, weights) if return_weights else out


class MLP(nn.Module):
    """Position-wise feed-forward: d_model -> d_ff -> d_model with a GELU between."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION [block] Widen, exact GELU, narrow back, dropout.
        return self.drop(self.proj(F.gelu(self.fc(x))))
        # END SOLUTION


class Block(nn.Module):
    """One transformer layer: an attention sub-layer and an MLP sub-layer, each wrapped in a residual add."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias), nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn, self.mlp = CausalSelfAttention(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x: (B, T, C) -> (B, T, C) (and the attention weights when asked)."""
        # BEGIN SOLUTION [block] Pre-norm: x + f(LN(x)) for each sub-layer. Post-norm: LN(x + f(x)).
        if self.norm_first:   # the residual stream itself is never normalised; each sub-layer reads a normed copy
            a, weights = self.attn(self.ln1(x), return_weights=True)
            x = x + a
            x = x + self.mlp(self.ln2(x))
        else:                 # the 2017 layout: normalise after each residual add
            a, weights = self.attn(x, return_weights=True)
            x = self.ln1(x + a)
            x = self.ln2(x + self.mlp(x))
        # END SOLUTION
        return (x, weights) if return_weights else x


class MiniGPT(nn.Module):
    """Decoder-only LM: embeddings -> n_layer blocks -> final LayerNorm -> LM head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)  # learned absolute positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # BEGIN SOLUTION [init-and-tying] Share one Parameter between head and token embedding (assign, do not copy), then initialise every module.
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight  # the same Parameter object: one matrix, two uses
        self.apply(self._init_weights)
        # END SOLUTION

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, 0.02) for weight matrices and embeddings, zeros for biases, (1, 0) for LayerNorm."""
        # BEGIN SOLUTION [init-and-tying] Small normal weights keep the initial logits near zero, so the first prediction is close to uniform.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        # END SOLUTION

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx: (B, T) token ids -> (logits (B, T, V), mean cross-entropy against targets or None)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}; crop the input "
                             "to its last block_size tokens")
        # BEGIN SOLUTION [decoder] Sum token and position embeddings, run the blocks, final norm, head; the loss is cross-entropy on logits (no softmax first).
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))   # (B, T, C): the residual stream starts here
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))                        # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        # END SOLUTION
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens tokens, one at a time. Returns (B, T + max_new_tokens).

        Each step feeds the last block_size tokens (the position table ends there) and keeps only the logits of
        the last position, (B, V). Dividing them by the temperature sharpens (< 1) or flattens (> 1) the
        distribution; with top_k, every logit below the k-th largest becomes -inf, so only the k best tokens
        (and any tied with the k-th) can be drawn. One token per row is then drawn with
        torch.multinomial(softmax(logits), 1, generator=generator). top_k=1 is greedy decoding. The caller
        chooses train/eval mode (call eval() first when the model has dropout)."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy decoding), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be None or >= 1, got {top_k}")
        if idx.ndim != 2 or idx.shape[1] < 1:
            raise ValueError(f"idx must be (B, T) token ids with T >= 1, got shape {tuple(idx.shape)}")
        # BEGIN SOLUTION [generate] Loop: crop to the last block_size tokens, last position's logits / temperature, mask below the k-th largest (torch.topk) with -inf, softmax, torch.multinomial with the generator, append.
        for _ in range(max_new_tokens):
            context = idx[:, -self.cfg.block_size:]                    # (B, <= block_size)
            logits, _ = self(context)
            logits = logits[:, -1, :] / temperature                    # (B, V): the next-token scores
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, next_token], dim=1)
        return idx
        # END SOLUTION

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer for idx (B, T): a list of n_layer tensors (B, n_head, T, T)."""
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        maps = []
        for block in self.blocks:
            x, weights = block(x, return_weights=True)
            maps.append(weights)
        return maps


def count_parameters(cfg: GPTConfig) -> int:
    """Closed-form parameter count of MiniGPT(cfg), each shared matrix counted once."""
    # BEGIN SOLUTION [param-count] Per block: qkv 3d^2, output d^2, MLP 2*d*d_ff, two norms; then embeddings, final norm, and the head only when it is not tied. Add the biases when cfg.bias.
    d, f, V, L = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.n_layer
    norm = 2 * d if cfg.bias else d                  # LayerNorm: gain (+ shift)
    attn = 4 * d * d + (4 * d if cfg.bias else 0)    # qkv (3d x d) and proj (d x d), plus their biases
    mlp = 2 * d * f + (f + d if cfg.bias else 0)     # fc (f x d) and proj (d x f), plus their biases
    per_block = attn + mlp + 2 * norm
    embeddings = V * d + cfg.block_size * d
    head = 0 if cfg.tie_weights else V * d
    return embeddings + L * per_block + norm + head
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- the demo

def char_data(n_chars: int, device) -> tuple[torch.Tensor, list[str]]:
    """Shakespeare as a 1-D tensor of character ids, and the alphabet."""
    text = assets.shakespeare(max_chars=n_chars)
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    return torch.tensor([lookup[c] for c in text], dtype=torch.long, device=device), chars


def random_batch(data: torch.Tensor, block_size: int, batch_size: int, gen: torch.Generator):
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen).tolist()
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + 1:s + block_size + 1] for s in starts])
    return x, y


def train(cfg: GPTConfig, data: torch.Tensor, steps: int, lr: float, batch_size: int, seed: int, label: str,
          device) -> tuple[MiniGPT, list[float]]:
    """Plain AdamW at a constant learning rate, no warmup: the setting where the norm placement matters most."""
    torch.manual_seed(seed)
    model = MiniGPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(steps), desc=label, leave=False):
        x, y = random_batch(data, cfg.block_size, batch_size, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def smooth(values: list[float], k: int = 10) -> list[float]:
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def plot_attention(maps: list[torch.Tensor], text: str, path) -> None:
    layers, heads = len(maps), maps[0].shape[1]
    fig, axes = plt.subplots(layers, heads, figsize=(2.4 * heads, 2.4 * layers), squeeze=False)
    for l, layer in enumerate(maps):
        for h in range(heads):
            ax = axes[l][h]
            ax.imshow(layer[0, h].cpu(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(text)), list(text), fontsize=6)
            ax.set_yticks(range(len(text)), list(text), fontsize=6)
            ax.set_title(f"layer {l} head {h}", fontsize=8)
    fig.suptitle("attention weights (rows: queries, columns: keys)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per model in the ablation")
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="constant AdamW learning rate (no warmup)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--chars", type=int, default=300_000, help="Shakespeare characters to train on")
    parser.add_argument("--sample-chars", type=int, default=120, help="characters to generate after training")
    args = parser.parse_args(argv)
    device = labkit.pick_device()
    out = labkit.output_dir(__file__)

    # 1. Parameter count: the formula against PyTorch's own count.
    cfg = GPTConfig(vocab_size=1000, n_layer=2, n_head=4, d_model=64, d_ff=256, block_size=32)
    model = MiniGPT(cfg).to(device)
    numel = sum(p.numel() for p in model.parameters())  # parameters() yields the tied matrix once
    print(f"[params]  formula={count_parameters(cfg):,}  numel={numel:,}  (V=1000, d=64, 2 layers, block 32)")
    gpt2 = GPTConfig(vocab_size=50257, n_layer=12, n_head=12, d_model=768, d_ff=3072, block_size=1024, bias=True)
    print(f"[params]  GPT-2 small shape: {count_parameters(gpt2):,}")

    # 2. Initial loss: near-uniform predictions give cross-entropy ln(V).
    idx = torch.randint(cfg.vocab_size, (8, cfg.block_size), device=device)
    _, loss = model(idx, torch.randint(cfg.vocab_size, (8, cfg.block_size), device=device))
    print(f"[init-loss] got={loss.item():.4f}  expected≈{math.log(cfg.vocab_size):.4f}")

    # 3. Overfit one batch.
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = idx[:4], torch.roll(idx[:4], -1, dims=1)
    for step in range(1, 151):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"[overfit]   step {step}  loss={loss.item():.4f}")

    # 4. Pre-norm vs post-norm: same data, seed and learning rate, no warmup.
    data, chars = char_data(args.chars, device)
    curves, models = {}, {}
    for norm_first in (True, False):
        label = "pre-norm" if norm_first else "post-norm"
        ablation = GPTConfig(vocab_size=len(chars), n_layer=args.n_layer, n_head=4, d_model=args.d_model,
                             d_ff=4 * args.d_model, block_size=args.block_size, norm_first=norm_first)
        models[label], curves[label] = train(ablation, data, args.steps, args.lr, args.batch_size, seed=0,
                                             label=label, device=device)
        tail = curves[label][-20:]
        print(f"[ablation] {label:9s} first={curves[label][0]:.3f}  mean of last 20={sum(tail) / len(tail):.3f}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(smooth(losses), label=label)
    ax.set(xlabel="step", ylabel="training loss (10-step mean)",
           title=f"{args.n_layer} layers, d={args.d_model}, lr={args.lr:g}, no warmup")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "prenorm_vs_postnorm.png", dpi=120)
    plt.close(fig)

    # 5. Attention maps of the trained pre-norm model on a short line (first layers only, to stay readable).
    line = "ROMEO: the king is"[:args.block_size]
    ids = torch.tensor([[chars.index(c) for c in line]], device=device)
    plot_attention(models["pre-norm"].attention_maps(ids)[:3], line, out / "attention_maps.png")
    print(f"[artifacts] {out / 'prenorm_vs_postnorm.png'}\n            {out / 'attention_maps.png'}")

    # 6. Sampling from the trained pre-norm model: greedy (top_k=1), then temperature 0.8 with the top 10.
    model = models["pre-norm"].eval()
    prompt = torch.tensor([[chars.index(c) for c in "ROMEO:"]], device=device)
    for label, temperature, top_k in (("greedy", 1.0, 1), ("T=0.8, top-10", 0.8, 10)):
        gen = torch.Generator(device=device).manual_seed(0)
        ids = model.generate(prompt, args.sample_chars, temperature=temperature, top_k=top_k, generator=gen)
        text = "".join(chars[i] for i in ids[0].tolist())
        print(f"[sample] {label}:\n{text}\n")


if __name__ == "__main__":
    labkit.run(main)
