"""Pruning and distillation: make SmolLM2-135M smaller, and measure what it costs in quality and buys in speed.

Two ways to shrink a trained network:

* **Pruning** removes weights. *Unstructured* magnitude pruning zeroes the smallest |w| anywhere (high sparsity
  for little quality loss, but a dense matmul does not get faster from zeros). *Semi-structured 2:4* keeps two of
  every four consecutive weights, a pattern Ampere-and-later tensor cores skip in hardware (up to 2x on the
  matmul). *Structured* pruning removes whole MLP channels and attention heads, so the Linear layers really shrink
  and every device runs faster. A *gradual* schedule raises sparsity step by step while the model keeps training.
* **Distillation** trains a smaller *student* to match a *teacher*'s softened output distribution. The soft
  targets carry the teacher's "dark knowledge" (which wrong tokens are nearly right), far more signal per token
  than one hard label.

What you build, checked against torch (`torch.nn.utils.prune`, `F.kl_div`) and hand-worked cases:

1. `n_to_prune`, `magnitude_mask`, `global_magnitude_masks`, `count_zeros` (task `magnitude-prune`).
2. `gradual_sparsity`: the cubic schedule of Zhu & Gupta (2017) (task `gradual-schedule`).
3. `top_k_indices`, `mlp_channel_scores`, `prune_mlp_channels`, `head_group_scores`, `prune_head_groups`
   (task `structured-prune`): physically smaller Linear layers in a transformers Llama.
4. `two_four_mask` (task `two-four`): 2:4 semi-structured sparsity; on CUDA `to_semi_structured` hands the
   pruned weight to torch's sparse tensor cores.
5. `distillation_loss` (task `distill-loss`): alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.
6. `make_student`, `distill_step` (task `distill-train`): a shallower copy of the teacher, trained on its logits.

`distilled_student()` returns the distilled SmolLM2 student (loads the cached checkpoint, trains it when it is
missing); lab 05 (speculative decoding) uses it as a draft model through `labkit.reuse`.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit
from labkit import assets


# ============================================================================================ unstructured pruning

def n_to_prune(amount: int | float, n: int) -> int:
    """How many of n weights to prune: `amount` itself when it is an int, else round(amount * n).

    Follows torch.nn.utils.prune: Python's round(), so a fraction exactly halfway rounds to the even count
    (0.25 of 10 = 2.5 -> 2; 0.25 of 14 = 3.5 -> 4).
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"amount must be an int (a count) or a float in [0, 1] (a fraction), got {amount!r}")
    if isinstance(amount, float) and not 0.0 <= amount <= 1.0:
        raise ValueError(f"a fractional amount must lie in [0, 1], got {amount}")
    if isinstance(amount, int) and not 0 <= amount <= n:
        raise ValueError(f"cannot prune {amount} of {n} weights; pass a count in [0, {n}]")
    # BEGIN SOLUTION [magnitude-prune] A count stays a count; a fraction becomes Python's round() of fraction times n.
    return amount if isinstance(amount, int) else round(amount * n)
    # END SOLUTION


def magnitude_mask(weight: torch.Tensor, amount: int | float) -> torch.Tensor:
    """Per-layer (L1) unstructured mask, the same as `prune.l1_unstructured(module, "weight", amount)`.

    Returns a float mask of weight's shape: 0 for the k = n_to_prune(amount, numel) smallest |w|, 1 elsewhere.
    Exactly k entries are zero even when many weights tie at the threshold (which of the tied ones go is
    torch.topk's choice).
    """
    # BEGIN SOLUTION [magnitude-prune] Flatten |w|, take the k smallest with topk(largest=False), zero those positions.
    k = n_to_prune(amount, weight.numel())
    mask = torch.ones_like(weight, dtype=torch.float32)
    if k > 0:
        smallest = torch.topk(weight.detach().abs().flatten(), k=k, largest=False).indices
        mask.view(-1)[smallest] = 0.0
    return mask
    # END SOLUTION


def global_magnitude_masks(weights: list[torch.Tensor], amount: int | float) -> list[torch.Tensor]:
    """One threshold over all tensors together, like `prune.global_unstructured(..., L1Unstructured, amount)`.

    Layers with many small weights lose more of them than layers with large ones. Returns one mask per tensor.
    """
    if not weights:
        raise ValueError("global_magnitude_masks needs at least one tensor")
    # BEGIN SOLUTION [magnitude-prune] Concatenate every |w| into one vector, mask it once, then cut it back into the tensors' shapes.
    flat = torch.cat([w.detach().abs().flatten() for w in weights])      # (sum of numels,)
    flat_mask = magnitude_mask(flat, amount)
    masks, start = [], 0
    for w in weights:
        masks.append(flat_mask[start:start + w.numel()].view_as(w))
        start += w.numel()
    return masks
    # END SOLUTION


def count_zeros(tensors: list[torch.Tensor]) -> tuple[int, int]:
    """(number of exact zeros, number of elements) over all tensors: sparsity = zeros / elements."""
    # BEGIN SOLUTION [magnitude-prune] Count entries equal to zero and all entries, summed over the tensors, as Python ints.
    zeros = sum(int((t == 0).sum()) for t in tensors)
    total = sum(t.numel() for t in tensors)
    return zeros, total
    # END SOLUTION


def prunable_linears(model) -> list[nn.Linear]:
    """The Linear layers of a transformers decoder's blocks (attention and MLP projections). Embeddings and the
    (often tied) LM head stay dense, as usual: they are a lookup table and the output layer."""
    return [m for m in model.model.layers.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def magnitude_prune_model(model, amount: float, scope: str = "global") -> tuple[int, int]:
    """Zero the smallest weights of every block Linear, one threshold for all ("global") or per layer
    ("layer"). Returns count_zeros over those weights."""
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    linears = prunable_linears(model)
    weights = [m.weight for m in linears]
    masks = global_magnitude_masks(weights, amount) if scope == "global" else \
        [magnitude_mask(w, amount) for w in weights]
    for w, mask in zip(weights, masks):
        w.mul_(mask.to(w.dtype))
    return count_zeros(weights)


# ============================================================================================ gradual schedule

def gradual_sparsity(step: int, final: float, begin: int, end: int, initial: float = 0.0,
                     power: int = 3) -> float:
    """Target sparsity at `step` (Zhu & Gupta, "To prune, or not to prune", 2017):

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power    for t0 <= t <= t1,

    s_i before t0 and s_f after t1. It prunes fast while there are many redundant weights and slowly near the
    end, when each weight removed hurts more. Between prune events the network fine-tunes and recovers.
    """
    if not 0.0 <= initial <= final <= 1.0:
        raise ValueError(f"need 0 <= initial ({initial}) <= final ({final}) <= 1")
    if end <= begin:
        raise ValueError(f"end ({end}) must come after begin ({begin})")
    # BEGIN SOLUTION [gradual-schedule] Clamp progress to [0, 1]; interpolate with (1 - progress) ** power so most pruning happens early.
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** power
    # END SOLUTION


# ============================================================================================ structured pruning

def top_k_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in increasing index order (so kept channels keep their order).
    Ties go to the lower index."""
    if not 1 <= k <= scores.numel():
        raise ValueError(f"keep between 1 and {scores.numel()} units, got {k}")
    # BEGIN SOLUTION [structured-prune] A stable descending sort puts equal scores in index order; take k, then sort the indices.
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k].sort().values
    # END SOLUTION


def mlp_channel_scores(mlp) -> torch.Tensor:
    """Importance of each SwiGLU channel j (I,): ||W_gate[j]|| * ||W_up[j]|| * ||W_down[:, j]||.

    Channel j adds down[:, j] * silu(gate_j . x) * (up_j . x) to the output; since |silu(z)| <= |z|, the product
    of the three L2 norms bounds how much it can add for a unit-norm input.
    """
    # BEGIN SOLUTION [structured-prune] Row norms of gate and up (one per channel), column norms of down, multiplied.
    gate = mlp.gate_proj.weight.norm(dim=1)        # (I,)   W_gate: (I, d)
    up = mlp.up_proj.weight.norm(dim=1)            # (I,)   W_up:   (I, d)
    down = mlp.down_proj.weight.norm(dim=0)        # (I,)   W_down: (d, I)
    return gate * up * down
    # END SOLUTION


def _sliced_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new, smaller nn.Linear holding the rows (dim 0, outputs) or columns (dim 1, inputs) in `index`."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    return new


@torch.no_grad()
def prune_mlp_channels(mlp, keep: int) -> torch.Tensor:
    """Keep the `keep` most important channels of a SwiGLU MLP, replacing its three Linear layers with smaller
    ones (gate/up lose rows, down loses columns). Returns the kept channel indices."""
    # BEGIN SOLUTION [structured-prune] Score channels, keep the top ones; slice gate/up rows (dim 0) and down columns (dim 1).
    kept = top_k_indices(mlp_channel_scores(mlp), keep)
    mlp.gate_proj = _sliced_linear(mlp.gate_proj, kept, dim=0)
    mlp.up_proj = _sliced_linear(mlp.up_proj, kept, dim=0)
    mlp.down_proj = _sliced_linear(mlp.down_proj, kept, dim=1)
    mlp.intermediate_size = keep
    return kept
    # END SOLUTION


def head_group_scores(attn) -> torch.Tensor:
    """Importance of each KV group of a grouped-query attention (n_kv_heads,).

    A group is one K/V head plus the query heads that share it; removing whole groups keeps the model's
    heads-per-group ratio, so transformers' attention still runs. Score: ||W_v rows of the group|| times
    ||W_o columns of the group's query heads|| (Frobenius norms), the value path's weight scale.
    """
    # BEGIN SOLUTION [structured-prune] View W_v as (groups, head_dim, d) and W_o^T as (groups, heads_per_group * head_dim, d); norm each group.
    head_dim = attn.head_dim
    n_groups = attn.v_proj.out_features // head_dim
    v = attn.v_proj.weight.view(n_groups, -1)                       # (G, head_dim * d)
    o = attn.o_proj.weight.t().reshape(n_groups, -1)                # (G, group * head_dim * d)
    return v.norm(dim=1) * o.norm(dim=1)
    # END SOLUTION


def group_rows(groups: torch.Tensor, rows_per_group: int) -> torch.Tensor:
    """Row indices covered by whole groups: group g owns rows [g * rows_per_group, (g + 1) * rows_per_group)."""
    return (groups[:, None] * rows_per_group + torch.arange(rows_per_group, device=groups.device)).flatten()


@torch.no_grad()
def prune_head_groups(attn, keep: int) -> torch.Tensor:
    """Keep the `keep` most important KV groups of a transformers attention module: q/k/v lose the rows of the
    other groups' heads, o_proj the matching columns. Returns the kept group indices."""
    # BEGIN SOLUTION [structured-prune] Pick groups; q rows and o columns come per query head of the group, k/v rows per KV head.
    kept = top_k_indices(head_group_scores(attn), keep)
    q_rows = group_rows(kept, attn.num_key_value_groups * attn.head_dim)   # every query head of the group
    kv_rows = group_rows(kept, attn.head_dim)                               # the group's one K/V head
    attn.q_proj = _sliced_linear(attn.q_proj, q_rows, dim=0)
    attn.k_proj = _sliced_linear(attn.k_proj, kv_rows, dim=0)
    attn.v_proj = _sliced_linear(attn.v_proj, kv_rows, dim=0)
    attn.o_proj = _sliced_linear(attn.o_proj, q_rows, dim=1)
    return kept
    # END SOLUTION


def prune_structured(model, mlp_keep: float = 0.5, groups_keep: int | None = None):
    """A pruned copy of a transformers Llama: every block keeps round(mlp_keep * I) MLP channels and
    `groups_keep` KV groups (all of them when None). The config is updated so that saving and reloading work."""
    if not 0.0 < mlp_keep <= 1.0:
        raise ValueError(f"mlp_keep is the fraction of MLP channels to keep, in (0, 1]; got {mlp_keep}")
    pruned = copy.deepcopy(model)
    c = pruned.config
    width = max(1, round(mlp_keep * c.intermediate_size))
    groups = c.num_key_value_heads if groups_keep is None else groups_keep
    if not 1 <= groups <= c.num_key_value_heads:
        raise ValueError(f"groups_keep must be in [1, {c.num_key_value_heads}], got {groups_keep}")
    per_group = c.num_attention_heads // c.num_key_value_heads
    c.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads  # pin it before heads change
    for block in pruned.model.layers:
        prune_mlp_channels(block.mlp, width)
        if groups < c.num_key_value_heads:
            prune_head_groups(block.self_attn, groups)
    c.intermediate_size, c.num_key_value_heads, c.num_attention_heads = width, groups, groups * per_group
    return pruned


# ============================================================================================ 2:4 sparsity

def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Boolean 2:4 mask of a (out, in) weight: in every group of 4 consecutive inputs of a row, keep the 2
    largest |w| (True) and drop the other 2. Exactly half of each group survives, which is what NVIDIA's
    sparse tensor cores (and torch's semi-structured tensors) require."""
    if weight.dim() != 2 or weight.size(1) % 4:
        raise ValueError(f"2:4 sparsity needs a 2-D weight whose input size is a multiple of 4, got "
                         f"{tuple(weight.shape)}")
    # BEGIN SOLUTION [two-four] View rows as (out, in/4, 4); top-2 |w| per group of 4 along the last axis; scatter True.
    groups = weight.detach().abs().reshape(weight.size(0), -1, 4)        # (out, in/4, 4)
    keep = groups.topk(2, dim=-1).indices                                # (out, in/4, 2)
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)
    # END SOLUTION


@torch.no_grad()
def two_four_prune_model(model) -> tuple[int, int]:
    """Apply a 2:4 mask to every block Linear (in place). Returns count_zeros over those weights."""
    weights = [m.weight for m in prunable_linears(model)]
    for w in weights:
        w.mul_(two_four_mask(w).to(w.dtype))
    return count_zeros(weights)


def to_semi_structured(linear: nn.Linear) -> nn.Linear:
    """CUDA only: 2:4-prune a half-precision Linear and store its weight as torch's semi-structured sparse
    tensor, so F.linear runs on the sparse tensor cores (cuSPARSELt/CUTLASS). Shapes must meet the kernels'
    alignment (multiples of 64 are safe)."""
    from torch.sparse import to_sparse_semi_structured

    w = linear.weight.detach()
    if w.device.type != "cuda" or w.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError("to_semi_structured needs a CUDA fp16/bf16 Linear: model.half().cuda() first")
    dense = w * two_four_mask(w).to(w.dtype)
    linear.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
    return linear


# ============================================================================================ distillation

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Hinton et al. (2015) knowledge distillation, averaged over positions:

        alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

    logits: (..., V) (any leading shape, e.g. (B, T, V)); targets: the matching (...) token ids.
    The gradient of the KL term w.r.t. the student logits is (p_s - p_t) / T, which for a large T is about
    (s - t) / (V T^2): multiplying by T^2 keeps the soft term's gradient on the same scale for every T.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}; they must share the tokenizer and positions")
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need temperature > 0 and 0 <= alpha <= 1, got T={temperature}, alpha={alpha}")
    vocab = student_logits.size(-1)
    s = student_logits.reshape(-1, vocab).float()                 # (N, V)
    t = teacher_logits.reshape(-1, vocab).float().detach()        # (N, V): the teacher is not trained
    y = targets.reshape(-1)                                       # (N,)
    # BEGIN SOLUTION [distill-loss] KL per position = sum_v p_t (log p_t - log p_s) at temperature T, mean over positions, times T^2; mix with CE at T = 1.
    log_p_s = F.log_softmax(s / temperature, dim=-1)
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1).mean()
    ce = F.cross_entropy(s, y)
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce
    # END SOLUTION


def make_student(teacher, layer_ids: list[int]):
    """A shallower copy of a transformers decoder: the same embeddings, final norm and LM head, and only the
    blocks `layer_ids` of the teacher (in that order), numbered 0..len-1 so the KV-cache works."""
    n = teacher.config.num_hidden_layers
    if not layer_ids or any(not 0 <= i < n for i in layer_ids) or len(set(layer_ids)) != len(layer_ids):
        raise ValueError(f"layer_ids must be distinct block indices in [0, {n}), got {layer_ids}")
    # BEGIN SOLUTION [distill-train] Build a fresh model from a config with fewer layers, then copy embeddings, the chosen blocks, the norm and the head.
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_ids)
    student = type(teacher)(config).to(device=teacher.device, dtype=teacher.dtype)
    student.model.embed_tokens.load_state_dict(teacher.model.embed_tokens.state_dict())
    student.model.norm.load_state_dict(teacher.model.norm.state_dict())
    student.lm_head.load_state_dict(teacher.lm_head.state_dict())
    for new, old in enumerate(layer_ids):
        student.model.layers[new].load_state_dict(teacher.model.layers[old].state_dict())
    return student.eval()
    # END SOLUTION


def distill_step(student, teacher, input_ids: torch.Tensor, optimizer: torch.optim.Optimizer,
                 temperature: float = 2.0, alpha: float = 0.5) -> float:
    """One optimizer step of the student on a batch of token ids (B, T): next-token targets, teacher logits
    computed without gradients. Returns the loss before the step."""
    if input_ids.dim() != 2 or input_ids.size(1) < 2:
        raise ValueError(f"input_ids must be (batch, time) with time >= 2, got {tuple(input_ids.shape)}")
    # BEGIN SOLUTION [distill-train] Teacher under no_grad; logits at positions 0..T-2 predict tokens 1..T-1; zero grads, backward, step.
    with torch.no_grad():
        teacher_logits = teacher(input_ids).logits[:, :-1]                # (B, T-1, V)
    student.train()
    student_logits = student(input_ids).logits[:, :-1]                    # (B, T-1, V)
    loss = distillation_loss(student_logits, teacher_logits, input_ids[:, 1:], temperature, alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()
    # END SOLUTION


# ============================================================================================ measuring

@torch.no_grad()
def perplexity(model, ids: torch.Tensor, seq_len: int = 256) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of `seq_len` tokens of the 1-D id tensor."""
    model.eval()
    n = (ids.numel() // seq_len) * seq_len
    if n == 0:
        raise ValueError(f"need at least {seq_len} tokens to measure perplexity, got {ids.numel()}")
    windows = ids[:n].view(-1, seq_len).to(model.device)                 # (W, seq_len)
    total, count = 0.0, 0
    for row in windows.split(4):
        logits = model(row).logits[:, :-1].float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), row[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += row[:, 1:].numel()
    return math.exp(total / count)


@torch.no_grad()
def tokens_per_second(model, prompt_ids: torch.Tensor, new_tokens: int = 16, repeats: int = 1) -> float:
    """Greedy decode speed with transformers' generate (KV-cache on), best of `repeats` after a warm-up."""
    from labkit.bench import best_seconds

    model.eval()
    run = lambda: model.generate(prompt_ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,  # noqa: E731
                                 do_sample=False, pad_token_id=0)
    return new_tokens / best_seconds(run, repeats=repeats)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ============================================================================================ the distilled student

DEFAULT_LAYERS = [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]     # 11 of SmolLM2's 30 blocks, first and last kept
TRAIN_CHARS = 1_000_000                                           # Shakespeare characters for distillation


def shakespeare_ids(tokenizer, start: int, chars: int) -> torch.Tensor:
    """Token ids (1-D) of the Shakespeare characters [start, start + chars)."""
    text = assets.shakespeare(start + chars)[start:]
    return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)


def student_dir() -> Path:
    return labkit.output_dir(__file__) / "student"


def save_atomically(model, tokenizer, target: Path, meta: dict) -> None:
    """save_pretrained into a temporary folder next to `target`, then rename it: a crash never leaves a
    half-written checkpoint under the final name."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "distill.json").write_text(json.dumps(meta, indent=1))
        old = target.with_name(f".{target.name}-old")
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_student(teacher, tokenizer, steps: int = 30, layer_ids: list[int] | None = None, batch: int = 2,
                  seq_len: int = 64, lr: float = 3e-4, temperature: float = 2.0, alpha: float = 0.5,
                  seed: int = 0) -> tuple:
    """Distil SmolLM2 into a student of `layer_ids` blocks on Shakespeare. The embeddings (and the tied head)
    stay frozen: they hold 28M of the parameters and already match the tokenizer. Returns (student, losses)."""
    labkit.seed_everything(seed)
    student = make_student(teacher, layer_ids or DEFAULT_LAYERS)
    student.model.embed_tokens.weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    data = shakespeare_ids(tokenizer, 0, TRAIN_CHARS)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(steps), desc="distilling", leave=False):
        starts = torch.randint(0, data.numel() - seq_len, (batch,), generator=generator)
        input_ids = torch.stack([data[s:s + seq_len] for s in starts]).to(teacher.device)
        losses.append(distill_step(student, teacher, input_ids, optimizer, temperature, alpha))
    return student.eval(), losses


def distilled_student(steps: int = 30, device: str | None = None, retrain: bool = False):
    """(student, tokenizer): the distilled SmolLM2 student, loaded from its checkpoint under outputs/, or
    trained (a few minutes on CPU) and saved when missing. Lab 05 uses it as a speculative-decoding draft."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or str(labkit.pick_device())
    target = student_dir()
    if not retrain and (target / "distill.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(target)
        return AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).to(device).eval(), tokenizer
    teacher, tokenizer = assets.smollm2(device=device)
    start = time.perf_counter()
    student, losses = train_student(teacher, tokenizer, steps=steps)
    meta = dict(layers=DEFAULT_LAYERS, steps=steps, batch=2, seq_len=64, loss_first=losses[0], loss_last=losses[-1],
                seconds=round(time.perf_counter() - start, 1))
    save_atomically(student, tokenizer, target, meta)
    return student, tokenizer


# ============================================================================================ demo

def save_curve(path: Path, sparsities: list[float], curves: dict[str, list[float]], extra: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, ppl in curves.items():
        ax.plot([100 * s for s in sparsities], ppl, marker="o", label=label)
    for label, (sparsity, ppl) in extra.items():
        ax.scatter([100 * sparsity], [ppl], marker="*", s=120, zorder=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of the blocks' Linear weights (%)")
    ax.set_ylabel("held-out perplexity (log scale)")
    ax.set_title("SmolLM2-135M: quality vs sparsity (no fine-tuning)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def pruning_sweep(teacher, held_out: torch.Tensor, sparsities: list[float]):
    """Parts 1-2 of the demo: perplexity vs sparsity (global and per-layer magnitude, 2:4) and one structured
    pruning point, plotted to quality_vs_sparsity.png. Leaves the teacher as it was; returns the pruned copy."""
    # 1. quality vs sparsity: unstructured magnitude pruning, one threshold (global) vs per layer
    original = {k: v.clone() for k, v in teacher.state_dict().items()}
    curves = {"global magnitude": [], "per-layer magnitude": []}
    for sparsity in tqdm(sparsities, desc="sparsity sweep", leave=False):
        for label, scope in (("global magnitude", "global"), ("per-layer magnitude", "layer")):
            teacher.load_state_dict(original)
            magnitude_prune_model(teacher, sparsity, scope)
            curves[label].append(perplexity(teacher, held_out))
    teacher.load_state_dict(original)
    zeros, total = two_four_prune_model(teacher)
    ppl_24 = perplexity(teacher, held_out)
    teacher.load_state_dict(original)
    print("\nsparsity | global magnitude ppl | per-layer magnitude ppl")
    for i, s in enumerate(sparsities):
        print(f"{100 * s:7.0f}% | {curves['global magnitude'][i]:20.1f} | {curves['per-layer magnitude'][i]:23.1f}")
    print(f"2:4 semi-structured ({zeros:,} of {total:,} zero = {zeros / total:.0%}): perplexity {ppl_24:.1f}")

    # 2. structured pruning: half the MLP channels, two of three KV groups -> really smaller matmuls
    pruned = prune_structured(teacher, mlp_keep=0.5, groups_keep=2)
    ppl_struct = perplexity(pruned, held_out)
    removed = 1 - (n_params(pruned) - pruned.model.embed_tokens.weight.numel()) / \
        (n_params(teacher) - teacher.model.embed_tokens.weight.numel())
    print(f"structured (MLP 1536 -> {pruned.config.intermediate_size}, heads 9 -> "
          f"{pruned.config.num_attention_heads}): {removed:.0%} of block weights removed, perplexity {ppl_struct:.1f}")
    path = labkit.output_dir(__file__) / "quality_vs_sparsity.png"
    save_curve(path, sparsities, curves, {"2:4 semi-structured": (0.5, ppl_24),
                                          "structured (MLP 50%, heads 6/9)": (removed, ppl_struct)})
    print(f"plot: {path}")
    return pruned


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="distillation steps (batch 2 x 64 tokens)")
    parser.add_argument("--retrain", action="store_true", help="train the student even if a checkpoint exists")
    parser.add_argument("--eval-tokens", type=int, default=512, help="held-out tokens for perplexity")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--skip-sweep", action="store_true", help="skip the pruning sweep and the structured point")
    args = parser.parse_args(argv)
    labkit.seed_everything(0)
    device = str(labkit.pick_device())

    teacher, tokenizer = assets.smollm2(device=device)
    held_out = shakespeare_ids(tokenizer, TRAIN_CHARS + 100_000, 4 * args.eval_tokens)[:args.eval_tokens]
    base_ppl = perplexity(teacher, held_out)
    print(f"teacher SmolLM2-135M-Instruct: {n_params(teacher) / 1e6:.1f}M params, held-out perplexity "
          f"{base_ppl:.1f} on {held_out.numel()} Shakespeare tokens")
    pruned = None if args.skip_sweep else pruning_sweep(teacher, held_out, args.sparsities)

    # 3. distillation: an 11-block student trained on the teacher's logits
    cached = (student_dir() / "distill.json").exists() and not args.retrain
    student, _ = distilled_student(steps=args.steps, device=device, retrain=args.retrain)
    meta = json.loads((student_dir() / "distill.json").read_text())
    print(f"\nstudent: {'loaded from' if cached else 'distilled and saved to'} {student_dir()} "
          f"({meta['steps']} steps, loss {meta['loss_first']:.2f} -> {meta['loss_last']:.2f}, {meta['seconds']} s)")
    undistilled = make_student(teacher, meta["layers"])
    prompt = tokenizer("ROMEO:\nBut soft, what light", return_tensors="pt")["input_ids"].to(device)
    rows = [("teacher (30 blocks)", teacher), ("student, copied blocks only", undistilled),
            (f"student, distilled ({len(meta['layers'])} blocks)", student),
            ("teacher, structured-pruned", pruned)]
    print(f"\n{'model':34s} | {'params':>8s} | {'perplexity':>10s} | {'tokens/s':>8s}")
    for name, model in tqdm([row for row in rows if row[1] is not None], desc="table", leave=False):
        ppl = base_ppl if model is teacher else perplexity(model, held_out)
        print(f"{name:34s} | {n_params(model) / 1e6:7.1f}M | {ppl:10.1f} | {tokens_per_second(model, prompt):8.1f}")
    text = tokenizer.decode(student.generate(prompt, max_new_tokens=24, do_sample=False, pad_token_id=0)[0])
    print(f"\n--- distilled student, greedy ---\n{text}\n---")


if __name__ == "__main__":
    labkit.run(main)
