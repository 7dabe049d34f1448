"""Sampling strategies: how a language model's next-token logits become text.

Every strategy here is a small function on a (batch, vocab) logits tensor, composed in the order Hugging Face
applies them (repetition penalty -> temperature -> top-k -> top-p -> min-p), then either an argmax (greedy) or
a draw from the softmax (sampling). Two search strategies look further ahead: beam search keeps the best few
partial sequences by total log-probability, and contrastive search trades probability against similarity to
what was already said, which fights repetition without randomness.

Masked-out tokens get logit -inf, so softmax gives them probability exactly 0.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import labkit
from labkit import assets

NEG_INF = float("-inf")


# ---------------------------------------------------------------- 1. greedy, temperature, sampling

def greedy(logits: torch.Tensor) -> torch.Tensor:
    """(B, V) -> (B,) the most likely token of each row."""
    # TODO [temperature-greedy]: The index of the largest logit in each row.
    raise NotImplementedError('TODO [temperature-greedy]: The index of the largest logit in each row.')


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z / T): T < 1 sharpens (T -> 0 is greedy), T > 1 flattens (T -> inf is uniform)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy() for T = 0), got {temperature}")
    # TODO [temperature-greedy]: Divide the logits by T.
    raise NotImplementedError('TODO [temperature-greedy]: Divide the logits by T.')


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) -> (B,) one token per row drawn from softmax(logits); -inf logits are never drawn."""
    # TODO [temperature-greedy]: softmax over the vocabulary, then one torch.multinomial draw per row.
    raise NotImplementedError('TODO [temperature-greedy]: softmax over the vocabulary, then one torch.multinomial draw per row.')


# ---------------------------------------------------------------- 2. truncation: top-k and min-p

def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits of each row (k >= V keeps all); the rest become -inf."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    k = min(k, logits.shape[-1])
    # TODO [top-k-min-p]: topk gives the indices to keep; scatter them into a -inf tensor.
    raise NotImplementedError('TODO [top-k-min-p]: topk gives the indices to keep; scatter them into a -inf tensor.')


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the top token's probability.

    The cut-off scales with the model's confidence: a peaked distribution keeps few tokens, a flat one many.
    """
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    # TODO [top-k-min-p]: Compare each probability with min_p * the row's largest probability.
    raise NotImplementedError("TODO [top-k-min-p]: Compare each probability with min_p * the row's largest probability.")


# ---------------------------------------------------------------- 3. nucleus (top-p)

def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most-likely tokens whose total probability is >= p (always at least one).

    Sort descending; token i stays if the mass of the tokens *before* it is still < p. p = 1 keeps everything.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    # TODO [top-p]: Sort descending, cumulative softmax; keep while the mass before a token is below p; unsort.
    raise NotImplementedError('TODO [top-p]: Sort descending, cumulative softmax; keep while the mass before a token is below p; unsort.')


# ---------------------------------------------------------------- 4. repetition penalty

def repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty on every token already in `input_ids` (B, T): positive logits are divided by `penalty`,
    negative ones multiplied, so a seen token always becomes less likely when penalty > 1."""
    if penalty <= 0:
        raise ValueError(f"repetition penalty must be > 0 (1.0 means none), got {penalty}")
    # TODO [repetition-penalty]: gather the seen tokens' logits, shrink them by sign, scatter them back.
    raise NotImplementedError("TODO [repetition-penalty]: gather the seen tokens' logits, shrink them by sign, scatter them back.")


# ---------------------------------------------------------------- 5. the generation loop

def process_logits(logits: torch.Tensor, input_ids: torch.Tensor, *, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                   rep_penalty: float | None = None) -> torch.Tensor:
    """Apply the chosen processors in Hugging Face's order: penalty, temperature, top-k, top-p, min-p."""
    # TODO [generate-loop]: Chain the functions above, skipping the ones left at their neutral value.
    raise NotImplementedError('TODO [generate-loop]: Chain the functions above, skipping the ones left at their neutral value.')


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
             generator: torch.Generator | None = None, **processors) -> torch.Tensor:
    """Decode `max_new_tokens` tokens from a Hugging Face causal LM with its KV-cache.

    (B, T) -> (B, T + max_new_tokens). Greedy when do_sample is False (the processors still apply, e.g. a
    repetition penalty); otherwise a draw from the processed distribution.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    # TODO [generate-loop]: Prompt once, then one token at a time with past_key_values; process in float32; pick; append.
    raise NotImplementedError('TODO [generate-loop]: Prompt once, then one token at a time with past_key_values; process in float32; pick; append.')


# ---------------------------------------------------------------- 6. beam search

@torch.no_grad()
def beam_search(next_log_probs, prompt: torch.Tensor, num_beams: int, max_new_tokens: int
                ) -> tuple[torch.Tensor, float]:
    """Keep the `num_beams` highest-scoring continuations, score = sum of token log-probabilities.

    `next_log_probs(seqs)` maps (n, T) token ids to (n, V) log-probabilities of the next token.
    `prompt` is 1-D. Returns (best full sequence, its score). num_beams = 1 is greedy; a beam as wide as every
    prefix (V ** (max_new_tokens - 1)) is exhaustive search.
    """
    if num_beams < 1 or prompt.ndim != 1:
        raise ValueError(f"need num_beams >= 1 and a 1-D prompt, got num_beams={num_beams}, "
                         f"prompt shape {tuple(prompt.shape)}")
    # TODO [beam-search]: Score every (beam, token) extension, keep the top num_beams of the flattened scores.
    raise NotImplementedError('TODO [beam-search]: Score every (beam, token) extension, keep the top num_beams of the flattened scores.')


# ---------------------------------------------------------------- 7. contrastive search

def contrastive_scores(top_probs: torch.Tensor, candidate_hidden: torch.Tensor, context_hidden: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """score(v) = (1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j)

    top_probs (k,), candidate_hidden (k, d): the hidden state each candidate token would get;
    context_hidden (T, d): the hidden states of the tokens so far. High similarity = saying the same again.
    """
    # TODO [contrastive-search]: Normalise both sets of vectors, one matmul gives every cosine, take the max over context.
    raise NotImplementedError('TODO [contrastive-search]: Normalise both sets of vectors, one matmul gives every cosine, take the max over context.')


@torch.no_grad()
def contrastive_search(model, input_ids: torch.Tensor, max_new_tokens: int, *, top_k: int = 4,
                       alpha: float = 0.6) -> torch.Tensor:
    """Contrastive search (Su et al., 2022) on a Hugging Face causal LM, one sequence (1, T) at a time.

    Each step: the model's top_k candidates; run each one through the model to get its last-layer hidden
    state; pick the best contrastive score. alpha = 0 is greedy. (Recomputes without a cache: clarity first.)
    """
    if input_ids.shape[0] != 1:
        raise ValueError(f"contrastive_search decodes one sequence at a time, got batch {input_ids.shape[0]}")
    # TODO [contrastive-search]: Forward the context (hidden states on), take top-k; forward the k extensions as one batch; score; append the best.
    raise NotImplementedError('TODO [contrastive-search]: Forward the context (hidden states on), take top-k; forward the k extensions as one batch; score; append the best.')


# ---------------------------------------------------------------- diversity metric (given)

def distinct_n(sequences: list[list[int]] | list[str], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over a set of generations (1.0 = nothing repeats)."""
    grams = [tuple(seq[i:i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# ---------------------------------------------------------------- demo

STRATEGIES = {
    "greedy": dict(do_sample=False),
    "temperature 0.7": dict(do_sample=True, temperature=0.7),
    "temperature 1.5": dict(do_sample=True, temperature=1.5),
    "top-k 20": dict(do_sample=True, top_k=20),
    "top-p 0.9": dict(do_sample=True, top_p=0.9),
    "min-p 0.1": dict(do_sample=True, min_p=0.1),
    "greedy + rep. penalty 1.3": dict(do_sample=False, rep_penalty=1.3),
}


def main(argv: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="Write one sentence about the sea.")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--search-tokens", type=int, default=12,
                        help="new tokens for beam and contrastive search (they recompute without a KV-cache)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, tokenizer = assets.smollm2()
    print(f"loaded SmolLM2-135M-Instruct in {time.perf_counter() - start:.1f} s")
    chat = [{"role": "user", "content": args.prompt}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, return_tensors="pt").input_ids  # (1, T)
    n = args.max_new_tokens

    def decode(ids: torch.Tensor) -> str:
        new = ids[prompt.shape[1]:].tolist()
        if tokenizer.eos_token_id in new:  # the loops run to the length asked for; show text up to the end token
            new = new[:new.index(tokenizer.eos_token_id)]
        return tokenizer.decode(new, skip_special_tokens=True).replace("\n", " ")

    print(f"prompt: {args.prompt!r}  ({prompt.shape[1]} tokens; {n} new tokens, {args.search_tokens} for the "
          "searches)\n")
    rows = []
    for name, settings in STRATEGIES.items():
        t0 = time.perf_counter()
        out = generate(model, prompt, n, generator=torch.Generator().manual_seed(args.seed), **settings)[0]
        rows.append((name, out, time.perf_counter() - t0))
    t0 = time.perf_counter()
    log_probs = lambda seqs: F.log_softmax(model(input_ids=seqs).logits[:, -1].float(), dim=-1)
    beam, _ = beam_search(log_probs, prompt[0], num_beams=3, max_new_tokens=args.search_tokens)
    rows.append(("beam 3", beam, time.perf_counter() - t0))
    t0 = time.perf_counter()
    contrastive = contrastive_search(model, prompt, args.search_tokens)[0]
    rows.append(("contrastive k=4 a=0.6", contrastive, time.perf_counter() - t0))
    for name, ids, seconds in rows:
        new = ids[prompt.shape[1]:].tolist()
        print(f"{name:>25} | distinct-2 {distinct_n([new], 2):.2f} | {seconds:4.1f} s | {decode(ids)}")

    # How each filter reshapes the first next-token distribution.
    with torch.no_grad():
        logits = model(input_ids=prompt).logits[:, -1].float()
    base = F.softmax(logits, dim=-1)[0]
    top = base.topk(15).indices
    views = {"raw": logits, "T=0.7": apply_temperature(logits, 0.7), "top-k 5": top_k_filter(logits, 5),
             "top-p 0.9": top_p_filter(logits, 0.9), "min-p 0.1": min_p_filter(logits, 0.1)}
    fig, axes = plt.subplots(1, len(views), figsize=(3.2 * len(views), 3.4), sharey=True)
    labels = [repr(tokenizer.decode([int(t)])) for t in top]
    for ax, (name, z) in zip(axes, views.items()):
        probs = F.softmax(z, dim=-1)[0]
        ax.bar(range(len(top)), probs[top].numpy())
        ax.set_title(f"{name} ({int((probs > 0).sum())} tokens kept)", fontsize=9)
        ax.set_xticks(range(len(top)), labels, rotation=90, fontsize=7)
    axes[0].set_ylabel("probability of the first new token")
    fig.tight_layout()
    out = labkit.output_dir(__file__) / "next_token_filters.png"
    fig.savefig(out, dpi=120)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    labkit.run(main)
