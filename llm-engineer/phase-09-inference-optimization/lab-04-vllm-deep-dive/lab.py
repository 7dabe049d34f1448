"""Lab 04: vLLM for real, measured by a benchmark client you write yourself.

vLLM runs in its own environment (`make setup-vllm` builds .venv-vllm; it pins its own torch and transformers),
as a real OpenAI-compatible server process on 127.0.0.1. Everything in this file runs in the main environment
and talks to servers over HTTP only, so the same client measures vLLM, a plain transformers `generate()` server
and lab 03's continuous-batching server on the same seeded workload.

Tasks, in order:
1. `percentile`: linear interpolation between order statistics (what numpy does by default).
2. `request-metrics`: TTFT, TPOT, inter-token latencies and end-to-end latency of one streamed request.
3. `summarize`: a run's throughput and p50/p90/p99 of each latency.
4. `poisson-arrivals`: seeded send times of a Poisson process at a given request rate.
5. `workload`: a fixed, seeded set of prompts, optionally sharing a prefix (for prefix caching).
6. `stream-request`: one streamed `/v1/completions` call with httpx, timing every chunk.
7. `run-benchmark`: send a workload at its arrival times, at most `max_concurrency` in flight.
8. `engine-args`: the `vllm serve` command line for a set of engine arguments.
9. `server-process`: start a server as its own process group, wait until healthy, always stop the whole group.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

import labkit
from labkit import assets

LAB = "llm-engineer/phase-09-inference-optimization/lab-04-vllm-deep-dive"
VLLM_PYTHON = labkit.ROOT / ".venv-vllm" / "bin" / "python"   # built by `make setup-vllm`
PERCENTILES = (50, 90, 99)


class ServerFailed(RuntimeError):
    """A server process that exited, or never answered its health check, before it was ready."""


@dataclass(frozen=True)
class Request:
    prompt: str
    max_tokens: int


@dataclass
class RequestRecord:
    """What the client saw of one streamed request. Times are time.perf_counter() seconds."""
    sent: float                                          # just before the request left the client
    chunk_times: list[float] = field(default_factory=list)   # arrival of each chunk that carried new text
    text: str = ""
    output_tokens: int = 0      # the server's usage count when it sends one, else the number of text chunks
    prompt_tokens: int = 0
    done: float = 0.0           # when the stream ended
    error: str | None = None    # set when the request failed; failed requests count in no latency


@dataclass(frozen=True)
class RequestMetrics:
    ttft: float                 # time to first token (s)
    e2e: float                  # end-to-end latency (s)
    tpot: float | None          # time per output token after the first (s); None for a single token
    itls: tuple[float, ...]     # gaps between consecutive chunks (s)
    output_tokens: int


@dataclass(frozen=True)
class Summary:
    completed: int
    failed: int
    duration: float             # wall time from the first send to the last response (s)
    output_tokens: int
    request_throughput: float   # completed requests / duration
    output_throughput: float    # output tokens of completed requests / duration
    ttft: dict                  # {"mean": s, "p50": s, "p90": s, "p99": s}
    tpot: dict
    itl: dict
    e2e: dict


# ---------------------------------------------------------------- statistics

def percentile(values, q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `values`, interpolating linearly between order statistics.

    Sorted x_0 <= ... <= x_{n-1}; rank r = q/100 * (n - 1); result = x_floor(r) + (r - floor(r)) * (x_ceil(r) - x_floor(r)).
    """
    # TODO [percentile]: Check q and emptiness; sort; rank = q/100*(n-1); interpolate between its neighbours.
    raise NotImplementedError('TODO [percentile]: Check q and emptiness; sort; rank = q/100*(n-1); interpolate between its neighbours.')


def request_metrics(record: RequestRecord) -> RequestMetrics:
    """Latencies of one completed request.

    TTFT = first text chunk - sent (queueing + prefill + the first decode step);
    E2E  = done - sent;
    TPOT = (E2E - TTFT) / (output_tokens - 1): the decode time per token after the first, averaged;
    ITL  = the gaps between consecutive chunk arrivals (one chunk may carry several tokens, so ITL != TPOT).
    """
    # TODO [request-metrics]: Refuse failed/empty records; TTFT from `sent`; TPOT over tokens after the first.
    raise NotImplementedError('TODO [request-metrics]: Refuse failed/empty records; TTFT from `sent`; TPOT over tokens after the first.')


def latency_stats(values) -> dict:
    """{"mean", "p50", "p90", "p99"} of `values` in seconds; NaN everywhere when there are none."""
    values = list(values)
    if not values:
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    return {"mean": sum(values) / len(values), **{f"p{q}": percentile(values, q) for q in PERCENTILES}}


def summarize(records: list[RequestRecord], duration: float) -> Summary:
    """A benchmark run in numbers: throughputs over the run's wall time, latency percentiles over completed requests.

    ITL percentiles pool every gap of every request (a slow stream's many gaps weigh more than a fast one's mean).
    """
    # TODO [summarize]: Split completed from failed; throughputs over wall `duration`; pool all ITL gaps.
    raise NotImplementedError('TODO [summarize]: Split completed from failed; throughputs over wall `duration`; pool all ITL gaps.')


# ---------------------------------------------------------------- workload

def arrival_times(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """Send offsets (s, from the start of the run) of n requests arriving as a Poisson process at `rate` req/s.

    A Poisson process has independent exponential gaps with mean 1/rate. The first request goes at 0;
    rate = inf sends everything at once (the "max throughput" point of a sweep). Same seed, same times.
    """
    # TODO [poisson-arrivals]: Validate; inf -> zeros; else 0 then the running sum of seeded Exp(mean 1/rate) gaps.
    raise NotImplementedError('TODO [poisson-arrivals]: Validate; inf -> zeros; else 0 then the running sum of seeded Exp(mean 1/rate) gaps.')


WORDS = ("time river light stone market garden window letter winter morning silver number question answer "
         "engine signal memory kernel paper bridge harbor forest planet mirror candle shadow thunder meadow "
         "lantern valley castle ribbon anchor compass feather marble orchard pepper saddle timber velvet "
         "walnut yellow zebra basket cotton dragon empire falcon ginger hammer island jacket ladder magnet").split()


def make_workload(n: int, prompt_words: int, max_tokens: int, shared_prefix_words: int = 0,
                  seed: int = 0) -> list[Request]:
    """n prompts of random words from WORDS, the same for the same seed.

    With shared_prefix_words > 0 every prompt starts with one common run of that many words (a system prompt, the
    case prefix caching speeds up), followed by prompt_words words of its own.
    """
    # TODO [workload]: One seeded generator for the whole workload; draw the prefix once, then each suffix.
    raise NotImplementedError('TODO [workload]: One seeded generator for the whole workload; draw the prefix once, then each suffix.')


# ---------------------------------------------------------------- the client

async def stream_completion(client: httpx.AsyncClient, base_url: str, model: str, request: Request,
                            extra: dict | None = None) -> RequestRecord:
    """POST one streamed, greedy `/v1/completions` request and time every chunk of its SSE stream.

    Frames look like `data: {json}` separated by blank lines, and the stream ends with `data: [DONE]`. Chunks with
    no text (a role or usage-only chunk) are not tokens and must not start the TTFT clock. The final usage block
    (asked for with stream_options.include_usage) gives the token count. A failed request becomes a record with
    `error` set, never an exception, so one bad request cannot stop a benchmark.
    """
    payload = {"model": model, "prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": 0.0,
               "stream": True, "stream_options": {"include_usage": True}, **(extra or {})}
    # TODO [stream-request]: Stamp `sent` first; non-200 -> error; parse `data:` lines until [DONE]; time text chunks only.
    raise NotImplementedError('TODO [stream-request]: Stamp `sent` first; non-200 -> error; parse `data:` lines until [DONE]; time text chunks only.')


async def run_benchmark(base_url: str, model: str, workload: list[Request], rate: float = math.inf,
                        max_concurrency: int | None = None, seed: int = 0, timeout: float = 120.0,
                        extra: dict | None = None) -> tuple[list[RequestRecord], float]:
    """Send `workload` at Poisson arrival times (`rate` req/s), at most `max_concurrency` requests in flight.

    Returns the records in workload order (not completion order) and the run's wall time, from the start to the
    end of the last response. A request waits for its arrival time first, then for a free slot.
    """
    # TODO [run-benchmark]: One AsyncClient; per request: sleep to its offset, then `async with` a semaphore; gather.
    raise NotImplementedError('TODO [run-benchmark]: One AsyncClient; per request: sleep to its offset, then `async with` a semaphore; gather.')


def benchmark(base_url: str, model: str, workload: list[Request], rate: float = math.inf,
              max_concurrency: int | None = None, seed: int = 0, extra: dict | None = None,
              timeout: float = 900.0) -> Summary:
    """run_benchmark from synchronous code, summarized. A serial server queues requests silently, so the
    per-request timeout (seconds without a byte) must cover the whole queue ahead of a request."""
    records, duration = asyncio.run(run_benchmark(base_url, model, workload, rate, max_concurrency, seed,
                                                  timeout, extra))
    return summarize(records, duration)


def sweep(base_url: str, model: str, workload: list[Request], rates, max_concurrency: int | None = None,
          seed: int = 0, extra: dict | None = None) -> list[tuple[float, Summary]]:
    """The same workload at each request rate in turn: where latency starts to climb is the server's capacity."""
    return [(rate, benchmark(base_url, model, workload, rate, max_concurrency, seed, extra)) for rate in rates]


# ---------------------------------------------------------------- servers as processes

def vllm_command(model: str, port: int, *, python: str | Path = VLLM_PYTHON, served_name: str = "model",
                 dtype: str = "float32", max_model_len: int = 512, block_size: int | None = None,
                 prefix_caching: bool = True, max_num_seqs: int | None = None, enforce_eager: bool = True,
                 seed: int = 0) -> list[str]:
    """argv that starts vLLM's OpenAI-compatible server on 127.0.0.1:port with these engine arguments.

    Loopback only (a benchmark server has no business on a public interface). vLLM's V1 engine turns prefix
    caching ON by default, so "off" must be said explicitly (--no-enable-prefix-caching). block_size is the
    number of tokens per KV-cache block (PagedAttention's page); None keeps the backend's default.
    enforce_eager skips graph capture and compilation: minutes saved at start-up on a CPU, some speed lost.
    """
    # TODO [engine-args]: python -m vllm.entrypoints.openai.api_server, --host 127.0.0.1, and one flag per argument.
    raise NotImplementedError('TODO [engine-args]: python -m vllm.entrypoints.openai.api_server, --host 127.0.0.1, and one flag per argument.')


def vllm_env(kv_cache_gib: int = 1) -> dict:
    """Environment for a CPU vLLM server: a small KV-cache pool, no usage reporting, Hugging Face offline."""
    env = dict(os.environ)
    env.update({"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
                "VLLM_LOGGING_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONPATH", None)         # the vLLM env must not pick up the main env's packages
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server's log, after the first line that names an error (the root cause is usually
    far above the end of a traceback)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if "Error:" in line]
    return "\n".join(([f"first error: {errors[0].strip()}", "..."] if errors else []) + text[-lines:])


class ServerProcess:
    """A server started as the leader of its own process group (vLLM forks an engine-core process, so stopping
    only the leader would orphan it). `with ServerProcess(...) as server:` waits for `GET health_path` to answer
    200 and always stops the whole group on the way out, even when starting failed."""

    def __init__(self, argv: list[str], port: int, log_path: Path, *, env: dict | None = None,
                 health_path: str = "/health", startup_timeout: float = 300.0, grace: float = 10.0):
        self.argv, self.port, self.log_path, self.env = list(argv), port, Path(log_path), env
        self.health_path, self.startup_timeout, self.grace = health_path, startup_timeout, grace
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.startup_seconds = math.nan

    def start(self) -> "ServerProcess":
        # TODO [server-process]: Popen in a new session; poll health until 200; early exit or deadline -> stop() and ServerFailed.
        raise NotImplementedError('TODO [server-process]: Popen in a new session; poll health until 200; early exit or deadline -> stop() and ServerFailed.')

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after `grace` seconds; safe to call twice."""
        # TODO [server-process]: killpg(SIGTERM); wait up to grace; then killpg(SIGKILL) for any straggler; reap.
        raise NotImplementedError('TODO [server-process]: killpg(SIGTERM); wait up to grace; then killpg(SIGKILL) for any straggler; reap.')

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def vllm_available() -> str | None:
    """None when .venv-vllm has vllm installed, else one line saying why not and what to do."""
    if not VLLM_PYTHON.exists():
        return f"{VLLM_PYTHON.parent.parent.name} is missing: run `make setup-vllm` (about 3.5 GB, 2-5 min)"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    if subprocess.run([str(VLLM_PYTHON), "-c", probe], env=vllm_env(), timeout=60).returncode != 0:
        return ".venv-vllm has no vllm package: rebuild it with `make setup-vllm`"
    return None


def counter_total(base_url: str, name: str) -> float:
    """Sum of a Prometheus counter (all label sets) from a server's /metrics, e.g. vllm:prefix_cache_hits."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) if family.name == name
               for sample in family.samples if sample.name == f"{name}_total")


# ---------------------------------------------------------------- the plain generate() baseline

class _TokenQueue:
    """A transformers streamer that hands each new token id to an asyncio queue (generate runs on a thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue, self.prompt_seen = loop, queue, False

    def put(self, value) -> None:
        if not self.prompt_seen:                        # generate's first call passes the prompt: skip it
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, token)

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


def generate_app(model, tokenizer, name: str = "model"):
    """An OpenAI-style `/v1/completions` server around plain `model.generate()`: one request at a time (a lock),
    which is how a naive deployment behaves. It streams each token as it is generated (greedy only)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    lock = asyncio.Lock()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(body: dict):
        prompt, max_tokens = body.get("prompt"), body.get("max_tokens", 16)
        if body.get("model", name) != name:
            return JSONResponse({"error": f"unknown model {body.get('model')!r}; this server has {name!r}"}, 404)
        if not isinstance(prompt, str) or not isinstance(max_tokens, int) or max_tokens < 1:
            return JSONResponse({"error": "need a string prompt and an integer max_tokens >= 1"}, 400)
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        ignore_eos = bool(body.get("ignore_eos", False))

        async def events():
            async with lock:
                loop, queue = asyncio.get_running_loop(), asyncio.Queue()
                kwargs = dict(max_new_tokens=max_tokens, do_sample=False, streamer=_TokenQueue(loop, queue),
                              pad_token_id=tokenizer.eos_token_id)
                if ignore_eos:
                    kwargs["min_new_tokens"] = max_tokens
                worker = threading.Thread(target=model.generate, args=(ids,), kwargs=kwargs, daemon=True)
                worker.start()
                tokens, text = [], ""
                while (token := await queue.get()) is not None:
                    tokens.append(token)
                    full = tokenizer.decode(tokens, skip_special_tokens=True)
                    piece, text = full[len(text):], full
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'text': piece}]})}\n\n"
                worker.join()
            usage = {"prompt_tokens": ids.shape[1], "completion_tokens": len(tokens)}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class ThreadServer:
    """uvicorn serving an ASGI app on a thread, on a loopback socket bound up front (so the port is known)."""

    def __init__(self, app):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServerFailed("uvicorn did not start on its thread; see the log above")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


# ---------------------------------------------------------------- the demo

def format_row(name: str, summary: Summary) -> str:
    ms = lambda d, k: f"{1e3 * d[k]:8.1f}"                                      # noqa: E731
    return (f"{name:<22} {summary.completed:>3}/{summary.completed + summary.failed:<3} "
            f"{summary.output_throughput:8.1f} {ms(summary.ttft, 'p50')} {ms(summary.ttft, 'p99')} "
            f"{ms(summary.tpot, 'p50')} {ms(summary.itl, 'p50')} {ms(summary.itl, 'p99')}")


HEADER = (f"{'server':<22} {'ok':>7} {'tok/s':>8} {'TTFT p50':>8} {'TTFT p99':>8} {'TPOT p50':>8} "
          f"{'ITL p50':>8} {'ITL p99':>8}   (ms)")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark plain generate() and vLLM on one seeded workload.")
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--prompt-words", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--rates", type=float, nargs="+", default=[2.0, math.inf])
    parser.add_argument("--no-vllm", action="store_true", help="only the generate() baseline")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))       # so `with` blocks stop the servers they started
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from tqdm import tqdm

    out = labkit.output_dir(__file__)
    labkit.seed_everything(0)
    model_dir = assets.smollm2_path()
    model, tokenizer = assets.smollm2()
    workload = make_workload(args.requests, args.prompt_words, args.max_tokens, seed=0)
    print(f"model: SmolLM2-135M-Instruct (float32); workload: {args.requests} requests x {args.prompt_words} words "
          f"-> {args.max_tokens} tokens (ignore_eos), rates {args.rates} req/s")
    results: dict[str, list[tuple[float, Summary]]] = {}
    extra = {"ignore_eos": True}
    torch.set_num_threads(1)      # the in-process baseline: one thread is steadier (and faster) on a shared CPU
    with torch.inference_mode(), ThreadServer(generate_app(model, tokenizer)) as server:
        benchmark(server.url, "model", workload[:2], extra=extra)                        # warm-up
        results["generate()"] = [(r, benchmark(server.url, "model", workload, r, extra=extra))
                                 for r in tqdm(args.rates, desc="generate() sweep")]
    why_not = "skipped (--no-vllm)" if args.no_vllm else vllm_available()
    if why_not is None:
        port = free_port()
        argv = vllm_command(str(model_dir), port, block_size=32, prefix_caching=True)   # CPU: a multiple of 32
        with ServerProcess(argv, port, out / "vllm-server.log", env=vllm_env()) as server:
            print(f"vLLM server ready in {server.startup_seconds:.0f} s (log: {server.log_path})")
            benchmark(server.url, "model", workload[:2], extra=extra)
            results["vLLM (vllm-cpu)"] = [(r, benchmark(server.url, "model", workload, r, extra=extra))
                                          for r in tqdm(args.rates, desc="vLLM sweep")]
    else:
        print(f"vLLM: {why_not}")
    print(HEADER)
    for name, rows in results.items():
        for rate, summary in rows:
            print(format_row(f"{name} @ {rate:g}/s", summary))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    top = 2 * max([r for r in args.rates if math.isfinite(r)] or [1.0])      # where "all at once" is drawn
    for name, rows in results.items():
        xs = [min(rate, top) for rate, _ in rows]
        left.plot(xs, [s.output_throughput for _, s in rows], "o-", label=name)
        right.plot(xs, [1e3 * s.ttft["p99"] for _, s in rows], "o-", label=name)
    left.set(xlabel="request rate (req/s; rightmost = all at once)", ylabel="output tok/s", title="throughput")
    right.set(xlabel="request rate (req/s; rightmost = all at once)", ylabel="TTFT p99 (ms, log scale)",
              title="tail latency", yscale="log")
    left.legend()
    fig.tight_layout()
    fig.savefig(out / "rate_sweep.png", dpi=120)
    print(f"plot: {(out / 'rate_sweep.png').relative_to(labkit.ROOT)}")


if __name__ == "__main__":
    labkit.run(main)
