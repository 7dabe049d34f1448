"""Micro-batching on vs off: the same server, the same 64 concurrent clients, the same PNG uploads.

"on" gathers up to --max-batch requests (or what arrives within --max-wait-ms of the first) into one ONNX Runtime
call; "off" is max_batch = 1, one call per request. Reported side by side: throughput (requests per wall second),
client-side latency p50/p99 (upload to answer), mean requests per model call, and the ratios on / off measured in
the same run. Clients and server share this process (and its GIL), so absolute numbers are lower than with a
separate load generator; the ratio is the figure to read.
Run: .venv/bin/python cv-engineer/phase-07-mlops-deployment/lab-02-fastapi-server/bench.py
"""
from __future__ import annotations

import argparse

import numpy as np

import labkit

LAB = "cv-engineer/phase-07-mlops-deployment/lab-02-fastapi-server"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    impl = labkit.load_impl(LAB, "solution")
    session = impl.load_session(impl.model_file())
    images = impl.onnx_lab.digit_splits()["test"][0]
    images = list(np.concatenate([images] * (-(-args.requests // len(images))))[:args.requests])
    print(f"{args.requests} PNG uploads, {args.clients} concurrent clients, ORT on 1 thread")
    runs = {"micro-batching on": impl.serve_and_measure(session, images, max_batch=args.max_batch,
                                                        max_wait_ms=args.max_wait_ms, clients=args.clients),
            "off (max_batch=1)": impl.serve_and_measure(session, images, max_batch=1, max_wait_ms=0,
                                                        clients=args.clients)}
    head = f"{'server':>18} | {'req/s':>7} | {'p50 ms':>8} | {'p99 ms':>8} | {'mean batch':>10}"
    print(head + "\n" + "-" * len(head))
    for name, r in runs.items():
        print(f"{name:>18} | {r['rps']:7.1f} | {r['p50_ms']:8.1f} | {r['p99_ms']:8.1f} | {r['mean_batch']:10.1f}")
    on, off = runs["micro-batching on"], runs["off (max_batch=1)"]
    print(f"on / off: throughput x{on['rps'] / off['rps']:.2f}, p50 latency x{on['p50_ms'] / off['p50_ms']:.2f}, "
          f"p99 latency x{on['p99_ms'] / off['p99_ms']:.2f}")


if __name__ == "__main__":
    labkit.run(main)
