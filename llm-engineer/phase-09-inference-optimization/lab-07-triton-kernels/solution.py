"""Triton kernels: vector add, fused softmax, tiled matmul, fused LayerNorm and a FlashAttention forward.

A Triton kernel is a Python function that one *program* (a CUDA thread block) runs on a whole tile of data at
once: `tl.arange(0, BLOCK)` is a vector of BLOCK offsets, `tl.load`/`tl.store` move a tile between memory and
registers, and a launch `kernel[grid](...)` starts one program per grid cell. Every tile size is a power of two
known at compile time (`tl.constexpr`), so the edge of a tensor whose size is not a multiple of BLOCK is handled
with a *mask*: lanes past the end neither load nor store.

What you build, each as a kernel plus the Python launcher that sizes the grid and calls it:

1. `online_softmax` (pure PyTorch, first): softmax read in column tiles, keeping a running max m and a running
   normaliser l per row. It is the math that makes fused softmax and FlashAttention possible.
2. `vector_add`: the smallest kernel, one program per BLOCK elements, the tail masked.
3. `softmax`: one program per row; the row stays in registers for max, exp, sum and divide (one read, one write).
4. `matmul`: C = A @ B in (BLOCK_M, BLOCK_N) output tiles, walking K in BLOCK_K steps, accumulating in fp32.
5. `layer_norm`: mean, variance, normalise, scale and shift in one program per row.
6. `flash_attention`: softmax(Q K^T * scale) V without ever storing the (L, L) score matrix: tiles of K/V stream
   past a tile of queries, combined with the online-softmax rule from task 1; optional causal mask.

No GPU here? Kernels run in Triton's interpreter (TRITON_INTERPRET=1, set below before triton is imported when
CUDA is absent): NumPy executes each program in turn on CPU tensors. It is slow but exact enough to test every
kernel against torch. On a CUDA machine the same code compiles to GPU machine code, and `bench.py` times it.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

import labkit

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU: NumPy runs the kernels (read when a kernel is defined)

try:
    import triton
    import triton.language as tl
    TRITON_MISSING = ""
except ImportError as err:  # the module still imports, so the lab can say what is wrong in one line
    TRITON_MISSING = (f"Triton is not installed ({err.msg}); this lab needs it: run `make setup` "
                      "(or `pip install triton`) and try again")
    triton = SimpleNamespace(jit=lambda fn: fn)  # kernels stay plain functions that are never launched
    tl = SimpleNamespace(constexpr=int)


class TritonUnavailable(RuntimeError):
    """Triton cannot run these kernels here (not installed, or a CPU tensor without the interpreter)."""


def interpreting() -> bool:
    """True when kernels run in Triton's CPU interpreter instead of being compiled for a GPU."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_device() -> torch.device:
    """Where the kernels' tensors must live: CPU under the interpreter, else the GPU."""
    return torch.device("cpu" if interpreting() or not torch.cuda.is_available() else "cuda")


def _ready(*tensors: torch.Tensor, any_strides: bool = False) -> None:
    """Refuse, in one line, inputs no kernel of this lab can take."""
    if TRITON_MISSING:
        raise TritonUnavailable(TRITON_MISSING)
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"kernels take float32/float16/bfloat16 tensors, got {t.dtype}; convert with .float()")
        if not interpreting() and t.device.type != "cuda":
            raise TritonUnavailable(f"a {t.device.type} tensor, but Triton compiles for the GPU: move it with "
                                    ".cuda(), or set TRITON_INTERPRET=1 before starting Python to use the interpreter")
        if not any_strides and t.dim() and t.stride(-1) != 1:
            raise ValueError("the last dimension must be contiguous (stride 1); call .contiguous() first")


def _output(out: torch.Tensor | None, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A fresh output tensor, or the caller's `out` after checking its shape, dtype and device."""
    if out is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    if tuple(out.shape) != tuple(shape) or out.dtype != like.dtype or out.device != like.device:
        raise ValueError(f"out must be {tuple(shape)} {like.dtype} on {like.device}, "
                         f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    _ready(out)
    return out


# ---------------------------------------------------------------------------------------------- 1. online softmax

def online_softmax_stats(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of x (rows, n): the max m and the normaliser l = sum_j exp(x_j - m), reading x in column tiles
    of `block` and never holding more than one tile plus (m, l).

    After a new tile t with max m_t, the running max becomes m' = max(m, m_t). Terms summed so far were
    exp(x_j - m); rescaling them by exp(m - m') turns them into exp(x_j - m'):
        l' = l * exp(m - m') + sum_{j in t} exp(x_j - m')
    """
    if x.dim() != 2 or block < 1:
        raise ValueError(f"expected a 2-D tensor and block >= 1, got shape {tuple(x.shape)} and block {block}")
    # BEGIN SOLUTION [online-softmax] Start m at -inf and l at 0; per tile: new max, rescale l by exp(old - new), add the tile's exp-sum.
    rows, n = x.shape
    m = torch.full((rows,), float("-inf"), dtype=x.dtype, device=x.device)  # (rows,)
    l = torch.zeros(rows, dtype=x.dtype, device=x.device)                   # (rows,)
    for start in range(0, n, block):
        tile = x[:, start:start + block]                                    # (rows, <= block)
        m_new = torch.maximum(m, tile.max(dim=1).values)
        l = l * torch.exp(m - m_new) + torch.exp(tile - m_new[:, None]).sum(dim=1)
        m = m_new
    return m, l
    # END SOLUTION


def online_softmax(x: torch.Tensor, block: int = 4) -> torch.Tensor:
    """softmax(x, dim=1) from the streamed statistics: exp(x - m) / l."""
    # BEGIN SOLUTION [online-softmax] One pass for (m, l), then normalise every element with them.
    m, l = online_softmax_stats(x, block)
    return torch.exp(x - m[:, None]) / l[:, None]
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 2. vector add

@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK: tl.constexpr):
    """Program `pid` adds elements [pid * BLOCK, (pid + 1) * BLOCK) of x and y."""
    # BEGIN SOLUTION [vector-add] Offsets = this program's start + arange(BLOCK); mask the lanes past n_elements on load and store.
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)   # (BLOCK,)
    mask = offsets < n_elements                  # the last program may hang over the end
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)
    # END SOLUTION


def vector_add(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None, block: int = 1024) -> torch.Tensor:
    """x + y for two 1-D tensors of the same size, one program per `block` elements."""
    _ready(x, y)
    if x.dim() != 1 or x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"expected two 1-D tensors of one size and dtype, got {tuple(x.shape)} {x.dtype} "
                         f"and {tuple(y.shape)} {y.dtype}")
    out = _output(out, x, tuple(x.shape))
    # BEGIN SOLUTION [vector-add] Grid = ceil(n / block) programs; launch add_kernel[grid](..., BLOCK=block).
    n = x.numel()
    grid = (triton.cdiv(n, block),)
    add_kernel[grid](x, y, out, n, BLOCK=block)
    return out
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 3. fused softmax

@triton.jit
def softmax_kernel(out_ptr, in_ptr, in_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    """Program `row` computes softmax of one row, entirely in registers (BLOCK >= n_cols)."""
    # BEGIN SOLUTION [softmax] Load the row with -inf in the padding lanes, subtract its max, exp, divide by the sum, store the real lanes.
    row = tl.program_id(axis=0)
    cols = tl.arange(0, BLOCK)                                             # (BLOCK,)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * in_row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    x = x - tl.max(x, axis=0)            # largest exponent becomes 0: no overflow; padding stays -inf
    numerator = tl.exp(x)                # padding lanes: exp(-inf) = 0, so they add nothing to the sum
    denominator = tl.sum(numerator, axis=0)
    y = numerator / denominator
    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
    # END SOLUTION


def softmax(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Row softmax of a 2-D tensor (rows, n_cols): one program per row, the whole row in one tile."""
    _ready(x)
    if x.dim() != 2:
        raise ValueError(f"softmax expects a 2-D tensor (rows, n_cols), got shape {tuple(x.shape)}")
    out = _output(out, x, tuple(x.shape))
    # BEGIN SOLUTION [softmax] BLOCK = next power of two >= n_cols; grid = one program per row; pass both row strides.
    rows, n_cols = x.shape
    block = triton.next_power_of_2(n_cols)
    softmax_kernel[(rows,)](out, x, x.stride(0), out.stride(0), n_cols, BLOCK=block)
    return out
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 4. tiled matmul

@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (pid_m, pid_n) computes the (BLOCK_M, BLOCK_N) tile of C = A @ B at rows pid_m * BLOCK_M and
    columns pid_n * BLOCK_N, summing over K in BLOCK_K steps in an fp32 accumulator."""
    # BEGIN SOLUTION [matmul] Row/col offsets of this tile; loop k: masked loads of an A tile (M, K) and a B tile (K, N), acc += tl.dot; masked store.
    pid_m = tl.program_id(axis=0)
    pid_n = tl.program_id(axis=1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)                       # (BLOCK_M,)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)                       # (BLOCK_N,)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)                 # fp32 even for fp16 inputs
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)                                  # (BLOCK_K,)
        a = tl.load(a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak,
                    mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)    # (BLOCK_M, BLOCK_K)
        b = tl.load(b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn,
                    mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)    # (BLOCK_K, BLOCK_N)
        acc += tl.dot(a, b)              # zeros past K add nothing
    c = acc.to(c_ptr.dtype.element_ty)
    tl.store(c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn, c,
             mask=(rows[:, None] < M) & (cols[None, :] < N))
    # END SOLUTION


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
           block_m: int = 32, block_n: int = 32, block_k: int = 32) -> torch.Tensor:
    """a (M, K) @ b (K, N) -> (M, N). Blocks are powers of two >= 16 (tl.dot's smallest tile)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (M, K) @ (K, N), got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"a and b must share a dtype, got {a.dtype} and {b.dtype}")
    for name, blk in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        if blk < 16 or blk & (blk - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {blk}")
    _ready(a, b, any_strides=True)  # the kernel reads through both strides: transposed views are fine
    out = _output(out, a, (a.shape[0], b.shape[1]))
    # BEGIN SOLUTION [matmul] Grid = (ceil(M / block_m), ceil(N / block_n)); pass every stride of a, b and out.
    M, K = a.shape
    N = b.shape[1]
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    matmul_kernel[grid](a, b, out, M, N, K,
                        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
                        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return out
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 5. fused LayerNorm

@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, mean_ptr, rstd_ptr, in_row_stride, out_row_stride,
                     n_cols, eps, BLOCK: tl.constexpr):
    """Program `row` normalises one row: y = (x - mean) / sqrt(var + eps) * w + b, with the biased variance
    var = mean((x - mean)^2). It also stores mean and rstd = 1 / sqrt(var + eps), which a backward pass reuses."""
    # BEGIN SOLUTION [layernorm] Load the row once (fp32); mean over n_cols; zero the padding lanes of (x - mean) before squaring; rstd; scale, shift, store.
    row = tl.program_id(axis=0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * in_row_stride + cols, mask=mask, other=0.0).to(tl.float32)   # (BLOCK,)
    mean = tl.sum(x, axis=0) / n_cols
    centred = tl.where(mask, x - mean, 0.0)   # padding lanes would add mean^2 each to the variance
    var = tl.sum(centred * centred, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = centred * rstd * w + b
    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, rstd)
    # END SOLUTION


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
               out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LayerNorm over the last dim of x (rows, n_cols). Returns (y, mean, rstd); mean and rstd are fp32 (rows,)."""
    _ready(x, weight, bias)
    if x.dim() != 2 or weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"layer_norm needs x (rows, n) with weight and bias (n,), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it keeps 1/sqrt(var + eps) finite), got {eps}")
    out = _output(out, x, tuple(x.shape))
    # BEGIN SOLUTION [layernorm] fp32 mean/rstd buffers (rows,); BLOCK = next power of two >= n_cols; one program per row.
    rows, n_cols = x.shape
    mean = torch.empty(rows, dtype=torch.float32, device=x.device)
    rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(n_cols)
    layernorm_kernel[(rows,)](x, weight, bias, out, mean, rstd, x.stride(0), out.stride(0), n_cols, eps,
                              BLOCK=block)
    return out, mean, rstd
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 6. FlashAttention

@triton.jit
def flash_attention_kernel(q_ptr, k_ptr, v_ptr, out_ptr, seq_q, seq_k, head_dim, scale,
                           stride_qh, stride_qs, stride_kh, stride_ks, stride_vh, stride_vs, stride_oh, stride_os,
                           CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_D: tl.constexpr):
    """Program (pid_m, bh) computes BLOCK_M query rows of one (batch, head). Tiles of BLOCK_N keys/values stream
    past; per query row it keeps the running max m, normaliser l and an unnormalised output acc:
        s = q k^T * scale        (masked: keys past seq_k, and with CAUSAL keys after the query, get -inf)
        m' = max(m, rowmax(s));  p = exp(s - m');  alpha = exp(m - m')
        l' = l * alpha + rowsum(p);  acc' = acc * alpha + p v
    and writes acc / l at the end. Each row of q, k, v, out is contiguous (stride 1 along head_dim)."""
    # BEGIN SOLUTION [flash-attention] Load a Q tile; loop over K/V tiles (stop after the diagonal when causal): scores, -inf masks, online-softmax update of m, l, acc; store acc / l.
    pid_m = tl.program_id(axis=0)
    bh = tl.program_id(axis=1)                                             # which (batch, head)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)                         # (BLOCK_M,) query positions
    dims = tl.arange(0, BLOCK_D)                                           # (BLOCK_D,)
    q = tl.load(q_ptr + bh * stride_qh + rows[:, None] * stride_qs + dims[None, :],
                mask=(rows[:, None] < seq_q) & (dims[None, :] < head_dim), other=0.0)      # (BLOCK_M, BLOCK_D)
    m = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    end = seq_k
    if CAUSAL:
        end = tl.minimum(seq_k, (pid_m + 1) * BLOCK_M)   # keys after this tile's last query are all masked
    for n0 in range(0, end, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)                                  # (BLOCK_N,) key positions
        kv_mask = (keys[:, None] < seq_k) & (dims[None, :] < head_dim)
        k = tl.load(k_ptr + bh * stride_kh + keys[:, None] * stride_ks + dims[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + bh * stride_vh + keys[:, None] * stride_vs + dims[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale                                 # (BLOCK_M, BLOCK_N), fp32
        visible = keys[None, :] < seq_k
        if CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])           # top-left aligned, like SDPA
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])                                     # masked scores -> exactly 0
        alpha = tl.exp(m - m_new)                                          # rescales what was summed so far
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    out = acc / l[:, None]
    tl.store(out_ptr + bh * stride_oh + rows[:, None] * stride_os + dims[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < seq_q) & (dims[None, :] < head_dim))
    # END SOLUTION


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    scale: float | None = None, block_m: int = 32, block_n: int = 32) -> torch.Tensor:
    """Attention of q (batch, heads, seq_q, d) over k, v (batch, heads, seq_k, d); scale defaults to 1/sqrt(d).
    Same result as F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)."""
    _ready(q, k, v)
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"expected q (B, H, Lq, d) and k, v (B, H, Lk, d), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"causal attention with more queries ({q.shape[2]}) than keys ({k.shape[2]}) leaves "
                         "rows with nothing to attend to; pass causal=False or more keys")
    # BEGIN SOLUTION [flash-attention] Flatten (B, H) into one axis; scale = 1/sqrt(d) when None; BLOCK_D = next power of two >= max(d, 16); grid (ceil(Lq / block_m), B * H).
    batch, heads, seq_q, d = q.shape
    seq_k = k.shape[2]
    q3 = q.reshape(batch * heads, seq_q, d).contiguous()                   # (BH, Lq, d)
    k3 = k.reshape(batch * heads, seq_k, d).contiguous()                   # (BH, Lk, d)
    v3 = v.reshape(batch * heads, seq_k, d).contiguous()
    out = torch.empty_like(q3)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    block_d = max(16, triton.next_power_of_2(d))
    grid = (triton.cdiv(seq_q, block_m), batch * heads)
    flash_attention_kernel[grid](q3, k3, v3, out, seq_q, seq_k, d, scale,
                                 q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1),
                                 v3.stride(0), v3.stride(1), out.stride(0), out.stride(1),
                                 CAUSAL=causal, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
    return out.reshape(batch, heads, seq_q, d)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- demo

def correctness_table(device: torch.device, seed: int = 0) -> list[dict]:
    """Each kernel against its torch reference on one odd-sized input: max |error| and wall time."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device)

    x1, y1 = rand(1000), rand(1000)
    xs = rand(7, 100) * 5
    a, b = rand(45, 70), rand(70, 37)
    w, bias = rand(77), rand(77)
    xl = rand(9, 77)
    q, k, v = rand(1, 2, 70, 24), rand(1, 2, 70, 24), rand(1, 2, 70, 24)
    cases = [
        ("online softmax (torch)", "(7, 100), tiles of 16", lambda: online_softmax(xs, block=16),
         lambda: torch.softmax(xs, dim=1)),
        ("vector add", "1000 elements", lambda: vector_add(x1, y1, block=256), lambda: x1 + y1),
        ("fused softmax", "(7, 100)", lambda: softmax(xs), lambda: torch.softmax(xs, dim=1)),
        ("tiled matmul", "(45, 70) @ (70, 37)", lambda: matmul(a, b), lambda: a @ b),
        ("fused layernorm", "(9, 77)", lambda: layer_norm(xl, w, bias)[0],
         lambda: F.layer_norm(xl, (77,), w, bias)),
        ("flash attention", "B1 H2 L70 d24", lambda: flash_attention(q, k, v),
         lambda: F.scaled_dot_product_attention(q, k, v)),
        ("flash attention causal", "B1 H2 L70 d24", lambda: flash_attention(q, k, v, causal=True),
         lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
    ]
    rows = []
    for name, shape, ours, reference in cases:
        start = time.perf_counter()
        got = ours()
        seconds = time.perf_counter() - start
        rows.append({"kernel": name, "shape": shape, "max_abs_err": (got - reference()).abs().max().item(),
                     "seconds": seconds})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if TRITON_MISSING:
        raise SystemExit(TRITON_MISSING)
    device = kernel_device()
    mode = "Triton interpreter on CPU (no GPU here)" if interpreting() else f"compiled Triton on {device}"
    print(f"triton {triton.__version__}, torch {torch.__version__}: {mode}")
    try:
        rows = correctness_table(device, args.seed)
    except Exception as err:  # a TODO inside a kernel arrives wrapped by the interpreter: report it as the TODO
        if isinstance(err.__cause__, NotImplementedError):
            raise err.__cause__ from None
        raise
    print(f"{'kernel':<24} {'shape':<22} {'max |ours - torch|':>18} {'time':>9}")
    for r in rows:
        print(f"{r['kernel']:<24} {r['shape']:<22} {r['max_abs_err']:>18.2e} {r['seconds'] * 1e3:>7.0f} ms")
    worst = max(r["max_abs_err"] for r in rows)
    print(f"all kernels agree with torch (fp32): worst error {worst:.1e}")
    if interpreting():
        print("times above are the interpreter's (NumPy, one program at a time), not GPU speed: "
              "bench.py on a CUDA machine compares with torch eager and torch.compile")


if __name__ == "__main__":
    labkit.run(main)
