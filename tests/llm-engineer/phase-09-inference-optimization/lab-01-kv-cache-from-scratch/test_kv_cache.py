"""KV-cache lab checks. The references are hand-computed byte counts, transformers' Llama (rotary embedding,
attention, logits, cached generate) and the library's KV-cache equivalence check."""
import pytest
import torch

from labkit.checks import assert_close_to_reference, assert_kv_cache_equivalent

LlamaConfig = pytest.importorskip("transformers").LlamaConfig
from transformers import LlamaForCausalLM  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def hf_llama(vocab=48, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, max_pos=128):
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_pos,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so positions and attention really matter
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def ours_from(impl, hf, block_size):
    """The lab's GPT holding the same weights as the transformers model."""
    return impl.GPT.from_llama(hf, block_size=block_size).eval()


# --------------------------------------------------------------------------- kv-bytes

@pytest.mark.task("kv-bytes")
def test_llama3_8b_at_8k_in_bf16_is_one_gib(impl):
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 8192 tokens x 2 bytes, by hand = 2**30
    got = impl.kv_cache_bytes(32, 8, 128, 8192, batch=1, bytes_per_elem=2)
    assert got == 1_073_741_824, f"expected 1,073,741,824 B (1.07 GB) for Llama-3-8B at 8192 tokens, got {got:,}"
    assert impl.kv_cache_bytes(32, 8, 128, 8192, batch=32) == 34_359_738_368, \
        "expected 34,359,738,368 B for a batch of 32 sequences"


@pytest.mark.task("kv-bytes")
def test_memory_scales_with_every_factor(impl):
    base = impl.kv_cache_bytes(2, 3, 5, 7, batch=11, bytes_per_elem=1)
    assert base == 2 * 2 * 3 * 5 * 7 * 11, f"expected 4,620 B for (2, 3, 5, 7, batch 11, 1 B), got {base}"
    mha = impl.kv_cache_bytes(32, 32, 128, 8192)
    assert mha == 4 * 1_073_741_824, f"32 KV heads (no GQA) should cost 4x the 8-head cache, got {mha:,}"
    assert impl.kv_cache_bytes(32, 8, 128, 8192, bytes_per_elem=4) == 2 * 1_073_741_824, "fp32 should double bf16"


@pytest.mark.task("kv-bytes")
def test_bad_sizes_are_refused(impl):
    impl.kv_cache_bytes(1, 1, 1, 1)
    with pytest.raises(ValueError):
        impl.kv_cache_bytes(32, 8, 128, 0)
    with pytest.raises(ValueError):
        impl.kv_cache_bytes(32, -8, 128, 10)


# --------------------------------------------------------------------------- rope

@pytest.mark.task("rope")
def test_rope_matches_transformers_at_an_offset(impl):
    hf = hf_llama(hidden=64, heads=4, kv_heads=4)          # head_dim 16
    positions = torch.arange(7, 19)
    q, k = torch.randn(2, 4, 12, 16), torch.randn(2, 4, 12, 16)
    ref_cos, ref_sin = LlamaRotaryEmbedding(hf.config)(q, positions[None])
    ref_q, ref_k = apply_rotary_pos_emb(q, k, ref_cos, ref_sin)
    cos, sin = impl.rope_cos_sin(16, positions, 10000.0)
    assert tuple(cos.shape) == (12, 16), f"expected cos of shape (12, 16), got {tuple(cos.shape)}"
    assert_close_to_reference(cos, ref_cos[0], atol=1e-6, what="cos table")
    assert_close_to_reference(impl.apply_rope(q, cos, sin), ref_q, atol=1e-5, what="rotated queries")
    assert_close_to_reference(impl.apply_rope(k, cos, sin), ref_k, atol=1e-5, what="rotated keys")


@pytest.mark.task("rope")
def test_rope_scores_depend_on_relative_position_only(impl):
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        cq, sq = impl.rope_cos_sin(8, torch.tensor([m]))
        ck, sk = impl.rope_cos_sin(8, torch.tensor([n]))
        return (impl.apply_rope(q, cq, sq) * impl.apply_rope(k, ck, sk)).sum().item()

    assert score(9, 4) == pytest.approx(score(25, 20), abs=1e-4), "q.k after rotation should depend on m - n only"
    rotated = impl.apply_rope(q, *impl.rope_cos_sin(8, torch.tensor([13])))
    assert rotated.norm().item() == pytest.approx(q.norm().item(), rel=1e-5), "a rotation must keep the norm"


# --------------------------------------------------------------------------- kv-cache

@pytest.mark.task("kv-cache")
def test_cache_layout_and_bytes(impl):
    config = impl.GPTConfig(vocab_size=10, block_size=32, n_layer=3, n_head=4, n_kv_head=2, n_embd=64)
    cache = impl.KVCache(config, batch_size=5)
    assert tuple(cache.kv.shape) == (3, 2, 5, 2, 32, 16), \
        f"expected kv of shape (layers 3, 2, batch 5, kv heads 2, max_seq 32, head_dim 16), got {tuple(cache.kv.shape)}"
    assert cache.length == 0, f"a new cache should hold 0 positions, holds {cache.length}"
    # by hand: 2 x 3 layers x 2 heads x 16 dims x 32 positions x 5 sequences x 4 bytes (float32)
    assert cache.kv.numel() * cache.kv.element_size() == 122_880, \
        f"expected 122,880 B of float32 cache, got {cache.kv.numel() * cache.kv.element_size():,}"
    assert impl.kv_cache_bytes(3, 2, 16, 32, batch=5, bytes_per_elem=4) == 122_880, \
        "the calculator should agree with the bytes actually allocated"
    half = impl.KVCache(config, batch_size=5, dtype=torch.bfloat16)
    assert half.kv.dtype == torch.bfloat16 and half.nbytes == 61_440, "a bf16 cache should take half: 61,440 B"


@pytest.mark.task("kv-cache")
def test_update_writes_after_length_and_returns_the_prefix(impl):
    config = impl.GPTConfig(vocab_size=10, block_size=16, n_layer=2, n_head=2, n_kv_head=1, n_embd=8)
    cache = impl.KVCache(config, batch_size=2)
    k1, v1 = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    k, v = cache.update(1, k1, v1)
    assert torch.equal(k, k1) and torch.equal(v, v1), "after writing 3 positions into an empty cache, " \
        "update should return exactly those 3 keys and values"
    cache.length = 3                                   # the model advances it once per forward
    k2, v2 = torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4)
    k, v = cache.update(1, k2, v2)
    assert tuple(k.shape) == (2, 1, 4, 4), f"expected 4 cached positions (2, 1, 4, 4), got {tuple(k.shape)}"
    assert torch.equal(k, torch.cat([k1, k2], 2)) and torch.equal(v, torch.cat([v1, v2], 2)), \
        "the new position should follow the three old ones, which stay unchanged"
    assert torch.count_nonzero(cache.kv[0]) == 0, "writing layer 1 must leave layer 0 untouched"
    assert cache.length == 3, "update itself should not move length"


# --------------------------------------------------------------------------- attention

@pytest.mark.task("attention")
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_matches_transformers_and_chunks_through_a_cache(impl, heads, kv_heads):
    hf = hf_llama(hidden=32, heads=heads, kv_heads=kv_heads)
    model = ours_from(impl, hf, block_size=32)
    x = torch.randn(2, 11, 32)
    positions = torch.arange(11)[None]
    cos, sin = LlamaRotaryEmbedding(hf.config)(x, positions)
    with torch.no_grad():
        mask = torch.full((11, 11), float("-inf")).triu(1)[None, None]
        ref, _ = hf.model.layers[0].self_attn(x, (cos, sin), attention_mask=mask)
        full = model.layers[0].self_attn(x, cos[0], sin[0])
        assert_close_to_reference(full, ref, atol=1e-5, what=f"attention output ({heads} heads, {kv_heads} KV)")
        # the same sequence fed as chunks of 5, 1, 4 and 1 tokens through a cache
        cache = impl.KVCache(model.config, batch_size=2)
        pieces = []
        for a, b in [(0, 5), (5, 6), (6, 10), (10, 11)]:
            pieces.append(model.layers[0].self_attn(x[:, a:b], cos[0, a:b], sin[0, a:b], cache, 0))
            cache.length = b
        assert_close_to_reference(torch.cat(pieces, 1), ref, atol=1e-5, what="chunked attention through the cache")


# --------------------------------------------------------------------------- cached-forward

@pytest.mark.task("cached-forward")
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2)])
def test_logits_match_transformers(impl, heads, kv_heads):
    hf = hf_llama(heads=heads, kv_heads=kv_heads)
    model = ours_from(impl, hf, block_size=64)
    idx = torch.randint(0, 48, (3, 20))
    with torch.no_grad():
        ref = hf(idx).logits
        logits, cache = model(idx)
    assert cache is None, "without a cache, forward should hand back None as the cache"
    assert_close_to_reference(logits, ref, atol=1e-4, rtol=1e-4, what="logits vs LlamaForCausalLM")


@pytest.mark.task("cached-forward")
def test_prefill_then_decode_equals_one_full_pass(impl):
    hf = hf_llama()
    model = ours_from(impl, hf, block_size=24)
    idx = torch.randint(0, 48, (2, 24))
    with torch.no_grad():
        ref = hf(idx).logits
        cache = impl.KVCache(model.config, batch_size=2)
        chunks = []
        for a, b in [(0, 9), (9, 10), (10, 11), (11, 20), (20, 24)]:
            logits, cache = model(idx[:, a:b], cache)
            chunks.append(logits)
            assert cache.length == b, f"after feeding tokens up to {b} the cache should hold {b}, holds {cache.length}"
    assert_close_to_reference(torch.cat(chunks, 1), ref, atol=1e-4, rtol=1e-4,
                              what="logits of prefill + decode steps vs one full pass")
    with pytest.raises(ValueError):     # the cache is full at block_size
        model(idx[:, :1], cache)


# --------------------------------------------------------------------------- generate

def _check(impl, model, prompts, max_new):
    def gen(prompt, n, use_cache):
        return impl.generate(model, prompt, n, use_cache=use_cache).flatten()

    def last_logits(prompt, use_cache):
        return impl.generate(model, prompt, max_new, use_cache=use_cache, return_logits=True)[1][:, -1]

    assert_kv_cache_equivalent(gen, prompts, max_new, logits=last_logits, atol=1e-4)


@pytest.mark.task("generate")
def test_greedy_generation_matches_transformers_generate(impl):
    hf = hf_llama(kv_heads=2)
    model = ours_from(impl, hf, block_size=64)
    prompt = torch.randint(0, 48, (2, 6))
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=25, do_sample=False, use_cache=True, output_logits=True,
                          return_dict_in_generate=True)
    ours, logits = impl.generate(model, prompt, 25, use_cache=True, return_logits=True)
    assert tuple(ours.shape) == (2, 31), f"expected prompt + 25 tokens (2, 31), got {tuple(ours.shape)}"
    assert torch.equal(ours, ref.sequences), \
        f"tokens differ from transformers' cached greedy generate:\n{ours.tolist()}\nvs\n{ref.sequences.tolist()}"
    assert_close_to_reference(logits, torch.stack(ref.logits, 1), atol=1e-4, rtol=1e-4, what="per-step logits")


@pytest.mark.task("generate")
def test_past_the_limit_each_token_comes_from_the_last_block_size_tokens(impl):
    block = 8
    hf = hf_llama()
    model = ours_from(impl, hf, block_size=block)
    prompt = torch.randint(0, 48, (2, 5))
    out = impl.generate(model, prompt, 10, use_cache=True)
    expected = prompt
    with torch.no_grad():                     # brute force: transformers on the cropped window, one step at a time
        for _ in range(10):
            nxt = hf(expected[:, -block:]).logits[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, nxt], 1)
    assert torch.equal(out, expected), f"expected a sliding crop to the last {block} tokens:\n" \
        f"{expected.tolist()}\ngot\n{out.tolist()}"


@pytest.mark.task("generate")
def test_sampling_is_reproducible_with_and_without_cache(impl):
    model = ours_from(impl, hf_llama(), block_size=32)
    prompt = torch.randint(0, 48, (2, 4))
    runs = [impl.generate(model, prompt, 15, use_cache=c, temperature=1.0,
                          generator=torch.Generator().manual_seed(3)) for c in (True, False)]
    assert torch.equal(runs[0], runs[1]), "with the same seed, sampling should give the same tokens either way"
    assert torch.equal(runs[0][:, :4], prompt), "the prompt should stay at the start of the output"


@pytest.mark.task("generate")
def test_a_tiny_temperature_samples_the_greedy_tokens(impl):
    # softmax(z / T) tends to one-hot on the argmax as T -> 0, so sampling at T = 1e-4 must give the greedy tokens
    model = ours_from(impl, hf_llama(), block_size=32)
    prompt = torch.randint(0, 48, (2, 4), generator=torch.Generator().manual_seed(5))
    greedy = impl.generate(model, prompt, 15, use_cache=True)
    for use_cache in (True, False):
        cold = impl.generate(model, prompt, 15, use_cache=use_cache, temperature=1e-4,
                             generator=torch.Generator().manual_seed(3))
        assert torch.equal(cold, greedy), f"sampling at temperature 1e-4 (use_cache={use_cache}) should equal " \
            f"greedy decoding:\n{cold.tolist()}\nvs\n{greedy.tolist()}"


# the broadest generate check, and the slowest: after the quick ones, so a wrong loop fails fast
@pytest.mark.task("generate")
@pytest.mark.parametrize("heads,kv_heads,batch", [(4, 4, 1), (4, 2, 3), (4, 1, 2)])
def test_cache_equivalence_short_and_at_the_limit(impl, heads, kv_heads, batch):
    block = 16
    model = ours_from(impl, hf_llama(heads=heads, kv_heads=kv_heads), block_size=block)
    prompts = [torch.randint(0, 48, (batch, n)) for n in (1, 5, block - 1, block, block + 7)]
    _check(impl, model, prompts, max_new=12)   # 5 + 12 crosses the limit; block + 7 starts past it


@pytest.mark.gpu
@pytest.mark.task("generate")
def test_cache_equivalence_on_cuda(impl):
    model = ours_from(impl, hf_llama(kv_heads=2), block_size=16).to("cuda")
    prompts = [torch.randint(0, 48, (2, n), device="cuda") for n in (3, 16, 20)]
    _check(impl, model, prompts, max_new=10)
    cache = impl.KVCache(model.config, batch_size=2, device="cuda")
    assert cache.kv.is_cuda, "the cache should live on the device it was asked for"
