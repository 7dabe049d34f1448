"""RMSNorm (torch.nn.RMSNorm), RoPE (transformers' Llama rotary embedding, plus the relative-position property),
LoRA (peft's LoRA layer holding the same matrices) and cross-entropy (torch.nn.functional.cross_entropy)."""
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.checks import assert_close_to_reference

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None)


# ------------------------------------------------------------------ RMSNorm

@pytest.mark.task("rmsnorm")
def test_rmsnorm_by_hand(impl):
    norm = impl.RMSNorm(2, eps=0.0)
    got = norm(torch.tensor([[3.0, 4.0]], dtype=torch.float64))  # rms = sqrt((9 + 16) / 2) = sqrt(12.5)
    expected = torch.tensor([[3.0, 4.0]], dtype=torch.float64) / math.sqrt(12.5)
    assert torch.allclose(got, expected.to(got.dtype), atol=1e-7), f"(3, 4) / sqrt(12.5) expected, got {got.tolist()}"


@pytest.mark.task("rmsnorm")
def test_rmsnorm_matches_torch_rows_of_different_scales(impl):
    ours, ref = impl.RMSNorm(8, eps=1e-6).double(), nn.RMSNorm(8, eps=1e-6).double()
    with torch.no_grad():
        weight = torch.randn(8, dtype=torch.float64)
        ours.weight.copy_(weight)
        ref.weight.copy_(weight)
    x = torch.randn(2, 3, 8, dtype=torch.float64) * torch.tensor([1e-3, 1.0, 50.0], dtype=torch.float64)[:, None]
    with torch.no_grad():  # row scales 1e-3 (eps matters), 1 and 50: each row is normalised on its own
        assert_close_to_reference(ours(x), ref(x), atol=1e-12, rtol=1e-10, what="RMSNorm vs torch.nn.RMSNorm")


@pytest.mark.task("rmsnorm")
def test_rmsnorm_keeps_the_mean(impl):
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)
    y = impl.RMSNorm(4, eps=0.0).double()(x)
    assert y.mean().item() > 0.5, f"RMSNorm does not subtract the mean (that is LayerNorm): got mean {y.mean():.3f}"


# ------------------------------------------------------------------ RoPE

def hf_rope(x, positions, base):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    d = x.size(-1)
    config = LlamaConfig(hidden_size=2 * d, num_attention_heads=2, rope_theta=base, max_position_embeddings=256)
    cos, sin = LlamaRotaryEmbedding(config)(x.float(), positions[None])
    rotated, _ = apply_rotary_pos_emb(x.float(), x.float(), cos, sin)
    return rotated


@pytest.mark.task("rope")
def test_rope_matches_transformers_llama(impl):
    for d, base, positions in ((16, 10000.0, torch.arange(9)), (32, 500.0, torch.arange(5, 17))):
        x = torch.randn(1, 2, len(positions), d)
        cos, sin = impl.rope_cos_sin(positions, d, base)
        assert tuple(cos.shape) == (len(positions), d), f"cos table should be (T, d), got {tuple(cos.shape)}"
        assert_close_to_reference(impl.apply_rope(x, cos, sin), hf_rope(x, positions, base), atol=2e-5,
                                  what=f"RoPE (d={d}, base={base}) vs transformers' Llama")


@pytest.mark.task("rope")
def test_rope_position_zero_is_identity_and_norms_stay(impl):
    x = torch.randn(6, 8, dtype=torch.float64)
    cos, sin = impl.rope_cos_sin(torch.arange(6), 8)
    y = impl.apply_rope(x, cos, sin)
    assert torch.allclose(y[0], x[0], atol=1e-12), "position 0 rotates by angle 0: the vector must not change"
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-10), "a rotation keeps every vector's length"


@pytest.mark.task("rope")
def test_rope_scores_depend_only_on_the_offset(impl):
    impl.rope_cos_sin(torch.arange(2), 4)

    @FAST
    @given(st.integers(0, 40), st.integers(0, 40), st.integers(1, 60), st.integers(0, 2**16))
    def check(m, n, shift, seed):
        g = torch.Generator().manual_seed(seed)
        q, k = torch.randn(2, 1, 16, generator=g, dtype=torch.float64).unbind(0)

        def score(a, b):
            ca, sa = impl.rope_cos_sin(torch.tensor([a]), 16)
            cb, sb = impl.rope_cos_sin(torch.tensor([b]), 16)
            return float(impl.apply_rope(q, ca, sa)[0] @ impl.apply_rope(k, cb, sb)[0])
        assert math.isclose(score(m, n), score(m + shift, n + shift), abs_tol=1e-9), \
            f"q.k at ({m}, {n}) differs from ({m + shift}, {n + shift}): RoPE scores must depend on m - n only"
    check()


# ------------------------------------------------------------------ LoRA

@pytest.mark.task("lora")
def test_lora_starts_as_the_base_layer(impl):
    base = nn.Linear(6, 4).double()
    layer = impl.LoRALinear(base, r=2, alpha=8).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.equal(layer(x), base(x)), "with lora_B = 0 the wrapped layer must equal the base layer exactly"
    assert tuple(layer.lora_A.shape) == (2, 6) and tuple(layer.lora_B.shape) == (4, 2), \
        f"lora_A (r, in) = (2, 6) and lora_B (out, r) = (4, 2), got {tuple(layer.lora_A.shape)}, " \
        f"{tuple(layer.lora_B.shape)}"
    assert layer.lora_A.abs().sum() > 0, "lora_A starts random (only lora_B starts at zero)"
    assert layer.scaling == 4.0, f"scaling = alpha / r = 8 / 2 = 4, got {layer.scaling}"


@pytest.mark.task("lora")
def test_lora_trains_only_the_adapter(impl):
    layer = impl.LoRALinear(nn.Linear(6, 4), r=2, alpha=4)
    trainable = {name for name, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}, f"only lora_A and lora_B should train, got {sorted(trainable)}"
    big = impl.LoRALinear(nn.Linear(4096, 4096), r=16, alpha=32)
    count = sum(p.numel() for p in big.parameters() if p.requires_grad)
    assert count == 16 * (4096 + 4096) == 131_072, f"r=16 on 4096x4096: expected 131,072 trainable, got {count:,}"
    layer(torch.randn(5, 6)).sum().backward()
    assert layer.base.weight.grad is None, "the base weight is frozen: it must get no gradient"
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0, "lora_B must receive a gradient"


@pytest.mark.task("lora")
def test_lora_matches_peft(impl):
    import peft

    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(proj=nn.Linear(6, 4))).double()
    ours = impl.LoRALinear(nn.Linear(6, 4).double(), r=2, alpha=6).double()
    with torch.no_grad():
        ours.base.weight.copy_(model.proj.weight)
        ours.base.bias.copy_(model.proj.bias)
    model = peft.inject_adapter_in_model(peft.LoraConfig(r=2, lora_alpha=6, target_modules=["proj"],
                                                         lora_dropout=0.0), model).double()
    a, b = torch.randn(2, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    with torch.no_grad():
        model.proj.lora_A["default"].weight.copy_(a)
        model.proj.lora_B["default"].weight.copy_(b)
        ours.lora_A.copy_(a)
        ours.lora_B.copy_(b)
        x = torch.randn(5, 6, dtype=torch.float64)
        assert_close_to_reference(ours(x), model(x), atol=1e-12, what="LoRA output vs peft's LoRA layer")
        merged = ours.merged_weight()
        assert tuple(merged.shape) == (4, 6), f"merged weight is (out, in) = (4, 6), got {tuple(merged.shape)}"
        assert_close_to_reference(x @ merged.T + ours.base.bias, model(x), atol=1e-12,
                                  what="the merged weight's output vs peft")


# ------------------------------------------------------------------ cross-entropy

@pytest.mark.task("cross-entropy")
def test_cross_entropy_matches_torch(impl):
    logits = torch.randn(7, 11, dtype=torch.float64)
    targets = torch.tensor([0, 10, 3, 3, 5, 9, 1])
    assert_close_to_reference(impl.cross_entropy(logits, targets), F.cross_entropy(logits, targets), atol=1e-12,
                              what="cross-entropy vs torch")
    assert math.isclose(impl.cross_entropy(torch.zeros(4, 50), torch.tensor([1, 2, 3, 4])).item(), math.log(50),
                        rel_tol=1e-6), "uniform logits give exactly ln V"


@pytest.mark.task("cross-entropy")
def test_cross_entropy_is_stable_for_huge_logits(impl):
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-5000.0, 5000.0, 4990.0]], dtype=torch.float64)
    targets = torch.tensor([0, 2])
    got = impl.cross_entropy(logits, targets)
    assert torch.isfinite(got), f"logits of +-5000 must not overflow, got {got}"
    assert_close_to_reference(got, F.cross_entropy(logits, targets), atol=1e-9, what="cross-entropy at +-5000")


@pytest.mark.task("cross-entropy")
def test_ignored_rows_leave_the_mean(impl):
    logits = torch.randn(6, 5, dtype=torch.float64)
    targets = torch.tensor([1, -100, 4, -100, 0, 2])
    assert_close_to_reference(impl.cross_entropy(logits, targets), F.cross_entropy(logits, targets), atol=1e-12,
                              what="cross-entropy with two ignored rows (mean over the four others)")
    other = torch.tensor([1, 3, 4, 3, 0, 2])
    assert_close_to_reference(impl.cross_entropy(logits, other, ignore_index=3),
                              F.cross_entropy(logits, other, ignore_index=3), atol=1e-12,
                              what="cross-entropy with ignore_index=3")


@pytest.mark.task("cross-entropy")
def test_cross_entropy_gradient_matches_torch(impl):
    logits = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([6, 0, -100, 2, 2])
    (ours,) = torch.autograd.grad(impl.cross_entropy(logits, targets), logits)
    (ref,) = torch.autograd.grad(F.cross_entropy(logits, targets), logits)
    assert_close_to_reference(ours, ref, atol=1e-12, what="d loss / d logits vs torch (softmax - one_hot) / N")
