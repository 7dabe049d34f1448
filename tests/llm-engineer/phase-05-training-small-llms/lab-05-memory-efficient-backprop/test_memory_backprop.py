"""Checks for the memory-efficient backprop lab. References: float64 gradcheck, torch's own autograd on the
unfused ops, torch.utils.checkpoint, transformers' gradient_checkpointing_enable, hand-counted bytes."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from labkit.checks import assert_close_to_reference, assert_gradients_match

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def saved_shapes_and_bytes(fn, exclude=()):
    """The test's own record of what autograd saves: shapes, and bytes per distinct storage."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    shapes, storages = [], {}

    def pack(t):
        shapes.append(tuple(t.shape))
        if t.untyped_storage().data_ptr() not in skip:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, shapes, sum(storages.values())


def grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------- custom Function

@pytest.mark.task("linear-gelu")
def test_linear_gelu_passes_float64_gradcheck(impl):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 4, 5, generator=g), torch.randn(6, 5, generator=g), torch.randn(6, generator=g)
    assert_gradients_match(impl.linear_gelu, (x.requires_grad_(), w.requires_grad_(), b.requires_grad_()))


@pytest.mark.task("linear-gelu")
def test_linear_gelu_matches_torch_and_saves_no_preactivation(impl):
    lin = nn.Linear(8, 32)
    x = torch.randn(16, 8, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    want = F.gelu(lin(x_ref))
    want.sum().backward()
    ref_grads = (x_ref.grad, lin.weight.grad.clone(), lin.bias.grad.clone())
    lin.zero_grad()
    got, shapes, _ = saved_shapes_and_bytes(lambda: impl.linear_gelu(x, lin.weight, lin.bias))
    assert_close_to_reference(got, want, atol=1e-6, what="linear_gelu output")
    got.sum().backward()
    for name, ours, theirs in zip(("x", "weight", "bias"), (x.grad, lin.weight.grad, lin.bias.grad), ref_grads):
        assert_close_to_reference(ours, theirs, atol=1e-5, rtol=1e-4, what=f"gradient of {name}")
    assert (16, 32) not in shapes, f"the (batch, out) pre-activation was saved for backward (saved shapes: {shapes})"


# ---------------------------------------------------------------- saved bytes

@pytest.mark.task("saved-bytes")
def test_saved_bytes_hand_counts(impl):
    x = torch.randn(10, 20, requires_grad=True)  # 200 float32 = 800 bytes
    cases = {"exp saves its output": (torch.exp, 800), "sin saves x, cos saves sin(x)": (lambda a: a.sin().cos(), 1600),
             "x * x saves one storage": (lambda a: a * a, 800), "no grad: nothing": (lambda a: a.detach().exp(), 0),
             "a saved slice keeps all of x alive": (lambda a: a[:, :5].sin(), 800)}
    for what, (fn, expected) in cases.items():
        got, out = impl.saved_tensor_bytes(fn, x)
        assert got == expected, f"{what}: expected {expected} bytes, got {got}"
        assert torch.is_tensor(out), "the second value should be the function's output"


@pytest.mark.task("saved-bytes")
def test_saved_bytes_leave_out_the_excluded_tensors(impl):
    lin = nn.Linear(20, 30)
    x = torch.randn(10, 20, requires_grad=True)
    everything, _ = impl.saved_tensor_bytes(lambda a: torch.tanh(lin(a)), x)
    without, _ = impl.saved_tensor_bytes(lambda a: torch.tanh(lin(a)), x, exclude=list(lin.parameters()))
    # linear saves x (800 B) and the weight (2400 B); tanh saves its output (10 x 30 x 4 = 1200 B)
    assert (everything, without) == (800 + 2400 + 1200, 800 + 1200), \
        f"expected 4400 bytes (2000 without the parameters), got {everything} and {without}"


# ---------------------------------------------------------------- checkpointing by hand

def blocks_and_input(impl, dropout=0.0, n=4, d=16):
    torch.manual_seed(0)
    blocks = nn.ModuleList(impl.Block(d, dropout) for _ in range(n))
    return blocks, torch.randn(8, d, generator=torch.Generator().manual_seed(1))


def run_blocks(blocks, x, wrap):
    x = x.clone().requires_grad_()
    h = x
    for block in blocks:
        h = wrap(block, h)
    loss = h.square().mean()
    loss.backward()
    result = grads(blocks)
    result["input"] = x.grad.clone()
    blocks.zero_grad(set_to_none=True)
    return loss.item(), result


@pytest.mark.task("checkpoint-by-hand")
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_checkpoint_by_hand_gives_the_same_gradients(impl, dropout):
    blocks, x = blocks_and_input(impl, dropout)
    blocks.train()
    torch.manual_seed(5)
    plain_loss, plain = run_blocks(blocks, x, lambda b, h: b(h))
    torch.manual_seed(5)
    ours_loss, ours = run_blocks(blocks, x, lambda b, h: impl.checkpoint_by_hand(b, h))
    torch.manual_seed(5)
    _, library = run_blocks(blocks, x, lambda b, h: torch.utils.checkpoint.checkpoint(b, h, use_reentrant=False))
    assert ours_loss == pytest.approx(plain_loss, abs=1e-7)
    assert ours.keys() == plain.keys(), f"gradients missing for {sorted(plain.keys() - ours.keys())}"
    for name in plain:
        assert_close_to_reference(ours[name], plain[name], atol=1e-6, what=f"grad of {name} (dropout {dropout})")
        assert_close_to_reference(ours[name], library[name], atol=1e-6,
                                  what=f"grad of {name} vs torch.utils.checkpoint")


@pytest.mark.task("checkpoint-by-hand")
def test_backward_leaves_the_global_rng_where_the_plain_run_does(impl):
    # recomputing replays the dropout masks from a saved RNG state; afterwards the global RNG must be where the
    # plain forward + backward leaves it, or every later random draw of the training run changes
    blocks, x = blocks_and_input(impl, dropout=0.3)
    blocks.train()
    wraps = {"plain": lambda b, h: b(h), "ours": lambda b, h: impl.checkpoint_by_hand(b, h),
             "torch": lambda b, h: torch.utils.checkpoint.checkpoint(b, h, use_reentrant=False)}
    next_draw = {}
    for name, wrap in wraps.items():
        torch.manual_seed(5)
        run_blocks(blocks, x, wrap)
        next_draw[name] = torch.rand(4)
    assert torch.equal(next_draw["torch"], next_draw["plain"]), "test setup: torch.utils.checkpoint moved the RNG"
    assert torch.equal(next_draw["ours"], next_draw["plain"]), \
        "after backward the global RNG is not where the plain run leaves it (restore it inside torch.random.fork_rng)"


@pytest.mark.task("checkpoint-by-hand")
def test_checkpoint_by_hand_passes_gradcheck(impl):
    w = torch.randn(5, 5, dtype=torch.float64)
    assert_gradients_match(lambda a: impl.checkpoint_by_hand(lambda h: torch.tanh(h @ w) * h, a),
                           (torch.randn(3, 5, requires_grad=True),))


@pytest.mark.task("checkpoint-by-hand")
def test_checkpointing_keeps_only_block_inputs(impl):
    blocks, x = blocks_and_input(impl, n=6, d=32)
    params = list(blocks.parameters())
    x = x.requires_grad_()

    def stack(wrap):
        h = x
        for block in blocks:
            h = wrap(block, h)
        return h.sum()

    _, _, plain = saved_shapes_and_bytes(lambda: stack(lambda b, h: b(h)), exclude=params)
    _, shapes, ours = saved_shapes_and_bytes(lambda: stack(lambda b, h: impl.checkpoint_by_hand(b, h)),
                                             exclude=params)
    assert ours <= 6 * x.numel() * 4, f"checkpointed stack saved {ours} bytes; only the 6 block inputs " \
                                      f"({6 * x.numel() * 4} bytes) should stay"
    assert ours < plain / 5, f"expected far less than the plain stack's {plain} bytes, got {ours}"
    assert all(s == (8, 32) for s in shapes), f"saved something other than block inputs: {shapes}"


@pytest.mark.task("checkpoint-by-hand")
def test_checkpoint_by_hand_refuses_inputs_without_grad(impl):
    blocks, x = blocks_and_input(impl, n=1)
    with pytest.raises(ValueError):
        impl.checkpoint_by_hand(blocks[0], x)  # x does not require grad: the block's weights would get none


@pytest.mark.task("checkpoint-by-hand")
@pytest.mark.gpu
def test_checkpointing_lowers_peak_cuda_memory(impl):
    torch.manual_seed(0)
    blocks = nn.ModuleList(impl.Block(1024) for _ in range(8)).cuda()
    x = torch.randn(4096, 1024, device="cuda", requires_grad=True)

    def peak(wrap):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        h = x
        for block in blocks:
            h = wrap(block, h)
        h.square().mean().backward()
        torch.cuda.synchronize()
        blocks.zero_grad(set_to_none=True)
        x.grad = None
        return torch.cuda.max_memory_allocated() - start

    plain = peak(lambda b, h: b(h))
    ours = peak(lambda b, h: impl.checkpoint_by_hand(b, h))
    assert ours < 0.6 * plain, f"peak extra memory {ours / 2**20:.0f} MiB with checkpointing vs {plain / 2**20:.0f} " \
                               "MiB without; expected well under 60%"


# ---------------------------------------------------------------- transformers model, custom loop

def llama(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(2))


@pytest.mark.task("checkpoint-hf-layers")
def test_wrapped_llama_matches_plain_and_transformers_checkpointing(impl, ids):
    plain, library, ours = llama(), llama(), llama()
    library.gradient_checkpointing_enable()
    impl.enable_manual_checkpointing(ours.model.layers)
    results = {}
    for name, model in (("plain", plain), ("transformers", library), ("ours", ours)):
        model.train()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        results[name] = grads(model)
    assert results["ours"].keys() == results["plain"].keys()
    for name in results["plain"]:
        for other in ("plain", "transformers"):
            assert_close_to_reference(results["ours"][name], results[other][name], atol=1e-6, rtol=1e-5,
                                      what=f"grad of {name} vs {other}")
    assert set(ours.state_dict()) == set(plain.state_dict()), "the wrapper must not rename parameters"


@pytest.mark.task("checkpoint-hf-layers")
def test_wrapped_llama_saves_less(impl, ids):
    plain, ours = llama(), llama()
    impl.enable_manual_checkpointing(ours.model.layers)
    sizes = {}
    for name, model in (("plain", plain), ("ours", ours)):
        model.train()
        _, _, sizes[name] = saved_shapes_and_bytes(
            lambda: model(input_ids=ids, labels=ids, use_cache=False).loss, exclude=list(model.parameters()))
    assert sizes["ours"] < sizes["plain"] / 3, f"saved {sizes['ours']} bytes with checkpointing vs " \
                                               f"{sizes['plain']} without; expected under a third"


@pytest.mark.task("checkpoint-hf-layers")
def test_custom_loop_trains_like_the_plain_model(impl, ids):
    batches = [ids, ids.flip(0), ids]
    plain, ours = llama(), llama()
    reference = {k: v.clone() for k, v in plain.state_dict().items()}
    # reference: the same loop written out here, on the plain model
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    plain.train()
    want = []
    for batch in batches:
        loss = plain(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        want.append(loss.item())
    impl.enable_manual_checkpointing(ours.model.layers)
    got = impl.train_loop(ours, batches, torch.optim.AdamW(ours.parameters(), lr=1e-2))
    assert got == pytest.approx(want, abs=1e-5), f"losses {got} vs the plain loop's {want}"
    assert want[-1] < want[0], "sanity: the plain loop should reduce the loss on a repeated batch"
    for (name, p), q in zip(ours.named_parameters(), plain.parameters()):
        assert_close_to_reference(p, q, atol=1e-5, what=f"{name} after 3 steps")
    assert any(not torch.equal(v, ours.state_dict()[k]) for k, v in reference.items()), "no parameter changed"
