"""Statistics, arrivals, workload and command line of the benchmark: pure functions, hand-worked cases."""
import math

import numpy as np
import pytest
from scipy import stats


def record(impl, sent, chunks, done, tokens, error=None):
    return impl.RequestRecord(sent=sent, chunk_times=list(chunks), text="x" * len(chunks), output_tokens=tokens,
                              done=done, error=error)


# ---------------------------------------------------------------- percentile

@pytest.mark.task("percentile")
@pytest.mark.parametrize("q, expected", [(0, 1.0), (50, 2.5), (90, 3.7), (99, 3.97), (100, 4.0), (25, 1.75)])
def test_percentile_hand_worked(impl, q, expected):
    # [1, 2, 3, 4]: rank = q/100 * 3; q=90 -> rank 2.7 -> 3 + 0.7 * (4 - 3) = 3.7
    got = impl.percentile([4, 1, 3, 2], q)
    assert got == pytest.approx(expected, abs=1e-12), f"p{q} of [1, 2, 3, 4] should be {expected}, got {got}"


@pytest.mark.task("percentile")
def test_percentile_matches_numpy_linear_method(impl):
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        values = rng.lognormal(size=n).tolist()
        for q in (0, 1, 33.3, 50, 90, 99, 100):
            assert impl.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12), \
                f"n={n}, q={q}: expected numpy's {np.percentile(values, q)}"


@pytest.mark.task("percentile")
@pytest.mark.parametrize("values, q", [([], 50), ([1.0], -1), ([1.0], 100.5)])
def test_percentile_refuses_bad_input(impl, values, q):
    with pytest.raises(ValueError):
        impl.percentile(values, q)


# ---------------------------------------------------------------- one request

@pytest.mark.task("request-metrics")
def test_request_metrics_hand_worked(impl):
    # 5 tokens arrived in 3 chunks: TTFT 0.5, E2E 0.9, TPOT (0.9 - 0.5) / (5 - 1) = 0.1, ITL 0.1 and 0.2
    m = impl.request_metrics(record(impl, 10.0, [10.5, 10.6, 10.8], 10.9, tokens=5))
    assert m.ttft == pytest.approx(0.5) and m.e2e == pytest.approx(0.9), f"TTFT 0.5 and E2E 0.9 expected, got {m}"
    assert m.tpot == pytest.approx(0.1), f"TPOT = (E2E - TTFT) / (tokens - 1) = 0.1, got {m.tpot}"
    assert m.itls == pytest.approx((0.1, 0.2)), f"ITL = gaps between chunks (0.1, 0.2), got {m.itls}"
    assert m.output_tokens == 5


@pytest.mark.task("request-metrics")
def test_request_metrics_single_token_and_failures(impl):
    m = impl.request_metrics(record(impl, 0.0, [0.25], 0.3, tokens=1))
    assert m.ttft == pytest.approx(0.25) and m.tpot is None and m.itls == (), \
        f"one token: TPOT undefined (None) and no ITL, got {m}"
    with pytest.raises(ValueError):
        impl.request_metrics(record(impl, 0.0, [], 1.0, tokens=0, error="HTTP 429: busy"))
    with pytest.raises(ValueError):
        impl.request_metrics(record(impl, 0.0, [], 1.0, tokens=0))


# ---------------------------------------------------------------- a run

@pytest.mark.task("summarize")
def test_summarize_hand_worked(impl):
    fast = record(impl, 0.0, [0.2, 0.3, 0.4, 0.5, 0.6], 0.6, tokens=5)     # ITL 0.1 x4, TPOT 0.1
    slow = record(impl, 0.5, [1.5, 2.0], 2.0, tokens=2)                    # ITL 0.5, TPOT 0.5
    failed = record(impl, 0.1, [0.15], 0.2, tokens=1, error="server error mid-stream: engine died")
    s = impl.summarize([fast, slow, failed], duration=2.0)
    assert (s.completed, s.failed, s.output_tokens) == (2, 1, 7), f"2 completed, 1 failed, 7 tokens; got {s}"
    assert s.request_throughput == pytest.approx(1.0) and s.output_throughput == pytest.approx(3.5), \
        f"2 requests and 7 tokens over the 2 s wall time: 1.0 req/s, 3.5 tok/s; got {s}"
    assert s.ttft["mean"] == pytest.approx(0.6) and s.ttft["p50"] == pytest.approx(0.6), s.ttft  # 0.2 and 1.0
    assert s.tpot["p50"] == pytest.approx(0.3) and s.tpot["p99"] == pytest.approx(0.496), s.tpot
    # pooled gaps [0.1, 0.1, 0.1, 0.1, 0.5]: p50 0.1, p90 rank 3.6 -> 0.1 + 0.6 * 0.4 = 0.34
    assert s.itl["p50"] == pytest.approx(0.1) and s.itl["p90"] == pytest.approx(0.34), \
        f"ITL percentiles pool every gap of every request, expected p50 0.1 and p90 0.34, got {s.itl}"
    assert s.e2e["p50"] == pytest.approx(1.05), s.e2e                                            # 0.6 and 1.5


@pytest.mark.task("summarize")
def test_summarize_counts_wall_time_not_summed_latency(impl):
    # Four overlapping requests of 1 s each, all done within 1.25 s: 4 x 3 tokens / 1.25 s = 9.6 tok/s
    records = [record(impl, 0.05 * i, [0.05 * i + 0.5, 0.05 * i + 0.75], 0.05 * i + 1.0, tokens=3) for i in range(4)]
    s = impl.summarize(records, duration=1.25)
    assert s.output_throughput == pytest.approx(9.6) and s.request_throughput == pytest.approx(3.2), s
    assert s.failed == 0 and s.tpot["p50"] == pytest.approx(0.25), s


@pytest.mark.task("summarize")
def test_summarize_all_failed_and_bad_duration(impl):
    s = impl.summarize([record(impl, 0.0, [], 0.1, tokens=0, error="refused")], duration=1.0)
    assert s.completed == 0 and s.failed == 1 and s.output_throughput == 0 and math.isnan(s.ttft["p50"]), s
    with pytest.raises(ValueError):
        impl.summarize([], duration=0.0)


# ---------------------------------------------------------------- arrivals

@pytest.mark.task("poisson-arrivals")
def test_arrivals_start_at_zero_increase_and_repeat(impl):
    a = impl.arrival_times(50, rate=5.0, seed=3)
    assert len(a) == 50 and a[0] == 0.0 and np.all(np.diff(a) > 0), f"50 increasing offsets from 0, got {a[:5]}..."
    assert np.array_equal(a, impl.arrival_times(50, rate=5.0, seed=3)), "same seed must give the same times"
    assert not np.array_equal(a, impl.arrival_times(50, rate=5.0, seed=4)), "another seed, other times"
    assert list(impl.arrival_times(1, 2.0)) == [0.0] and len(impl.arrival_times(0, 2.0)) == 0


@pytest.mark.task("poisson-arrivals")
def test_arrival_gaps_are_exponential_with_mean_one_over_rate(impl):
    rate = 8.0
    gaps = np.diff(impl.arrival_times(4001, rate=rate, seed=0))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.06), f"mean gap should be 1/rate = 0.125 s, got {gaps.mean()}"
    ks = stats.kstest(gaps, stats.expon(scale=1 / rate).cdf)
    assert ks.pvalue > 1e-3, f"gaps do not look exponential(mean 1/rate): KS p = {ks.pvalue:.2g}"
    a = impl.arrival_times(400, rate=rate, seed=0)
    assert a[-1] == pytest.approx(399 / rate, rel=0.2), f"400 arrivals at 8/s should span about 50 s, got {a[-1]}"


@pytest.mark.task("poisson-arrivals")
def test_infinite_rate_and_bad_rates(impl):
    assert np.array_equal(impl.arrival_times(5, math.inf), np.zeros(5)), "rate=inf sends everything at 0"
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError):
            impl.arrival_times(3, bad)


# ---------------------------------------------------------------- workload

@pytest.mark.task("workload")
def test_workload_is_seeded_and_prompts_differ(impl):
    w = impl.make_workload(6, prompt_words=12, max_tokens=7, seed=1)
    assert w == impl.make_workload(6, prompt_words=12, max_tokens=7, seed=1), "same seed, same workload"
    assert w != impl.make_workload(6, prompt_words=12, max_tokens=7, seed=2), "another seed, other prompts"
    assert len({r.prompt for r in w}) == 6, "every request should get prompt words of its own"
    assert all(len(r.prompt.split()) == 12 and r.max_tokens == 7 for r in w)
    assert all(word in impl.WORDS for r in w for word in r.prompt.split())


@pytest.mark.task("workload")
def test_workload_shared_prefix_is_one_common_run(impl):
    w = impl.make_workload(5, prompt_words=4, max_tokens=3, shared_prefix_words=20, seed=0)
    heads = {" ".join(r.prompt.split()[:20]) for r in w}
    tails = {" ".join(r.prompt.split()[20:]) for r in w}
    assert len(heads) == 1, f"all 5 prompts should start with the same 20 words, found {len(heads)} prefixes"
    assert len(tails) == 5 and all(len(r.prompt.split()) == 24 for r in w), "then 4 words of each prompt's own"
    with pytest.raises(ValueError):
        impl.make_workload(2, prompt_words=0, max_tokens=3)


# ---------------------------------------------------------------- engine arguments

def flag_value(argv, flag):
    assert argv.count(flag) == 1, f"{flag} should appear once in {argv}"
    return argv[argv.index(flag) + 1]


@pytest.mark.task("engine-args")
def test_vllm_command_binds_loopback_and_names_the_module(impl):
    argv = impl.vllm_command("/models/m", 8123, python="/venv/bin/python", max_model_len=256)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"], argv[:3]
    assert flag_value(argv, "--host") == "127.0.0.1", "serve on loopback only"
    assert flag_value(argv, "--port") == "8123" and flag_value(argv, "--model") == "/models/m"
    assert flag_value(argv, "--max-model-len") == "256" and flag_value(argv, "--dtype") == "float32"


@pytest.mark.task("engine-args")
def test_vllm_command_prefix_caching_and_block_size(impl):
    on = impl.vllm_command("m", 1, block_size=32, prefix_caching=True, max_num_seqs=8)
    off = impl.vllm_command("m", 1, prefix_caching=False)
    assert "--enable-prefix-caching" in on and "--no-enable-prefix-caching" not in on
    assert "--no-enable-prefix-caching" in off and "--enable-prefix-caching" not in off, \
        "vLLM V1 caches prefixes by default: turning it off needs --no-enable-prefix-caching"
    assert flag_value(on, "--block-size") == "32" and flag_value(on, "--max-num-seqs") == "8"
    assert "--block-size" not in off and "--max-num-seqs" not in off, "None keeps vLLM's default"
