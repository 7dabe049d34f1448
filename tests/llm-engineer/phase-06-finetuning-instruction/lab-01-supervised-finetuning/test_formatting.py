"""Chat template, label masking and padding, checked against hand-written ChatML, the tokenizer's own character
offsets, and trl's data collator."""
import pytest
import torch

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.mark.task("chat-template")
def test_render_matches_chatml_by_hand(impl, tokenizer):
    full = impl.render_chat(tokenizer, "Name a colour.", "Blue.")
    expected = SYSTEM + "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n"
    assert full == expected, f"full conversation: expected {expected!r}, got {full!r}"
    prompt = impl.render_chat(tokenizer, "Name a colour.")
    expected = SYSTEM + "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    assert prompt == expected, f"prompt for generation: expected {expected!r}, got {prompt!r}"


@pytest.mark.task("chat-template")
def test_render_keeps_a_given_system_prompt(impl, tokenizer):
    text = impl.render_chat(tokenizer, "Hi", "Hello.", system="Be brief.")
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\nHello.<|im_end|>\n")
    assert text == expected, f"expected {expected!r}, got {text!r}"


def labels_from_offsets(tokenizer, text, response):
    """Reference labels: a token carries loss when its characters lie inside the answer or the <|im_end|> that
    closes it (located in the rendered text), found with the tokenizer's offset mapping."""
    header = "<|im_start|>assistant\n"
    start = text.rindex(header) + len(header)
    assert text[start:].startswith(response)
    end = start + len(response) + len("<|im_end|>")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [tid if a >= start and b <= end else -100
              for tid, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"])]
    return encoded["input_ids"], labels


@pytest.mark.task("mask-labels")
def test_labels_equal_an_offset_based_construction(impl, tokenizer, pairs):
    for row in pairs[:24]:
        got = impl.tokenize_example(tokenizer, row["instruction"], row["response"])
        text = impl.render_chat(tokenizer, row["instruction"], row["response"])
        ids, labels = labels_from_offsets(tokenizer, text, row["response"])
        assert got["input_ids"] == ids, f"{row['instruction']!r}: input_ids differ from tokenizing the rendered text"
        assert got["labels"] == labels, (
            f"{row['instruction']!r}: expected loss on {[t for t in labels if t != -100]}, "
            f"got {[t for t in got['labels'] if t != -100]}")


@pytest.mark.task("mask-labels")
def test_only_answer_and_end_of_turn_carry_loss(impl, tokenizer):
    got = impl.tokenize_example(tokenizer, "What is 2 plus 2?", "2 plus 2 is 4.")
    kept = [t for t in got["labels"] if t != -100]
    decoded = tokenizer.decode(kept)
    assert decoded == "2 plus 2 is 4.<|im_end|>", f"expected the answer and <|im_end|> to carry loss, got {decoded!r}"
    masked = [t for t, lab in zip(got["input_ids"], got["labels"]) if lab == -100]
    assert tokenizer.decode(masked).endswith("<|im_start|>assistant\n\n"), (
        f"masked tokens should be the prompt, the assistant header and the trailing newline; "
        f"got {tokenizer.decode(masked)[-60:]!r}")
    assert got["labels"][-1] == -100, "the newline after <|im_end|> should not carry loss"


@pytest.mark.task("mask-labels")
def test_truncation(impl, tokenizer):
    full = impl.tokenize_example(tokenizer, "Say hi.", "Hi there, nice to meet you.")
    cut = impl.tokenize_example(tokenizer, "Say hi.", "Hi there, nice to meet you.", max_length=30)
    assert len(cut["input_ids"]) == len(cut["labels"]) == 30, (
        f"expected 30 tokens after truncation, got {len(cut['input_ids'])} ids / {len(cut['labels'])} labels")
    assert cut["input_ids"] == full["input_ids"][:30] and cut["labels"] == full["labels"][:30], \
        "truncation should keep the first max_length tokens and their labels"


@pytest.mark.task("collate")
def test_collate_matches_trl_collator(impl, tokenizer, pairs):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [impl.tokenize_example(tokenizer, r["instruction"], r["response"]) for r in pairs[:5]]
    ours = impl.collate(examples, pad_token_id=tokenizer.pad_token_id)
    theirs = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), (
            f"{key}: expected trl's padded tensor of shape {tuple(theirs[key].shape)}, got "
            f"{tuple(ours[key].shape)} with {int((ours[key] != theirs[key]).sum()) if ours[key].shape == theirs[key].shape else 'n/a'} differing entries")


@pytest.mark.task("collate")
def test_collate_pads_position_ids(impl):
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "position_ids": [0, 1, 0]},
            {"input_ids": [8], "labels": [8], "position_ids": [0]}]
    batch = impl.collate(rows, pad_token_id=0)
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 0]], \
        f"expected position_ids [[0, 1, 0], [0, 0, 0]], got {batch['position_ids'].tolist()}"
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]], \
        f"expected labels padded with -100, got {batch['labels'].tolist()}"
