"""Capacity arithmetic for the system-design walkthroughs: every figure they state is computed here.

Each function is one formula, written next to the code. Units are SI base units throughout: bytes, seconds,
FLOPs (floating-point operations), FLOP/s, bytes/s, US dollars. Decimal prefixes: 1 GB = 1e9 bytes, 1 GiB = 2**30.
Bad arguments (a negative size, zero GPUs, an MFU outside (0, 1]) raise ValueError with a one-line message.

Run it as a script to print a scenario's sheet (the inputs, then each derived value with its formula):

    .venv/bin/python system-design/capacity.py --list
    .venv/bin/python system-design/capacity.py 70b-pretraining-1024-h100
    .venv/bin/python system-design/capacity.py path/to/my-scenario.toml
"""
from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from numbers import Real

import numpy as np

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400


# ---------------------------------------------------------------------------------------------------------
# Argument checks: one line that says what was wrong.
# ---------------------------------------------------------------------------------------------------------
def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def _positive(name: str, value) -> float:
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _non_negative(name: str, value) -> float:
    if _number(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _count(name: str, value, minimum: int = 1) -> int:
    """A whole number >= minimum (TOML and JSON may hand over 1024.0 for 1024)."""
    if not math.isfinite(_number(name, value)) or value != int(value) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _ceil(x: float) -> int:
    """ceil that ignores float noise: 123.00000000001 GPUs is 123, not 124 (0.1 · 3 / 0.3 is not exactly 1)."""
    nearest = round(x)
    return int(nearest) if math.isclose(x, nearest, rel_tol=1e-12) else math.ceil(x)


def _fraction(name: str, value) -> float:
    """A fraction in (0, 1]: utilisation, MFU, a keep rate."""
    if not 0 < _number(name, value) <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------
# Memory: weights, KV-cache, training state
# ---------------------------------------------------------------------------------------------------------
def model_weights_bytes(n_params, bytes_per_param):
    """weights = N · b  (b = 4 fp32, 2 bf16/fp16, 1 fp8/int8, 0.5 int4)."""
    return _non_negative("n_params", n_params) * _positive("bytes_per_param", bytes_per_param)


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    """KV-cache = 2 (K and V) · layers · kv_heads · head_dim · seq_len · batch · bytes_per_value.

    With grouped-query attention n_kv_heads is the number of K/V heads (8 for Llama-3), not the query heads.
    """
    per_token = 2 * _count("n_layers", n_layers) * _count("n_kv_heads", n_kv_heads) * _count("head_dim", head_dim)
    return per_token * _count("seq_len", seq_len, 0) * _count("batch", batch, 0) * _positive("bytes_per_value",
                                                                                          bytes_per_value)


def max_sequences_in_memory(free_bytes, kv_bytes_per_sequence):
    """How many sequences' KV-caches fit: floor(free HBM / KV bytes per sequence)."""
    return math.floor(_non_negative("free_bytes", free_bytes) / _positive("kv_bytes_per_sequence",
                                                                          kv_bytes_per_sequence))


def zero_bytes_per_gpu(n_params, dp, zero_stage, model_parallel=1, weight_bytes=2, grad_bytes=2,
                       optimizer_bytes=12):
    """Training state per GPU with ZeRO sharding over `dp` data-parallel ranks (activations not included).

    Mixed-precision Adam keeps 2 (bf16 weights) + 2 (bf16 grads) + 12 (fp32 master copy, m and v) = 16 B/param.
    Tensor/pipeline parallelism (model_parallel = TP·PP) splits all of it; ZeRO then shards over dp:
      stage 0: (w + g + o)·N/mp        stage 1: (w + g)·N/mp + o·N/(mp·dp)
      stage 2: w·N/mp + (g + o)·N/(mp·dp)        stage 3 (= FSDP full shard): (w + g + o)·N/(mp·dp)
    """
    n = _non_negative("n_params", n_params) / _count("model_parallel", model_parallel)
    dp = _count("dp", dp)
    stage = _count("zero_stage", zero_stage, 0)
    if stage > 3:
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    w, g, o = (_non_negative(k, v) for k, v in
               (("weight_bytes", weight_bytes), ("grad_bytes", grad_bytes), ("optimizer_bytes", optimizer_bytes)))
    sharded = {0: 0.0, 1: o, 2: g + o, 3: w + g + o}[stage]
    return n * (w + g + o - sharded) + n * sharded / dp


def lora_params(rank, layer_shapes, n_layers=1):
    """Trainable LoRA parameters: each adapted (d_in × d_out) matrix gets A (d_in × r) and B (r × d_out),
    so r · (d_in + d_out) per matrix, summed over the matrices of one layer, times the layers."""
    rank = _count("rank", rank)
    per_layer = 0
    for shape in layer_shapes:
        if len(shape) != 2:
            raise ValueError(f"layer_shapes must hold [d_in, d_out] pairs, got {shape!r}")
        per_layer += rank * (_count("d_in", shape[0]) + _count("d_out", shape[1]))
    return per_layer * _count("n_layers", n_layers)


# ---------------------------------------------------------------------------------------------------------
# Compute: FLOPs, time, GPU count
# ---------------------------------------------------------------------------------------------------------
def training_flops(n_params, n_tokens):
    """Dense transformer training ≈ 6·N·D: 2·N per token forward, 4·N backward (attention FLOPs ignored)."""
    return 6 * _non_negative("n_params", n_params) * _non_negative("n_tokens", n_tokens)


def lora_training_flops(n_params, n_tokens):
    """LoRA ≈ 4·N·D: the frozen weights still run forward (2·N) and pass gradients back to the input (2·N);
    only the weight-gradient pass (the other 2·N) is skipped. Trainable parameters are ~1%, FLOPs are ~2/3."""
    return 4 * _non_negative("n_params", n_params) * _non_negative("n_tokens", n_tokens)


def inference_flops(n_params, n_tokens):
    """Forward pass only ≈ 2·N·D (one multiply and one add per weight per token)."""
    return 2 * _non_negative("n_params", n_params) * _non_negative("n_tokens", n_tokens)


def gpu_seconds(total_flops, peak_flops, mfu):
    """GPU-seconds = FLOPs / (peak FLOP/s · MFU). MFU already is the fraction of peak actually achieved."""
    return _non_negative("total_flops", total_flops) / (_positive("peak_flops", peak_flops) * _fraction("mfu", mfu))


def training_days(total_flops, n_gpus, peak_flops, mfu):
    """Wall-clock days = FLOPs / (n_gpus · peak · MFU) / 86 400 (assumes perfect scaling; MFU absorbs losses)."""
    return gpu_seconds(total_flops, peak_flops, mfu) / _count("n_gpus", n_gpus) / SECONDS_PER_DAY


def prefill_tokens_per_s(n_params, peak_flops, mfu):
    """Prompt tokens/s per GPU, compute bound: peak · MFU / (2·N FLOPs per token)."""
    return _positive("peak_flops", peak_flops) * _fraction("mfu", mfu) / (2 * _positive("n_params", n_params))


def decode_tokens_per_s_bound(weight_bytes, mem_bandwidth, batch=1, kv_bytes_per_seq=0):
    """Memory-bandwidth roofline for decoding: every step streams the weights once plus each sequence's KV-cache,
    and yields one token per sequence, so tokens/s <= batch · bandwidth / (weights + batch · kv_per_seq)."""
    batch = _count("batch", batch)
    step_bytes = _positive("weight_bytes", weight_bytes) + batch * _non_negative("kv_bytes_per_seq",
                                                                                 kv_bytes_per_seq)
    return batch * _positive("mem_bandwidth", mem_bandwidth) / step_bytes


def gpus_for_qps(qps, tokens_per_request, tokens_per_s_per_gpu, utilization=1.0):
    """GPUs = ceil(QPS · tokens per request / (tokens/s per GPU · target utilisation))."""
    load = _non_negative("qps", qps) * _non_negative("tokens_per_request", tokens_per_request)
    return _ceil(load / (_positive("tokens_per_s_per_gpu", tokens_per_s_per_gpu)
                         * _fraction("utilization", utilization)))


def gpus_for_rate(rate, per_gpu_rate, utilization=1.0, spare=0):
    """Units to serve a rate: ceil(rate / (per-unit rate · utilisation)) + spares (N+1 redundancy: spare=1)."""
    needed = _ceil(_non_negative("rate", rate) / (_positive("per_gpu_rate", per_gpu_rate)
                                                   * _fraction("utilization", utilization)))
    return needed + _count("spare", spare, 0)


def concurrency(rate, latency_s):
    """Little's law: items in flight = arrival rate · time each spends in the system."""
    return _non_negative("rate", rate) * _non_negative("latency_s", latency_s)


# ---------------------------------------------------------------------------------------------------------
# Communication and data movement
# ---------------------------------------------------------------------------------------------------------
def allreduce_bytes_per_gpu(n_bytes, n_gpus):
    """Ring all-reduce: each GPU sends (and receives) 2·(N−1)/N · B bytes (reduce-scatter, then all-gather)."""
    n = _count("n_gpus", n_gpus)
    return 2 * (n - 1) / n * _non_negative("n_bytes", n_bytes)


def allreduce_seconds(n_bytes, n_gpus, link_bytes_per_s):
    """Ring all-reduce time = 2·(N−1)/N · B / per-direction link bandwidth (NVLink and IB figures are often
    quoted bidirectional: 600 GB/s on A100 NVLink is 300 GB/s each way)."""
    return allreduce_bytes_per_gpu(n_bytes, n_gpus) / _positive("link_bytes_per_s", link_bytes_per_s)


def transfer_seconds(n_bytes, bytes_per_s):
    """Time to move bytes over a link: B / bandwidth."""
    return _non_negative("n_bytes", n_bytes) / _positive("bytes_per_s", bytes_per_s)


def pcie_bytes_per_s(gigatransfers_per_s, lanes):
    """PCIe per direction: GT/s · lanes · 128/130 (gen 3+ line code) / 8 bits. Gen4 x16 = 31.5 GB/s."""
    return _positive("gigatransfers_per_s", gigatransfers_per_s) * 1e9 * _count("lanes", lanes) * 128 / 130 / 8


# ---------------------------------------------------------------------------------------------------------
# Rooflines and accelerators
# ---------------------------------------------------------------------------------------------------------
def ridge_point(peak_flops, mem_bandwidth):
    """Arithmetic intensity (FLOPs/byte) above which a kernel is compute bound: peak / bandwidth."""
    return _positive("peak_flops", peak_flops) / _positive("mem_bandwidth", mem_bandwidth)


def attainable_flops(intensity, peak_flops, mem_bandwidth):
    """Roofline: attainable FLOP/s = min(peak, intensity · bandwidth)."""
    return min(_positive("peak_flops", peak_flops),
               _non_negative("intensity", intensity) * _positive("mem_bandwidth", mem_bandwidth))


def conv2d_flops(c_in, c_out, kernel, h_out, w_out, batch=1, groups=1):
    """Convolution FLOPs = 2 · (c_in/groups) · k² · c_out · H_out · W_out · batch (2 = multiply + add)."""
    return (2 * _count("c_in", c_in) / _count("groups", groups) * _count("kernel", kernel) ** 2
            * _count("c_out", c_out) * _count("h_out", h_out) * _count("w_out", w_out) * _count("batch", batch))


def conv2d_bytes(c_in, c_out, kernel, h, w, batch=1, groups=1, bytes_per_value=2):
    """Minimum HBM traffic of a stride-1 'same' convolution: read input and weights once, write output once."""
    activations = (_count("c_in", c_in) + _count("c_out", c_out)) * _count("h", h) * _count("w", w) * _count(
        "batch", batch)
    weights = c_in // _count("groups", groups) * c_out * _count("kernel", kernel) ** 2
    return (activations + weights) * _positive("bytes_per_value", bytes_per_value)


def systolic_peak_flops(n_arrays, array_dim, clock_hz):
    """A dim×dim systolic array does dim² multiply-accumulates per cycle (2 FLOPs each):
    peak = arrays · dim² · 2 · clock. A 128×128 MXU: 16 384 MACs per cycle."""
    return _count("n_arrays", n_arrays) * _count("array_dim", array_dim) ** 2 * 2 * _positive("clock_hz", clock_hz)


# ---------------------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------------------
def gpu_cost_usd(n_gpus, hours, usd_per_gpu_hour):
    """Cost = GPUs · hours · $/GPU-hour."""
    return _non_negative("n_gpus", n_gpus) * _non_negative("hours", hours) * _non_negative("usd_per_gpu_hour",
                                                                                          usd_per_gpu_hour)


def cost_per_million_tokens(usd_per_gpu_hour, tokens_per_s_per_gpu):
    """$/M tokens = $/GPU-hour / (tokens/s · 3600 s/h) · 1e6. Works for any item: frames, images, queries."""
    return (_non_negative("usd_per_gpu_hour", usd_per_gpu_hour)
            / (_positive("tokens_per_s_per_gpu", tokens_per_s_per_gpu) * SECONDS_PER_HOUR) * 1e6)


# ---------------------------------------------------------------------------------------------------------
# Storage and retrieval indexes
# ---------------------------------------------------------------------------------------------------------
def storage_bytes(items_per_s, bytes_per_item, retention_days, replication=1):
    """Stored bytes = rate · size · 86 400 s/day · retention days · replicas."""
    return (_non_negative("items_per_s", items_per_s) * _non_negative("bytes_per_item", bytes_per_item)
            * SECONDS_PER_DAY * _non_negative("retention_days", retention_days) * _count("replication", replication))


def hnsw_memory_bytes(n_vectors, dim, m=16, bytes_per_dim=4, id_bytes=4):
    """HNSW = vectors + graph. Layer 0 keeps up to 2·M neighbour ids per vector; a vector reaches layer ≥ k with
    probability M^-k, so the upper layers add M/(M−1) ids on average:
      bytes = n · (dim · bytes_per_dim + id_bytes · (2·M + M/(M−1)))."""
    m = _count("m", m, 2)
    per_vector = _count("dim", dim) * _positive("bytes_per_dim", bytes_per_dim) + _positive(
        "id_bytes", id_bytes) * (2 * m + m / (m - 1))
    return _non_negative("n_vectors", n_vectors) * per_vector


def lsh_candidate_probability(similarity, bands, rows):
    """MinHash LSH S-curve: two documents with Jaccard s share at least one band with probability
    1 − (1 − s^r)^b  (a band of r rows matches with probability s^r)."""
    if not 0 <= _number("similarity", similarity) <= 1:
        raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
    return 1 - (1 - similarity ** _count("rows", rows)) ** _count("bands", bands)


def lsh_layout_check(num_perm, bands, rows):
    """bands · rows permutations are consumed; more than num_perm is impossible. Returns the permutations used."""
    used = _count("bands", bands) * _count("rows", rows)
    if used > _count("num_perm", num_perm):
        raise ValueError(f"{bands} bands × {rows} rows needs {used} permutations but only {num_perm} exist; "
                         f"use at most {num_perm // rows} bands of {rows} rows")
    return used


def _s_curve_areas(threshold, bands, rows, nodes, weights):
    """∫₀ᵗ P(s) ds (false positives) and ∫ₜ¹ 1 − P(s) ds (false negatives) by Gauss–Legendre quadrature.
    P is a polynomial of degree b·r <= num_perm, and n nodes integrate degree 2n − 1 exactly."""
    def integral(lo, hi, f):
        s = (hi - lo) / 2 * nodes + (hi + lo) / 2
        return (hi - lo) / 2 * float(np.sum(weights * f(s)))
    curve = lambda s: 1 - (1 - s ** rows) ** bands  # noqa: E731
    return integral(0.0, threshold, curve), integral(threshold, 1.0, lambda s: 1 - curve(s))


class LshParams(tuple):
    """(bands, rows) with names: `params.bands`, `params.rows`."""
    bands = property(lambda self: self[0])
    rows = property(lambda self: self[1])


@functools.lru_cache(maxsize=256)  # a pure function that searches every (b, r): remember answers
def minhash_lsh_params(num_perm, threshold, fp_weight=0.5, fn_weight=0.5):
    """Bands b and rows r (b·r <= num_perm) that minimise fp_weight · (area under the S-curve below the
    threshold) + fn_weight · (area above the curve beyond it); the curve's midpoint is about (1/b)^(1/r)."""
    num_perm = _count("num_perm", num_perm)
    _fraction("threshold", threshold)
    _non_negative("fp_weight", fp_weight), _non_negative("fn_weight", fn_weight)
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 2)
    best, best_error = None, math.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp, fn = _s_curve_areas(threshold, bands, rows, nodes, weights)
            error = fp_weight * fp + fn_weight * fn
            if error < best_error - 1e-12:
                best, best_error = (bands, rows), error
    return LshParams(best)


# ---------------------------------------------------------------------------------------------------------
# Vision: frames, video, serving
# ---------------------------------------------------------------------------------------------------------
def raw_frame_bytes(width, height, channels=3, bytes_per_channel=1):
    """Decoded frame = W · H · channels · bytes (1920×1080 BGR uint8 = 6 220 800 B)."""
    return (_count("width", width) * _count("height", height) * _count("channels", channels)
            * _positive("bytes_per_channel", bytes_per_channel))


def video_ingest_bytes_per_s(n_streams, fps, bytes_per_frame):
    """Ingest bandwidth = streams · frames/s · bytes per frame (use bitrate/8/fps for a compressed stream)."""
    return _non_negative("n_streams", n_streams) * _non_negative("fps", fps) * _non_negative("bytes_per_frame",
                                                                                            bytes_per_frame)


def batch_latency_s(flops_per_frame, batch, peak_flops, mfu, overhead_s=0.0):
    """Compute-bound batch latency = fixed overhead + batch · FLOPs per frame / (peak · MFU)."""
    return _non_negative("overhead_s", overhead_s) + _count("batch", batch) * _positive(
        "flops_per_frame", flops_per_frame) / (_positive("peak_flops", peak_flops) * _fraction("mfu", mfu))


def frames_per_s_per_gpu(flops_per_frame, batch, peak_flops, mfu, overhead_s=0.0):
    """Frames/s per GPU = batch / batch latency: batching amortises the fixed per-call overhead."""
    return batch / batch_latency_s(flops_per_frame, batch, peak_flops, mfu, overhead_s)


def throughput_from_latency(batch, latency_s):
    """Measured throughput of one replica = batch / batch latency (items/s)."""
    return _count("batch", batch) / _positive("latency_s", latency_s)


def largest_batch_within_slo(batch_sizes: Sequence, batch_latencies_s: Sequence, slo_s, max_queue_s=0.0):
    """The largest batch whose worst case (queue wait + batch latency) stays within the latency SLO."""
    if len(batch_sizes) != len(batch_latencies_s) or not batch_sizes:
        raise ValueError("batch_sizes and batch_latencies_s must be non-empty lists of the same length")
    fits = [b for b, lat in zip(batch_sizes, batch_latencies_s)
            if _non_negative("max_queue_s", max_queue_s) + _positive("batch latency", lat) <= _positive("slo_s",
                                                                                                        slo_s)]
    if not fits:
        raise ValueError(f"no batch size meets the {slo_s} s SLO with {max_queue_s} s of queueing; "
                         f"lower the queue delay or use a faster model")
    return max(fits)


def replica_throughput_within_slo(batch_sizes: Sequence, batch_latencies_s: Sequence, slo_s, max_queue_s=0.0):
    """Items/s of one replica running the largest SLO-safe batch: batch / its latency."""
    batch = largest_batch_within_slo(batch_sizes, batch_latencies_s, slo_s, max_queue_s)
    return throughput_from_latency(batch, batch_latencies_s[list(batch_sizes).index(batch)])


def serving_replicas_for_slo(rps, batch_sizes, batch_latencies_s, slo_s, max_queue_s=0.0, utilization=0.7,
                             spare=1):
    """Replicas = ceil(rps / (throughput at the largest SLO-safe batch · utilisation)) + spares."""
    per_replica = replica_throughput_within_slo(batch_sizes, batch_latencies_s, slo_s, max_queue_s)
    return gpus_for_rate(rps, per_replica, utilization, spare)


# ---------------------------------------------------------------------------------------------------------
# Evaluation statistics
# ---------------------------------------------------------------------------------------------------------
def wilson_interval(successes, n, z=1.96):
    """Wilson score interval for a proportion: (p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)."""
    n = _count("n", n)
    if not 0 <= _non_negative("successes", successes) <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes!r}")
    p, z2 = successes / n, _positive("z", z) ** 2
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low, high = (centre - half) / (1 + z2 / n), (centre + half) / (1 + z2 / n)
    # The interval always holds p̂ inside [0, 1]; clamp float noise (at 0 successes the bound is 0, not ±1e-17).
    return (min(max(0.0, low), p), max(min(1.0, high), p))


def margin_of_error(rate, n, z=1.96):
    """Half the width of the Wilson interval around an observed rate on n items: the ± to quote with it."""
    if not 0 <= _number("rate", rate) <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    low, high = wilson_interval(rate * _count("n", n), n, z)
    return (high - low) / 2


def samples_for_margin(margin, p=0.5, z=1.96):
    """Items for a ±margin confidence interval on a proportion: n = ceil(z² · p(1−p) / margin²)."""
    _fraction("margin", margin)
    _fraction("p", p)
    return math.ceil(_positive("z", z) ** 2 * p * (1 - p) / margin ** 2)


def samples_for_power(p0, p1, z_alpha=1.959964, z_beta=0.841621):
    """Items to tell p1 from p0 (one-sample test, normal approximation; defaults: two-sided α = 0.05, power 0.8):
    n = ceil(((z_α·sqrt(p0(1−p0)) + z_β·sqrt(p1(1−p1))) / (p1 − p0))²)."""
    _fraction("p0", p0), _fraction("p1", p1)
    if p0 == p1:
        raise ValueError("p0 and p1 must differ: there is no difference to detect")
    spread = _positive("z_alpha", z_alpha) * math.sqrt(p0 * (1 - p0)) + _positive("z_beta", z_beta) * math.sqrt(
        p1 * (1 - p1))
    return math.ceil((spread / (p1 - p0)) ** 2)


# The functions a scenario formula may call (and the render step exposes to document templates).
FORMULAS = {f.__name__: f for f in (
    model_weights_bytes, kv_cache_bytes, max_sequences_in_memory, zero_bytes_per_gpu, lora_params,
    training_flops, lora_training_flops, inference_flops, gpu_seconds, training_days, prefill_tokens_per_s,
    decode_tokens_per_s_bound, gpus_for_qps, gpus_for_rate, concurrency,
    allreduce_bytes_per_gpu, allreduce_seconds, transfer_seconds, pcie_bytes_per_s,
    ridge_point, attainable_flops, conv2d_flops, conv2d_bytes, systolic_peak_flops,
    gpu_cost_usd, cost_per_million_tokens,
    storage_bytes, hnsw_memory_bytes, lsh_candidate_probability, lsh_layout_check, minhash_lsh_params,
    raw_frame_bytes, video_ingest_bytes_per_s, batch_latency_s, frames_per_s_per_gpu, throughput_from_latency,
    largest_batch_within_slo, replica_throughput_within_slo, serving_replicas_for_slo,
    wilson_interval, margin_of_error, samples_for_margin, samples_for_power,
)}


def main(argv: list[str] | None = None) -> int:
    """`capacity.py <scenario name or path>` prints its sheet; `--list` lists the shipped scenarios."""
    import argparse

    import sheets

    parser = argparse.ArgumentParser(prog="capacity.py", description="Print a capacity scenario's sheet: its "
                                     "inputs, then every derived value with the formula that produced it.")
    parser.add_argument("scenario", nargs="?", help="a scenario name (see --list) or a path to a .toml file")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print(sheets.list_scenarios())
            return 0
        if not args.scenario:
            raise sheets.ScenarioError("give a scenario name or path; available: " + ", ".join(sheets.names()))
        print(sheets.render_sheet(sheets.load(args.scenario)))
        return 0
    except sheets.ScenarioError as err:
        print(f"capacity.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
