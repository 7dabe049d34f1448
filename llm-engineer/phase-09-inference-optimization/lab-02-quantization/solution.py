"""Weight quantization from scratch: INT8, INT4 with packing, NF4, GPTQ and AWQ, then the real libraries.

A linear layer computes y = x Wᵀ. Weight-only quantization stores W in few bits plus a little metadata (a scale,
sometimes a zero point, per tensor, per output channel or per group of input columns) and rebuilds an
approximate Ŵ just before the matmul. Memory falls 4x (INT8) or about 7x (INT4 with its scales); the price is the
error Ŵ - W, and how much that error moves y on real inputs is what the smarter methods minimise.

What you build:
1. `absmax_quantize`: symmetric INT8, q = round(w / s) with s = max|w| / 127, one scale per row.
2. `zeropoint_quantize`: asymmetric (affine) b-bit codes 0..2^b-1, a scale and an integer zero point per row.
3. `to_rows` / `fake_quantize`: the granularity (one scale per tensor, per output channel, or per group of
   `group_size` input columns) as a reshape into rows that share a scale.
4. `pack_int4` / `unpack_int4`: two 4-bit codes per byte, first one in the high nibble (bitsandbytes' order).
5. `nf4_quantize`: a 16-level codebook (normal quantiles) on absmax blocks of 64, bitsandbytes' NF4.
6. `rtn_int4` / `Int4Weight.dequantize`: INT4 round-to-nearest per group of columns (asymmetric), the
   baseline that GPTQ and AWQ improve on; torchao's int4 weight-only format is the same grid.
7. `gptq_hessian` / `gptq_quantize`: quantize one column at a time and push its error onto the columns not yet
   quantized through the inverse Hessian H = 2XᵀX/n (via its Cholesky factor), so the layer's output moves less.
8. `awq_scales` / `awq_scale_weight` / `awq_search`: scale input channel j of W by s_j = mean|x_j|^α before
   rounding (and the input by 1/s_j), so channels with large activations lose less precision; α from a grid.

`main()` quantizes SmolLM2-135M-Instruct every way (yours, bitsandbytes LLM.int8 and NF4, torchao, quanto) and
prints one table: held-out perplexity, weight memory and CPU latency per forward.
"""
from __future__ import annotations

import argparse
import warnings
import copy
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit
import labkit.assets

# The 16 NF4 levels (QLoRA, appendix E; bitsandbytes' table): quantiles of N(0, 1) scaled into [-1, 1], with an
# exact 0. Code i (0..15) stands for NF4_LEVELS[i].
NF4_LEVELS = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
              -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
              0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0)
GRANULARITIES = ("tensor", "channel", "group")


# ------------------------------------------------------------------------------------------- INT8 quantizers

def absmax_quantize(rows: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization, one scale per row of `rows` (R, C).

    qmax = 2^(bits-1) - 1 (127 for INT8); s = max|row| / qmax; q = clamp(round(x / s), -qmax, qmax).
    Returns (q (R, C) int8, scale (R, 1) float32). A row of zeros gets scale 1 (any scale maps it to 0).
    Dequantize with q * scale; the error is at most scale / 2 per element.
    """
    # BEGIN SOLUTION [absmax] qmax from bits; per-row max of |x| (keepdim); zero rows -> scale 1; round, clamp to ±qmax.
    qmax = 2 ** (bits - 1) - 1
    scale = rows.abs().amax(dim=1, keepdim=True).float() / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.round(rows / scale).clamp(-qmax, qmax)
    return q.to(torch.int8), scale
    # END SOLUTION


def zeropoint_quantize(rows: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric (affine) quantization, one (scale, zero) per row of `rows` (R, C): codes 0..qmax, qmax = 2^b - 1.

    The range [lo, hi] always contains 0 (lo = min(row.min, 0), hi = max(row.max, 0)) so that 0 is exact;
    s = (hi - lo) / qmax; zero = round(-lo / s), an integer in 0..qmax; q = clamp(round(x / s) + zero, 0, qmax).
    Returns (q (R, C) uint8, scale (R, 1) float32, zero (R, 1) float32 holding integers).
    Dequantize with (q - zero) * scale. A row of zeros gets scale 1 and zero 0.
    """
    # BEGIN SOLUTION [zero-point] lo/hi clamped to include 0; s = (hi-lo)/qmax (1 where 0); zero = round(-lo/s); q = clamp(round(x/s)+zero).
    qmax = 2 ** bits - 1
    lo = rows.amin(dim=1, keepdim=True).float().clamp(max=0)
    hi = rows.amax(dim=1, keepdim=True).float().clamp(min=0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(rows / scale) + zero, 0, qmax)
    return q.to(torch.uint8), scale, zero
    # END SOLUTION


# ------------------------------------------------------------------------------------------- granularity

def to_rows(weight: torch.Tensor, granularity: str, group_size: int = 128) -> torch.Tensor:
    """A view of `weight` (out, in) as rows that share one scale.

    tensor  -> (1, out*in): one scale for everything;
    channel -> (out, in): one scale per output channel (row of W);
    group   -> (out*in/group_size, group_size): one scale per `group_size` consecutive input columns of a row.
    Raises ValueError for an unknown granularity or `in` not divisible by `group_size`.
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight (out, in), got shape {tuple(weight.shape)}")
    # BEGIN SOLUTION [granularity] tensor: reshape(1, -1); channel: as is; group: check in % group_size, reshape(-1, group_size).
    if granularity == "tensor":
        return weight.reshape(1, -1)
    if granularity == "channel":
        return weight
    if granularity == "group":
        if group_size < 1 or weight.shape[1] % group_size:
            raise ValueError(f"in_features={weight.shape[1]} is not divisible by group_size={group_size}; "
                             "pick a group size that divides it")
        return weight.reshape(-1, group_size)
    raise ValueError(f"unknown granularity {granularity!r}; use one of {GRANULARITIES}")
    # END SOLUTION


def fake_quantize(weight: torch.Tensor, scheme: str = "absmax", granularity: str = "channel", bits: int = 8,
                  group_size: int = 128) -> torch.Tensor:
    """Quantize then dequantize `weight` (out, in): the Ŵ a quantized layer would use, same shape and dtype.

    scheme "absmax" (symmetric) or "zeropoint" (asymmetric); granularity as in `to_rows`.
    """
    if scheme not in ("absmax", "zeropoint"):
        raise ValueError(f"unknown scheme {scheme!r}; use 'absmax' or 'zeropoint'")
    # BEGIN SOLUTION [granularity] to_rows, quantize the rows, dequantize ((q - zero) * s or q * s), reshape back.
    rows = to_rows(weight, granularity, group_size)
    if scheme == "absmax":
        q, scale = absmax_quantize(rows, bits)
        deq = q.float() * scale
    else:
        q, scale, zero = zeropoint_quantize(rows, bits)
        deq = (q.float() - zero) * scale
    return deq.reshape(weight.shape).to(weight.dtype)
    # END SOLUTION


# ------------------------------------------------------------------------------------------- INT4 packing

def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last axis: byte = (codes[2i] << 4) | codes[2i+1].

    codes: (..., n) integer tensor with values 0..15 and n even. Returns (..., n/2) uint8.
    Raises ValueError for an odd last axis or a value outside 0..15.
    """
    if codes.shape[-1] % 2:
        raise ValueError(f"the last axis must be even to pack pairs of 4-bit codes, got {codes.shape[-1]}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError(f"4-bit codes must lie in 0..15, got {int(codes.min())}..{int(codes.max())}")
    # BEGIN SOLUTION [int4-pack] Even positions shifted left by 4 into the high nibble, OR the odd positions; uint8.
    c = codes.to(torch.uint8)
    return (c[..., 0::2] << 4) | c[..., 1::2]
    # END SOLUTION


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`: (..., m) uint8 -> (..., 2m) uint8 codes 0..15, high nibble first."""
    # BEGIN SOLUTION [int4-pack] High nibble (>> 4) and low nibble (& 0xF), interleaved back with stack(-1).flatten(-2).
    high = packed >> 4
    low = packed & 0x0F
    return torch.stack((high, low), dim=-1).flatten(-2)
    # END SOLUTION


# ------------------------------------------------------------------------------------------- NF4

def nf4_quantize(weight: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4: the flattened weight in blocks of `blocksize`; each block divided by its absmax into [-1, 1], each
    value stored as the index (0..15) of the nearest of the 16 NF4 levels.

    Returns (codes (numel,) uint8, absmax (numel / blocksize,) float32). numel must divide into blocks.
    """
    if weight.numel() % blocksize:
        raise ValueError(f"{weight.numel()} weights do not split into blocks of {blocksize}")
    # BEGIN SOLUTION [nf4] Blocks (n, blocksize); absmax per block (1 for zero blocks); argmin |x/absmax - level|.
    blocks = weight.reshape(-1, blocksize).float()
    absmax = blocks.abs().amax(dim=1)
    safe = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    levels = torch.tensor(NF4_LEVELS, device=weight.device)
    normed = blocks / safe[:, None]
    codes = (normed.unsqueeze(-1) - levels).abs().argmin(dim=-1)
    return codes.flatten().to(torch.uint8), absmax
    # END SOLUTION


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape, blocksize: int = 64) -> torch.Tensor:
    """level[code] * absmax of its block, reshaped to `shape`."""
    levels = torch.tensor(NF4_LEVELS, device=codes.device)
    return (levels[codes.long()].reshape(-1, blocksize) * absmax[:, None]).reshape(shape)


# ------------------------------------------------------------------------------------------- INT4 groups (RTN)

@dataclass
class Int4Weight:
    """A weight (out, in) in asymmetric INT4 with one (scale, zero) per group of `group_size` input columns.

    codes (out, in) uint8 in 0..15; scale, zero (out, in / group_size) float32 (zero holds integers 0..15).
    Element (r, c) dequantizes to (codes[r, c] - zero[r, g]) * scale[r, g] with g = c // group_size.
    """
    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    group_size: int

    def dequantize(self) -> torch.Tensor:
        """The float32 (out, in) weight these codes stand for."""
        # BEGIN SOLUTION [int4-group] Expand scale and zero over each group's columns (repeat_interleave on dim 1).
        scale = self.scale.repeat_interleave(self.group_size, dim=1)
        zero = self.zero.repeat_interleave(self.group_size, dim=1)
        return (self.codes.float() - zero) * scale
        # END SOLUTION


def rtn_int4(weight: torch.Tensor, group_size: int = 128) -> Int4Weight:
    """Round-to-nearest INT4: `zeropoint_quantize` with 4 bits on groups of `group_size` columns of each row."""
    out_features, in_features = weight.shape
    # BEGIN SOLUTION [int4-group] to_rows(..., "group"), zeropoint_quantize(bits=4), reshape codes to (out, in) and scale/zero to (out, in/g).
    q, scale, zero = zeropoint_quantize(to_rows(weight, "group", group_size), bits=4)
    n_groups = in_features // group_size
    return Int4Weight(q.reshape(out_features, in_features), scale.reshape(out_features, n_groups),
                      zero.reshape(out_features, n_groups), group_size)
    # END SOLUTION


# ------------------------------------------------------------------------------------------- GPTQ

def gptq_hessian(x: torch.Tensor) -> torch.Tensor:
    """H = 2 XᵀX / n for calibration inputs x (n, in): the Hessian of the layer's squared output error
    ||x Wᵀ - x Ŵᵀ||² / n with respect to each row of Ŵ. Returns (in, in) float32."""
    # BEGIN SOLUTION [gptq] Flatten leading dims to (n, in), float32; 2 * xᵀx / n.
    x = x.reshape(-1, x.shape[-1]).float()
    return 2.0 * x.T @ x / x.shape[0]
    # END SOLUTION


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, group_size: int = 128, block_size: int = 128,
                  damp: float = 0.01) -> Int4Weight:
    """GPTQ (Frantar et al., 2022) to INT4 groups, column by column with error feedback.

    For column j of W (left to right): quantize it on its group's grid (the group's scale/zero are chosen from
    the *current*, already corrected, columns when j starts a group), then spread its error over the columns
    not yet quantized:  err = (w_j - q_j) / U[j, j];  W[:, k] -= err · U[j, k] for k > j,
    where U is the upper Cholesky factor of H⁻¹ (H damped by `damp` · mean(diag H) on the diagonal).
    Lazy batches: the update inside a block of `block_size` columns is applied at once, and the block's
    accumulated errors reach the later columns in one matmul when the block ends.
    Input channels that never fire (H[j, j] == 0) get weight 0. block_size must be a multiple of group_size.
    """
    out_features, in_features = weight.shape
    if in_features % group_size or block_size % group_size:
        raise ValueError(f"in_features={in_features} and block_size={block_size} must be multiples of "
                         f"group_size={group_size}")
    n_groups = in_features // group_size
    codes = torch.zeros(out_features, in_features, dtype=torch.uint8)
    scale = torch.zeros(out_features, n_groups)
    zero = torch.zeros(out_features, n_groups)
    # BEGIN SOLUTION [gptq] Dead inputs; damp; U = cholesky(cholesky_inverse(cholesky(H)), upper); per block: per column quantize, err / U[j,j], update the block's rest; then the later columns with Err @ U[block, later].
    W = weight.detach().float().clone()
    H = hessian.detach().float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(in_features)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    for b0 in range(0, in_features, block_size):
        b1 = min(b0 + block_size, in_features)
        W1 = W[:, b0:b1].clone()                       # (out, block) columns being quantized, corrected in place
        Err1 = torch.zeros_like(W1)
        U1 = U[b0:b1, b0:b1]
        for i in range(b1 - b0):
            j = b0 + i
            g = j // group_size
            if j % group_size == 0:                    # a new group: its grid from the corrected columns
                _, s, z = zeropoint_quantize(W1[:, i:i + group_size], bits=4)
                scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
            w = W1[:, i]
            q = torch.clamp(torch.round(w / scale[:, g]) + zero[:, g], 0, 15)
            codes[:, j] = q.to(torch.uint8)
            err = (w - (q - zero[:, g]) * scale[:, g]) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        W[:, b1:] -= Err1 @ U[b0:b1, b1:]
    # END SOLUTION
    return Int4Weight(codes, scale, zero, group_size)


# ------------------------------------------------------------------------------------------- AWQ

def awq_scales(x_absmean: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-input-channel scales s = mean|x|^α (in,), normalised so that sqrt(max(s) · min(s)) = 1.

    α = 0 gives all ones (plain RTN); α = 1 scales each channel by its mean activation size. Channels that never
    fire are treated as 1e-8 before the power so no scale is 0 or inf.
    """
    # BEGIN SOLUTION [awq] clamp(min=1e-8) ** alpha, then divide by sqrt(s.max() * s.min()).
    s = x_absmean.float().clamp(min=1e-8) ** alpha
    return s / torch.sqrt(s.max() * s.min())
    # END SOLUTION


def awq_scale_weight(weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """W · diag(s): column j of W times s_j. With the input divided by s the layer is unchanged:
    (x / s) (W · diag(s))ᵀ = x Wᵀ. Only the rounding that follows sees the difference."""
    # BEGIN SOLUTION [awq] Broadcast s over the rows: weight * s[None, :].
    return weight * s[None, :]
    # END SOLUTION


def awq_search(weight: torch.Tensor, x: torch.Tensor, group_size: int = 128, n_grid: int = 20):
    """The AWQ scale for one layer: try α = 0, 1/n_grid, ..., 1; for each, quantize W·diag(s) with `rtn_int4`,
    undo the scale (Ŵ = Q(W·diag(s)) / s) and measure the output error mean((x Ŵᵀ - x Wᵀ)²) on the calibration
    inputs x (n, in). Keep the best α (the first one on a tie).

    Returns (alpha, s (in,), Int4Weight of W·diag(s)). Use it as y = (x / s) Q(W·diag(s))ᵀ.
    """
    x = x.reshape(-1, x.shape[-1]).float()
    weight = weight.detach().float()
    reference = x @ weight.T
    x_absmean = x.abs().mean(dim=0)
    best = None
    # BEGIN SOLUTION [awq] For each alpha: s = awq_scales; q = rtn_int4(awq_scale_weight(W, s)); err of x (q.dequantize()/s)ᵀ; keep strictly better.
    for k in range(n_grid + 1):
        alpha = k / n_grid
        s = awq_scales(x_absmean, alpha)
        q = rtn_int4(awq_scale_weight(weight, s), group_size)
        err = (x @ (q.dequantize() / s[None, :]).T - reference).pow(2).mean().item()
        if best is None or err < best[0]:
            best = (err, alpha, s, q)
    # END SOLUTION
    return best[1], best[2], best[3]


# ------------------------------------------------------------------------------------------- a quantized layer

class QuantLinear(nn.Module):
    """A linear layer that stores its weight quantized and dequantizes it for each forward.

    INT8: `q` (out, in) int8 and `scale` (out, 1). INT4: `packed` (out, in/2) uint8 (two codes a byte), `scale` and
    `zero` (out, in/group) float16. An optional `input_scale` (in,) multiplies the input first (AWQ's 1/s; a real
    deployment folds it into the previous layer's weights). The float weight is never kept.
    """

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size = 0, 0
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.register_buffer("input_scale", None)

    @classmethod
    def int8(cls, linear: nn.Linear) -> "QuantLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias)
        q, scale = absmax_quantize(to_rows(linear.weight.detach(), "channel"))
        layer.bits = 8
        layer.register_buffer("q", q)
        layer.register_buffer("scale", scale)
        return layer

    @classmethod
    def int4(cls, linear: nn.Linear, weight: Int4Weight, input_scale: torch.Tensor | None = None) -> "QuantLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias)
        layer.bits, layer.group_size = 4, weight.group_size
        layer.register_buffer("packed", pack_int4(weight.codes))
        layer.register_buffer("scale", weight.scale.half())     # fp16 metadata, as GPTQ/AWQ checkpoints store it
        layer.register_buffer("zero", weight.zero.to(torch.uint8))
        if input_scale is not None:
            layer.input_scale = input_scale.float()
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        if self.bits == 8:
            return self.q.float() * self.scale
        codes = unpack_int4(self.packed)
        return Int4Weight(codes, self.scale.float(), self.zero.float(), self.group_size).dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)


# ------------------------------------------------------------------------------------------- measuring a model

def tensor_bytes(t) -> int:
    """Bytes a tensor really holds: the inner tensors of a tensor subclass (torchao, quanto), plus a
    bitsandbytes parameter's scales (LLM.int8's SCB, the 4-bit quant state's absmax and nested state)."""
    if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    total = t.numel() * t.element_size()
    if getattr(t, "SCB", None) is not None:
        total += tensor_bytes(t.SCB)
    state = getattr(t, "quant_state", None)
    if state is not None:
        total += tensor_bytes(state.absmax) + tensor_bytes(state.code)
        if getattr(state, "state2", None) is not None:
            total += tensor_bytes(state.state2.absmax) + tensor_bytes(state.state2.code)
    return total


def weight_bytes(model: nn.Module) -> int:
    """Parameters and buffers, shared (tied) tensors counted once."""
    seen, total = set(), 0
    for _, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += tensor_bytes(t)
    return total


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, window: int = 256) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of `window` tokens of ids (n,)."""
    n_windows = ids.numel() // window
    if n_windows == 0:
        raise ValueError(f"need at least {window} tokens for one window, got {ids.numel()}")
    batch = ids[: n_windows * window].reshape(n_windows, window)
    nll = 0.0
    for row in batch:
        logits = model(row[None]).logits[0, :-1].float()
        nll += F.cross_entropy(logits, row[1:], reduction="sum").item()
    return math.exp(nll / (n_windows * (window - 1)))


@torch.no_grad()
def forward_ms(model: nn.Module, ids: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of one forward over ids (1, T), after a warm-up call."""
    model(ids)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(ids)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def linear_layers(model: nn.Module, skip=("lm_head",)) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not any(s in name for s in skip)}


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


@torch.no_grad()
def calibrate(model: nn.Module, batches: torch.Tensor, keep_rows: int = 256):
    """Run the calibration batches (B, T) through the float model and collect, for every linear layer's input:
    the Hessian 2XᵀX/n (averaged over all tokens) and a random sample of `keep_rows` input rows (for AWQ).
    (Real GPTQ goes layer by layer, feeding each block the outputs of the already quantized ones; this one-pass
    version is simpler and close enough at this size.)"""
    layers = linear_layers(model)
    stats = {name: {"H": None, "n": 0, "rows": []} for name in layers}
    generator = torch.Generator().manual_seed(0)

    def hook(name):
        def record(_module, inputs, _output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
            st = stats[name]
            h = gptq_hessian(x)
            st["H"] = h if st["H"] is None else (st["H"] * st["n"] + h * len(x)) / (st["n"] + len(x))
            st["n"] += len(x)
            pick = torch.randperm(len(x), generator=generator)[: max(1, keep_rows // len(batches))]
            st["rows"].append(x[pick])
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    try:
        for row in tqdm(batches, desc="calibration", leave=False):
            model(row[None])
    finally:
        for h in handles:
            h.remove()
    return {name: (st["H"], torch.cat(st["rows"])) for name, st in stats.items()}


def quantize_model(model: nn.Module, method: str, calib=None, group_size: int = 64) -> nn.Module:
    """A copy of `model` with every linear layer (except the tied lm_head) replaced by a QuantLinear:
    'int8' (absmax per channel), 'rtn4', 'gptq4' or 'awq4' (INT4, groups of `group_size`)."""
    model = copy.deepcopy(model)
    for name, linear in tqdm(list(linear_layers(model).items()), desc=method, leave=False):
        w = linear.weight.detach()
        if method == "int8":
            new = QuantLinear.int8(linear)
        elif method == "rtn4":
            new = QuantLinear.int4(linear, rtn_int4(w, group_size))
        elif method == "gptq4":
            new = QuantLinear.int4(linear, gptq_quantize(w, calib[name][0], group_size))
        elif method == "awq4":
            _, s, q = awq_search(w, calib[name][1], group_size)
            new = QuantLinear.int4(linear, q, input_scale=1.0 / s)
        else:
            raise ValueError(f"unknown method {method!r}; use int8, rtn4, gptq4 or awq4")
        replace_module(model, name, new)
    return model


# ------------------------------------------------------------------------------------------- the libraries

def bnb_model(path, kind: str):
    """SmolLM2 loaded by transformers with bitsandbytes: kind 'int8' (LLM.int8(), Linear8bitLt, outlier
    threshold 6) or 'nf4' (Linear4bit, NF4 blocks of 64, float32 compute). Runs on CPU."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if kind == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map="cpu",
                                                dtype=torch.float32).eval()


def torchao_model(model: nn.Module, kind: str, group_size: int = 64) -> nn.Module:
    """torchao `quantize_` on a copy: 'int8' = Int8WeightOnlyConfig (per channel, symmetric); 'int4' =
    IntxWeightOnlyConfig int4, asymmetric, groups of `group_size` (the same grid as `rtn_int4`, stored unpacked
    in int8 on CPU). lm_head is left alone (it shares its weight with the embedding)."""
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    model = copy.deepcopy(model)
    config = Int8WeightOnlyConfig() if kind == "int8" else IntxWeightOnlyConfig(
        weight_dtype=torch.int4, granularity=PerGroup(group_size), mapping_type=MappingType.ASYMMETRIC)
    quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and "lm_head" not in fqn)
    return model


def quanto_model(model: nn.Module, kind: str) -> nn.Module:
    """optimum-quanto on a copy: quantize(weights=qint8 | qint4), then freeze (stores the integer weights)."""
    from optimum.quanto import freeze, qint4, qint8, quantize

    model = copy.deepcopy(model)
    quantize(model, weights=qint8 if kind == "int8" else qint4, exclude="lm_head")
    freeze(model)
    return model


# ------------------------------------------------------------------------------------------- demo

def token_slices(tokenizer, calib_tokens: int, eval_tokens: int):
    """Calibration text from the start of the plays, held-out text from the end (no overlap)."""
    text = labkit.assets.shakespeare()
    calib = tokenizer(text[: calib_tokens * 6], return_tensors="pt").input_ids[0][:calib_tokens]
    held = tokenizer(text[-eval_tokens * 6:], return_tensors="pt").input_ids[0][-eval_tokens:]
    if len(calib) < calib_tokens or len(held) < eval_tokens:
        raise ValueError("not enough text for the requested token counts; lower --calib-tokens/--eval-tokens")
    return calib, held


def tour(seed: int = 0) -> None:
    """Every quantizer once on a random 256 x 512 layer with four loud input channels: weight error and the
    layer's output error (relative RMS) on 512 calibration inputs. Runs in about a second, tasks in order."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(256, 512, generator=g) * 0.05
    x = torch.randn(512, 512, generator=g) @ (torch.eye(512) + 0.3 * torch.randn(512, 512, generator=g) / 512 ** 0.5)
    x[:, :4] *= 20
    y = x @ w.T

    def report(name, w_hat):
        w_err = ((w_hat - w).pow(2).mean() / w.pow(2).mean()).sqrt().item()
        y_err = ((x @ w_hat.T - y).pow(2).mean() / y.pow(2).mean()).sqrt().item()
        print(f"  {name:<28} weight error {w_err:7.4f}   output error {y_err:7.4f}")

    print("tour: one random 256 x 512 layer, relative RMS errors")
    report("int8 absmax per-tensor", fake_quantize(w, "absmax", "tensor"))
    report("int8 absmax per-channel", fake_quantize(w, "absmax", "channel"))
    report("int8 zero-point per-channel", fake_quantize(w, "zeropoint", "channel"))
    report("int4 absmax per-channel", fake_quantize(w, "absmax", "channel", bits=4))
    report("int4 zero-point groups of 64", fake_quantize(w, "zeropoint", "group", bits=4, group_size=64))
    report("nf4 blocks of 64", nf4_dequantize(*nf4_quantize(w), w.shape))
    rtn = rtn_int4(w, 64)
    packed = pack_int4(rtn.codes)
    print(f"  packed int4: {rtn.codes.numel():,} codes -> {packed.numel():,} bytes, round trip exact: "
          f"{torch.equal(unpack_int4(packed), rtn.codes)}")
    report("int4 g64 RTN", rtn.dequantize())
    report("int4 g64 GPTQ", gptq_quantize(w, gptq_hessian(x), 64).dequantize())
    alpha, s, q = awq_search(w, x, 64)
    report(f"int4 g64 AWQ (alpha {alpha:.2f})", q.dequantize() / s)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Quantize SmolLM2-135M every way and compare.")
    parser.add_argument("--calib-tokens", type=int, default=1024, help="calibration tokens (GPTQ, AWQ)")
    parser.add_argument("--eval-tokens", type=int, default=512, help="held-out tokens for perplexity")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--group-size", type=int, default=64, help="INT4 group (SmolLM2's 576 = 9 x 64)")
    parser.add_argument("--latency-tokens", type=int, default=64, help="sequence length of the timed forward")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a busy machine: GPTQ runs many small ops)")
    parser.add_argument("--skip", nargs="*", default=[], help="scheme names to leave out")
    parser.add_argument("--tour-only", action="store_true", help="only the one-layer tour (a second)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")  # bnb, once per call
    labkit.seed_everything(0)
    tour()
    if args.tour_only:
        return

    model, tokenizer = labkit.assets.smollm2()
    calib_ids, held_ids = token_slices(tokenizer, args.calib_tokens, args.eval_tokens)
    timing_ids = held_ids[None, : args.latency_tokens]
    print(f"SmolLM2-135M-Instruct: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{len(linear_layers(model))} linear layers quantized (lm_head/embedding kept in float32)")
    print(f"calibration {len(calib_ids)} tokens, held-out {len(held_ids)} tokens in windows of {args.window}, "
          f"torch threads {torch.get_num_threads()}")

    path, g = labkit.assets.smollm2_path(), args.group_size
    calib = None
    if not {f"ours int4 g{g} GPTQ", f"ours int4 g{g} AWQ"} <= set(args.skip):   # only GPTQ and AWQ need it
        start = time.perf_counter()
        calib = calibrate(model, calib_ids[: len(calib_ids) // args.window * args.window].reshape(-1, args.window))
        print(f"calibration pass: {time.perf_counter() - start:.1f} s")

    schemes = {
        "fp32": lambda: model,
        "ours int8 per-channel": lambda: quantize_model(model, "int8"),
        f"ours int4 g{g} RTN": lambda: quantize_model(model, "rtn4", group_size=g),
        f"ours int4 g{g} GPTQ": lambda: quantize_model(model, "gptq4", calib, group_size=g),
        f"ours int4 g{g} AWQ": lambda: quantize_model(model, "awq4", calib, group_size=g),
        "bnb LLM.int8": lambda: bnb_model(path, "int8"),
        "bnb NF4 (blocks of 64)": lambda: bnb_model(path, "nf4"),
        "torchao int8 weight-only": lambda: torchao_model(model, "int8"),
        f"torchao int4 g{g} (asym)": lambda: torchao_model(model, "int4", g),
        "quanto qint4": lambda: quanto_model(model, "int4"),
    }
    rows = []
    for name, build in tqdm(schemes.items(), desc="schemes"):
        if name in args.skip:
            continue
        start = time.perf_counter()
        try:
            quantized = build()
        except Exception as err:  # a library path that does not run here should not hide the others
            tqdm.write(f"  {name}: could not be built here ({type(err).__name__}: {err})")
            continue
        build_s = time.perf_counter() - start
        ppl = perplexity(quantized, held_ids, args.window)
        ms = forward_ms(quantized, timing_ids)
        rows.append((name, ppl, weight_bytes(quantized) / 2 ** 20, ms, build_s))
        tqdm.write(f"  {name}: ppl {ppl:.3f}, {rows[-1][2]:.1f} MiB, {ms:.0f} ms, built in {build_s:.1f} s")
        if quantized is not model:
            del quantized

    base_ppl, base_mib, base_ms = rows[0][1], rows[0][2], rows[0][3]
    print(f"\n| scheme | perplexity | Δ vs fp32 | weights MiB | x smaller | forward ms ({args.latency_tokens} tok) "
          f"| x fp32 time | build s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, ppl, mib, ms, build_s in rows:
        print(f"| {name} | {ppl:.3f} | {ppl - base_ppl:+.3f} | {mib:.1f} | {base_mib / mib:.2f} | {ms:.0f} "
              f"| {ms / base_ms:.2f} | {build_s:.1f} |")


if __name__ == "__main__":
    labkit.run(main)
