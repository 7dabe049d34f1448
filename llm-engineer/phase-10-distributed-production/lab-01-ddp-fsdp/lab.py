"""Data parallelism by hand, then DistributedDataParallel and FSDP2, on phase 5's nanoGPT.

What this lab teaches
- a process group: N processes (ranks) that can call collectives together; `gloo` runs them over TCP on CPU,
  `nccl` over NVLink/InfiniBand on GPUs. torchrun starts the ranks and sets RANK, WORLD_SIZE, MASTER_ADDR/PORT;
- data parallelism written out: broadcast rank 0's weights so every replica starts equal; each rank runs forward
  and backward on its own slice of the batch; gradients are summed across ranks with all-reduce and divided by N,
  which gives exactly the gradient of the whole batch (the loss is a mean, so the mean of N equal-sized slices'
  gradients is the gradient of their concatenation);
- buckets: many small all-reduces cost a latency each, so gradients are packed into flat buckets of about
  `cap` bytes, filled in reverse registration order (the order backward produces them);
- overlap: `register_post_accumulate_grad_hook` fires as soon as a parameter's gradient is final; when the last
  gradient of a bucket arrives its all-reduce starts (async) while backward goes on computing earlier layers;
- gradient accumulation: `no_sync()` skips communication on all micro-batches but the last;
- torch's `DistributedDataParallel` (the same design in C++) and FSDP2 (`fully_shard`): parameters, gradients
  and AdamW states sharded across ranks (ZeRO-3), all-gathered per block for forward and backward, gradients
  reduce-scattered;
- the sharding arithmetic (ZeRO stages 1/2/3 and what FSDP maps to) and the ring all-reduce volume
  2(N-1)/N x bytes, both checked against what the ranks really hold and really send.

Run it: `python solution.py` starts 2 CPU ranks with torchrun (gloo). On N GPUs:
`torchrun --standalone --nproc_per_node N solution.py --backend nccl` (the backend and the device change,
nothing else).
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import labkit
from labkit import assets

nano = labkit.reuse("lab-02-nano-gpt")  # phase 5's GPT: GPTConfig, GPT, CharTokenizer

KINDS = ("hand", "ddp", "fsdp")
STAGES = {0: "DDP (replicated)", 1: "ZeRO-1 (optimizer states)", 2: "ZeRO-2 (+ gradients)",
          3: "ZeRO-3 = FSDP FULL_SHARD (+ parameters)"}


# ---------------------------------------------------------------------------------------------- process group

def torchrun_command(nproc: int, script: str, backend: str = "nccl") -> str:
    """The exact command that starts this script on `nproc` local devices."""
    return f"torchrun --standalone --nproc_per_node {nproc} {script} --backend {backend}"


def init_distributed(backend: str = "gloo", init_method: str | None = None, rank: int | None = None,
                     world_size: int | None = None, timeout_s: float = 60.0) -> tuple[int, int]:
    """Join the process group and return (rank, world_size).

    Under torchrun the rank, world size and rendezvous address come from the environment (init_method
    "env://"); tests pass a file:// store instead, so no TCP port has to be reserved. `timeout_s` bounds every
    collective: a rank that never arrives makes the others fail instead of hang."""
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' (CPU) or 'nccl' (CUDA GPUs), got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise RuntimeError("backend 'nccl' needs CUDA GPUs; use --backend gloo on a CPU machine")
    if init_method is None and "RANK" not in os.environ:
        raise RuntimeError("no RANK in the environment: start this with torchrun (see the command printed by "
                           "`python solution.py`) or pass init_method, rank and world_size")
    if backend == "gloo" and sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # keep the traffic on loopback for local runs
    where = {} if init_method is None else {"init_method": init_method, "rank": rank, "world_size": world_size}
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **where)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return dist.get_rank(), dist.get_world_size()


def sent_bytes() -> int:
    """Bytes this process has handed to write()/send() system calls so far (Linux /proc/self/io `wchar`).

    gloo moves tensors through TCP sockets, so around a collective this counter is the bytes the process group
    really sent (plus a few hundred bytes of headers per message). Returns -1 where /proc is unavailable."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(": ") for line in f.read().splitlines() if line)
        return int(fields["wchar"])
    except (OSError, KeyError, ValueError):
        return -1


# ---------------------------------------------------------------------------------------------- data parallelism by hand

def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Overwrite, in place, every parameter and buffer of `module` with rank `src`'s values."""
    # TODO [broadcast-params]: Every rank calls the same collective on each tensor, in the same order, writing into the tensor itself; buffers count too.
    raise NotImplementedError('TODO [broadcast-params]: Every rank calls the same collective on each tensor, in the same order, writing into the tensor itself; buffers count too.')


def plan_buckets(params: list[torch.Tensor], cap_bytes: int) -> list[list[int]]:
    """Group the indices of the trainable `params` into buckets for all-reduce.

    Walk the parameters in reverse (backward produces the last layer's gradients first), skip those that do not
    require grad, and close a bucket when the next parameter would push it past `cap_bytes` (a bucket exactly at
    the cap is full, not over). A parameter larger than the cap gets a bucket of its own.
    Example: sizes [4, 4, 4] bytes, cap 8 -> [[2, 1], [0]]."""
    if cap_bytes <= 0:
        raise ValueError(f"cap_bytes must be positive, got {cap_bytes}")
    # TODO [bucket-gradients]: Last parameter first; start a new bucket only when the current one is non-empty and would go over the cap; keep the last partial bucket.
    raise NotImplementedError('TODO [bucket-gradients]: Last parameter first; start a new bucket only when the current one is non-empty and would go over the cap; keep the last partial bucket.')


class HandDDP(nn.Module):
    """Data parallelism written out: broadcast, bucketed async all-reduce from autograd hooks, average.

    Use: `loss = ddp(x, y)[1]; loss.backward(); ddp.finish_gradient_sync(); optimizer.step()`. Wrap the backward
    of every micro-batch but the last in `with ddp.no_sync():` to accumulate locally.
    With overlap=False the hooks only count, and every bucket is all-reduced after backward (the baseline)."""

    def __init__(self, module: nn.Module, bucket_cap_bytes: int = 25 * 2**20, overlap: bool = True):
        super().__init__()
        self.module = module
        self.world_size = dist.get_world_size()
        self.overlap = overlap
        broadcast_parameters(module, src=0)
        self.params = list(module.parameters())                 # each tensor once (tied weights included)
        self.buckets = plan_buckets(self.params, bucket_cap_bytes)
        self.bucket_of = {i: b for b, indices in enumerate(self.buckets) for i in indices}
        self.require_sync = True
        self.comm_log: list[int] = []                           # bytes of every all-reduce launched
        self.launch_order: list[int] = []                       # bucket ids, in launch order
        self._ready = [0] * len(self.buckets)                   # gradients final so far, per bucket
        self._pending: dict[int, tuple[dist.Work, torch.Tensor]] = {}
        for index in self.bucket_of:
            self.params[index].register_post_accumulate_grad_hook(functools.partial(self._on_grad_ready, index))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward inside this block accumulates gradients locally, without communication."""
        previous, self.require_sync = self.require_sync, False
        try:
            yield
        finally:
            self.require_sync = previous

    def _all_reduce(self, flat: torch.Tensor) -> dist.Work:
        """Start summing `flat` across ranks in place; returns the handle to wait on (logged for the counters)."""
        self.comm_log.append(flat.numel() * flat.element_size())
        return dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)

    def _launch(self, bucket: int) -> None:
        """Pack one bucket's gradients into a flat buffer and start its all-reduce."""
        # TODO [allreduce-hooks]: Concatenate the bucket's gradients (flattened) into one new tensor, start its all-reduce, remember handle and buffer, record the bucket id.
        raise NotImplementedError("TODO [allreduce-hooks]: Concatenate the bucket's gradients (flattened) into one new tensor, start its all-reduce, remember handle and buffer, record the bucket id.")

    def _on_grad_ready(self, index: int, param: torch.Tensor) -> None:
        """Autograd calls this once `param.grad` is final for this backward."""
        # TODO [allreduce-hooks]: Nothing to do under no_sync; otherwise count the gradient in its bucket and launch the bucket when its last gradient arrives (if overlapping).
        raise NotImplementedError('TODO [allreduce-hooks]: Nothing to do under no_sync; otherwise count the gradient in its bucket and launch the bucket when its last gradient arrives (if overlapping).')

    def finish_gradient_sync(self) -> None:
        """After the syncing backward: launch what is not yet in flight, wait, average, and write gradients back."""
        # TODO [allreduce-hooks]: Launch buckets not launched yet; wait on each handle; the all-reduce summed, so divide by the world size; copy slices back into each .grad; reset the per-step state.
        raise NotImplementedError('TODO [allreduce-hooks]: Launch buckets not launched yet; wait on each handle; the all-reduce summed, so divide by the world size; copy slices back into each .grad; reset the per-step state.')


# ---------------------------------------------------------------------------------------------- torch's wrappers

def build(kind: str, config, lr: float = 1e-3, seed: int = 0, bucket_cap_bytes: int = 16 * 2**10,
          overlap: bool = True, mesh=None):
    """A fresh GPT (same seed on every rank) wrapped for data parallelism, and its AdamW.

    kind: "hand" (HandDDP), "ddp" (DistributedDataParallel) or "fsdp" (FSDP2: every Block its own unit, then the
    root, on a 1-D DeviceMesh over all ranks)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    model = nano.GPT(config)
    if kind == "hand":
        model = HandDDP(model, bucket_cap_bytes=bucket_cap_bytes, overlap=overlap)
        return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # TODO [torch-wrappers]: DDP: wrap (bucket cap in MB). FSDP2: fully_shard each block, then the root, on the mesh. The optimizer must see the wrapped model's parameters.
    raise NotImplementedError("TODO [torch-wrappers]: DDP: wrap (bucket cap in MB). FSDP2: fully_shard each block, then the root, on the mesh. The optimizer must see the wrapped model's parameters.")


def local_bytes(tensors) -> int:
    """Bytes of the part of each tensor this rank holds (a DTensor's local shard, or the whole tensor)."""
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def memory_held(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and AdamW moments (exp_avg, exp_avg_sq) held on this rank after a step."""
    params = list(model.parameters())
    moments = [state[k] for state in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq") if k in state]
    return {"params": local_bytes(params), "grads": local_bytes(p.grad for p in params if p.grad is not None),
            "optimizer": local_bytes(moments)}


# ---------------------------------------------------------------------------------------------- arithmetic

def optimizer_bytes_per_param(master_weights: bool) -> int:
    """Bytes of AdamW state per parameter, kept in fp32: the two moments, plus an fp32 copy of the weights when
    training in 16-bit (mixed precision)."""
    # TODO [shard-memory]: Adam keeps two fp32 moments per parameter; mixed precision adds the fp32 master copy.
    raise NotImplementedError('TODO [shard-memory]: Adam keeps two fp32 moments per parameter; mixed precision adds the fp32 master copy.')


def memory_per_rank(n_params: int, world_size: int, stage: int, param_bytes: int = 2, grad_bytes: int = 2,
                    optimizer_bytes: int = 12) -> dict[str, float]:
    """Bytes per rank of parameters, gradients and optimizer state under ZeRO `stage` (0 = plain DDP).

    Stage 1 shards the optimizer state over the ranks, stage 2 the gradients as well, stage 3 (FSDP FULL_SHARD)
    the parameters as well; what is not sharded is replicated on every rank. Defaults: mixed-precision AdamW
    (16-bit weights and gradients, 12 bytes of fp32 state)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be 0 (DDP), 1, 2 or 3, got {stage}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    # TODO [shard-memory]: Each of the three parts is n_params * bytes, divided by world_size once the stage shards it (optimizer from 1, gradients from 2, parameters at 3).
    raise NotImplementedError('TODO [shard-memory]: Each of the three parts is n_params * bytes, divided by world_size once the stage shards it (optimizer from 1, gradients from 2, parameters at 3).')


def ring_allreduce_bytes(payload_bytes: float, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce of `payload_bytes`: a reduce-scatter then an all-gather, each
    N-1 steps of one 1/N chunk."""
    # TODO [comm-volume]: Two phases, each (N - 1) chunks of payload / N.
    raise NotImplementedError('TODO [comm-volume]: Two phases, each (N - 1) chunks of payload / N.')


def ring_allgather_bytes(payload_bytes: float, world_size: int) -> float:
    """Bytes each rank sends to all-gather (or reduce-scatter) a tensor of `payload_bytes` in total."""
    # TODO [comm-volume]: One phase of the ring: (N - 1) chunks of payload / N.
    raise NotImplementedError('TODO [comm-volume]: One phase of the ring: (N - 1) chunks of payload / N.')


# ---------------------------------------------------------------------------------------------- training

def global_batch(data: torch.Tensor, block_size: int, batch_size: int, step: int, seed: int = 0):
    """The same (x, y) batch of `batch_size` windows on every rank for a given step: (B, T) each."""
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen, device="cpu")
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + 1:s + 1 + block_size] for s in starts])
    return x, y


def rank_slice(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows of a global batch (B must divide by the world size)."""
    if batch.shape[0] % world_size:
        raise ValueError(f"batch of {batch.shape[0]} rows does not split over {world_size} ranks; "
                         "use a multiple of the world size")
    rows = batch.shape[0] // world_size
    return batch[rank * rows:(rank + 1) * rows]


def train_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, micro_batches: int = 1) -> float:
    """One optimizer step on this rank's rows (x, y), in `micro_batches` accumulated pieces; returns the loss
    averaged over ranks (a mean of means, as every rank has the same number of rows)."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    pieces = list(zip(x.chunk(micro_batches), y.chunk(micro_batches)))
    for i, (xm, ym) in enumerate(pieces):
        last = i == len(pieces) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss = model(xm, ym)[1] / micro_batches
            loss.backward()
        total += loss.item()
    if isinstance(model, HandDDP):
        model.finish_gradient_sync()
    optimizer.step()
    mean = torch.tensor([total])
    dist.all_reduce(mean)
    return mean.item() / dist.get_world_size()


def single_process_reference(config, data, steps: int, batch_size: int, lr: float, seed: int = 0) -> list[float]:
    """The same run in one process on the whole batch: the losses every parallel run must reproduce."""
    torch.manual_seed(seed)
    model = nano.GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        x, y = global_batch(data, config.block_size, batch_size, step, seed)
        optimizer.zero_grad(set_to_none=True)
        loss = model(x, y)[1]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------------------------------------- demo

def demo_rank(args) -> None:
    """What every rank runs under torchrun: the three wrappers, the same steps, losses, bytes sent, memory."""
    rank, world = init_distributed(args.backend)
    torch.set_num_threads(1)
    try:
        text = assets.shakespeare(max_chars=200_000)
        tok = nano.CharTokenizer(text)
        data = torch.tensor(tok.encode(text), dtype=torch.long)
        config = nano.GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=4, d_model=64)
        device = torch.device("cuda", torch.cuda.current_device()) if args.backend == "nccl" else None
        if device is not None:
            torch.set_default_device(device)  # on GPUs the model and batches live on this rank's device
            data = data.to(device)
        report = {}
        for kind in KINDS:
            model, optimizer = build(kind, config, lr=args.lr)
            losses, sent = [], []
            for step in range(args.steps):
                x, y = global_batch(data, config.block_size, args.batch_size, step)
                before = sent_bytes()
                loss = train_step(model, optimizer, rank_slice(x, rank, world), rank_slice(y, rank, world))
                sent.append(sent_bytes() - before)
                losses.append(loss)
            report[kind] = (losses, sent[-1], memory_held(model, optimizer))
        if rank == 0:
            reference = single_process_reference(config, data, args.steps, args.batch_size, args.lr)
            n_params = sum(p.numel() for p in nano.GPT(config).parameters())
            print_report(report, reference, n_params, world)
    finally:
        dist.destroy_process_group()


def print_report(report: dict, reference: list[float], n_params: int, world: int) -> None:
    print(f"\nGPT with {n_params:,} parameters, {world} ranks, {len(reference)} AdamW steps, fp32")
    print(f"{'step':>4} {'single':>9} " + " ".join(f"{k:>9}" for k in KINDS))
    for step, ref in enumerate(reference):
        print(f"{step:>4} {ref:9.5f} " + " ".join(f"{report[k][0][step]:9.5f}" for k in KINDS))
    for kind in KINDS:
        gap = max(abs(a - b) for a, b in zip(report[kind][0], reference))
        print(f"max |loss({kind}) - loss(single)| = {gap:.2e}")
    grad_bytes = 4 * n_params
    print(f"\nbytes sent by rank 0 in the last step (kernel counter); ring all-reduce of {grad_bytes:,} B of "
          f"gradients predicts {ring_allreduce_bytes(grad_bytes, world):,.0f} B")
    for kind in KINDS:
        print(f"  {kind:>5}: {report[kind][1]:>10,} B  ({report[kind][1] / grad_bytes:.2f} x gradient bytes)")
    print("\nmemory held by rank 0 after the step (bytes) vs the arithmetic")
    print(f"  {'':>5} {'params':>9} {'grads':>9} {'AdamW':>9} | predicted (stage)")
    for kind, stage in (("hand", 0), ("ddp", 0), ("fsdp", 3)):
        held = report[kind][2]
        want = memory_per_rank(n_params, world, stage, 4, 4, optimizer_bytes_per_param(master_weights=False))
        print(f"  {kind:>5} {held['params']:>9,} {held['grads']:>9,} {held['optimizer']:>9,} | "
              f"{want['params']:>9,.0f} {want['grads']:>9,.0f} {want['optimizer']:>9,.0f} ({STAGES[stage]})")


def preflight() -> None:
    """Every task once, in this process, on a one-rank gloo group: an unfinished task stops here with its name
    (and a hint) before any rank is started."""
    with tempfile.TemporaryDirectory() as tmp:
        init_distributed("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            config = nano.GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16)
            x = torch.randint(0, 16, (2, 8))
            for kind in KINDS:
                model, optimizer = build(kind, config)
                train_step(model, optimizer, x, x)
            memory_per_rank(1000, 2, 3, 4, 4, optimizer_bytes_per_param(master_weights=False))
            ring_allreduce_bytes(1000.0, 2), ring_allgather_bytes(1000.0, 2)
        finally:
            dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--nproc", type=int, default=2, help="ranks to start when not already under torchrun")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (rows), split over the ranks")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    if "RANK" in os.environ:
        demo_rank(args)
        return
    preflight()
    here = Path(__file__).resolve()
    print("On N GPUs run:\n  " + torchrun_command(8, str(here.name)).replace(" 8 ", " N ") +
          "\n(backend nccl instead of gloo, each rank on cuda:LOCAL_RANK; the code is the same)")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
               str(here), "--backend", args.backend, "--steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--lr", str(args.lr)]
    print(f"\nNow on this machine, {args.nproc} CPU ranks with gloo:\n  " +
          f"torchrun --standalone --nproc_per_node {args.nproc} {here.name} --backend {args.backend}")
    started = time.perf_counter()
    launcher = subprocess.Popen(command, start_new_session=True)  # its own process group: one kill ends all ranks
    try:
        code = launcher.wait(timeout=900)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        os.killpg(launcher.pid, 9)
        launcher.wait()
        raise SystemExit("the ranks did not finish in 15 minutes (or were interrupted); stopped them") from None
    if code:
        raise SystemExit(f"the ranks failed (exit code {code}); see their output above")
    print(f"\n{args.nproc} ranks done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    labkit.run(main)
