"""Each piece on hand-made inputs: metrics read back with Prometheus' own text parser, spans collected with the
OpenTelemetry SDK's in-memory exporter, drift statistics against scipy and hand-worked values."""
import io
import json
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats


def scrape(metrics) -> dict:
    """{family name: family}, parsed by prometheus_client's parser from the text exposition."""
    return {f.name: f for f in text_string_to_metric_families(generate_latest(metrics["registry"]).decode())}


def sample(families, family: str, series: str, **labels) -> float:
    for s in families[family].samples:
        if s.name == series and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {series}{labels} in family {family}")


def finished_request(arrival=10.0, admitted=10.25, first=10.5, times=(10.5, 10.52, 10.57, 10.6), prompt=7):
    return SimpleNamespace(arrival=arrival, admitted_at=admitted, first_token_at=first, token_times=list(times),
                           prompt_ids=[0] * prompt)


# ---------------------------------------------------------------------------------------------- metrics

EXPECTED_FAMILIES = {
    "llm_requests": "counter", "llm_errors": "counter", "llm_prompt_tokens": "counter",
    "llm_generated_tokens": "counter", "llm_time_to_first_token_seconds": "histogram",
    "llm_inter_token_latency_seconds": "histogram", "llm_queue_time_seconds": "histogram",
    "llm_request_duration_seconds": "histogram", "llm_queue_depth": "gauge", "llm_running_requests": "gauge",
    "llm_kv_cache_utilization_ratio": "gauge",
}


@pytest.mark.task("metrics")
def test_every_series_exists_with_its_type(impl):
    families = scrape(impl.create_metrics())
    for name, kind in EXPECTED_FAMILIES.items():
        assert name in families, f"expected a metric family {name!r}; found {sorted(families)}"
        assert families[name].type == kind, f"{name} should be a {kind}, got {families[name].type}"
    errors = impl.create_metrics()["errors"]
    errors.labels(reason="invalid_request", status="400").inc()   # the two labels must exist


@pytest.mark.task("metrics")
def test_time_histograms_have_buckets_in_seconds(impl):
    families = scrape(impl.create_metrics())
    for name in ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds", "llm_queue_time_seconds",
                 "llm_request_duration_seconds"):
        bounds = [float(s.labels["le"]) for s in families[name].samples if s.name == name + "_bucket"]
        finite = [b for b in bounds if math.isfinite(b)]
        assert finite == sorted(finite) and len(finite) >= 6, f"{name}: expected 6+ increasing buckets, got {bounds}"
        assert min(finite) <= 0.01, f"{name}: the smallest bucket should resolve 10 ms (0.01 s), got {min(finite)}"
        assert max(finite) <= 120, (f"{name}: buckets are in seconds (Prometheus' base unit); a largest bucket of "
                                    f"{max(finite)} looks like milliseconds")
    ttft = [float(s.labels["le"]) for s in families["llm_time_to_first_token_seconds"].samples
            if s.name.endswith("_bucket")]
    assert max(b for b in ttft if math.isfinite(b)) >= 10, "TTFT buckets should reach at least 10 s (a long queue)"


@pytest.mark.task("metrics")
def test_observe_request_hand_worked(impl):
    metrics = impl.create_metrics()
    # arrival 10.0, admitted 10.25, tokens at 10.5, 10.52, 10.57, 10.6: TTFT 0.5, gaps .02 .05 .03, e2e 0.6
    impl.observe_request(metrics, finished_request(), "length")
    # a second request: arrival 20, admitted 20.0, one token at 21.0 (no gap at all)
    impl.observe_request(metrics, finished_request(20.0, 20.0, 21.0, (21.0,), 3), "stop")
    f = scrape(metrics)
    ttft = "llm_time_to_first_token_seconds"
    assert sample(f, ttft, ttft + "_count") == 2
    assert sample(f, ttft, ttft + "_sum") == pytest.approx(1.5), "TTFT is arrival -> FIRST token (0.5 s and 1.0 s)"
    assert sample(f, ttft, ttft + "_bucket", le="0.5") == 1 and sample(f, ttft, ttft + "_bucket", le="0.25") == 0
    itl = "llm_inter_token_latency_seconds"
    assert sample(f, itl, itl + "_count") == 3, "4 tokens give 3 gaps, 1 token gives none"
    assert sample(f, itl, itl + "_sum") == pytest.approx(0.1)
    assert sample(f, "llm_queue_time_seconds", "llm_queue_time_seconds_sum") == pytest.approx(0.25)
    assert sample(f, "llm_request_duration_seconds", "llm_request_duration_seconds_sum") == pytest.approx(1.6)
    assert sample(f, "llm_generated_tokens", "llm_generated_tokens_total") == 5
    assert sample(f, "llm_prompt_tokens", "llm_prompt_tokens_total") == 10
    assert sample(f, "llm_requests", "llm_requests_total", outcome="length") == 1
    assert sample(f, "llm_requests", "llm_requests_total", outcome="stop") == 1


@pytest.mark.task("metrics")
def test_a_request_that_never_left_the_queue_counts_but_has_no_latency(impl):
    metrics = impl.create_metrics()
    impl.observe_request(metrics, SimpleNamespace(arrival=1.0, admitted_at=None, first_token_at=None,
                                                  token_times=[], prompt_ids=[0, 0]), "client_disconnect")
    f = scrape(metrics)
    assert sample(f, "llm_requests", "llm_requests_total", outcome="client_disconnect") == 1
    for name in ("llm_time_to_first_token_seconds", "llm_queue_time_seconds", "llm_request_duration_seconds"):
        assert sample(f, name, name + "_count") == 0, f"{name}: nothing to observe for a request with no tokens"


# ---------------------------------------------------------------------------------------------- tracing

def tracer_and_exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.mark.task("tracing")
def test_stage_spans_form_a_tree_with_the_engine_times(impl):
    tracer, exporter = tracer_and_exporter()
    req = finished_request()
    root = tracer.start_span("llm.request", start_time=impl.unix_ns(req.arrival))
    impl.record_stage_spans(tracer, root, req)
    impl.close_request_span(root, "length", prompt_tokens=7, completion_tokens=4, end_time=req.token_times[-1])
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"llm.request", "queue", "prefill", "decode"}, f"got spans {sorted(spans)}"
    root = spans["llm.request"]
    expected = {"queue": (10.0, 10.25), "prefill": (10.25, 10.5), "decode": (10.5, 10.6)}
    for name, (start, end) in expected.items():
        span = spans[name]
        assert span.parent is not None and span.parent.span_id == root.context.span_id, \
            f"{name} must be a child of the request span"
        assert span.context.trace_id == root.context.trace_id, f"{name} must be in the request's trace"
        assert (span.start_time, span.end_time) == (impl.unix_ns(start), impl.unix_ns(end)), \
            f"{name} should run {start} -> {end} (engine time), got ns {span.start_time} -> {span.end_time}"
    assert spans["prefill"].attributes["llm.prompt_tokens"] == 7
    assert spans["decode"].attributes["llm.completion_tokens"] == 3, "decode makes the tokens after the first"
    assert root.attributes["llm.completion_tokens"] == 4 and root.attributes["llm.prompt_tokens"] == 7
    assert root.attributes["llm.outcome"] == "length"
    assert root.status.status_code == StatusCode.OK
    assert root.end_time == impl.unix_ns(10.6)


@pytest.mark.task("tracing")
def test_an_error_still_ends_the_span_with_an_error_status(impl):
    tracer, exporter = tracer_and_exporter()
    span = tracer.start_span("llm.request")
    impl.close_request_span(span, "invalid_request", error="'max_tokens' must be a positive integer")
    finished = exporter.get_finished_spans()
    assert len(finished) == 1, "a span that is not ended never reaches the exporter: end it on errors too"
    assert finished[0].status.status_code == StatusCode.ERROR
    assert finished[0].status.description == "'max_tokens' must be a positive integer"
    assert finished[0].attributes["error.type"] == "invalid_request"


@pytest.mark.task("tracing")
def test_a_request_aborted_in_the_queue_has_no_stage_spans(impl):
    tracer, exporter = tracer_and_exporter()
    root = tracer.start_span("llm.request")
    req = SimpleNamespace(arrival=1.0, admitted_at=None, first_token_at=None, token_times=[], prompt_ids=[1])
    assert impl.record_stage_spans(tracer, root, req) == []
    # admitted, then aborted before its first token: only the queue stage happened
    req = SimpleNamespace(arrival=1.0, admitted_at=1.5, first_token_at=None, token_times=[], prompt_ids=[1])
    spans = impl.record_stage_spans(tracer, root, req)
    assert [s.name for s in spans] == ["queue"]


# ---------------------------------------------------------------------------------------------- logging

@pytest.mark.task("logging")
def test_request_ids_echo_safe_client_ids_and_replace_the_rest(impl):
    assert impl.request_id_from("client-42.retry_1") == "client-42.retry_1"
    assert impl.request_id_from("a" * 64) == "a" * 64
    for bad in (None, "", "a" * 65, "abc\ninjected", 'quote"d', "ok\r\n", "spaces here"):
        new = impl.request_id_from(bad)
        assert isinstance(new, str) and len(new) == 32 and all(c in "0123456789abcdef" for c in new), \
            f"{bad!r} is not a safe id: expected a fresh 32-hex-digit id, got {new!r}"
    assert impl.request_id_from(None) != impl.request_id_from(None), "fresh ids must differ"


@pytest.mark.task("logging")
def test_json_log_lines_carry_the_request_id_and_extras(impl):
    impl.JsonLogFormatter().format(logging.makeLogRecord({"msg": "probe"}))   # (logging hides a handler's errors)
    stream = io.StringIO()
    logger = impl.json_logger("test.json.logs", stream)
    token = impl.REQUEST_ID.set("req-123")
    try:
        logger.info("served %s tokens", 5, extra={"outcome": "stop", "engine": object(), "ttft_s": 0.25})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("step failed")
    finally:
        impl.REQUEST_ID.reset(token)
    logger.warning("outside a request")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, f"expected one line per record, got {len(lines)} lines:\n{stream.getvalue()[:500]}"
    first, second, third = map(json.loads, lines)
    assert first["message"] == "served 5 tokens", f"the message with its arguments merged, got {first['message']!r}"
    assert first["request_id"] == "req-123", f"request_id comes from the REQUEST_ID context, got {first}"
    assert first["level"] == "INFO" and first["outcome"] == "stop" and first["ttft_s"] == 0.25
    assert "object" in first["engine"], "non-JSON extras are written as text, not dropped or crashing"
    assert first["time"].endswith("+00:00"), f"times in UTC ISO 8601, got {first['time']!r}"
    assert second["request_id"] == "req-123" and "ValueError: boom" in second["exception"]
    assert third["request_id"] is None and third["level"] == "WARNING"
    assert "msg" not in first and "args" not in first, "only extras beyond a plain LogRecord's fields"


# ---------------------------------------------------------------------------------------------- PromQL

PROMQL = [
    ('histogram_quantile(0.95, sum by (le) (rate(llm_ttft_seconds_bucket{route="/v1/chat"}[5m])))',
     {"llm_ttft_seconds_bucket"}),
    ('sum(rate(llm_errors_total{status=~"5..", reason!="bad_json"}[5m])) / clamp_min(sum(rate(llm_requests_total[5m])), 1e-9)',
     {"llm_errors_total", "llm_requests_total"}),
    ("llm:generated_tokens:rate1m == 0 and sum(rate(llm_requests_total[5m])) > 0",
     {"llm:generated_tokens:rate1m", "llm_requests_total"}),
    ("time() - llm_canary_last_run_timestamp_seconds > 2 * 86400", {"llm_canary_last_run_timestamp_seconds"}),
    ("sum without (instance) (up offset 1h) / on(job) group_left(team) team_info", {"up", "team_info"}),
    ("max_over_time(llm_queue_depth[1h:5m]) > bool 3 or vector(0)", {"llm_queue_depth"}),
    ("rate ( llm_x_total [5m] ) * 1e3 + Inf", {"llm_x_total"}),
    ('llm_drift_alert{feature="prompt_tokens"} unless ignoring(feature) llm_maintenance', {"llm_drift_alert", "llm_maintenance"}),
    ("llm_canary_pass_ratio < llm_canary_baseline_ratio - 0.1", {"llm_canary_pass_ratio", "llm_canary_baseline_ratio"}),
]


@pytest.mark.task("promql")
@pytest.mark.parametrize("expr,names", PROMQL, ids=[f"expr{i}" for i in range(len(PROMQL))])
def test_promql_metric_names(impl, expr, names):
    got = impl.promql_metric_names(expr)
    assert got == names, f"{expr}\n  expected {sorted(names)}, got {sorted(got)}"


# ---------------------------------------------------------------------------------------------- drift

def hand_psi(ref_share, live_share) -> float:
    return sum((a - e) * math.log(a / e) for e, a in zip(ref_share, live_share))


@pytest.mark.task("drift")
def test_psi_hand_worked(impl):
    reference = np.arange(100)                 # quartile edges 24.75, 49.5, 74.25: 25 values per bin
    live = np.concatenate([np.arange(0, 10), np.arange(25, 45), np.arange(50, 80) % 25 + 50, np.arange(75, 115) % 25 + 75])
    # live shares 0.1 0.2 0.3 0.4 against 0.25 each:
    # -0.15 ln 0.4 - 0.05 ln 0.8 + 0.05 ln 1.2 + 0.15 ln 1.6 = 0.13744 + 0.01116 + 0.00912 + 0.07050 = 0.22822
    assert impl.psi(reference, live, bins=4) == pytest.approx(0.228224, abs=1e-5)
    assert impl.psi(reference, reference, bins=4) == 0.0
    assert impl.psi(reference, live, edges=[24.75, 49.5, 74.25]) == pytest.approx(0.228224, abs=1e-5)


@pytest.mark.task("drift")
def test_psi_empty_bins_are_floored_and_values_beyond_the_range_count(impl):
    reference = np.arange(100)
    floor = impl.PSI_FLOOR
    expected = hand_psi([0.25] * 4, [floor, floor, floor, 1.0])    # 6.906 with floor 1e-4
    inside = impl.psi(reference, np.full(50, 80), bins=4)
    assert math.isfinite(inside), "an empty live bin must not give inf or nan: floor the proportions"
    assert inside == pytest.approx(expected, rel=1e-6)
    beyond = impl.psi(reference, np.full(50, 1000), bins=4)       # every live value above the reference's max
    assert beyond == pytest.approx(expected, rel=1e-6), \
        "values beyond the reference range belong to the open-ended last bin, not nowhere"
    below = impl.psi(reference, np.full(50, -5), bins=4)
    assert below == pytest.approx(hand_psi([0.25] * 4, [1.0, floor, floor, floor]), rel=1e-6)


@pytest.mark.task("drift")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_statistic_matches_scipy_with_ties(impl, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 12, 80), rng.integers(2, 14, 50)        # integers: many ties
    assert impl.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert impl.ks_statistic(b, a) == pytest.approx(stats.ks_2samp(b, a).statistic, abs=1e-12)
    c, d = rng.normal(0, 1, 60), rng.normal(0.3, 1.5, 45)
    assert impl.ks_statistic(c, d) == pytest.approx(stats.ks_2samp(c, d).statistic, abs=1e-12)


@pytest.mark.task("drift")
def test_ks_gap_only_visible_at_the_second_samples_points(impl):
    a, b = [10.0, 20.0], [0.0, 1.0, 2.0]   # F_b reaches 1 at 2 while F_a is still 0: D = 1, seen only at b's values
    assert impl.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert impl.ks_statistic(a, b) == pytest.approx(1.0)


def window(rng, n, prompt_mean=30, refusal=0.02):
    return {"prompt_tokens": list(rng.poisson(prompt_mean, n)), "completion_tokens": list(rng.integers(5, 60, n)),
            "refused": list((rng.random(n) < refusal).astype(float))}


@pytest.mark.task("drift")
def test_drift_report_flags_only_what_moved(impl):
    rng = np.random.default_rng(0)
    reference = window(rng, 1000)
    same = impl.drift_report(reference, window(rng, 1000))
    assert not any(row["drifted"] for row in same.values()), f"no drift expected on the same traffic, got {same}"
    longer = impl.drift_report(reference, window(rng, 1000, prompt_mean=45))
    assert longer["prompt_tokens"]["drifted"] and not longer["completion_tokens"]["drifted"]
    refusing = impl.drift_report(reference, window(rng, 1000, refusal=0.3))
    assert refusing["refused"]["drifted"], f"a refusal rate from 2% to 30% must alert, got {refusing['refused']}"
    assert refusing["refused"]["ks"] is None and refusing["refused"]["pvalue"] is None
    assert not refusing["prompt_tokens"]["drifted"]


@pytest.mark.task("drift")
def test_refusal_psi_is_the_two_category_value(impl):
    reference = {"prompt_tokens": [10] * 100, "completion_tokens": [5] * 100, "refused": [1.0] * 2 + [0.0] * 98}
    live = {"prompt_tokens": [10] * 100, "completion_tokens": [5] * 100, "refused": [1.0] * 30 + [0.0] * 70}
    report = impl.drift_report(reference, live)
    expected = hand_psi([0.98, 0.02], [0.70, 0.30])    # (0.70-0.98) ln(0.70/0.98) + (0.30-0.02) ln(0.30/0.02) = 0.852
    assert report["refused"]["psi"] == pytest.approx(expected, rel=1e-9)
    assert report["prompt_tokens"]["psi"] == 0.0 and not report["prompt_tokens"]["drifted"]


@pytest.mark.task("drift")
def test_a_small_certain_shift_is_caught_by_ks_even_under_the_psi_threshold(impl):
    rng = np.random.default_rng(3)
    n = 5000
    reference = {"prompt_tokens": list(rng.normal(100, 20, n)), "completion_tokens": list(rng.normal(50, 10, n)),
                 "refused": [0.0] * n}
    live = {"prompt_tokens": list(rng.normal(104, 20, n)), "completion_tokens": list(rng.normal(50, 10, n)),
            "refused": [0.0] * n}
    report = impl.drift_report(reference, live)["prompt_tokens"]
    ks = stats.ks_2samp(reference["prompt_tokens"], live["prompt_tokens"])
    assert report["ks"] == pytest.approx(ks.statistic, abs=1e-12)
    assert report["psi"] < 0.2 and ks.pvalue < 1e-6, "the case: PSI small, KS certain"
    assert report["drifted"], "drifted when PSI is over its threshold OR the KS p-value is under alpha"


# ---------------------------------------------------------------------------------------------- canary

@pytest.mark.task("canary")
def test_canary_score_is_exact_match_over_all_cases(impl):
    answers = {"a": "x", "b": " y\n", "c": "z and more", "d": "v"}
    cases = [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")]
    assert impl.canary_score(answers.__getitem__, cases) == 0.5, \
        "a: match; b: match once whitespace is stripped; c: more than expected is a miss; d: wrong"
    assert impl.canary_score(answers.__getitem__, cases[:1]) == 1.0
    with pytest.raises(ValueError):
        impl.canary_score(answers.__getitem__, [])


@pytest.mark.task("canary")
def test_canary_regression_fires_only_on_a_drop_larger_than_allowed(impl):
    assert impl.canary_regressed(1.0, 0.5, 0.25) is True
    assert impl.canary_regressed(1.0, 0.75, 0.25) is False, "a drop of exactly max_drop is allowed"
    assert impl.canary_regressed(0.5, 1.0, 0.1) is False, "a better score is not a regression"
    assert impl.canary_regressed(0.8, 0.8, 0.0) is False
    assert impl.canary_regressed(0.8, 0.75, 0.0) is True
