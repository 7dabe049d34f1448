"""Quick checks of the training loop on a 2-layer random Llama with a 64-token vocabulary (seconds, so they run
before the SmolLM2 end-to-end test): three steps over two batches with plain SGD and gradient clipping must give
the losses and weights of a reference loop written directly with torch and the model's own `labels=` loss."""
import copy

import pytest
import torch


def two_batches():
    """Two different batches of two rows; a 4-token prompt carries no loss and the last row is right-padded."""
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(2):
        ids = torch.randint(3, 64, (2, 12), generator=g)
        labels = ids.clone()
        labels[:, :4] = -100
        mask = torch.ones_like(ids)
        ids[1, 9:], labels[1, 9:], mask[1, 9:] = 0, -100, 0  # three padding tokens
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
    return batches


def reference_loop(model, batches, steps, lr, max_norm):
    """SGD by hand: loss (the model's own shifted cross-entropy) -> backward -> clip the global norm -> update ->
    clear the gradients. Returns the losses and the gradient norms before clipping."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    losses, norms = [], []
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None
        losses.append(loss.item())
    return losses, norms


@pytest.mark.task("train-loop")
def test_three_sgd_steps_over_two_batches_match_a_reference_loop(impl, llama_factory):
    model = llama_factory(64)
    reference = copy.deepcopy(model)
    batches = two_batches()
    lr, max_norm = 0.5, 0.25
    expected, norms = reference_loop(reference, batches, steps=3, lr=lr, max_norm=max_norm)
    assert min(norms) > 2 * max_norm, f"the check needs clipping to act at every step; gradient norms {norms}"

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    got = impl.train_sft(model, batches, steps=3, max_grad_norm=max_norm, optimizer=optimizer)
    assert len(got) == 3, f"expected one loss per step (3), got {len(got)}"
    for step, (a, b) in enumerate(zip(got, expected), 1):
        assert abs(a - b) < 1e-5 * max(1.0, abs(b)), (
            f"step {step} (batch {(step - 1) % 2}): the reference loop's loss is {b:.6f}, the loop gave {a:.6f} "
            "(check the batch order, zero_grad, and clipping before the step)")
    worst = max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters()))
    assert worst < 1e-5, (f"after 3 steps the weights differ from the reference loop by {worst:.2e} "
                          "(gradients must be cleared every step and clipped to a global norm before the update)")
