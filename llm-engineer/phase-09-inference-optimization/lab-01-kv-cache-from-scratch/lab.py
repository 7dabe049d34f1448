"""KV-cache from scratch: make a decoder generate in O(1) new work per token instead of re-reading the prompt.

Autoregressive decoding runs the model once per new token. Without a cache every step recomputes keys and
values for the whole prefix, although they never change: a token's K and V depend only on the tokens at or
before it. A KV-cache keeps them. The first call (prefill) fills it with the prompt; each later call (decode)
feeds one token, appends its K/V and attends over everything cached.

The model is a small GPT-style decoder in the Llama layout (RMSNorm, rotary positions, SwiGLU MLP, grouped-query
attention) so that its weights map one to one onto `transformers.LlamaForCausalLM`, the independent reference in
the tests. What you build:

1. `kv_cache_bytes`: the memory a cache costs, for any model (the number that sizes a serving fleet).
2. `rope_cos_sin` / `apply_rope`: rotary positions for an arbitrary slice of absolute positions.
3. `KVCache`: one preallocated tensor per model, written in place as tokens arrive.
4. `CausalSelfAttention.forward`: attention over cached + new keys, with GQA and a (T, S) causal mask.
5. `GPT.forward`: positions that continue where the cache stopped; advance the cache once per call.
6. `generate`: prefill + decode with the cache, full recompute without it, and a defined behaviour at the
   context limit.

Cache layout: `KVCache.kv` has shape (n_layer, 2, batch, n_kv_head, max_seq, head_dim). Index 0 of the second
axis holds keys, 1 holds values. Layer i reads `kv[i, 0, :, :, :length]`, a contiguous view, so attention needs
no copy. One allocation up front means no torch.cat per token (which would copy the whole cache every step).

Context limit: `config.block_size` is the longest context the model attends over, and the cache's `max_seq`.
When a sequence grows past it, both paths attend over the last `block_size` tokens only (a sliding crop, with
positions 0..block_size-1 inside the window, as nanoGPT does). Shifting the window changes every token's
position, so cached K/V go stale: the cached path then re-prefills the cropped window (a rolling recompute).
The two paths therefore agree token for token at any length; past the limit the cache stops saving work.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit


# ---------------------------------------------------------------------------------------------- configuration

@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 256        # longest context (and the cache's max_seq)
    n_layer: int = 2
    n_head: int = 4              # query heads
    n_kv_head: int = 2           # key/value heads; n_head // n_kv_head query heads share each (GQA)
    n_embd: int = 128
    ffn_hidden: int = 256        # SwiGLU inner width
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head} "
                             "(each KV head serves a whole group of query heads)")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings; change n_embd or n_head")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# ---------------------------------------------------------------------------------------------- memory math

def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int, batch: int = 1,
                   bytes_per_elem: int = 2) -> int:
    """Bytes a KV-cache holds: K and V, for every layer, KV head, channel, position and sequence.

    Llama-3-8B (32 layers, 8 KV heads, head_dim 128) at 8192 tokens in bf16: 1,073,741,824 B (1.07 GB, 1 GiB).
    """
    for name, value in dict(n_layers=n_layers, n_kv_heads=n_kv_heads, head_dim=head_dim, seq_len=seq_len,
                            batch=batch, bytes_per_elem=bytes_per_elem).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"kv_cache_bytes: {name} must be a positive int, got {value!r}")
    # TODO [kv-bytes]: Two tensors (K and V), each one element per layer, KV head, channel, position and sequence.
    raise NotImplementedError('TODO [kv-bytes]: Two tensors (K and V), each one element per layer, KV head, channel, position and sequence.')


# ---------------------------------------------------------------------------------------------- rotary positions

def rope_cos_sin(head_dim: int, positions: torch.Tensor, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, head_dim), for the absolute `positions` (T,) of a chunk of tokens.

    Pair j of channels turns at frequency theta^(-2j/head_dim); the two halves of the head share frequencies
    (the "rotate half" layout used by Llama and transformers).
    """
    # TODO [rope]: One angle per (position, frequency): outer product, then repeat it for both halves.
    raise NotImplementedError('TODO [rope]: One angle per (position, frequency): outer product, then repeat it for both halves.')


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, head_dim) by its positions' angles: x*cos + rotate_half(x)*sin."""
    # TODO [rope]: Split the head in halves (a, b); the rotated partner is (-b, a).
    raise NotImplementedError('TODO [rope]: Split the head in halves (a, b); the rotated partner is (-b, a).')


# ---------------------------------------------------------------------------------------------- the cache

class KVCache:
    """Keys and values of every layer in one preallocated tensor.

    kv: (n_layer, 2, batch, n_kv_head, max_seq, head_dim); kv[layer, 0] are keys, kv[layer, 1] values.
    length: how many positions are filled (the same for every layer and every sequence of the batch).
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_seq: int | None = None, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        max_seq = config.block_size if max_seq is None else max_seq
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"KVCache: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(max_seq, int) or max_seq < 1:
            raise ValueError(f"KVCache: max_seq must be a positive int, got {max_seq!r}")
        self.max_seq = max_seq
        # TODO [kv-cache]: Allocate zeros of the documented shape once, and start with nothing filled.
        raise NotImplementedError('TODO [kv-cache]: Allocate zeros of the documented shape once, and start with nothing filled.')

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def reset(self) -> None:
        """Forget every position (the memory stays allocated; stale entries are never read)."""
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_kv_head, T, head_dim) at positions [length, length + T) of `layer`.

        Returns that layer's keys and values for positions [0, length + T), each (B, n_kv_head, length + T,
        head_dim). Does not move `length`: every layer writes the same positions, so the model advances it once.
        """
        if k.shape != v.shape or k.dim() != 4:
            raise ValueError(f"KVCache.update: k and v must both be (B, n_kv_head, T, head_dim), got "
                             f"{tuple(k.shape)} and {tuple(v.shape)}")
        # TODO [kv-cache]: Copy into the slots after `length`, then return views up to the new end.
        raise NotImplementedError('TODO [kv-cache]: Copy into the slots after `length`, then return views up to the new end.')


# ---------------------------------------------------------------------------------------------- the model

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # x / sqrt(mean(x^2) + eps) * g, computed in float32
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        """x: (B, T, n_embd) for T new tokens; cos/sin: (T, head_dim) for their absolute positions.

        With a cache, the new keys/values go in at positions [cache.length, cache.length + T) and the queries
        attend over every cached position; without one, over these T tokens only.
        """
        B, T, _ = x.shape
        # TODO [attention]: Project, rotate q and k, append k/v to the cache, repeat KV heads per group, mask with the past offset.
        raise NotImplementedError('TODO [attention]: Project, rotate q and k, append k/v to the cache, repeat KV heads per group, mask with the past offset.')
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H*hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden, config.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = CausalSelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache=None, layer=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer)  # pre-norm residual stream
        return x + self.mlp(self.post_attention_layernorm(x))


class GPT(nn.Module):
    """Decoder-only LM. forward(idx, cache=None) -> (logits (B, T, vocab), cache)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """idx: (B, T) new token ids. With a cache they continue the cached sequence (positions start at
        cache.length) and the cache comes back advanced by T; without one they are a whole sequence."""
        if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"GPT.forward: idx must be a (batch, time) integer tensor, got {tuple(idx.shape)} "
                             f"{idx.dtype}")
        B, T = idx.shape
        used = 0 if cache is None else cache.length
        limit = self.config.block_size if cache is None else cache.max_seq
        if used + T > limit:
            raise ValueError(f"GPT.forward: {used} cached + {T} new positions exceed the context limit of {limit}; "
                             f"crop the input to the last {limit} tokens or reset the cache")
        if cache is not None and cache.kv.size(2) != B:
            raise ValueError(f"GPT.forward: the cache was built for batch {cache.kv.size(2)}, idx has batch {B}")
        x = self.embed_tokens(idx)                                               # (B, T, C)
        # TODO [cached-forward]: Positions continue after what is cached; run every block with the cache, then advance it once.
        raise NotImplementedError('TODO [cached-forward]: Positions continue after what is cached; run every block with the cache, then advance it once.')
        return self.lm_head(self.norm(x)), cache                                 # (B, T, vocab)

    @classmethod
    def from_llama(cls, hf_model, block_size: int | None = None) -> "GPT":
        """Copy a transformers LlamaForCausalLM (default RoPE, no biases) into this class."""
        c = hf_model.config
        rope = getattr(c, "rope_parameters", None) or {"rope_theta": getattr(c, "rope_theta", 10000.0)}
        if rope.get("rope_type", "default") != "default" or getattr(c, "attention_bias", False):
            raise ValueError("GPT.from_llama: only plain RoPE and bias-free projections are supported")
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        if head_dim * c.num_attention_heads != c.hidden_size:
            raise ValueError(f"GPT.from_llama: head_dim {head_dim} x {c.num_attention_heads} heads != hidden size")
        config = GPTConfig(vocab_size=c.vocab_size, block_size=block_size or c.max_position_embeddings,
                           n_layer=c.num_hidden_layers, n_head=c.num_attention_heads,
                           n_kv_head=c.num_key_value_heads, n_embd=c.hidden_size, ffn_hidden=c.intermediate_size,
                           rope_theta=float(rope["rope_theta"]), norm_eps=c.rms_norm_eps)
        model = cls(config)
        state = {name.removeprefix("model."): tensor for name, tensor in hf_model.state_dict().items()}
        state.setdefault("lm_head.weight", state["embed_tokens.weight"])
        model.load_state_dict(state)
        return model.to(next(hf_model.parameters()).dtype)


# ---------------------------------------------------------------------------------------------- generation

@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, *,
             temperature: float = 0.0, generator: torch.Generator | None = None,
             return_logits: bool = False):
    """Extend idx (B, T) by max_new_tokens tokens; greedy when temperature == 0, else sampled.

    Returns (B, T + max_new_tokens), or with return_logits also the logits of every step (B, max_new_tokens,
    vocab). Both paths see the last `block_size` tokens only; with the cache, a window that slid past the limit
    is re-prefilled, so the tokens are the same either way.
    """
    if idx.dim() != 2 or idx.size(1) == 0 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"generate: idx must be a non-empty (batch, time) integer tensor, got "
                         f"{tuple(idx.shape)} {idx.dtype}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0 (0 means greedy), got {temperature}")
    model.eval()
    limit = model.config.block_size
    steps = []
    # TODO [generate]: Without a cache run the cropped window each step; with one feed only the unseen tokens, resetting when the window slides.
    raise NotImplementedError('TODO [generate]: Without a cache run the cropped window each step; with one feed only the unseen tokens, resetting when the window slides.')
    if return_logits:
        vocab = model.config.vocab_size
        return idx, (torch.stack(steps, dim=1) if steps else idx.new_zeros(idx.size(0), 0, vocab, dtype=torch.float))
    return idx


# ---------------------------------------------------------------------------------------------- demo

def char_data(chars: int):
    """Shakespeare as character ids, and the alphabet."""
    from labkit import assets

    text = assets.shakespeare(chars)
    alphabet = sorted(set(text))
    ids = torch.tensor([alphabet.index(ch) for ch in text], dtype=torch.long)
    return ids, alphabet


def train_briefly(model: GPT, data: torch.Tensor, steps: int, batch: int, seq: int, lr: float = 3e-3) -> list[float]:
    """A few hundred AdamW steps of next-character prediction: enough for word-like text."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="training", leave=False):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s:s + seq] for s in starts])
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def time_per_token(model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> tuple[torch.Tensor, list]:
    """Generate and record the wall time of each forward call (one call per generated token)."""
    times, started = [], []
    pre = model.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
    post = model.register_forward_hook(lambda *_: times.append(time.perf_counter() - started[-1]))
    try:
        out = generate(model, prompt, new_tokens, use_cache=use_cache)
    finally:
        pre.remove()
        post.remove()
    return out, times


def rolling_median(values: list, width: int = 9) -> list:
    """Median of each value's neighbourhood: one preempted step on a busy CPU should not hide the trend."""
    half = width // 2
    smoothed = []
    for i in range(len(values)):
        window = sorted(values[max(0, i - half):i + half + 1])
        smoothed.append(window[len(window) // 2])
    return smoothed


def save_plot(path, prompt_len: int, block_size: int, cached: list, uncached: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    positions = [prompt_len + i for i in range(len(cached))]
    for times, label in ((uncached, "no cache (full recompute)"), (cached, "KV-cache")):
        ax.plot(positions, [1e3 * t for t in rolling_median(times)], label=label, lw=1.2)
    ax.axvline(block_size, color="grey", ls="--", lw=0.8, label=f"context limit ({block_size})")
    ax.set_xlabel("sequence length when the token is generated")
    ax.set_ylabel("ms per token (rolling median of 9)")
    ax.set_yscale("log")
    ax.set_title("Decode time per token")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)   # never leave a half-written PNG under the final name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=150, help="0 keeps the model random")
    parser.add_argument("--new-tokens", type=int, default=320, help="tokens to generate (past block-size shows the limit)")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--prompt", default="ROMEO:\n")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; one is fastest for a model this small and steadier on a busy CPU")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    labkit.seed_everything(args.seed)
    data, alphabet = char_data(300_000)
    config = GPTConfig(vocab_size=len(alphabet), block_size=args.block_size)
    model = GPT(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {config.n_layer} layers, d={config.n_embd}, {config.n_head} query / {config.n_kv_head} KV heads, "
          f"{n_params / 1e3:.0f}k params, context {config.block_size}")
    if args.train_steps:
        start = time.perf_counter()
        losses = train_briefly(model, data, args.train_steps, batch=12, seq=min(128, config.block_size))
        print(f"trained {args.train_steps} steps on Shakespeare chars in {time.perf_counter() - start:.1f} s: "
              f"loss {losses[0]:.2f} -> {losses[-1]:.2f} (ln V = {math.log(config.vocab_size):.2f})")

    prompt = torch.tensor([[alphabet.index(ch) for ch in args.prompt if ch in alphabet]], dtype=torch.long)
    out_cached, t_cached = time_per_token(model, prompt, args.new_tokens, use_cache=True)
    out_plain, t_plain = time_per_token(model, prompt, args.new_tokens, use_cache=False)
    same = torch.equal(out_cached, out_plain)
    text = "".join(alphabet[i] for i in out_cached[0].tolist())
    print(f"\n--- generated (greedy, {args.new_tokens} tokens) ---\n{text[:400]}\n---")
    print(f"identical tokens with and without the cache: {same}")
    sampled = generate(model, prompt, 160, temperature=0.8, generator=torch.Generator().manual_seed(args.seed))
    print(f"--- sampled at temperature 0.8 (a briefly trained model repeats itself when greedy) ---\n"
          f"{''.join(alphabet[i] for i in sampled[0].tolist())}\n---")
    inside = sum(1 for i in range(args.new_tokens) if prompt.size(1) + i <= config.block_size)
    for name, times in (("KV-cache", t_cached), ("no cache", t_plain)):
        within = sorted(times[:inside]) or [float("nan")]
        print(f"{name:9s} total {sum(times):6.2f} s  {len(times) / sum(times):7.0f} tok/s  "
              f"median {1e3 * within[len(within) // 2]:6.2f} ms/token inside the context limit")
    print(f"speedup inside the limit: {sum(t_plain[:inside]) / sum(t_cached[:inside]):.1f}x "
          f"(past {config.block_size} tokens the cached path re-prefills each step, so the gap closes)")

    cache_bytes = kv_cache_bytes(config.n_layer, config.n_kv_head, config.head_dim, config.block_size,
                                 bytes_per_elem=4)
    llama = kv_cache_bytes(32, 8, 128, 8192)
    print(f"\nKV-cache of this model at {config.block_size} tokens, fp32: {cache_bytes:,} B")
    print(f"Llama-3-8B at 8192 tokens, bf16, 8 KV heads: {llama:,} B = {llama / 1e9:.2f} GB per sequence; "
          f"x32 sequences = {32 * llama / 1e9:.1f} GB; without GQA (32 KV heads) {4 * llama / 1e9:.2f} GB each")

    path = labkit.output_dir(__file__) / "time_per_token.png"
    save_plot(path, prompt.size(1), config.block_size, t_cached, t_plain)
    print(f"plot: {path}")


if __name__ == "__main__":
    labkit.run(main)
