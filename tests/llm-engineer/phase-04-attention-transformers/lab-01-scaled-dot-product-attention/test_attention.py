"""Checks for lab 01: every implementation against torch's own kernels (SDPA, torch.softmax), hand-made masks
and the statistics of random dot products."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.checks import assert_close_to_reference

# each implementation is graded under its own task
GRADED = [pytest.param("attention_loops", marks=pytest.mark.task("attention-loops"), id="loops"),
          pytest.param("attention_bmm", marks=pytest.mark.task("attention-bmm"), id="bmm"),
          pytest.param("attention_einsum", marks=pytest.mark.task("attention-einsum"), id="einsum")]


def qkv(*lead, t_q=5, t_k=7, d=8, d_v=6, dtype=torch.float64):
    return (torch.randn(*lead, t_q, d, dtype=dtype), torch.randn(*lead, t_k, d, dtype=dtype),
            torch.randn(*lead, t_k, d_v, dtype=dtype))


# ------------------------------------------------------------------------------------------ stable softmax

@pytest.mark.task("stable-softmax")
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_matches_torch(impl, dim):
    x = torch.randn(4, 6, 5, dtype=torch.float64) * 3
    assert_close_to_reference(impl.stable_softmax(x, dim=dim), torch.softmax(x, dim=dim), atol=1e-12,
                              what=f"stable_softmax(dim={dim})")


@pytest.mark.task("stable-softmax")
def test_softmax_survives_huge_logits(impl):
    x = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4 - 1.0, 5.0], [-1e4, -1e4, -1e4]], dtype=torch.float32)
    got = impl.stable_softmax(x)
    assert torch.isfinite(got).all(), f"expected finite weights for logits of size 1e4, got {got.tolist()}"
    assert_close_to_reference(got, torch.softmax(x, dim=-1), atol=1e-6, what="softmax of 1e4-sized logits")


@pytest.mark.task("stable-softmax")
def test_fully_masked_row_gives_zeros(impl):
    x = torch.randn(3, 4)
    x[1] = float("-inf")  # every key masked for this query
    x[2, :2] = float("-inf")  # partly masked: an ordinary softmax over the rest
    got = impl.stable_softmax(x)
    assert not torch.isnan(got).any(), f"expected no NaN, got {got.tolist()}"
    assert torch.equal(got[1], torch.zeros(4)), f"a fully masked row should be all zeros, got {got[1].tolist()}"
    assert_close_to_reference(got[[0, 2]], torch.softmax(x[[0, 2]], dim=-1), atol=1e-6,
                              what="rows that are not fully masked")


@pytest.mark.task("stable-softmax")
def test_softmax_gradient_is_finite_on_masked_rows(impl):
    x = torch.randn(2, 5, dtype=torch.float64)
    x[0] = float("-inf")
    x.requires_grad_(True)
    (impl.stable_softmax(x) * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(x.grad).all(), f"expected finite gradients, got {x.grad.tolist()}"
    y = x.detach()[1].clone().requires_grad_(True)
    (torch.softmax(y, -1) * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    assert_close_to_reference(x.grad[1], y.grad, atol=1e-12, what="gradient of an unmasked row")


# ------------------------------------------------------------------------------------------ masks

@pytest.mark.task("masks")
def test_causal_mask_by_hand(impl):
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    got = impl.causal_mask(3, 4)
    assert got.dtype == torch.bool and torch.equal(got, expected), f"expected {expected.int().tolist()}, " \
        f"got {got.int().tolist() if torch.is_tensor(got) else got}"
    assert torch.equal(impl.causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril()), \
        "causal_mask(4) should keep the diagonal and everything below it"


@pytest.mark.task("masks")
def test_padding_mask_by_hand(impl):
    got = impl.padding_mask([2, 4, 0], 4)
    expected = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 1, 1]], [[0, 0, 0, 0]]], dtype=torch.bool)
    assert got.shape == (3, 1, 4), f"expected shape (3, 1, 4), got {tuple(got.shape)}"
    assert torch.equal(got, expected), f"expected {expected.int().tolist()}, got {got.int().tolist()}"


@pytest.mark.task("masks")
def test_masks_refuse_bad_input(impl):
    assert impl.causal_mask(2).shape == (2, 2)
    with pytest.raises(ValueError):
        impl.padding_mask([5], 4)
    with pytest.raises(ValueError):
        impl.causal_mask(0)


# ------------------------------------------------------------------------------------------ the three ways

@pytest.mark.parametrize("name", GRADED)
def test_matches_sdpa_without_mask(impl, name):
    q, k, v = qkv(2, 3)
    out, weights = getattr(impl, name)(q, k, v)
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0,
                              what=f"{name} output vs torch SDPA")
    expected_w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    assert_close_to_reference(weights, expected_w, atol=1e-6, rtol=0, what=f"{name} weights")


@pytest.mark.parametrize("name", GRADED)
def test_causal_matches_sdpa_is_causal(impl, name):
    q, k, v = qkv(2, t_q=6, t_k=6)
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    out, weights = getattr(impl, name)(q, k, v, mask)
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6, rtol=0,
                              what=f"{name} with a causal mask vs SDPA(is_causal=True)")
    future = weights[..., ~mask]
    assert torch.equal(future, torch.zeros_like(future)), \
        f"weights on future keys should be exactly 0, largest was {future.abs().max().item():.3g}"
    assert_close_to_reference(weights.sum(-1), torch.ones(2, 6), atol=1e-12, what="row sums of the weights")


@pytest.mark.parametrize("name", GRADED)
def test_padding_matches_sdpa_attn_mask(impl, name):
    q, k, v = qkv(3, 2, t_q=4, t_k=5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)[:, None, None, :]
    out, weights = getattr(impl, name)(q, k, v, mask)
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=0,
                              what=f"{name} with a padding mask vs SDPA(attn_mask=...)")
    padded = weights.masked_select(~mask)
    assert torch.equal(padded, torch.zeros_like(padded)), "padded keys should get exactly zero weight"


@pytest.mark.parametrize("name", GRADED)
def test_fully_masked_query_gives_zero_row(impl, name):
    q, k, v = qkv(1, t_q=3, t_k=4)
    mask = torch.ones(1, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 may see nothing
    out, weights = getattr(impl, name)(q, k, v, mask)
    assert not torch.isnan(out).any(), "a fully masked query should not produce NaN"
    assert torch.equal(out[0, 1], torch.zeros(6, dtype=torch.float64)), \
        f"a fully masked query should output zeros, got {out[0, 1].tolist()}"
    # torch's SDPA defines the same behaviour (zeros) for fully masked rows
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=0,
                              what=f"{name} with a fully masked row vs SDPA")


@pytest.mark.parametrize("name", GRADED)
def test_float32_agrees_with_sdpa(impl, name):
    q, k, v = qkv(2, t_q=8, t_k=8, d=16, dtype=torch.float32)
    out, _ = getattr(impl, name)(q, k, v, torch.ones(8, 8, dtype=torch.bool).tril())
    assert out.dtype == torch.float32, f"expected float32 output for float32 input, got {out.dtype}"
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5,
                              what=f"{name} in float32")


@pytest.mark.parametrize("name", GRADED)
@settings(max_examples=12, deadline=None)
@given(b=st.integers(1, 2), t_q=st.integers(1, 5), t_k=st.integers(1, 5), d=st.integers(1, 6),
       masked=st.booleans(), seed=st.integers(0, 1000))
def test_property_agrees_with_sdpa(impl, name, b, t_q, t_k, d, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t_q, d, generator=gen, dtype=torch.float64)
    k = torch.randn(b, t_k, d, generator=gen, dtype=torch.float64)
    v = torch.randn(b, t_k, 3, generator=gen, dtype=torch.float64)
    mask = torch.rand(b, t_q, t_k, generator=gen) > 0.3 if masked else None
    out, _ = getattr(impl, name)(q, k, v, mask)
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=0,
                              what=f"{name} (b={b}, t_q={t_q}, t_k={t_k}, d={d}, masked={masked})")


@pytest.mark.parametrize("name", GRADED)
def test_custom_scale(impl, name):
    q, k, v = qkv(1)
    out, _ = getattr(impl, name)(q, k, v, None, 0.5)
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, scale=0.5), atol=1e-6, rtol=0,
                              what=f"{name} with scale=0.5")


@pytest.mark.gpu
@pytest.mark.task("attention-einsum")
def test_einsum_on_cuda_matches_sdpa(impl):
    q, k, v = (x.cuda() for x in qkv(2, 4, t_q=64, t_k=64, d=32, dtype=torch.float32))
    out, _ = impl.attention_einsum(q, k, v, torch.ones(64, 64, dtype=torch.bool, device="cuda").tril())
    assert_close_to_reference(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-4,
                              what="einsum attention on CUDA")


# ------------------------------------------------------------------------------------------ why √d_k

@pytest.mark.task("scaling-variance")
@pytest.mark.parametrize("d_k", [8, 32, 128])
def test_dot_product_variance_grows_with_d_k(impl, d_k):
    # Var(q·k) = d_k; with n = 20,000 samples the relative standard error of a sample variance is ~1.1 %,
    # so 6 % is over five standard errors.
    raw = impl.score_variance(d_k, n_samples=20_000, scaled=False, seed=1)
    assert abs(raw / d_k - 1) < 0.06, f"expected Var(q.k) close to d_k={d_k}, got {raw:.2f}"


@pytest.mark.task("scaling-variance")
@pytest.mark.parametrize("d_k", [8, 32, 128])
def test_scaled_variance_is_one(impl, d_k):
    scaled = impl.score_variance(d_k, n_samples=20_000, scaled=True, seed=2)
    assert abs(scaled - 1) < 0.06, f"expected Var(q.k/sqrt(d_k)) close to 1 for d_k={d_k}, got {scaled:.3f}"


@pytest.mark.task("scaling-variance")
def test_variance_is_seeded(impl):
    a = impl.score_variance(32, n_samples=1000, seed=5)
    b = impl.score_variance(32, n_samples=1000, seed=5)
    c = impl.score_variance(32, n_samples=1000, seed=6)
    assert a == b, f"the same seed should give the same variance, got {a} and {b}"
    assert a != c, "different seeds should draw different samples"
