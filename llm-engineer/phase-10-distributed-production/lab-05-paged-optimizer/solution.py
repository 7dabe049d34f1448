"""8-bit and paged optimizers: Adam's moments in one byte each, and optimizer state that lives off the device.

Adam keeps two float32 moments per parameter, m (the running mean of gradients) and v (the running mean of
squared gradients): 8 bytes of state for every 4-byte weight, twice the model. Dettmers et al. ("8-bit
Optimizers via Block-wise Quantization", ICLR 2022) store each moment in 8 bits: split the tensor into blocks
of 256 values, keep each block's absolute maximum in float32, and store every value as the index of the
nearest entry of a 256-entry "dynamic" map, a float format whose exponent shrinks as the fraction grows so
that tiny and large values both keep about two significant digits. The step dequantizes a tensor's moments to
float32, runs the ordinary Adam update, and quantizes the new moments back: about 2 bytes of state per
parameter instead of 8. Paged optimizers (bitsandbytes' PagedAdamW8bit) go further: the states sit in CUDA
unified memory and the driver moves them to the CPU when the GPU runs short. On a CPU machine we show the
same mechanism with pages of state kept in memory-mapped files and a bounded resident budget.

What you build:

1. `dynamic_map`: bitsandbytes' 256-entry dynamic quantization map, signed (for m) and unsigned (for v).
2. `quantize_blockwise` / `dequantize_blockwise`: per-block absmax and nearest-code indices, and back.
3. `adam_update_`: one Adam(W) step in float32, in place, exactly as torch.optim.Adam/AdamW compute it.
4. `adam8bit_update_`: the 8-bit step on one tensor: dequantize, update, re-quantize.
5. `MemmapPageStore.fetch` / `MemmapPageStore.evict`: state pages on disk, an LRU resident set under a budget,
   dirty pages written back before they leave.
6. `expected_state_bytes`: the memory arithmetic (bytes of optimizer state per tensor) for fp32, 8-bit, paged.

The optimizer classes (`Adam32`, `Adam8bit`, `PagedAdam`), the training loop and the demo are written for you.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import labkit

# bitsandbytes 0.50 quantizes optimizer states in blocks of 256 values (older releases used 2048), and
# keeps tensors with fewer than 4096 elements (biases, norms) in float32: their state is tiny anyway.
BLOCKSIZE = 256
MIN_8BIT_SIZE = 4096


# ---------------------------------------------------------------------------------------------- the map

def dynamic_map(signed: bool = True) -> torch.Tensor:
    """bitsandbytes' 8-bit dynamic ("dynamic tree") map: 256 sorted float32 values in [-1, 1] ([0, 1] unsigned).

    Seven decades, i = 0 .. 6, cover magnitudes 10**(i - 6) * (0.1 .. 1]: decade i cuts the fraction interval
    [0.1, 1] into 2**i equal pieces (2**(i + 1) when unsigned: the sign bit becomes one more fraction bit), and each
    piece contributes its midpoint times 10**(i - 6), and its negative when signed. So small magnitudes get few
    values and large ones many. Then 0 and 1.0 are added: 127 values of each sign plus 0 and 1 (signed), or 254
    positive values plus 0 and 1 (unsigned). Returns shape (256,).
    """
    # BEGIN SOLUTION [dynamic-map] Per decade: linspace(0.1, 1, pieces + 1) in float32, the midpoints of neighbours, times the decade's power of ten; add 0 and 1, sort.
    values: list[float] = []
    for i in range(7):
        pieces = 2 ** i if signed else 2 ** (i + 1)
        bounds = torch.linspace(0.1, 1, pieces + 1, dtype=torch.float32)
        mids = (bounds[:-1] + bounds[1:]) / 2.0                     # (pieces,) fraction midpoints
        scale = 10 ** (i - 6)                                        # this decade's power of ten
        values += (scale * mids).tolist()
        if signed:
            values += (-scale * mids).tolist()
    values += [0.0, 1.0]
    return torch.tensor(sorted(values), dtype=torch.float32)
    # END SOLUTION


# ------------------------------------------------------------------------------------ block-wise quantization

def _blocks(x: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, int]:
    """Flatten x and zero-pad it to whole blocks: (n_blocks, blocksize), plus the number of real values."""
    flat = x.reshape(-1).float()
    n = flat.numel()
    n_blocks = -(-n // blocksize)                                     # ceil: a partial last block still counts
    padded = torch.zeros(n_blocks * blocksize, dtype=torch.float32, device=x.device)
    padded[:n] = flat
    return padded.view(n_blocks, blocksize), n


def quantize_blockwise(x: torch.Tensor, code: torch.Tensor, blocksize: int = BLOCKSIZE):
    """x (any shape, float) -> (codes uint8 of x's shape, absmax float32 of shape (ceil(numel / blocksize),)).

    absmax[b] = max |x| over block b (the last block may be partial). Each value is scaled into [-1, 1] by
    multiplying with 1 / absmax of its block (as bitsandbytes does; a block of zeros uses scale 0) and stored as
    the index of the nearest entry of the sorted `code`; a value exactly halfway between two entries takes the
    lower one. Nearest-by-midpoint is what bitsandbytes' reference kernel does.
    """
    # BEGIN SOLUTION [blockwise-quant] absmax per block of the padded (n_blocks, blocksize) view; scale by its reciprocal; bucketize against the midpoints between neighbouring code entries.
    blocks, n = _blocks(x, blocksize)                                 # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)                                 # (n_blocks,)
    inverse = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    scaled = (blocks * inverse[:, None]).clamp(-1, 1)
    midpoints = (code[:-1] + code[1:]) / 2                            # (255,) decision boundaries
    codes = torch.bucketize(scaled, midpoints)                        # right=False: a tie goes to the lower code
    return codes.reshape(-1)[:n].to(torch.uint8).reshape(x.shape), absmax
    # END SOLUTION


def dequantize_blockwise(codes: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor,
                         blocksize: int = BLOCKSIZE) -> torch.Tensor:
    """codes uint8 (any shape), absmax (n_blocks,) -> float32 of codes' shape: code[index] * absmax of its block."""
    # BEGIN SOLUTION [blockwise-quant] Look up each index in the map, then scale block b's values by absmax[b] (pad to whole blocks, or index by position // blocksize).
    values = code[codes.reshape(-1).long()]                           # (n,) values in [-1, 1]
    blocks, n = _blocks(values, blocksize)                            # (n_blocks, blocksize)
    return (blocks * absmax[:, None]).reshape(-1)[:n].reshape(codes.shape)
    # END SOLUTION


# ------------------------------------------------------------------------------------------- the Adam step

def adam_update_(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int,
                 lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0) -> None:
    """One Adam step in place on float32 tensors of one shape (AdamW's decoupled weight decay when > 0).

        param *= 1 - lr * wd                       (decoupled weight decay, before the moments)
        m = beta1 m + (1 - beta1) g                 (torch writes it as m.lerp_(g, 1 - beta1))
        v = beta2 v + (1 - beta2) g^2
        param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    `step` is t, counted from 1. Written operation for operation as torch.optim.Adam(foreach=False) does it,
    so the result is bitwise equal.
    """
    # BEGIN SOLUTION [adam-step] Decay the weights, update both moments in place, then one addcdiv_ with both bias corrections (the second one under the square root, eps outside it).
    beta1, beta2 = betas
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
    param.addcdiv_(m, denom, value=-lr / bias_correction1)
    # END SOLUTION


def adam8bit_update_(param: torch.Tensor, grad: torch.Tensor, state: dict, step: int, lr: float,
                     betas: tuple[float, float], eps: float, weight_decay: float, code_m: torch.Tensor,
                     code_v: torch.Tensor, blocksize: int = BLOCKSIZE) -> None:
    """One 8-bit Adam step on one tensor, in place.

    state holds "m" and "v" (uint8, param's shape) and "absmax_m" and "absmax_v" (float32, one per block).
    m is signed and is stored with the signed map `code_m`; v = E[g^2] >= 0 uses the unsigned map `code_v`, whose
    256 codes all cover [0, 1] (twice the resolution). Dequantize both, run the float32 Adam step on them,
    then quantize the *updated* moments back into state (new codes and new absmax).
    """
    # BEGIN SOLUTION [adam-8bit] float32 moments from the stored codes, the same Adam step as the fp32 optimizer, then store the new moments' codes and absmax in place.
    m = dequantize_blockwise(state["m"], state["absmax_m"], code_m, blocksize)       # (param.shape) float32
    v = dequantize_blockwise(state["v"], state["absmax_v"], code_v, blocksize)
    adam_update_(param, grad, m, v, step, lr, betas, eps, weight_decay)
    codes_m, absmax_m = quantize_blockwise(m, code_m, blocksize)
    codes_v, absmax_v = quantize_blockwise(v, code_v, blocksize)
    state["m"].copy_(codes_m)
    state["absmax_m"].copy_(absmax_m)
    state["v"].copy_(codes_v)
    state["absmax_v"].copy_(absmax_v)
    # END SOLUTION


# ------------------------------------------------------------------------------------------- the optimizers

def _state_spec(p: torch.Tensor, eight_bit: bool, blocksize: int) -> dict:
    """The arrays one tensor's state needs: {name: (shape, dtype)}."""
    if not eight_bit:
        return {"m": (tuple(p.shape), torch.float32), "v": (tuple(p.shape), torch.float32)}
    n_blocks = -(-p.numel() // blocksize)
    return {"m": (tuple(p.shape), torch.uint8), "v": (tuple(p.shape), torch.uint8),
            "absmax_m": ((n_blocks,), torch.float32), "absmax_v": ((n_blocks,), torch.float32)}


def _fresh_state(spec: dict, device) -> dict:
    return {name: torch.zeros(shape, dtype=dtype, device=device) for name, (shape, dtype) in spec.items()}


class Adam32(torch.optim.Optimizer):
    """Adam(W) with float32 moments, built on `adam_update_`: 8 bytes of state per parameter."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr <= 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam32: need lr > 0, eps > 0 and betas in [0, 1); got lr={lr}, eps={eps}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(_fresh_state(_state_spec(p, False, BLOCKSIZE), p.device), step=0)
                state["step"] += 1
                adam_update_(p, p.grad, state["m"], state["v"], state["step"], group["lr"], group["betas"],
                             group["eps"], group["weight_decay"])
        return loss


class Adam8bit(torch.optim.Optimizer):
    """Adam(W) with block-wise 8-bit moments (bitsandbytes' Adam8bit / AdamW8bit, written from scratch).

    Tensors with fewer than `min_8bit_size` elements keep float32 moments, as in bitsandbytes.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 min_8bit_size=MIN_8BIT_SIZE, blocksize=BLOCKSIZE, code_m=None, code_v=None):
        if lr <= 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam8bit: need lr > 0, eps > 0 and betas in [0, 1); got lr={lr}, eps={eps}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.min_8bit_size, self.blocksize = min_8bit_size, blocksize
        self.code_m = dynamic_map(signed=True) if code_m is None else code_m
        self.code_v = dynamic_map(signed=False) if code_v is None else code_v

    def is_8bit(self, p: torch.Tensor) -> bool:
        return p.numel() >= self.min_8bit_size

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(_fresh_state(_state_spec(p, self.is_8bit(p), self.blocksize), p.device), step=0)
                state["step"] += 1
                hyper = (state["step"], group["lr"], group["betas"], group["eps"], group["weight_decay"])
                if self.is_8bit(p):
                    adam8bit_update_(p, p.grad, state, *hyper, self.code_m.to(p.device),
                                     self.code_v.to(p.device), self.blocksize)
                else:
                    adam_update_(p, p.grad, state["m"], state["v"], *hyper)
        return loss


# ----------------------------------------------------------------------------------------------- paging

class PageTooLarge(ValueError):
    pass


class MemmapPageStore:
    """Optimizer state pages kept in memory-mapped files, with at most `budget_bytes` of them resident in RAM.

    A page is the state of one tensor: a dict of named arrays. `register` creates its zero-filled files;
    `fetch` returns the page's resident tensors (reading it from disk on a miss, after evicting least recently
    used pages until it fits); the caller updates them in place and calls `mark_dirty`; `evict` writes a dirty
    page back to its files and drops it from RAM. The files are scratch space for one run, deleted by `close`.
    On a GPU, bitsandbytes does the same with CUDA unified memory: the driver moves 4 KiB pages between device
    and host on demand, and `prefetch` starts the copy ahead of the step.
    """

    def __init__(self, budget_bytes: int, directory: str | os.PathLike | None = None):
        if budget_bytes <= 0:
            raise ValueError(f"MemmapPageStore: budget_bytes must be positive, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="pages-") if directory is None else directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.specs: dict[str, dict] = {}
        self.resident: OrderedDict[str, dict] = OrderedDict()       # least recently used first
        self.dirty: set[str] = set()
        self.resident_bytes = 0
        self.peak_resident_bytes = 0
        self.page_ins = self.page_outs = 0

    # -- layout on disk
    def _path(self, key: str, name: str) -> Path:
        return self.directory / f"{key}.{name}.bin"

    def page_bytes(self, key: str) -> int:
        return sum(math.prod(shape) * torch.empty((), dtype=dtype).element_size()
                   for shape, dtype in self.specs[key].values())

    def register(self, key: str, spec: dict) -> None:
        """Create the page's zero-filled files. spec = {name: (shape, torch dtype)}."""
        if key in self.specs:
            raise KeyError(f"page {key!r} is already registered")
        self.specs[key] = spec
        if self.page_bytes(key) > self.budget_bytes:
            raise PageTooLarge(f"page {key!r} needs {self.page_bytes(key)} bytes but the resident budget is "
                               f"{self.budget_bytes}: raise budget_bytes or split the tensor")
        for name, (shape, dtype) in spec.items():
            mm = np.memmap(self._path(key, name), dtype=_numpy_dtype(dtype), mode="w+", shape=shape)
            mm.flush()
            del mm

    def _read(self, key: str) -> dict:
        """Page in: copy the page's arrays from their mapped files into fresh tensors."""
        page = {}
        for name, (shape, dtype) in self.specs[key].items():
            mm = np.memmap(self._path(key, name), dtype=_numpy_dtype(dtype), mode="r", shape=shape)
            page[name] = torch.from_numpy(np.array(mm))                # a private copy, not a view of the map
            del mm
        self.page_ins += 1
        return page

    def _write(self, key: str, page: dict) -> None:
        """Page out: copy the tensors into their mapped files and flush them."""
        for name, (shape, dtype) in self.specs[key].items():
            mm = np.memmap(self._path(key, name), dtype=_numpy_dtype(dtype), mode="r+", shape=shape)
            mm[...] = page[name].numpy()
            mm.flush()
            del mm
        self.page_outs += 1

    def mark_dirty(self, key: str) -> None:
        if key not in self.resident:
            raise KeyError(f"page {key!r} is not resident: fetch it before changing it")
        self.dirty.add(key)

    def fetch(self, key: str) -> dict:
        """The resident tensors of page `key` (most recently used from now on).

        Keeps `resident` in least-recently-used order, and `resident_bytes` / `peak_resident_bytes` up to date.
        """
        if key not in self.specs:
            raise KeyError(f"page {key!r} was never registered")
        # BEGIN SOLUTION [paged-store] A hit only refreshes recency. On a miss, evict from the least recently used end until the page fits the budget, then read it and count its bytes.
        if key in self.resident:
            self.resident.move_to_end(key)
            return self.resident[key]
        need = self.page_bytes(key)
        while self.resident_bytes + need > self.budget_bytes:
            oldest = next(iter(self.resident))
            self.evict(oldest)
        page = self._read(key)
        self.resident[key] = page
        self.resident_bytes += need
        self.peak_resident_bytes = max(self.peak_resident_bytes, self.resident_bytes)
        return page
        # END SOLUTION

    def evict(self, key: str) -> None:
        """Drop page `key` from RAM, writing it back first if it changed since it was read."""
        # BEGIN SOLUTION [paged-store] Write back only a dirty page (and clear the flag), then forget it and give its bytes back.
        page = self.resident.pop(key)
        if key in self.dirty:
            self._write(key, page)
            self.dirty.discard(key)
        self.resident_bytes -= self.page_bytes(key)
        # END SOLUTION

    def flush(self) -> None:
        """Write every dirty resident page back (e.g. before a checkpoint); they stay resident."""
        for key in list(self.resident):
            if key in self.dirty:
                self._write(key, self.resident[key])
                self.dirty.discard(key)

    def disk_bytes(self) -> int:
        return sum(self.page_bytes(k) for k in self.specs)

    def close(self) -> None:
        self.resident.clear()
        self.dirty.clear()
        self.resident_bytes = 0
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


def _numpy_dtype(dtype: torch.dtype):
    return {torch.float32: np.float32, torch.uint8: np.uint8}[dtype]


class PagedAdam(torch.optim.Optimizer):
    """Adam(W), fp32 or 8-bit, whose state pages live in a MemmapPageStore: only `budget_bytes` stay in RAM.

    step() visits the tensors in order: fetch the page, update it in place, mark it dirty. Pages that do not
    fit are written back and read again next step, exactly like unified memory under pressure.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, budget_bytes: int,
                 optim_bits: int = 32, directory=None, min_8bit_size=MIN_8BIT_SIZE, blocksize=BLOCKSIZE):
        if optim_bits not in (8, 32):
            raise ValueError(f"PagedAdam: optim_bits must be 8 or 32, got {optim_bits}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.optim_bits, self.min_8bit_size, self.blocksize = optim_bits, min_8bit_size, blocksize
        self.store = MemmapPageStore(budget_bytes, directory)
        self.code_m, self.code_v = dynamic_map(True), dynamic_map(False)
        self.keys: dict[int, str] = {}
        for i, p in enumerate(p for g in self.param_groups for p in g["params"]):
            self.keys[id(p)] = f"p{i}"
            self.store.register(f"p{i}", _state_spec(p, self.is_8bit(p), blocksize))

    def is_8bit(self, p) -> bool:
        return self.optim_bits == 8 and p.numel() >= self.min_8bit_size

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                key = self.keys[id(p)]
                count = self.state[p]["step"] = self.state[p].get("step", 0) + 1
                page = self.store.fetch(key)
                hyper = (count, group["lr"], group["betas"], group["eps"], group["weight_decay"])
                if self.is_8bit(p):
                    adam8bit_update_(p, p.grad, page, *hyper, self.code_m, self.code_v, self.blocksize)
                else:
                    adam_update_(p, p.grad, page["m"], page["v"], *hyper)
                self.store.mark_dirty(key)
        return loss

    def close(self):
        self.store.close()


# ------------------------------------------------------------------------------------------- memory arithmetic

def expected_state_bytes(numel: int, kind: str, blocksize: int = BLOCKSIZE,
                         min_8bit_size: int = MIN_8BIT_SIZE) -> int:
    """Bytes of optimizer state for one tensor of `numel` elements.

    kind "fp32": two float32 moments. kind "8bit": two uint8 moments plus one float32 absmax per block for each
    (ceil(numel / blocksize) blocks), except tensors under `min_8bit_size` elements, which keep fp32 moments.
    (The two 256-entry maps are shared by all tensors and are not counted here.)
    """
    # BEGIN SOLUTION [memory] fp32: 2 moments x 4 bytes. 8-bit: 2 x (1 byte per element + 4 bytes per started block), unless the tensor is small.
    if kind == "fp32" or (kind == "8bit" and numel < min_8bit_size):
        return 2 * 4 * numel
    if kind == "8bit":
        n_blocks = -(-numel // blocksize)
        return 2 * (numel + 4 * n_blocks)
    raise ValueError(f"kind must be 'fp32' or '8bit', got {kind!r}")
    # END SOLUTION


def measured_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in an optimizer's state (shared tensors, such as bitsandbytes' maps, once)."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.numel() > 1 and value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.nbytes
    return total


def rss_bytes() -> int:
    """This process's resident set size (Linux), for a rough whole-process view."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# ------------------------------------------------------------------------------------------------- training

def regression_task(seed: int, n: int = 512, d_in: int = 32, d_out: int = 8):
    """A fixed task: inputs x ~ N(0, 1) and targets from a random tanh teacher, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w1, w2 = torch.randn(d_in, 64, generator=g) / d_in ** 0.5, torch.randn(64, d_out, generator=g) / 8
    y = torch.tanh(x @ w1) @ w2 + 0.01 * torch.randn(n, d_out, generator=g)
    return x, y


def student(seed: int, d_in: int = 32, hidden: int = 256, d_out: int = 8) -> nn.Module:
    """An MLP whose two big matrices (8192 and 65536 weights) get 8-bit state; the rest stays fp32."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


def train(model: nn.Module, optimizer, x, y, steps: int, batch: int = 64, seed: int = 0,
          progress: bool = False) -> list[float]:
    """Mini-batch MSE training; returns the full-data loss after every step."""
    g = torch.Generator().manual_seed(seed)
    losses = []
    loop = range(steps)
    if progress:
        from tqdm import tqdm
        loop = tqdm(loop, desc=type(optimizer).__name__, leave=False)
    for _ in loop:
        idx = torch.randint(0, len(x), (batch,), generator=g)
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(x[idx]), y[idx]).backward()
        optimizer.step()
        with torch.no_grad():
            losses.append(F.mse_loss(model(x), y).item())
    return losses


def make_optimizer(kind: str, params, lr: float, budget_bytes: int = 1 << 20):
    """fp32 / 8bit / paged32 / paged8 (from scratch), torch (torch.optim.Adam), bnb8 (bitsandbytes' Adam8bit)."""
    if kind == "torch":
        return torch.optim.Adam(params, lr=lr, foreach=False)
    if kind == "fp32":
        return Adam32(params, lr=lr)
    if kind == "8bit":
        return Adam8bit(params, lr=lr)
    if kind in ("paged32", "paged8"):
        return PagedAdam(params, lr=lr, budget_bytes=budget_bytes, optim_bits=32 if kind == "paged32" else 8)
    if kind == "bnb8":
        import bitsandbytes as bnb
        return bnb.optim.Adam8bit(params, lr=lr)
    raise ValueError(f"unknown optimizer kind {kind!r}: use fp32, 8bit, paged32, paged8, torch or bnb8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=140_000, help="resident bytes for the paged optimizer")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    code_m, code_v = dynamic_map(True), dynamic_map(False)
    print(f"dynamic map: signed {code_m[0]:.4f} .. {code_m[-1]:.4f} (smallest |x| {code_m.abs()[code_m != 0].min():.2e}), "
          f"unsigned {code_v[1]:.2e} .. {code_v[-1]:.4f}")
    # a gradient-like tensor whose rows live at very different scales (1e-5 .. 1e-1), as Adam's moments do
    g = torch.randn(40, 256) * torch.logspace(-5, -1, 40)[:, None]
    for name, blocksize in (("blocks of 256", BLOCKSIZE), ("one absmax for the whole tensor", g.numel())):
        codes, absmax = quantize_blockwise(g, code_m, blocksize)
        back = dequantize_blockwise(codes, absmax, code_m, blocksize)
        rel = ((back - g).abs() / g.abs().amax(dim=1, keepdim=True)).mean(dim=1)      # (40,) per-row error
        print(f"round trip, {name:<32}: mean error {rel.mean():.4f} of each row's scale "
              f"(smallest-scale row: {rel[0]:.4f})")
    x, y = regression_task(0)
    numels = [p.numel() for p in student(0).parameters()]
    print(f"\nstudent MLP: {sum(numels):,} parameters in {len(numels)} tensors; {args.steps} Adam steps, lr {args.lr}")
    kinds = ("torch", "fp32", "8bit", "paged8", "bnb8")
    finals, rows, notes, state = {k: [] for k in kinds}, {}, {}, {}
    from tqdm import tqdm
    for kind, seed in tqdm([(k, s) for k in kinds for s in range(args.seeds)], desc="training runs"):
        model = student(seed)
        opt = make_optimizer(kind, list(model.parameters()), args.lr, budget_bytes=args.budget)
        losses = train(model, opt, x, y, args.steps, seed=seed)
        finals[kind].append(losses[-1])
        if seed == 0:
            rows[kind] = losses
            if kind.startswith("paged"):
                store = opt.store
                state[kind] = store.peak_resident_bytes
                notes[kind] = (f"resident peak {store.peak_resident_bytes:,} B <= budget {store.budget_bytes:,} B; "
                               f"{store.disk_bytes():,} B on disk; {store.page_ins} page-ins, "
                               f"{store.page_outs} write-backs")
            else:
                state[kind] = measured_state_bytes(opt)
        if kind.startswith("paged"):
            opt.close()
    print(f"{'optimizer':<9} {'state bytes':>12} {'B/param':>8} {'arithmetic':>10}  final loss per seed")
    for kind in kinds:
        arith = sum(expected_state_bytes(n, "fp32" if kind in ("torch", "fp32") else "8bit") for n in numels)
        print(f"{kind:<9} {state[kind]:>12,} {state[kind] / sum(numels):>8.3f} {arith / sum(numels):>10.3f}  "
              + " ".join(f"{v:.5f}" for v in finals[kind]))
    for kind, note in notes.items():
        print(f"{kind}: {note}")
    base = np.mean(finals["torch"])
    print("final loss / torch.optim.Adam's (mean over seeds): "
          + ", ".join(f"{k} {np.mean(v) / base:.3f}" for k, v in finals.items()))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax, ratio) = plt.subplots(1, 2, figsize=(12, 4))
        base = np.array(rows["torch"])
        for kind, losses in rows.items():
            ax.plot(losses, label=kind)
            ratio.plot(np.array(losses) / base, label=kind)
        ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("full-data MSE"), ax.legend()
        ax.set_title("Adam fp32 vs 8-bit (ours and bitsandbytes) vs paged")
        ratio.set_xlabel("step"), ratio.set_ylabel("loss / torch.optim.Adam's loss"), ratio.legend()
        ratio.set_title("the same runs, relative to fp32 Adam")
        fig.tight_layout()
        out = labkit.output_dir(__file__)
        fig.savefig(out / "loss_curves.png", dpi=120)
        print(f"\nloss curves: {out / 'loss_curves.png'}")
    except ImportError:
        pass


if __name__ == "__main__":
    labkit.run(main)
