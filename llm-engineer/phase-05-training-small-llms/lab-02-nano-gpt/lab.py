"""nanoGPT: train a small GPT from raw text to samples, with the training recipe real runs use.

What this lab teaches
- a GPT-2-shaped model (`GPTConfig`, `GPT`; `model(idx, targets)` -> (logits, loss)) with the GPT-2 init:
  N(0, 0.02) everywhere and 0.02 / sqrt(2 * n_layer) on the projections that write into the residual stream;
- data as one long array of token ids, cut into random (x, y) windows where y is x shifted by one;
- gradient accumulation: k micro-batches of b rows, each loss divided by k, give one batch of k·b rows' gradient;
- AdamW with decoupled weight decay applied only to weight matrices (not biases, norms or embeddings), fused
  into one kernel on CPU and CUDA;
- linear warmup then cosine decay of the learning rate; clipping the global gradient norm;
- on CUDA: bf16 autocast, the flash-attention kernel behind F.scaled_dot_product_attention and, optionally,
  torch.compile;
- sampling with temperature, top-k and top-p (nucleus), and saving checkpoints atomically;
- two presets: `small` (the CPU default, about a minute) and `full` (d_model 256, 6 layers, 8 heads, block 256,
  batch 64: the configuration of a real TinyStories run, sized for a GPU).

Offline by default: Shakespeare, written to a local text file and read back with datasets.load_dataset("text").
With --online (and LABKIT_ONLINE=1) the corpus is TinyStories from the Hugging Face hub.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit
from labkit import assets
from labkit.device import autocast_dtype
from labkit.offline import online_allowed

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# ---------------------------------------------------------------------------------------------- the model

@dataclass
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = True  # GPT-2 keeps biases in Linear and LayerNorm layers
    # "none": exact GELU x·Φ(x) through erf (lab 04, nanoGPT); "tanh": GPT-2's approximation
    # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), at most 5e-4 away but 2-4x slower on CPU (see bench.py)
    gelu_approximate: str = "none"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"gelu_approximate must be 'none' (exact) or 'tanh' (GPT-2's), "
                             f"got {self.gelu_approximate!r}")


class CausalSelfAttention(nn.Module):
    """Lab 04's attention, now through the fused kernel (flash attention on CUDA, a fused loop on CPU)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)  # writes into the residual stream
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=-1))                       # (B, H, T, d_head)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)  # writes into the residual stream
        self.drop = nn.Dropout(cfg.dropout)
        self.gelu_approximate = cfg.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc(x), approximate=self.gelu_approximate)  # (B, T, 4C)
        return self.drop(self.proj(h))                               # (B, T, C)


class Block(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias), nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn, self.mlp = CausalSelfAttention(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings, n_layer pre-norm blocks, final LayerNorm, LM head tied to the embedding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying (lab 04)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) for Linear and Embedding weights, zero biases, and N(0, 0.02 / sqrt(2 L)) for
        the two projections per block that add into the residual stream (attn.proj, mlp.proj)."""
        # TODO [init-weights]: Normal(0, 0.02) for Linear/Embedding weights, zeros for Linear biases; then shrink the std of every residual projection weight by 1/sqrt(2 * n_layer).
        raise NotImplementedError('TODO [init-weights]: Normal(0, 0.02) for Linear/Embedding weights, zeros for Linear biases; then shrink the std of every residual projection weight by 1/sqrt(2 * n_layer).')

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) token ids -> logits (B, T, V) and the mean cross-entropy against targets (or None)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}; "
                             "crop it to the last block_size tokens")
        # TODO [gpt-forward]: Token + position embeddings, dropout, the blocks, final norm, head; cross-entropy over the flattened (B*T, V) logits.
        raise NotImplementedError('TODO [gpt-forward]: Token + position embeddings, dropout, the blocks, final norm, head; cross-entropy over the flattened (B*T, V) logits.')
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, with the tied matrix counted once; non_embedding leaves out the position table (the token
        table stays: it is also the head, a real matmul)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n


def flops_per_token(config: GPTConfig, n_params: int) -> int:
    """Training FLOPs per token: 6N for the weight matmuls (2 forward + 4 backward) plus 12 * L * T * d for the
    attention scores and the weighted sum of values (PaLM, appendix B)."""
    return 6 * n_params + 12 * config.n_layer * config.block_size * config.d_model


# ---------------------------------------------------------------------------------------------- data

class CharTokenizer:
    """One id per character of the training text (the default: tiny vocabulary, fast on CPU)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text: str) -> list[int]:
        missing = set(text) - self.stoi.keys()
        if missing:
            raise ValueError(f"characters {sorted(missing)[:5]} are not in the vocabulary; use text drawn from the "
                             "training corpus")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class GPT2Tokenizer:
    """tiktoken's GPT-2 BPE (50,257 ids), loaded offline from the packaged files."""

    def __init__(self):
        self.enc = assets.tiktoken_encoding("gpt2")
        self.vocab_size = self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target: a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def load_corpus(data_dir: Path, online: bool = False, max_chars: int | None = None) -> str:
    """The training text through `datasets`: TinyStories from the hub with online=True, else Shakespeare."""
    if online:
        if not online_allowed():
            raise SystemExit("--online downloads TinyStories from the Hugging Face hub: run it with LABKIT_ONLINE=1")
        from datasets import load_dataset

        stories = load_dataset("roneneldan/TinyStories", split="train[:20000]")
        text = "\n\n".join(stories["text"])
    else:
        path = Path(data_dir) / "shakespeare.txt"
        if not path.exists():
            atomic_write_bytes(path, assets.shakespeare().encode("utf-8"))
        from datasets import load_dataset

        # sample_by="document": the whole file is one row (the default would make one row per line)
        text = load_dataset("text", data_files=str(path), sample_by="document", split="train")[0]["text"]
    return text if max_chars is None else text[:max_chars]


def prepare(text: str, tokenizer, data_dir: Path, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise once into train.bin / val.bin (uint16 ids, written atomically) and memory-map them back."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    ids = np.asarray(tokenizer.encode(text), dtype=np.uint16)  # every vocabulary here fits below 65,536
    cut = int(len(ids) * (1 - val_fraction))
    arrays = {}
    for name, part in (("train", ids[:cut]), ("val", ids[cut:])):
        path = Path(data_dir) / f"{name}.bin"
        atomic_write_bytes(path, part.tobytes())
        arrays[name] = np.memmap(path, dtype=np.uint16, mode="r")
    return arrays["train"], arrays["val"]


def get_batch(data: np.ndarray, block_size: int, batch_size: int, device="cpu",
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random windows: x = data[s : s+T], y = data[s+1 : s+T+1] (the next token at every position)."""
    if len(data) <= block_size:
        raise ValueError(f"need more than block_size={block_size} tokens, the data has {len(data)}")
    # TODO [get-batch]: Draw batch_size start offsets so that s + block_size + 1 stays inside the data; stack the windows as int64 (x) and the same windows shifted by one (y).
    raise NotImplementedError('TODO [get-batch]: Draw batch_size start offsets so that s + block_size + 1 stays inside the data; stack the windows as int64 (x) and the same windows shifted by one (y).')
    if torch.device(device).type == "cuda":  # pinned host memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ---------------------------------------------------------------------------------------------- optimisation

def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: [weight matrices of Linear layers, with decay] and [everything else, without]."""
    # TODO [optimizer-groups]: Decay only the weight of each nn.Linear that is not also an embedding (the tied head is); biases, LayerNorm and embeddings go to a weight_decay=0 group. Count each Parameter once.
    raise NotImplementedError('TODO [optimizer-groups]: Decay only the weight of each nn.Linear that is not also an embedding (the tied head is); biases, LayerNorm and embeddings go to a weight_decay=0 group. Count each Parameter once.')


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95),
                   device_type: str = "cpu") -> torch.optim.AdamW:
    """AdamW over the two groups; decoupled decay (p -= lr * wd * p, outside the Adam moments). Fused on CUDA and
    CPU: one kernel walks every parameter (3x faster than the per-tensor foreach ops on this lab's CPU model)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8,
                             fused=device_type in ("cuda", "cpu"))


def get_lr(step: int, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float) -> float:
    """Linear warmup to max_lr over warmup_steps (step 0 gets max_lr / warmup_steps), cosine decay from max_lr
    at step warmup_steps to min_lr at step max_steps, then min_lr."""
    if not 0 <= warmup_steps < max_steps:
        raise ValueError(f"need 0 <= warmup_steps < max_steps, got warmup_steps={warmup_steps}, max_steps={max_steps}")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    # TODO [lr-schedule]: Three pieces: (step+1)/warmup of max_lr; then min_lr + (max_lr-min_lr) * (1 + cos(pi * progress)) / 2; then min_lr.
    raise NotImplementedError('TODO [lr-schedule]: Three pieces: (step+1)/warmup of max_lr; then min_lr + (max_lr-min_lr) * (1 + cos(pi * progress)) / 2; then min_lr.')


def clip_grad_norm(parameters, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before clipping."""
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    # TODO [clip-grad]: Global norm = sqrt(sum of squared per-tensor norms); multiply every gradient by min(1, max_norm / (norm + 1e-6)).
    raise NotImplementedError('TODO [clip-grad]: Global norm = sqrt(sum of squared per-tensor norms); multiply every gradient by min(1, max_norm / (norm + 1e-6)).')


def autocast(device_type: str, dtype: torch.dtype | None):
    """bf16 autocast where a dtype is given (CUDA), a no-op otherwise (CPU trains in float32)."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float,
               max_norm: float | None = 1.0, amp_dtype: torch.dtype | None = None) -> tuple[float, float]:
    """One optimiser step on (x, y) at learning rate lr; returns (loss, gradient norm before clipping)."""
    # TODO [train-step]: Set lr on every param group; forward under autocast(x.device.type, amp_dtype); zero grads, backward, clip (when max_norm), step.
    raise NotImplementedError('TODO [train-step]: Set lr on every param group; forward under autocast(x.device.type, amp_dtype); zero grads, backward, clip (when max_norm), step.')


def accumulate_gradients(model: nn.Module, micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
                         amp_dtype: torch.dtype | None = None) -> float:
    """Leave in .grad the gradient of the mean loss over all k micro-batches (each (x, y) of shape (b, T)), the
    same gradient one batch of k·b rows would give; return that mean loss.
    Each micro-batch loss is a mean over its b·T tokens, so the big batch's loss is (1/k)·Σ loss_i and, by
    linearity, its gradient is Σ ∇(loss_i / k): backward on loss_i / k, k times, and .grad adds them up."""
    if not micro_batches:
        raise ValueError("micro_batches is empty; pass a list of k >= 1 (x, y) pairs")
    shapes = {tuple(x.shape) for x, _ in micro_batches}
    if len(shapes) != 1:
        raise ValueError(f"micro-batches must share one shape (the mean of means equals the big batch's mean only "
                         f"then), got {sorted(shapes)}")
    # TODO [grad-accum]: Clear the gradients once, before the loop; per micro-batch: forward under autocast(x.device.type, amp_dtype), backward on loss / k; return the mean of the k losses.
    raise NotImplementedError('TODO [grad-accum]: Clear the gradients once, before the loop; per micro-batch: forward under autocast(x.device.type, amp_dtype), backward on loss / k; return the mean of the k losses.')


def train_step_accumulated(model: nn.Module, optimizer: torch.optim.Optimizer,
                           micro_batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float,
                           max_norm: float | None = 1.0, amp_dtype: torch.dtype | None = None) -> tuple[float, float]:
    """train_step for an effective batch of k·b rows held as k micro-batches: accumulate, clip once, step once."""
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    mean_loss = accumulate_gradients(model, micro_batches, amp_dtype)
    grad_norm = float("nan") if not max_norm else clip_grad_norm(model.parameters(), max_norm)  # once per step
    optimizer.step()
    return mean_loss, grad_norm


@torch.no_grad()
def estimate_loss(model: nn.Module, data: np.ndarray, block_size: int, batch_size: int, iters: int, device,
                  amp_dtype=None, seed: int = 1234) -> float:
    """Mean loss over `iters` random batches, in eval mode (fixed seed: comparable across calls)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(iters):
        x, y = get_batch(data, block_size, batch_size, device, gen)
        with autocast(torch.device(device).type, amp_dtype):
            losses.append(model(x, y)[1].item())
    model.train()
    return sum(losses) / len(losses)


# ---------------------------------------------------------------------------------------------- sampling, checkpoints

def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter on logits (..., V): keep the smallest set of tokens, most likely first, whose probabilities
    sum to at least top_p, and set every other logit to -inf. The most likely token is always kept.
    Token i (in descending order of probability) stays iff the mass of the tokens before it is < top_p; a set
    that reaches top_p exactly stops there. Among tied tokens the set still takes only as many as it needs."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}; 1.0 keeps every token")
    # TODO [top-p]: Sort descending; softmax; mass *before* each token = cumsum shifted right by one (starts at 0); drop where that mass >= top_p; scatter the mask back to vocabulary order; fill -inf.
    raise NotImplementedError('TODO [top-p]: Sort descending; softmax; mass *before* each token = cumsum shifted right by one (starts at 0); drop where that mass >= top_p; scatter the mask back to vocabulary order; fill -inf.')


@torch.no_grad()
def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             top_p: float | None = None) -> torch.Tensor:
    """Append max_new_tokens sampled tokens to idx (B, T); the model sees at most its last block_size tokens.
    Filters in the order transformers applies them: temperature, then top-k, then top-p."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); for greedy decoding use top_k=1")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    block_size = model.config.block_size
    # TODO [sample]: Each step: crop to the last block_size tokens, take the last position's logits / temperature, keep the top_k largest (others -inf), then top_p_filter when top_p is given, softmax, torch.multinomial, append.
    raise NotImplementedError("TODO [sample]: Each step: crop to the last block_size tokens, take the last position's logits / temperature, keep the top_k largest (others -inf), then top_p_filter when top_p is given, softmax, torch.multinomial, append.")


def save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, val_loss: float, extra: dict | None = None):
    """model + optimizer + step + config in one file, written atomically (temp file, fsync, os.replace)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module; save the plain one
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "val_loss": val_loss, "config": asdict(model.config), **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", delete=False) as tmp:
        torch.save(state, tmp)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def load_checkpoint(path: Path, device="cpu") -> tuple[GPT, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    model = GPT(GPTConfig(**state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model, state


# ---------------------------------------------------------------------------------------------- the demo

# Defaults per preset; any flag given on the command line wins. "full" is the curriculum's configuration
# (d_model 256, 6 layers, 8 heads, lr 3e-4 with 500 warmup steps and a cosine down to 3e-5, block 256, batch 64,
# 2000 steps = 33M training tokens): about 4.8M non-embedding parameters with characters, 17.7M with GPT-2's BPE
# (its 50,257 x 256 embedding is 12.9M of them). Meant for a GPU: see README, Cost, for its measured CPU price.
PRESETS = {
    "small": dict(steps=300, batch_size=16, block_size=64, n_layer=4, n_head=4, d_model=128, lr=2e-3, warmup=30,
                  eval_interval=100, eval_iters=10),
    "full": dict(steps=2000, batch_size=64, block_size=256, n_layer=6, n_head=8, d_model=256, lr=3e-4, warmup=500,
                 eval_interval=250, eval_iters=20),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="small: CPU demo, about a minute; full: d=256, L=6, H=8, T=256, B=64 (a GPU run)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int, help="rows per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1,
                        help="micro-batches per optimiser step: the effective batch is batch-size x grad-accum")
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--n-layer", type=int)
    parser.add_argument("--n-head", type=int)
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=float, help="peak learning rate (the floor is a tenth of it)")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--eval-interval", type=int)
    parser.add_argument("--eval-iters", type=int)
    parser.add_argument("--tokenizer", choices=("char", "gpt2"), default="char")
    parser.add_argument("--max-chars", type=int, default=1_000_000, help="characters of the corpus to use")
    parser.add_argument("--online", action="store_true", help="TinyStories from the hub (needs LABKIT_ONLINE=1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on CUDA)")
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--sample-tokens", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling; 1.0 turns it off")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, value in PRESETS[args.preset].items():  # the preset fills what the command line left out
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.grad_accum < 1:
        parser.error(f"--grad-accum must be at least 1, got {args.grad_accum}")
    if args.warmup >= args.steps:  # a short trial run of a long preset: warm up over the first tenth instead
        args.warmup = args.steps // 10

    labkit.seed_everything(args.seed)
    device = labkit.pick_device()
    amp = autocast_dtype(device)
    out = labkit.output_dir(__file__)

    text = load_corpus(out / "data", online=args.online, max_chars=args.max_chars)
    tokenizer = CharTokenizer(text) if args.tokenizer == "char" else GPT2Tokenizer()
    train_data, val_data = prepare(text, tokenizer, out / "data")
    print(f"[data]   {len(text):,} characters -> {len(train_data):,} train / {len(val_data):,} val tokens "
          f"({args.tokenizer}, vocab {tokenizer.vocab_size})")

    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, d_model=args.d_model, dropout=args.dropout)
    model = GPT(config).to(device)
    print(f"[model]  preset {args.preset}: d={args.d_model} L={args.n_layer} H={args.n_head} T={args.block_size}, "
          f"{model.num_params():,} parameters (non-embedding)  device={device.type}  autocast={amp}  "
          f"compile={args.compile}")
    print(f"[batch]  {args.batch_size} rows x {args.grad_accum} micro-batch(es) = "
          f"{args.batch_size * args.grad_accum * args.block_size:,} tokens per step")
    optimizer = make_optimizer(model, args.lr, args.weight_decay, device_type=device.type)
    step_model = torch.compile(model) if args.compile else model

    init = estimate_loss(model, val_data, args.block_size, args.batch_size, args.eval_iters, device, amp)
    print(f"[init]   val loss {init:.4f}   ln(vocab) = {math.log(config.vocab_size):.4f}")

    gen = torch.Generator().manual_seed(args.seed)
    min_lr = args.lr / 10
    history, evals, best = [], [(0, init)], float("inf")
    tokens_per_step = args.batch_size * args.grad_accum * args.block_size
    start, train_seconds, train_cpu = time.perf_counter(), 0.0, 0.0
    bar = tqdm(range(args.steps), desc="train")
    for step in bar:
        lr = get_lr(step, args.warmup, args.steps, args.lr, min_lr)
        tick, tick_cpu = time.perf_counter(), time.process_time()
        if args.grad_accum == 1:
            x, y = get_batch(train_data, args.block_size, args.batch_size, device, gen)
            loss, norm = train_step(step_model, optimizer, x, y, lr, args.grad_clip, amp)
        else:
            micro = [get_batch(train_data, args.block_size, args.batch_size, device, gen)
                     for _ in range(args.grad_accum)]
            loss, norm = train_step_accumulated(step_model, optimizer, micro, lr, args.grad_clip, amp)
        train_seconds += time.perf_counter() - tick
        train_cpu += time.process_time() - tick_cpu  # CPU seconds of all threads: steadier on a shared machine
        history.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}", norm=f"{norm:.2f}")
        if (step + 1) % args.eval_interval == 0 or step + 1 == args.steps:
            val = estimate_loss(model, val_data, args.block_size, args.batch_size, args.eval_iters, device, amp)
            evals.append((step + 1, val))
            note = ""
            if val < best:
                best = val
                save_checkpoint(out / "ckpt.pt", model, optimizer, step + 1, val,
                                {"tokenizer": args.tokenizer, "chars": getattr(tokenizer, "chars", None)})
                note = "  (best, saved ckpt.pt)"
            tqdm.write(f"[eval]   step {step + 1:4d}  train {loss:.4f}  val {val:.4f}  lr {lr:.2e}{note}")
    elapsed = time.perf_counter() - start
    per_step, cpu_per_step, full_steps = train_seconds / args.steps, train_cpu / args.steps, PRESETS[args.preset]["steps"]
    print(f"[speed]  {tokens_per_step / per_step:,.0f} training tokens/s, {per_step * 1000:,.0f} ms/step wall, "
          f"{cpu_per_step * 1000:,.0f} ms/step CPU ({torch.get_num_threads()} thread(s); training only, "
          f"{elapsed:,.0f} s with evals); {full_steps} steps of this shape: {full_steps * per_step / 60:,.1f} min "
          f"at this pace")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history) + 1), history, alpha=0.6, label="train (per step)")
    ax.plot(*zip(*evals), "o-", label="val")
    ax.axhline(math.log(config.vocab_size), ls="--", c="grey", label="ln(vocab)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats)", title="nanoGPT on " + ("TinyStories" if args.online
                                                                                 else "Shakespeare"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=120)
    plt.close(fig)

    best_model, _ = load_checkpoint(out / "ckpt.pt", device)
    best_model.eval()
    prompt = torch.tensor([tokenizer.encode(args.prompt)], device=device)
    for top_k, top_p in ((args.top_k, None), (None, args.top_p)):
        sample = generate(best_model, prompt, args.sample_tokens, args.temperature, top_k,
                          torch.Generator(device=device).manual_seed(args.seed), top_p=top_p)
        label = f"top-k {top_k}" if top_k else f"top-p {top_p}"
        print(f"[sample] temperature {args.temperature}, {label}:\n{tokenizer.decode(sample[0].tolist())}")
    print(f"[files]  {out / 'loss_curve.png'}\n         {out / 'ckpt.pt'}")


if __name__ == "__main__":
    labkit.run(main)
