"""Shared sanity checks: library functions any lab's tests call, each failing with a message that says what was
expected and what came back (and never how to fix the code).

| check | catches |
|---|---|
| `assert_initial_loss` | a fresh LM whose loss is far from ln(V): mis-scaled init, wrong loss reduction, leaked targets |
| `assert_overfits_batch` | a model or training step that cannot drive one batch's loss towards zero |
| `assert_kv_cache_equivalent` | a KV-cache that is ignored, stale, or offset by one position |
| `assert_tokenizer_matches` | a tokenizer that differs from a reference (tiktoken) on any text |
| `assert_gradients_match` | a hand-written backward that disagrees with numerical gradients (float64) |
| `assert_close_to_reference` | an implementation that drifts from a trusted one (torch, sklearn, peft, trl…) |
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence


class CheckFailed(AssertionError):
    pass


def assert_initial_loss(loss: float, vocab_size: int, tolerance: float = 0.1) -> None:
    """A freshly initialised LM predicts near-uniformly, so its cross-entropy is close to ln(V).

    `tolerance` is relative: |loss - ln V| <= tolerance * ln V. A loss far above ln V means confident wrong
    predictions (logits too large at init); far below means the model sees its targets.
    """
    expected = math.log(vocab_size)
    loss = float(loss)
    if not math.isfinite(loss) or abs(loss - expected) > tolerance * expected:
        raise CheckFailed(f"initial loss {loss:.4f} is not within {tolerance:.0%} of ln(vocab={vocab_size}) = "
                          f"{expected:.4f}; a fresh model should predict close to uniformly")


def assert_overfits_batch(step: Callable[[], float], steps: int, target: float, *, start_factor: float = 0.5) -> list:
    """Call `step()` (one optimisation step on the same batch, returning the loss) `steps` times.

    Passes when the final loss is below `target` and below `start_factor` × the first loss. Returns the losses.
    """
    losses = [float(step()) for _ in range(steps)]
    first, last = losses[0], losses[-1]
    if not all(math.isfinite(x) for x in losses):
        raise CheckFailed(f"loss became non-finite while overfitting one batch: {losses[-5:]}")
    if last > target or last > start_factor * first:
        raise CheckFailed(f"could not overfit one batch: loss went {first:.4f} -> {last:.4f} in {steps} steps "
                          f"(expected below {target} and below {start_factor:.0%} of the start)")
    return losses


def assert_kv_cache_equivalent(generate: Callable[..., Sequence], prompts: Iterable, max_new_tokens: int,
                               *, logits: Callable[..., tuple] | None = None, atol: float = 1e-5) -> None:
    """Greedy generation with the cache must give exactly the tokens generation without it gives.

    `generate(prompt, max_new_tokens, use_cache)` returns the generated token ids (a list or 1-D tensor).
    Optionally `logits(prompt, use_cache)` returns the last step's logits, compared both ways within `atol`.
    """
    import torch

    for index, prompt in enumerate(prompts):
        with_cache = [int(t) for t in generate(prompt, max_new_tokens, True)]
        without = [int(t) for t in generate(prompt, max_new_tokens, False)]
        if with_cache != without:
            at = next((i for i, (a, b) in enumerate(zip(with_cache, without)) if a != b),
                      min(len(with_cache), len(without)))
            raise CheckFailed(f"prompt #{index}: tokens with the KV-cache differ from tokens without it at "
                              f"generated position {at} (cache: {with_cache[at:at + 3]}, "
                              f"no cache: {without[at:at + 3]}; lengths {len(with_cache)} vs {len(without)})")
        if logits is not None:
            cached = torch.as_tensor(logits(prompt, True)).double()
            full = torch.as_tensor(logits(prompt, False)).double()
            gap = (cached - full).abs().max().item()
            if gap > atol:
                raise CheckFailed(f"prompt #{index}: last-step logits with and without the KV-cache differ by "
                                  f"{gap:.2e} (allowed {atol:.0e})")


def assert_tokenizer_matches(encode: Callable[[str], Sequence[int]], reference: Callable[[str], Sequence[int]],
                             texts: Iterable[str], *, decode: Callable[[Sequence[int]], str] | None = None) -> None:
    """Token-for-token equality with a reference encoder (e.g. tiktoken) on every text; round trip if `decode`."""
    for index, text in enumerate(texts):
        ours, theirs = list(encode(text)), list(reference(text))
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            sample = text if len(text) <= 60 else text[:60] + "…"
            raise CheckFailed(f"text #{index} {sample!r}: first difference at token {at}: got {ours[at:at + 5]}, "
                              f"reference gives {theirs[at:at + 5]} ({len(ours)} vs {len(theirs)} tokens)")
        if decode is not None and decode(ours) != text:
            raise CheckFailed(f"text #{index}: decode(encode(text)) does not give the text back")


def assert_gradients_match(function: Callable, inputs: Sequence, *, eps: float = 1e-6, atol: float = 1e-5,
                           rtol: float = 1e-3) -> None:
    """torch.autograd.gradcheck in float64: analytic gradients (your backward) against finite differences."""
    import torch

    doubled = tuple(x.detach().double().requires_grad_(x.requires_grad) if torch.is_tensor(x) else x for x in inputs)
    try:
        torch.autograd.gradcheck(function, doubled, eps=eps, atol=atol, rtol=rtol, raise_exception=True)
    except NotImplementedError:
        raise  # a scaffold's TODO (NotImplementedError is a RuntimeError): report it as a TODO, not a mismatch
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckFailed(f"analytic gradients disagree with numerical ones (float64): {first}") from None


def assert_close_to_reference(ours, reference, *, atol: float = 1e-6, rtol: float = 1e-5, what: str = "output") -> None:
    """Numerical parity with a trusted implementation, reporting the worst element."""
    import numpy as np

    a = np.asarray(ours.detach().cpu() if hasattr(ours, "detach") else ours, dtype=np.float64)
    b = np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference, dtype=np.float64)
    if a.shape != b.shape:
        raise CheckFailed(f"{what}: shape {a.shape} differs from the reference's {b.shape}")
    gap = np.abs(a - b)
    allowed = atol + rtol * np.abs(b)
    if not np.all(gap <= allowed):
        worst = np.unravel_index(np.argmax(gap - allowed), gap.shape)
        raise CheckFailed(f"{what}: differs from the reference at index {tuple(int(i) for i in worst)}: "
                          f"{a[worst]:.6g} vs {b[worst]:.6g} (max abs gap {gap.max():.2e}, atol {atol:.0e}, "
                          f"rtol {rtol:.0e})")
