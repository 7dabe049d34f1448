"""The dynamic map and block-wise quantization, checked against bitsandbytes: its `create_dynamic_map`, its pure-torch
reference kernel for `quantize_blockwise` (exact codes), its C kernel for `dequantize_blockwise` (exact values), a
brute-force nearest-code search, and hand-built ties, partial blocks and zero blocks."""
import pytest
import torch

bnbf = pytest.importorskip("bitsandbytes.functional")

pytestmark = pytest.mark.usefixtures("one_thread")


def bnb_reference_quantize(x, code, blocksize=256):
    """bitsandbytes' pure-torch quantize_blockwise kernel (the "default" backend), reached through the dispatcher.
    On CPU, F.quantize_blockwise runs a C kernel whose binary search is approximate (see the tolerance test)."""
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    return torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(keys, x, code, blocksize)


# ------------------------------------------------------------------------------------------------ dynamic map

@pytest.mark.task("dynamic-map")
@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_map_equals_bitsandbytes(impl, signed):
    ours = impl.dynamic_map(signed=signed)
    ref = bnbf.create_dynamic_map(signed=signed)
    assert ours.shape == (256,) and ours.dtype == torch.float32, f"expected 256 float32 values, got {ours.shape} {ours.dtype}"
    diff = (ours != ref).nonzero().flatten()[:5].tolist()
    assert torch.equal(ours, ref), f"signed={signed}: entries {diff} differ from bitsandbytes' map (ours {ours[diff].tolist()}, bnb {ref[diff].tolist()})"


@pytest.mark.task("dynamic-map")
def test_dynamic_map_shape_of_the_format(impl):
    signed, unsigned = impl.dynamic_map(True), impl.dynamic_map(False)
    assert (signed < 0).sum() == 127 and (signed > 0).sum() == 128, \
        f"signed map: expected 127 negative and 128 positive values (incl. 1.0), got {(signed < 0).sum()} and {(signed > 0).sum()}"
    assert (unsigned >= 0).all() and unsigned.unique().numel() == 256, "unsigned map: expected 256 distinct values >= 0"
    for name, m in (("signed", signed), ("unsigned", unsigned)):
        assert (m.diff() > 0).all(), f"{name} map must be strictly increasing"
        assert m[-1] == 1.0 and (m == 0).sum() == 1, f"{name} map must hold exactly one 0 and end at 1.0"
        # decade 10^-1..10^0 holds half the positive values: resolution where the big values are
        assert ((m > 0.1) & (m < 1)).sum() == (64 if name == "signed" else 128), f"{name}: wrong count in the top decade"


# ------------------------------------------------------------------------------------------- block-wise quantization

@pytest.mark.task("blockwise-quant")
@pytest.mark.parametrize("signed", [True, False])
def test_quantize_matches_bitsandbytes_reference_kernel_exactly(impl, signed):
    code = bnbf.create_dynamic_map(signed=signed)
    x = torch.randn(64, 256) * torch.logspace(-6, 1, 64)[:, None]      # blocks of very different scales
    if not signed:
        x = x ** 2
    codes, absmax = impl.quantize_blockwise(x, code, 256)
    ref_codes, ref_absmax = bnb_reference_quantize(x, code)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape, f"codes: expected uint8 {tuple(x.shape)}, got {codes.dtype} {tuple(codes.shape)}"
    assert torch.equal(absmax, ref_absmax), "absmax differs from bitsandbytes' (one float32 max |x| per block of 256)"
    bad = (codes != ref_codes).sum().item()
    assert bad == 0, f"{bad} of {x.numel()} codes differ from bitsandbytes' reference kernel"


@pytest.mark.task("blockwise-quant")
def test_absmax_is_per_block_and_the_last_block_may_be_partial(impl):
    code = bnbf.create_dynamic_map(True)
    x = torch.randn(1000) * 0.01
    x[5] = 50.0                                                          # an outlier in block 0 only
    codes, absmax = impl.quantize_blockwise(x.view(10, 100), code, 256)
    assert codes.shape == (10, 100), f"codes must keep the input's shape, got {tuple(codes.shape)}"
    assert absmax.shape == (4,), f"1000 values in blocks of 256 make 4 blocks (the last one partial), got {tuple(absmax.shape)}"
    expected = torch.stack([x[0:256].abs().max(), x[256:512].abs().max(), x[512:768].abs().max(), x[768:].abs().max()])
    assert torch.equal(absmax, expected), f"absmax per block: expected {expected.tolist()}, got {absmax.tolist()}"
    back = impl.dequantize_blockwise(codes, absmax, code, 256).view(-1)
    rel = ((back - x).abs()[256:] / x[256:].abs().max()).max().item()
    assert rel < 0.02, f"blocks without the outlier must keep their precision; worst error {rel:.3f} of their scale"


@pytest.mark.task("blockwise-quant")
def test_dequantize_matches_bitsandbytes(impl):
    code = bnbf.create_dynamic_map(True)
    x = torch.randn(3, 333)                                              # 999 values: a partial last block
    q, state = bnbf.quantize_blockwise(x, code=code.clone(), blocksize=256)
    ref = bnbf.dequantize_blockwise(q, state)
    ours = impl.dequantize_blockwise(q, state.absmax, code, 256)
    assert ours.shape == x.shape and ours.dtype == torch.float32, f"expected float32 {tuple(x.shape)}, got {ours.dtype} {tuple(ours.shape)}"
    assert torch.equal(ours, ref), f"dequantized values differ from bitsandbytes' (max diff {(ours - ref).abs().max():.3g})"


@pytest.mark.task("blockwise-quant")
def test_codes_are_the_nearest_entries_brute_force(impl):
    code = bnbf.create_dynamic_map(True)
    x = torch.randn(2048) * 1e-3
    codes, absmax = impl.quantize_blockwise(x, code, 256)
    scaled = x.view(8, 256) * (1 / absmax[:, None])                      # the normalised values, as bitsandbytes scales
    best = (scaled.reshape(-1, 1).double() - code.double()).abs().min(dim=1).values
    ours = (scaled.reshape(-1).double() - code.double()[codes.long()]).abs()
    worst = (ours - best).max().item()
    assert worst <= 1e-7, f"some value was not stored as its nearest map entry (excess error {worst:.3g})"


@pytest.mark.task("blockwise-quant")
def test_a_value_halfway_between_two_entries_takes_the_lower_one(impl):
    code = bnbf.create_dynamic_map(True)
    k = 200
    halfway = (code[k] + code[k + 1]) / 2
    x = torch.tensor([1.0, halfway.item(), -1.0, 0.0])
    codes, absmax = impl.quantize_blockwise(x, code, 4)
    assert codes[1].item() == k, f"a tie between entries {k} and {k + 1} must go to {k}, got {codes[1].item()}"
    assert codes[0].item() == 255 and codes[3].item() == int((code == 0).nonzero()), f"1.0 and 0 must map to their exact entries, got {codes.tolist()}"


@pytest.mark.task("blockwise-quant")
def test_a_block_of_zeros_round_trips_to_zeros(impl):
    code = bnbf.create_dynamic_map(False)
    x = torch.cat([torch.zeros(256), torch.rand(256)])
    codes, absmax = impl.quantize_blockwise(x, code, 256)
    back = impl.dequantize_blockwise(codes, absmax, code, 256)
    assert absmax[0] == 0 and torch.isfinite(back).all(), "a block of zeros has absmax 0 and must not produce NaN"
    assert torch.equal(back[:256], torch.zeros(256)), "a block of zeros must come back as zeros"
    zero = int((code == 0).nonzero())
    ref_codes, _ = bnb_reference_quantize(x, code)
    assert (codes[:256] == zero).all() and (ref_codes[:256] == zero).all(), \
        f"zeros must be stored as the map's 0 entry ({zero}), got codes {codes[:256].unique().tolist()}"


@pytest.mark.task("blockwise-quant")
def test_never_worse_than_bitsandbytes_c_kernel(impl):
    # bnb's CPU C kernel searches the map approximately: measured, its codes differ from the nearest entry on about
    # 0.15% of N(0,1) values (signed map) and 3-10% of squared or skewed values (unsigned map), by 1 to 7 codes.
    # Nearest-code quantization is never worse, value by value, and agrees on most codes.
    for signed in (True, False):
        code = bnbf.create_dynamic_map(signed)
        x = torch.randn(50_000)
        x = x if signed else x ** 2
        q, state = bnbf.quantize_blockwise(x, code=code.clone(), blocksize=256)
        bnb_err = (bnbf.dequantize_blockwise(q, state) - x).abs()
        codes, absmax = impl.quantize_blockwise(x, code, 256)
        our_err = (impl.dequantize_blockwise(codes, absmax, code, 256) - x).abs()
        scale = absmax.repeat_interleave(256)[:x.numel()]
        excess = ((our_err - bnb_err) / scale).max().item()
        assert excess <= 1e-6, f"signed={signed}: ours is worse than bitsandbytes' on some value by {excess:.3g} of its absmax"
        agree = (codes == q).float().mean().item()
        assert agree >= (0.99 if signed else 0.9), f"signed={signed}: only {agree:.2%} of codes agree with bitsandbytes'"
