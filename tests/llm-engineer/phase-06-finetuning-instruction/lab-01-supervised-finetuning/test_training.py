"""The SFT loss and loop, checked against the model's own `labels=` loss, a uniform-logit hand case, and trl's
SFTTrainer (its masking, its loss on the same batch, and its first training steps)."""
import copy
import math

import pytest
import torch

from labkit.checks import assert_close_to_reference, assert_overfits_batch


class Uniform(torch.nn.Module):
    """A 'model' whose logits are all zero: every token has probability 1/V, so the loss is exactly ln V."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **_):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + 0 * self.dummy})()


@pytest.mark.task("sft-loss")
def test_uniform_logits_give_ln_v(impl):
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([[-100, -100, 3, 4]]),
             "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    loss = impl.sft_loss(Uniform(50), batch).item()
    assert abs(loss - math.log(50)) < 1e-6, f"expected ln 50 = {math.log(50):.6f}, got {loss:.6f}"
    total = impl.sft_loss(Uniform(50), batch, reduction="sum").item()
    assert abs(total - 2 * math.log(50)) < 1e-5, f"expected 2 ln 50 (two labelled tokens), got {total:.6f}"


@pytest.mark.task("sft-loss")
def test_loss_equals_the_models_own(impl, tokenizer, pairs, tiny_llama):
    examples = [impl.tokenize_example(tokenizer, r["instruction"], r["response"]) for r in pairs[:4]]
    batch = impl.collate(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        reference = tiny_llama(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               labels=batch["labels"]).loss
        ours = impl.sft_loss(tiny_llama, batch)
    assert_close_to_reference(ours, reference, atol=1e-5, what="SFT loss vs LlamaForCausalLM(labels=...).loss")


@pytest.mark.task("sft-loss")
def test_packed_row_loss_equals_its_examples_alone(impl, llama_factory):
    """Two examples packed in one row (positions restart, block mask): the summed loss equals the model's own loss
    on each example run alone, times its number of scored tokens."""
    model = llama_factory(64)
    first, second = [5, 9, 13, 17, 21], [30, 31, 40, 41]
    first_labels, second_labels = [-100, -100, 13, 17, 21], [-100, -100, 40, 41]  # 3 and 2 scored tokens
    batch = {"input_ids": torch.tensor([first + second]), "labels": torch.tensor([first_labels + second_labels]),
             "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]]),
             "attention_mask": torch.ones(1, 9, dtype=torch.long)}
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ids]), labels=torch.tensor([labs])).loss.item()
                 for ids, labs in ((first, first_labels), (second, second_labels))]
        total = impl.sft_loss(model, batch, reduction="sum").item()
        mean = impl.sft_loss(model, batch).item()
    expected = 3 * alone[0] + 2 * alone[1]
    assert abs(total - expected) < 1e-4, (
        f"summed loss of the packed row: expected {expected:.5f} (the examples alone), got {total:.5f}; the forward "
        "must get the packed row's block mask and restarting positions")
    assert abs(mean - expected / 5) < 1e-5, f"mean over the 5 scored tokens: expected {expected / 5:.5f}, got {mean:.5f}"


# ------------------------------------------------------------------ trl

@pytest.fixture(scope="module")
def trl_setup(tokenizer, pairs, tmp_path_factory, llama_factory):
    """An SFTTrainer over a conversational prompt-completion dataset (trl then masks the prompt itself)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": [{"role": "user", "content": r["instruction"]}],
             "completion": [{"role": "assistant", "content": r["response"]}]} for r in pairs[:4]]
    model = llama_factory(len(tokenizer))
    initial = copy.deepcopy(model)
    config = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("sft")),
        bf16=False,                     # trl defaults to bf16=True, which refuses to start on a CPU
        gradient_checkpointing=False,   # trl turns it on by default; pointless for a tiny model
        report_to="none", per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", max_grad_norm=1.0,
        dataset_num_proc=None, seed=0, use_cpu=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))  # all four examples: one batch
    with torch.no_grad():  # trl's loss goes through its own (patched) forward of trainer.model
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()
    return {"trainer": trainer, "initial": initial, "rows": pairs[:4], "batch": batch, "trl_loss": trl_loss}


@pytest.mark.task("mask-labels")
def test_labels_match_trl_completion_mask(impl, tokenizer, trl_setup):
    trainer, rows = trl_setup["trainer"], trl_setup["rows"]
    for row, tokenized in zip(rows, trainer.train_dataset):
        ours = impl.tokenize_example(tokenizer, row["instruction"], row["response"])
        theirs = tokenized["labels"]
        assert ours["input_ids"] == tokenized["input_ids"], f"{row['instruction']!r}: input_ids differ from trl's"
        # trl's prompt-completion mask also trains the newline after <|im_end|>; this lab masks it
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        assert theirs[-1] == newline[0], "trl's last label should be the template's trailing newline"
        assert ours["labels"] == theirs[:-1] + [-100], (
            f"{row['instruction']!r}: expected trl's labels with the final newline masked, got a different mask "
            f"({sum(t != -100 for t in ours['labels'])} vs {sum(t != -100 for t in theirs) - 1} loss tokens)")


@pytest.mark.task("sft-loss")
def test_loss_equals_trl_on_the_same_batch(impl, trl_setup):
    with torch.no_grad():
        ours = impl.sft_loss(trl_setup["initial"], trl_setup["batch"]).item()
    assert_close_to_reference(ours, trl_setup["trl_loss"], atol=1e-5, what="SFT loss vs trl SFTTrainer.compute_loss")


@pytest.mark.task("train-loop")
def test_loop_matches_sfttrainer_steps(impl, trl_setup):
    trainer, initial = trl_setup["trainer"], trl_setup["initial"]
    batch = {k: v.clone() for k, v in trl_setup["batch"].items()}
    trainer.train()  # 3 steps, each on the same four examples (row order may differ; the loss does not)
    theirs = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model = copy.deepcopy(initial)
    ours = impl.train_sft(model, [batch], steps=3, lr=1e-3, max_grad_norm=1.0)
    assert len(ours) == 3, f"expected one loss per step (3), got {len(ours)}"
    for step, (a, b) in enumerate(zip(ours, theirs), 1):
        assert abs(a - b) < 2e-3 * max(1.0, abs(b)), f"step {step}: SFTTrainer logged {b:.4f}, the loop gave {a:.4f}"


@pytest.mark.task("train-loop")
def test_loop_overfits_one_batch(impl, llama_factory):
    model = llama_factory(64)  # a 64-token vocabulary keeps the steps cheap
    ids = torch.randint(3, 64, (2, 24))
    labels = ids.clone()
    labels[:, :8] = -100  # an 8-token "prompt" that carries no loss
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    assert_overfits_batch(lambda: impl.train_sft(model, [batch], 1, optimizer=optimizer)[0], steps=30, target=1.0)


@pytest.mark.task("train-loop")
def test_only_trainable_parameters_move(impl, tokenizer, pairs, tiny_llama):
    tiny_llama.model.embed_tokens.weight.requires_grad_(False)
    frozen = tiny_llama.model.embed_tokens.weight.clone()
    before = tiny_llama.model.layers[0].mlp.up_proj.weight.clone()
    batch = impl.collate([impl.tokenize_example(tokenizer, "Hi", "Hello.")], tokenizer.pad_token_id)
    impl.train_sft(tiny_llama, [batch], steps=2, lr=1e-2)
    assert torch.equal(frozen, tiny_llama.model.embed_tokens.weight), "a frozen parameter changed"
    assert not torch.equal(before, tiny_llama.model.layers[0].mlp.up_proj.weight), "a trainable weight did not move"
