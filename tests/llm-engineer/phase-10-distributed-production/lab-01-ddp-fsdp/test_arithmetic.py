"""In one process, no ranks: bucket planning, the ZeRO/FSDP memory arithmetic and the ring volumes.

References: hand-worked bucket cases and a brute-force greedy packer written here; the figures of the ZeRO paper
(Rajbhandari et al., 2020, Figure 1: 7.5B parameters on 64 GPUs); the ring algorithm's volumes worked by hand."""
import math

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def tensors(sizes_in_floats, frozen=()):
    out = []
    for i, n in enumerate(sizes_in_floats):
        t = torch.zeros(n, requires_grad=i not in frozen)
        out.append(t)
    return out


def greedy_reverse(sizes, cap, frozen=()):
    """Brute-force reference: the reverse order of trainable indices, cut wherever the running sum would exceed."""
    order = [i for i in reversed(range(len(sizes))) if i not in frozen]
    buckets = []
    for i in order:
        if buckets and sum(sizes[j] for j in buckets[-1]) + sizes[i] <= cap:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


# ---------------------------------------------------------------------------------------------- buckets

@pytest.mark.task("bucket-gradients")
def test_buckets_fill_in_reverse_order(impl):
    params = tensors([1, 1, 1])  # 4 bytes each
    got = impl.plan_buckets(params, cap_bytes=8)
    assert got == [[2, 1], [0]], f"sizes 4, 4, 4 bytes with cap 8: expected [[2, 1], [0]], got {got}"


@pytest.mark.task("bucket-gradients")
def test_bucket_exactly_at_the_cap_is_full_not_over(impl):
    params = tensors([2, 2, 3, 1])  # 8, 8, 12, 4 bytes
    got = impl.plan_buckets(params, cap_bytes=16)
    assert got == [[3, 2], [1, 0]], f"12 + 4 = 16 and 8 + 8 = 16 fit a 16-byte cap exactly: expected [[3, 2], [1, 0]], got {got}"


@pytest.mark.task("bucket-gradients")
def test_oversized_parameter_gets_its_own_bucket_and_last_bucket_is_kept(impl):
    params = tensors([1, 100, 1, 1])
    got = impl.plan_buckets(params, cap_bytes=12)
    assert got == [[3, 2], [1], [0]], f"expected [[3, 2], [1], [0]] (400-byte tensor alone), got {got}"


@pytest.mark.task("bucket-gradients")
def test_frozen_parameters_are_left_out(impl):
    params = tensors([1, 1, 1, 1], frozen=(1, 2))
    got = impl.plan_buckets(params, cap_bytes=1024)
    assert got == [[3, 0]], f"parameters 1 and 2 do not require grad: expected [[3, 0]], got {got}"


@pytest.mark.task("bucket-gradients")
@pytest.mark.parametrize("seed", range(5))
def test_buckets_match_a_brute_force_packer(impl, seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 40, (30,), generator=gen).tolist()
    frozen = set(torch.randint(0, 30, (4,), generator=gen).tolist())
    cap = int(torch.randint(20, 200, (1,), generator=gen)) * 4
    params = tensors(sizes, frozen)
    got = impl.plan_buckets(params, cap_bytes=cap)
    want = greedy_reverse([4 * n for n in sizes], cap, frozen)
    assert got == want, f"seed {seed}, cap {cap} bytes: expected {want}, got {got}"


def test_bucket_cap_must_be_positive(impl):
    with pytest.raises(ValueError, match="cap_bytes"):
        impl.plan_buckets(tensors([1]), cap_bytes=0)


# ---------------------------------------------------------------------------------------------- memory

@pytest.mark.task("shard-memory")
def test_adam_state_bytes(impl):
    assert impl.optimizer_bytes_per_param(master_weights=False) == 8, "fp32 AdamW: two moments, 4 bytes each"
    assert impl.optimizer_bytes_per_param(master_weights=True) == 12, \
        "mixed precision: two fp32 moments plus the fp32 master weights"


@pytest.mark.task("shard-memory")
@pytest.mark.parametrize("stage, gigabytes", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figures(impl, stage, gigabytes):
    # ZeRO paper, Figure 1: Psi = 7.5B parameters, N = 64 GPUs, K = 12 (2 + 2 + 12 = 16 bytes per parameter)
    got = impl.memory_per_rank(7_500_000_000, 64, stage)["total"] / 1e9
    assert round(got, 1) == gigabytes, f"stage {stage}: expected {gigabytes} GB per GPU, got {got:.2f} GB"


@pytest.mark.task("shard-memory")
def test_each_stage_shards_exactly_one_more_part(impl):
    n, world = 1000, 4
    replicated = {"params": 2000, "grads": 2000, "optimizer": 12000}
    sharded = {k: v / world for k, v in replicated.items()}
    expected = {
        0: replicated,
        1: {**replicated, "optimizer": sharded["optimizer"]},
        2: {"params": replicated["params"], "grads": sharded["grads"], "optimizer": sharded["optimizer"]},
        3: sharded,
    }
    for stage, want in expected.items():
        got = impl.memory_per_rank(n, world, stage)
        for part, value in want.items():
            assert math.isclose(got[part], value), f"stage {stage}, {part}: expected {value} bytes, got {got[part]}"
        assert math.isclose(got["total"], sum(want.values())), f"stage {stage}: total is not the sum of the parts"


@pytest.mark.task("shard-memory")
def test_one_rank_shards_nothing(impl):
    for stage in range(4):
        got = impl.memory_per_rank(10, 1, stage, 4, 4, 8)["total"]
        assert got == 160, f"world size 1, stage {stage}: 16 bytes x 10 parameters = 160 expected, got {got}"


# ---------------------------------------------------------------------------------------------- communication

@pytest.mark.task("comm-volume")
@pytest.mark.parametrize("world, factor", [(1, 0.0), (2, 1.0), (4, 1.5), (8, 1.75)])
def test_ring_allreduce_volume(impl, world, factor):
    # N ranks, payload B: reduce-scatter sends N-1 chunks of B/N, the all-gather another N-1 -> 2(N-1)/N * B
    got = impl.ring_allreduce_bytes(1000.0, world)
    assert math.isclose(got, factor * 1000.0), f"N={world}: expected {factor * 1000:.0f} bytes per rank, got {got}"


@pytest.mark.task("comm-volume")
def test_seven_billion_bf16_on_eight_gpus(impl):
    # 7e9 parameters x 2 bytes = 14 GB of gradients; 2 x 7/8 x 14 GB = 24.5 GB sent per GPU per step
    got = impl.ring_allreduce_bytes(14e9, 8) / 1e9
    assert math.isclose(got, 24.5), f"expected 24.5 GB per GPU, got {got} GB"


@pytest.mark.task("comm-volume")
@pytest.mark.parametrize("world, factor", [(1, 0.0), (2, 0.5), (4, 0.75)])
def test_ring_allgather_volume(impl, world, factor):
    got = impl.ring_allgather_bytes(1000.0, world)
    assert math.isclose(got, factor * 1000.0), f"N={world}: expected {factor * 1000:.0f} bytes per rank, got {got}"
