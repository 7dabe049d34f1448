"""LoRA from scratch, then QLoRA with the real stack (bitsandbytes NF4 + peft), each checked exactly.

What this lab teaches:
- LoRA: freeze W and learn a low-rank update, y = W x + (alpha / r) * B (A x), with A (r x d_in) random and
  B (d_out x r) zero, so the adapted model starts out identical to the base; `merge` folds (alpha / r) * B A into
  W for inference at zero extra cost;
- the parameter budget: r * (d_in + d_out) per adapted matrix instead of d_in * d_out (41,943,040 for
  Llama-3-8B at r = 16 on all seven projections, 0.52 % of its 8.03 B weights);
- parity with peft: the same A and B copied into a peft model give the same outputs and the same trainable count;
- NF4 from scratch: blockwise absmax scaling to [-1, 1], then the nearest of 16 normal-quantile levels; checked
  against bitsandbytes, with the round-trip error and the bytes saved (double quantisation included) measured;
- QLoRA: a 4-bit base loaded with `BitsAndBytesConfig`, `prepare_model_for_kbit_training`, LoRA adapters in
  higher precision on top, a training step whose loss falls; adapters saved, reloaded and merged.

Shapes: x (..., d_in); W (d_out, d_in); A (r, d_in); B (d_out, r). peft stores A and B as the weights of two
Linear layers, Linear(d_in, r) and Linear(r, d_out), which have exactly these shapes.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import labkit
from labkit import assets

LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The 16 NF4 levels (QLoRA paper, appendix E; bitsandbytes' table): quantiles of N(0, 1) rescaled to [-1, 1],
# with an exact 0 and 8 positive / 7 negative values.
NF4_LEVELS = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
              -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
              0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0)


# ------------------------------------------------------------------ LoRA from scratch

class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: y = base(x) + (alpha / r) * B (A dropout(x)).

    A starts random (Kaiming-uniform, as nn.Linear and peft initialise it) and B at zero, so at init the update is
    exactly zero and the layer computes what the base layer computes.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if r < 1:
            raise ValueError(f"the rank r must be at least 1, got {r}")
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        # BEGIN SOLUTION [lora-linear] Freeze the base; A is (r, d_in) with kaiming_uniform_(a=sqrt(5)); B is zeros (d_out, r); both nn.Parameter in the base's dtype.
        for p in self.base.parameters():
            p.requires_grad_(False)
        weight = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=weight.dtype, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION [lora-linear] Base output plus scaling * (x A^T) B^T; once merged the base already holds the update.
        out = self.base(x)                                               # (..., d_out)
        if self.merged:
            return out
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T         # (..., d_in) -> (..., r) -> (..., d_out)
        return out + self.scaling * update
        # END SOLUTION

    def delta_weight(self) -> torch.Tensor:
        """The update as a full matrix, (alpha / r) * B A, shape (d_out, d_in)."""
        return self.scaling * self.lora_B @ self.lora_A

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: W <- W + (alpha / r) B A. Forward is then one matmul."""
        # BEGIN SOLUTION [merge] Add delta_weight() to base.weight in place (no grad) once; set merged.
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True
        # END SOLUTION

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (subtract the same update), so training can continue."""
        # BEGIN SOLUTION [merge] Subtract delta_weight() from base.weight if merged; clear the flag.
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False
        # END SOLUTION


def add_lora(model: nn.Module, target_modules=LLAMA_PROJECTIONS, r: int = 8, alpha: float = 16,
             dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of `model`, then replace each nn.Linear whose attribute name is in `target_modules`
    by a LoRALinear around it. Returns the dotted names of the replaced modules, in model order."""
    targets = set(target_modules)
    if not targets:
        raise ValueError("target_modules is empty: name the linear layers to adapt, e.g. ('q_proj', 'v_proj')")
    # BEGIN SOLUTION [add-lora] requires_grad_(False) on all parameters; walk named_modules, setattr(parent, child_name, LoRALinear(...)).
    for p in model.parameters():
        p.requires_grad_(False)
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    # END SOLUTION
    if not found:
        raise ValueError(f"no nn.Linear named any of {sorted(targets)} in this model")
    return [name for name, _ in found]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a shared (tied) tensor counts once. A bitsandbytes 4-bit weight holds
    two values per stored byte, so it counts as 2 * its stored elements (as peft counts it)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def merge_all(model: nn.Module) -> None:
    """Merge every LoRALinear of the model (see LoRALinear.merge)."""
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.merge()


# ------------------------------------------------------------------ the parameter budget

def llama_lora_parameters(hidden: int, kv_dim: int, intermediate: int, layers: int, r: int,
                          targets=LLAMA_PROJECTIONS) -> int:
    """Trainable LoRA parameters for a Llama-shaped decoder: r * (d_in + d_out) per adapted matrix, per layer.

    Shapes (d_in -> d_out): q, o: hidden -> hidden; k, v: hidden -> kv_dim (kv heads x head dim, smaller under
    grouped-query attention); gate, up: hidden -> intermediate; down: intermediate -> hidden.
    """
    unknown = set(targets) - set(LLAMA_PROJECTIONS)
    if unknown:
        raise ValueError(f"unknown Llama projections {sorted(unknown)}; choose from {LLAMA_PROJECTIONS}")
    # BEGIN SOLUTION [param-count] A table name -> (d_in, d_out); sum r * (d_in + d_out) over targets; times layers.
    shapes = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv_dim), "v_proj": (hidden, kv_dim),
              "o_proj": (hidden, hidden), "gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate),
              "down_proj": (intermediate, hidden)}
    return layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)
    # END SOLUTION


# ------------------------------------------------------------------ parity with peft

def to_peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our adapters under the names peft gives them, ready for `set_peft_model_state_dict`.

    Ours: `<module path>.lora_A` (r, d_in) and `.lora_B` (d_out, r). peft wraps the model twice (PeftModel ->
    LoraModel -> the original), so its saved names are `base_model.model.<module path>.lora_A.weight` and
    `.lora_B.weight` (set_peft_model_state_dict inserts the adapter name), with the same shapes.
    """
    # BEGIN SOLUTION [peft-parity] For each LoRALinear at path p: {"base_model.model." + p + ".lora_A.weight": A, ... ".lora_B.weight": B}, detached copies.
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            out[f"base_model.model.{name}.lora_A.weight"] = module.lora_A.detach().clone()
            out[f"base_model.model.{name}.lora_B.weight"] = module.lora_B.detach().clone()
    return out
    # END SOLUTION


# ------------------------------------------------------------------ NF4

def nf4_quantize(weight: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4 by hand: split the flattened weight into blocks of `blocksize`, scale each block by its absolute
    maximum (absmax) into [-1, 1], and store the index (0..15) of the nearest NF4 level.

    Returns (codes, absmax): codes (numel,) uint8 with values 0..15 (bitsandbytes packs two per byte),
    absmax (numel / blocksize,) float32. The element count must be a multiple of `blocksize`.
    """
    if weight.numel() % blocksize:
        raise ValueError(f"weight has {weight.numel()} elements, not a multiple of blocksize {blocksize}")
    # BEGIN SOLUTION [nf4] View as (blocks, blocksize); absmax per row; normalise; argmin |x - level| over the 16 levels.
    blocks = weight.detach().float().reshape(-1, blocksize)                   # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)                                          # (n_blocks,)
    normed = blocks / absmax.clamp(min=torch.finfo(torch.float32).tiny)[:, None]
    levels = torch.tensor(NF4_LEVELS, device=weight.device)
    codes = (normed[..., None] - levels).abs().argmin(dim=-1)                 # (n_blocks, blocksize)
    return codes.reshape(-1).to(torch.uint8), absmax
    # END SOLUTION


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape, blocksize: int = 64) -> torch.Tensor:
    """Inverse of `nf4_quantize`: level[code] * absmax of its block, reshaped to `shape`."""
    # BEGIN SOLUTION [nf4] Look the codes up in the level table, multiply each block by its absmax, reshape.
    levels = torch.tensor(NF4_LEVELS, device=codes.device)
    values = levels[codes.long()].reshape(-1, blocksize) * absmax[:, None]
    return values.reshape(shape)
    # END SOLUTION


def nf4_roundtrip_error(weight: torch.Tensor, double_quant: bool = True, blocksize: int = 64) -> dict:
    """Quantise with bitsandbytes (`quantize_4bit`, nf4) and dequantise back; the error and the storage it took.

    Bits per weight: 4 for the code + the block scales: 32 / blocksize with float32 absmax, or with double
    quantisation 8 / blocksize + 32 / (blocksize * 256) (absmax themselves stored in 8 bits, in blocks of 256).
    """
    import bitsandbytes.functional as bnbf

    packed, state = bnbf.quantize_4bit(weight, blocksize=blocksize, quant_type="nf4",
                                       compress_statistics=double_quant)
    restored = bnbf.dequantize_4bit(packed, state).to(weight.dtype)
    diff = (restored.float() - weight.float())
    state_bytes = quant_state_bytes(state)
    return {
        "mean_abs_error": diff.abs().mean().item(),
        "relative_rms_error": (diff.norm() / weight.float().norm()).item(),
        "bits_per_weight": 8 * (packed.numel() * packed.element_size() + state_bytes) / weight.numel(),
    }


# ------------------------------------------------------------------ memory

def quant_state_bytes(state) -> int:
    """Bytes of a bitsandbytes QuantState's tensors: absmax and the code table, plus, with double
    quantisation, the second-level absmax and code table (the float offset is one scalar, left out)."""
    # BEGIN SOLUTION [memory] absmax + code; if state.nested add state.state2.absmax + state.state2.code (numel * element_size).
    tensors = [state.absmax, state.code]
    if getattr(state, "nested", False):
        tensors += [state.state2.absmax, state.state2.code]
    return sum(t.numel() * t.element_size() for t in tensors)
    # END SOLUTION


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters as stored (tied tensors once; a 4-bit weight as its packed bytes)
    plus the quantisation state of every 4-bit weight. Buffers such as rotary tables are not counted."""
    # BEGIN SOLUTION [memory] Unique parameters: numel * element_size, plus quant_state_bytes(p.quant_state) where a parameter has one.
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size()
        if getattr(p, "quant_state", None) is not None:
            total += quant_state_bytes(p.quant_state)
    return total
    # END SOLUTION


# ------------------------------------------------------------------ QLoRA with bitsandbytes + peft

def bnb_config(double_quant: bool = True, compute_dtype: torch.dtype = torch.float32):
    """4-bit NF4 loading: weights stored in 4 bits, de-quantised on the fly to `compute_dtype` for each matmul
    (bfloat16 on a GPU, float32 on a CPU)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_compute_dtype=compute_dtype)


def lora_config(r: int = 16, alpha: float = 32, dropout: float = 0.0, targets=LLAMA_PROJECTIONS):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none",
                      task_type="CAUSAL_LM")


def load_qlora(path, r: int = 16, alpha: float = 32, targets=LLAMA_PROJECTIONS, double_quant: bool = True,
               compute_dtype: torch.dtype = torch.float32, device_map: str = "cpu",
               gradient_checkpointing: bool = False):
    """A causal LM from a local folder (or Hub id), its linear layers in NF4, with trainable LoRA adapters.

    Steps: from_pretrained with the 4-bit config -> prepare_model_for_kbit_training (freezes the base, keeps
    norms and embeddings in float32, enables input gradients so checkpointing works) -> get_peft_model.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    # BEGIN SOLUTION [qlora] from_pretrained(path, quantization_config=bnb_config(...), device_map=...), then prepare_model_for_kbit_training, then get_peft_model with lora_config.
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb_config(double_quant, compute_dtype),
                                                 device_map=device_map, dtype=compute_dtype)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return get_peft_model(model, lora_config(r, alpha, 0.0, targets))
    # END SOLUTION


def save_adapter(peft_model, folder: Path | str) -> Path:
    """Write only the adapter (adapter_config.json + adapter_model.safetensors) to `folder`, atomically: into a
    temporary sibling folder first, then renamed, so a crash never leaves a half-written adapter."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # BEGIN SOLUTION [adapter-io] mkdtemp next to the target, save_pretrained into it, remove an old target, os.replace.
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        peft_model.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
    # END SOLUTION


def load_and_merge(base_path, adapter_folder, dtype: torch.dtype = torch.float32):
    """A plain model with the adapter folded into its weights: load the full-precision base, attach the saved
    adapter with PeftModel.from_pretrained, merge_and_unload. (Merge into a bf16/fp32 base, never into the
    4-bit one: rounding the merged weights back to NF4 would throw most of the update away.)"""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # BEGIN SOLUTION [adapter-io] AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype), PeftModel.from_pretrained(base, adapter_folder), merge_and_unload().
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_folder)).merge_and_unload().eval()
    # END SOLUTION


def gpu_7b_settings() -> dict:
    """Settings for QLoRA on a 7-8B model on one 24-80 GB GPU (what `--model <7B> ` uses on CUDA)."""
    return {
        "bnb": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.bfloat16),
        "lora": dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(LLAMA_PROJECTIONS)),
        "train": dict(per_device_train_batch_size=2, gradient_accumulation_steps=8, learning_rate=2e-4,
                      lr_scheduler_type="cosine", warmup_ratio=0.03, bf16=True, optim="paged_adamw_8bit",
                      gradient_checkpointing=True, max_length=1024),
    }


# ------------------------------------------------------------------ demo

def main(argv=None):
    parser = argparse.ArgumentParser(description="LoRA / QLoRA on SmolLM2-135M-Instruct, with NF4 figures")
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: offline SmolLM2-135M)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--examples", type=int, default=16, help="training pairs from lab 01's data")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--qlora", action="store_true", help="train on a 4-bit base (default on CUDA)")
    args = parser.parse_args(argv)

    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = labkit.reuse("llm-engineer/phase-06-finetuning-instruction/lab-01-supervised-finetuning")
    labkit.seed_everything(0)
    device = labkit.pick_device()
    cuda = device.type == "cuda"
    started = time.perf_counter()
    path = args.model or assets.smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    dtype = torch.bfloat16 if cuda else torch.float32

    # 1. The budget by formula, for the model here and for Llama-3-8B.
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    cfg = base.config
    kv_dim = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    formula = llama_lora_parameters(cfg.hidden_size, kv_dim, cfg.intermediate_size, cfg.num_hidden_layers, args.rank)
    llama3 = llama_lora_parameters(4096, 1024, 14336, 32, 16)
    print(f"LoRA r={args.rank} on {', '.join(LLAMA_PROJECTIONS)}")
    print(f"  formula r*(d_in+d_out) x layers: {formula:,} here; Llama-3-8B at r=16: {llama3:,} "
          f"({100 * llama3 / 8_030_261_248:.2f}% of 8,030,261,248)")

    # 2. NF4 figures on the real weights.
    weight = base.model.layers[0].self_attn.q_proj.weight.detach().float().cpu()
    for dq in (False, True):
        stats = nf4_roundtrip_error(weight, double_quant=dq)
        print(f"  NF4 round trip of layers.0.q_proj ({tuple(weight.shape)}), double quant {dq!s:5}: mean |err| "
              f"{stats['mean_abs_error']:.2e}, relative RMS {stats['relative_rms_error']:.3f}, "
              f"{stats['bits_per_weight']:.3f} bits/weight")
    full_bytes = parameter_bytes(base)
    quantized = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb_config(True, dtype),
                                                     device_map=str(device) if not cuda else {"": 0}, dtype=dtype)
    q_bytes = parameter_bytes(quantized)
    print(f"  parameters + quant state: {full_bytes / 2**20:.1f} MiB in {str(dtype).split('.')[-1]} -> "
          f"{q_bytes / 2**20:.1f} MiB in NF4 ({full_bytes / q_bytes:.2f}x smaller; embeddings stay unquantised)")
    del quantized

    # 3. A short LoRA (or QLoRA) fine-tune on lab 01's instruction pairs.
    model = load_qlora(path, args.rank, args.alpha, compute_dtype=dtype, device_map={"": 0} if cuda else "cpu") \
        if (args.qlora or cuda) else get_peft_model(base, lora_config(args.rank, args.alpha)).to(device)
    trainable, total = count_parameters(model)
    print(f"  trainable: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%); formula agrees: "
          f"{trainable == formula}")
    rows = sft.load_pairs(sft.DATA / "train.jsonl")[:args.examples]
    held = sft.load_pairs(sft.DATA / "heldout.jsonl")
    encode = lambda r: sft.tokenize_example(tokenizer, r["instruction"], r["response"])  # noqa: E731
    train_batches = sft.batched([encode(r) for r in rows], 8, tokenizer.pad_token_id)
    held_batches = sft.batched([encode(r) for r in held], 8, tokenizer.pad_token_id)
    before = sft.evaluate_loss(model, held_batches)
    losses = sft.train_sft(model, train_batches, args.steps, lr=args.lr, progress=True)
    after = sft.evaluate_loss(model, held_batches)
    print(f"\ntrain loss {losses[0]:.3f} -> {losses[-1]:.3f} in {args.steps} steps; held-out loss per answer token "
          f"{before:.3f} -> {after:.3f}")

    out = labkit.output_dir(__file__)
    folder = save_adapter(model, out / "adapter")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"adapter saved to {folder} ({size / 2**20:.1f} MiB; the base model is not copied)")
    if not (args.qlora or cuda):
        merged = load_and_merge(path, folder, dtype)
        prompt = tokenizer(sft.render_chat(tokenizer, held[0]["instruction"]), return_tensors="pt",
                           add_special_tokens=False).to(device)
        with torch.no_grad():
            gap = (merged.to(device)(**prompt).logits - model(**prompt).logits).abs().max().item()
        print(f"merged model vs base + adapter: max logit difference {gap:.1e}")
        print(f"Q: {held[0]['instruction']}\n  merged model: {sft.generate_reply(merged, tokenizer, held[0]['instruction'])!r}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    labkit.run(main)
