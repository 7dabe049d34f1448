"""Atomic adapter saves, checked with stand-in models (seconds, no weights): the adapter is staged in a folder beside
the target (os.replace renames only within one filesystem) and renamed into place; a save that fails half way leaves
the previous adapter untouched and no staging folder behind."""
from pathlib import Path

import pytest


class StandIn:
    """Writes an adapter the way peft's save_pretrained does (it creates the folder), or fails after one file."""

    def __init__(self, version: str, fail: bool = False):
        self.version, self.fail, self.saved_into = version, fail, None

    def save_pretrained(self, folder):
        self.saved_into = Path(folder)
        self.saved_into.mkdir(parents=True, exist_ok=True)
        (self.saved_into / "adapter_config.json").write_text(self.version)
        if self.fail:
            raise OSError("No space left on device (simulated)")
        (self.saved_into / "adapter_model.safetensors").write_bytes(b"weights " + self.version.encode())


@pytest.mark.task("adapter-io")
def test_save_adapter_is_atomic(impl, tmp_path):
    target = tmp_path / "runs" / "adapter"
    first = StandIn("v1")
    assert impl.save_adapter(first, target) == target
    assert first.saved_into != target and first.saved_into.parent == target.parent, (
        f"the adapter should be written into a staging folder beside the target, then renamed; it was written "
        f"into {first.saved_into}")
    assert (target / "adapter_config.json").read_text() == "v1"

    impl.save_adapter(StandIn("v2"), target)  # replacing an existing, non-empty adapter folder
    assert (target / "adapter_config.json").read_text() == "v2", "a second save should replace the first"

    crashing = StandIn("v3", fail=True)
    with pytest.raises(OSError, match="No space left"):
        impl.save_adapter(crashing, target)
    assert crashing.saved_into != target and crashing.saved_into.parent == target.parent, \
        f"even a failing save should only ever write into a staging folder beside the target: {crashing.saved_into}"
    assert (target / "adapter_config.json").read_text() == "v2" and \
        (target / "adapter_model.safetensors").read_bytes() == b"weights v2", \
        "a failed save must leave the previous adapter exactly as it was"
    left = sorted(p.name for p in target.parent.iterdir())
    assert left == ["adapter"], f"a failed save must clean up its staging folder; the folder holds {left}"


@pytest.mark.task("adapter-io")
def test_load_and_merge_folds_the_adapter_in(impl, tiny_folder, tmp_path):
    """An adapter written by peft itself (random B, so it changes the logits) comes back folded into a plain model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    model.eval().save_pretrained(tmp_path / "adapter")
    merged = impl.load_and_merge(tiny_folder, tmp_path / "adapter")
    leftovers = [n for n, _ in merged.named_modules() if "lora" in n]
    assert not leftovers, f"merge_and_unload should leave a plain model without adapter modules: {leftovers[:2]}"
    ids = torch.randint(3, 128, (2, 8), generator=generator)
    with torch.no_grad():
        want, got = model(input_ids=ids).logits, merged(input_ids=ids).logits
        with model.disable_adapter():
            bare = model(input_ids=ids).logits
    assert (want - bare).abs().max() > 1e-3, "fixture check: the adapter should change the logits"
    assert (got - want).abs().max() < 1e-4, \
        f"the merged model should equal base + adapter; max logit gap {(got - want).abs().max():.2e}"
