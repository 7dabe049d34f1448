"""LoRALinear from scratch: identity at init, the update formula, merge, gradient flow, the parameter budget,
and parity with peft on the same adapter weights."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from labkit.checks import assert_close_to_reference

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapters(model, seed=3):
    """Give every adapter random A and B (B is zero at init, which would hide mistakes in the update)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.Parameter):
            with torch.no_grad():
                module.lora_A.copy_(torch.randn(module.lora_A.shape, generator=generator) * 0.1)
                module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=generator) * 0.1)


@pytest.mark.task("lora-linear")
def test_init_equals_base(impl):
    base = nn.Linear(16, 24)
    layer = impl.LoRALinear(copy.deepcopy(base), r=4, alpha=8)
    x = torch.randn(3, 5, 16)
    assert tuple(layer.lora_A.shape) == (4, 16) and tuple(layer.lora_B.shape) == (24, 4), (
        f"expected A (4, 16) and B (24, 4), got {tuple(layer.lora_A.shape)} and {tuple(layer.lora_B.shape)}")
    assert torch.count_nonzero(layer.lora_B) == 0, "B must start at zero"
    bound = 1 / math.sqrt(16)  # kaiming_uniform_(a=sqrt(5)) draws from U(-1/sqrt(d_in), 1/sqrt(d_in))
    assert layer.lora_A.abs().max() <= bound + 1e-6 and layer.lora_A.std() > bound / 4, (
        f"A should be Kaiming-uniform in [-{bound:.3f}, {bound:.3f}], got max |A| {layer.lora_A.abs().max():.3f}, "
        f"std {layer.lora_A.std():.3f}")
    assert torch.equal(layer(x), base(x)), "at init (B = 0) the output must equal the base layer's exactly"


@pytest.mark.task("lora-linear")
def test_forward_is_w_plus_scaled_ba(impl):
    base = nn.Linear(16, 24).double()
    layer = impl.LoRALinear(base, r=4, alpha=12)
    random_adapters(layer)
    x = torch.randn(7, 16, dtype=torch.float64)
    weight = base.weight + (12 / 4) * layer.lora_B @ layer.lora_A  # (alpha / r) B A, by hand
    expected = x @ weight.T + base.bias
    assert_close_to_reference(layer(x), expected, atol=1e-10, what="W x + b + (alpha/r) B A x")


@pytest.mark.task("lora-linear")
def test_merged_layer_computes_the_base_only(impl):
    """Once the update is folded into W (done by hand here) and the flag is set, forward must not add it again."""
    base = nn.Linear(16, 24).double()
    layer = impl.LoRALinear(base, r=4, alpha=12)
    random_adapters(layer)
    x = torch.randn(7, 16, dtype=torch.float64)
    with torch.no_grad():
        base.weight += (12 / 4) * layer.lora_B @ layer.lora_A  # W <- W + (alpha / r) B A
    layer.merged = True
    expected = x @ base.weight.T + base.bias
    assert_close_to_reference(layer(x), expected, atol=1e-10, what="a merged layer's output (W' x + b, no update)")


@pytest.mark.task("lora-linear")
def test_only_adapters_get_gradients(impl):
    layer = impl.LoRALinear(nn.Linear(8, 8), r=2, alpha=4)
    layer(torch.randn(4, 8)).pow(2).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None, "the base layer must stay frozen"
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0, "B should get a gradient"
    # with B = 0 the gradient reaching A is B^T (...) = 0: only B moves on the very first step
    assert layer.lora_A.grad is not None and torch.count_nonzero(layer.lora_A.grad) == 0, \
        "at init A's gradient should be exactly zero (it is multiplied by B = 0)"


@pytest.mark.task("merge")
def test_merge_equals_unmerged_and_unmerge_restores(impl):
    base = nn.Linear(16, 24)
    original = base.weight.detach().clone()
    layer = impl.LoRALinear(base, r=4, alpha=8)
    random_adapters(layer)
    x = torch.randn(5, 16)
    unmerged = layer(x)
    layer.merge()
    assert not torch.equal(layer.base.weight, original), "merge should change the base weight"
    assert_close_to_reference(layer(x), unmerged, atol=1e-5, what="output after merge")
    layer.merge()  # a second merge must not add the update twice
    assert_close_to_reference(layer(x), unmerged, atol=1e-5, what="output after merging twice")
    expected = original + 2 * layer.lora_B @ layer.lora_A
    assert_close_to_reference(layer.base.weight, expected, atol=1e-6, what="merged weight W + (alpha/r) B A")
    layer.unmerge()
    assert_close_to_reference(layer.base.weight, original, atol=1e-6, what="weight after unmerge")
    assert_close_to_reference(layer(x), unmerged, atol=1e-5, what="output after unmerge")


@pytest.mark.task("add-lora")
def test_add_lora_on_a_tiny_llama(impl, tiny_llama):
    x = torch.randint(0, 128, (2, 10))
    with torch.no_grad():
        before = tiny_llama(input_ids=x).logits
    names = impl.add_lora(tiny_llama, PROJ, r=4, alpha=8)
    assert len(names) == 14 and names[0] == "model.layers.0.self_attn.q_proj", (
        f"expected the 7 projections of both layers (14, starting at model.layers.0.self_attn.q_proj), got {names[:3]}"
        f"... ({len(names)})")
    trainable = {n for n, p in tiny_llama.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable), \
        f"only lora_A / lora_B should be trainable, found {sorted(trainable - {n for n in trainable if 'lora' in n})[:3]}"
    # per layer, by hand: q, o 64->64; k, v 64->32; gate, up 64->128; down 128->64
    per_layer = 4 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))
    got = sum(p.numel() for p in tiny_llama.parameters() if p.requires_grad)
    assert got == 2 * per_layer, f"expected {2 * per_layer} trainable parameters, got {got}"
    with torch.no_grad():
        after = tiny_llama(input_ids=x).logits
    assert torch.equal(before, after), "with B = 0 the adapted model must give the base model's logits exactly"
    random_adapters(tiny_llama)  # non-zero B: the adapters must now sit in the forward path of every projection
    with torch.no_grad():
        moved = tiny_llama(input_ids=x).logits
    assert (moved - before).abs().max() > 1e-3, \
        "with non-zero adapters the logits did not change: the LoRALinear layers are not where the projections were"


@pytest.mark.task("add-lora")
def test_add_lora_rejects_a_missing_target(impl, tiny_llama):
    with pytest.raises(ValueError):
        impl.add_lora(tiny_llama, ["no_such_proj"], r=4, alpha=8)


@pytest.mark.task("param-count")
def test_llama3_8b_budget(impl):
    hidden, kv, inter, layers, r = 4096, 1024, 14336, 32, 16
    per_layer = r * ((hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + inter) * 2 + (inter + hidden))
    expected = layers * per_layer
    assert expected == 41_943_040
    got = impl.llama_lora_parameters(hidden, kv, inter, layers, r)
    assert got == expected, f"Llama-3-8B, r=16, all seven projections: expected {expected:,}, got {got:,}"
    got_qv = impl.llama_lora_parameters(hidden, kv, inter, layers, r, targets=("q_proj", "v_proj"))
    assert got_qv == layers * r * ((hidden + hidden) + (hidden + kv)), f"q and v only: got {got_qv:,}"


@pytest.mark.task("param-count")
def test_budget_matches_peft_count(impl, tiny_llama):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama, LoraConfig(r=8, lora_alpha=16, target_modules=PROJ, task_type="CAUSAL_LM"))
    trainable, _ = model.get_nb_trainable_parameters()
    got = impl.llama_lora_parameters(64, 32, 128, 2, 8)
    assert got == trainable, f"peft counts {trainable:,} trainable parameters on the tiny Llama, formula gave {got:,}"


@pytest.mark.task("peft-parity")
def test_same_adapters_same_outputs_as_peft(impl, llama_factory):
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    ours = llama_factory()
    impl.add_lora(ours, PROJ, r=4, alpha=8)
    random_adapters(ours)
    theirs = get_peft_model(llama_factory(), LoraConfig(r=4, lora_alpha=8, target_modules=PROJ, lora_dropout=0.0,
                                                        task_type="CAUSAL_LM"))
    result = set_peft_model_state_dict(theirs, impl.to_peft_state_dict(ours))
    unexpected = getattr(result, "unexpected_keys", [])
    assert not unexpected, f"peft did not recognise these keys: {unexpected[:3]}"
    x = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        assert_close_to_reference(ours(input_ids=x).logits, theirs(input_ids=x).logits, atol=1e-5,
                                  what="logits of our LoRA model vs peft with the same A and B")
    ours_trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert ours_trainable == theirs.get_nb_trainable_parameters()[0], (
        f"trainable parameters: peft {theirs.get_nb_trainable_parameters()[0]:,}, ours {ours_trainable:,}")


@pytest.mark.task("peft-parity")
def test_exported_state_is_a_snapshot(impl, llama_factory):
    """The exported tensors are copies: training the adapters afterwards must not change them."""
    ours = llama_factory()
    impl.add_lora(ours, PROJ, r=4, alpha=8)
    random_adapters(ours)
    state = impl.to_peft_state_dict(ours)
    assert len(state) == 2 * 14, f"expected lora_A and lora_B for 14 projections (28 tensors), got {len(state)}"
    snapshot = {k: v.clone() for k, v in state.items()}
    random_adapters(ours, seed=5)  # "train" the adapters further, in place
    moved = [k for k in state if not torch.equal(state[k], snapshot[k])]
    assert not moved, f"the exported tensors changed with the live adapters: {moved[:2]}"
    assert not any(v.requires_grad for v in state.values()), "exported tensors should be detached"
