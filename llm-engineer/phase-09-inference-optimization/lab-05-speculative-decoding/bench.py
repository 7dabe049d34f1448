"""Speculative vs plain greedy decoding of SmolLM2-135M-Instruct on CPU, for k in 1, 2, 3, 4, 6, 8.

Target: SmolLM2-135M-Instruct. Draft: its first `--draft-layers` layers + final norm + lm_head (a shallow
self-draft; it shares the tokenizer by construction). Baseline, measured in the same run: plain greedy decoding
with a KV-cache (`greedy_generate`, one target call per token). Reference: transformers' assisted generation
(`target.generate(..., assistant_model=draft, do_sample=False)` with a constant `num_assistant_tokens = k`) on the
same prompts. Every row checks that the tokens equal plain greedy's.

Also measured: c = (draft step time) / (target step time), and v(k) = (target time for k+1 positions) / (target
time for 1), the two costs the speed-up formula depends on, so the formula's prediction
tokens_per_call / (c k + v(k)) can be set beside the measured ratio.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-05-speculative-decoding/bench.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import DynamicCache

import labkit
from labkit.assets import smollm2

LAB = "llm-engineer/phase-09-inference-optimization/lab-05-speculative-decoding"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@torch.no_grad()
def forward_ms(model, prompt: torch.Tensor, positions: int, repeats: int) -> float:
    """Median time of one cached forward over `positions` new tokens after the prompt (the cache is trimmed back)."""
    cache = DynamicCache()
    model(prompt, past_key_values=cache, use_cache=True)
    length = cache.get_seq_length()
    block = torch.full((1, positions), 42)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model(block, past_key_values=cache, use_cache=True, logits_to_keep=positions)
        times.append(time.perf_counter() - start)
        cache.crop(length - cache.get_seq_length())
    return statistics.median(times[1:]) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8])
    parser.add_argument("--draft-layers", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; one is steadier on a shared CPU")
    parser.add_argument("--depths", type=int, nargs="*", default=[2, 4, 8, 12, 16, 20, 24, 28],
                        help="self-draft depths whose greedy alpha is measured at the end (none: skip)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each single-forward timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    impl = labkit.load_impl(LAB, "solution")

    target, tokenizer = smollm2()
    draft = impl.shallow_draft(target, args.draft_layers)
    eos = tokenizer.eos_token_id
    prompts = [impl.chat_ids(tokenizer, text) for text in impl.PROMPTS[:args.prompts]]
    print(f"target: SmolLM2-135M-Instruct ({target.config.num_hidden_layers} layers); draft: first "
          f"{args.draft_layers} layers + norm + lm_head; {len(prompts)} prompts x {args.new_tokens} new tokens, "
          f"greedy, torch threads {torch.get_num_threads()}")

    # the two costs in the formula: c (draft step / target step) and v(k) (k+1 target positions / 1)
    target_1 = forward_ms(target, prompts[0], 1, args.repeats)
    draft_1 = forward_ms(draft, prompts[0], 1, args.repeats)
    c = draft_1 / target_1
    verify = {k: forward_ms(target, prompts[0], k + 1, args.repeats) / target_1 for k in args.ks}
    print(f"one-token step: target {target_1:.1f} ms, draft {draft_1:.1f} ms -> c = {c:.2f}; "
          f"v(k) = " + ", ".join(f"{k}: {v:.2f}" for k, v in verify.items()))

    impl.greedy_generate(target, prompts[0], 4, eos)                                    # warm-up
    baseline, t_plain = timed(lambda: [impl.greedy_generate(target, ids, args.new_tokens, eos) for ids in prompts])
    n_new = sum(out.size(1) - ids.size(1) for out, ids in zip(baseline, prompts))
    print(f"plain greedy: {n_new} tokens in {t_plain:.2f} s = {n_new / t_plain:.1f} tok/s")

    header = (f"{'k':>2} | {'accept':>6} | {'alpha':>5} | {'tok/call':>8} | {'ours s':>7} | {'ours x':>6} | "
              f"{'formula x':>9} | {'HF assisted s':>13} | {'HF x':>5} | same")
    print(header)
    print("-" * len(header))
    gen_config = draft.generation_config
    gen_config.num_assistant_tokens_schedule = "constant"
    gen_config.assistant_confidence_threshold = 0.0
    for k in args.ks:
        runs, t_ours = timed(lambda: [impl.speculative_generate(target, draft, ids, args.new_tokens, k,
                                                                eos_token_id=eos) for ids in prompts])
        gen_config.num_assistant_tokens = k
        with torch.no_grad():
            hf, t_hf = timed(lambda: [target.generate(ids, assistant_model=draft, do_sample=False,
                                                      max_new_tokens=args.new_tokens, eos_token_id=eos,
                                                      pad_token_id=eos) for ids in prompts])
        drafted = [d for run in runs for d in run.drafted]
        accepted = [m for run in runs for m in run.accepted]
        alpha = impl.estimate_alpha(drafted, accepted)
        per_call = sum(run.tokens.size(1) - ids.size(1) for run, ids in zip(runs, prompts)) / len(drafted)
        predicted = per_call / (c * k + verify[k])
        same = all(torch.equal(r.tokens, b) for r, b in zip(runs, baseline))
        same_hf = all(torch.equal(h, b) for h, b in zip(hf, baseline))
        print(f"{k:>2} | {sum(accepted) / max(sum(drafted), 1):>6.2f} | {alpha:>5.2f} | {per_call:>8.2f} | "
              f"{t_ours:>7.2f} | {t_plain / t_ours:>5.2f}x | {predicted:>8.2f}x | {t_hf:>13.2f} | "
              f"{t_plain / t_hf:>4.2f}x | {'yes' if same and same_hf else f'ours {same}, HF {same_hf}'}")
    need = [(a, impl.best_k(a, c, 8)) for a in (0.5, 0.7, 0.8, 0.9)]
    print(f"formula at this c = {c:.2f}: " + "; ".join(f"alpha {a}: best k {k}, {s:.2f}x" for a, (k, s) in need))
    if args.depths:
        depth_sweep(impl, target, baseline, prompts, args.depths)


@torch.no_grad()
def depth_sweep(impl, target, baseline, prompts, depths) -> None:
    """Greedy alpha of self-drafts of several depths, without decoding: on the target's own greedy continuation,
    the fraction of positions where the draft's argmax equals the target's (the greedy alpha: the chance a draft
    token is accepted when its prefix is right). c_flops: the draft's share of the target's per-token multiply-adds (blocks + lm_head)."""
    per_block = sum(p.numel() for p in target.model.layers[0].parameters())
    head = target.lm_head.weight.numel()
    full = target.config.num_hidden_layers * per_block + head
    want = [ids.size(1) for ids in prompts]
    ref = [target(out).logits[0, n - 1:-1].argmax(-1) for out, n in zip(baseline, want)]
    cells = []
    for depth in depths:
        draft = impl.shallow_draft(target, depth)
        agree = [(draft(out).logits[0, n - 1:-1].argmax(-1) == r).float() for out, n, r in zip(baseline, want, ref)]
        alpha = float(torch.cat(agree).mean())
        cells.append(f"{depth} layers: alpha {alpha:.2f}, c_flops {(depth * per_block + head) / full:.2f}")
    print("self-draft depth sweep (greedy agreement on the target's output): " + "; ".join(cells))


if __name__ == "__main__":
    labkit.run(main)
