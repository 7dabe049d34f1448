"""Decode speed with and without the KV-cache at 128, 512 and 1024 generated tokens (CPU, one thread).

Same random weights, same 8-token prompt, greedy. Baseline: the lab's own uncached path (full recompute per
token). Reference: transformers' LlamaForCausalLM.generate(use_cache=True) holding the same weights.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-01-kv-cache-from-scratch/bench.py
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import labkit

LAB = "llm-engineer/phase-09-inference-optimization/lab-01-kv-cache-from-scratch"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--prompt", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference column")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    impl = labkit.load_impl(LAB, "solution")

    block = args.prompt + max(args.lengths)
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=block, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, tie_word_embeddings=False)).eval()
    model = impl.GPT.from_llama(hf, block_size=block).eval()
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {c.n_layer} layers, d={c.n_embd}, {c.n_head} query / {c.n_kv_head} KV heads, vocab {c.vocab_size}, "
          f"{params / 1e3:.0f}k params; prompt {args.prompt} tokens; torch threads {torch.get_num_threads()}")
    prompt = torch.randint(0, c.vocab_size, (1, args.prompt))
    impl.generate(model, prompt, 16, use_cache=True)                     # warm-up
    impl.generate(model, prompt, 16, use_cache=False)

    header = f"{'new tokens':>10} | {'no cache tok/s':>14} | {'KV-cache tok/s':>14} | {'speedup':>7}"
    if not args.no_hf:
        header += f" | {'HF generate tok/s':>17} | {'ours / HF':>9}"
    print(header)
    print("-" * len(header))
    for n in args.lengths:
        outs = {}
        t_plain = timed(lambda: outs.__setitem__("plain", impl.generate(model, prompt, n, use_cache=False)))
        t_cache = timed(lambda: outs.__setitem__("cache", impl.generate(model, prompt, n, use_cache=True)))
        same = torch.equal(outs["plain"], outs["cache"])
        row = f"{n:>10} | {n / t_plain:>14.0f} | {n / t_cache:>14.0f} | {t_plain / t_cache:>6.1f}x"
        if not args.no_hf:
            with torch.no_grad():
                t_hf = timed(lambda: outs.__setitem__("hf", hf.generate(
                    prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True)))
            same = same and torch.equal(outs["hf"], outs["cache"])
            row += f" | {n / t_hf:>17.0f} | {t_hf / t_cache:>8.2f}x"
        print(row + ("" if same else "   (tokens differ!)"))


if __name__ == "__main__":
    labkit.run(main)
