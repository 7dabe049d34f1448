"""On CUDA: the compiled kernels in half precision against torch on the same GPU (skipped without a GPU).

Tolerances: fp16 has a 10-bit mantissa (relative spacing 2^-11 ~ 4.9e-4), bf16 a 7-bit one (2^-8 ~ 3.9e-3).
Both sides round their outputs once to that precision, and accumulate in fp32 inside, so elementwise results
agree to about two output ulps; dot products also differ by the order of their fp32 sums. Errors are measured
relative to the reference's largest magnitude.
"""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu

HALF = [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)]


def assert_near(got, expected, rel, what):
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, expected {expected.dtype}"
    err = (got.float() - expected.float()).abs().max().item() / expected.float().abs().max().clamp_min(1e-6).item()
    assert err <= rel, f"{what}: max error {err:.2e} of the largest |value|, allowed {rel:.0e}"


@pytest.mark.task("vector-add")
@pytest.mark.parametrize("dtype,rel", HALF)
def test_vector_add_half_on_cuda(kernels, dtype, rel):
    x, y = (torch.randn(1_000_003, device="cuda", dtype=dtype) for _ in range(2))
    assert_near(kernels.vector_add(x, y), x + y, rel, f"vector_add {dtype}")


@pytest.mark.task("softmax")
@pytest.mark.parametrize("dtype,rel", HALF)
def test_softmax_half_on_cuda(kernels, dtype, rel):
    x = torch.randn(1823, 781, device="cuda", dtype=dtype) * 4
    assert_near(kernels.softmax(x), torch.softmax(x, dim=1), rel, f"softmax {dtype}")


@pytest.mark.task("matmul")
@pytest.mark.parametrize("dtype,rel", HALF)
def test_matmul_half_on_cuda(kernels, dtype, rel):
    a = torch.randn(515, 333, device="cuda", dtype=dtype)
    b = torch.randn(333, 1027, device="cuda", dtype=dtype)
    assert_near(kernels.matmul(a, b, block_m=64, block_n=64, block_k=32), a @ b, rel, f"matmul {dtype}")


@pytest.mark.task("layernorm")
@pytest.mark.parametrize("dtype,rel", HALF)
def test_layernorm_half_on_cuda(kernels, dtype, rel):
    x = torch.randn(999, 1537, device="cuda", dtype=dtype) * 2 + 1
    w, b = torch.randn(1537, device="cuda", dtype=dtype), torch.randn(1537, device="cuda", dtype=dtype)
    y, _, _ = kernels.layer_norm(x, w, b)
    assert_near(y, F.layer_norm(x, (1537,), w, b), rel, f"layer_norm {dtype}")


@pytest.mark.task("flash-attention")
@pytest.mark.parametrize("dtype,rel", HALF)
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_half_on_cuda(kernels, dtype, rel, causal):
    q, k, v = (torch.randn(2, 4, 777, 64, device="cuda", dtype=dtype) for _ in range(3))
    got = kernels.flash_attention(q, k, v, causal=causal, block_m=64, block_n=64)
    assert_near(got, F.scaled_dot_product_attention(q, k, v, is_causal=causal), 2 * rel,
                f"flash_attention {dtype} causal={causal}")
