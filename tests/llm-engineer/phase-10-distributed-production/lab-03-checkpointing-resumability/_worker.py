"""Subprocess helper for the crash and multi-rank tests (not a test module). It loads the implementation under
test by path (solution.py or lab.py, with LABKIT_MISTAKE applied when set) and does one job:

  atomic PATH        rewrite PATH with 4 MiB through atomic_write_bytes, stalling after the first 64 KiB chunk
  save RUN_DIR       save checkpoint 1 of a seed-0 model, then stall inside checkpoint 2's first write
  dcp OUT RANK WORLD one rank of the sharded DCP save (gloo over a file store in OUT)
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from labkit.labs import load_impl  # noqa: E402

LAB = "llm-engineer/phase-10-distributed-production/lab-03-checkpointing-resumability"


def slow(written: int) -> None:
    """Stall after the first chunk: the test SIGKILLs the process here, so however loaded the machine is, the
    kill lands mid-write (the fixture kills it at teardown if the test never does)."""
    print(f"WRITING {written}", flush=True)
    time.sleep(120)


def main() -> None:
    impl_name, job, *args = sys.argv[1:]
    impl = load_impl(LAB, impl_name)
    import torch

    torch.set_num_threads(1)
    if job == "atomic":
        impl.atomic_write_bytes(Path(args[0]), b"N" * (4 << 20), chunk_size=1 << 16, on_chunk=slow)
    elif job == "save":
        run_dir = Path(args[0])
        model = impl.tiny_model(64, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        impl.save_checkpoint(run_dir, 1, model, optimizer, None, {"epoch": 0, "batch": 1, "seed": 0})
        print("SAVED 1", flush=True)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        impl.save_checkpoint(run_dir, 2, model, optimizer, None, {"epoch": 0, "batch": 2, "seed": 0}, on_chunk=slow)
    elif job == "dcp":
        out, rank, world = Path(args[0]), int(args[1]), int(args[2])
        impl.dcp_worker(out, steps=3, init_method=f"file://{out / 'store'}", rank=rank, world_size=world)
    else:
        raise SystemExit(f"unknown job {job!r}")
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
