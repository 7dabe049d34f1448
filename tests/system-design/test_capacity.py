"""The capacity formulas against hand-worked cases, published model geometries and figures, independent
references (datasketch, scipy) and properties. Every expected number is worked out in the comment beside it."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


# ---------------------------------------------------------------------------------------------------------
# KV-cache and weights: published geometries
# ---------------------------------------------------------------------------------------------------------
def test_kv_cache_llama3_8b_at_8k_in_bf16_is_exactly_one_gib(capacity):
    # Llama-3-8B: 32 layers, 8 KV heads (GQA), head_dim 128. 2 · 32 · 8 · 128 · 8192 · 2 = 1,073,741,824 = 2^30.
    assert capacity.kv_cache_bytes(32, 8, 128, 8192) == 1_073_741_824


def test_kv_cache_llama3_70b_at_128k(capacity):
    # Llama-3-70B: 80 layers, 8 KV heads, head_dim 128. 2 · 80 · 8 · 128 · 131072 · 2 = 42,949,672,960 (≈ 42.9 GB,
    # 40 GiB); fp8 halves it to 21,474,836,480. The often-quoted "~10 GB" is wrong by 4×.
    assert capacity.kv_cache_bytes(80, 8, 128, 131072) == 42_949_672_960
    assert capacity.kv_cache_bytes(80, 8, 128, 131072, bytes_per_value=1) == 21_474_836_480


def test_kv_cache_without_gqa_is_heads_ratio_larger(capacity):
    # Llama-2-7B has no GQA: 32 layers, 32 KV heads, 128 dims. At 4096 tokens, batch 4, fp16:
    # 2 · 32 · 32 · 128 · 4096 · 4 · 2 = 8,589,934,592 bytes (8 GiB), 4× Llama-3-8B's 8 KV heads at the same size.
    mha = capacity.kv_cache_bytes(32, 32, 128, 4096, batch=4)
    assert mha == 8_589_934_592
    assert mha == 4 * capacity.kv_cache_bytes(32, 8, 128, 4096, batch=4)


def test_model_weights(capacity):
    assert capacity.model_weights_bytes(70e9, 2) == 140e9          # 70B in bf16
    assert capacity.model_weights_bytes(8.03e9, 1) == 8.03e9       # 8B in fp8
    assert capacity.model_weights_bytes(25.9e6, 0.5) == 12.95e6    # YOLOv8m in int4


def test_max_sequences_in_memory(capacity):
    # 4 × 80 GB − 70.6 GB fp8 weights = 249.4 GB free; 21,474,836,480 B per 128k sequence → 11.6 → 11.
    assert capacity.max_sequences_in_memory(4 * 80e9 - 70.6e9, 21_474_836_480) == 11


# ---------------------------------------------------------------------------------------------------------
# Training compute and time
# ---------------------------------------------------------------------------------------------------------
def test_training_flops_published_runs(capacity):
    # GPT-3 175B on 300B tokens: 6 · 175e9 · 300e9 = 3.15e23 (the paper reports 3.14e23 FLOPs).
    assert capacity.training_flops(175e9, 300e9) == pytest.approx(3.15e23)
    # Chinchilla 70B on 1.4T tokens: 6 · 70e9 · 1.4e12 = 5.88e23.
    assert capacity.training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)
    # The 70B / 1.5T design: 6 · 70e9 · 1.5e12 = 6.3e23.
    assert capacity.training_flops(70e9, 1.5e12) == pytest.approx(6.3e23)


def test_gpu_seconds_are_billions_not_millions(capacity):
    # 6.3e23 / (400e12 · 0.45) = 6.3e23 / 1.8e14 = 3.5e9 GPU-seconds (a write-up says "3.5M").
    assert capacity.gpu_seconds(6.3e23, 400e12, 0.45) == pytest.approx(3.5e9)


def test_training_days_on_1024_and_4096_gpus(capacity):
    # 3.5e9 GPU-s / 1024 = 3,417,968.75 s = 39.56 days; / 4096 = 9.89 days.
    assert capacity.training_days(6.3e23, 1024, 400e12, 0.45) == pytest.approx(39.5598, abs=1e-4)
    assert capacity.training_days(6.3e23, 4096, 400e12, 0.45) == pytest.approx(9.88995, abs=1e-4)
    # At H100 peak 989e12 and 40% MFU: 6.3e23 / (1024 · 989e12 · 0.4) = 1,555,193 s = 17.9999 days.
    assert capacity.training_days(6.3e23, 1024, 989e12, 0.4) == pytest.approx(17.9999, abs=1e-4)


def test_lora_and_inference_flops(capacity):
    # LoRA ≈ 4·N·D: 4 · 8e9 · 1e6 = 3.2e16; inference 2·N·D = 1.6e16; both against full 6·N·D = 4.8e16.
    assert capacity.lora_training_flops(8e9, 1e6) == pytest.approx(3.2e16)
    assert capacity.inference_flops(8e9, 1e6) == pytest.approx(1.6e16)
    assert capacity.lora_training_flops(8e9, 1e6) / capacity.training_flops(8e9, 1e6) == pytest.approx(2 / 3)


def test_zero_memory_matches_the_zero_paper(capacity):
    # ZeRO paper, Figure 1: 7.5B parameters, 64 data-parallel GPUs, K = 12 optimizer bytes per parameter.
    # Baseline 16 · 7.5 = 120 GB; stage 1: 4 · 7.5 + 12 · 7.5 / 64 = 31.40625 GB;
    # stage 2: 2 · 7.5 + 14 · 7.5 / 64 = 16.640625 GB; stage 3: 16 · 7.5 / 64 = 1.875 GB.
    got = [capacity.zero_bytes_per_gpu(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert got == pytest.approx([120, 31.40625, 16.640625, 1.875])


def test_zero_with_model_parallelism(capacity):
    # 70e9 over TP·PP = 16 and ZeRO-1 over 64 replicas: 4 · 70e9 / 16 + 12 · 70e9 / 1024 = 17.5e9 + 0.8203125e9.
    assert capacity.zero_bytes_per_gpu(70e9, 64, 1, 16) == pytest.approx(18.3203125e9)
    # fp32 DDP vs FSDP for 2.5e9 params on 4 GPUs (4 + 4 + 8 bytes): 40 GB vs 10 GB.
    assert capacity.zero_bytes_per_gpu(2.5e9, 4, 0, 1, 4, 4, 8) == pytest.approx(40e9)
    assert capacity.zero_bytes_per_gpu(2.5e9, 4, 3, 1, 4, 4, 8) == pytest.approx(10e9)


def test_lora_params_llama3_8b_rank16(capacity):
    # Per layer: q and o 16 · (4096 + 4096) each, k and v 16 · (4096 + 1024) each, gate, up and down
    # 16 · (4096 + 14336) each: 262,144 + 163,840 + 884,736 = 1,310,720; × 32 layers = 41,943,040 (what peft
    # reports for rank 16 on all linear layers of Llama-3-8B).
    shapes = [[4096, 4096], [4096, 1024], [4096, 1024], [4096, 4096], [4096, 14336], [4096, 14336], [14336, 4096]]
    assert capacity.lora_params(16, shapes, 32) == 41_943_040


# ---------------------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------------------
def test_prefill_rate(capacity):
    # 1979e12 · 0.5 / (2 · 8.03e9) = 989.5e12 / 16.06e9 = 61,612.70 tokens/s.
    assert capacity.prefill_tokens_per_s(8.03e9, 1979e12, 0.5) == pytest.approx(61612.70, rel=1e-6)


def test_decode_roofline(capacity):
    # Batch 1, 8e9 bytes of weights at 3.35e12 B/s: 418.75 tokens/s.
    assert capacity.decode_tokens_per_s_bound(8e9, 3.35e12) == pytest.approx(418.75)
    # Batch 128 with 65,536,000 B of KV each: 4.288e14 / (8.03e9 + 8.388608e9) = 4.288e14 / 16.418608e9 = 26,116.7.
    assert capacity.decode_tokens_per_s_bound(8.03e9, 3.35e12, 128, 65_536_000) == pytest.approx(26116.7, rel=1e-5)


def test_gpus_for_qps_matches_the_quoted_fleet(capacity):
    # 70k QPS × 1000 tokens at 3000 tokens/s per GPU: 23,333.3 → 23,334; 30k × 1000 / 600 = 50,000 exactly.
    assert capacity.gpus_for_qps(70_000, 1000, 3000) == 23_334
    assert capacity.gpus_for_qps(30_000, 1000, 600) == 50_000
    # At 70% target utilisation: 30e6 / (600 · 0.7) = 71,428.6 → 71,429.
    assert capacity.gpus_for_qps(30_000, 1000, 600, 0.7) == 71_429


def test_cost_per_million_tokens(capacity):
    # $4/h ÷ (3000 tok/s · 3600 s/h) · 1e6 = $0.370 (a write-up says $0.20); $2/h at 5556 tok/s is $0.10.
    assert capacity.cost_per_million_tokens(4.0, 3000) == pytest.approx(0.37037, abs=1e-5)
    assert capacity.cost_per_million_tokens(2.0, 5555.5) == pytest.approx(0.1, abs=1e-5)


def test_gpu_cost(capacity):
    # 1024 GPUs × 40 days × 24 h × $4 = $3,932,160.
    assert capacity.gpu_cost_usd(1024, 40 * 24, 4.0) == pytest.approx(3_932_160)


def test_concurrency_and_rate(capacity):
    # 100 cameras × 30 fps at 20 ms each: 60 frames in flight (Little's law).
    assert capacity.concurrency(3000, 0.020) == pytest.approx(60)
    # 30,000 frames/s at 1454.5/s per GPU: 20.6 → 21; at 70% and one spare: ceil(29.46) + 1 = 31.
    assert capacity.gpus_for_rate(30_000, 32 / 0.022) == 21
    assert capacity.gpus_for_rate(30_000, 32 / 0.022, 0.7, 1) == 31


# ---------------------------------------------------------------------------------------------------------
# Communication and data movement
# ---------------------------------------------------------------------------------------------------------
def test_ring_allreduce_volume(capacity):
    # 2 · 7/8 · 1 GB = 1.75 GB per GPU on 8 GPUs; 14 GB of 7B bf16 gradients → 24.5 GB; 2 GPUs send B exactly.
    assert capacity.allreduce_bytes_per_gpu(1e9, 8) == pytest.approx(1.75e9)
    assert capacity.allreduce_bytes_per_gpu(14e9, 8) == pytest.approx(24.5e9)
    assert capacity.allreduce_bytes_per_gpu(1e9, 2) == pytest.approx(1e9)
    assert capacity.allreduce_bytes_per_gpu(1e9, 1) == 0


def test_ring_allreduce_time(capacity):
    # 1.75 GB at 300 GB/s (A100 NVLink, each way) = 5.833 ms, not the 1.7 ms of "1 GB / 600 GB/s".
    assert capacity.allreduce_seconds(1e9, 8, 300e9) == pytest.approx(5.8333e-3, rel=1e-4)
    # 24.5 GB at 450 GB/s (H100 NVLink, each way) = 54.4 ms.
    assert capacity.allreduce_seconds(14e9, 8, 450e9) == pytest.approx(0.05444, rel=1e-3)


def test_pcie_and_transfers(capacity):
    # Gen4 x16: 16e9 · 16 · 128/130 / 8 = 31.5077e9 B/s each way; Gen5 x16 doubles it (63.0 GB/s).
    assert capacity.pcie_bytes_per_s(16, 16) == pytest.approx(31.5077e9, rel=1e-5)
    assert capacity.pcie_bytes_per_s(32, 16) == pytest.approx(63.0154e9, rel=1e-5)
    assert capacity.transfer_seconds(31.5e9, 31.5e9) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------
# Rooflines and accelerators
# ---------------------------------------------------------------------------------------------------------
def test_ridge_points_and_roofline(capacity):
    # A100 80GB: 312e12 / 2.039e12 = 153.0 FLOP/B; H100 SXM: 989e12 / 3.35e12 = 295.2 FLOP/B.
    assert capacity.ridge_point(312e12, 2.039e12) == pytest.approx(153.02, abs=0.01)
    assert capacity.ridge_point(989e12, 3.35e12) == pytest.approx(295.22, abs=0.01)
    # Below the ridge the bandwidth roof applies (4.5 · 2.039e12), above it the compute roof.
    assert capacity.attainable_flops(4.5, 312e12, 2.039e12) == pytest.approx(9.1755e12)
    assert capacity.attainable_flops(1000, 312e12, 2.039e12) == 312e12


def test_conv_counts(capacity):
    # 3×3, 256→256 on 80×80: 2 · 256 · 9 · 256 · 6400 = 7,549,747,200 FLOPs; fp16 traffic:
    # (256 + 256) · 6400 · 2 + 9 · 256 · 256 · 2 = 6,553,600 + 1,179,648 = 7,733,248 bytes.
    assert capacity.conv2d_flops(256, 256, 3, 80, 80) == 7_549_747_200
    assert capacity.conv2d_bytes(256, 256, 3, 80, 80) == 7_733_248
    # Depthwise (groups = channels): 2 · 1 · 9 · 256 · 6400 = 29,491,200 FLOPs; weights 9 · 256 · 2 bytes.
    assert capacity.conv2d_flops(256, 256, 3, 80, 80, groups=256) == 29_491_200
    assert capacity.conv2d_bytes(256, 256, 3, 80, 80, groups=256) == 6_553_600 + 4608


def test_systolic_array_peak(capacity):
    # A 128×128 array does 16,384 MACs per cycle; a TPU v4 chip (8 MXUs at 1.05 GHz) peaks at
    # 8 · 16384 · 2 · 1.05e9 = 2.752512e14 FLOP/s, Google's published 275 TFLOP/s.
    assert capacity.systolic_peak_flops(1, 128, 1.0) == 2 * 16_384
    assert capacity.systolic_peak_flops(8, 128, 1.05e9) == pytest.approx(2.752512e14)


# ---------------------------------------------------------------------------------------------------------
# Storage, HNSW, MinHash LSH
# ---------------------------------------------------------------------------------------------------------
def test_storage(capacity):
    # 300 frames/s × 0.2 MB × 86,400 s = 5.184 TB per day; × 30 days = 155.52 TB; replicated 3× = 466.56 TB.
    assert capacity.storage_bytes(300, 0.2e6, 1) == pytest.approx(5.184e12)
    assert capacity.storage_bytes(300, 0.2e6, 30) == pytest.approx(155.52e12)
    assert capacity.storage_bytes(300, 0.2e6, 30, 3) == pytest.approx(466.56e12)


def test_hnsw_memory(capacity):
    # M = 32, 768 fp32 dims: 3072 + 4 · (64 + 32/31) = 3332.129 bytes per vector; 500M vectors ≈ 1.666 TB.
    assert capacity.hnsw_memory_bytes(1, 768, 32) == pytest.approx(3072 + 4 * (64 + 32 / 31))
    assert capacity.hnsw_memory_bytes(500e6, 768, 32) == pytest.approx(1.666065e12, rel=1e-6)
    # M = 16, 128 dims: 512 + 4 · (32 + 16/15) = 644.267 bytes; FAISS's "d·4 + M·2·4" rule gives 640.
    assert capacity.hnsw_memory_bytes(1, 128, 16) == pytest.approx(644.2667, abs=1e-3)


def test_lsh_s_curve_by_hand(capacity):
    # b = 9, r = 13 at s = 0.8: 0.8^13 = 0.0549756; 0.9450244^9 = exp(9 · ln 0.9450244) = 0.6011561 → 0.3988439.
    assert capacity.lsh_candidate_probability(0.8, 9, 13) == pytest.approx(0.3988439, abs=1e-6)
    assert capacity.lsh_candidate_probability(0.0, 9, 13) == 0
    assert capacity.lsh_candidate_probability(1.0, 9, 13) == 1


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 64), (0.7, 128), (0.8, 128), (0.9, 128), (0.8, 256),
                                                 (0.3, 32)])
def test_minhash_params_match_datasketch(capacity, threshold, num_perm):
    from datasketch.lsh import _optimal_param  # datasketch's own search (scipy quad integration)

    assert tuple(capacity.minhash_lsh_params(num_perm, threshold)) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_minhash_params_weighted_match_datasketch(capacity):
    from datasketch.lsh import _optimal_param

    assert tuple(capacity.minhash_lsh_params(128, 0.8, 0.2, 0.8)) == _optimal_param(0.8, 128, 0.2, 0.8)
    params = capacity.minhash_lsh_params(128, 0.8)
    assert (params.bands, params.rows) == (9, 13)  # datasketch's answer for 128 permutations at 0.8


def test_lsh_layout_refuses_more_bands_than_permutations(capacity):
    # 1024 bands need at least 1024 permutations even at one row each; 128 is not enough.
    with pytest.raises(ValueError, match="1024 bands × 1 rows needs 1024 permutations but only 128 exist"):
        capacity.lsh_layout_check(128, 1024, 1)
    assert capacity.lsh_layout_check(128, 9, 13) == 117


# ---------------------------------------------------------------------------------------------------------
# Vision
# ---------------------------------------------------------------------------------------------------------
def test_frames_and_video(capacity):
    # 1920 · 1080 · 3 = 6,220,800 bytes; 1000 cameras × 30 fps × 0.2 MB = 6 GB/s.
    assert capacity.raw_frame_bytes(1920, 1080) == 6_220_800
    assert capacity.video_ingest_bytes_per_s(1000, 30, 0.2e6) == pytest.approx(6e9)
    # 4 Mbit/s H.264 per camera: 1000 × 30 × (4e6 / 8 / 30) = 500 MB/s.
    assert capacity.video_ingest_bytes_per_s(1000, 30, 4e6 / 8 / 30) == pytest.approx(500e6)


def test_frames_per_gpu_from_flops(capacity):
    # YOLOv8m, 78.9 GFLOPs, batch 32 on 312 TFLOP/s at 30%: 32 · 78.9e9 / 93.6e12 = 26.974 ms; + 2 ms = 28.974 ms;
    # 32 / 0.028974 = 1104.4 frames/s. Without the overhead: 93.6e12 / 78.9e9 = 1186.3.
    assert capacity.batch_latency_s(78.9e9, 32, 312e12, 0.3, 0.002) == pytest.approx(0.0289744, rel=1e-5)
    assert capacity.frames_per_s_per_gpu(78.9e9, 32, 312e12, 0.3, 0.002) == pytest.approx(1104.42, rel=1e-4)
    assert capacity.frames_per_s_per_gpu(78.9e9, 32, 312e12, 0.3) == pytest.approx(1186.31, rel=1e-4)


BATCHES, LATENCIES = [1, 8, 32, 64, 128], [0.008, 0.012, 0.022, 0.035, 0.060]


def test_batch_table_throughput(capacity):
    # 1/8 ms = 125; 8/12 ms = 666.7; 32/22 ms = 1454.5; 64/35 ms = 1828.6; 128/60 ms = 2133.3 requests/s.
    got = [capacity.throughput_from_latency(b, t) for b, t in zip(BATCHES, LATENCIES)]
    assert got == pytest.approx([125, 666.667, 1454.545, 1828.571, 2133.333], rel=1e-5)


@pytest.mark.parametrize("slo,queue,batch", [(0.035, 0, 64), (0.020, 0, 8), (0.100, 0, 128), (0.080, 0.050, 32),
                                             (0.085, 0.050, 64), (0.060, 0, 128), (0.0599, 0, 64)])
def test_largest_batch_within_slo_at_the_boundaries(capacity, slo, queue, batch):
    # A batch fits when queue + latency <= SLO: 35 ms fits a 35 ms SLO exactly; 60 ms does not fit 59.9 ms.
    assert capacity.largest_batch_within_slo(BATCHES, LATENCIES, slo, queue) == batch


def test_serving_replicas(capacity):
    # 1000 rps, 80 ms budget, 50 ms queue → batch 32 at 1454.5/s; at 70%: ceil(0.982) = 1, plus a spare = 2.
    assert capacity.serving_replicas_for_slo(1000, BATCHES, LATENCIES, 0.080, 0.050, 0.7, 1) == 2
    assert capacity.replica_throughput_within_slo(BATCHES, LATENCIES, 0.080, 0.050) == pytest.approx(1454.545,
                                                                                                    rel=1e-5)
    # A 20 ms SLO → batch 8 at 666.7/s: ceil(1000 / 466.7) = 3, plus a spare = 4.
    assert capacity.serving_replicas_for_slo(1000, BATCHES, LATENCIES, 0.020, 0, 0.7, 1) == 4


# ---------------------------------------------------------------------------------------------------------
# Evaluation statistics
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(450, 500), (104, 200), (0, 20), (20, 20), (416, 800)])
def test_wilson_interval_matches_scipy(capacity, k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert capacity.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-4)


def test_wilson_by_hand(capacity):
    # p = 0.9, n = 500: centre 0.9038416, half-width 0.0265753, denominator 1.0076832 → (0.870578, 0.923323).
    assert capacity.wilson_interval(450, 500) == pytest.approx((0.870578, 0.923323), abs=1e-6)
    # Margin at 50% on 200 items: (0.5 + ... ) ≈ ±6.86 points.
    assert capacity.margin_of_error(0.5, 200) == pytest.approx(0.0686, abs=1e-4)


def test_sample_sizes(capacity):
    from scipy.stats import norm

    # ±5 points at p = 0.5: 1.96² · 0.25 / 0.0025 = 384.16 → 385.
    assert capacity.samples_for_margin(0.05) == 385
    # 50% vs 55%, two-sided α 0.05, power 0.8: ((1.96 · 0.5 + 0.8416 · 0.4975) / 0.05)² = 782.5 → 783.
    assert capacity.samples_for_power(0.5, 0.55) == 783
    z_a, z_b = norm.ppf(0.975), norm.ppf(0.8)
    spread = z_a * math.sqrt(0.25) + z_b * math.sqrt(0.55 * 0.45)
    assert capacity.samples_for_power(0.5, 0.55) == math.ceil((spread / 0.05) ** 2)


# ---------------------------------------------------------------------------------------------------------
# Bad arguments: one-line ValueError naming the argument
# ---------------------------------------------------------------------------------------------------------
BAD = [
    ("training_days", (6.3e23, 0, 989e12, 0.4), "n_gpus must be a whole number >= 1"),
    ("training_days", (6.3e23, 1024, 989e12, 0), "mfu must be in (0, 1]"),
    ("training_days", (6.3e23, 1024, 989e12, 1.2), "mfu must be in (0, 1]"),
    ("training_days", (-1, 1024, 989e12, 0.4), "total_flops must be >= 0"),
    ("training_days", (6.3e23, 10.5, 989e12, 0.4), "n_gpus must be a whole number"),
    ("kv_cache_bytes", (32, 8, 128, -1), "seq_len must be a whole number >= 0"),
    ("kv_cache_bytes", (0, 8, 128, 8192), "n_layers must be a whole number >= 1"),
    ("kv_cache_bytes", (32, 8, 128, 8192, 1, 0), "bytes_per_value must be > 0"),
    ("model_weights_bytes", (-5, 2), "n_params must be >= 0"),
    ("training_flops", ("70e9", 1e12), "n_params must be a number"),
    ("allreduce_bytes_per_gpu", (1e9, 0), "n_gpus must be a whole number >= 1"),
    ("allreduce_seconds", (1e9, 8, 0), "link_bytes_per_s must be > 0"),
    ("gpus_for_qps", (1000, 100, 0), "tokens_per_s_per_gpu must be > 0"),
    ("gpus_for_qps", (1000, 100, 50, 0), "utilization must be in (0, 1]"),
    ("decode_tokens_per_s_bound", (8e9, 3.35e12, 0), "batch must be a whole number >= 1"),
    ("cost_per_million_tokens", (4.0, 0), "tokens_per_s_per_gpu must be > 0"),
    ("minhash_lsh_params", (128, 1.5), "threshold must be in (0, 1]"),
    ("minhash_lsh_params", (0, 0.8), "num_perm must be a whole number >= 1"),
    ("lsh_candidate_probability", (1.2, 9, 13), "similarity must be in [0, 1]"),
    ("hnsw_memory_bytes", (1e6, 768, 1), "m must be a whole number >= 2"),
    ("storage_bytes", (10, 100, -1), "retention_days must be >= 0"),
    ("zero_bytes_per_gpu", (7.5e9, 64, 4), "zero_stage must be 0, 1, 2 or 3"),
    ("wilson_interval", (12, 10), "successes must be between 0 and n=10"),
    ("samples_for_power", (0.5, 0.5), "p0 and p1 must differ"),
    ("largest_batch_within_slo", ([1, 8], [0.01], 0.1), "same length"),
    ("largest_batch_within_slo", ([1, 8], [0.05, 0.08], 0.04), "no batch size meets"),
    ("lora_params", (16, [[4096]]), "layer_shapes must hold [d_in, d_out] pairs"),
    ("raw_frame_bytes", (0, 1080), "width must be a whole number >= 1"),
    ("frames_per_s_per_gpu", (78.9e9, 32, 312e12, 0), "mfu must be in (0, 1]"),
]


@pytest.mark.parametrize("name,args,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise_one_line_value_errors(capacity, name, args, message):
    with pytest.raises(ValueError) as info:
        getattr(capacity, name)(*args)
    assert message in str(info.value), f"{name}{args}: expected '{message}' in '{info.value}'"
    assert "\n" not in str(info.value)


def test_every_formula_is_exposed(capacity):
    names = ["kv_cache_bytes", "model_weights_bytes", "training_flops", "training_days", "allreduce_bytes_per_gpu",
             "decode_tokens_per_s_bound", "gpus_for_qps", "cost_per_million_tokens", "minhash_lsh_params",
             "hnsw_memory_bytes", "storage_bytes", "frames_per_s_per_gpu", "video_ingest_bytes_per_s",
             "serving_replicas_for_slo"]
    missing = [n for n in names if n not in capacity.FORMULAS]
    assert not missing, f"not callable from scenarios: {missing}"


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------
dims = st.integers(min_value=1, max_value=256)


@settings(max_examples=60, deadline=None)
@given(layers=dims, heads=dims, head_dim=dims, seq=st.integers(0, 200_000), batch=st.integers(1, 64),
       k=st.integers(1, 16))
def test_kv_cache_is_linear_in_batch_and_monotone(capacity, layers, heads, head_dim, seq, batch, k):
    one = capacity.kv_cache_bytes(layers, heads, head_dim, seq, batch)
    assert capacity.kv_cache_bytes(layers, heads, head_dim, seq, batch * k) == k * one
    assert capacity.kv_cache_bytes(layers, heads, head_dim, seq + 1, batch) >= one
    assert capacity.kv_cache_bytes(layers + 1, heads, head_dim, seq, batch) >= one


@settings(max_examples=60, deadline=None)
@given(flops=st.floats(1e15, 1e26), gpus=st.integers(1, 100_000), mfu=st.floats(0.01, 1.0),
       k=st.integers(2, 8))
def test_training_days_scale_inversely_with_gpus(capacity, flops, gpus, mfu, k):
    days = capacity.training_days(flops, gpus, 989e12, mfu)
    assert capacity.training_days(flops, gpus * k, 989e12, mfu) == pytest.approx(days / k)
    assert days * gpus * 86400 == pytest.approx(capacity.gpu_seconds(flops, 989e12, mfu))


@settings(max_examples=60, deadline=None)
@given(n_bytes=st.floats(1, 1e12), n=st.integers(2, 4096))
def test_allreduce_volume_is_below_twice_the_data_and_grows_with_n(capacity, n_bytes, n):
    per_gpu = capacity.allreduce_bytes_per_gpu(n_bytes, n)
    assert n_bytes <= per_gpu < 2 * n_bytes
    assert capacity.allreduce_bytes_per_gpu(n_bytes, n + 1) >= per_gpu


@settings(max_examples=60, deadline=None)
@given(s=st.floats(0, 1), t=st.floats(0, 1), bands=st.integers(1, 64), rows=st.integers(1, 32))
def test_s_curve_is_monotone(capacity, s, t, bands, rows):
    lo, hi = sorted((s, t))
    assert capacity.lsh_candidate_probability(lo, bands, rows) <= capacity.lsh_candidate_probability(hi, bands, rows)


@settings(max_examples=15, deadline=None)
@given(num_perm=st.integers(2, 48), threshold=st.floats(0.05, 0.95))
def test_minhash_params_never_use_more_permutations_than_exist(capacity, num_perm, threshold):
    params = capacity.minhash_lsh_params(num_perm, threshold)
    assert 1 <= params.bands * params.rows <= num_perm


@settings(max_examples=60, deadline=None)
@given(qps=st.floats(0, 1e6, allow_subnormal=False), tokens=st.integers(1, 10_000), rate=st.floats(1, 1e6),
       util=st.floats(0.1, 1))
def test_gpus_for_qps_is_the_smallest_sufficient_count(capacity, qps, tokens, rate, util):
    gpus = capacity.gpus_for_qps(qps, tokens, rate, util)
    load, per_gpu = qps * tokens, rate * util
    assert gpus * per_gpu >= load * (1 - 1e-12)
    assert gpus == 0 or (gpus - 1) * per_gpu < load
    assert capacity.gpus_for_qps(qps * 2, tokens, rate, util) >= gpus


@settings(max_examples=60, deadline=None)
@given(weights=st.floats(1e8, 1e12), kv=st.floats(0, 1e10), batch=st.integers(1, 512))
def test_decode_bound_grows_with_batch_but_stays_under_the_kv_limit(capacity, weights, kv, batch):
    bound = capacity.decode_tokens_per_s_bound(weights, 3.35e12, batch, kv)
    assert capacity.decode_tokens_per_s_bound(weights, 3.35e12, batch + 1, kv) >= bound
    if kv > 0:
        assert bound <= 3.35e12 / kv * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 1000), extra=st.integers(0, 1000))
def test_wilson_interval_contains_the_estimate(capacity, k, extra):
    n = k + extra + 1
    low, high = capacity.wilson_interval(k, n)
    assert 0 <= low <= k / n <= high <= 1


@settings(max_examples=40, deadline=None)
@given(n=st.floats(1, 1e10), dim=st.integers(1, 4096), m=st.integers(2, 64))
def test_hnsw_memory_is_linear_in_vectors_and_above_the_raw_vectors(capacity, n, dim, m):
    one = capacity.hnsw_memory_bytes(n, dim, m)
    assert capacity.hnsw_memory_bytes(2 * n, dim, m) == pytest.approx(2 * one)
    assert one > n * dim * 4
    assert capacity.hnsw_memory_bytes(n, dim, m + 1) > one
