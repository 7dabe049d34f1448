"""Checks for the mini transformer: every layer against PyTorch's own modules with copied weights, causality,
weight tying, the parameter formula, and the two LM sanity checks (initial loss, overfitting one batch)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit import checks

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def small_config(impl, **overrides):
    fields = dict(vocab_size=50, n_layer=2, n_head=4, d_model=32, d_ff=64, block_size=12)
    fields.update(overrides)
    return impl.GPTConfig(**fields)


def torch_layer_like(block, cfg) -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer holding a copy of the block's weights (same GELU, same norm placement)."""
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=cfg.norm_first, bias=cfg.bias)
    pairs = [(layer.self_attn.in_proj_weight, block.attn.qkv.weight),
             (layer.self_attn.out_proj.weight, block.attn.proj.weight),
             (layer.linear1.weight, block.mlp.fc.weight), (layer.linear2.weight, block.mlp.proj.weight),
             (layer.norm1.weight, block.ln1.weight), (layer.norm2.weight, block.ln2.weight)]
    if cfg.bias:
        pairs += [(layer.self_attn.in_proj_bias, block.attn.qkv.bias),
                  (layer.self_attn.out_proj.bias, block.attn.proj.bias),
                  (layer.linear1.bias, block.mlp.fc.bias), (layer.linear2.bias, block.mlp.proj.bias),
                  (layer.norm1.bias, block.ln1.bias), (layer.norm2.bias, block.ln2.bias)]
    with torch.no_grad():
        for theirs, ours in pairs:
            theirs.copy_(ours)
    return layer.eval()


def randomise(module: nn.Module) -> None:
    """Non-trivial values everywhere (LayerNorm gains and biases too), so a swapped weight cannot hide."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.normal_(0.0, 0.3)
            if "ln" in name and name.endswith("weight"):
                p.add_(1.0)  # LayerNorm gains around 1


# ------------------------------------------------------------------------------------------ attention

@pytest.mark.task("causal-attention")
@pytest.mark.parametrize("bias", [False, True])
def test_attention_matches_torch_sdpa(impl, bias):
    cfg = small_config(impl, bias=bias)
    attn = impl.CausalSelfAttention(cfg).eval()
    randomise(attn)
    x = torch.randn(3, 7, cfg.d_model)  # shorter than block_size: the mask must be cropped
    ours = attn(x)
    # reference: the same projections, then PyTorch's fused causal attention
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(cfg.d_model, dim=-1)
    heads = [t.view(3, 7, cfg.n_head, -1).transpose(1, 2) for t in (q, k, v)]
    y = F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(3, 7, cfg.d_model)
    reference = F.linear(y, attn.proj.weight, attn.proj.bias)
    checks.assert_close_to_reference(ours, reference, atol=1e-5, what="attention output vs F.scaled_dot_product_attention")


@pytest.mark.task("causal-attention")
def test_attention_weights_are_causal_distributions(impl):
    cfg = small_config(impl)
    attn = impl.CausalSelfAttention(cfg).eval()
    randomise(attn)
    _, weights = attn(torch.randn(2, 9, cfg.d_model), return_weights=True)
    assert weights.shape == (2, cfg.n_head, 9, 9), f"expected weights of shape (2, {cfg.n_head}, 9, 9), got {tuple(weights.shape)}"
    future = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    leak = weights[..., future].abs().max().item()
    assert leak == 0.0, f"attention to future positions must be exactly 0, found weight {leak:.3g}"
    sums = weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6), \
        f"each query's weights should sum to 1; got sums from {sums.min():.4f} to {sums.max():.4f}"


# ------------------------------------------------------------------------------------------ block

@pytest.mark.task("block")
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_block_matches_torch_encoder_layer(impl, norm_first, bias):
    cfg = small_config(impl, norm_first=norm_first, bias=bias)
    block = impl.Block(cfg).eval()
    randomise(block)
    reference = torch_layer_like(block, cfg)
    x = torch.randn(2, 8, cfg.d_model)
    mask = nn.Transformer.generate_square_subsequent_mask(8)
    with torch.no_grad():
        expected = reference(x, src_mask=mask, is_causal=True)
        ours = block(x)
    layout = "pre-norm" if norm_first else "post-norm"
    checks.assert_close_to_reference(ours, expected, atol=1e-5,
                                     what=f"{layout} block vs nn.TransformerEncoderLayer(norm_first={norm_first})")


# ------------------------------------------------------------------------------------------ init and tying

@pytest.mark.task("init-and-tying")
def test_head_and_embedding_are_one_parameter(impl):
    model = impl.MiniGPT(small_config(impl))
    assert model.head.weight is model.tok_emb.weight, \
        "with tie_weights=True, head.weight should be the very same Parameter object as tok_emb.weight"
    names = [name for name, p in model.named_parameters() if p is model.tok_emb.weight]
    assert len(names) == 1, f"the tied matrix should appear once in named_parameters(), found {names}"
    untied = impl.MiniGPT(small_config(impl, tie_weights=False))
    assert untied.head.weight is not untied.tok_emb.weight, "with tie_weights=False the head needs its own matrix"


@pytest.mark.task("init-and-tying")
def test_initialisation_scale(impl):
    model = impl.MiniGPT(small_config(impl, bias=True, d_model=64, d_ff=256, vocab_size=500))
    for name, p in model.named_parameters():
        if "ln" in name:  # LayerNorm starts as the identity map: gain 1, shift 0
            expected = 1.0 if name.endswith(".weight") else 0.0
            assert torch.equal(p, torch.full_like(p, expected)), f"{name} should start at {expected}"
        elif name.endswith(".bias"):
            assert p.abs().max().item() == 0.0, f"{name} should start at zero"
        elif p.dim() == 2:
            std = p.std().item()
            assert 0.017 < std < 0.023, f"{name} should be drawn from N(0, 0.02); its std is {std:.4f}"


# ------------------------------------------------------------------------------------------ the decoder

def torch_reference_logits(model, cfg, idx):
    """The same network assembled from PyTorch modules with the model's weights."""
    T = idx.shape[1]
    x = model.tok_emb.weight[idx] + model.pos_emb.weight[:T]
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    for block in model.blocks:
        x = torch_layer_like(block, cfg)(x, src_mask=mask, is_causal=True)
    x = F.layer_norm(x, (cfg.d_model,), model.ln_f.weight, model.ln_f.bias)
    return x @ model.tok_emb.weight.T


@pytest.mark.task("decoder")
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_decoder_matches_torch_reference(impl, norm_first):
    cfg = small_config(impl, norm_first=norm_first)
    model = impl.MiniGPT(cfg).eval()
    randomise(model)
    idx = torch.randint(cfg.vocab_size, (2, 10))
    targets = torch.randint(cfg.vocab_size, (2, 10))
    with torch.no_grad():
        logits, loss = model(idx, targets)
        expected = torch_reference_logits(model, cfg, idx)
    assert logits.shape == (2, 10, cfg.vocab_size), f"logits should be (B, T, V) = (2, 10, {cfg.vocab_size}), got {tuple(logits.shape)}"
    checks.assert_close_to_reference(logits, expected, atol=1e-4, what="decoder logits vs a PyTorch-module reference")
    expected_loss = F.cross_entropy(expected.reshape(-1, cfg.vocab_size), targets.reshape(-1)).item()
    assert loss is not None and abs(loss.item() - expected_loss) < 1e-4, \
        f"loss should be the mean cross-entropy {expected_loss:.5f}, got {None if loss is None else loss.item()}"
    _, none = model(idx)
    assert none is None, "without targets the loss should be None"


@pytest.mark.task("decoder")
def test_changing_the_future_leaves_the_past_alone(impl):
    cfg = small_config(impl, n_layer=3)
    model = impl.MiniGPT(cfg).eval()
    randomise(model)
    idx = torch.randint(cfg.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    past = (a[0, :6] - b[0, :6]).abs().max().item()
    assert past < 1e-6, f"logits at positions 0-5 moved by {past:.2e} when only tokens 6-11 changed"
    assert (a[0, 6] - b[0, 6]).abs().max().item() > 1e-4, "the logits at a changed position should change"


@pytest.mark.task("decoder")
def test_initial_loss_is_ln_vocab(impl):
    cfg = impl.GPTConfig(vocab_size=1000, n_layer=2, n_head=4, d_model=64, d_ff=256, block_size=32)
    model = impl.MiniGPT(cfg)
    idx, targets = torch.randint(1000, (8, 32)), torch.randint(1000, (8, 32))
    with torch.no_grad():
        _, loss = model(idx, targets)
    # N(0, 0.02) weights give logits with std ~0.16, which adds about 0.013 nats over ln(1000) = 6.908
    checks.assert_initial_loss(loss.item(), cfg.vocab_size, tolerance=0.02)


@pytest.mark.task("decoder")
def test_overfits_one_batch(impl):
    cfg = small_config(impl, vocab_size=64, block_size=16)
    model = impl.MiniGPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(cfg.vocab_size, (4, 16))
    y = torch.randint(cfg.vocab_size, (4, 16))

    def step():
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    checks.assert_overfits_batch(step, steps=80, target=0.5)


# ------------------------------------------------------------------------------------------ parameter count

def torch_parameter_count(cfg) -> int:
    """Parameters of the same shape built from PyTorch modules (an independent count)."""
    parts = [nn.Embedding(cfg.vocab_size, cfg.d_model), nn.Embedding(cfg.block_size, cfg.d_model),
             nn.LayerNorm(cfg.d_model, bias=cfg.bias)]
    parts += [nn.TransformerEncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, bias=cfg.bias) for _ in range(cfg.n_layer)]
    if not cfg.tie_weights:
        parts.append(nn.Linear(cfg.d_model, cfg.vocab_size, bias=False))
    return sum(p.numel() for part in parts for p in part.parameters())


CONFIGS = [dict(vocab_size=1000, n_layer=2, n_head=4, d_model=64, d_ff=256, block_size=32),
           dict(vocab_size=65, n_layer=3, n_head=2, d_model=48, d_ff=100, block_size=20, bias=True),
           dict(vocab_size=300, n_layer=1, n_head=1, d_model=16, d_ff=64, block_size=8, tie_weights=False),
           dict(vocab_size=97, n_layer=4, n_head=8, d_model=32, d_ff=128, block_size=64, bias=True,
                tie_weights=False, norm_first=False)]


@pytest.mark.task("param-count")
@pytest.mark.parametrize("fields", CONFIGS, ids=["default", "bias", "untied", "bias-untied-postnorm"])
def test_formula_matches_numel(impl, fields):
    cfg = impl.GPTConfig(**fields)
    formula = impl.count_parameters(cfg)
    independent = torch_parameter_count(cfg)
    assert formula == independent, f"formula gives {formula:,}; the same shape in PyTorch modules has {independent:,}"
    numel = sum(p.numel() for p in impl.MiniGPT(cfg).parameters())
    assert formula == numel, f"formula gives {formula:,}; sum(p.numel()) of MiniGPT gives {numel:,}"


@pytest.mark.task("param-count")
def test_formula_by_hand(impl):
    # V=10, block 3, d=4, d_ff=8, one layer, no biases, tied head:
    # tok 10*4=40, pos 3*4=12, qkv 3*4*4=48, proj 4*4=16, fc 4*8=32, proj 8*4=32, ln1 4, ln2 4, ln_f 4 -> 192
    cfg = impl.GPTConfig(vocab_size=10, n_layer=1, n_head=2, d_model=4, d_ff=8, block_size=3)
    assert impl.count_parameters(cfg) == 192, f"hand count is 192, formula gives {impl.count_parameters(cfg)}"
    # the same with biases and an untied head: +3*4+4+8+4 linear biases, +4+4+4 norm shifts, +10*4 head -> 272
    cfg = impl.GPTConfig(vocab_size=10, n_layer=1, n_head=2, d_model=4, d_ff=8, block_size=3, bias=True,
                         tie_weights=False)
    assert impl.count_parameters(cfg) == 272, f"hand count is 272, formula gives {impl.count_parameters(cfg)}"


@pytest.mark.task("param-count")
def test_formula_matches_gpt2_small(impl):
    # GPT-2 small (124M): sum(p.numel()) of transformers' GPT2LMHeadModel(GPT2Config()) is 124,439,808, the head
    # tied to the token embedding; nanoGPT reports the same model as 123.65M once the 1024 x 768 position table
    # is left out (124,439,808 - 786,432 = 123,653,376).
    cfg = impl.GPTConfig(vocab_size=50257, n_layer=12, n_head=12, d_model=768, d_ff=3072, block_size=1024, bias=True)
    got = impl.count_parameters(cfg)
    assert got == 124_439_808, f"GPT-2 small has 124,439,808 parameters, the formula gives {got:,}"


# ------------------------------------------------------------------------------------------ generation

def _peaked_model(impl, **overrides):
    """A model with large random weights: its next-token distributions are far from uniform."""
    torch.manual_seed(0)
    model = impl.MiniGPT(small_config(impl, **overrides)).eval()
    randomise(model)
    return model


@pytest.mark.task("generate")
def test_top_k_1_is_greedy_decoding_done_by_hand(impl):
    model = _peaked_model(impl)  # block_size 12: 5 prompt tokens + 15 new ones also exercise the crop
    prompt = torch.randint(50, (3, 5))
    expected = prompt.clone()
    with torch.no_grad():
        for _ in range(15):
            logits, _ = model(expected[:, -12:])
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    for temperature in (1.0, 0.5):
        got = model.generate(prompt, 15, temperature=temperature, top_k=1)
        assert got.shape == (3, 20), f"expected (3, 20) ids (the prompt, then 15 new tokens), got {tuple(got.shape)}"
        assert torch.equal(got, expected), f"top_k=1 (temperature {temperature}) is greedy: expected " \
                                           f"{expected.tolist()}, got {got.tolist()}"


@pytest.mark.task("generate")
def test_top_k_never_emits_a_token_outside_the_top_k(impl):
    # A fresh model predicts almost uniformly over 50 tokens, so without the filter (or with the wrong end of
    # the ranking) 32 rows x 6 steps would land outside the top 3 hundreds of times.
    torch.manual_seed(0)
    model = impl.MiniGPT(small_config(impl)).eval()
    prompt = torch.randint(50, (32, 4))
    out = model.generate(prompt, 6, temperature=1.5, top_k=3)
    assert out.shape == (32, 10) and torch.equal(out[:, :4], prompt), "the prompt stays as the first 4 columns"
    with torch.no_grad():
        for step in range(6):
            logits, _ = model(out[:, :4 + step])
            allowed = torch.topk(logits[:, -1], 3).indices  # (32, 3)
            drawn = out[:, 4 + step:5 + step]
            outside = ~(allowed == drawn).any(dim=1)
            assert not outside.any(), f"step {step}: rows {outside.nonzero().flatten().tolist()} drew a token " \
                                      f"outside their top 3"
    assert len(set(out[:, 4].tolist())) > 1, "with top_k=3 the first new token should vary across 32 rows " \
                                             "(sampling, not argmax)"


@pytest.mark.task("generate")
def test_context_is_cropped_to_the_last_block_size_tokens(impl):
    model = _peaked_model(impl)
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        prompt = torch.randint(50, (2, 20))  # longer than block_size = 12
        out = model.generate(prompt, 4, top_k=5)
    finally:
        handle.remove()
    assert out.shape == (2, 24) and torch.equal(out[:, :20], prompt), "expected the 20-token prompt + 4 new tokens"
    assert len(seen) == 4, f"expected one forward pass per new token (4), got {len(seen)}"
    for step, context in enumerate(seen):
        want = out[:, 20 + step - 12:20 + step]
        assert torch.equal(context, want), f"step {step}: the model should see the last 12 tokens " \
                                           f"{want.tolist()}, got {context.tolist()}"


@pytest.mark.task("generate")
def test_seeded_generation_is_reproducible(impl):
    model = _peaked_model(impl)
    prompt = torch.randint(50, (2, 3))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(model.generate(prompt, 20, temperature=1.3))
    assert torch.equal(runs[0], runs[1]), "the same global seed should give the same tokens"
    assert not torch.equal(runs[0], runs[2]), "seeds 7 and 8 gave the same 40 tokens: is it sampling at all?"
    a = model.generate(prompt, 20, temperature=1.3, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global generator must not matter when one is passed
    b = model.generate(prompt, 20, temperature=1.3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b), "the same torch.Generator seed should give the same tokens"


@pytest.mark.task("generate")
def test_matches_a_sampler_written_out_by_hand(impl):
    # The recipe, step by step: last block_size tokens, last position, / temperature, top-k mask, softmax,
    # one multinomial draw per row from the same generator.
    model = _peaked_model(impl)
    prompt = torch.randint(50, (3, 9))
    temperature, top_k = 0.7, 5
    gen = torch.Generator().manual_seed(11)
    expected = prompt.clone()
    with torch.no_grad():
        for _ in range(10):
            logits, _ = model(expected[:, -12:])
            logits = logits[:, -1] / temperature
            kth = torch.topk(logits, top_k).values[:, -1:]
            probs = F.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
            expected = torch.cat([expected, torch.multinomial(probs, 1, generator=gen)], dim=1)
    got = model.generate(prompt, 10, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(11))
    assert torch.equal(got, expected), f"expected {expected[:, 9:].tolist()}, got {got[:, 9:].tolist()}"
