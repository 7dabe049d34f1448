"""NF4 by hand against bitsandbytes, the quantisation state's size by hand, and the bytes of a 4-bit model
against what save_pretrained writes to disk."""
import pytest
import torch

from labkit.checks import assert_close_to_reference


@pytest.fixture(scope="module")
def weight():
    torch.manual_seed(0)
    return torch.randn(256, 512) * 0.02


@pytest.mark.task("nf4")
def test_nf4_matches_bitsandbytes(impl, weight):
    import bitsandbytes.functional as bnbf

    packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=False)
    reference = bnbf.dequantize_4bit(packed, state)
    codes, absmax = impl.nf4_quantize(weight, blocksize=64)
    assert codes.shape == (weight.numel(),) and int(codes.max()) <= 15, \
        f"expected {weight.numel()} codes in 0..15, got shape {tuple(codes.shape)}, max {int(codes.max())}"
    assert_close_to_reference(absmax, state.absmax, atol=1e-7, what="per-block absmax (64 weights per block)")
    ours = impl.nf4_dequantize(codes, absmax, weight.shape, blocksize=64)
    agree = torch.isclose(ours, reference, atol=1e-6, rtol=1e-5).float().mean().item()
    assert agree > 0.999, f"expected (almost) every de-quantised value to equal bitsandbytes', {agree:.4%} do"
    err_ours = (ours - weight).abs().mean().item()
    err_bnb = (reference - weight).abs().mean().item()
    assert abs(err_ours - err_bnb) < 0.01 * err_bnb, f"mean |error|: ours {err_ours:.3e}, bitsandbytes {err_bnb:.3e}"


@pytest.mark.task("nf4")
def test_nf4_hand_case(impl):
    block = torch.tensor([0.0, 2.0, -2.0, 1.0] + [0.0] * 60)  # absmax 2: values normalise to 0, 1, -1, 0.5
    codes, absmax = impl.nf4_quantize(block, blocksize=64)
    assert absmax.tolist() == [2.0], f"expected absmax [2.0], got {absmax.tolist()}"
    assert codes[:4].tolist() == [7, 15, 0, 12], (
        f"0 -> level 7 (0.0), 1 -> 15 (1.0), -1 -> 0 (-1.0), 0.5 -> 12 (0.4407, nearer than 0.5626); "
        f"got {codes[:4].tolist()}")
    restored = impl.nf4_dequantize(codes, absmax, block.shape, blocksize=64)
    assert restored[:3].tolist() == [0.0, 2.0, -2.0], f"0, +absmax, -absmax should be exact, got {restored[:3].tolist()}"


@pytest.mark.task("nf4")
def test_nf4_all_zero_block(impl):
    """A block of zeros (e.g. pruned weights) has absmax 0: its codes are the exact-zero level 7 and it restores to 0."""
    weight = torch.cat([torch.linspace(-1.0, 1.0, 64), torch.zeros(64)])
    codes, absmax = impl.nf4_quantize(weight, blocksize=64)
    assert absmax.tolist() == [1.0, 0.0], f"expected absmax [1.0, 0.0], got {absmax.tolist()}"
    assert codes[64:].tolist() == [7] * 64, f"an all-zero block should code every value as level 7 (0.0), got " \
                                           f"{sorted(set(codes[64:].tolist()))}"
    restored = impl.nf4_dequantize(codes, absmax, weight.shape, blocksize=64)
    assert torch.isfinite(restored).all() and torch.equal(restored[64:], torch.zeros(64)), \
        "an all-zero block should come back as zeros (no NaN)"


@pytest.mark.task("memory")
def test_quant_state_bytes_by_hand(impl, weight):
    import bitsandbytes.functional as bnbf

    _, plain = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=False)
    _, double = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
    blocks = weight.numel() // 64  # 2048
    # plain: float32 absmax per block + the 16-entry float32 code table
    assert impl.quant_state_bytes(plain) == blocks * 4 + 16 * 4, \
        f"expected {blocks * 4 + 16 * 4} bytes, got {impl.quant_state_bytes(plain)}"
    # double: uint8 absmax per block + 16-entry table + float32 absmax per 256 blocks + 256-entry float32 table
    expected = blocks * 1 + 16 * 4 + (blocks // 256) * 4 + 256 * 4
    assert impl.quant_state_bytes(double) == expected, \
        f"expected {expected} bytes with double quantisation, got {impl.quant_state_bytes(double)}"


def saved_tensor_bytes(model, folder):
    """Bytes of every tensor save_pretrained writes, except bitsandbytes' JSON blob of scalar settings."""
    from safetensors import safe_open

    model.save_pretrained(folder)
    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                if "quant_state.bitsandbytes__" in key:
                    continue
                t = f.get_tensor(key)
                total += t.numel() * t.element_size()
    return total


@pytest.mark.task("memory")
def test_parameter_bytes_equal_the_saved_tensors(impl, tiny_folder, tmp_path):
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32)
    expected_full = saved_tensor_bytes(full, tmp_path / "full")
    assert impl.parameter_bytes(full) == expected_full, \
        f"float32 model: the saved tensors take {expected_full} bytes, parameter_bytes gave {impl.parameter_bytes(full)}"
    quantized = AutoModelForCausalLM.from_pretrained(tiny_folder, quantization_config=impl.bnb_config(True),
                                                     device_map="cpu")
    expected_q = saved_tensor_bytes(quantized, tmp_path / "nf4")
    got = impl.parameter_bytes(quantized)
    assert got == expected_q, f"NF4 model: the saved tensors take {expected_q} bytes, parameter_bytes gave {got}"
    assert got < expected_full / 2, f"NF4 should at least halve the bytes: {expected_full} -> {got}"
