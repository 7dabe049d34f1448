"""Training throughput of the lab's GPT, side by side with baselines, measured in one run.

Rows (all fp32, one CPU thread by default):
- transformers' GPT2LMHeadModel of exactly the same shape: the baseline (its GELU is GPT-2's tanh formula);
- ours as shipped: exact GELU, fused AdamW, the lab's train_step;
- ours with GPT-2's tanh GELU (GPTConfig(gelu_approximate="tanh")): what the GELU variant alone costs;
- nanoGPT-style: the configuration karpathy/nanoGPT trains with, rebuilt from this lab's parts: exact GELU and
  biases in the model; AdamW that decays every parameter with 2+ dimensions (embeddings too), fused only on CUDA;
  torch.nn.utils.clip_grad_norm_; gradients dropped after the step.
CUDA adds bf16 autocast + fused AdamW + flash attention, with and without torch.compile, and transformers in bf16,
with model FLOPs utilisation (MFU) from 6N + 12·L·T·d FLOPs per token against --peak-tflops (H100 SXM bf16: 989).

A round runs `steps` turns, each one step of every row (the order flips every turn, so a busy machine slows all
rows alike), and keeps each row's median step. Ratios are taken per round and printed as median [min-max] over
rounds.
With one CPU thread a step is timed by that thread's CPU time: torch runs the whole step, backward included, on
the calling thread, and other processes on a shared machine cannot inflate it (wall clock can, several-fold).

    python bench.py                  # small config, about two minutes on 2 CPU cores
    python bench.py --preset full --rounds 2 --steps 5   # the lab's full preset: d=256, L=6, H=8, T=256, B=64
    python bench.py --peak-tflops 989 --d-model 768 --n-layer 12 --block-size 1024 --batch-size 16   # GPT-2 124M on a GPU
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import labkit

lab = labkit.load_impl("llm-engineer/phase-05-training-small-llms/lab-02-nano-gpt", "solution")

BASELINE, NANOGPT = "transformers GPT2LMHeadModel, fp32", "nanoGPT-style config, fp32"


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


def nanogpt_optimizer(model, lr, weight_decay, fused):
    """nanoGPT's grouping: decay every tensor with 2+ dims (Linear weights and both embeddings), not biases/norms."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)


def nanogpt_step(model, optimizer, x, y, lr, max_norm=1.0, amp_dtype=None):
    """nanoGPT's order: set lr, forward, backward, torch's clip_grad_norm_, step, then drop the gradients."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with lab.autocast(x.device.type, amp_dtype):
        _, loss = model(x, y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


def timed(fn, device, one_thread: bool) -> float:
    """Seconds of one call: CPU time of the calling thread when the CPU runs one thread, else wall clock (CUDA
    synchronised on both sides: its calls return before the GPU finishes)."""
    clock = time.thread_time if one_thread else time.perf_counter
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(lab.PRESETS), default=None,
                        help="take d_model, n_layer, n_head, block_size and batch_size from the demo's preset")
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row and round (20 CPU, 50 CUDA)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; ratios are medians over them")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared box)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak for MFU (H100 SXM: 989; A100: 312; H200: 989)")
    args = parser.parse_args()
    if args.preset:
        for name in ("d_model", "n_layer", "n_head", "block_size", "batch_size"):
            setattr(args, name, lab.PRESETS[args.preset][name])
    device = labkit.pick_device()
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    one_thread = not cuda and torch.get_num_threads() == 1
    config = lab.GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                           n_head=args.n_head, d_model=args.d_model)
    steps = args.steps or (50 if cuda else 20)
    lr, wd = 3e-4, 0.1

    def ours(amp=None, compile_=False, **overrides):
        torch.manual_seed(0)
        model = lab.GPT(lab.GPTConfig(**{**vars(config), **overrides})).to(device)
        opt = lab.make_optimizer(model, lr, wd, device_type=device.type)  # fused AdamW (CUDA and CPU)
        return (torch.compile(model) if compile_ else model), opt, amp, lab.train_step

    def nanogpt_style():
        torch.manual_seed(0)
        model = lab.GPT(config).to(device)  # exact GELU and biases: nanoGPT's defaults too
        return model, nanogpt_optimizer(model, lr, wd, fused=cuda), None, nanogpt_step

    def theirs(amp=None):
        torch.manual_seed(0)
        model = HFAdapter(hf_gpt2(config)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=wd)
        return model, opt, amp, lab.train_step

    rows = {BASELINE: theirs,
            "ours, fp32 (exact GELU, fused AdamW)": ours,
            "ours, fp32, GPT-2 tanh GELU": lambda: ours(gelu_approximate="tanh"),
            NANOGPT: nanogpt_style}
    if cuda:
        rows.update({"transformers GPT2LMHeadModel, bf16": lambda: theirs(torch.bfloat16),
                     "ours, bf16 + fused AdamW + flash": lambda: ours(torch.bfloat16),
                     "ours, bf16 + fused AdamW + flash + compile": lambda: ours(torch.bfloat16, True)})

    gen = torch.Generator().manual_seed(0)
    data = torch.randint(config.vocab_size, (100_000,), generator=gen).numpy().astype("uint16")

    def one_step(model, opt, amp, step):
        x, y = lab.get_batch(data, config.block_size, args.batch_size, device, gen)
        step(model, opt, x, y, lr, 1.0, amp)

    built = {name: make() for name, make in rows.items()}
    for row in built.values():  # untimed warm-up: allocator, kernel choice, torch.compile
        for _ in range(3):
            one_step(*row)
    tokens = args.batch_size * config.block_size
    rates = {name: [] for name in rows}  # tokens/s from the median step, one per round
    for _ in range(args.rounds):
        seconds = {name: [] for name in rows}
        for i in range(steps):  # one step of each row in turn, order reversed every other turn
            for name in (list(built) if i % 2 == 0 else list(built)[::-1]):
                seconds[name].append(timed(lambda: one_step(*built[name]), device, one_thread))
        for name in rows:
            rates[name].append(tokens / statistics.median(seconds[name]))

    n_params = lab.GPT(config).num_params()
    flops = lab.flops_per_token(config, n_params)
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU thread(s)"
    clock = "thread CPU time" if one_thread else "wall clock"
    print(f"device {device}  ({where}); {args.rounds} rounds of {steps} interleaved steps, median step ({clock})")
    print(f"config d={config.d_model} L={config.n_layer} H={config.n_head} T={config.block_size} "
          f"B={args.batch_size} V={config.vocab_size}: {n_params:,} non-embedding params, "
          f"{flops / 1e6:.2f} MFLOP per training token")

    def ratio(name, base):
        per_round = [a / b for a, b in zip(rates[name], rates[base])]
        return f"{statistics.median(per_round):.2f}x [{min(per_round):.2f}-{max(per_round):.2f}]"

    header = (f"{'path':44s} {'tokens/s':>9s} {'vs transformers fp32':>21s} {'vs nanoGPT-style':>18s}"
              + (f" {'MFU':>6s}" if cuda else ""))
    print(header + "\n" + "-" * len(header))
    for name in rows:
        rate = statistics.median(rates[name])
        mfu = f" {rate * flops / (args.peak_tflops * 1e12):6.1%}" if cuda else ""
        print(f"{name:44s} {rate:9,.0f} {ratio(name, BASELINE):>21s} {ratio(name, NANOGPT):>18s}{mfu}")
    if cuda:
        print(f"MFU against a {args.peak_tflops:g} TFLOP/s peak (pass --peak-tflops for another GPU)")


if __name__ == "__main__":
    main()
