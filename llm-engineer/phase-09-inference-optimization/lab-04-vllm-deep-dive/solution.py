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
    # BEGIN SOLUTION [percentile] Check q and emptiness; sort; rank = q/100*(n-1); interpolate between its neighbours.
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must lie in [0, 100], got {q}")
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of no values: the run has no completed request to measure")
    rank = q / 100 * (len(xs) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (rank - low) * (xs[high] - xs[low])
    # END SOLUTION


def request_metrics(record: RequestRecord) -> RequestMetrics:
    """Latencies of one completed request.

    TTFT = first text chunk - sent (queueing + prefill + the first decode step);
    E2E  = done - sent;
    TPOT = (E2E - TTFT) / (output_tokens - 1): the decode time per token after the first, averaged;
    ITL  = the gaps between consecutive chunk arrivals (one chunk may carry several tokens, so ITL != TPOT).
    """
    # BEGIN SOLUTION [request-metrics] Refuse failed/empty records; TTFT from `sent`; TPOT over tokens after the first.
    if record.error is not None or not record.chunk_times:
        raise ValueError(f"request has no latency to measure (error: {record.error or 'no text arrived'}); "
                         "leave failed requests out")
    ttft = record.chunk_times[0] - record.sent
    e2e = record.done - record.sent
    tpot = (e2e - ttft) / (record.output_tokens - 1) if record.output_tokens > 1 else None
    itls = tuple(b - a for a, b in zip(record.chunk_times, record.chunk_times[1:]))
    return RequestMetrics(ttft=ttft, e2e=e2e, tpot=tpot, itls=itls, output_tokens=record.output_tokens)
    # END SOLUTION


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
    # BEGIN SOLUTION [summarize] Split completed from failed; throughputs over wall `duration`; pool all ITL gaps.
    if duration <= 0:
        raise ValueError(f"duration must be positive seconds, got {duration}")
    completed = [r for r in records if r.error is None and r.chunk_times]
    metrics = [request_metrics(r) for r in completed]
    output_tokens = sum(m.output_tokens for m in metrics)
    return Summary(
        completed=len(completed), failed=len(records) - len(completed), duration=duration,
        output_tokens=output_tokens,
        request_throughput=len(completed) / duration, output_throughput=output_tokens / duration,
        ttft=latency_stats(m.ttft for m in metrics),
        tpot=latency_stats(m.tpot for m in metrics if m.tpot is not None),
        itl=latency_stats(gap for m in metrics for gap in m.itls),
        e2e=latency_stats(m.e2e for m in metrics))
    # END SOLUTION


# ---------------------------------------------------------------- workload

def arrival_times(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """Send offsets (s, from the start of the run) of n requests arriving as a Poisson process at `rate` req/s.

    A Poisson process has independent exponential gaps with mean 1/rate. The first request goes at 0;
    rate = inf sends everything at once (the "max throughput" point of a sweep). Same seed, same times.
    """
    # BEGIN SOLUTION [poisson-arrivals] Validate; inf -> zeros; else 0 then the running sum of seeded Exp(mean 1/rate) gaps.
    if n < 0 or not rate > 0:
        raise ValueError(f"need n >= 0 requests and a rate > 0 req/s (inf for all at once), got n={n}, rate={rate}")
    if math.isinf(rate) or n == 0:
        return np.zeros(n)
    gaps = np.random.default_rng(seed).exponential(scale=1.0 / rate, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])
    # END SOLUTION


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
    # BEGIN SOLUTION [workload] One seeded generator for the whole workload; draw the prefix once, then each suffix.
    if n < 0 or prompt_words < 1 or max_tokens < 1 or shared_prefix_words < 0:
        raise ValueError("need n >= 0, prompt_words >= 1, max_tokens >= 1 and shared_prefix_words >= 0")
    rng = np.random.default_rng(seed)
    prefix = [WORDS[i] for i in rng.integers(0, len(WORDS), shared_prefix_words)]
    requests = []
    for _ in range(n):
        own = [WORDS[i] for i in rng.integers(0, len(WORDS), prompt_words)]
        requests.append(Request(prompt=" ".join(prefix + own), max_tokens=max_tokens))
    return requests
    # END SOLUTION


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
    # BEGIN SOLUTION [stream-request] Stamp `sent` first; non-200 -> error; parse `data:` lines until [DONE]; time text chunks only.
    record = RequestRecord(sent=time.perf_counter())
    try:
        async with client.stream("POST", f"{base_url}/v1/completions", json=payload) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                record.error = f"HTTP {response.status_code}: {body[:200]}"
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue                              # blank separators and ": keep-alive" comments
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        record.error = f"server error mid-stream: {chunk['error']}"
                        break
                    text = "".join(choice.get("text") or "" for choice in chunk.get("choices") or [])
                    if text:
                        record.chunk_times.append(time.perf_counter())
                        record.text += text
                    usage = chunk.get("usage")
                    if usage:
                        record.output_tokens = usage.get("completion_tokens", 0)
                        record.prompt_tokens = usage.get("prompt_tokens", 0)
    except (httpx.HTTPError, json.JSONDecodeError) as err:
        record.error = f"{type(err).__name__}: {err}"
    record.done = time.perf_counter()
    if not record.output_tokens:
        record.output_tokens = len(record.chunk_times)
    return record
    # END SOLUTION


async def run_benchmark(base_url: str, model: str, workload: list[Request], rate: float = math.inf,
                        max_concurrency: int | None = None, seed: int = 0, timeout: float = 120.0,
                        extra: dict | None = None) -> tuple[list[RequestRecord], float]:
    """Send `workload` at Poisson arrival times (`rate` req/s), at most `max_concurrency` requests in flight.

    Returns the records in workload order (not completion order) and the run's wall time, from the start to the
    end of the last response. A request waits for its arrival time first, then for a free slot.
    """
    # BEGIN SOLUTION [run-benchmark] One AsyncClient; per request: sleep to its offset, then `async with` a semaphore; gather.
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 (or None for no limit), got {max_concurrency}")
    offsets = arrival_times(len(workload), rate, seed)
    slots = asyncio.Semaphore(max_concurrency or max(len(workload), 1))
    unpooled = httpx.Limits(max_connections=None, max_keepalive_connections=None)   # the semaphore is the limit
    async with httpx.AsyncClient(timeout=timeout, limits=unpooled) as client:
        start = time.perf_counter()

        async def one(request: Request, offset: float) -> RequestRecord:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            async with slots:
                return await stream_completion(client, base_url, model, request, extra)

        records = await asyncio.gather(*(one(r, float(o)) for r, o in zip(workload, offsets)))
        duration = time.perf_counter() - start
    return list(records), duration
    # END SOLUTION


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
    # BEGIN SOLUTION [engine-args] python -m vllm.entrypoints.openai.api_server, --host 127.0.0.1, and one flag per argument.
    argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port),
            "--dtype", dtype, "--max-model-len", str(max_model_len), "--seed", str(seed),
            "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching"]
    if block_size is not None:
        argv += ["--block-size", str(block_size)]
    if max_num_seqs is not None:
        argv += ["--max-num-seqs", str(max_num_seqs)]
    if enforce_eager:
        argv.append("--enforce-eager")
    return argv
    # END SOLUTION


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
        # BEGIN SOLUTION [server-process] Popen in a new session; poll health until 200; early exit or deadline -> stop() and ServerFailed.
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise ServerFailed(f"server exited with code {code} before it was ready; the end of "
                                   f"{self.log_path}:\n{log_tail(self.log_path)}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return self
            except httpx.HTTPError:
                pass                                    # not listening yet
            if time.monotonic() - started > self.startup_timeout:
                self.stop()
                raise ServerFailed(f"server not healthy after {self.startup_timeout:.0f} s; stopped it. The end of "
                                   f"{self.log_path}:\n{log_tail(self.log_path)}")
            time.sleep(0.25)
        # END SOLUTION

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after `grace` seconds; safe to call twice."""
        # BEGIN SOLUTION [server-process] killpg(SIGTERM); wait up to grace; then killpg(SIGKILL) for any straggler; reap.
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)   # the group id is the leader's pid (new session)
        except ProcessLookupError:
            pass                                          # the whole group is gone already
        try:
            self.process.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)   # whatever is left: a stuck leader, orphaned children
        except ProcessLookupError:
            pass
        self.process.wait(timeout=self.grace)
        # END SOLUTION

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
