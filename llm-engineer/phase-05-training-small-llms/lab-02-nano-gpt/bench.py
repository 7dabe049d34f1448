"""Training throughput of the lab's GPT, side by side with baselines, measured in one run.

CPU: our GPT (float32, fused SDPA attention) vs transformers' GPT2LMHeadModel of exactly the same shape.
CUDA (when present): plain float32 eager vs bf16 autocast + fused AdamW + flash attention, with and without
torch.compile, and the same GPT-2 from transformers in bf16; tokens/s and model FLOPs utilisation (MFU) from
6N + 12·L·T·d FLOPs per token against a peak you pass with --peak-tflops (H100 SXM bf16 dense: 989).

    python bench.py                  # small config, about a minute on 2 CPU cores
    python bench.py --peak-tflops 989 --d-model 768 --n-layer 12 --block-size 1024 --batch-size 16   # GPT-2 124M on a GPU
"""
from __future__ import annotations

import argparse
import time

import torch

import labkit

lab = labkit.load_impl("llm-engineer/phase-05-training-small-llms/lab-02-nano-gpt", "solution")


def hf_gpt2(config):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size,
                                      n_embd=config.d_model, n_layer=config.n_layer, n_head=config.n_head,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))


class HFAdapter(torch.nn.Module):
    """model(idx, targets) -> (logits, loss) for transformers' GPT-2 (its labels= shifts inside; we pass targets)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, idx, targets=None):
        logits = self.model(idx).logits
        return logits, torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def measure(model, optimizer, config, batch_size, device, amp, steps, warmup) -> float:
    """Training tokens per second over `steps` timed steps, after `warmup` untimed ones."""
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(config.vocab_size, (100_000,), generator=gen).numpy().astype("uint16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
        x, y = lab.get_batch(data, config.block_size, batch_size, device, gen)
        lab.train_step(model, optimizer, x, y, lr=3e-4, max_norm=1.0, amp_dtype=amp)
    sync()
    return steps * batch_size * config.block_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CPU, 50 on CUDA)")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the rows this many times, keep the best")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak for MFU (H100 SXM: 989; A100: 312; H200: 989)")
    args = parser.parse_args()
    device = labkit.pick_device()
    config = lab.GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                           n_head=args.n_head, d_model=args.d_model)
    cuda = device.type == "cuda"
    steps = args.steps or (50 if cuda else 20)
    warmup = 10 if cuda else 3

    def ours(amp, compile_):
        torch.manual_seed(0)
        model = lab.GPT(config).to(device)
        opt = lab.make_optimizer(model, 3e-4, 0.1, device_type=device.type if amp else "cpu")  # fused only with amp
        return (torch.compile(model) if compile_ else model), opt, amp

    def theirs(amp):
        torch.manual_seed(0)
        model = HFAdapter(hf_gpt2(config)).to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1), amp

    rows = {"transformers GPT2LMHeadModel, fp32": lambda: theirs(None),
            "ours, fp32 eager": lambda: ours(None, False)}
    if cuda:
        rows.update({"transformers GPT2LMHeadModel, bf16": lambda: theirs(torch.bfloat16),
                     "ours, bf16 + fused AdamW + flash": lambda: ours(torch.bfloat16, False),
                     "ours, bf16 + fused AdamW + flash + compile": lambda: ours(torch.bfloat16, True)})
    built = {name: make() for name, make in rows.items()}
    best = {name: 0.0 for name in rows}
    for _ in range(args.rounds):  # alternate the rows so a busy machine slows them alike
        for name, (model, opt, amp) in built.items():
            best[name] = max(best[name], measure(model, opt, config, args.batch_size, device, amp, steps, warmup))

    n_params = lab.GPT(config).num_params()
    flops = lab.flops_per_token(config, n_params)
    print(f"device {device}  ({torch.cuda.get_device_name() if cuda else f'{torch.get_num_threads()} CPU threads'})")
    print(f"config d={config.d_model} L={config.n_layer} H={config.n_head} T={config.block_size} "
          f"B={args.batch_size} V={config.vocab_size}: {n_params:,} non-embedding params, "
          f"{flops / 1e6:.2f} MFLOP per training token")
    base = best["transformers GPT2LMHeadModel, fp32"]
    header = f"{'path':44s} {'tokens/s':>12s} {'vs HF fp32':>10s}" + (f" {'MFU':>7s}" if cuda else "")
    print(header + "\n" + "-" * len(header))
    for name, rate in best.items():
        mfu = f" {rate * flops / (args.peak_tflops * 1e12):7.1%}" if cuda else ""
        print(f"{name:44s} {rate:12,.0f} {rate / base:9.2f}x{mfu}")
    if cuda:
        print(f"MFU against a {args.peak_tflops:g} TFLOP/s peak (pass --peak-tflops for another GPU)")


if __name__ == "__main__":
    main()
