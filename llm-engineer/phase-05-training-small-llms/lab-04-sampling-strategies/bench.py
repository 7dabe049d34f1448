"""Sampling throughput per strategy on a tiny random Llama (CPU-sized), next to transformers' own greedy
`generate` as the baseline. Prints tokens/s and the ratio to this lab's greedy loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

import labkit
from labkit.bench import best_seconds

lab = labkit.load_impl("llm-engineer/phase-05-training-small-llms/lab-04-sampling-strategies", "solution")
NEW_TOKENS, REPEATS = 32, 2


def timed(fn) -> float:
    """Tokens per second of the fastest of REPEATS runs (after a warm-up)."""
    return NEW_TOKENS / best_seconds(fn, REPEATS)


def main() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(1, config.vocab_size, (1, 16))
    log_probs = lambda seqs: F.log_softmax(model(input_ids=seqs).logits[:, -1].float(), dim=-1)
    rows = {
        "transformers generate (greedy)": lambda: model.generate(prompt, do_sample=False, max_new_tokens=NEW_TOKENS),
        "greedy": lambda: lab.generate(model, prompt, NEW_TOKENS),
        "temperature 0.8": lambda: lab.generate(model, prompt, NEW_TOKENS, do_sample=True, temperature=0.8),
        "top-k 50": lambda: lab.generate(model, prompt, NEW_TOKENS, do_sample=True, top_k=50),
        "top-p 0.9": lambda: lab.generate(model, prompt, NEW_TOKENS, do_sample=True, top_p=0.9),
        "min-p 0.05": lambda: lab.generate(model, prompt, NEW_TOKENS, do_sample=True, min_p=0.05),
        "greedy + rep. penalty 1.3": lambda: lab.generate(model, prompt, NEW_TOKENS, rep_penalty=1.3),
        "beam 4 (no KV-cache)": lambda: beam(log_probs, prompt),
        "contrastive k=4 (no KV-cache)": lambda: lab.contrastive_search(model, prompt, NEW_TOKENS, top_k=4),
    }
    with torch.no_grad():
        speed = {name: timed(fn) for name, fn in rows.items()}
    base = speed["greedy"]
    print(f"tiny Llama (4 layers, d=128, V=4096), prompt 16, {NEW_TOKENS} new tokens, batch 1, "
          f"{torch.get_num_threads()} threads, best of {REPEATS}")
    print(f"{'strategy':<32}{'tokens/s':>10}{'vs greedy':>11}")
    for name, value in speed.items():
        print(f"{name:<32}{value:>10.0f}{value / base:>10.2f}x")


def beam(log_probs, prompt):
    return lab.beam_search(log_probs, prompt[0], num_beams=4, max_new_tokens=NEW_TOKENS)


if __name__ == "__main__":
    main()
