"""Checks for lab 03: hand values and brute force for the sinusoidal table, Hugging Face's Llama RoPE and BLOOM
ALiBi as references, hypothesis for RoPE's relative property, and the mechanics (not the results) of the tiny
extrapolation model."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from labkit.checks import assert_close_to_reference, assert_overfits_batch


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def hf_rope(q, k, positions, base=10_000.0):
    """Rotate q, k (B, H, T, d) with transformers' Llama rotary embedding."""
    d = q.shape[-1]
    config = LlamaConfig(hidden_size=d * q.shape[1], num_attention_heads=q.shape[1], head_dim=d,
                         rope_parameters={"rope_type": "default", "rope_theta": base})
    cos, sin = LlamaRotaryEmbedding(config)(q, positions.unsqueeze(0))
    return apply_rotary_pos_emb(q, k, cos, sin)


def bloom_slopes(n_heads):
    """BLOOM's ALiBi tensor is slope_h · key_position; at key position 1 it is the slope itself."""
    return build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), n_heads, torch.float64)[:, 0, 1]


# ------------------------------------------------------------------------------------------ sinusoidal

@pytest.mark.task("sinusoidal")
def test_sinusoidal_hand_values(impl):
    pe = impl.sinusoidal_encoding(3, 4)  # ω = (1, 10000^(-1/2) = 0.01)
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0],
                             [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                             [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]])
    assert_close_to_reference(pe, expected, atol=1e-6, what="sinusoidal_encoding(3, 4)")


@pytest.mark.task("sinusoidal")
def test_sinusoidal_brute_force(impl):
    n, d = 50, 16
    expected = torch.empty(n, d, dtype=torch.float64)
    for p in range(n):
        for i in range(d // 2):
            expected[p, 2 * i] = math.sin(p / 10_000 ** (2 * i / d))
            expected[p, 2 * i + 1] = math.cos(p / 10_000 ** (2 * i / d))
    got = impl.sinusoidal_encoding(n, d)
    assert got.shape == (n, d), f"expected shape ({n}, {d}), got {tuple(got.shape)}"
    assert_close_to_reference(got, expected, atol=1e-6, what="sinusoidal_encoding(50, 16)")
    with pytest.raises(ValueError):
        impl.sinusoidal_encoding(4, 5)


# ------------------------------------------------------------------------------------------ learned

@pytest.mark.task("learned-positions")
def test_learned_lookup_and_limit(impl):
    m = impl.LearnedPositions(8, 6)
    pos = torch.tensor([0, 3, 7])
    assert torch.equal(m(pos), m.table.weight[pos]), "positions inside the table should return its rows"
    with pytest.raises(ValueError, match="8"):
        m(torch.arange(9))
    with pytest.raises(ValueError, match="negative"):
        m(torch.tensor([0, -1, 2]))  # a clear error, not nn.Embedding's IndexError


@pytest.mark.task("learned-positions")
def test_learned_clamp_reuses_last_row(impl):
    m = impl.LearnedPositions(4, 6, clamp=True)
    out = m(torch.arange(10))
    assert out.shape == (10, 6), f"expected shape (10, 6), got {tuple(out.shape)}"
    for p in range(4, 10):
        assert torch.equal(out[p], m.table.weight[3]), f"position {p} should reuse row 3 (the last) when clamping"


# ------------------------------------------------------------------------------------------ RoPE

@pytest.mark.task("rope")
def test_rope_matches_transformers_llama(impl):
    q, k = torch.randn(2, 3, 10, 16), torch.randn(2, 3, 10, 16)
    positions = torch.arange(5, 15)
    q_ref, k_ref = hf_rope(q, k, positions)
    got = impl.apply_rope(q, positions)
    assert got.dtype == q.dtype, f"expected the input dtype {q.dtype}, got {got.dtype}"
    assert_close_to_reference(got, q_ref, atol=2e-5, what="RoPE(q) vs transformers")
    assert_close_to_reference(impl.apply_rope(k, positions), k_ref, atol=2e-5, what="RoPE(k) vs transformers")
    assert_close_to_reference(impl.apply_rope(q, positions, base=500.0), hf_rope(q, k, positions, 500.0)[0],
                              atol=2e-5, what="RoPE with base 500 vs transformers")


@pytest.mark.task("rope")
def test_rope_keeps_norms_and_position_zero(impl):
    x = torch.randn(4, 7, 32, dtype=torch.float64)
    rotated = impl.apply_rope(x, torch.arange(100, 107))
    assert_close_to_reference(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-10, what="norms after RoPE")
    same = impl.apply_rope(x[:, :1], torch.tensor([0]))
    assert_close_to_reference(same, x[:, :1], atol=1e-12, what="RoPE at position 0 (the identity)")


def _dot_after(fn, q, k, m, n):
    return float((fn(q[None], torch.tensor([m])) * fn(k[None], torch.tensor([n]))).sum())


relative = dict(m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(0, 3000),
                seed=st.integers(0, 10_000))


@pytest.mark.task("rope")
@settings(max_examples=25, deadline=None)
@given(**relative)
def test_rope_dot_depends_only_on_offset(impl, m, n, shift, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    before = _dot_after(impl.apply_rope, q, k, m, n)
    after = _dot_after(impl.apply_rope, q, k, m + shift, n + shift)
    assert math.isclose(before, after, abs_tol=1e-8), \
        f"q.k at positions ({m}, {n}) is {before:.10f} but at ({m + shift}, {n + shift}) it is {after:.10f}"


@pytest.mark.task("rope-complex")
def test_rope_complex_matches_rotation_matrices(impl):
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    positions = torch.tensor([0, 1, 7, 50, 999])
    expected = torch.empty_like(x)
    for t, p in enumerate(positions.tolist()):
        for i in range(4):
            phi = p * 10_000 ** (-2 * i / 8)
            rot = torch.tensor([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]], dtype=torch.float64)
            expected[:, t, 2 * i:2 * i + 2] = x[:, t, 2 * i:2 * i + 2] @ rot.T
    assert_close_to_reference(impl.apply_rope_complex(x, positions), expected, atol=1e-9,
                              what="complex RoPE vs explicit 2x2 rotations of (x_2i, x_2i+1)")


@pytest.mark.task("rope-complex")
def test_rope_complex_is_llama_rope_in_interleaved_layout(impl):
    q = torch.randn(1, 2, 6, 16)
    positions = torch.arange(6)
    perm = torch.cat([torch.arange(0, 16, 2), torch.arange(1, 16, 2)])  # interleaved -> half-split
    q_ref, _ = hf_rope(q[..., perm], q[..., perm], positions)
    got = impl.apply_rope_complex(q, positions)
    assert got.dtype == q.dtype, f"expected the input dtype {q.dtype}, got {got.dtype}"
    assert_close_to_reference(got[..., perm], q_ref, atol=2e-5,
                              what="complex RoPE (interleaved) vs transformers' rotate-half after the permutation")


@pytest.mark.task("rope-complex")
@settings(max_examples=15, deadline=None)
@given(**relative)
def test_rope_complex_relative_property(impl, m, n, shift, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    before = _dot_after(impl.apply_rope_complex, q, k, m, n)
    after = _dot_after(impl.apply_rope_complex, q, k, m + shift, n + shift)
    assert math.isclose(before, after, abs_tol=1e-8), \
        f"q.k at positions ({m}, {n}) is {before:.10f} but at ({m + shift}, {n + shift}) it is {after:.10f}"


# ------------------------------------------------------------------------------------------ ALiBi

@pytest.mark.task("alibi")
def test_alibi_slopes_by_hand(impl):
    eight = impl.alibi_slopes(8)
    assert_close_to_reference(eight, [2.0 ** -(i + 1) for i in range(8)], atol=1e-12, what="slopes for 8 heads")
    twelve = impl.alibi_slopes(12)
    # the 8 slopes of 8 heads, then the odd-numbered slopes of the 16-head sequence 2^(-k/2): k = 1, 3, 5, 7
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    assert_close_to_reference(twelve, expected, atol=1e-12, what="slopes for 12 heads")


@pytest.mark.task("alibi")
@pytest.mark.parametrize("n_heads", [1, 2, 3, 5, 6, 7, 12, 16, 20, 24, 32])
def test_alibi_slopes_match_bloom(impl, n_heads):
    assert_close_to_reference(impl.alibi_slopes(n_heads), bloom_slopes(n_heads), atol=1e-7,
                              what=f"ALiBi slopes for {n_heads} heads vs BLOOM")


@pytest.mark.task("alibi")
def test_alibi_bias_shape_and_values(impl):
    bias = impl.alibi_bias(2, 4)
    d = torch.tensor([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]], dtype=torch.float64)
    expected = torch.stack([-d / 2 ** 4, -d / 2 ** 8])  # slopes for 2 heads: 2^-4, 2^-8
    assert bias.shape == (2, 4, 4), f"expected shape (2, 4, 4), got {tuple(bias.shape)}"
    assert_close_to_reference(bias, expected, atol=1e-12, what="alibi_bias(2, 4)")
    last = impl.alibi_bias(2, 1, 4)
    assert_close_to_reference(last, expected[:, -1:], atol=1e-12, what="one decoding query against 4 keys")


@pytest.mark.task("alibi")
def test_alibi_softmax_equals_bloom_under_causal_mask(impl):
    # BLOOM adds slope·j instead of -slope·(i - j): the two differ by a constant per row, which softmax ignores
    h, t = 6, 9
    scores = torch.randn(h, t, t, dtype=torch.float64)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    bloom = build_alibi_tensor(torch.ones(1, t, dtype=torch.long), h, torch.float64)  # (h, 1, t)
    expected = torch.softmax((scores + bloom).masked_fill(~causal, float("-inf")), -1)
    got = torch.softmax((scores + impl.alibi_bias(h, t)).masked_fill(~causal, float("-inf")), -1)
    assert_close_to_reference(got, expected, atol=1e-12, what="causal attention weights with ALiBi vs BLOOM")


# ------------------------------------------------------------------------------------------ attention + model

def _reference_attention(q, k, v, scheme, positions):
    if scheme == "rope":
        q, k = hf_rope(q, k, positions)
    if scheme == "alibi":
        t, h = q.shape[-2], q.shape[1]
        bias = build_alibi_tensor(torch.ones(1, t, dtype=torch.long), h, q.dtype).view(1, h, 1, t)
        mask = bias.expand(1, h, t, t).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@pytest.mark.task("positional-attention")
@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "rope", "alibi"])
def test_positional_attention_matches_references(impl, scheme):
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    positions = torch.arange(3, 10)
    got = impl.positional_attention(q, k, v, scheme, positions)
    assert_close_to_reference(got, _reference_attention(q, k, v, scheme, positions), atol=2e-5,
                              what=f"{scheme} attention vs transformers/SDPA")


@pytest.fixture(scope="module")
def models(impl):
    torch.manual_seed(0)
    return {s: impl.TinyLM(11, s, d_model=16, n_heads=2, n_layers=2, train_len=16) for s in impl.SCHEMES}


@pytest.mark.task("positional-attention")
@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "rope", "alibi"])
def test_tiny_lm_is_causal_and_runs_past_train_len(impl, models, scheme):
    model = models[scheme].eval()
    idx = torch.randint(0, 11, (2, 48))  # 3x the training length
    with torch.no_grad():
        logits = model(idx)
        changed = idx.clone()
        changed[:, 30:] = (changed[:, 30:] + 1) % 11
        logits_changed = model(changed)
    assert logits.shape == (2, 48, 11), f"expected logits (2, 48, 11), got {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), "logits should be finite at 3x the training length"
    assert torch.equal(logits[:, :30], logits_changed[:, :30]), "changing tokens 30+ changed logits before 30"


@pytest.mark.task("positional-attention")
def test_relative_schemes_ignore_absolute_offset(impl, models):
    idx = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        for scheme in ("rope", "alibi"):
            model = models[scheme].eval()
            assert_close_to_reference(model(idx, offset=37), model(idx), atol=1e-4,
                                      what=f"{scheme} model logits with every position shifted by 37")
        sinus = models["sinusoidal"].eval()
        gap = (sinus(idx, offset=37) - sinus(idx)).abs().max().item()
    assert gap > 1e-3, f"an absolute scheme should notice the shift, but logits moved only {gap:.1e}"


@pytest.mark.task("positional-attention")
@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "rope", "alibi"])
def test_tiny_lm_overfits_one_batch(impl, scheme):
    # plain SGD written here (no torch.optim), so the check only depends on the forward pass and autograd
    torch.manual_seed(0)
    x = torch.randint(0, 7, (4, 12))
    y = torch.roll(x, -1, dims=1)
    model = impl.TinyLM(7, scheme, d_model=16, n_heads=2, n_layers=1, train_len=12)

    def step():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
        return loss.item()

    assert_overfits_batch(step, steps=40, target=1.6, start_factor=0.8)
