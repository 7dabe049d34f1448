"""Packing: several examples in one row must behave exactly as if each were alone (no attention across
examples), checked on a tiny random Llama against the unpacked forward passes."""
import torch

import pytest

from labkit.checks import assert_close_to_reference


def brute_force_mask(position_ids):
    """allowed[b, i, j] by explicit loops: same example (a new one starts at each position 0) and j <= i."""
    batch, length = position_ids.shape
    allowed = torch.zeros(batch, length, length, dtype=torch.bool)
    for b in range(batch):
        example, ids = -1, []
        for t in range(length):
            example += int(position_ids[b, t] == 0)
            ids.append(example)
        for i in range(length):
            for j in range(i + 1):
                allowed[b, i, j] = ids[i] == ids[j]
    return allowed


def examples_for(tokenizer, impl, pairs, n=3):
    return [impl.tokenize_example(tokenizer, r["instruction"], r["response"]) for r in pairs[:n]]


@pytest.mark.task("pack")
def test_pack_keeps_every_token_in_order(impl, tokenizer, pairs):
    examples = examples_for(tokenizer, impl, pairs, 7)
    rows = impl.pack_examples(examples, max_length=128)
    lengths = [len(e["input_ids"]) for e in examples]
    assert all(len(r["input_ids"]) <= 128 for r in rows), f"rows longer than 128: {[len(r['input_ids']) for r in rows]}"
    flat = [t for r in rows for t in r["input_ids"]]
    assert flat == [t for e in examples for t in e["input_ids"]], "packed tokens are not the examples in order"
    starts = [t for r in rows for t, p in enumerate(r["position_ids"]) if p == 0]
    assert len(starts) == len(examples), f"expected {len(examples)} position resets, got {len(starts)}"
    positions = [p for r in rows for p in r["position_ids"]]
    assert positions == [p for n in lengths for p in range(n)], "positions should count 0, 1, ... inside each example"
    expected_rows, used = 0, 128
    for n in lengths:  # greedy, in order: open a new row when the next example does not fit
        if used + n > 128:
            expected_rows, used = expected_rows + 1, 0
        used += n
    assert len(rows) == expected_rows, (
        f"greedy packing of lengths {lengths} into 128 should give {expected_rows} rows, got {len(rows)}")


@pytest.mark.task("pack")
def test_pack_masks_the_first_label_of_each_example(impl):
    examples = [{"input_ids": [3, 4, 5], "labels": [3, 4, 5]}, {"input_ids": [6, 7], "labels": [6, 7]}]
    rows = impl.pack_examples(examples, max_length=10)
    assert rows == [{"input_ids": [3, 4, 5, 6, 7], "labels": [-100, 4, 5, -100, 7], "position_ids": [0, 1, 2, 0, 1]}], \
        f"expected one row with labels [-100, 4, 5, -100, 7] and positions [0, 1, 2, 0, 1], got {rows}"


@pytest.mark.task("pack")
def test_pack_exact_fit_shares_a_row(impl):
    """Lengths 3 + 2 fill a 5-token row exactly; a third example opens a new row; a 7-token one is cut to 5."""
    examples = [{"input_ids": [3, 4, 5], "labels": [3, 4, 5]}, {"input_ids": [6, 7], "labels": [6, 7]},
                {"input_ids": [8], "labels": [8]}, {"input_ids": [9] * 7, "labels": [9] * 7}]
    rows = impl.pack_examples(examples, max_length=5)
    expected = [{"input_ids": [3, 4, 5, 6, 7], "labels": [-100, 4, 5, -100, 7], "position_ids": [0, 1, 2, 0, 1]},
                {"input_ids": [8], "labels": [-100], "position_ids": [0]},
                {"input_ids": [9] * 5, "labels": [-100, 9, 9, 9, 9], "position_ids": [0, 1, 2, 3, 4]}]
    assert rows == expected, f"expected rows {expected}, got {rows}"


@pytest.mark.task("pack")
def test_mask_is_block_diagonal_causal(impl):
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 0, 1, 2, 3, 0, 0]])
    mask = impl.packed_attention_mask(position_ids)
    assert mask.shape == (2, 1, 8, 8), f"expected shape (2, 1, 8, 8), got {tuple(mask.shape)}"
    allowed = mask[:, 0] == 0
    expected = brute_force_mask(position_ids)
    assert torch.equal(allowed, expected), f"allowed pairs differ at {(allowed != expected).nonzero().tolist()[:5]}"
    assert (mask[:, 0][~expected] <= -1e30).all(), "blocked pairs should hold a very large negative number"


@pytest.mark.task("pack")
def test_packed_logits_and_loss_equal_unpacked(impl, tokenizer, pairs, tiny_llama):
    examples = examples_for(tokenizer, impl, pairs, 3)
    rows = impl.pack_examples(examples, max_length=512)
    assert len(rows) == 1, "the three examples should fit in one 512-token row"
    batch = impl.collate(rows, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        packed = tiny_llama(**impl.model_inputs(batch, "cpu")).logits[0]
        offset = 0
        for example in examples:
            n = len(example["input_ids"])
            alone = tiny_llama(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            assert_close_to_reference(packed[offset:offset + n], alone, atol=1e-4, rtol=1e-4,
                                      what=f"logits of the example at offset {offset} in the packed row")
            offset += n
    total_packed = impl.sft_loss(tiny_llama, batch, reduction="sum").item()
    total_alone = sum(impl.sft_loss(tiny_llama, impl.collate([e], tokenizer.pad_token_id), reduction="sum").item()
                      for e in examples)
    assert abs(total_packed - total_alone) < 1e-3 * total_alone, (
        f"summed loss of the packed row {total_packed:.5f} should equal the sum over the examples alone "
        f"{total_alone:.5f}")


@pytest.mark.task("pack")
def test_no_leak_across_examples(impl, tiny_llama):
    """Changing the first example's tokens must not move the second example's logits."""
    first = {"input_ids": [11, 12, 13, 14], "labels": [11, 12, 13, 14]}
    changed = {"input_ids": [21, 22, 23, 24], "labels": [21, 22, 23, 24]}
    second = {"input_ids": [31, 32, 33], "labels": [31, 32, 33]}
    outs = []
    for head in (first, changed):
        batch = impl.collate(impl.pack_examples([head, second], 16), pad_token_id=0)
        with torch.no_grad():
            outs.append(tiny_llama(**impl.model_inputs(batch, "cpu")).logits[0, 4:7])
    gap = (outs[0] - outs[1]).abs().max().item()
    assert gap < 1e-5, f"the second example's logits moved by {gap:.2e} when the first example changed"
