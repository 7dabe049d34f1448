"""One place that picks the device: CUDA when present, else CPU; LABKIT_DEVICE overrides (e.g. `cpu`, `cuda:1`)."""
from __future__ import annotations

import contextlib
import os


def pick_device(prefer: str | None = None):
    import torch

    choice = prefer or os.environ.get("LABKIT_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"LABKIT_DEVICE={choice} asks for CUDA, but no GPU is visible; unset it to use the CPU")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def autocast_dtype(device) -> "torch.dtype | None":
    """bf16 on CUDA (where labs teach mixed precision), None (plain float32) on CPU."""
    import torch

    return torch.bfloat16 if torch.device(device).type == "cuda" else None


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch's CPU work on `n` threads inside the block, then restore the previous count.
    Tiny models are faster on one thread: hand-offs between threads cost more than the matmuls."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int = 0) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
