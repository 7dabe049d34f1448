"""Observability for an LLM server: traces, token-level metrics, JSON logs, drift and a canary eval.

Classical APM watches request rate, errors and latency. An LLM service needs more: the time to the first token
(what a chat user feels), the time between tokens (how fast the text streams), how long requests wait for a
batch slot, how full the KV cache is, how many tokens go in and out, whether today's prompts still look like the
ones the model was tested on, and whether the model still answers a fixed canary set as it did on release day.

The server is phase 9 lab 03's continuous-batching engine, imported as it is (`labkit.reuse`); this lab wraps it:

1. `create_metrics` / `observe_request`: Prometheus histograms (TTFT, inter-token latency, queue time, end to
   end), counters (requests, errors, tokens) and gauges (queue depth, running batch, KV-cache use).
2. `record_stage_spans` / `close_request_span`: an OpenTelemetry span per request with one child per stage
   (queue -> prefill -> decode) carrying token counts; errors end the span with an ERROR status.
3. `request_id_from` / `JsonLogFormatter`: one JSON object per log line, each carrying the request id that the
   response's X-Request-ID header returns.
4. `promql_metric_names`: the metric names a PromQL expression reads, to check that every alert rule and
   dashboard panel points at a series the service really exports.
5. `psi` / `ks_statistic` / `drift_report`: a reference window of prompt length, response length and refusal
   rate against a live window; alert when the population stability index or the KS test says they differ.
6. `canary_score` / `canary_regressed`: a fixed prompt set with the answers the released model gave; swap in a
   worse model and the alert fires.

The HTTP app, the middleware that sets the request id, the alert rules (alerts.yml) and the Grafana dashboard
(grafana-dashboard.json) are written for you.
"""
from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import logging
import math
import re
import secrets
import sys
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from fastapi import Request as HttpRequest   # module level: FastAPI resolves route annotations by name
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import labkit

server = labkit.reuse("lab-03-continuous-batching-server")   # Engine, AsyncEngine, validate_request, RunningServer
kvlab = server.kvlab                                          # phase 9 lab 01's GPT and KV cache

HERE = Path(__file__).resolve().parent
ALERT_RULES = HERE / "alerts.yml"
DASHBOARD = HERE / "grafana-dashboard.json"

# perf_counter (monotonic, what the engine stamps) -> Unix nanoseconds (what OpenTelemetry wants)
_EPOCH_MINUS_PERF_NS = time.time_ns() - time.perf_counter_ns()


def unix_ns(perf_seconds: float) -> int:
    return _EPOCH_MINUS_PERF_NS + int(perf_seconds * 1e9)


# ---------------------------------------------------------------------------------------------- 1. metrics

def create_metrics() -> dict:
    """A fresh CollectorRegistry with the service's series, returned as {"registry": ..., name: metric}.

    Keys and Prometheus names (prometheus_client adds `_total` to counters and `_bucket/_sum/_count` to
    histograms in the exposition):
      requests          Counter   llm_requests{outcome}            one per request, outcome = finish reason or error
      errors            Counter   llm_errors{reason, status}       one per failed request, status = HTTP code
      prompt_tokens     Counter   llm_prompt_tokens                tokens read
      generated_tokens  Counter   llm_generated_tokens             tokens sampled (EOS included)
      ttft              Histogram llm_time_to_first_token_seconds  arrival -> first sampled token
      inter_token       Histogram llm_inter_token_latency_seconds  gap between consecutive tokens of a request
      queue_time        Histogram llm_queue_time_seconds           arrival -> admitted to the running batch
      e2e               Histogram llm_request_duration_seconds     arrival -> last token
      queue_depth       Gauge     llm_queue_depth                  requests waiting for a slot
      running           Gauge     llm_running_requests             requests in the running batch
      kv_utilization    Gauge     llm_kv_cache_utilization_ratio   reserved KV positions / capacity (0..1)
    Prometheus' base unit of time is the second: every time histogram takes seconds, with buckets that cover
    a few milliseconds (one token) to a minute (a long answer behind a queue).
    """
    registry = CollectorRegistry()
    # BEGIN SOLUTION [metrics] One registry; counters for counts, gauges for levels, histograms with buckets in seconds (ms to a minute).
    latency = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
    token_gap = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
    return {
        "registry": registry,
        "requests": Counter("llm_requests", "Requests by outcome", ["outcome"], registry=registry),
        "errors": Counter("llm_errors", "Failed requests by reason and HTTP status", ["reason", "status"],
                          registry=registry),
        "prompt_tokens": Counter("llm_prompt_tokens", "Prompt tokens read", registry=registry),
        "generated_tokens": Counter("llm_generated_tokens", "Tokens sampled", registry=registry),
        "ttft": Histogram("llm_time_to_first_token_seconds", "Arrival to first sampled token",
                          buckets=latency, registry=registry),
        "inter_token": Histogram("llm_inter_token_latency_seconds", "Gap between consecutive tokens",
                                 buckets=token_gap, registry=registry),
        "queue_time": Histogram("llm_queue_time_seconds", "Arrival to admission into the batch",
                                buckets=latency, registry=registry),
        "e2e": Histogram("llm_request_duration_seconds", "Arrival to last token", buckets=latency,
                         registry=registry),
        "queue_depth": Gauge("llm_queue_depth", "Requests waiting for a slot", registry=registry),
        "running": Gauge("llm_running_requests", "Requests in the running batch", registry=registry),
        "kv_utilization": Gauge("llm_kv_cache_utilization_ratio", "Reserved KV positions over capacity",
                                registry=registry),
    }
    # END SOLUTION


def observe_request(metrics: dict, req, outcome: str) -> None:
    """Record one finished request from the engine's timestamps (perf_counter seconds):
    req.arrival, req.admitted_at (None if it never left the queue), req.first_token_at, req.token_times
    (one per sampled token), len(req.prompt_ids). Counts the request under `outcome`, its tokens, and observes
    TTFT = first token - arrival, each gap between consecutive tokens, queue time and end-to-end time."""
    # BEGIN SOLUTION [metrics] TTFT ends at the FIRST token; inter-token gaps are between consecutive tokens only (n tokens -> n-1 gaps).
    metrics["requests"].labels(outcome=outcome).inc()
    metrics["prompt_tokens"].inc(len(req.prompt_ids))
    metrics["generated_tokens"].inc(len(req.token_times))
    if req.admitted_at is not None:
        metrics["queue_time"].observe(req.admitted_at - req.arrival)
    if req.first_token_at is not None:
        metrics["ttft"].observe(req.first_token_at - req.arrival)
        metrics["e2e"].observe(req.token_times[-1] - req.arrival)
    for earlier, later in zip(req.token_times, req.token_times[1:]):
        metrics["inter_token"].observe(later - earlier)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 2. traces

def record_stage_spans(tracer, parent, req) -> list:
    """Children of the request span `parent`, one per stage, with the engine's timestamps as start/end:
      "queue"   arrival -> admitted_at
      "prefill" admitted_at -> first_token_at           attribute llm.prompt_tokens
      "decode"  first_token_at -> last token time       attribute llm.completion_tokens (tokens after the first)
    A stage that never started (a request aborted in the queue) is left out. Returns the spans, ended."""
    spans = []
    # BEGIN SOLUTION [tracing] Parent each child with trace.set_span_in_context(parent); start_time/end_time in unix ns from the engine's stamps.
    context = trace.set_span_in_context(parent)
    stages = []
    if req.admitted_at is not None:
        stages.append(("queue", req.arrival, req.admitted_at, {}))
        if req.first_token_at is not None:
            stages.append(("prefill", req.admitted_at, req.first_token_at,
                           {"llm.prompt_tokens": len(req.prompt_ids)}))
            stages.append(("decode", req.first_token_at, req.token_times[-1],
                           {"llm.completion_tokens": len(req.token_times) - 1}))
    for name, start, end, attributes in stages:
        span = tracer.start_span(name, context=context, start_time=unix_ns(start), attributes=attributes)
        span.end(end_time=unix_ns(end))
        spans.append(span)
    # END SOLUTION
    return spans


def close_request_span(span, outcome: str, *, prompt_tokens: int = 0, completion_tokens: int = 0,
                       error: str | None = None, end_time: float | None = None) -> None:
    """Finish the request span: attributes llm.outcome, llm.prompt_tokens, llm.completion_tokens; with an
    `error` (a one-line message) the status is ERROR with that description and `error.type` = outcome, else OK.
    The span is ended in every case (at `end_time`, perf_counter seconds, or now): a span that is never ended
    is never exported, so exactly the failed requests would vanish from the traces."""
    # BEGIN SOLUTION [tracing] Set the three attributes, then ERROR (with the message) or OK, then end the span on every path.
    span.set_attribute("llm.outcome", outcome)
    span.set_attribute("llm.prompt_tokens", prompt_tokens)
    span.set_attribute("llm.completion_tokens", completion_tokens)
    if error is not None:
        span.set_attribute("error.type", outcome)
        span.set_status(Status(StatusCode.ERROR, error))
    else:
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=None if end_time is None else unix_ns(end_time))
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 3. logs

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_STANDARD_RECORD_FIELDS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def request_id_from(header: str | None) -> str:
    """The id for this request: the client's X-Request-ID when it is 1-64 characters of [A-Za-z0-9._-] (so a
    caller can follow its own id through our logs), else a fresh random 32-hex-digit id. Anything else (a
    newline, quotes, a 10 kB string) is not echoed into logs and headers."""
    # BEGIN SOLUTION [logging] fullmatch the safe pattern, else uuid4().hex.
    if header is not None and SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex
    # END SOLUTION


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id (from the REQUEST_ID
    context variable that the middleware sets, or None outside a request), every `extra={...}` field of the
    call, and `exception` (the formatted traceback) when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        # BEGIN SOLUTION [logging] Build a dict (request_id from the context variable, extras = fields not in a plain LogRecord), json.dumps on ONE line, default=str.
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))
        # END SOLUTION


def json_logger(name: str, stream=None) -> logging.Logger:
    """A logger that writes JSON lines to `stream` (stderr by default) and nowhere else."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


# ---------------------------------------------------------------------------------------------- 4. PromQL

PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, e.g.
    'histogram_quantile(0.95, sum by (le) (rate(llm_ttft_seconds_bucket{route="/x"}[5m])))' -> {'llm_ttft_seconds_bucket'}.
    Not metric names: function and aggregation names (an identifier followed by '('), keywords
    (PROMQL_KEYWORDS), label names and values inside {...}, label lists after by/without/on/ignoring/
    group_left/group_right, durations in [...] and after offset, numbers (0.95, 1e3) and string literals."""
    # BEGIN SOLUTION [promql] Blank out strings, {...}, [...], label lists after by/on/... and offsets; then keep identifiers not followed by '(' and not keywords.
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', " ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names = set()
    for found in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", text):   # not inside a number like 1e-9
        followed_by_call = re.match(r"\s*\(", text[found.end():])
        if not followed_by_call and found.group().lower() not in PROMQL_KEYWORDS:
            names.add(found.group())
    return names
    # END SOLUTION


SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_series(families) -> set[str]:
    """Every series name a scrape of these parsed metric families may hold (family name + its suffixes)."""
    return {f.name + suffix for f in families for suffix in ("",) + SERIES_SUFFIXES}


def rule_expressions(rules: dict) -> list[tuple[str, str]]:
    """(rule name, expr) for each rule of a Prometheus rules file (parsed YAML)."""
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in rules["groups"] for r in g["rules"]]


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for each Prometheus target of a Grafana dashboard (rows' nested panels included)."""
    found = []
    for panel in dashboard.get("panels", []):
        for inner in [panel] + panel.get("panels", []):
            for target in inner.get("targets", []):
                if "expr" in target:
                    found.append((inner.get("title", ""), target["expr"]))
    return found


# ---------------------------------------------------------------------------------------------- 5. drift

PSI_FLOOR = 1e-4   # a bin proportion below this counts as this, so an empty bin gives a large, finite PSI


def psi(reference, live, bins: int = 10, edges=None) -> float:
    """Population stability index of `live` against `reference`:

        PSI = sum over bins of (live_i - ref_i) * ln(live_i / ref_i)      (proportions, each floored at PSI_FLOOR)

    Bin edges come from the REFERENCE window: its quantiles at 1/bins, 2/bins, ... (duplicates removed), unless
    `edges` are given. The outer bins are open-ended, so a live value beyond the reference's range still counts
    (in the first or last bin); a value v falls in bin k = number of edges <= v. Rules of thumb: < 0.1 stable,
    0.1-0.2 a moderate shift, > 0.2 a significant shift."""
    reference, live = np.asarray(reference, dtype=float), np.asarray(live, dtype=float)
    # BEGIN SOLUTION [drift] Edges from the reference's quantiles; searchsorted(side='right') for bin indices; bincount; floor both proportions; sum (a-e)ln(a/e).
    if edges is None:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.asarray(edges, dtype=float)
    n_bins = len(edges) + 1
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n_bins) / len(reference)
    live_share = np.bincount(np.searchsorted(edges, live, side="right"), minlength=n_bins) / len(live)
    ref_share, live_share = np.maximum(ref_share, PSI_FLOOR), np.maximum(live_share, PSI_FLOOR)
    return float(np.sum((live_share - ref_share) * np.log(live_share / ref_share)))
    # END SOLUTION


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D = max over x of |F_a(x) - F_b(x)|, the largest gap between the
    two empirical CDFs (F(x) = share of values <= x), evaluated at every value of either sample."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    # BEGIN SOLUTION [drift] Evaluate both CDFs at all pooled values with searchsorted(side='right'); take the largest ABSOLUTE gap.
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))
    # END SOLUTION


def ks_pvalue(d: float, n: int, m: int) -> float:
    """The asymptotic p-value of a two-sample KS statistic (Kolmogorov's distribution, as scipy's 'asymp')."""
    from scipy.stats import kstwobign

    return float(kstwobign.sf(d * math.sqrt(n * m / (n + m))))


REFUSAL_PREFIXES = ("i can't", "i cannot", "i'm sorry", "i am sorry", "sorry,", "as an ai")


def is_refusal(text: str) -> bool:
    return text.strip().lower().startswith(REFUSAL_PREFIXES)


FEATURES = ("prompt_tokens", "completion_tokens", "refused")


def drift_report(reference: dict, live: dict, *, psi_threshold: float = 0.2, ks_alpha: float = 0.01) -> dict:
    """Compare two windows, each {feature: list of values} for FEATURES (refused holds 0/1).

    Returns {feature: {"psi", "ks", "pvalue", "drifted"}}. Lengths: PSI on 10 reference-quantile bins and the
    KS test; drifted when PSI > psi_threshold or the KS p-value < ks_alpha. Refusals (0/1): PSI on the two
    categories (edges=[0.5]); drifted when PSI > psi_threshold (ks and pvalue are None: KS is for continuous
    values)."""
    report = {}
    # BEGIN SOLUTION [drift] Per feature: psi (two categories for refused), ks + ks_pvalue for the lengths; drifted is a strict '>' on PSI or '<' on the p-value.
    for feature in FEATURES:
        ref, now = np.asarray(reference[feature], dtype=float), np.asarray(live[feature], dtype=float)
        if feature == "refused":
            score = psi(ref, now, edges=[0.5])
            report[feature] = {"psi": score, "ks": None, "pvalue": None, "drifted": score > psi_threshold}
        else:
            score, d = psi(ref, now), ks_statistic(ref, now)
            p = ks_pvalue(d, len(ref), len(now))
            report[feature] = {"psi": score, "ks": d, "pvalue": p, "drifted": score > psi_threshold or p < ks_alpha}
    # END SOLUTION
    return report


class DriftMonitor:
    """Keeps the last `window` finished requests as the live window and compares it with a fixed reference
    window (traffic from a period known to be good) whenever asked, at each /metrics scrape; exports
    llm_drift_psi{feature} and llm_drift_alert{feature} (1 when drifted). PSI is noisy on small windows (about
    (bins - 1) * (1/n + 1/m) when nothing changed), so keep both windows in the hundreds or more."""

    def __init__(self, reference: dict | None, registry, window: int = 256, min_live: int = 100):
        self.reference, self.min_live = reference, min_live
        self.live = deque(maxlen=window)
        self.psi_gauge = Gauge("llm_drift_psi", "PSI of the live window against the reference", ["feature"],
                               registry=registry)
        self.alert_gauge = Gauge("llm_drift_alert", "1 when the feature drifted", ["feature"], registry=registry)
        self.last = None

    def add(self, prompt_tokens: int, completion_tokens: int, text: str) -> None:
        self.live.append((prompt_tokens, completion_tokens, float(is_refusal(text))))

    def snapshot(self) -> dict:
        """The live window as {feature: values}, e.g. to become the next reference."""
        return dict(zip(FEATURES, map(list, zip(*self.live)))) if self.live else {f: [] for f in FEATURES}

    def update(self) -> dict | None:
        if self.reference is None or len(self.live) < self.min_live:
            return None
        self.last = drift_report(self.reference, self.snapshot())
        for feature, row in self.last.items():
            self.psi_gauge.labels(feature=feature).set(row["psi"])
            self.alert_gauge.labels(feature=feature).set(float(row["drifted"]))
        return self.last


# ---------------------------------------------------------------------------------------------- 6. canary eval

def canary_score(complete, cases: list[tuple[str, str]]) -> float:
    """Share of canary cases (prompt, expected answer) for which complete(prompt) returns exactly the expected
    answer (surrounding whitespace ignored). The expected answers are what the released model said, greedy."""
    # BEGIN SOLUTION [canary] Exact match after strip(), counted over every case, divided by the number of cases.
    if not cases:
        raise ValueError("the canary set is empty; give at least one (prompt, expected) case")
    passed = sum(complete(prompt).strip() == expected.strip() for prompt, expected in cases)
    return passed / len(cases)
    # END SOLUTION


def canary_regressed(baseline: float, score: float, max_drop: float) -> bool:
    """True when the score fell MORE than max_drop below the baseline (a better score never alerts)."""
    # BEGIN SOLUTION [canary] Only a drop counts, and only a drop strictly larger than max_drop.
    return baseline - score > max_drop
    # END SOLUTION


def write_canary_textfile(path: Path, score: float, baseline: float) -> None:
    """The cron job's result for node_exporter's textfile collector: llm_canary_pass_ratio,
    llm_canary_baseline_ratio and llm_canary_last_run_timestamp_seconds (written atomically by prometheus_client)."""
    from prometheus_client import write_to_textfile

    registry = CollectorRegistry()
    Gauge("llm_canary_pass_ratio", "Share of canary prompts answered as on release", registry=registry).set(score)
    Gauge("llm_canary_baseline_ratio", "The canary pass ratio at release", registry=registry).set(baseline)
    Gauge("llm_canary_last_run_timestamp_seconds", "When the canary last ran", registry=registry).set(time.time())
    write_to_textfile(str(path), registry)


# ---------------------------------------------------------------------------------------------- the service

class InstrumentedEngine(server.Engine):
    """Phase 9's engine, unchanged, plus one timestamp it does not keep: when each request left the queue."""

    def step(self):
        started = time.perf_counter()
        waiting = list(self.waiting)
        events = super().step()
        still_waiting = {r.id for r in self.waiting}
        for req in waiting:
            if req.id not in still_waiting and req.finish_reason != "abort":
                req.admitted_at = started                 # admission happens at the start of a step
        return events


class RequestIdMiddleware:
    """ASGI middleware: picks the request id (request_id_from the X-Request-ID header), puts it in REQUEST_ID
    for everything this request runs (the streamed body included), and returns it in the response header."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id")
        request_id = request_id_from(incoming.decode("latin-1") if incoming is not None else None)
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


ERROR_REASONS = {400: "invalid_request", 404: "unknown_model", 429: "queue_full"}


def build_app(model, tokenizer, *, model_name: str, limits=None, max_waiting: int = 256, step_delay: float = 0.0,
              tracer_provider=None, log_stream=None, drift_reference: dict | None = None):
    """Phase 9's OpenAI-style server with observability: /v1/completions, /v1/chat/completions, /health,
    /metrics. Every request gets an id (X-Request-ID), a span tree, metrics and JSON log lines."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    limits = limits or server.Limits()
    metrics = create_metrics()
    drift = DriftMonitor(drift_reference, metrics["registry"])
    engine = InstrumentedEngine(model, tokenizer, limits)
    runner = server.AsyncEngine(engine, max_waiting=max_waiting, step_delay=step_delay)
    context = min(model.config.block_size, limits.kv_capacity)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("llm-service")
    log = json_logger(f"llm.service.{uuid.uuid4().hex[:8]}", log_stream)

    @asynccontextmanager
    async def lifespan(app):
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app = FastAPI(title="observed LLM server", lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    app.state.runner, app.state.metrics, app.state.drift = runner, metrics, drift

    def reject(span, status: int, message: str, param=None, reason=None):
        reason = reason or ERROR_REASONS.get(status, "invalid_request")
        metrics["errors"].labels(reason=reason, status=str(status)).inc()
        metrics["requests"].labels(outcome=reason).inc()
        close_request_span(span, reason, error=message)
        log.warning("request rejected", extra={"status": status, "reason": reason, "error": message})
        return server.error_response(message, status, param)

    def finish(span, req):
        observe_request(metrics, req, req.finish_reason)
        record_stage_spans(tracer, span, req)
        close_request_span(span, req.finish_reason, prompt_tokens=len(req.prompt_ids),
                           completion_tokens=len(req.token_times), end_time=req.token_times[-1])
        drift.add(len(req.prompt_ids), len(req.token_times), req.text)
        log.info("request finished", extra={
            "outcome": req.finish_reason, "prompt_tokens": len(req.prompt_ids),
            "completion_tokens": len(req.token_times), "ttft_s": round(req.first_token_at - req.arrival, 6),
            "duration_s": round(req.token_times[-1] - req.arrival, 6)})

    def fail(span, req, reason: str, status: int, message: str):
        metrics["errors"].labels(reason=reason, status=str(status)).inc()
        observe_request(metrics, req, reason)             # the tokens it did get were still computed (and paid for)
        record_stage_spans(tracer, span, req)
        close_request_span(span, reason, prompt_tokens=len(req.prompt_ids),
                           completion_tokens=len(req.token_times), error=message)
        log.error("request failed", extra={"reason": reason, "status": status, "error": message})

    async def handle(http: HttpRequest, chat: bool):
        arrival = time.perf_counter()
        span = tracer.start_span("llm.request", start_time=unix_ns(arrival),
                                 attributes={"llm.request_id": REQUEST_ID.get(), "http.route": http.url.path,
                                             "llm.model": model_name})
        try:
            body = json.loads(await http.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return reject(span, 400, f"the body is not valid JSON ({getattr(exc, 'msg', exc)}); send a JSON object",
                          reason="bad_json")
        try:
            prompt_ids, params, stream = server.validate_request(body, model_name=model_name, tokenizer=tokenizer,
                                                                 context=context, chat=chat)
        except server.RequestError as exc:
            return reject(span, exc.status, str(exc), exc.param)
        req = server.Request(("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:20], prompt_ids, params)
        req.arrival, req.admitted_at = arrival, None
        try:
            queue = runner.submit(req)
        except server.QueueFull as exc:
            return reject(span, 429, f"the server is at capacity ({exc}); retry after a second")
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True   # OpenAI's final usage chunk
        log.info("request accepted", extra={"engine_id": req.id, "prompt_tokens": len(prompt_ids),
                                            "max_tokens": params.max_tokens, "stream": stream})
        created = int(time.time())
        if stream:
            return StreamingResponse(stream_events(span, req, queue, created, chat, usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await collect(span, req, queue, created, chat)

    async def stream_events(span, req, queue, created, chat, usage):
        done, first = False, True
        try:
            while True:
                event = await queue.get()
                if event.finish_reason in ("abort", "error"):
                    done = True
                    fail(span, req, f"engine_{event.finish_reason}", 503, f"generation ended early ({event.finish_reason})")
                    yield server.sse_event({"error": {"message": f"generation ended early ({event.finish_reason})",
                                                      "type": "server_error"}})
                    return
                if event.delta or first or event.finish_reason:
                    yield server.sse_event(server.completion_chunk(req.id, model_name, created, event.delta,
                                                                   event.finish_reason, chat=chat, first=first))
                    first = False
                if event.finish_reason is not None:
                    done = True
                    finish(span, req)
                    if usage:
                        yield server.sse_event({"id": req.id, "object": "chat.completion.chunk" if chat else
                                                "text_completion", "created": created, "model": model_name,
                                                "choices": [], "usage": usage_of(req)})
                    yield server.sse_event("[DONE]")
                    return
        finally:
            if not done:                                  # the client went away: free its slot, end its span
                runner.cancel(req.id)
                fail(span, req, "client_disconnect", 499, "the client closed the connection mid-stream")

    async def collect(span, req, queue, created, chat):
        while True:
            event = await queue.get()
            if event.finish_reason in ("abort", "error"):
                fail(span, req, f"engine_{event.finish_reason}", 503, f"generation ended early ({event.finish_reason})")
                return server.error_response(f"generation ended early ({event.finish_reason}); retry", 503)
            if event.finish_reason is not None:
                break
        finish(span, req)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": req.text},
                      "finish_reason": req.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": req.text, "finish_reason": req.finish_reason, "logprobs": None}
        return {"id": req.id, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": model_name, "choices": [choice], "usage": usage_of(req)}

    @app.post("/v1/completions")
    async def completions(http: HttpRequest):
        return await handle(http, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HttpRequest):
        return await handle(http, chat=True)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/metrics")
    async def prometheus():
        metrics["queue_depth"].set(runner.queue_depth)
        metrics["running"].set(sum(r.finish_reason is None for r in engine.running))
        metrics["kv_utilization"].set(sum(r.reserved for r in engine.running) / limits.kv_capacity)
        drift.update()
        return PlainTextResponse(generate_latest(metrics["registry"]), media_type=CONTENT_TYPE_LATEST)

    return app


def usage_of(req) -> dict:
    return {"prompt_tokens": len(req.prompt_ids), "completion_tokens": len(req.token_times),
            "total_tokens": len(req.prompt_ids) + len(req.token_times)}


class OsRandomIds(IdGenerator):
    """Trace and span ids from the OS's random source. The SDK's default draws from Python's `random`, so a
    program that seeds it (a reproducible run, a test) would hand out the same ids again after each reseed."""

    def generate_span_id(self) -> int:
        return secrets.randbits(64) or 1

    def generate_trace_id(self) -> int:
        return secrets.randbits(128) or 1

    def is_trace_id_random(self) -> bool:       # W3C trace-context "random" flag: all 128 bits are random
        return True


def tracer_provider_with(exporter):
    """A TracerProvider that hands every ended span to `exporter` at once (SimpleSpanProcessor). In production
    use BatchSpanProcessor with an OTLP exporter to a collector (Jaeger, Tempo, Honeycomb...)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "llm-service"}), id_generator=OsRandomIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


# ---------------------------------------------------------------------------------------------- demo

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.!?:'\n"


def tiny_model(seed: int = 0, noise: float = 0.0, context: int = 128):
    """A tiny random character-level GPT (phase 9 lab 01's), optionally with its weights perturbed: the
    "worse model" swapped in to show the canary alert firing."""
    tok = server.CharTokenizer(ALPHABET)
    torch.manual_seed(seed)
    model = kvlab.GPT(kvlab.GPTConfig(vocab_size=tok.vocab_size, block_size=context, n_layer=2, n_head=4,
                                      n_kv_head=2, n_embd=32, ffn_hidden=64)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
                if noise:
                    p.add_(torch.randn_like(p) * noise)
    return model, tok


def demo_prompts(n: int, rng, long: bool = False) -> list[str]:
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "saw", "red", "dog", "ran", "far", "away", "home"]
    sizes = rng.integers(12, 20, n) if long else rng.integers(2, 8, n)
    return [" ".join(rng.choice(words, k)) for k in sizes]


async def _stream_all(url: str, prompts: list[str], max_tokens) -> list[dict]:
    import httpx

    async def one(i, prompt):
        body = {"model": "tiny", "prompt": prompt, "max_tokens": int(max_tokens[i]), "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}}
        pieces, usage = [], None
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    usage = chunk.get("usage") or usage
                    pieces += [c["text"] for c in chunk["choices"]]
        return {"id": response.headers["x-request-id"], "text": "".join(pieces), "usage": usage}

    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))


def histogram_quantile(family, q: float) -> float:
    """Prometheus' histogram_quantile on one scraped histogram (linear inside the bucket)."""
    buckets = sorted((float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket"))
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            return lower if math.isinf(upper) else lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def print_drift(title: str, report: dict) -> None:
    print(title)
    for feature, row in report.items():
        p = "-" if row["pvalue"] is None else f"{row['pvalue']:.3g}"
        print(f"  {feature:<18} PSI {row['psi']:6.3f}   KS p-value {p:>8}   {'ALERT' if row['drifted'] else 'ok'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent streaming clients in the first burst")
    parser.add_argument("--window", type=int, default=192, help="requests per drift window")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    out = labkit.output_dir(__file__)
    import httpx
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client.parser import text_string_to_metric_families
    from tqdm import tqdm

    rng = np.random.default_rng(0)
    model, tok = tiny_model()
    exporter, log_path = InMemorySpanExporter(), out / "service.log.jsonl"
    with open(log_path, "w") as log_file:
        app = build_app(model, tok, model_name="tiny", limits=server.Limits(max_batch=16, token_budget=256),
                        tracer_provider=tracer_provider_with(exporter), log_stream=log_file)
        drift = app.state.drift
        drift.live = deque(maxlen=args.window)
        with server.RunningServer(app) as running:
            prompts = demo_prompts(args.clients, rng)
            start = time.perf_counter()
            results = asyncio.run(_stream_all(running.url, prompts, rng.integers(4, 33, len(prompts))))
            wall = time.perf_counter() - start
            bad = [httpx.post(f"{running.url}/v1/completions", json=b, timeout=10).status_code
                   for b in ({"model": "tiny", "prompt": "hi", "max_tokens": -1}, {"model": "gpt-9", "prompt": "x"})]
            scrape = httpx.get(f"{running.url}/metrics", timeout=10).text
            print(f"{len(results)} streaming clients at once: {wall:.2f} s; bad requests answered {bad}")
            windows = {}
            for phase, long in tqdm([("reference", False), ("same traffic", False), ("long prompts", True)],
                                    desc="drift windows", file=sys.stdout):
                drift.live.clear()
                for _ in range(args.window // 64):
                    asyncio.run(_stream_all(running.url, demo_prompts(64, rng, long=long), rng.integers(4, 17, 64)))
                windows[phase] = drift.snapshot()
                drift.reference = windows["reference"]
    families = {f.name: f for f in text_string_to_metric_families(scrape)}
    (out / "metrics.prom").write_text(scrape)
    tokens = sum(r["usage"]["completion_tokens"] for r in results)
    print(f"llm_generated_tokens_total = {families['llm_generated_tokens'].samples[0].value:.0f} "
          f"(sum of the streamed usage: {tokens}); {tokens / wall:.0f} tokens/s")
    for name in ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds", "llm_queue_time_seconds"):
        print(f"{name}: p50 {histogram_quantile(families[name], 0.5) * 1e3:.1f} ms, "
              f"p95 {histogram_quantile(families[name], 0.95) * 1e3:.1f} ms")
    errors = [(s.labels, s.value) for s in families["llm_errors"].samples if s.name == "llm_errors_total"]
    print(f"errors: {errors}")
    spans = exporter.get_finished_spans()
    longest = max(results, key=lambda r: r["usage"]["completion_tokens"])
    root = next(s for s in spans if s.name == "llm.request" and s.attributes["llm.request_id"] == longest["id"])
    print(f"\ntrace of request {longest['id']} (the longest answer):")
    for s in [root] + sorted((s for s in spans if s.parent and s.parent.span_id == root.context.span_id),
                             key=lambda s: s.start_time):
        attrs = {k: v for k, v in s.attributes.items() if "tokens" in k}
        print(f"  {'' if s is root else '  '}{s.name:<12} {(s.end_time - s.start_time) / 1e6:8.2f} ms  {attrs}")
    (out / "spans.json").write_text("[" + ",".join(s.to_json(indent=None) for s in spans) + "]")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    print(f"\n{len(lines)} JSON log lines, e.g.\n  {json.dumps(lines[-1])}")
    print_drift(f"\ndrift, a second window of the same traffic ({args.window} requests each):",
                drift_report(windows["reference"], windows["same traffic"]))
    print_drift("drift, a window of much longer prompts:", drift_report(windows["reference"], windows["long prompts"]))
    # the canary: the released model's greedy answers, then a worse model swapped in
    params = server.SamplingParams(max_tokens=12, temperature=0)
    cases = [(p, server.generate_alone(model, tok, tok.encode(p), params).text)
             for p in demo_prompts(20, np.random.default_rng(1))]
    print()
    for label, candidate in (("released model", model), ("perturbed model (weights + 0.1 noise)",
                                                         tiny_model(noise=0.1)[0])):
        score = canary_score(lambda prompt: server.generate_alone(candidate, tok, tok.encode(prompt), params).text,
                             cases)
        print(f"canary on the {label}: pass ratio {score:.2f}, regression alert {canary_regressed(1.0, score, 0.1)}")
    write_canary_textfile(out / "canary.prom", score, 1.0)
    print(f"\nwrote {out}/metrics.prom, spans.json, service.log.jsonl, canary.prom")


if __name__ == "__main__":
    labkit.run(main)
