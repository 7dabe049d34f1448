"""Quantization lab checks on small random layers. References: hand-worked cases, torch's own quantized tensors
and observers, optimum-quanto (qint8), torchao (int8 weight-only, int4 asymmetric groups), bitsandbytes (NF4
codes and packing), a brute-force GPTQ written with the explicit inverse-Hessian update, and properties."""
import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one torch thread (labkit plugin)


def correlated_inputs(n, d, seed, rank=32, noise=0.3):
    """Calibration-like inputs: a few shared directions plus noise, so the Hessian is far from diagonal."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g) + noise * torch.randn(n, d, generator=g)


def weight(out, inn, seed, std=0.05):
    return torch.randn(out, inn, generator=torch.Generator().manual_seed(seed)) * std


def out_err(x, w, w_hat):
    return (x @ w.T - x @ w_hat.T).norm().item()


# --------------------------------------------------------------------------- absmax

@pytest.mark.task("absmax")
def test_absmax_hand_worked_row(impl):
    q, scale = impl.absmax_quantize(torch.tensor([[0.5, -1.27, 0.0, 0.006, -0.004]]))
    assert q.dtype == torch.int8, f"codes should be int8, got {q.dtype}"
    assert scale.shape == (1, 1) and scale.item() == pytest.approx(0.01), f"scale = 1.27 / 127 = 0.01, got {scale}"
    # 0.006 / 0.01 = 0.6 -> 1; -0.004 / 0.01 = -0.4 -> 0
    assert q.tolist() == [[50, -127, 0, 1, 0]], f"expected [[50, -127, 0, 1, 0]], got {q.tolist()}"


@pytest.mark.task("absmax")
def test_absmax_one_scale_per_row_and_error_bound(impl):
    w = weight(8, 64, 0) * torch.linspace(0.1, 10, 8)[:, None]     # rows of very different sizes
    for bits, qmax in ((8, 127), (4, 7)):
        q, scale = impl.absmax_quantize(w, bits=bits)
        expected = w.abs().amax(1, keepdim=True) / qmax
        assert torch.allclose(scale, expected), f"{bits}-bit scales should be max|row| / {qmax}"
        assert int(q.abs().max()) == qmax, f"the largest |code| should be {qmax}, got {int(q.abs().max())}"
        err = (q.float() * scale - w).abs()
        assert (err <= scale / 2 + 1e-7).all(), f"{bits}-bit: round-to-nearest error must be at most scale / 2"
        ref = torch.quantize_per_channel(w, expected[:, 0].double(), torch.zeros(8, dtype=torch.long), 0,
                                         torch.qint8).int_repr()
        if bits == 8:
            assert torch.equal(q, ref), "int8 codes differ from torch.quantize_per_channel with the same scales"


@pytest.mark.task("absmax")
def test_absmax_zero_row_gives_zeros(impl):
    q, scale = impl.absmax_quantize(torch.zeros(2, 4))
    assert torch.isfinite(scale).all() and (scale > 0).all(), f"a zero row needs a finite non-zero scale, got {scale}"
    assert (q == 0).all()


# --------------------------------------------------------------------------- zero-point

@pytest.mark.task("zero-point")
def test_zeropoint_matches_torch_per_channel_affine_observer(impl):
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    w = weight(6, 40, 1) + torch.linspace(-0.05, 0.08, 6)[:, None]   # rows shifted off centre
    w[2] = w[2].abs() + 0.01                                           # an all-positive row: lo clamps to 0
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
    obs(w)
    ref_scale, ref_zero = obs.calculate_qparams()
    q, scale, zero = impl.zeropoint_quantize(w, bits=8)
    assert q.dtype == torch.uint8, f"codes should be uint8, got {q.dtype}"
    assert torch.allclose(scale[:, 0], ref_scale.float(), rtol=1e-6), f"scales {scale[:, 0]} vs torch {ref_scale}"
    assert torch.equal(zero[:, 0].long(), ref_zero), f"zero points {zero[:, 0]} vs torch {ref_zero}"
    ref_q = torch.quantize_per_channel(w, ref_scale, ref_zero, 0, torch.quint8).int_repr()
    assert torch.equal(q, ref_q), "codes differ from torch.quantize_per_channel with the same scale and zero"


@pytest.mark.task("zero-point")
def test_zeropoint_hand_worked_rows(impl):
    q, scale, zero = impl.zeropoint_quantize(torch.tensor([[0.0, 1.5, 3.0], [-1.0, 0.0, 2.0]]), bits=2)
    # row 0: range [0, 3], s = 3/3 = 1, zero 0 -> codes 0, 2 (1.5 rounds half to even), 3
    # row 1: range [-1, 2], s = 1, zero = round(1 / 1) = 1 -> codes 0, 1, 3
    assert scale[:, 0].tolist() == [1.0, 1.0], f"scales should be [1, 1], got {scale[:, 0].tolist()}"
    assert zero[:, 0].tolist() == [0.0, 1.0], f"zero points should be [0, 1], got {zero[:, 0].tolist()}"
    assert q.tolist() == [[0, 2, 3], [0, 1, 3]], f"expected codes [[0, 2, 3], [0, 1, 3]], got {q.tolist()}"


@pytest.mark.task("zero-point")
def test_zeropoint_4bit_error_bound_and_exact_zero(impl):
    w = weight(16, 64, 2)
    w[:, 5] = 0.0
    q, scale, zero = impl.zeropoint_quantize(w, bits=4)
    assert int(q.max()) <= 15, "4-bit codes must stay in 0..15"
    deq = (q.float() - zero) * scale
    assert ((deq - w).abs() <= scale / 2 + 1e-7).all(), "error must be at most scale / 2 everywhere"
    assert (deq[:, 5] == 0).all(), "0 must be exactly representable (the range always includes 0)"
    q0, s0, z0 = impl.zeropoint_quantize(torch.zeros(1, 8), bits=4)
    assert torch.isfinite(s0).all() and (s0 > 0).all() and (q0.float() - z0 == 0).all(), "a zero row -> zeros"


# --------------------------------------------------------------------------- granularity

@pytest.mark.task("granularity")
def test_to_rows_layouts(impl):
    w = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8)
    assert impl.to_rows(w, "tensor").shape == (1, 16)
    assert torch.equal(impl.to_rows(w, "channel"), w)
    rows = impl.to_rows(w, "group", group_size=4)
    assert rows.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]], \
        f"groups must be consecutive input columns of one output row, got {rows.tolist()}"
    with pytest.raises(ValueError):
        impl.to_rows(w, "group", group_size=3)
    with pytest.raises(ValueError):
        impl.to_rows(w, "row")


@pytest.mark.task("granularity")
def test_finer_granularity_lowers_the_error(impl):
    w = weight(32, 256, 3) * torch.linspace(0.2, 5, 32)[:, None]
    w[0, 7] = 2.0                                                      # one outlier weight
    errs = {g: (impl.fake_quantize(w, "absmax", g, bits=4, group_size=32) - w).pow(2).mean().item()
            for g in ("tensor", "channel", "group")}
    assert errs["tensor"] > 2 * errs["channel"] > 0, f"per-channel should beat per-tensor clearly: {errs}"
    assert errs["channel"] > errs["group"], f"groups of 32 should beat per-channel: {errs}"
    # the outlier's damage stays inside its own group
    g = impl.fake_quantize(w, "absmax", "group", bits=4, group_size=32)
    c = impl.fake_quantize(w, "absmax", "channel", bits=4)
    assert (g[0, 32:] - w[0, 32:]).abs().max() < (c[0, 32:] - w[0, 32:]).abs().max() / 10


@pytest.mark.task("granularity")
def test_fake_quantize_per_tensor_by_hand_and_zeropoint(impl):
    w = torch.tensor([[1.0, -0.5], [0.25, 2.54]])
    got = impl.fake_quantize(w, "absmax", "tensor")
    s = 2.54 / 127                                                     # one scale for all four weights
    expected = torch.round(w / s) * s
    assert torch.allclose(got, expected), f"per-tensor absmax: expected {expected}, got {got}"
    z = impl.fake_quantize(w, "zeropoint", "channel", bits=8)
    assert z.shape == w.shape and z.dtype == w.dtype
    assert ((z - w).abs() <= (w.amax(1, keepdim=True) - w.amin(1, keepdim=True).clamp(max=0)) / 255 / 2 + 1e-7).all()


@pytest.mark.task("granularity")
def test_int8_per_channel_equals_quanto_and_torchao(impl):
    quanto = pytest.importorskip("optimum.quanto")
    torchao_q = pytest.importorskip("torchao.quantization")
    lin = torch.nn.Linear(96, 48)
    with torch.no_grad():
        lin.weight.copy_(weight(48, 96, 4) * torch.linspace(0.5, 3, 48)[:, None])
    ours = impl.fake_quantize(lin.weight.detach(), "absmax", "channel", bits=8)

    m = torch.nn.Sequential(torch.nn.Linear(96, 48))
    m[0].load_state_dict(lin.state_dict())
    quanto.quantize(m, weights=quanto.qint8)
    quanto.freeze(m)
    assert torch.equal(ours, m[0].weight.dequantize()), "absmax/127 per channel should equal quanto's qint8 exactly"

    m = torch.nn.Sequential(torch.nn.Linear(96, 48))
    m[0].load_state_dict(lin.state_dict())
    torchao_q.quantize_(m, torchao_q.Int8WeightOnlyConfig())
    ao = m[0].weight.dequantize()
    step = lin.weight.detach().abs().amax(1, keepdim=True) / 127
    # torchao divides by 127.5 (codes -128..127) instead of 127: a 0.4% different grid, so both stay within half
    # a step of W and within one step of each other (measured mean gap: well under a quarter step)
    assert ((ao - ours).abs() <= step * 1.01).all(), "ours and torchao's int8 weights differ by more than a step"
    assert ((ao - ours).abs() / step).mean() < 0.25, "ours and torchao's int8 weights are too far apart on average"


# --------------------------------------------------------------------------- int4-pack

@pytest.mark.task("int4-pack")
def test_pack_hand_worked_bytes(impl):
    packed = impl.pack_int4(torch.tensor([1, 2, 15, 0, 10, 5], dtype=torch.uint8))
    assert packed.dtype == torch.uint8, f"packed bytes should be uint8, got {packed.dtype}"
    assert packed.tolist() == [0x12, 0xF0, 0xA5], f"expected [0x12, 0xF0, 0xA5], got {[hex(b) for b in packed]}"


@pytest.mark.task("int4-pack")
def test_all_256_pairs_round_trip(impl):
    a, b = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    codes = torch.stack((a.flatten(), b.flatten()), dim=1).flatten().to(torch.uint8)   # every (hi, lo) pair
    packed = impl.pack_int4(codes)
    assert packed.shape == (256,) and sorted(packed.tolist()) == list(range(256)), "256 pairs -> 256 distinct bytes"
    assert torch.equal(impl.unpack_int4(packed), codes), "unpack(pack(codes)) must give the codes back"


@pytest.mark.task("int4-pack")
def test_random_tensors_round_trip_and_bad_input(impl):
    g = torch.Generator().manual_seed(5)
    for shape in ((7, 64), (3, 5, 2), (1, 4096)):
        codes = torch.randint(0, 16, shape, generator=g, dtype=torch.uint8)
        packed = impl.pack_int4(codes)
        assert packed.shape == (*shape[:-1], shape[-1] // 2), f"{shape} should pack to half the last axis"
        assert torch.equal(impl.unpack_int4(packed), codes), f"round trip failed for shape {shape}"
    with pytest.raises(ValueError):
        impl.pack_int4(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError):
        impl.pack_int4(torch.tensor([16, 0]))


@pytest.mark.task("int4-pack")
def test_unpack_reads_bitsandbytes_nf4_storage(impl):
    bnbF = pytest.importorskip("bitsandbytes.functional")
    w = weight(32, 64, 6)
    packed, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4")
    codes = impl.unpack_int4(packed.flatten()).long()                 # bitsandbytes: first value in the high nibble
    rebuilt = state.code[codes].reshape(-1, 64) * state.absmax[:, None]
    ref = bnbF.dequantize_4bit(packed, state)
    assert torch.allclose(rebuilt.reshape(w.shape), ref, atol=1e-6), "unpacked codes do not rebuild bnb's weights"


@pytest.mark.task("int4-pack")
def test_quantlinear_int4_storage_bytes(impl):
    lin = torch.nn.Linear(256, 64, bias=False)
    layer = impl.QuantLinear.int4(lin, impl.rtn_int4(lin.weight.detach(), 128))
    total = sum(b.numel() * b.element_size() for b in layer.buffers())
    # 64 x 256 codes at half a byte + (64 x 2 groups) x (fp16 scale + uint8 zero) = 8192 + 256 + 128
    assert total == 8576, f"expected 8,576 bytes (8,192 packed + 384 of scales and zeros), got {total:,}"
    x = torch.randn(3, 256)
    ref = F.linear(x, impl.fake_quantize(lin.weight.detach(), "zeropoint", "group", bits=4, group_size=128))
    assert torch.allclose(layer(x), ref, atol=1e-2 * ref.abs().max().item()), "the int4 layer's output is off"


# --------------------------------------------------------------------------- nf4

@pytest.mark.task("nf4")
def test_nf4_equals_bitsandbytes(impl):
    bnbF = pytest.importorskip("bitsandbytes.functional")
    w = weight(48, 128, 7)
    w[0, :64] = 0.0                                                    # one all-zero block
    codes, absmax = impl.nf4_quantize(w, blocksize=64)
    packed, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.allclose(absmax, state.absmax), "per-block absmax differs from bitsandbytes'"
    bnb_codes = torch.stack((packed.flatten() >> 4, packed.flatten() & 15), dim=-1).flatten()  # high nibble first
    assert torch.equal(codes, bnb_codes), f"{(codes != bnb_codes).sum()} codes differ from bnb's (zero block: code 7)"
    ref = bnbF.dequantize_4bit(packed, state)
    ours = impl.nf4_dequantize(codes, absmax, w.shape)
    assert torch.allclose(ours, ref, atol=1e-6), f"NF4 values differ from bnb's, max {(ours - ref).abs().max():.2e}"


@pytest.mark.task("nf4")
def test_nf4_hand_worked_block(impl):
    block = torch.tensor([2.0, -2.0, 0.0, 1.0, -0.1, 0.3, 1.9, -0.79])
    codes, absmax = impl.nf4_quantize(block, blocksize=8)
    # x / 2 = 1, -1, 0, 0.5, -0.05, 0.15, 0.95, -0.395 -> nearest levels 15, 0, 7, 12 (0.5626), 6 (-0.0911 is
    # 0.041 away, 0 is 0.05), 9 (0.1609), 15, 3 (-0.3949)
    assert absmax.tolist() == [2.0]
    assert codes.tolist() == [15, 0, 7, 12, 6, 9, 15, 3], f"expected [15, 0, 7, 12, 6, 9, 15, 3], got {codes.tolist()}"
    z, a = impl.nf4_quantize(torch.zeros(16), blocksize=8)
    assert (z == 7).all(), f"an all-zero block should use code 7 (the level 0.0), got {z.tolist()}"
    assert torch.isfinite(a).all() and (impl.nf4_dequantize(z, a, (16,), 8) == 0).all(), "zero blocks give zeros"


# --------------------------------------------------------------------------- int4-group

@pytest.mark.task("int4-group")
def test_int4_weight_dequantize_by_hand(impl):
    q = impl.Int4Weight(codes=torch.tensor([[0, 15, 8, 8]], dtype=torch.uint8), scale=torch.tensor([[0.1, 2.0]]),
                        zero=torch.tensor([[8.0, 7.0]]), group_size=2)
    got = q.dequantize()
    # group 0: (0-8)*0.1, (15-8)*0.1; group 1: (8-7)*2, (8-7)*2
    assert torch.allclose(got, torch.tensor([[-0.8, 0.7, 2.0, 2.0]])), f"expected [-0.8, 0.7, 2, 2], got {got}"


@pytest.mark.task("int4-group")
def test_rtn_int4_equals_torchao_asymmetric_int4_groups(impl):
    torchao_q = pytest.importorskip("torchao.quantization")
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    w = weight(64, 256, 8) + 0.02                                      # off-centre, so zero points vary
    ours = impl.rtn_int4(w, 128)
    assert ours.codes.shape == (64, 256) and ours.scale.shape == (64, 2) and ours.zero.shape == (64, 2)
    m = torch.nn.Sequential(torch.nn.Linear(256, 64, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(w)
    torchao_q.quantize_(m, torchao_q.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(128),
                                                          mapping_type=MappingType.ASYMMETRIC))
    ao = m[0].weight
    assert torch.allclose(ours.scale, ao.scale, rtol=1e-6), "scales differ from torchao's (max - min) / 15"
    # torchao stores signed codes -8..7: ours = theirs + 8, for the codes and the zero points
    assert torch.equal(ours.codes.long(), ao.qdata.long() + 8), "codes differ from torchao's int4 codes (+8)"
    assert torch.equal(ours.zero.long(), ao.zero_point.long() + 8), "zero points differ from torchao's (+8)"
    assert torch.allclose(ours.dequantize(), ao.dequantize(), atol=1e-6), "dequantized weights differ from torchao"


@pytest.mark.task("int4-group")
def test_rtn_int4_error_bound_and_group_size(impl):
    w = weight(32, 512, 9)
    errs = {}
    for g in (32, 128, 512):
        q = impl.rtn_int4(w, g)
        deq = q.dequantize()
        bound = q.scale.repeat_interleave(g, dim=1) / 2
        assert ((deq - w).abs() <= bound + 1e-7).all(), f"group {g}: error must be at most scale / 2"
        errs[g] = (deq - w).pow(2).mean().item()
    assert errs[32] < errs[128] < errs[512], f"smaller groups should give smaller errors: {errs}"


# --------------------------------------------------------------------------- gptq

def brute_force_gptq(w, h, group_size, damp=0.01):
    """GPTQ/OBQ written the slow way: the explicit inverse Hessian, updated (Gaussian elimination of the
    quantized column) after every column; no Cholesky factor, no blocks."""
    w = w.double().clone()
    h = h.double().clone()
    d = w.shape[1]
    h += damp * h.diag().mean() * torch.eye(d, dtype=torch.float64)
    hinv = torch.linalg.inv(h)
    out = torch.zeros_like(w)
    for j in range(d):
        if j % group_size == 0:
            grp = w[:, j:j + group_size]
            lo, hi = grp.amin(1).clamp(max=0), grp.amax(1).clamp(min=0)
            s = ((hi - lo) / 15).float().double()
            z = torch.round(-lo / s)
        q = (torch.clamp(torch.round(w[:, j] / s) + z, 0, 15) - z) * s
        out[:, j] = q
        err = (w[:, j] - q) / hinv[j, j]
        w[:, j:] -= err[:, None] * hinv[j, j:][None, :]
        hinv = hinv - hinv[:, j:j + 1] @ hinv[j:j + 1, :] / hinv[j, j]
    return out.float()


@pytest.mark.task("gptq")
def test_hessian_brute_force(impl):
    x = correlated_inputs(40, 12, 10)
    expected = sum(2 * torch.outer(row, row) for row in x) / 40
    got = impl.gptq_hessian(x)
    assert torch.allclose(got, expected, atol=1e-4), "H should be 2 XᵀX / n"
    assert torch.allclose(impl.gptq_hessian(x.reshape(4, 10, 12)), expected, atol=1e-4), "batch dims should flatten"


@pytest.mark.task("gptq")
def test_gptq_equals_the_explicit_inverse_hessian_version(impl):
    w, x = weight(16, 128, 11), correlated_inputs(256, 128, 11)
    h = impl.gptq_hessian(x)
    got = impl.gptq_quantize(w, h, group_size=32, block_size=64).dequantize()
    ref = brute_force_gptq(w, 2 * x.T.double() @ x.double() / 256, 32)
    same = (got - ref).abs() < 1e-5
    # float32 vs float64 may flip a rare code that sits on a rounding boundary
    assert same.float().mean() > 0.99, f"only {same.float().mean():.1%} of weights equal the brute-force GPTQ"


@pytest.mark.task("gptq")
def test_gptq_beats_round_to_nearest_on_several_seeds(impl):
    # measured ||XW - XŴ|| GPTQ / RTN over seeds 0-4: 0.254-0.266 (default and avx2 kernels alike); assert < 0.6
    for seed in range(5):
        w, x = weight(64, 256, seed), correlated_inputs(512, 256, seed)
        gptq = impl.gptq_quantize(w, impl.gptq_hessian(x), group_size=128).dequantize()
        rtn = impl.rtn_int4(w, 128).dequantize()
        ratio = out_err(x, w, gptq) / out_err(x, w, rtn)
        assert ratio < 0.6, f"seed {seed}: GPTQ's output error should be well below RTN's, ratio {ratio:.3f}"


@pytest.mark.task("gptq")
def test_gptq_with_a_diagonal_hessian_is_round_to_nearest(impl):
    # uncorrelated inputs: H diagonal, so no column's error can be compensated by another
    w = weight(16, 128, 12)
    h = torch.diag(torch.linspace(0.5, 3.0, 128))
    g = impl.gptq_quantize(w, h, group_size=64, block_size=64)
    r = impl.rtn_int4(w, 64)
    assert torch.equal(g.codes, r.codes), "with a diagonal Hessian GPTQ must give exactly the RTN codes"
    assert torch.allclose(g.scale, r.scale) and torch.equal(g.zero, r.zero)


@pytest.mark.task("gptq")
def test_gptq_lazy_blocks_and_dead_inputs(impl):
    w, x = weight(16, 256, 13), correlated_inputs(512, 256, 13)
    x[:, 3] = 0.0                                                      # an input channel that never fires
    h = impl.gptq_hessian(x)
    one = impl.gptq_quantize(w, h, group_size=64, block_size=64).dequantize()
    four = impl.gptq_quantize(w, h, group_size=64, block_size=256).dequantize()
    assert ((one - four).abs() < 1e-5).float().mean() > 0.99, "block size must not change the result (lazy batch)"
    assert (one[:, 3] == 0).all(), "a dead input channel's weights should be set to 0"
    assert ((one - w).abs() > 0).any()


# --------------------------------------------------------------------------- awq

@pytest.mark.task("awq")
def test_awq_scales_by_hand(impl):
    s = impl.awq_scales(torch.tensor([1.0, 4.0, 2.0]), alpha=1.0)
    # normalised by sqrt(4 * 1) = 2
    assert torch.allclose(s, torch.tensor([0.5, 2.0, 1.0])), f"expected [0.5, 2, 1], got {s}"
    assert torch.allclose(impl.awq_scales(torch.tensor([1.0, 4.0, 2.0]), 0.5), torch.tensor([1.0, 2.0, 2 ** 0.5]) / 2 ** 0.5)
    assert torch.equal(impl.awq_scales(torch.tensor([3.0, 0.5]), 0.0), torch.ones(2)), "alpha 0 means no scaling"
    assert torch.isfinite(impl.awq_scales(torch.tensor([0.0, 1.0]), 0.5)).all(), "a silent channel must not give inf"


@pytest.mark.task("awq")
def test_scaled_layer_equals_the_original_in_float(impl):
    lin = torch.nn.Linear(64, 32)
    x = correlated_inputs(10, 64, 14)
    s = torch.rand(64, generator=torch.Generator().manual_seed(14)) * 4 + 0.1
    scaled = impl.awq_scale_weight(lin.weight.detach(), s)
    assert scaled.shape == (32, 64)
    assert torch.allclose(scaled[:, 5], lin.weight[:, 5] * s[5]), "column j of W must be multiplied by s_j"
    got = F.linear(x / s, scaled, lin.bias)
    assert torch.allclose(got, lin(x), atol=1e-5), "(x / s)(W diag(s))ᵀ + b must equal the original layer"


@pytest.mark.task("awq")
def test_awq_beats_rtn_with_outlier_input_channels(impl):
    # measured output-error ratio AWQ / RTN over seeds 0-4: 0.485-0.544 (default and avx2 alike); assert < 0.8
    for seed in range(5):
        g = torch.Generator().manual_seed(100 + seed)
        w = weight(64, 256, seed)
        x = torch.randn(512, 256, generator=g)
        x[:, torch.randperm(256, generator=g)[:4]] *= 30                 # four salient input channels
        alpha, s, q = impl.awq_search(w, x, group_size=128)
        awq = q.dequantize() / s[None, :]
        rtn = impl.rtn_int4(w, 128).dequantize()
        ratio = out_err(x, w, awq) / out_err(x, w, rtn)
        assert 0 < alpha <= 1 and ratio < 0.8, f"seed {seed}: AWQ (alpha {alpha}) / RTN error {ratio:.3f}"
        assert torch.allclose(s, impl.awq_scales(x.abs().mean(0), alpha)), "s must be the scales of the chosen alpha"
    lin = torch.nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    layer = impl.QuantLinear.int4(lin, q, input_scale=1.0 / s)        # the deployed form: y = (x / s) Q(W s)ᵀ
    assert torch.allclose(layer(x), x @ awq.T, rtol=1e-2, atol=1e-2 * (x @ awq.T).abs().max().item())


@pytest.mark.task("awq")
def test_awq_grid_includes_zero_and_prefers_the_first_on_ties(impl):
    g = torch.Generator().manual_seed(15)
    w = weight(16, 128, 15)
    x = torch.randint(0, 2, (64, 128), generator=g).float() * 2 - 1     # |x| = 1 everywhere: every alpha is the same
    alpha, s, q = impl.awq_search(w, x, group_size=64, n_grid=4)
    assert alpha == 0.0, f"all alphas tie, so the first (0) should be kept, got {alpha}"
    assert torch.equal(q.codes, impl.rtn_int4(w, 64).codes), "alpha 0 is plain RTN"
    y = torch.randn(64, 128, generator=g)
    _, s2, q2 = impl.awq_search(w, y, group_size=64, n_grid=10)
    rtn_err = out_err(y, w, impl.rtn_int4(w, 64).dequantize())
    assert out_err(y, w, q2.dequantize() / s2) <= rtn_err + 1e-6, "the search includes alpha 0, so never worse than RTN"
