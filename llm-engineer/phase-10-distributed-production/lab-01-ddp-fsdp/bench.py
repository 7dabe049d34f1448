"""Step time of data-parallel training with and without communication/computation overlap, side by side.

Variants, on the same GPT, batches and ranks, measured in interleaved rounds (one step of each per round, so the
machine's load hits them alike):
- hand, overlap      HandDDP: each bucket's all-reduce starts from the autograd hook of its last gradient
- hand, no overlap   HandDDP(overlap=False): every bucket is all-reduced after backward (the baseline)
- ddp                torch's DistributedDataParallel (25 MB buckets, overlapped in C++)
- ddp, one bucket    DistributedDataParallel with one bucket holding everything: it is ready only when backward
                     ends, so nothing overlaps
- fsdp               FSDP2 (fully_shard per block + root): all-gathers and reduce-scatters instead
Reported: median step time over the rounds (the slower rank's), its ratio to "hand, no overlap", and the bytes
the process group sent per step.

Run: .venv/bin/python llm-engineer/phase-10-distributed-production/lab-01-ddp-fsdp/bench.py  (2 CPU ranks, gloo)
On N GPUs: torchrun --standalone --nproc_per_node N bench.py --backend nccl
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

import labkit
from labkit.labs import load_impl

LAB = "llm-engineer/phase-10-distributed-production/lab-01-ddp-fsdp"
VARIANTS = {  # name -> (kind, bucket cap in bytes, overlap)
    "hand, no overlap": ("hand", 4 * 2**20, False),
    "hand, overlap": ("hand", 4 * 2**20, True),
    "ddp, one bucket": ("ddp", 2**40, True),
    "ddp": ("ddp", 25 * 2**20, True),
    "fsdp": ("fsdp", 0, True),
}
BASELINE = "hand, no overlap"


def bench_rank(args) -> None:
    lab = load_impl(LAB)
    rank, world = lab.init_distributed(args.backend, timeout_s=300)
    torch.set_num_threads(args.threads)
    try:
        config = lab.nano.GPTConfig(vocab_size=256, block_size=args.block, n_layer=args.layers, n_head=4,
                                    d_model=args.d_model)
        if args.backend == "nccl":
            torch.set_default_device(torch.device("cuda", torch.cuda.current_device()))
        data = torch.randint(0, 256, (100_000,), generator=torch.Generator().manual_seed(0)).to(torch.get_default_device())
        runs = {name: lab.build(kind, config, lr=1e-4, bucket_cap_bytes=cap or 2**20, overlap=overlap)
                for name, (kind, cap, overlap) in VARIANTS.items()}
        times = {name: [] for name in VARIANTS}
        sent = {name: 0 for name in VARIANTS}
        rows = args.batch_size * world
        for step in range(args.rounds + 1):  # round 0 warms up
            x, y = lab.global_batch(data, config.block_size, rows, step)
            x, y = lab.rank_slice(x, rank, world), lab.rank_slice(y, rank, world)
            for name, (model, optimizer) in runs.items():
                dist.barrier()
                if args.backend == "nccl":
                    torch.cuda.synchronize()
                before, start = lab.sent_bytes(), time.perf_counter()
                lab.train_step(model, optimizer, x, y)
                if args.backend == "nccl":
                    torch.cuda.synchronize()
                elapsed = torch.tensor([time.perf_counter() - start])
                sent[name] = lab.sent_bytes() - before
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # a step lasts as long as its slower rank
                if step:
                    times[name].append(elapsed.item())
        n_params = sum(p.numel() for p in lab.nano.GPT(config).parameters())
        comm = allreduce_alone_seconds(n_params, args.rounds)
        if rank == 0:
            report(times, sent, n_params, world, args, comm)
    finally:
        dist.destroy_process_group()


def allreduce_alone_seconds(n_params: int, rounds: int) -> float:
    """Median time of one all-reduce of all the fp32 gradients, nothing else running: the communication that
    overlap can hide at most."""
    flat = torch.ones(n_params)
    spent = []
    for _ in range(rounds):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(flat)
        if torch.cuda.is_available() and dist.get_backend() == "nccl":
            torch.cuda.synchronize()
        elapsed = torch.tensor([time.perf_counter() - start])
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        spent.append(elapsed.item())
    return statistics.median(spent)


def report(times: dict, sent: dict, n_params: int, world: int, args, comm: float) -> None:
    base = statistics.median(times[BASELINE])
    print(f"\nGPT {args.layers} layers, d_model {args.d_model}, {n_params / 1e6:.2f}M parameters "
          f"({4 * n_params / 2**20:.1f} MiB of fp32 gradients); {world} ranks x {args.batch_size} rows x "
          f"{args.block} tokens; {args.threads} thread(s) per rank; median of {args.rounds} interleaved rounds\n")
    print(f"| variant | step (ms) | speed vs {BASELINE} | sent per step (MiB, rank 0) |")
    print("|---|---:|---:|---:|")
    for name in VARIANTS:
        median = statistics.median(times[name])
        print(f"| {name} | {1e3 * median:.1f} | {base / median:.2f}x | {sent[name] / 2**20:.2f} |")
    print(f"\none all-reduce of all gradients alone: {1e3 * comm:.1f} ms ({100 * comm / base:.0f}% of the "
          f"no-overlap step): the most that overlap can hide")


def main() -> None:
    parser = argparse.ArgumentParser(description="data-parallel step time with and without overlap")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per rank")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()
    if "RANK" in os.environ:
        bench_rank(args)
        return
    here = Path(__file__).resolve()
    print(f"On N GPUs: torchrun --standalone --nproc_per_node N {here.name} --backend nccl\n"
          "(nccl instead of gloo, each rank on cuda:LOCAL_RANK with CUDA-synchronised timers; the code is the same)")
    print(f"Here: torchrun --standalone --nproc_per_node {args.nproc} {here.name} --backend gloo")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
               str(here), *sys.argv[1:]]
    launcher = subprocess.Popen(command, start_new_session=True)
    try:
        code = launcher.wait(timeout=1800)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        os.killpg(launcher.pid, 9)
        launcher.wait()
        raise SystemExit("the benchmark ranks did not finish in 30 minutes (or were interrupted); stopped them")
    if code:
        raise SystemExit(f"the benchmark ranks failed (exit code {code})")


if __name__ == "__main__":
    labkit.run(main)
