"""LLM coding questions: the ten from-scratch implementations interviewers ask for, each graded like a lab.

Write each one from memory, then run `make check LAB=02-llm-coding-questions` (add `TASK=<name>` for one task).
Every task's docstring states the cost an interviewer expects you to quote.

| task            | what you write                                                     | checked against            |
|-----------------|--------------------------------------------------------------------|----------------------------|
| attention       | causal mask (with a cache offset) and scaled dot-product attention | torch SDPA                 |
| multi-head      | split into heads, attend, merge heads                              | torch.nn.MultiheadAttention |
| kv-cache        | a cached decode step and cached greedy generation                  | the same model without cache |
| bpe             | byte-level BPE: train, encode, decode                              | HF tokenizers, definition  |
| sampling        | temperature, top-k, top-p, and their composition                   | transformers' logit warpers |
| beam-search     | beam search over a batched next-token function                     | brute force on a tiny model |
| rmsnorm         | RMSNorm                                                            | torch.nn.RMSNorm           |
| rope            | rotary position embedding (half-split layout)                      | transformers' Llama RoPE   |
| lora            | a LoRA-wrapped linear layer and its merged weight                  | peft                       |
| cross-entropy   | cross-entropy from logits, stable, with ignore_index               | torch.nn.functional        |

Shapes: B batch, T sequence length, H heads, D model width, d head width (D = H * d), V vocabulary.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import math
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

import labkit


# ============================================================== attention

def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """Boolean (t_q, t_k) mask, True where query i may look at key j.

    With t_k == t_q this is the lower triangle (a token sees itself and the past). With t_k > t_q the queries are
    the LAST t_q positions of a longer sequence (a decode step after t_k - t_q cached tokens): query i sits at
    absolute position i + (t_k - t_q) and sees every key j <= that position.
    Cost: O(t_q * t_k) memory.
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise ValueError(f"a causal mask needs at least as many keys as queries, got t_q={t_q}, t_k={t_k}")
    # TODO [attention]: A lower triangle of True (torch.tril), shifted right by the number of earlier keys.
    raise NotImplementedError('TODO [attention]: A lower triangle of True (torch.tril), shifted right by the number of earlier keys.')


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) with masked scores at -inf) v.

    q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v); mask: bool, broadcastable to (..., T_q, T_k), True = may
    attend (torch's convention for a bool attn_mask). Returns (output (..., T_q, d_v), weights (..., T_q, T_k)).
    Cost: O(T_q * T_k * d) time and O(T_q * T_k) memory for the weights, the matrix FlashAttention never stores.
    Why sqrt(d): with unit-variance entries, q.k has variance d; dividing keeps the softmax out of saturation.
    """
    # TODO [attention]: Scores q @ k^T over sqrt(d); masked_fill the forbidden scores with -inf; softmax over the keys; weights @ v.
    raise NotImplementedError('TODO [attention]: Scores q @ k^T over sqrt(d); masked_fill the forbidden scores with -inf; softmax over the keys; weights @ v.')


# ============================================================== multi-head attention

class MultiHeadAttention(nn.Module):
    """Self-attention with n_heads heads of width d = D // n_heads.

    One fused projection `qkv` (D -> 3D, rows ordered [W_q; W_k; W_v]) and an output projection `out` (D -> D):
    the same layout as torch.nn.MultiheadAttention's in_proj and out_proj, so weights copy across.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pick a divisor")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D).

        Cost: O(B * T * D^2) for the projections plus O(B * T^2 * D) for the scores (all heads together: H * d = D).
        """
        B, T, D = x.shape
        # TODO [multi-head]: qkv(x) split three ways; each (B, T, D) -> (B, T, H, d) -> (B, H, T, d); F.scaled_dot_product_attention; merge heads back with transpose then reshape; out projection.
        raise NotImplementedError('TODO [multi-head]: qkv(x) split three ways; each (B, T, D) -> (B, T, H, d) -> (B, H, T, d); F.scaled_dot_product_attention; merge heads back with transpose then reshape; out projection.')


# ============================================================== a tiny decoder, with and without a KV-cache

Cache = list  # one (k, v) pair per layer, each (B, H, T_past, d)


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(ln1(x)), then x + mlp(ln2(x)). The attention is torch's own
    nn.MultiheadAttention: `attn.in_proj_weight` (3D, D) holds [W_q; W_k; W_v], `attn.in_proj_bias` their biases,
    `attn.out_proj` the output projection."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole sequence at once, no cache (the reference path): x (B, T, D) -> (B, T, D)."""
        T = x.size(1)
        blocked = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # nn.MultiheadAttention: True = hidden
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=blocked, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))

    def forward_cached(self, x: torch.Tensor, past: tuple | None) -> tuple[torch.Tensor, tuple]:
        """New positions x (B, T_new, D) after the cached ones; past = (k, v), each (B, H, T_past, d), or None.

        Returns (output (B, T_new, D), the updated (k, v) with T_past + T_new positions), equal to what forward
        gives for those positions when run on the whole sequence.
        Cost per decode step (T_new = 1): O(T * D) for attention over the cache plus O(D^2) for the projections,
        instead of recomputing all T positions (O(T * D^2 + T^2 * D)).
        """
        B, T_new, D = x.shape
        H = self.attn.num_heads
        # TODO [kv-cache]: Project ln1(x) with attn.in_proj_weight/bias into q, k, v of the new positions, each (B, H, T_new, d); append k and v to the cache along time; the new queries see every cached key and the new keys up to their own position (a shifted causal mask); out_proj, residuals, MLP.
        raise NotImplementedError('TODO [kv-cache]: Project ln1(x) with attn.in_proj_weight/bias into q, k, v of the new positions, each (B, H, T_new, d); append k and v to the cache along time; the new queries see every cached key and the new keys up to their own position (a shifted causal mask); out_proj, residuals, MLP.')


class TinyDecoder(nn.Module):
    """Token and learned position embeddings, n_layers pre-norm blocks, a final LayerNorm and an LM head."""

    def __init__(self, vocab_size: int = 16, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 max_len: int = 64):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, V), recomputing every position."""
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def forward_cached(self, idx: torch.Tensor, cache: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        """idx (B, T_new): the tokens after those already in `cache` (None: nothing cached yet).

        Returns (logits (B, T_new, V), the cache now holding T_past + T_new positions).
        """
        # TODO [kv-cache]: The new tokens' positions start where the cache ends; run each block's forward_cached with its own layer of the cache; collect the new caches.
        raise NotImplementedError("TODO [kv-cache]: The new tokens' positions start where the cache ends; run each block's forward_cached with its own layer of the cache; collect the new caches.")


@torch.no_grad()
def generate(model: TinyDecoder, prompt: list[int], max_new_tokens: int, use_cache: bool = True) -> list[int]:
    """Greedy decoding; returns only the new tokens. With the cache: one prefill over the prompt, then one token
    per step. Without: the whole sequence again every step. Both must give the same tokens.
    Cost: O(n) model calls either way, but each cached call processes 1 position instead of T."""
    if not prompt:
        raise ValueError("generate needs a non-empty prompt (start with a BOS token)")
    if len(prompt) + max_new_tokens > model.max_len:
        raise ValueError(f"prompt + new tokens = {len(prompt) + max_new_tokens} exceeds max_len={model.max_len}")
    tokens = list(prompt)
    if not use_cache:
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([tokens]))
            tokens.append(int(logits[0, -1].argmax()))
        return tokens[len(prompt):]
    # TODO [kv-cache]: Prefill the prompt once with forward_cached; then feed ONLY the newest token with the returned cache.
    raise NotImplementedError('TODO [kv-cache]: Prefill the prompt once with forward_cached; then feed ONLY the newest token with the returned cache.')


# ============================================================== byte-level BPE

def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in ids by new_id, scanning left to right without overlaps
    ("aaa" with (a, a) becomes [aa, a]). O(len(ids))."""
    # TODO [bpe]: Walk with an index; where ids[i], ids[i+1] is the pair, emit new_id and jump two, else emit ids[i] and step one.
    raise NotImplementedError('TODO [bpe]: Walk with an index; where ids[i], ids[i+1] is the pair, emit new_id and jump two, else emit ids[i] and step one.')


def train_bpe(text: str, vocab_size: int) -> list[tuple[int, int]]:
    """Byte-level BPE on the UTF-8 bytes of `text` (no pre-tokenization, to keep it whiteboard-sized).

    Start from the 256 byte tokens. Repeatedly count adjacent pairs (overlapping: "aaa" holds (a, a) twice), merge
    the most frequent into a new token 256, 257, ... Ties go to the pair that occurs first in the current sequence.
    Stops at vocab_size tokens or when fewer than two tokens remain. Returns merges: merges[i] made token 256 + i.
    Cost: O(M * N) for M merges over N bytes (each round recounts and rewrites the sequence).
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the byte alphabet), got {vocab_size}")
    ids = list(text.encode("utf-8"))
    merges: list[tuple[int, int]] = []
    # TODO [bpe]: Count pairs with a Counter over zip(ids, ids[1:]) (insertion order = first occurrence, so max keeps the first of equals); merge the winner; repeat.
    raise NotImplementedError('TODO [bpe]: Count pairs with a Counter over zip(ids, ids[1:]) (insertion order = first occurrence, so max keeps the first of equals); merge the winner; repeat.')


def bpe_encode(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """Token ids of `text`: start from its bytes and repeatedly apply the present pair with the LOWEST rank
    (earliest learned), until no learned pair is left. Cost: O(N * M) worst case (N bytes, M merges)."""
    ids = list(text.encode("utf-8"))
    # TODO [bpe]: Map each merge pair to its rank; while any adjacent pair is a learned merge, apply the one with the smallest rank everywhere.
    raise NotImplementedError('TODO [bpe]: Map each merge pair to its rank; while any adjacent pair is a learned merge, apply the one with the smallest rank everywhere.')


def bpe_decode(ids: list[int], merges: list[tuple[int, int]]) -> str:
    """Text of token ids: expand each id to its bytes and decode UTF-8 (a token boundary inside a multi-byte
    character is fine; invalid bytes become U+FFFD). Cost: O(total bytes)."""
    # TODO [bpe]: Build the bytes of every token in merge order (token 256 + i = bytes of its two parts); join; decode with errors="replace".
    raise NotImplementedError('TODO [bpe]: Build the bytes of every token in merge order (token 256 + i = bytes of its two parts); join; decode with errors="replace".')


# ============================================================== sampling filters

def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T: T < 1 sharpens, T > 1 flattens. T must be > 0 (T = 0 means greedy, handled by the caller). O(V)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 here, got {temperature}; use greedy (argmax) for 0")
    # TODO [sampling]: Divide.
    raise NotImplementedError('TODO [sampling]: Divide.')


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last dimension, set the rest to -inf. Logits tied with the k-th largest
    are kept too (transformers' rule). Cost: O(V log k) with torch.topk."""
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    k = min(k, logits.size(-1))
    # TODO [sampling]: The k-th largest value per row (torch.topk(...).values[..., -1:]); everything strictly below it becomes -inf.
    raise NotImplementedError('TODO [sampling]: The k-th largest value per row (torch.topk(...).values[..., -1:]); everything strictly below it becomes -inf.')


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most probable tokens whose total probability reaches p (the
    most probable token is always kept); set the rest to -inf. Cost: O(V log V) for the sort."""
    if not 0 < p <= 1:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
    # TODO [sampling]: Sort descending, softmax, cumulative sum; drop a token when the mass BEFORE it already reaches p; scatter the mask back to vocabulary order.
    raise NotImplementedError('TODO [sampling]: Sort descending, softmax, cumulative sum; drop a token when the mass BEFORE it already reaches p; scatter the mask back to vocabulary order.')


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The distribution a sampler draws from: temperature, then top-k, then top-p (transformers' order), then
    softmax. temperature == 0 is greedy: all mass on the argmax (the first one on ties). Cost: O(V log V)."""
    # TODO [sampling]: Greedy: one-hot of argmax. Otherwise chain the three filters in that order (skipping the None ones) and softmax.
    raise NotImplementedError('TODO [sampling]: Greedy: one-hot of argmax. Otherwise chain the three filters in that order (skipping the None ones) and softmax.')


# ============================================================== beam search

def beam_search(next_log_probs, prompt: list[int], steps: int, beam_width: int) -> list[tuple[list[int], float]]:
    """Keep the beam_width best continuations of `prompt` by total log-probability, for exactly `steps` tokens.

    next_log_probs(seqs) takes a list of equally long token lists and returns a (len(seqs), V) tensor of
    next-token log-probabilities (one batched model call per step). Returns up to beam_width pairs
    (continuation tokens, score), best first; equal scores keep the earlier candidate (lower beam, then lower token).
    Cost: `steps` model calls on at most beam_width sequences, plus a sort of beam_width * V scores per step:
    O(steps * B * V * log(B * V)). Width 1 is greedy; width >= V**(steps-1) is exhaustive (exact).
    """
    if steps < 1 or beam_width < 1:
        raise ValueError(f"need steps >= 1 and beam_width >= 1, got steps={steps}, beam_width={beam_width}")
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    # TODO [beam-search]: Each step: scores = beam score[:, None] + log-probs (B, V); flatten; stable sort descending; the first beam_width give parent = i // V and token = i % V.
    raise NotImplementedError('TODO [beam-search]: Each step: scores = beam score[:, None] + log-probs (B, V); flatten; stable sort descending; the first beam_width give parent = i // V and token = i % V.')


# ============================================================== RMSNorm

class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2 over the last dim) + eps) * weight. No mean subtraction, no bias: cheaper than
    LayerNorm and what Llama-family models use. Cost: O(N * D)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO [rmsnorm]: Mean of squares over the last dim (keepdim), add eps INSIDE the square root (torch.rsqrt), scale by weight.
        raise NotImplementedError('TODO [rmsnorm]: Mean of squares over the last dim (keepdim), add eps INSIDE the square root (torch.rsqrt), scale by weight.')


# ============================================================== RoPE

def rope_cos_sin(positions: torch.Tensor, d_head: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, d_head), in the half-split layout of transformers' Llama: frequency
    theta_i = base^(-2i / d_head) for i < d_head / 2, and columns i and i + d_head/2 share theta_i.
    Cost: O(T * d)."""
    if d_head % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions, so d_head must be even, got {d_head}")
    # TODO [rope]: inv_freq = base ** (-arange(0, d, 2) / d); angles = positions[:, None] * inv_freq[None, :]; repeat the (T, d/2) angles twice along the last dim; cos and sin.
    raise NotImplementedError('TODO [rope]: inv_freq = base ** (-arange(0, d, 2) / d); angles = positions[:, None] * inv_freq[None, :]; repeat the (T, d/2) angles twice along the last dim; cos and sin.')


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i + d/2}) of x (..., T, d) by its position's angle:
    x * cos + rotate_half(x) * sin, with rotate_half(x) = (-x_second_half, x_first_half).
    Then q_m . k_n depends only on m - n. Cost: O(T * d)."""
    # TODO [rope]: Split x into halves x1, x2; rotate_half = cat(-x2, x1); combine with cos and sin (cast to x's dtype).
    raise NotImplementedError("TODO [rope]: Split x into halves x1, x2; rotate_half = cat(-x2, x1); combine with cos and sin (cast to x's dtype).")


# ============================================================== LoRA

class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: y = W x + b + (alpha / r) * B (A x).

    Attributes: base (the wrapped layer, frozen), lora_A (r, in_features), lora_B (out_features, r), scaling =
    alpha / r. lora_A starts Kaiming-uniform (a = sqrt(5), as peft) and lora_B at zero, so at the start the layer
    is exactly the base layer. Trainable parameters: r * (in + out) instead of in * out.
    Cost: forward O(N * r * (in + out)) on top of the base layer's O(N * in * out).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        # TODO [lora]: Keep base and freeze its parameters; lora_A = Parameter (r, in) with kaiming_uniform_(a=sqrt(5)); lora_B = zeros (out, r); scaling = alpha / r.
        raise NotImplementedError('TODO [lora]: Keep base and freeze its parameters; lora_A = Parameter (r, in) with kaiming_uniform_(a=sqrt(5)); lora_B = zeros (out, r); scaling = alpha / r.')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO [lora]: Base output plus scaling * (x @ A^T) @ B^T: go through the rank-r bottleneck, never form B A.
        raise NotImplementedError('TODO [lora]: Base output plus scaling * (x @ A^T) @ B^T: go through the rank-r bottleneck, never form B A.')

    def merged_weight(self) -> torch.Tensor:
        """W + scaling * B A, the (out, in) weight to ship when the adapter is folded in (zero extra latency)."""
        # TODO [lora]: The base weight plus the scaled product, shape (out, in).
        raise NotImplementedError('TODO [lora]: The base weight plus the scaled product, shape (out, in).')


# ============================================================== cross-entropy

def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean over non-ignored rows of -log softmax(logits)[target], computed stably:
    -log p_y = logsumexp(z) - z_y, and logsumexp(z) = m + log sum exp(z - m) with m = max(z), so exp never overflows.
    logits (N, V), targets (N,) int. Cost: O(N * V)."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    # TODO [cross-entropy]: Keep the rows whose target != ignore_index; subtract the row max before exp; loss = log-sum-exp minus the target's logit, averaged over the kept rows.
    raise NotImplementedError("TODO [cross-entropy]: Keep the rows whose target != ignore_index; subtract the row max before exp; loss = log-sum-exp minus the target's logit, averaged over the kept rows.")


# ============================================================== demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LLM coding questions: run each answer once on a small example")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    q, k, v = torch.randn(3, 1, 4, 8).unbind(0)
    ours, _ = scaled_dot_product_attention(q, k, v, causal_mask(4))
    gap = (ours - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max().item()
    print(f"[attention]     causal SDPA vs torch: max gap {gap:.1e}; mask for 1 new query after 3 cached keys: "
          f"{causal_mask(1, 4).int().tolist()}")

    mha = MultiHeadAttention(16, 4)
    print(f"[multi-head]    (2, 5, 16) -> {tuple(mha(torch.randn(2, 5, 16)).shape)}")

    model = TinyDecoder(vocab_size=16).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # larger weights: sharper, position-dependent predictions
    prompt = [1, 5, 2]
    cached, full = generate(model, prompt, 12, True), generate(model, prompt, 12, False)
    print(f"[kv-cache]      greedy with cache {cached}\n"
          f"                greedy without    {full}  equal: {cached == full}")

    text = "the cat sat on the mat; the cat ate the rat. " * 4
    merges = train_bpe(text, 256 + 12)
    ids = bpe_encode("the cat sat", merges)
    pieces = [bpe_decode([i], merges) for i in ids]
    print(f"[bpe]           12 merges; 'the cat sat' -> {len(ids)} tokens {pieces}; round trip "
          f"{bpe_decode(ids, merges) == 'the cat sat'}")

    logits = torch.tensor([2.0, 1.5, 0.3, -1.0, -2.0])
    probs = next_token_probs(logits, temperature=0.7, top_k=4, top_p=0.9)
    print(f"[sampling]      T=0.7, top-k 4, top-p 0.9: {[round(x, 3) for x in probs.tolist()]}")

    # a bigram "model" with a garden path: after token 0, token 1 is likelier (0.6) but leads nowhere good
    table = torch.tensor([[0.0, 0.6, 0.4, 0.0], [0.2, 0.2, 0.2, 0.4], [0.05, 0.0, 0.05, 0.9], [0.25] * 4])
    bigram = lambda seqs: table[[s[-1] for s in seqs]].log()  # noqa: E731
    greedy, best = beam_search(bigram, [0], 2, 1)[0], beam_search(bigram, [0], 2, 2)[0]
    print(f"[beam-search]   garden path: greedy {greedy[0]} p={math.exp(greedy[1]):.2f}; "
          f"beam 2 {best[0]} p={math.exp(best[1]):.2f}")

    x = torch.randn(2, 8)
    print(f"[rmsnorm]       vs torch.nn.RMSNorm: max gap {(RMSNorm(8)(x) - nn.RMSNorm(8, eps=1e-6)(x)).abs().max():.1e}")

    cos, sin = rope_cos_sin(torch.arange(8), 16)
    qv, kv = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    rq, rk = apply_rope(qv.expand(8, 16), cos, sin), apply_rope(kv.expand(8, 16), cos, sin)
    print(f"[rope]          q.k at positions (5, 2) = {rq[5] @ rk[2]:.6f}, at (7, 4) = {rq[7] @ rk[4]:.6f} "
          f"(same offset, same score)")

    layer = LoRALinear(nn.Linear(4096, 4096), r=16, alpha=32)
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    print(f"[lora]          r=16 on 4096x4096: {trainable:,} trainable vs {4096 * 4096:,} ({4096 * 4096 / trainable:.0f}x fewer)")

    big = torch.tensor([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    print(f"[cross-entropy] logits with +-1000: {cross_entropy(big, torch.tensor([0, 2])).item():.4f} "
          f"(torch: {F.cross_entropy(big, torch.tensor([0, 2])).item():.4f}); ln 3 = {math.log(3):.4f}")


if __name__ == "__main__":
    labkit.run(main)
