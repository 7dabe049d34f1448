"""Pruning and distillation checks. References: torch.nn.utils.prune (l1_unstructured, global_unstructured and its
rounding rule), hand-worked schedules and losses, brute force over groups of four, F.kl_div with log_target, the
unpruned transformers Llama with the removed units zeroed, and a hand-written optimizer step."""
import copy
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

from labkit.checks import assert_close_to_reference

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def tiny_llama(vocab=40, hidden=48, layers=3, heads=6, kv_heads=3, ffn=32, std=0.3, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
                         max_position_embeddings=128, bos_token_id=None, eos_token_id=None, pad_token_id=0,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so every unit matters to the output
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, std)
    return model


def torch_l1_mask(weight, amount):
    layer = nn.Linear(weight.size(1), weight.size(0), bias=False)
    layer.weight.data = weight.clone()
    prune.l1_unstructured(layer, "weight", amount=amount)
    return layer.weight_mask


# =========================================================================== magnitude-prune

@pytest.mark.task("magnitude-prune")
def test_pruning_count_rounds_like_torch(impl):
    # torch's own rule (Python round: halves go to the even count); 0.25 of 10 = 2.5 -> 2, 0.25 of 14 = 3.5 -> 4
    for amount, n in [(0.25, 10), (0.25, 14), (0.5, 5), (0.5, 7), (0.3, 10), (0.0, 9), (1.0, 7), (3, 10), (0, 4)]:
        want = prune._compute_nparams_toprune(amount, n)
        got = impl.n_to_prune(amount, n)
        assert got == want, f"n_to_prune({amount}, {n}): torch prunes {want}, got {got}"
        assert isinstance(got, int), f"n_to_prune should return an int, got {type(got).__name__}"


@pytest.mark.task("magnitude-prune")
def test_layer_mask_equals_l1_unstructured(impl):
    g = torch.Generator().manual_seed(1)
    for shape, amount in [((20, 30), 0.37), ((7, 9), 0.5), ((16, 16), 0.9), ((5, 12), 11), ((3, 4), 0.0)]:
        w = torch.randn(*shape, generator=g)
        want = torch_l1_mask(w, amount)
        got = impl.magnitude_mask(w, amount)
        assert got.shape == w.shape, f"mask shape {tuple(got.shape)}, expected {tuple(w.shape)}"
        assert torch.equal(got.float(), want), \
            f"{shape} amount={amount}: mask differs from prune.l1_unstructured in {(got.float() != want).sum()} places"


@pytest.mark.task("magnitude-prune")
def test_ties_at_the_threshold_prune_exactly_k(impl):
    # |w| values: three 0.1, ten 0.5 (half of them negative), three 0.9. Pruning 8 must take all three 0.1 and
    # exactly five of the ten weights sitting at the threshold 0.5 - not all ten (<=), not none (<).
    w = torch.tensor([0.5, -0.1, 0.9, -0.5, 0.5, 0.1, -0.5, 0.5, -0.9, 0.5, -0.5, 0.1, 0.5, -0.5, 0.9, -0.5])
    mask = impl.magnitude_mask(w.view(4, 4), 8).flatten()
    pruned = (mask == 0).sum().item()
    assert pruned == 8, f"amount=8 must zero exactly 8 weights even with ties at |w| = 0.5, zeroed {pruned}"
    assert pruned == (torch_l1_mask(w.view(4, 4), 8) == 0).sum().item()
    assert w.abs()[mask == 0].max() <= w.abs()[mask == 1].min(), "a pruned weight is larger than a kept one"
    assert (mask[w.abs() == 0.1] == 0).all() and (mask[w.abs() == 0.9] == 1).all()
    # exactly at a group boundary: 3 -> the three 0.1s, nothing at 0.5
    mask3 = impl.magnitude_mask(w.view(4, 4), 3).flatten()
    assert torch.equal(mask3 == 0, w.abs() == 0.1), "amount=3 should zero exactly the three |w| = 0.1 weights"
    # a fraction that rounds half to even: 0.5 of 16 = 8 again, 0.15625 of 16 = 2.5 -> 2
    assert (impl.magnitude_mask(w.view(4, 4), 0.5) == 0).sum() == 8
    assert (impl.magnitude_mask(w.view(4, 4), 0.15625) == 0).sum() == 2, "0.15625 x 16 = 2.5 rounds to 2 (even)"


@pytest.mark.task("magnitude-prune")
def test_global_masks_equal_global_unstructured(impl):
    g = torch.Generator().manual_seed(2)
    layers = [nn.Linear(12, 10), nn.Linear(10, 6), nn.Linear(6, 16)]
    weights = []
    for scale, layer in zip((0.1, 1.0, 3.0), layers):  # very different scales: one threshold treats them unequally
        layer.weight.data = torch.randn(layer.weight.shape, generator=g) * scale
        weights.append(layer.weight.detach().clone())
    got = impl.global_magnitude_masks(weights, 0.6)
    prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=0.6)
    for i, (mask, layer) in enumerate(zip(got, layers)):
        assert mask.shape == layer.weight_mask.shape, f"mask {i} has shape {tuple(mask.shape)}"
        assert torch.equal(mask.float(), layer.weight_mask), f"mask {i} differs from prune.global_unstructured"
    kept = [m.float().mean().item() for m in got]
    assert kept[0] < kept[1] < kept[2], f"the small-scale layer should lose the most weights, kept fractions {kept}"


@pytest.mark.task("magnitude-prune")
def test_zero_counts_are_exact(impl):
    a = torch.tensor([[0.0, 1.0, -0.0], [2.0, 0.0, 3.0]])      # -0.0 is a zero too
    b = torch.zeros(4, 5)
    c = torch.ones(7)
    assert impl.count_zeros([a, b, c]) == (23, 33), f"expected (23 zeros, 33 elements), got {impl.count_zeros([a, b, c])}"
    zeros, total = impl.count_zeros([a])
    assert (zeros, total) == (3, 6) and isinstance(zeros, int) and isinstance(total, int)
    tiny = torch.tensor([1e-4, -1e-7, 0.0, 1e-30])
    assert impl.count_zeros([tiny]) == (1, 4), "only exact zeros count: tiny non-zero weights are not pruned"
    model = tiny_llama()
    zeros, total = impl.magnitude_prune_model(model, 0.3, "global")
    n = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, nn.Linear))
    assert (zeros, total) == (round(0.3 * n), n), f"global 30% of {n} block weights: expected {round(0.3 * n)} " \
        f"zeros, got {zeros} of {total}"
    zeros, total = impl.magnitude_prune_model(tiny_llama(), 0.3, "layer")
    linears = [m for m in tiny_llama().model.layers.modules() if isinstance(m, nn.Linear)]
    want = sum(round(0.3 * m.weight.numel()) for m in linears)
    assert zeros == want, f"per-layer 30% rounds in each layer: expected {want} zeros, got {zeros}"


# =========================================================================== gradual-schedule

@pytest.mark.task("gradual-schedule")
def test_cubic_schedule_hand_values(impl):
    s = impl.gradual_sparsity
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t1 - t0))^3, by hand
    assert s(50, 0.8, 0, 100) == pytest.approx(0.7), "halfway to 80%: 0.8 - 0.8 * 0.5^3 = 0.7"
    assert s(25, 0.8, 0, 100, initial=0.2) == pytest.approx(0.546875), "0.8 - 0.6 * 0.75^3 = 0.546875"
    assert s(150, 0.9, 100, 200) == pytest.approx(0.9 - 0.9 * 0.125), "the ramp starts at begin=100, not at 0"
    assert s(130, 0.5, 100, 200, power=1) == pytest.approx(0.15), "power 1 is a straight line"
    assert s(100, 0.8, 0, 100) == pytest.approx(0.8) and s(0, 0.8, 0, 100, initial=0.1) == pytest.approx(0.1)


@pytest.mark.task("gradual-schedule")
def test_schedule_holds_outside_the_ramp_and_slows_down(impl):
    s = impl.gradual_sparsity
    assert s(-10, 0.8, 0, 100, initial=0.1) == pytest.approx(0.1), "before begin: the initial sparsity"
    assert s(500, 0.8, 0, 100) == pytest.approx(0.8), "after end: stays at the final sparsity"
    values = [s(t, 0.9, 10, 110) for t in range(0, 131, 5)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(d >= -1e-12 for d in steps), "sparsity must never decrease"
    ramp = steps[2:22]
    assert all(a > b for a, b in zip(ramp, ramp[1:])), "the cubic prunes fast early and slowly late"


# =========================================================================== structured-prune

@pytest.mark.task("structured-prune")
def test_top_k_ties_go_to_the_lower_index(impl):
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert impl.top_k_indices(scores, 2).tolist() == [1, 2], "among equal scores keep the lower indices"
    assert impl.top_k_indices(scores, 4).tolist() == [1, 2, 3, 4]
    assert impl.top_k_indices(torch.tensor([0.1, 5.0, 0.2, 9.0]), 2).tolist() == [1, 3], \
        "kept indices come back in increasing order"


def reference_mlp_scores(mlp):
    scores = []
    for j in range(mlp.gate_proj.out_features):
        g = math.sqrt(sum(x * x for x in mlp.gate_proj.weight[j].tolist()))
        u = math.sqrt(sum(x * x for x in mlp.up_proj.weight[j].tolist()))
        d = math.sqrt(sum(x * x for x in mlp.down_proj.weight[:, j].tolist()))
        scores.append(g * u * d)
    return torch.tensor(scores)


@pytest.mark.task("structured-prune")
def test_mlp_pruning_equals_zeroing_the_weakest_channels(impl):
    mlp = tiny_llama().model.layers[1].mlp
    original = copy.deepcopy(mlp)
    want_scores = reference_mlp_scores(original)
    assert_close_to_reference(impl.mlp_channel_scores(mlp), want_scores, rtol=1e-5, what="channel scores")
    kept = impl.prune_mlp_channels(mlp, 12)
    want_kept = sorted(torch.argsort(want_scores, descending=True)[:12].tolist())
    assert sorted(kept.tolist()) == want_kept, f"expected the 12 best channels {want_kept}, kept {kept.tolist()}"
    assert (mlp.gate_proj.weight.shape, mlp.up_proj.weight.shape, mlp.down_proj.weight.shape) == \
        ((12, 48), (12, 48), (48, 12)), "gate/up should lose rows and down columns: (12, 48), (12, 48), (48, 12)"
    x = torch.randn(2, 5, 48)
    keep = torch.zeros(32)
    keep[want_kept] = 1.0
    with torch.no_grad():   # the unpruned MLP with every dropped channel's activation set to zero
        ref = original.down_proj(F.silu(original.gate_proj(x)) * original.up_proj(x) * keep)
        assert_close_to_reference(mlp(x), ref, atol=1e-5, what="pruned MLP output")


def zero_groups(model, kept_per_layer, per_group, head_dim):
    """The reference: the unpruned model with the o_proj columns of every dropped group's heads set to zero."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for block, kept in zip(ref.model.layers, kept_per_layer):
            n_groups = block.self_attn.k_proj.out_features // head_dim
            for g in range(n_groups):
                if g not in kept:
                    block.self_attn.o_proj.weight[:, g * per_group * head_dim:(g + 1) * per_group * head_dim] = 0
    return ref


def reference_group_scores(attn, per_group, head_dim):
    n_groups = attn.k_proj.out_features // head_dim
    v, o = attn.v_proj.weight, attn.o_proj.weight
    return torch.tensor([v[g * head_dim:(g + 1) * head_dim].norm().item()
                         * o[:, g * per_group * head_dim:(g + 1) * per_group * head_dim].norm().item()
                         for g in range(n_groups)])


@pytest.mark.task("structured-prune")
@pytest.mark.parametrize("heads,kv_heads,keep", [(6, 3, 2), (6, 6, 4), (6, 2, 1)])
def test_head_group_pruning_equals_zeroing_those_heads(impl, heads, kv_heads, keep):
    model = tiny_llama(heads=heads, kv_heads=kv_heads)
    per_group, head_dim = heads // kv_heads, 48 // heads
    kept_per_layer = []
    for block in model.model.layers:
        want = reference_group_scores(block.self_attn, per_group, head_dim)
        assert_close_to_reference(impl.head_group_scores(block.self_attn), want, rtol=1e-5, what="group scores")
        kept_per_layer.append(sorted(torch.argsort(want, descending=True)[:keep].tolist()))
    reference = zero_groups(model, kept_per_layer, per_group, head_dim)
    pruned = impl.prune_structured(model, mlp_keep=1.0, groups_keep=keep)
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.out_features == keep * per_group * head_dim and attn.k_proj.out_features == keep * head_dim, \
        f"q_proj should have {keep * per_group * head_dim} outputs and k_proj {keep * head_dim}"
    x = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        assert_close_to_reference(pruned(x).logits, reference(x).logits, atol=1e-4,
                                  what=f"logits after keeping {keep} of {kv_heads} KV groups")


@pytest.mark.task("structured-prune")
def test_pruned_model_is_smaller_generates_and_reloads(impl, tmp_path):
    model = tiny_llama()
    pruned = impl.prune_structured(model, mlp_keep=0.5, groups_keep=2)
    # per block: q 32x48, k/v 16x48, o 48x32, gate/up 16x48, down 48x16; 3 blocks; + embeddings, head, norms
    per_block = 32 * 48 + 2 * 16 * 48 + 48 * 32 + 3 * 16 * 48 + 2 * 48
    want = 3 * per_block + 2 * 40 * 48 + 48
    got = sum(p.numel() for p in pruned.parameters())
    assert got == want, f"expected {want:,} parameters after pruning, got {got:,}"
    prompt = torch.randint(1, 40, (1, 6))
    with torch.no_grad():
        cached = pruned.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True)
        plain = pruned.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, plain), "the pruned model should generate the same tokens with and without cache"
    pruned.save_pretrained(tmp_path)
    again = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(prompt).logits, pruned(prompt).logits), "save/reload changed the pruned model"
    assert model.model.layers[0].mlp.gate_proj.out_features == 32, "prune_structured must not modify its input"


# =========================================================================== two-four

def brute_force_two_four(weight):
    mask = torch.zeros_like(weight, dtype=torch.bool)
    for r in range(weight.size(0)):
        for g in range(0, weight.size(1), 4):
            group = weight[r, g:g + 4].abs().tolist()
            best = max(itertools.combinations(range(4), 2), key=lambda pair: group[pair[0]] + group[pair[1]])
            for i in best:
                mask[r, g + i] = True
    return mask


@pytest.mark.task("two-four")
def test_two_four_mask_equals_brute_force(impl):
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    got = impl.two_four_mask(w)
    assert got.dtype == torch.bool and got.shape == w.shape, f"expected a bool mask of shape {tuple(w.shape)}"
    want = brute_force_two_four(w)
    assert torch.equal(got, want), f"mask differs from the brute-force 2:4 choice in {(got != want).sum()} places"


@pytest.mark.task("two-four")
def test_two_four_with_ties_keeps_exactly_two(impl):
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0, 3.0, -3.0, 1.0, 1.0],
                      [0.0, 0.0, 0.0, 5.0, -2.0, 2.0, 2.0, -2.0]])
    mask = impl.two_four_mask(w)
    per_group = mask.view(2, 2, 4).sum(-1)
    assert (per_group == 2).all(), f"every group of 4 must keep exactly 2, kept {per_group.tolist()}"
    assert mask[0, 4] and mask[0, 5], "|3| and |-3| are the two largest of their group"
    assert mask[1, 3], "5 is the largest of its group"
    groups = w.abs().view(2, 2, 4)
    m = mask.view(2, 2, 4)
    for r, g in itertools.product(range(2), range(2)):
        assert groups[r, g][m[r, g]].min() >= groups[r, g][~m[r, g]].max(), "a dropped weight beats a kept one"


@pytest.mark.task("two-four")
def test_two_four_model_is_exactly_half_sparse(impl):
    model = tiny_llama()
    zeros, total = impl.two_four_prune_model(model)
    assert zeros * 2 == total, f"2:4 pruning of random weights should zero exactly half: {zeros} of {total}"
    w = model.model.layers[0].mlp.down_proj.weight
    assert ((w.view(w.size(0), -1, 4) != 0).sum(-1) == 2).all(), "each group of 4 must hold two non-zeros"
    with pytest.raises(ValueError):
        impl.two_four_mask(torch.randn(4, 6))


@pytest.mark.gpu
@pytest.mark.task("two-four")
def test_semi_structured_sparse_linear_on_cuda(impl):
    torch.manual_seed(0)
    linear = nn.Linear(256, 128, bias=False).half().cuda()
    dense = (linear.weight * impl.two_four_mask(linear.weight).half()).detach().clone()
    impl.to_semi_structured(linear)
    x = torch.randn(64, 256, dtype=torch.float16, device="cuda")
    assert_close_to_reference(linear(x).float(), F.linear(x, dense).float(), atol=1e-2, rtol=1e-2,
                              what="semi-structured sparse matmul vs dense masked matmul")


# =========================================================================== distill-loss

@pytest.mark.task("distill-loss")
def test_distillation_loss_by_hand(impl):
    s = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
    t = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
    y = [0, 2]
    T, alpha = 2.0, 0.3

    def softmax(row, temp):
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(tr, T), softmax(sr, T)))
             for sr, tr in zip(s, t)) / 2
    ce = sum(-math.log(softmax(sr, 1.0)[yi]) for sr, yi in zip(s, y)) / 2
    want = alpha * T * T * kl + (1 - alpha) * ce
    got = impl.distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(want, rel=1e-5), f"hand-computed loss {want:.6f}, got {got.item():.6f}"


@pytest.mark.task("distill-loss")
@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0), (3.0, 0.0)])
def test_distillation_loss_equals_kl_div_with_log_target(impl, T, alpha):
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(3, 5, 11, generator=g) * 3, torch.randn(3, 5, 11, generator=g) * 3
    y = torch.randint(0, 11, (3, 5), generator=g)
    kl = F.kl_div(F.log_softmax(s.view(-1, 11) / T, -1), F.log_softmax(t.view(-1, 11) / T, -1),
                  log_target=True, reduction="batchmean")
    want = alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s.view(-1, 11), y.view(-1))
    got = impl.distillation_loss(s, t, y, temperature=T, alpha=alpha)
    assert got.dim() == 0, f"the loss should be a scalar, got shape {tuple(got.shape)}"
    assert got.item() == pytest.approx(want.item(), rel=1e-5), \
        f"T={T}, alpha={alpha}: torch's kl_div-based loss is {want.item():.6f}, got {got.item():.6f}"
    same = impl.distillation_loss(t, t, y, temperature=T, alpha=1.0)
    assert abs(same.item()) < 1e-5, f"a student equal to the teacher has zero soft loss, got {same.item()}"


@pytest.mark.task("distill-loss")
def test_t_squared_keeps_the_soft_gradient_scale(impl):
    # d/ds [T^2 KL(p_t^T || p_s^T)] = T (p_s^T - p_t^T) / N  ->  (center(s) - center(t)) / (V N) as T grows
    g = torch.Generator().manual_seed(5)
    n, v = 6, 10
    s0, t = torch.randn(n, v, generator=g), torch.randn(n, v, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    limit = ((s0 - s0.mean(-1, keepdim=True)) - (t - t.mean(-1, keepdim=True))) / (v * n)
    norms = []
    for T in (5.0, 20.0, 80.0):
        s = s0.clone().requires_grad_(True)
        impl.distillation_loss(s, t, y, temperature=T, alpha=1.0).backward()
        norms.append(s.grad.norm().item())
        if T == 80.0:   # the gap to the limit shrinks like 1/T: measured 1.2% of its norm at T=80
            gap = ((s.grad - limit).norm() / limit.norm()).item()
            assert gap < 0.03, f"at T=80 the soft gradient should be within 3% of its large-T limit, off by {gap:.1%}"
    assert max(norms) / min(norms) < 1.2, f"with T^2 the gradient norm should barely move with T, got {norms}"
    s = s0.clone().requires_grad_(True)
    impl.distillation_loss(s, t, y, temperature=3.0, alpha=0.6).backward()
    p_s, p_t = F.softmax(s0 / 3, -1), F.softmax(t / 3, -1)
    hard = F.softmax(s0, -1) - F.one_hot(y, v)
    want = (0.6 * 3.0 * (p_s - p_t) + 0.4 * hard) / n           # hand-derived gradient of the whole loss
    assert_close_to_reference(s.grad, want, atol=1e-6, what="gradient of the mixed loss at T=3, alpha=0.6")


# =========================================================================== distill-train

@pytest.mark.task("distill-train")
def test_student_runs_the_chosen_teacher_blocks(impl):
    teacher = tiny_llama(layers=4)
    x = torch.randint(0, 40, (2, 10))
    full = impl.make_student(teacher, [0, 1, 2, 3])
    with torch.no_grad():
        assert_close_to_reference(full(x).logits, teacher(x).logits, atol=1e-5, what="student with every block")
    student = impl.make_student(teacher, [0, 3])
    reference = copy.deepcopy(teacher)
    reference.model.layers = nn.ModuleList([reference.model.layers[0], reference.model.layers[3]])
    reference.config.num_hidden_layers = 2
    with torch.no_grad():
        assert_close_to_reference(student(x).logits, reference(x, use_cache=False).logits, atol=1e-5,
                                  what="student of blocks [0, 3] (no cache)")
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert teacher.config.num_hidden_layers == 4, "make_student must not change the teacher's config"
    prompt = torch.randint(1, 40, (1, 5))
    with torch.no_grad():
        cached = student.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
        plain = student.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, plain), "the student's KV-cache is broken (are its blocks numbered 0..n-1?)"
    with torch.no_grad():
        student.model.layers[1].mlp.down_proj.weight.add_(1.0)
        student.model.embed_tokens.weight.add_(1.0)
    assert teacher.model.layers[3].mlp.down_proj.weight.abs().max() < 5, "student and teacher share weights"
    assert not torch.equal(teacher.model.embed_tokens.weight, student.model.embed_tokens.weight), \
        "student and teacher share the embedding tensor: training the student would change the teacher"


@pytest.mark.task("distill-train")
def test_distill_step_equals_a_hand_written_step(impl):
    teacher = tiny_llama(layers=3, seed=1)
    student = tiny_llama(layers=1, seed=2)
    reference = copy.deepcopy(student)
    opt = torch.optim.SGD(student.parameters(), lr=0.05)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(6)
    for step in range(2):   # two steps: gradients must not pile up from one step to the next
        ids = torch.randint(0, 40, (3, 8), generator=g)
        got = impl.distill_step(student, teacher, ids, opt, temperature=2.0, alpha=0.7)
        with torch.no_grad():
            t = teacher(ids).logits[:, :-1].reshape(-1, 40)
        s = reference(ids).logits[:, :-1].reshape(-1, 40)
        kl = F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="batchmean")
        loss = 0.7 * 4 * kl + 0.3 * F.cross_entropy(s, ids[:, 1:].reshape(-1))
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        assert isinstance(got, float) and got == pytest.approx(loss.item(), rel=1e-4), \
            f"step {step}: the loss before the update should be {loss.item():.5f}, got {got}"
        for (name, p), q in zip(student.named_parameters(), reference.parameters()):
            assert_close_to_reference(p, q, atol=1e-5, what=f"{name} after step {step}")


def teacher_samples(teacher, n, length, seed):
    """Sequences drawn from the teacher itself, so the teacher's distribution is the data's true law."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (n, 1), generator=g)
    with torch.no_grad():
        for _ in range(length - 1):
            probs = F.softmax(teacher(ids).logits[:, -1], -1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g)], dim=1)
    return ids


def held_out_nll(model, ids):
    with torch.no_grad():
        logits = model(ids).logits[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)).item()


@pytest.mark.task("distill-train")
def test_distillation_beats_hard_labels_and_the_loss_falls(impl):
    # The student is the teacher's first block (make_student), trained on 32 sequences the teacher sampled, for 24
    # steps: once on soft targets (alpha=1, T=2), once on hard labels only (alpha=0), same init and batches.
    # Held-out NLL on fresh teacher samples (teacher 2.43, uniform 3.69, the copied block alone 3.23).
    # Measured over seeds 0-4 under ATEN_CPU_CAPABILITY=default and avx2 (identical): distilled 3.05-3.08,
    # hard labels 3.46-3.53 (small data: they overfit), gap 0.40-0.47; soft loss last/first 0.47-0.48.
    teacher = tiny_llama(layers=2, std=0.25, seed=10)
    test_ids = teacher_samples(teacher, 48, 24, seed=99)
    for seed in (0, 1):
        train_ids = teacher_samples(teacher, 32, 24, seed=seed)
        results = {}
        for alpha in (1.0, 0.0):
            torch.manual_seed(100 + seed)
            student = impl.make_student(teacher, [0])
            start = held_out_nll(student, test_ids)
            opt = torch.optim.Adam(student.parameters(), lr=3e-3)
            losses = [impl.distill_step(student, teacher, train_ids[i:i + 8], opt, temperature=2.0, alpha=alpha)
                      for _ in range(6) for i in range(0, 32, 8)]
            results[alpha] = (held_out_nll(student, test_ids), losses)
        (soft, losses), (hard, _) = results[1.0], results[0.0]
        assert sum(losses[-4:]) < 0.6 * sum(losses[:4]), f"seed {seed}: the distillation loss should fall by 40%, " \
            f"first {[round(v, 3) for v in losses[:4]]}, last {[round(v, 3) for v in losses[-4:]]}"
        assert soft < start - 0.08, f"seed {seed}: distillation should improve held-out NLL by > 0.08 nats from " \
            f"{start:.3f}, reached {soft:.3f}"
        assert soft < hard - 0.2, f"seed {seed}: soft targets should beat hard labels by > 0.2 nats of held-out " \
            f"NLL: distilled {soft:.3f}, hard labels {hard:.3f}"
