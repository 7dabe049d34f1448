"""Checkpoint throughput: torch.save vs safetensors vs DCP vs this lab's atomic checkpoint, save and load, in MB/s.

The same state (a stack of float32 matrices, --mb MiB in all, like a small model's weights) goes through each
writer into a fresh folder on the same disk, fsynced so the page cache does not flatter the writes. Each load
copies every tensor into fresh memory (the files are hot in the page cache, so this is not disk read speed).
Best of --repeats runs. Ratios are against torch.save / torch.load measured in the same run: absolute MB/s
depend on the disk and on what else the machine is doing.

  torch.save          one pickle-based zip file (what most training scripts write)
  safetensors         a JSON header + raw bytes; loads without unpickling anything
  DCP (1 process)     torch.distributed.checkpoint: per-rank .distcp files + .metadata (resharding on load)
  atomic checkpoint   this lab's save_checkpoint: safetensors + SHA-256 manifest + temp/fsync/os.replace + latest

Run: .venv/bin/python llm-engineer/phase-10-distributed-production/lab-03-checkpointing-resumability/bench.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file

import labkit
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-10-distributed-production/lab-03-checkpointing-resumability"


def make_state(mib: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    per = 1024 * 1024                       # 4 MiB per float32 matrix
    return {f"layer{i}.weight": torch.randn(1024, 1024) for i in range(max(1, mib * (1 << 20) // (4 * per)))}


def touch(tensors) -> int:
    """Copy every tensor once into fresh memory, as moving it to the device would. safetensors memory-maps the
    file, so without this its 'load' would time only the header; every loader pays the same copy here."""
    return sum(t.clone().numel() for t in tensors)


def fsync_tree(path: Path) -> None:
    for p in ([path] if path.is_file() else [q for q in path.rglob("*") if q.is_file()]):
        with open(p, "rb+") as f:
            os.fsync(f.fileno())


class Linearish(torch.nn.Module):
    """Wraps the tensors as parameters so save_checkpoint can take them as a model."""

    def __init__(self, state):
        super().__init__()
        for name, tensor in state.items():
            self.register_parameter(name.replace(".", "_"), torch.nn.Parameter(tensor, requires_grad=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="size of the state in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    impl = labkit.reuse(LAB)
    state = make_state(args.mb)
    size_mb = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=labkit.output_dir(__file__)))
    model = Linearish(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def fresh(name):
        target = root / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        return target

    def load_dcp():
        target = {k: torch.empty_like(v) for k, v in state.items()}
        dcp.load(target, checkpoint_id=str(root / "dcp"))
        return touch(target.values())

    writers = {
        "torch.save": (lambda: (torch.save(state, fresh("t.pt")), fsync_tree(root / "t.pt")),
                       lambda: touch(torch.load(root / "t.pt", weights_only=True).values())),
        "safetensors": (lambda: (save_file(state, fresh("s.safetensors")), fsync_tree(root / "s.safetensors")),
                        lambda: touch(load_file(root / "s.safetensors").values())),
        "DCP (1 process)": (lambda: (dcp.save(state, checkpoint_id=str(fresh("dcp"))), fsync_tree(root / "dcp")),
                            load_dcp),
        "atomic checkpoint": (lambda: impl.save_checkpoint(fresh("run"), 1, model, optimizer, None, {}),
                              lambda: (impl.load_checkpoint(root / "run", model), touch(model.parameters()))),
    }
    print(f"state: {len(state)} float32 tensors, {size_mb:.0f} MiB; best of {args.repeats}; folder {root}")
    results = {}
    for name, (save, load) in writers.items():
        save_s = best_seconds(save, repeats=args.repeats)
        load_s = best_seconds(load, repeats=args.repeats)
        results[name] = (size_mb / save_s, size_mb / load_s)
    base_save, base_load = results["torch.save"]
    print(f"{'writer':<20}{'save MB/s':>11}{'x torch':>9}{'load MB/s':>11}{'x torch':>9}")
    for name, (save_rate, load_rate) in results.items():
        print(f"{name:<20}{save_rate:>11.0f}{save_rate / base_save:>9.2f}{load_rate:>11.0f}{load_rate / base_load:>9.2f}")
    print("atomic checkpoint = safetensors + a SHA-256 of every byte + fsyncs: integrity is paid in hashing time.")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    labkit.run(main)
