"""Checkpointing and resumability: save a training run so that a crash costs minutes, never the run.

A checkpoint is only useful if three things hold. It is *complete*: the weights alone do not resume a run; the
optimizer's moments, the learning-rate schedule's position, every random generator (Python, NumPy, torch) and
the data loader's place in its shuffled epoch must come back too, or the resumed run drifts away from the one
that would have happened. It is *atomic*: a job killed in the middle of a save (preemption, OOM killer, a node
lost) must leave the previous checkpoint loadable and never a half-written file that looks finished. And it is
*safe to load*: weights travel as safetensors (no code inside), everything else is read with
`torch.load(weights_only=True)`, which refuses pickles that would run code.

On a cluster each rank holds only a shard of the model (FSDP/ZeRO), and gathering the full model on one rank to
save it does not scale. `torch.distributed.checkpoint` (DCP) writes one file per rank plus a metadata file that
says which slice of which tensor lives where, so a checkpoint saved by N ranks loads on M ranks (resharding).

What you build:

1. `capture_rng` / `restore_rng`: the state of Python's, NumPy's and torch's generators, and back.
2. `ResumableBatchSampler.epoch_order` / `__iter__`: a shuffle that depends on (seed, epoch) only, and can start
   part way through an epoch.
3. `atomic_write_bytes`: temp file in the same folder, fsync, os.replace, fsync the folder.
4. `save_checkpoint`: weights (safetensors), training state (torch.save), a manifest with checksums written last,
   then the `latest` pointer.
5. `load_checkpoint` (with `load_weights` / `load_training_state`): verify, refuse bad input with one line, restore.
6. `resume_run`: put a fresh model, optimizer, scheduler, RNGs and data position back where the checkpoint left.
7. `steps_to_delete`: retention, keep the last K and every M-th, never the one `latest` points to.
8. `save_sharded` / `load_sharded`: DCP with `get_state_dict` / `set_state_dict`, 2 ranks saving, 1 loading.

The rest (the tiny model and its data, the training loop, listing and pruning, the DCP demo) is written for you.
Run `python solution.py` for the crash-and-resume demo, `python solution.py dcp` for the 2-rank DCP demo.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch.utils.data import DataLoader, Sampler, TensorDataset
from tqdm import tqdm

import labkit

WEIGHTS = "model.safetensors"     # tensors only: no code can hide in it
STATE = "train_state.pt"          # optimizer, scheduler, RNGs, data position: read with weights_only=True
MANIFEST = "manifest.json"        # written last inside a checkpoint: its presence means "complete"
LATEST = "latest"                 # one line naming the newest complete checkpoint; written after everything else
STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with one line saying what is wrong and what to do."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# ---------------------------------------------------------------------------------------------- RNG state

def capture_rng() -> dict:
    """Every generator a training step draws from: Python's `random`, NumPy's global one, torch's CPU one (and
    CUDA's when present). Returned as plain Python values and tensors, so `torch.load(weights_only=True)` can read
    it back (a NumPy array is not on that allow-list, so the MT19937 key travels as a tensor)."""
    # BEGIN SOLUTION [rng-state] One entry per generator; NumPy's get_state() is a tuple whose key is an array.
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached_gaussian)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    # END SOLUTION


def restore_rng(state: dict) -> None:
    """Put every generator back exactly where `capture_rng` found it."""
    # BEGIN SOLUTION [rng-state] The mirror image of capture_rng: set each generator, converting the key back.
    random.setstate(state["python"])
    name, key, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- data position

class ResumableBatchSampler(Sampler):
    """Shuffled batches of indices whose order depends only on (seed, epoch), never on a global generator.

    `set_position(epoch, batch)` says where the next `iter()` starts: epoch `epoch`, skipping its first `batch`
    batches. The training loop, not the sampler, counts the batches it has consumed: a DataLoader with workers
    pulls indices from the sampler ahead of the step that uses them, so the sampler's own count runs ahead.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int = 0):
        if num_examples < 1 or batch_size < 1:
            raise ValueError("ResumableBatchSampler: num_examples and batch_size must be >= 1")
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)    # batches per epoch; the last one may be short

    def set_position(self, epoch: int, batch: int) -> None:
        if not 0 <= batch <= len(self):
            raise ValueError(f"batch {batch} is outside an epoch of {len(self)} batches")
        self.epoch, self.start_batch = epoch, batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """A permutation of range(num_examples), the same for the same (seed, epoch) in any process."""
        # BEGIN SOLUTION [resumable-sampler] A private torch.Generator seeded from both the seed and the epoch.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_examples, generator=generator)
        # END SOLUTION

    def __iter__(self):
        """Yield lists of indices: batch `start_batch`, `start_batch + 1`, ... of the current epoch's order."""
        # BEGIN SOLUTION [resumable-sampler] Slice the epoch's order batch by batch, from start_batch to the end.
        order = self.epoch_order(self.epoch).tolist()
        for b in range(self.start_batch, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]
        # END SOLUTION


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class RunConfig:
    total_steps: int = 60
    batch_size: int = 16
    num_examples: int = 200      # 13 batches per epoch: epochs end mid-way between checkpoints
    width: int = 64
    lr: float = 3e-3
    warmup: int = 10
    seed: int = 0


@dataclass
class Run:
    """Everything a training step touches. `build_run` makes a fresh one, as a restarted process would."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: ResumableBatchSampler
    loader: DataLoader
    step: int = 0
    epoch: int = 0
    batch: int = 0               # batches of `epoch` already consumed


def tiny_model(width: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # Dropout draws from torch's global generator at every training step: resume must restore it.
    return nn.Sequential(nn.Linear(16, width), nn.GELU(), nn.Dropout(0.1), nn.Linear(width, width), nn.GELU(),
                         nn.Linear(width, 4))


def toy_dataset(num_examples: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed + 12345)
    x = torch.randn(num_examples, 16, generator=g)
    teacher = torch.randn(16, 4, generator=g) / 4.0
    return TensorDataset(x, torch.tanh(x @ teacher))          # x: (N, 16), y: (N, 4)


def warmup_cosine(warmup: int, total: int):
    """lr multiplier: linear warm-up to 1, then cosine down to 0.1 (a picklable object, not a lambda)."""
    return WarmupCosine(warmup, total)


class WarmupCosine:
    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def build_run(cfg: RunConfig) -> Run:
    """Fresh objects, seeded as at the start of training (a restarted process starts here too)."""
    labkit.seed_everything(cfg.seed)
    model = tiny_model(cfg.width, cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup, cfg.total_steps))
    sampler = ResumableBatchSampler(cfg.num_examples, cfg.batch_size, cfg.seed)
    # A private generator: DataLoader draws a base seed for its workers at every iter(); from the global
    # generator that draw would shift dropout's stream between a straight run and a resumed one.
    loader = DataLoader(toy_dataset(cfg.num_examples, cfg.seed), batch_sampler=sampler,
                        generator=torch.Generator().manual_seed(cfg.seed))
    labkit.seed_everything(cfg.seed)
    return Run(model, optimizer, scheduler, sampler, loader)


def train_step(run: Run, xb: torch.Tensor, yb: torch.Tensor) -> float:
    """One optimizer step. Augmentation draws from Python (sign flip) and NumPy (jitter); dropout from torch."""
    if random.random() < 0.5:                                        # y = tanh(x W) is odd: flip both
        xb, yb = -xb, -yb
    xb = xb + torch.from_numpy(np.random.normal(0.0, 0.05, size=tuple(xb.shape)).astype(np.float32))
    run.model.train()
    loss = nn.functional.mse_loss(run.model(xb), yb)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return loss.item()


def loader_state(run: Run) -> dict:
    return {"epoch": run.epoch, "batch": run.batch, "seed": run.sampler.seed}


def train(run: Run, until_step: int, run_dir: Path | None = None, save_every: int = 0, on_save=None,
          progress: bool = False) -> list[float]:
    """Train from `run.step` up to `until_step`; save every `save_every` steps into `run_dir`. Returns the losses."""
    losses = []
    bar = tqdm(total=until_step - run.step, desc="train", disable=not progress, leave=False)
    while run.step < until_step:
        run.sampler.set_position(run.epoch, run.batch)
        for xb, yb in run.loader:
            losses.append(train_step(run, xb, yb))
            run.step += 1
            run.batch += 1
            bar.update(1)
            if save_every and run.step % save_every == 0:
                save_checkpoint(run_dir, run.step, run.model, run.optimizer, run.scheduler, loader_state(run))
                if on_save is not None:
                    on_save(run.step)
            if run.step >= until_step:
                break
        if run.batch >= len(run.sampler):
            run.epoch, run.batch = run.epoch + 1, 0
    bar.close()
    return losses


# ---------------------------------------------------------------------------------------------- atomic writes

def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (the new directory entry reaches the disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, chunk_size: int = 1 << 20, on_chunk=None) -> None:
    """Write `data` to `path` so that a reader (or a crash) sees either the old file or the whole new one.

    `on_chunk(bytes_written)` is called after each chunk (a progress hook; the crash test uses it to go slowly).
    Temp names contain ".tmp" and are never a complete file.
    """
    path = Path(path)
    # BEGIN SOLUTION [atomic-write] Temp file beside the target; write, flush, fsync; os.replace; fsync the folder.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for start in range(0, len(data), chunk_size):
                f.write(data[start:start + chunk_size])
                if on_chunk is not None:
                    on_chunk(min(start + chunk_size, len(data)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)          # atomic on POSIX and Windows when both names are on one filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    # END SOLUTION


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- save

def training_state_bytes(optimizer, scheduler, loader: dict, step: int) -> bytes:
    """Everything but the weights, serialized by torch.save (only tensors, numbers, strings, lists, dicts)."""
    buffer = io.BytesIO()
    # BEGIN SOLUTION [save-checkpoint] One dict: step, the optimizer's and scheduler's state_dicts, RNGs, loader.
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": capture_rng(), "loader": loader}, buffer)
    # END SOLUTION
    return buffer.getvalue()


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer, scheduler, loader: dict,
                    on_chunk=None) -> Path:
    """Write checkpoint `step` under `run_dir/step-XXXXXXXX/` and point `run_dir/latest` at it.

    Order is the whole point: weights and training state first, then `manifest.json` (sizes and SHA-256 of
    both: its presence marks the checkpoint complete), then the `latest` pointer. Each file is written atomically.
    """
    run_dir = Path(run_dir)
    folder = run_dir / step_dir_name(step)
    folder.mkdir(parents=True, exist_ok=True)
    # BEGIN SOLUTION [save-checkpoint] Weights (safetensors), then state, then the manifest, then `latest`; all atomic.
    weights = safetensors_save({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                               metadata={"step": str(step)})
    state = training_state_bytes(optimizer, scheduler, loader, step)
    atomic_write_bytes(folder / WEIGHTS, weights, on_chunk=on_chunk)
    atomic_write_bytes(folder / STATE, state, on_chunk=on_chunk)
    manifest = {"step": step, "files": {WEIGHTS: {"bytes": len(weights), "sha256": sha256_hex(weights)},
                                        STATE: {"bytes": len(state), "sha256": sha256_hex(state)}}}
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
    atomic_write_bytes(run_dir / LATEST, (folder.name + "\n").encode())
    # END SOLUTION
    fsync_dir(run_dir)
    return folder


# ---------------------------------------------------------------------------------------------- load

def load_weights(data: bytes, model: nn.Module, source: str = "weights") -> None:
    """Load safetensors bytes into `model`, refusing missing, unexpected or mis-shaped tensors in one line."""
    # BEGIN SOLUTION [load-checkpoint] Parse; compare key sets and every shape with the model's; only then load.
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{source}: not a readable safetensors file ({err}); re-save it") from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: keys do not match the model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); was it saved from another architecture?")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(f"{source}: '{name}' has shape {tuple(tensor.shape)} but the model expects "
                                  f"{tuple(expected[name].shape)}; check the model config (width, vocab)")
    model.load_state_dict(tensors, strict=True)
    # END SOLUTION


def load_training_state(data: bytes, source: str = "state") -> dict:
    """Unpickle the training state with torch's restricted loader: tensors and plain containers only."""
    # BEGIN SOLUTION [load-checkpoint] torch.load with weights_only=True; turn its refusal into one clear line.
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:            # UnpicklingError for forbidden globals, RuntimeError for a torn file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{source}: refused by torch.load(weights_only=True): {first[:160]}; "
                              "never load it with weights_only=False unless you made it yourself") from None
    # END SOLUTION


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{folder}: no {MANIFEST}, so the save never finished; use an earlier checkpoint")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg}); the checkpoint is damaged") from None


def latest_step_dir(run_dir: Path) -> Path:
    pointer = Path(run_dir) / LATEST
    if not pointer.exists():
        raise CheckpointError(f"{run_dir}: no '{LATEST}' pointer, so no complete checkpoint; start from scratch")
    name = pointer.read_text().strip()
    if not STEP_DIR.match(name):
        raise CheckpointError(f"{pointer}: expected a name like step-00000010, got {name[:40]!r}")
    return Path(run_dir) / name


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer=None, scheduler=None, step: int | None = None) -> dict:
    """Load checkpoint `step` (default: the one `latest` names) into the given objects, after verifying it.

    Returns the training state: {"step", "optimizer", "scheduler", "rng", "loader"} (RNGs are not restored here).
    """
    folder = Path(run_dir) / step_dir_name(step) if step is not None else latest_step_dir(run_dir)
    manifest = read_manifest(folder)
    blobs = {}
    # BEGIN SOLUTION [load-checkpoint] Read each file, check its size and SHA-256 against the manifest, then load.
    for name in (WEIGHTS, STATE):
        entry = manifest["files"].get(name)
        path = folder / name
        if entry is None or not path.exists():
            raise CheckpointError(f"{path}: missing from the checkpoint; use an earlier checkpoint")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or sha256_hex(data) != entry["sha256"]:
            raise CheckpointError(f"{path}: {len(data)} bytes whose SHA-256 does not match the manifest "
                                  f"({entry['bytes']} bytes expected); the file is truncated or corrupted")
        blobs[name] = data
    load_weights(blobs[WEIGHTS], model, source=str(folder / WEIGHTS))
    state = load_training_state(blobs[STATE], source=str(folder / STATE))
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    # END SOLUTION
    return state


def resume_run(run: Run, run_dir: Path) -> Run:
    """Bring a freshly built `run` to the state of the latest checkpoint in `run_dir`: weights, optimizer,
    scheduler, step counter, data position and every RNG."""
    # BEGIN SOLUTION [resume] Load into the run's objects, copy step/epoch/batch from the state, restore the RNGs.
    state = load_checkpoint(run_dir, run.model, run.optimizer, run.scheduler)
    run.step = state["step"]
    run.epoch, run.batch = state["loader"]["epoch"], state["loader"]["batch"]
    restore_rng(state["rng"])
    # END SOLUTION
    return run


# ---------------------------------------------------------------------------------------------- retention

def complete_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints whose manifest exists (complete saves), ascending."""
    steps = []
    for child in Path(run_dir).iterdir() if Path(run_dir).exists() else []:
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / MANIFEST).exists():
            steps.append(int(match.group(1)))
    return sorted(steps)


def steps_to_delete(steps: list[int], latest: int | None, keep_last: int, keep_every: int = 0) -> list[int]:
    """Which checkpoint steps retention removes: keep the `keep_last` newest, every step that is a multiple of
    `keep_every` (0: none), and always `latest` (the pointer may name an older step after a rollback)."""
    if keep_last < 1:
        raise ValueError("keep_last must be >= 1: deleting every checkpoint is never what you want")
    # BEGIN SOLUTION [retention] The kept set is a union of three rules; everything else goes, in ascending order.
    ordered = sorted(steps)
    keep = set(ordered[-keep_last:])
    if keep_every:
        keep |= {s for s in ordered if s % keep_every == 0}
    if latest is not None:
        keep.add(latest)
    return [s for s in ordered if s not in keep]
    # END SOLUTION


def prune(run_dir: Path, keep_last: int, keep_every: int = 0) -> list[int]:
    """Apply retention to `run_dir`, and sweep leftovers of interrupted saves (temp files, folders with no
    manifest that are older than the newest complete one). Returns the deleted steps."""
    run_dir = Path(run_dir)
    steps = complete_steps(run_dir)
    latest = int(STEP_DIR.match(latest_step_dir(run_dir).name).group(1)) if (run_dir / LATEST).exists() else None
    doomed = steps_to_delete(steps, latest, keep_last, keep_every)
    for step in doomed:
        shutil.rmtree(run_dir / step_dir_name(step))
    for leftover in run_dir.glob("step-*/.*.tmp"):
        leftover.unlink(missing_ok=True)
    fsync_dir(run_dir)
    return doomed


# ---------------------------------------------------------------------------------------------- DCP (sharded)

def save_sharded(path: Path, model: nn.Module, optimizer, step: int) -> None:
    """Save model + optimizer with torch.distributed.checkpoint: each rank writes its own shards.

    Every rank must call this (DCP plans the save collectively). Works in a single process too.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    # BEGIN SOLUTION [dcp] get_state_dict gives FQN-keyed (sharded) model and optimizer states; dcp.save writes them.
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state, "step": torch.tensor(step)}, checkpoint_id=str(path))
    # END SOLUTION


def load_sharded(path: Path, model: nn.Module, optimizer) -> int:
    """Load a DCP checkpoint into `model`/`optimizer`, whatever number of ranks saved it. Returns the step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    # BEGIN SOLUTION [dcp] Ask for this process's state dicts (they say which slices it wants), dcp.load, set them.
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state, "step": torch.tensor(0)}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return int(state["step"])
    # END SOLUTION


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2: each Linear's parameters become DTensors split along dim 0 across the ranks, then the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    return model


def dcp_worker(out: Path, steps: int = 3, init_method: str | None = None, rank: int | None = None,
               world_size: int | None = None) -> None:
    """One rank of the sharded demo: FSDP2 over gloo (CPU) or NCCL (GPU), a few steps, a DCP save, and a full
    (gathered) copy from rank 0 that a single-process reload is compared with."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    backend = "nccl" if torch.cuda.is_available() and os.environ.get("LABKIT_DEVICE") != "cpu" else "gloo"
    kwargs = {"init_method": init_method, "rank": rank, "world_size": world_size} if init_method else {}
    dist.init_process_group(backend, **kwargs)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        model = shard_model(tiny_model(64, seed=0).to(device))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        data = toy_dataset(64, seed=0)
        for step in range(steps):                      # each rank trains on its own slice of the batch
            xb, yb = (t[rank::world][step * 4:(step + 1) * 4].to(device) for t in data.tensors)
            model.train()
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        save_sharded(out / "dcp", model, optimizer, steps)
        full_model, full_optim = get_state_dict(model, optimizer,
                                                options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            buffer = io.BytesIO()
            torch.save({"model": full_model, "optim": full_optim, "world": world}, buffer)
            atomic_write_bytes(out / "full.pt", buffer.getvalue())
        dist.barrier()
    finally:
        dist.destroy_process_group()


def torchrun_command(nproc: int, out: str = "outputs/dcp") -> str:
    return (f"torchrun --standalone --nproc_per_node={nproc} "
            f"llm-engineer/phase-10-distributed-production/lab-03-checkpointing-resumability/solution.py "
            f"dcp-rank --out {out}")


# ---------------------------------------------------------------------------------------------- demo

def run_dcp_demo(out: Path, world: int = 2) -> None:
    """Launch `world` ranks on this machine (gloo over a file store), then reload their checkpoint in 1 process."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "dcp", ignore_errors=True)
    store = out / "store"
    store.unlink(missing_ok=True)
    print(f"launching {world} ranks (gloo, CPU). On N GPUs the same code runs with:\n  {torchrun_command(8)}\n"
          "  what changes: backend nccl, one GPU per rank (LOCAL_RANK), env:// rendezvous instead of a file store;\n"
          "  DCP still writes one __<rank>_0.distcp file per rank plus .metadata.")
    env = {**os.environ, "LABKIT_DEVICE": "cpu"}
    procs = [subprocess.Popen([sys.executable, __file__, "dcp-rank", "--out", str(out), "--rank", str(r),
                               "--world", str(world), "--init", f"file://{store}"], env=env) for r in range(world)]
    try:
        for p in procs:
            if p.wait(timeout=300) != 0:
                raise SystemExit(f"a rank exited with code {p.returncode}; see its output above")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    files = sorted(f.name for f in (out / "dcp").iterdir())
    print(f"{world} ranks wrote {files}")
    model = tiny_model(64, seed=123)                          # different init: the load must overwrite it
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    step = load_sharded(out / "dcp", model, optimizer)
    full = torch.load(out / "full.pt", weights_only=True)
    same = all(torch.equal(v, full["model"][k]) for k, v in model.state_dict().items())
    print(f"reloaded in 1 process (resharded {world} -> 1): step {step}, weights equal to the gathered copy: {same}")


def crash_resume_demo(out: Path, cfg: RunConfig) -> None:
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    crash_at = 37
    straight = train(build_run(cfg), cfg.total_steps, progress=True)
    print(f"straight run: {cfg.total_steps} steps, final loss {straight[-1]:.6f}")

    first = build_run(cfg)
    partial = train(first, crash_at, run_dir=run_dir, save_every=10, on_save=lambda s: prune(run_dir, 2, 20))
    print(f"run 2 'crashes' at step {crash_at}; complete checkpoints on disk: {complete_steps(run_dir)}, "
          f"latest -> {(run_dir / LATEST).read_text().strip()}")
    labkit.seed_everything(999)                              # a new process would start with other RNG states
    second = resume_run(build_run(cfg), run_dir)
    resumed_at = second.step
    print(f"resumed at step {resumed_at} (epoch {second.epoch}, batch {second.batch})")
    rest = train(second, cfg.total_steps)
    resumed = partial[:resumed_at] + rest
    diffs = [abs(a - b) for a, b in zip(straight, resumed)]
    same_weights = all(torch.equal(a, b) for a, b in zip(build_and_train_params(cfg), second.model.parameters()))
    print(f"per-step losses: max |straight - resumed| = {max(diffs):.3g} over {len(diffs)} steps "
          f"(bit-exact: {max(diffs) == 0.0}); final weights identical: {same_weights}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(straight, label="straight run", lw=3, alpha=0.5)
        ax.plot(range(resumed_at, cfg.total_steps), rest, "--", label=f"resumed from step {resumed_at}")
        ax.axvline(crash_at, color="red", lw=0.8, label="crash")
        ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend()
        fig.tight_layout()
        fig.savefig(out / "resume.png", dpi=120)
        print(f"plot: {out / 'resume.png'}")
    except ImportError:
        pass


def build_and_train_params(cfg: RunConfig):
    run = build_run(cfg)
    train(run, cfg.total_steps)
    return list(run.model.parameters())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="resume", choices=("resume", "dcp", "dcp-rank"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rank", type=int, default=None)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--init", default=None, help="rendezvous, e.g. file:///tmp/store (torchrun: leave unset)")
    args = parser.parse_args(argv)
    out = args.out or labkit.output_dir(__file__)
    if args.mode == "dcp-rank":          # one rank; started by run_dcp_demo or by torchrun (env:// rendezvous)
        dcp_worker(Path(out), init_method=args.init, rank=args.rank, world_size=args.world if args.init else None)
        return
    torch.set_num_threads(1)
    if args.mode == "dcp":
        run_dcp_demo(Path(out), args.world)
        return
    crash_resume_demo(Path(out), RunConfig())


if __name__ == "__main__":
    labkit.run(main)
