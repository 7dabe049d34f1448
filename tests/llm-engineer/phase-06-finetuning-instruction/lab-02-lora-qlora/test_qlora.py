"""QLoRA with the real stack: a tiny Llama loaded in NF4 from a local folder, LoRA from peft, loss that falls, and
adapters saved, reloaded and merged. The CUDA path and the 7B settings are checked where a GPU is present."""
import json

import pytest
import torch

from labkit.checks import assert_close_to_reference

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train(model, batch, steps, lr=1e-2):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained_qlora(impl, tiny_folder, batch):
    model = impl.load_qlora(tiny_folder, r=4, alpha=8)
    losses = train(model, batch, steps=6)
    model.eval()
    return model, losses


@pytest.mark.task("qlora")
def test_qlora_model_is_4bit_with_adapters(impl, trained_qlora):
    import bitsandbytes as bnb

    model, _ = trained_qlora
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit), \
        f"the base projection should be a bitsandbytes Linear4bit, got {type(q_proj.base_layer).__name__}"
    state = q_proj.base_layer.weight.quant_state
    assert state.quant_type == "nf4" and state.nested, \
        f"expected NF4 with double quantisation, got {state.quant_type}, nested={state.nested}"
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in trainable), f"only adapters should train, found {[n for n in trainable if 'lora_' not in n][:3]}"
    expected = 2 * 4 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))  # 2 layers, r = 4, by hand
    assert sum(trainable.values()) == expected, f"expected {expected} trainable parameters, got {sum(trainable.values())}"


@pytest.mark.task("qlora")
def test_qlora_loss_falls(trained_qlora):
    _, losses = trained_qlora
    assert losses[-1] < losses[0] - 0.1, f"six AdamW steps on one batch should lower the loss: {losses}"


@pytest.mark.task("adapter-io")
def test_saved_adapter_reloads_onto_a_fresh_4bit_base(impl, trained_qlora, tiny_folder, batch, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, _ = trained_qlora
    folder = impl.save_adapter(model, tmp_path / "adapter")
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors"] or \
        files == ["adapter_config.json", "adapter_model.safetensors"], f"unexpected adapter files: {files}"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == sorted(PROJ), f"adapter config: {config}"
    assert not list(tmp_path.glob(".adapter-*")), "the temporary staging folder was left behind"
    base = AutoModelForCausalLM.from_pretrained(tiny_folder, quantization_config=impl.bnb_config(True),
                                                device_map="cpu")
    reloaded = PeftModel.from_pretrained(base, str(folder)).eval()
    with torch.no_grad():
        assert_close_to_reference(reloaded(input_ids=batch["input_ids"]).logits,
                                  model(input_ids=batch["input_ids"]).logits, atol=1e-5,
                                  what="logits of the reloaded adapter on a fresh 4-bit base")


@pytest.mark.task("adapter-io")
def test_merge_and_unload_equals_base_plus_adapter(impl, tiny_folder, batch, tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32)
    model = get_peft_model(base, impl.lora_config(r=4, alpha=8))
    train(model, batch, steps=3)  # B moves away from zero, so the merge has something to fold in
    model.eval()
    folder = impl.save_adapter(model, tmp_path / "adapter")
    folder = impl.save_adapter(model, folder)  # overwriting an existing adapter works too
    merged = impl.load_and_merge(tiny_folder, folder)
    assert not any("lora" in n for n, _ in merged.named_parameters()), "merge_and_unload should remove the adapters"
    with torch.no_grad():
        assert_close_to_reference(merged(input_ids=batch["input_ids"]).logits,
                                  model(input_ids=batch["input_ids"]).logits, atol=1e-4,
                                  what="merged model vs base + adapter")


@pytest.mark.gpu
@pytest.mark.task("nf4")
def test_nf4_cuda_matches_cpu_and_ours(impl):
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    weight = torch.randn(512, 512) * 0.02
    packed, state = bnbf.quantize_4bit(weight.cuda(), blocksize=64, quant_type="nf4", compress_statistics=False)
    cuda = bnbf.dequantize_4bit(packed, state).cpu()
    codes, absmax = impl.nf4_quantize(weight.cuda(), blocksize=64)
    ours = impl.nf4_dequantize(codes, absmax, weight.shape, blocksize=64).cpu()
    agree = torch.isclose(ours, cuda, atol=1e-6, rtol=1e-5).float().mean().item()
    assert agree > 0.999, f"CUDA NF4 and ours agree on {agree:.4%} of values"


@pytest.mark.gpu
@pytest.mark.task("qlora")
def test_qlora_step_on_cuda_bf16(impl, tiny_folder, batch):
    model = impl.load_qlora(tiny_folder, r=4, alpha=8, compute_dtype=torch.bfloat16, device_map={"": 0})
    cuda_batch = {k: v.cuda() for k, v in batch.items()}
    losses = train(model, cuda_batch, steps=6)
    assert losses[-1] < losses[0] - 0.1, f"the loss should fall on CUDA too: {losses}"
    settings = impl.gpu_7b_settings()
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

    BitsAndBytesConfig(**settings["bnb"])
    LoraConfig(task_type="CAUSAL_LM", **settings["lora"])
    SFTConfig(output_dir="/tmp/qlora-7b-settings", report_to="none", **settings["train"])
