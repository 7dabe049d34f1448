"""Two gloo ranks on loopback for the tests: the launcher (run by conftest.py) and the rank program.

`launch(impl_name, tmp)` starts this file twice as a script (rank 0 and 1), rendezvous through a file store in
`tmp` (no TCP port to reserve; gloo's own sockets are ephemeral loopback ones that close with the process), waits
with a timeout, kills both process groups on any failure, and returns {rank: results}. Each rank loads the
implementation by path (solution.py or lab.py, with a classic mistake applied when LABKIT_MISTAKE names one),
runs every scenario, and records either its results or the exception it raised, so one unfinished task does not
hide the others.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[4]
LAB = "llm-engineer/phase-10-distributed-production/lab-01-ddp-fsdp"
WORLD = 2
STEPS = 2
GLOBAL_BATCH = 8
LR = 1e-2
BUCKET_CAP = 8 * 1024      # bytes: the test GPT's 27k parameters fall into a dozen buckets
RANK_TIMEOUT_S = 240       # the whole two-rank run, imports included, on a loaded 2-core machine
COLLECTIVE_TIMEOUT_S = 60  # gloo gives up on a collective a rank never joins


def config(nano):
    return nano.GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, d_model=32)


def token_data() -> torch.Tensor:
    return torch.randint(0, 32, (4000,), generator=torch.Generator().manual_seed(1234))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of a step, (GLOBAL_BATCH, 16) inputs and targets, the same in every process."""
    data = token_data()
    gen = torch.Generator().manual_seed(77 + step)
    starts = torch.randint(len(data) - 17, (GLOBAL_BATCH,), generator=gen)
    x = torch.stack([data[s:s + 16] for s in starts])
    return x, torch.stack([data[s + 1:s + 17] for s in starts])


def my_rows(t: torch.Tensor, rank: int) -> torch.Tensor:
    rows = t.shape[0] // WORLD
    return t[rank * rows:(rank + 1) * rows]


# ---------------------------------------------------------------------------------------------- the launcher

def launch(impl_name: str, tmp: Path) -> dict[int, dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    store = tmp / "store"
    store.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    procs = []
    try:
        for rank in range(WORLD):
            log = open(tmp / f"rank{rank}.log", "w")
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE), impl_name, str(tmp), str(rank)], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        deadline = time.monotonic() + RANK_TIMEOUT_S
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the two ranks did not finish within {RANK_TIMEOUT_S} s (a collective one rank "
                           f"never reached?); rank 0 log tail:\n{_tail(tmp / 'rank0.log')}") from None
    finally:
        for proc in procs:  # always: nothing outlives the test, even when it failed or timed out
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    results = {}
    for rank, proc in enumerate(procs):
        path = tmp / f"rank{rank}.pt"
        if not path.exists():
            raise RuntimeError(f"rank {rank} exited with code {proc.returncode} before writing its results; "
                               f"log tail:\n{_tail(tmp / f'rank{rank}.log')}")
        results[rank] = torch.load(path, weights_only=False)
    return results


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


# ---------------------------------------------------------------------------------------------- rank program

def broadcast_case(impl, rank: int, src: int) -> dict:
    """A module with a buffer, different on every rank; after the broadcast all must hold rank src's."""
    torch.manual_seed(100 + rank)
    module = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    module[1].running_mean.fill_(float(rank + 1))
    impl.broadcast_parameters(module, src=src)
    return {k: v.clone() for k, v in module.state_dict().items()}


def hand_case(impl, rank: int, micro: int, overlap: bool) -> dict:
    model, optimizer = impl.build("hand", config(impl.nano), lr=LR, bucket_cap_bytes=BUCKET_CAP, overlap=overlap)
    out = {"grads": [], "losses": [], "in_flight": [], "sent": [], "calls": [], "buckets": model.buckets}
    for step in range(STEPS):
        x, y = (my_rows(t, rank) for t in batch(step))
        optimizer.zero_grad(set_to_none=True)
        calls_before, loss_sum = len(model.comm_log), 0.0
        before = impl.sent_bytes()
        for i, (xm, ym) in enumerate(zip(x.chunk(micro), y.chunk(micro))):
            ctx = model.no_sync() if i < micro - 1 else contextlib.nullcontext()
            with ctx:
                loss = model(xm, ym)[1] / micro
                loss.backward()
            loss_sum += loss.item()
        out["in_flight"].append(len(model._pending))
        model.finish_gradient_sync()
        out["sent"].append(impl.sent_bytes() - before)
        out["calls"].append(model.comm_log[calls_before:])
        out["grads"].append([p.grad.clone() for p in model.module.parameters()])
        out["losses"].append(loss_sum)
        optimizer.step()
    out["params"] = [p.detach().clone() for p in model.module.parameters()]
    return out


def torch_case(impl, rank: int, kind: str) -> dict:
    model, optimizer = impl.build(kind, config(impl.nano), lr=LR, bucket_cap_bytes=BUCKET_CAP)
    full = (lambda t: t.full_tensor()) if kind == "fsdp" else (lambda t: t)
    out = {"grads": [], "losses": [], "sent": []}
    for step in range(STEPS):
        x, y = (my_rows(t, rank) for t in batch(step))
        optimizer.zero_grad(set_to_none=True)
        before = impl.sent_bytes()
        loss = model(x, y)[1]
        loss.backward()
        out["sent"].append(impl.sent_bytes() - before)
        out["losses"].append(loss.item())
        out["grads"].append([full(p.grad).clone() for p in model.parameters()])
        optimizer.step()
    out["params"] = [full(p.detach()).clone() for p in model.parameters()]
    out["memory"] = impl.memory_held(model, optimizer)
    out["dtensor"] = [type(p).__name__ == "DTensor" for p in model.parameters()]
    out["n_params"] = sum(p.numel() for p in model.parameters())
    return out


def run_rank(impl_name: str, tmp: Path, rank: int) -> None:
    import torch.distributed as dist

    from labkit.labs import load_impl

    torch.set_num_threads(1)
    impl = load_impl(LAB, impl_name)
    impl.init_distributed("gloo", init_method=f"file://{tmp / 'store'}", rank=rank, world_size=WORLD,
                          timeout_s=COLLECTIVE_TIMEOUT_S)
    scenarios = {
        "broadcast_from_0": lambda: broadcast_case(impl, rank, src=0),
        "broadcast_from_1": lambda: broadcast_case(impl, rank, src=1),
        "hand": lambda: hand_case(impl, rank, micro=1, overlap=True),
        "hand_accumulate": lambda: hand_case(impl, rank, micro=2, overlap=True),
        "hand_no_overlap": lambda: hand_case(impl, rank, micro=1, overlap=False),
        "ddp": lambda: torch_case(impl, rank, "ddp"),
        "fsdp": lambda: torch_case(impl, rank, "fsdp"),
    }
    results = {}
    for name, scenario in scenarios.items():
        try:
            results[name] = scenario()
            dist.barrier()
        except Exception as exc:  # recorded for the test that reads this scenario
            results[name] = {"error": (type(exc).__name__, str(exc), traceback.format_exc()[-3000:])}
            if not isinstance(exc, NotImplementedError):
                break  # a failed collective leaves the ranks out of step: stop here (the other rank times out)
    partial = tmp / f"rank{rank}.pt.tmp"
    torch.save(results, partial)
    os.replace(partial, tmp / f"rank{rank}.pt")


if __name__ == "__main__":
    run_rank(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
