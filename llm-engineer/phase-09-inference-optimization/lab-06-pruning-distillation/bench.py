"""What pruning buys in CPU speed: SmolLM2-135M dense vs unstructured 50% zeros vs structurally pruned vs the
distilled student, measured side by side in one run (float32, the same prompt, best of `--repeats`).

Baseline: the unpruned teacher. Unstructured zeros change nothing for a dense matmul; structured pruning and
fewer blocks shrink the matmuls themselves. Prefill = one forward over `--tokens` tokens; decode = greedy
generate with the KV-cache.
Run: .venv/bin/python llm-engineer/phase-09-inference-optimization/lab-06-pruning-distillation/bench.py
"""
from __future__ import annotations

import argparse
import copy

import torch

import labkit
from labkit import assets
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-09-inference-optimization/lab-06-pruning-distillation"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="prefill length")
    parser.add_argument("--new-tokens", type=int, default=16, help="greedy decode length")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-student", action="store_true", help="skip the distilled student (trains it if missing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    impl = labkit.load_impl(LAB, "solution")

    teacher, tokenizer = assets.smollm2()
    sparse = copy.deepcopy(teacher)
    impl.magnitude_prune_model(sparse, 0.5, "layer")
    models = {
        "teacher (dense, baseline)": teacher,
        "unstructured 50% zeros": sparse,
        "structured: MLP 75%": impl.prune_structured(teacher, mlp_keep=0.75),
        "structured: MLP 50%, heads 6/9": impl.prune_structured(teacher, mlp_keep=0.5, groups_keep=2),
    }
    if not args.no_student:
        models["distilled student (11 blocks)"] = impl.distilled_student(device="cpu")[0]

    ids = torch.randint(0, teacher.config.vocab_size, (1, args.tokens))
    prompt = ids[:, :8]
    print(f"CPU, {torch.get_num_threads()} threads, float32; prefill {args.tokens} tokens, decode {args.new_tokens} "
          f"tokens greedy; best of {args.repeats}")
    header = f"{'model':32s} | {'params':>7s} | {'prefill ms':>10s} | {'speed-up':>8s} | {'decode tok/s':>12s} | {'speed-up':>8s}"
    print(header)
    print("-" * len(header))
    base = None
    with torch.no_grad():
        for name, model in models.items():
            model.eval()
            prefill = best_seconds(lambda: model(ids), repeats=args.repeats)
            decode = best_seconds(lambda: model.generate(prompt, max_new_tokens=args.new_tokens,
                                                         min_new_tokens=args.new_tokens, do_sample=False,
                                                         pad_token_id=0), repeats=args.repeats)
            base = base or (prefill, decode)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{name:32s} | {params:6.1f}M | {1e3 * prefill:10.0f} | {base[0] / prefill:7.2f}x | "
                  f"{args.new_tokens / decode:12.1f} | {base[1] / decode:7.2f}x")


if __name__ == "__main__":
    labkit.run(main)
