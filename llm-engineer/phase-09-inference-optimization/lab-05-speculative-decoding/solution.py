"""Speculative decoding: a cheap draft model guesses k tokens, the target checks all of them in one forward pass.

At batch 1 a decoder step is bound by reading the weights, not by arithmetic, so scoring k + 1 positions costs
the target little more than scoring one. Speculative decoding turns that into speed: a small draft model proposes
k tokens one by one (cheap), the target scores them all at once, and a rejection rule keeps a prefix of them.
The rule is exact: the emitted tokens follow the target's distribution whatever the draft is; a better draft only
makes it faster.

One iteration, with p the target's and q the draft's next-token distribution:
  1. Draft:  d_1..d_k, each sampled from q_i = q(. | prefix, d_<i), through the draft's own KV-cache.
  2. Verify: one target forward on [last committed token, d_1..d_k] gives p_1..p_{k+1}.
  3. Accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), left to right, until the first rejection.
  4. At a rejection at position i, emit one token from the residual norm(max(0, p_i - q_i)) and stop; when all k
     are accepted, emit a bonus token from p_{k+1}. So every iteration emits between 1 and k + 1 tokens.
  5. Roll back: cut the rejected positions out of both KV-caches.
Greedy decoding is the temperature-0 case: accept d_i while it equals argmax p_i, then emit argmax p_i. The
output is then the target's own greedy output, token for token.

What you build:
1. `residual_distribution`, `verify_sampled`: the acceptance rule and the residual (task accept-step).
2. `verify_greedy`: the greedy verification (task greedy-spec).
3. `trim_cache`, `propose`, `speculative_generate`: the loop with both KV-caches and their rollback (task spec-loop).
4. `acceptance_rate`, `expected_tokens_per_iteration`, `expected_speedup`, `best_k`, `estimate_alpha`: what speed
   to expect from an acceptance rate alpha and a draft/target cost ratio c (task speedup-math).

Models are transformers causal LMs (`LlamaForCausalLM` here) that share one vocabulary. Cache invariant of the
loop: `ids` (1, n) is the committed sequence; each model's `DynamicCache` holds the keys/values of a prefix of it,
never of the last committed token (that token is fed at the start of the next iteration). A model is always fed
"what its cache does not hold yet", so the first call doubles as the prefill.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import DynamicCache

import labkit


# ---------------------------------------------------------------------------------------------- shared helpers

def to_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) in float32 over the last axis; (..., V) -> (..., V)."""
    return F.softmax(logits.float() / temperature, dim=-1)


@torch.no_grad()
def feed(model, cache: DynamicCache, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
    """Run `model` on `tokens` (1, T), which continue what `cache` holds; the cache grows by T.

    Returns float32 logits (keep, V) for the last `keep` positions only (transformers' `logits_to_keep` skips the
    vocabulary projection of the others, which matters for a 49k vocabulary).
    """
    out = model(input_ids=tokens, past_key_values=cache, use_cache=True, logits_to_keep=keep)
    return out.logits[0].float()


def vocab_size(model) -> int:
    return model.get_output_embeddings().out_features


# ---------------------------------------------------------------------------------------------- one step: sampled

def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) over the last axis; (..., V) each.

    Its normaliser is sum max(0, p - q) = 1 - sum min(p, q) = 1 - alpha. Where p == q there is nothing left
    (a rejection cannot happen there, since every draft is then accepted) and the row falls back to p.
    """
    if p.shape != q.shape:
        raise ValueError(f"residual_distribution: p and q must have the same shape, got {tuple(p.shape)} and "
                         f"{tuple(q.shape)}")
    # BEGIN SOLUTION [accept-step] Clamp p - q at zero, divide by its own sum; rows with nothing left fall back to p.
    residual = (p - q).clamp(min=0)
    mass = residual.sum(-1, keepdim=True)                       # = 1 - sum min(p, q)
    return torch.where(mass > 0, residual / mass.clamp(min=torch.finfo(p.dtype).tiny), p)
    # END SOLUTION


def verify_sampled(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[int, int]:
    """The acceptance rule for one iteration.

    p: (k + 1, V) target probabilities at the k draft positions and the one after them.
    q: (k, V) draft probabilities the drafts were sampled from; drafts: (k,) token ids.
    Returns (m, token): the first m drafts are accepted, and `token` comes next (from the residual at the first
    rejection, or the bonus from p[k] when all k pass). Random numbers come from `generator`.
    """
    k = drafts.numel()
    if p.dim() != 2 or q.dim() != 2 or p.size(0) != k + 1 or q.size(0) != k or p.size(1) != q.size(1):
        raise ValueError(f"verify_sampled: expected p (k+1, V), q (k, V) and k drafts, got p {tuple(p.shape)}, "
                         f"q {tuple(q.shape)} and {k} drafts; the target scores one position more than the draft")
    # BEGIN SOLUTION [accept-step] u_i < p_i(d_i)/q_i(d_i) accepts d_i; m = first rejection; sample the residual there, else the bonus.
    rows = torch.arange(k)
    p_draft, q_draft = p[rows, drafts], q[rows, drafts]         # (k,) each: both models' probability of d_i
    u = torch.rand(k, generator=generator)
    accepted = u * q_draft < p_draft                            # u < p/q, i.e. probability min(1, p/q)
    m = k if bool(accepted.all()) else int(accepted.int().argmin())   # index of the first rejection
    if m < k:
        dist = residual_distribution(p[m], q[m])                # rejected at m: resample from what p has beyond q
    else:
        dist = p[k]                                             # all accepted: a free token from the target
    token = int(torch.multinomial(dist, 1, generator=generator))
    return m, token
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- one step: greedy

def verify_greedy(target_logits: torch.Tensor, drafts: torch.Tensor) -> tuple[int, int]:
    """Greedy verification. target_logits: (k + 1, V); drafts: (k,).

    Returns (m, token): the first m drafts equal the target's argmax, and `token` is the target's argmax at
    position m (the correction at the first mismatch, or the bonus when all k match). Ties go to the lowest id,
    as torch.argmax and transformers' greedy search break them.
    """
    k = drafts.numel()
    if target_logits.dim() != 2 or target_logits.size(0) != k + 1:
        raise ValueError(f"verify_greedy: expected target logits of shape (k+1, V) for {k} drafts, got "
                         f"{tuple(target_logits.shape)}")
    # BEGIN SOLUTION [greedy-spec] Argmax per position; m = length of the agreeing prefix; the token is the argmax at m.
    best = target_logits.argmax(-1)                             # (k + 1,) the target's greedy choice per position
    agree = best[:k] == drafts
    m = k if bool(agree.all()) else int(agree.int().argmin())
    return m, int(best[m])
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- the loop

@dataclass
class SpecResult:
    """tokens: (1, prompt + new) ids; per iteration: drafted (k used), accepted (m)."""
    tokens: torch.Tensor
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    @property
    def iterations(self) -> int:          # = target forward passes
        return len(self.drafted)

    @property
    def acceptance(self) -> float:        # accepted drafts / drafted tokens
        return sum(self.accepted) / max(sum(self.drafted), 1)


def trim_cache(cache: DynamicCache, keep: int) -> None:
    """Keep the first `keep` positions of a transformers cache and drop the rest (the rollback of rejected drafts)."""
    length = cache.get_seq_length()
    if not 0 <= keep <= length:
        raise ValueError(f"trim_cache: can keep 0..{length} positions of this cache, got keep={keep}")
    # BEGIN SOLUTION [spec-loop] transformers >= 5 crops with a negative count: the number of trailing positions to remove.
    if keep < length:
        cache.crop(keep - length)
    # END SOLUTION


def propose(draft, cache: DynamicCache, ids: torch.Tensor, k: int, temperature: float,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k draft tokens after `ids` (1, n), and the distributions they came from.

    Returns drafts (k,) and q (k, V) (for greedy, temperature 0, the argmax and a one-hot q). The draft's cache
    first catches up on the committed tokens it lacks; the last draft token itself is never fed (not needed yet).
    """
    # BEGIN SOLUTION [spec-loop] Feed ids[:, cache length:], then k steps of one token each; sample (or argmax) from each step's q.
    drafts, dists = [], []
    new = ids[:, cache.get_seq_length():]                       # (1, T): committed tokens the draft has not seen
    for _ in range(k):
        logits = feed(draft, cache, new)[-1]                    # (V,) next-token logits
        if temperature == 0:
            token = logits.argmax()
            q = F.one_hot(token, logits.numel()).float()
        else:
            q = to_probs(logits, temperature)
            token = torch.multinomial(q, 1, generator=generator)[0]
        drafts.append(token)
        dists.append(q)
        new = token.view(1, 1)
    if not drafts:
        return torch.empty(0, dtype=torch.long), torch.empty(0, vocab_size(draft))
    return torch.stack(drafts), torch.stack(dists)
    # END SOLUTION


def speculative_generate(target, draft, input_ids: torch.Tensor, max_new_tokens: int, k: int = 4, *,
                         temperature: float = 0.0, generator: torch.Generator | None = None,
                         eos_token_id: int | None = None) -> SpecResult:
    """Draft-then-verify decoding of exactly `max_new_tokens` tokens (fewer if `eos_token_id` comes first).

    temperature 0 is greedy (the target's greedy output); > 0 samples from softmax(logits / temperature) of the
    target, exactly. The draft never proposes past the budget: with r tokens left it drafts min(k, r - 1), since
    the verify pass always adds one token of its own.
    """
    if input_ids.dim() != 2 or input_ids.size(0) != 1 or input_ids.size(1) < 1:
        raise ValueError(f"speculative_generate: input_ids must be (1, n) with n >= 1 (one sequence), got "
                         f"{tuple(input_ids.shape)}")
    if not isinstance(k, int) or k < 0 or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"speculative_generate: k and max_new_tokens must be ints >= 0, got k={k!r}, "
                         f"max_new_tokens={max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"speculative_generate: temperature must be >= 0 (0 is greedy), got {temperature}")
    if vocab_size(target) != vocab_size(draft):
        raise ValueError(f"speculative_generate: the draft's vocabulary ({vocab_size(draft)}) differs from the "
                         f"target's ({vocab_size(target)}); both must use the same tokenizer")
    result = SpecResult(tokens=input_ids)
    target_cache, draft_cache = DynamicCache(), DynamicCache()
    ids, produced = input_ids, 0
    # BEGIN SOLUTION [spec-loop] Draft, verify all k+1 positions in one target call, commit m drafts + 1 token, trim both caches to the committed length - 1.
    while produced < max_new_tokens:
        k_now = min(k, max_new_tokens - produced - 1)
        drafts, q = propose(draft, draft_cache, ids, k_now, temperature, generator)          # (k,), (k, V)
        block = torch.cat([ids[:, target_cache.get_seq_length():], drafts.view(1, -1)], dim=1)
        logits = feed(target, target_cache, block, keep=k_now + 1)                          # (k + 1, V)
        if temperature == 0:
            m, token = verify_greedy(logits, drafts)
        else:
            m, token = verify_sampled(to_probs(logits, temperature), q, drafts, generator)
        new = torch.cat([drafts[:m], torch.tensor([token])]).view(1, -1)
        ids = torch.cat([ids, new], dim=1)
        produced += new.size(1)
        result.drafted.append(k_now)
        result.accepted.append(m)
        # roll back: both caches keep committed tokens only, never the last one (it is fed next time)
        trim_cache(target_cache, ids.size(1) - 1)
        trim_cache(draft_cache, min(draft_cache.get_seq_length(), ids.size(1) - 1))
        if eos_token_id is not None and eos_token_id in new[0].tolist():
            cut = input_ids.size(1) + ids[0, input_ids.size(1):].tolist().index(eos_token_id) + 1
            ids = ids[:, :cut]
            break
    # END SOLUTION
    result.tokens = ids
    return result


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int, eos_token_id: int | None = None):
    """Plain greedy decoding with a KV-cache, one target call per token: the baseline speculative decoding beats."""
    cache, ids = DynamicCache(), input_ids
    for _ in range(max_new_tokens):
        token = feed(model, cache, ids[:, cache.get_seq_length():])[-1].argmax().view(1, 1)
        ids = torch.cat([ids, token], dim=1)
        if eos_token_id is not None and int(token) == eos_token_id:
            break
    return ids


# ---------------------------------------------------------------------------------------------- speed-up math

def acceptance_rate(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """alpha = sum_x min(p(x), q(x)) = 1 - total variation distance; (..., V) -> (...)."""
    if p.shape != q.shape:
        raise ValueError(f"acceptance_rate: p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    # BEGIN SOLUTION [speedup-math] The overlap of the two distributions.
    return torch.minimum(p, q).sum(-1)
    # END SOLUTION


def _check_alpha_k(alpha: float, k: int, where: str) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{where}: alpha is a probability in [0, 1], got {alpha}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"{where}: k must be an int >= 0, got {k!r}")


def expected_tokens_per_iteration(alpha: float, k: int) -> float:
    """E[tokens emitted per target call] = 1 + alpha + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha).

    Each draft is accepted with probability alpha (taken as independent), so d_i survives with alpha^i; one more
    token (correction or bonus) always comes. At alpha = 1 the sum is k + 1.
    """
    _check_alpha_k(alpha, k, "expected_tokens_per_iteration")
    # BEGIN SOLUTION [speedup-math] Geometric series; its closed form divides by zero at alpha = 1, where every term is 1.
    if alpha == 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
    # END SOLUTION


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """Speed-up over plain decoding: tokens per iteration / cost of an iteration in target steps.

    An iteration costs k draft steps (c each, c = draft step time / target step time) and one target pass
    (taken as 1 target step, which holds while scoring k + 1 positions costs about as much as scoring one):
    speed-up = (1 - alpha^(k+1)) / ((1 - alpha)(1 + c k)).
    """
    if c < 0:
        raise ValueError(f"expected_speedup: the cost ratio c must be >= 0, got {c}")
    # BEGIN SOLUTION [speedup-math] Expected tokens divided by (1 + c k).
    return expected_tokens_per_iteration(alpha, k) / (1.0 + c * k)
    # END SOLUTION


def best_k(alpha: float, c: float, k_max: int = 16) -> tuple[int, float]:
    """The k in 0..k_max with the largest expected speed-up, and that speed-up (k = 0 is plain decoding, 1.0).
    On a tie the smaller k wins (less wasted draft work for the same speed)."""
    _check_alpha_k(alpha, k_max, "best_k")
    # BEGIN SOLUTION [speedup-math] Try every k; keep the first maximum.
    best = (0, expected_speedup(alpha, 0, c))
    for k in range(1, k_max + 1):
        speedup = expected_speedup(alpha, k, c)
        if speedup > best[1]:
            best = (k, speedup)
    return best
    # END SOLUTION


def estimate_alpha(drafted: list[int], accepted: list[int]) -> float:
    """alpha from a run's per-iteration counts, reading each iteration as Bernoulli(alpha) trials until the first
    rejection: m successes, plus one failure when m < k (none when all k passed). MLE = successes / trials."""
    if len(drafted) != len(accepted) or any(m > k or m < 0 for k, m in zip(drafted, accepted)):
        raise ValueError("estimate_alpha: need one (drafted k, accepted m) pair per iteration with 0 <= m <= k")
    # BEGIN SOLUTION [speedup-math] Successes = sum m; trials = sum (m + 1 if m < k else k).
    successes = sum(accepted)
    trials = sum(m + 1 if m < k else k for k, m in zip(drafted, accepted))
    return successes / trials if trials else float("nan")
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- a draft for SmolLM2

def shallow_draft(target, n_layers: int):
    """A self-draft: the target's first `n_layers` decoder layers, its final norm and its (tied) lm_head, as a
    LlamaForCausalLM of its own. It shares the tokenizer by construction and costs about n_layers / L of the
    blocks (plus the full vocabulary projection)."""
    if not 1 <= n_layers <= target.config.num_hidden_layers:
        raise ValueError(f"shallow_draft: n_layers must be in 1..{target.config.num_hidden_layers}, got {n_layers}")
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = n_layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:n_layers]
    draft = type(target)(config)
    missing, unexpected = draft.load_state_dict(target.state_dict(), strict=False)
    if [name for name in missing if "rotary" not in name]:
        raise RuntimeError(f"shallow_draft: weights missing from the target: {missing[:3]}")
    return draft.eval()


def chat_ids(tokenizer, prompt: str) -> torch.Tensor:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt")
    return ids if torch.is_tensor(ids) else ids["input_ids"]


PROMPTS = [
    "Explain why the sky is blue in three sentences.",
    "List five fruits and one fact about each.",
    "Write a Python function that returns the factorial of n.",
]


def save_plot(path, ks, measured, predicted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ks, measured, "o-", label="measured tokens per target call")
    ax.plot(ks, predicted, "s--", label="(1 - a^(k+1)) / (1 - a), a estimated")
    ax.plot(ks, [k + 1 for k in ks], ":", color="gray", label="k + 1 (every draft accepted)")
    ax.set_ylim(0.9, max(ks) + 1.2)
    ax.set_xticks(ks)
    ax.set_xlabel("k (draft tokens per iteration)")
    ax.set_ylabel("tokens per target call")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)   # never leave a half-written PNG under the final name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draft-layers", type=int, default=4, help="layers of SmolLM2 kept in the self-draft")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=1, help="how many of the built-in prompts to run (1-3)")
    parser.add_argument("--temperature", type=float, default=0.7, help="for the sampled run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; one is steadier on a shared CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labkit.seed_everything(args.seed)

    # the toy check first: exactness of the rule on a 4-token vocabulary, where everything can be counted
    p = torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4]])
    q = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
    gen, counts = torch.Generator().manual_seed(args.seed), torch.zeros(4)
    for _ in range(20_000):
        d = torch.multinomial(q[0], 1, generator=gen)
        m, token = verify_sampled(p, q, d, gen)
        counts[int(d[0]) if m == 1 else token] += 1
    print(f"toy vocab: target p = {[round(x, 2) for x in p[0].tolist()]}, draft q = "
          f"{[round(x, 2) for x in q[0].tolist()]}, alpha = "
          f"{float(acceptance_rate(p[0], q[0])):.2f}; first emitted token over 20,000 draws: "
          f"{[round(x, 3) for x in (counts / counts.sum()).tolist()]}")

    from labkit.assets import smollm2

    target, tokenizer = smollm2()
    draft = shallow_draft(target, args.draft_layers)
    n_target = sum(p.numel() for p in target.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    print(f"target: SmolLM2-135M-Instruct, {target.config.num_hidden_layers} layers, {n_target / 1e6:.0f}M params; "
          f"draft: its first {args.draft_layers} layers + norm + lm_head, {n_draft / 1e6:.0f}M params")
    prompts = [chat_ids(tokenizer, text) for text in PROMPTS[:args.prompts]]
    eos = tokenizer.eos_token_id


    start = time.perf_counter()
    baseline = [greedy_generate(target, ids, args.new_tokens, eos) for ids in tqdm(prompts, desc="plain greedy")]
    t_plain = time.perf_counter() - start
    n_plain = sum(out.size(1) - ids.size(1) for out, ids in zip(baseline, prompts))
    print(f"\nplain greedy: {n_plain} tokens in {t_plain:.1f} s ({n_plain / t_plain:.1f} tok/s)")
    print(f"--- {PROMPTS[0]!r} ->\n{tokenizer.decode(baseline[0][0, prompts[0].size(1):])}\n---")
    measured, predicted = [], []
    for k in args.ks:
        start = time.perf_counter()
        runs = [speculative_generate(target, draft, ids, args.new_tokens, k, eos_token_id=eos)
                for ids in tqdm(prompts, desc=f"speculative k={k}")]
        seconds = time.perf_counter() - start
        same = all(torch.equal(run.tokens, ref) for run, ref in zip(runs, baseline))
        drafted = [d for run in runs for d in run.drafted]
        accepted = [m for run in runs for m in run.accepted]
        alpha = estimate_alpha(drafted, accepted)
        per_call = sum(run.tokens.size(1) - ids.size(1) for run, ids in zip(runs, prompts)) / len(drafted)
        measured.append(per_call)
        predicted.append(expected_tokens_per_iteration(alpha, k))
        print(f"k={k}: acceptance {sum(accepted) / max(sum(drafted), 1):.2f} (alpha {alpha:.2f}), {per_call:.2f} "
              f"tokens per target call, {seconds:.1f} s, speed-up {t_plain / seconds:.2f}x, same tokens as "
              f"plain greedy: {same}")

    gen = torch.Generator().manual_seed(args.seed)
    run = speculative_generate(target, draft, prompts[0], args.new_tokens, 2, temperature=args.temperature,
                               generator=gen, eos_token_id=eos)
    print(f"\nsampled at T={args.temperature}, k=2: acceptance {run.acceptance:.2f}\n"
          f"{tokenizer.decode(run.tokens[0, prompts[0].size(1):])}\n---")
    for alpha, c in ((0.8, 0.1), (0.6, 0.3)):
        k, s = best_k(alpha, c)
        print(f"formula: alpha={alpha}, c={c}: best k={k}, expected speed-up {s:.2f}x")
    path = labkit.output_dir(__file__) / "tokens_per_call.png"
    save_plot(path, args.ks, measured, predicted)
    print(f"plot: {path}")


if __name__ == "__main__":
    labkit.run(main)
