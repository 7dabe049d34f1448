"""A FastAPI image-classification server: validated uploads, dynamic micro-batching into ONNX Runtime, metrics.

Lab 01 trained a small digit CNN and exported it to ONNX with a dynamic batch axis. This lab serves that file the
way a production service does:

1. `validate_image`: the bytes a client sent become a gray image, or a 4xx with a one-line reason: wrong content
   type (415), empty or corrupt bytes (400), a file over the size limit (413), dimensions outside the rule (422).
2. `preprocess`: any accepted size is resized to the model's 28 x 28 (area averaging) and normalised exactly as
   in training, giving the float32 (1, 28, 28) row the model expects.
3. `MicroBatcher`: concurrent requests wait on an asyncio queue; one task gathers up to `max_batch` of them, or
   whatever arrived within `max_wait_ms` of the first, runs ONE session.run on the stacked batch in a worker
   thread, and hands each request its own row of the output.
4. `build_app`: POST /predict (multipart upload), POST /predict/base64 (JSON), GET /health (liveness), GET /ready
   (model loaded, batcher running), GET /metrics (Prometheus). Shutdown stops accepting, lets in-flight requests
   finish, then drains the batcher.

The dimension rule: width and height each between MIN_SIDE (8) and MAX_SIDE (512) pixels; anything in range is
resized to 28 x 28. The size limit: MAX_BYTES (1 MiB) of encoded image. Digits are white on black, as in MNIST.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from fastapi import File, UploadFile          # module level: FastAPI resolves route annotations by name
from fastapi import Request as HttpRequest

import labkit
from labkit.serving import RunningServer as _LoopbackServer

onnx_lab = labkit.reuse("lab-01-onnx-export")   # the digit CNN, its training cache, export_onnx, make_session

OUT = labkit.output_dir(__file__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)   # corrupt uploads get our 400, not C++ logs
MAX_BYTES = 1 << 20          # 1 MiB of encoded image
MIN_SIDE, MAX_SIDE = 8, 512  # accepted width and height, in pixels (inclusive)
MODEL_SIDE = 28
CONTENT_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}  # media type -> magic bytes


def model_file(path: Path | None = None) -> Path:
    """Lab 01's trained DigitCNN exported to ONNX (dynamic batch axis), exported once and reused."""
    import torch

    path = Path(path or OUT / "digit_cnn.onnx")
    if not path.is_file():
        onnx_lab.export_onnx(onnx_lab.trained_model(), path, torch.zeros(2, 1, MODEL_SIDE, MODEL_SIDE))
    return path


def load_session(path: Path, threads: int = 1):
    """An onnxruntime InferenceSession on the exported file (CPU unless a CUDA build is installed)."""
    return onnx_lab.make_session(path, threads=threads)


def run_session(session, x: np.ndarray) -> np.ndarray:
    """One ORT call: x (B, 1, 28, 28) float32 -> logits (B, 10)."""
    return onnx_lab.run_onnxruntime(session, x)


# ---------------------------------------------------------------------------------------------- 1. validate

class ImageError(ValueError):
    """Bad input: `status` is the HTTP status to answer with, the message says what was wrong and what to do."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def sniff_type(data: bytes) -> str | None:
    """The media type the bytes' magic number says, or None (used where the client declares none)."""
    return next((kind for kind, magic in CONTENT_TYPES.items() if data.startswith(magic)), None)


def validate_image(data: bytes, content_type: str | None, *, max_bytes: int = MAX_BYTES,
                   min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> np.ndarray:
    """Check and decode an uploaded image -> gray uint8 (H, W). Raises ImageError with a 4xx status:
    415 for a type other than PNG/JPEG (declared, or bytes that are not what was declared), 400 for empty or
    undecodable bytes, 413 for more than `max_bytes`, 422 for a side outside [min_side, max_side]."""
    # TODO [validate-image]: Cheap checks before decoding (type, emptiness, size), then decode to ONE gray channel (None means corrupt), then the sides.
    raise NotImplementedError('TODO [validate-image]: Cheap checks before decoding (type, emptiness, size), then decode to ONE gray channel (None means corrupt), then the sides.')


# ---------------------------------------------------------------------------------------------- 2. preprocess

def preprocess(gray: np.ndarray) -> np.ndarray:
    """Gray uint8 (H, W) of any accepted size -> the model's float32 row (1, 28, 28): resized by area averaging
    (each output pixel is the mean of the input pixels it covers), then (x/255 - mean) / std as in training."""
    # TODO [preprocess]: cv2.resize wants (width, height) and an interpolation that averages when shrinking; lab 01's to_model_input normalises an (N, 28, 28) stack.
    raise NotImplementedError("TODO [preprocess]: cv2.resize wants (width, height) and an interpolation that averages when shrinking; lab 01's to_model_input normalises an (N, 28, 28) stack.")


# ---------------------------------------------------------------------------------------------- 3. micro-batcher

def _fresh(exc: Exception) -> Exception:
    """A copy of `exc` caused by it: each waiter raises its own object, so one traceback does not grow forever."""
    new = copy.copy(exc)
    new.__cause__ = exc
    return new


@dataclass
class _Pending:
    x: np.ndarray                 # (1, 28, 28) float32
    future: asyncio.Future        # resolved with this request's logits row (10,)


class MicroBatcher:
    """Dynamic micro-batching. `submit(x)` queues one input and awaits its output row. A single background task
    takes the first waiting request, then keeps collecting until it holds `max_batch` or `max_wait_ms` have passed
    since that first one, stacks them (B, 1, 28, 28), runs `run_batch` ONCE in a worker thread (the event loop
    keeps serving meanwhile) and resolves each future with its own row. `on_batch(size)` observes each batch.
    `stop()` refuses new work and finishes everything already queued."""

    def __init__(self, run_batch, max_batch: int = 32, max_wait_ms: float = 5.0, on_batch=None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch or (lambda size: None)
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        self.accepting = False
        self.error: Exception | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.accepting = True
        self.task = asyncio.create_task(self._loop())

    @property
    def running(self) -> bool:
        return self.accepting and self.task is not None and not self.task.done()

    async def submit(self, x: np.ndarray) -> np.ndarray:
        if self.error is not None:
            raise _fresh(self.error)                        # the loop crashed: say why, not "not running"
        if not self.running:
            raise RuntimeError("the batcher is not running (starting up or shutting down)")
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(x, future))
        return await future

    async def stop(self) -> None:
        """Stop accepting, let the loop finish every queued request, then end it."""
        self.accepting = False
        if self.task is not None:
            self.queue.put_nowait(None)                     # sentinel: queued after all real work
            await self.task
            if self.error is not None:
                raise _fresh(self.error)
        self.executor.shutdown(wait=True)

    async def _collect(self) -> tuple[list[_Pending], bool]:
        """One batch: the first request (waits as long as needed), then more until full or the deadline.
        Returns (batch, saw_stop)."""
        loop = asyncio.get_running_loop()
        # TODO [micro-batcher]: Block for the first item; the deadline counts from it; later gets wait only what is left of the window (asyncio.wait_for); the None sentinel means stop.
        raise NotImplementedError('TODO [micro-batcher]: Block for the first item; the deadline counts from it; later gets wait only what is left of the window (asyncio.wait_for); the None sentinel means stop.')

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        # TODO [micro-batcher]: Stack to (B, 1, 28, 28); one run_batch in self.executor; row i belongs to batch[i]; a failure fails every future of the batch.
        raise NotImplementedError('TODO [micro-batcher]: Stack to (B, 1, 28, 28); one run_batch in self.executor; row i belongs to batch[i]; a failure fails every future of the batch.')

    async def _loop(self) -> None:
        try:
            while True:
                batch, stop = await self._collect()
                if batch:
                    try:
                        await self._run(batch)
                    except Exception as exc:                # a bug in _run: its requests fail, not hang
                        self._fail([item.future for item in batch], exc)
                        raise
                if stop:
                    return
        except Exception as exc:                            # a bug in the loop: every waiting request fails with it
            self.accepting, self.error = False, exc
            waiting = []
            while not self.queue.empty():
                item = self.queue.get_nowait()
                if item is not None:
                    waiting.append(item.future)
            self._fail(waiting, exc)                        # (not re-raised: submit() reports it)

    @staticmethod
    def _fail(futures, exc: Exception) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(_fresh(exc))


# ---------------------------------------------------------------------------------------------- 4. the app

class Metrics:
    """Prometheus series on a registry of their own (one per app, so several apps live in one process)."""

    def __init__(self, max_batch: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("inference_requests", "Prediction requests by HTTP status", ["status"],
                                registry=self.registry)
        self.latency = Histogram("inference_latency_seconds", "Arrival to response, successful predictions",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=self.registry)
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, max_batch})
        self.batch_size = Histogram("inference_batch_size", "Requests per model call", buckets=buckets,
                                    registry=self.registry)
        self.in_flight = Gauge("inference_in_flight", "Prediction requests being served", registry=self.registry)


def error_response(message: str, status: int):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def build_app(session, *, max_batch: int = 32, max_wait_ms: float = 5.0, max_bytes: int = MAX_BYTES,
              delay_s: float = 0.0):
    """The FastAPI app around one ORT session. `delay_s` adds a pause to every model call (tests and demos of
    graceful shutdown use it to keep requests in flight)."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    metrics = Metrics(max_batch)

    def run_batch(x):
        if delay_s:
            time.sleep(delay_s)
        return run_session(session, x)

    batcher = MicroBatcher(run_batch, max_batch, max_wait_ms, on_batch=metrics.batch_size.observe)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()          # uvicorn has already let in-flight requests finish

    app = FastAPI(title="digit classifier", lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics

    async def answer(data: bytes, content_type: str | None):
        """Validate, preprocess, batch, respond; every outcome is counted by status."""
        start = time.perf_counter()
        metrics.in_flight.inc()
        try:
            # TODO [endpoints]: An ImageError becomes its own status with its one-line message; a success returns the argmax label and softmax probabilities; count every outcome by status.
            raise NotImplementedError('TODO [endpoints]: An ImageError becomes its own status with its one-line message; a success returns the argmax label and softmax probabilities; count every outcome by status.')
        finally:
            metrics.in_flight.dec()

    @app.post("/predict")
    async def predict_upload(file: UploadFile | None = File(None)):
        # TODO [endpoints]: The image's type is the one its form part declares (file.content_type), not the request's multipart header; read at most max_bytes + 1 so an oversized file is caught without trusting any length header.
        raise NotImplementedError("TODO [endpoints]: The image's type is the one its form part declares (file.content_type), not the request's multipart header; read at most max_bytes + 1 so an oversized file is caught without trusting any length header.")

    @app.post("/predict/base64")
    async def predict_base64(http: HttpRequest):
        # TODO [endpoints]: JSON {"image_b64": str}; strict base64 (validate=True) so stray characters are refused; the type comes from the decoded bytes.
        raise NotImplementedError('TODO [endpoints]: JSON {"image_b64": str}; strict base64 (validate=True) so stray characters are refused; the type comes from the decoded bytes.')

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        # TODO [endpoints]: Ready only while the session is loaded AND the batcher accepts work; otherwise 503 so a load balancer stops sending.
        raise NotImplementedError('TODO [endpoints]: Ready only while the session is loaded AND the batcher accepts work; otherwise 503 so a load balancer stops sending.')

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class RunningServer(_LoopbackServer):
    """labkit's loopback uvicorn server with this service's settings: 10 s of grace for in-flight requests."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, grace_s: float = 10.0):
        super().__init__(app, host, port, grace_s=grace_s, backlog=256)


# ---------------------------------------------------------------------------------------------- demo

def png_bytes(gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", gray)
    return buf.tobytes()


async def fire(url: str, images: list[np.ndarray], clients: int = 64) -> list[dict]:
    """`clients` concurrent httpx clients, each uploading its share of `images` one after another."""
    import httpx

    results: list[dict | None] = [None] * len(images)

    async def client_loop(client, k):
        for i in range(k, len(images), clients):
            t = time.perf_counter()
            r = await client.post(f"{url}/predict", files={"file": ("digit.png", png_bytes(images[i]), "image/png")})
            results[i] = {"status": r.status_code, "body": r.json(), "seconds": time.perf_counter() - t}

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, k) for k in range(clients)))
    return results


def serve_and_measure(session, images, *, max_batch: int, max_wait_ms: float, clients: int) -> dict:
    app = build_app(session, max_batch=max_batch, max_wait_ms=max_wait_ms)
    with RunningServer(app) as server:
        asyncio.run(fire(server.url, images[:clients], clients))      # warm-up
        start = time.perf_counter()
        results = asyncio.run(fire(server.url, images, clients))
        wall = time.perf_counter() - start
        registry = app.state.metrics.registry
        calls = registry.get_sample_value("inference_batch_size_count")
        mean_batch = registry.get_sample_value("inference_batch_size_sum") / max(calls, 1)
    seconds = np.array([r["seconds"] for r in results])
    return {"results": results, "rps": len(images) / wall, "p50_ms": 1e3 * np.percentile(seconds, 50),
            "p99_ms": 1e3 * np.percentile(seconds, 99), "mean_batch": mean_batch}


def self_check(session) -> None:
    """Run every piece once, in this thread, before serving: an unfinished TODO stops the demo here by name."""
    digit = np.zeros((28, 28), np.uint8)
    x = preprocess(validate_image(png_bytes(digit), "image/png"))

    async def once():
        batcher = MicroBatcher(lambda b: run_session(session, b), max_batch=2, max_wait_ms=1)
        await batcher.start()
        await batcher.submit(x)
        await batcher.stop()
    asyncio.run(once())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    session = load_session(model_file())
    self_check(session)
    images, labels = onnx_lab.digit_splits()["test"]
    reps = -(-args.requests // len(images))
    images, labels = np.concatenate([images] * reps)[:args.requests], np.concatenate([labels] * reps)[:args.requests]
    print(f"serving {model_file()} with ORT; {args.requests} PNG uploads from {args.clients} concurrent clients")
    run = serve_and_measure(session, list(images), max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                            clients=args.clients)
    ok = [r for r in run["results"] if r["status"] == 200]
    correct = sum(r["body"]["label"] == int(y) for r, y in zip(run["results"], labels))
    print(f"200s: {len(ok)}/{args.requests}, accuracy {correct / args.requests:.3f}, {run['rps']:.0f} req/s, "
          f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, mean batch {run['mean_batch']:.1f}")
    print("bad input is refused with a reason:")
    for name, data, kind in [("text file", b"hello", "text/plain"), ("corrupt PNG", b"\x89PNG\r\n\x1a\nxx", "image/png"),
                             ("4x4 PNG", png_bytes(np.zeros((4, 4), np.uint8)), "image/png")]:
        try:
            validate_image(data, kind)
        except ImageError as exc:
            print(f"  {name:>12}: {exc.status} {exc}")


if __name__ == "__main__":
    labkit.run(main)
