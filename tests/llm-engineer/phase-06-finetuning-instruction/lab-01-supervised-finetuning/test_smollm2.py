"""The real path end to end: SmolLM2-135M-Instruct, its chat template, masked labels, two SFT steps on two
short pairs, held-out loss and a greedy answer."""
import math

import pytest
import torch

from labkit import assets


@pytest.mark.slow
@pytest.mark.task("train-loop")
def test_smollm2_sft_end_to_end(impl, pairs):
    model, tokenizer = assets.smollm2()
    examples = [impl.tokenize_example(tokenizer, r["instruction"], r["response"]) for r in pairs[:2]]
    batch = impl.collate(examples, tokenizer.pad_token_id)
    before = impl.evaluate_loss(model, [batch])
    assert 0.05 < before < 0.5 * math.log(len(tokenizer)), (
        f"a trained chat model should already find these short answers likely: loss {before:.3f} per answer token "
        f"(ln V = {math.log(len(tokenizer)):.2f})")
    for p in model.model.embed_tokens.parameters():  # tied with the LM head; freezing it keeps the step cheap
        p.requires_grad_(False)
    losses = impl.train_sft(model, [batch], steps=2, lr=1e-4)
    after = impl.evaluate_loss(model, [batch])
    assert after < before, f"two SFT steps on the batch should lower its loss: {before:.3f} -> {after:.3f}"
    assert abs(losses[0] - before) < 1e-3 * before + 1e-4, (
        f"the first step's loss {losses[0]:.4f} should equal the evaluated loss {before:.4f} (same batch, same weights)")
    reply = impl.generate_reply(model, tokenizer, pairs[0]["instruction"], max_new_tokens=12)
    assert isinstance(reply, str) and reply, f"expected a non-empty greedy answer, got {reply!r}"
