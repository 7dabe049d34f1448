"""Attention, multi-head attention and the KV-cache: torch's own SDPA and nn.MultiheadAttention are the
references, and the same tiny decoder run without a cache is the reference for the cached path."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.checks import assert_close_to_reference, assert_kv_cache_equivalent

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (labkit plugin)
FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None)


# ------------------------------------------------------------------ attention

@pytest.mark.task("attention")
def test_causal_mask_by_hand(impl):
    got = impl.causal_mask(3).tolist()
    assert got == [[True, False, False], [True, True, False], [True, True, True]], f"3x3 causal mask, got {got}"
    shifted = impl.causal_mask(2, 5).tolist()
    assert shifted == [[True, True, True, True, False], [True] * 5], \
        f"2 queries after 3 cached keys: row 0 sees keys 0-3, row 1 sees all 5; got {shifted}"
    assert impl.causal_mask(1, 4).tolist() == [[True] * 4], "one decode query sees every cached key and itself"
    assert impl.causal_mask(2).dtype == torch.bool, "the mask should be a bool tensor (True = may attend)"


@pytest.mark.task("attention")
def test_scaling_by_sqrt_d_by_hand(impl):
    # q = k0 = (1,1,1,1): score 4 / sqrt(4) = 2; k1 = 0: score 0. softmax([2, 0]) = (e^2, 1) / (e^2 + 1)
    q = torch.ones(1, 1, 4, dtype=torch.float64)
    k = torch.tensor([[[1.0, 1, 1, 1], [0, 0, 0, 0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)
    out, weights = impl.scaled_dot_product_attention(q, k, v)
    w0 = math.exp(2) / (math.exp(2) + 1)
    assert torch.allclose(weights, torch.tensor([[[w0, 1 - w0]]], dtype=torch.float64)), \
        f"expected weights ({w0:.4f}, {1 - w0:.4f}) from scores (2, 0), got {weights.flatten().tolist()}"
    assert math.isclose(out.item(), w0, rel_tol=1e-12), f"expected output {w0:.4f}, got {out.item():.4f}"


@pytest.mark.task("attention")
def test_sdpa_matches_torch(impl):
    q, k, v = torch.randn(3, 2, 3, 6, 8, dtype=torch.float64).unbind(0)
    random_mask = torch.rand(2, 3, 6, 6) < 0.6
    random_mask[..., 0] = True  # every query keeps at least one key
    for mask in (None, impl.causal_mask(6), random_mask):
        ours, weights = impl.scaled_dot_product_attention(q, k, v, mask)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert_close_to_reference(ours, ref, atol=1e-10, what="attention output vs torch SDPA")
        assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 6, dtype=torch.float64)), "weights rows sum to 1"
        if mask is not None:
            assert torch.all(weights[~mask.expand_as(weights)] == 0), "masked positions must get weight exactly 0"


@pytest.mark.task("attention")
def test_decode_query_with_shifted_mask_equals_last_row(impl):
    q, k, v = torch.randn(3, 1, 7, 4, dtype=torch.float64).unbind(0)
    full, _ = impl.scaled_dot_product_attention(q, k, v, impl.causal_mask(7))
    last, _ = impl.scaled_dot_product_attention(q[:, -2:], k, v, impl.causal_mask(2, 7))
    assert_close_to_reference(last, full[:, -2:], atol=1e-12,
                              what="the last two queries over 7 keys (a shifted causal mask) vs full attention")


@pytest.mark.task("attention")
def test_causal_outputs_ignore_the_future(impl):
    impl.causal_mask(2)

    @FAST
    @given(st.integers(2, 8), st.integers(0, 2**16))
    def check(t, seed):
        g = torch.Generator().manual_seed(seed)
        q, k, v = torch.randn(3, t, 4, generator=g, dtype=torch.float64).unbind(0)
        cut = t // 2
        k2, v2 = k.clone(), v.clone()
        k2[cut:] += 5 * torch.randn(t - cut, 4, generator=g, dtype=torch.float64)
        v2[cut:] -= 3.0
        a, _ = impl.scaled_dot_product_attention(q, k, v, impl.causal_mask(t))
        b, _ = impl.scaled_dot_product_attention(q, k2, v2, impl.causal_mask(t))
        assert torch.allclose(a[:cut], b[:cut], atol=1e-12), "changing future keys/values changed a past output"
    check()


# ------------------------------------------------------------------ multi-head attention

def torch_mha_from(ours, d_model, n_heads):
    ref = torch.nn.MultiheadAttention(d_model, n_heads, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    return ref


@pytest.mark.task("multi-head")
def test_multi_head_matches_torch_multihead_attention(impl):
    mha = impl.MultiHeadAttention(16, 4).double()
    ref = torch_mha_from(mha, 16, 4)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)  # nn.MultiheadAttention: True = NOT allowed
    with torch.no_grad():
        assert_close_to_reference(mha(x, causal=True), ref(x, x, x, attn_mask=future, need_weights=False)[0],
                                  atol=1e-10, what="causal multi-head output vs nn.MultiheadAttention")
        assert_close_to_reference(mha(x, causal=False), ref(x, x, x, need_weights=False)[0],
                                  atol=1e-10, what="bidirectional multi-head output vs nn.MultiheadAttention")


@pytest.mark.task("multi-head")
def test_batch_items_do_not_mix(impl):
    mha = impl.MultiHeadAttention(12, 3).double()
    x = torch.randn(3, 4, 12, dtype=torch.float64)
    with torch.no_grad():
        together = mha(x)
        alone = torch.cat([mha(x[i:i + 1]) for i in range(3)])
    assert together.shape == (3, 4, 12), f"expected (3, 4, 12), got {tuple(together.shape)}"
    assert_close_to_reference(together, alone, atol=1e-12, what="batched output vs one sequence at a time")


@pytest.mark.task("multi-head")
def test_one_head_is_plain_attention(impl):
    mha = impl.MultiHeadAttention(8, 1).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    q, k, v = (x @ w.T + b for w, b in zip(mha.qkv.weight.split(8), mha.qkv.bias.split(8)))
    expected = mha.out(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    with torch.no_grad():
        assert_close_to_reference(mha(x), expected, atol=1e-12, what="one-head output vs single attention")


# ------------------------------------------------------------------ KV-cache

def tiny_model(impl, vocab=16, layers=2, seed=0):
    torch.manual_seed(seed)
    model = impl.TinyDecoder(vocab_size=vocab, d_model=32, n_heads=4, n_layers=layers).double().eval()
    with torch.no_grad():  # larger weights than the default init: positions and attention really matter
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.task("kv-cache")
def test_prefill_equals_full_forward(impl):
    model = tiny_model(impl)
    idx = torch.randint(0, 16, (2, 7))
    with torch.no_grad():
        cached, cache = model.forward_cached(idx)
        assert_close_to_reference(cached, model(idx), atol=1e-10, what="prefill logits vs the uncached forward")
    assert len(cache) == 2, f"one (k, v) per layer: expected 2 entries, got {len(cache)}"
    assert tuple(cache[0][0].shape) == (2, 4, 7, 8), f"k cache (B, H, T, d) = (2, 4, 7, 8), got {tuple(cache[0][0].shape)}"


@pytest.mark.task("kv-cache")
def test_decoding_in_chunks_equals_full_forward(impl):
    model = tiny_model(impl)
    idx = torch.randint(0, 16, (2, 9))
    with torch.no_grad():
        full = model(idx)
        pieces, cache = [], None
        for start, stop in ((0, 3), (3, 5), (5, 6), (6, 7), (7, 9)):   # prefill, a chunk of 2, single steps, 2
            logits, cache = model.forward_cached(idx[:, start:stop], cache)
            pieces.append(logits)
    assert cache[1][1].size(2) == 9, f"after 9 tokens the cache holds 9 positions, got {cache[1][1].size(2)}"
    assert_close_to_reference(torch.cat(pieces, dim=1), full, atol=1e-10,
                              what="logits decoded chunk by chunk with the cache vs one full forward")


@pytest.mark.task("kv-cache")
def test_cached_greedy_generation_equals_uncached(impl):
    model = tiny_model(impl, seed=1)
    assert_kv_cache_equivalent(lambda prompt, n, use_cache: impl.generate(model, prompt, n, use_cache),
                               [[1], [3, 4, 5], [0, 15, 2, 2, 9, 11]], max_new_tokens=12)


@pytest.mark.task("kv-cache")
def test_each_cached_step_feeds_one_token(impl):
    model = tiny_model(impl)
    seen = []
    original = model.forward_cached

    def spy(idx, cache=None):
        seen.append(idx.size(1))
        return original(idx, cache)

    model.forward_cached = spy
    impl.generate(model, [2, 7, 1, 8], 5, use_cache=True)
    assert seen and seen[0] == 4 and all(n == 1 for n in seen[1:]), \
        f"expected one prefill of 4 tokens then single tokens, got call sizes {seen}"
