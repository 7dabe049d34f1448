"""Shared pieces of this lab's tests: SmolLM2's real tokenizer (with its chat template), a tiny random Llama
with the same vocabulary, and a few instruction pairs from the lab's data."""
import json
from pathlib import Path

import pytest
import torch

from labkit import ROOT, assets

LAB = ROOT / "llm-engineer/phase-06-finetuning-instruction/lab-01-supervised-finetuning"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.smollm2_path())


@pytest.fixture(scope="module")
def pairs():
    lines = (LAB / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def make_tiny_llama(vocab_size: int, seed: int = 0):
    """A 2-layer Llama (hidden 64, GQA 4/2 heads) with random weights, in float32 and eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llama(tokenizer):
    return make_tiny_llama(len(tokenizer))


@pytest.fixture(scope="module")
def llama_factory():
    return make_tiny_llama
