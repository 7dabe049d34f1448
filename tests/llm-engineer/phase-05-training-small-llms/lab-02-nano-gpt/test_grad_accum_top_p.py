"""Gradient accumulation against one big batch's autograd gradient, and the nucleus (top-p) filter against
transformers' TopPLogitsWarper and hand-worked boundary and tie cases."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit import checks

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyLM(nn.Module):
    """A float64 next-token model with the lab's interface, model(x, y) -> (logits, mean cross-entropy), so the
    accumulated gradient can be compared with the big batch's to 1e-12 rather than float32's 1e-6."""

    def __init__(self, vocab: int = 11, dim: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.vocab = vocab
        self.emb = nn.Embedding(vocab, dim, dtype=torch.float64)
        self.mix = nn.Linear(dim, dim, dtype=torch.float64)
        self.out = nn.Linear(dim, vocab, dtype=torch.float64)

    def forward(self, x, y=None):
        logits = self.out(torch.tanh(self.mix(self.emb(x))))  # (B, T, V)
        loss = None if y is None else F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1))
        return logits, loss


def micro_batches(vocab: int, k: int, b: int, T: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(vocab, (b, T), generator=gen), torch.randint(vocab, (b, T), generator=gen))
            for _ in range(k)]


def big_batch_reference(model, batches):
    """Autograd on the k·b rows stacked into one batch: the gradient accumulation must reproduce."""
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    _, loss = model(x, y)
    return loss.item(), torch.autograd.grad(loss, list(model.parameters()))


def assert_grads_equal(model, reference, atol, what):
    for (name, p), g in zip(model.named_parameters(), reference):
        assert p.grad is not None, f"{name}.grad is None after accumulating: call backward on every micro-batch"
        checks.assert_close_to_reference(p.grad, g, atol=atol, what=f"{name}.grad ({what})")


# ------------------------------------------------------------------------------------------ gradient accumulation

@pytest.mark.task("grad-accum")
@pytest.mark.parametrize("k,b", [(1, 6), (2, 3), (4, 3)])
def test_accumulated_gradient_equals_one_big_batch(impl, k, b):
    model = ToyLM()
    batches = micro_batches(model.vocab, k, b, T=5, seed=k)
    ref_loss, ref_grads = big_batch_reference(model, batches)
    loss = impl.accumulate_gradients(model, batches)
    # without the 1/k scaling every gradient would be k times too large
    assert_grads_equal(model, ref_grads, atol=1e-12, what=f"{k} micro-batches of {b} vs one batch of {k * b}")
    assert abs(loss - ref_loss) < 1e-12, (f"returned loss {loss:.12f} should be the mean over all micro-batches, "
                                          f"the big batch's loss {ref_loss:.12f}")


@pytest.mark.task("grad-accum")
def test_stale_gradients_are_cleared_once_before_the_loop(impl):
    # gradients left over from the previous step must not leak in, and only the first micro-batch may clear them
    model = ToyLM(seed=1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    for call in range(2):  # two optimiser steps in a row, each on its own data
        batches = micro_batches(model.vocab, 3, 2, T=4, seed=10 + call)
        _, ref_grads = big_batch_reference(model, batches)
        impl.accumulate_gradients(model, batches)
        assert_grads_equal(model, ref_grads, atol=1e-12, what=f"call {call + 1} after stale gradients")


@pytest.mark.task("grad-accum")
def test_gpt_gradient_with_accumulation_matches_big_batch(impl):
    cfg = impl.GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=32)
    model = impl.GPT(cfg)
    batches = micro_batches(cfg.vocab_size, 4, 2, T=16, seed=3)
    ref_loss, ref_grads = big_batch_reference(model, batches)
    loss = impl.accumulate_gradients(model, batches)
    # float32: the two paths add the same terms in a different order; gradients here are about 1e-2
    assert_grads_equal(model, ref_grads, atol=2e-6, what="GPT, 4 micro-batches of 2 vs one batch of 8")
    assert abs(loss - ref_loss) < 1e-5, f"returned loss {loss:.6f}, big batch {ref_loss:.6f}"


@pytest.mark.task("grad-accum")
def test_accumulated_sgd_steps_equal_big_batch_steps(impl):
    # two SGD steps of train_step_accumulated (k = 3) land where train_step on the stacked batches does
    ours, ref = ToyLM(seed=2), ToyLM(seed=2)
    opt_ours, opt_ref = torch.optim.SGD(ours.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
    for step in range(2):
        batches = micro_batches(ours.vocab, 3, 2, T=4, seed=20 + step)
        impl.train_step_accumulated(ours, opt_ours, batches, lr=0.5, max_norm=None)
        x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
        opt_ref.zero_grad()
        ref(x, y)[1].backward()
        opt_ref.step()
        for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
            checks.assert_close_to_reference(a, b, atol=1e-12, what=f"{name} after step {step + 1}")


def test_accumulation_rejects_unequal_or_missing_micro_batches(impl):
    model = ToyLM()
    uneven = micro_batches(model.vocab, 1, 2, 4, 0) + micro_batches(model.vocab, 1, 3, 4, 1)
    with pytest.raises(ValueError, match="shape"):
        impl.accumulate_gradients(model, uneven)
    with pytest.raises(ValueError, match="empty"):
        impl.accumulate_gradients(model, [])


# ------------------------------------------------------------------------------------------ top-p

def hf_top_p(logits, p):
    from transformers.generation.logits_process import TopPLogitsWarper

    return TopPLogitsWarper(top_p=p)(None, logits.clone())


def kept(logits) -> list[list[int]]:
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in logits]


@pytest.mark.task("top-p")
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(impl, p):
    gen = torch.Generator().manual_seed(int(p * 100))
    logits = torch.randn(16, 50, generator=gen) * 2.5  # peaked and flat rows alike
    original = logits.clone()
    ours, ref = impl.top_p_filter(logits, p), hf_top_p(logits, p)
    assert torch.equal(logits, original), "top_p_filter changed its input in place; return a new tensor"
    assert kept(ours) == kept(ref), f"top-p {p}: kept tokens differ from transformers' TopPLogitsWarper"
    finite = torch.isfinite(ref)
    assert torch.equal(ours[finite], ref[finite]), "kept logits must pass through unchanged"


@pytest.mark.task("top-p")
@pytest.mark.parametrize("p,expected", [
    (0.5, [3]),         # the top token alone holds exactly 0.5: the set is complete
    (0.75, [1, 3]),     # 0.5 + 0.25 = 0.75 exactly: stop there, the two 1/8s stay out
    (0.7, [1, 3]),
    (1.0, [0, 1, 2, 3]),
])
def test_top_p_boundary_exactly_at_p(impl, p, expected):
    # probabilities 1/8, 1/4, 1/8, 1/2 are exact in binary floating point, so the cumulative sums hit p exactly
    logits = torch.tensor([[0.0, math.log(2.0), 0.0, math.log(4.0)]])
    ours, ref = impl.top_p_filter(logits, p), hf_top_p(logits, p)
    assert kept(ref) == [expected], "the hand-worked set should agree with transformers"
    assert kept(ours) == [expected], f"top-p {p} on probabilities (1/8, 1/4, 1/8, 1/2) should keep {expected}"


@pytest.mark.task("top-p")
@pytest.mark.parametrize("logits,p,count", [
    ([0.0, 0.0, 0.0, 0.0], 0.5, 2),    # four tokens at 1/4: two reach 0.5 exactly
    ([0.0, 0.0, 0.0, 0.0], 0.6, 3),
    ([math.log(4.0), math.log(2.0), 0.0, 0.0], 0.8, 3),    # the top two, then one of the tied 1/8s
    ([math.log(4.0), math.log(2.0), 0.0, 0.0], 0.875, 3),  # ... reaching 0.875 exactly
])
def test_top_p_takes_only_as_many_tied_tokens_as_it_needs(impl, logits, p, count):
    ours = impl.top_p_filter(torch.tensor([logits]), p)
    ref = hf_top_p(torch.tensor([logits]), p)
    assert len(kept(ours)[0]) == count == len(kept(ref)[0]), (
        f"top-p {p} on {logits}: the smallest set reaching p has {count} tokens, got {len(kept(ours)[0])}")
    probs = torch.softmax(torch.tensor(logits), -1)
    top = probs.topk(count).values.min()
    assert bool((probs[kept(ours)[0]] >= top).all()), "the kept tokens must be the most likely ones"


@pytest.mark.task("top-p")
def test_top_p_always_keeps_the_most_likely_token(impl):
    logits = torch.randn(32, 20, generator=torch.Generator().manual_seed(5)) * 4
    ours = impl.top_p_filter(logits, 1e-4)
    assert kept(ours) == [[i] for i in logits.argmax(-1).tolist()], "a tiny top_p must leave exactly the argmax"
    peaked = torch.tensor([[0.0, 3.0, 1.0]])  # the top token alone has probability 0.84, above p = 0.3
    assert kept(impl.top_p_filter(peaked, 0.3)) == [[1]]


def test_top_p_rejects_out_of_range(impl):
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            impl.top_p_filter(torch.zeros(1, 3), p)


class Bigram(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = table
        self.config = type("Config", (), {"block_size": 8})()

    def forward(self, idx, targets=None):
        return self.table[idx], None


@pytest.mark.task("sample")
@pytest.mark.parametrize("temperature,top_k,top_p,expected", [
    (1.0, None, 0.65, [0.0, 0.0, 3 / 7, 4 / 7]),       # 0.4 + 0.3 >= 0.65
    (0.5, None, 0.8, [0.0, 0.0, 9 / 25, 16 / 25]),     # temperature first: 16/30 + 9/30 >= 0.8
    (1.0, 3, 0.5, [0.0, 0.0, 3 / 7, 4 / 7]),           # top-3 renormalises to 2/9, 3/9, 4/9; 4/9 < 0.5
])
def test_generate_applies_top_p_after_temperature_and_top_k(impl, temperature, top_k, top_p, expected):
    table = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).expand(4, 4)
    prompts = torch.zeros(20_000, 1, dtype=torch.long)
    out = impl.generate(Bigram(table), prompts, 1, temperature=temperature, top_k=top_k,
                        generator=torch.Generator().manual_seed(0), top_p=top_p)
    freq = torch.bincount(out[:, 1], minlength=4).double() / 20_000
    gap = (freq - torch.tensor(expected, dtype=torch.double)).abs().max().item()
    assert gap < 0.015, f"sampled frequencies {freq.tolist()} should match {expected} (max gap {gap:.3f})"


def test_full_preset_is_the_documented_configuration(impl):
    full = impl.PRESETS["full"]
    shape = tuple(full[name] for name in ("d_model", "n_layer", "n_head", "block_size", "batch_size"))
    assert shape == (256, 6, 8, 256, 64)
    model = impl.GPT(impl.GPTConfig(vocab_size=68, block_size=256, n_layer=6, n_head=8, d_model=256))
    assert model.num_params() == 4_756_480, "the README's parameter count for the full preset on characters"
    # 12·L·d² for the blocks' matrices, plus biases and norms, plus the 68 x 256 token table (the tied head)
    assert abs(model.num_params() - 12 * 6 * 256 ** 2) < 0.02 * model.num_params()
