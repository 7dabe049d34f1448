"""The model checks in labkit.checks must pass on a healthy model and fail, with a message that says what was
expected and what came back, on a broken one: a mis-scaled init, a no-op optimiser step, an ignored KV-cache."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit.checks import CheckFailed, assert_initial_loss, assert_kv_cache_equivalent, assert_overfits_batch

V, D = 97, 32


class TinyLM(nn.Module):
    """Embedding -> Linear head: enough for initial-loss and overfitting checks."""

    def __init__(self, init_std: float | None = 0.02, logit_scale: float = 1.0):
        super().__init__()
        self.emb, self.head, self.logit_scale = nn.Embedding(V, D), nn.Linear(D, V), logit_scale
        if init_std is not None:
            nn.init.normal_(self.emb.weight, std=init_std)
            nn.init.normal_(self.head.weight, std=init_std)
            nn.init.zeros_(self.head.bias)

    def forward(self, idx, targets):
        logits = self.head(self.emb(idx)) * self.logit_scale
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(V, (8, 16), generator=gen), torch.randint(V, (8, 16), generator=gen)


# ------------------------------------------------------------------------------------------ initial loss

def test_initial_loss_passes_for_small_init():
    torch.manual_seed(0)
    with torch.no_grad():
        loss = TinyLM()(*batch())
    assert_initial_loss(loss.item(), V, tolerance=0.02)


def test_initial_loss_fails_when_logits_are_scaled_up():
    torch.manual_seed(0)
    with torch.no_grad():  # PyTorch's default init (N(0, 1) embeddings) with the logits multiplied by 10
        loss = TinyLM(init_std=None, logit_scale=10.0)(*batch())
    assert loss.item() > 1.5 * math.log(V), "the broken model should be confidently wrong"
    with pytest.raises(CheckFailed, match=r"initial loss .* is not within 10% of ln\(vocab=97\) = 4\.5747"):
        assert_initial_loss(loss.item(), V)


def test_initial_loss_fails_when_the_model_sees_its_targets():
    idx, targets = batch()
    leaked = F.cross_entropy(F.one_hot(targets, V).float().flatten(0, 1) * 20, targets.flatten())
    with pytest.raises(CheckFailed, match="initial loss 0.0000"):
        assert_initial_loss(leaked.item(), V)


def test_initial_loss_fails_on_nan():
    with pytest.raises(CheckFailed, match="nan"):
        assert_initial_loss(float("nan"), V)


# ------------------------------------------------------------------------------------------ overfitting

def overfit_step(lr: float):
    torch.manual_seed(0)
    model = TinyLM()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, _ = batch()
    y = (7 * x + 3) % V  # a bigram model can fit this batch exactly

    def step():
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def test_overfit_passes_with_a_working_step():
    losses = assert_overfits_batch(overfit_step(lr=0.05), steps=60, target=0.5)
    assert len(losses) == 60 and losses[-1] < 0.5


def test_overfit_fails_when_the_step_is_a_no_op():
    with pytest.raises(CheckFailed, match=r"could not overfit one batch: loss went 4\.57\d+ -> 4\.57\d+ in 30 steps"):
        assert_overfits_batch(overfit_step(lr=0.0), steps=30, target=0.5)


def test_overfit_fails_when_the_loss_blows_up():
    values = iter([4.0, 2.0, float("inf"), 0.1])
    with pytest.raises(CheckFailed, match="non-finite"):
        assert_overfits_batch(lambda: next(values), steps=4, target=0.5)


# ------------------------------------------------------------------------------------------ KV-cache

class ToyLM:
    """next-token logits = mean of the context's embeddings @ W: every position of the context matters.

    The cached path keeps a running sum (a one-vector 'cache'); `bug` breaks it the way real caches break:
    'ignored' uses only the newest token (the context is dropped), 'stale' never adds the newest token.
    """

    def __init__(self, bug: str | None = None, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.emb = torch.randn(V, D, generator=gen, dtype=torch.float64)
        self.out = torch.randn(D, V, generator=gen, dtype=torch.float64)
        self.bug = bug

    def full_logits(self, ids):
        return self.emb[ids].mean(0) @ self.out

    def run(self, prompt, max_new_tokens, use_cache):
        """(generated ids, logits of the last step)."""
        ids = [int(t) for t in prompt]
        total, count = self.emb[ids[:-1]].sum(0), len(ids) - 1  # cache after prefill, newest token pending
        generated, logits = [], None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = self.full_logits(ids)
            else:
                newest = self.emb[ids[-1]]
                if self.bug == "ignored":
                    logits = newest @ self.out
                else:
                    if self.bug != "stale":
                        total, count = total + newest, count + 1
                    logits = (total / max(count, 1)) @ self.out
            nxt = int(logits.argmax())
            ids.append(nxt)
            generated.append(nxt)
        return generated, logits


PROMPTS = [[3, 1, 4, 1, 5, 9, 2, 6], [42], list(range(20, 60))]


def test_kv_check_passes_for_a_correct_cache():
    model = ToyLM()
    assert_kv_cache_equivalent(lambda p, n, c: model.run(p, n, c)[0], PROMPTS, max_new_tokens=12,
                               logits=lambda p, c: model.run(p, 5, c)[1], atol=1e-9)


@pytest.mark.parametrize("bug", ["ignored", "stale"])
def test_kv_check_fails_for_a_broken_cache(bug):
    model = ToyLM(bug)
    with pytest.raises(CheckFailed, match=r"prompt #\d+: tokens with the KV-cache differ from tokens without it at "
                                          r"generated position \d+"):
        assert_kv_cache_equivalent(lambda p, n, c: model.run(p, n, c)[0], PROMPTS, max_new_tokens=12)


def test_kv_check_compares_logits_when_tokens_agree():
    model = ToyLM()

    def nudged(prompt, use_cache):  # same argmax, logits off by 1e-3: a precision bug tokens alone would miss
        logits = model.run(prompt, 3, use_cache)[1]
        return logits + (1e-3 if use_cache else 0.0)

    with pytest.raises(CheckFailed, match=r"prompt #0: last-step logits with and without the KV-cache differ by "
                                          r"1\.00e-03 \(allowed 1e-05\)"):
        assert_kv_cache_equivalent(lambda p, n, c: model.run(p, n, c)[0], PROMPTS, max_new_tokens=3, logits=nudged)


def test_kv_check_accepts_tensors():
    model = ToyLM()
    assert_kv_cache_equivalent(lambda p, n, c: torch.tensor(model.run(p, n, c)[0]), [torch.tensor([7, 8, 9])],
                               max_new_tokens=4)
