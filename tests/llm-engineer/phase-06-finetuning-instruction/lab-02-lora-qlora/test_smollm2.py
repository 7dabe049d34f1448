"""The real path end to end: SmolLM2-135M-Instruct loaded in NF4 with LoRA on all seven projections, two
training steps on three short pairs from lab 01's data."""
import json

import pytest
import torch

from labkit import ROOT, assets

DATA = ROOT / "llm-engineer/phase-06-finetuning-instruction/lab-01-supervised-finetuning/data/train.jsonl"


@pytest.mark.slow
@pytest.mark.task("qlora")
def test_smollm2_qlora_end_to_end(impl):
    from transformers import AutoTokenizer

    path = assets.smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = impl.load_qlora(path, r=8, alpha=16)
    config = model.config
    kv = config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    per_layer = 8 * (2 * (config.hidden_size * 2) + 2 * (config.hidden_size + kv)
                     + 3 * (config.hidden_size + config.intermediate_size))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == config.num_hidden_layers * per_layer, \
        f"expected {config.num_hidden_layers * per_layer:,} trainable parameters, got {trainable:,}"
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:3]]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": r["instruction"]},
                                            {"role": "assistant", "content": r["response"]}], tokenize=False)
             for r in rows]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"QLoRA steps on SmolLM2 should lower the loss on their batch: {losses}"
