"""Timing helpers for the labs' bench.py scripts: warm up once, then time `repeats` runs side by side.

Benchmarks report ratios between implementations measured in the same run, never absolute claims.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


def _sync(device) -> None:
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.synchronize()  # CUDA calls return before the GPU finishes: wait, or the clock lies


def _runs(fn: Callable[[], object], repeats: int, device=None) -> list[float]:
    fn()  # warm-up: caches, lazy initialisation, kernel selection
    runs = []
    for _ in range(max(repeats, 1)):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        runs.append(time.perf_counter() - start)
    return runs


def best_seconds(fn: Callable[[], object], repeats: int = 3, device=None) -> float:
    """Fastest of `repeats` timed runs, in seconds (the least disturbed by other work on the machine)."""
    return min(_runs(fn, repeats, device))


def median_ms(fn: Callable[[], object], repeats: int = 5, device=None) -> float:
    """Median of `repeats` timed runs, in milliseconds (a typical latency)."""
    return statistics.median(_runs(fn, repeats, device)) * 1e3
