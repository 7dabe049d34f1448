"""GRPO: reinforcement learning with a verifiable reward and no value model.

For each prompt the policy samples a GROUP of G answers; each answer gets a reward from a program that checks it
(here: is the sum right?). An answer's advantage is its reward relative to its own group,
A_i = (r_i - mean(r_group)) / (std(r_group) + eps), so no learned critic is needed. The policy then climbs the
PPO-style clipped surrogate, min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A), token by token, minus
beta times a KL penalty that keeps it near a frozen reference model, estimated per token with
k3 = exp(ref - logp) - (ref - logp) - 1 (unbiased, and never negative).

You write: the verifiable reward, group-relative advantages, the k3 KL estimator, per-token log-probs of sampled
completions, the GRPO loss (equal to trl 1.16's GRPOTrainer loss on the same batch), group sampling, and the
training step. The task is single-digit addition ("7+5=" -> "12") with a character vocabulary and a tiny Llama,
so the whole loop runs in seconds on a CPU: a short supervised warm-up gives the policy some correct answers to
learn from (GRPO cannot learn from groups where every reward is 0), then GRPO raises held-out accuracy.
DAPO's options are here too: clip-higher (eps_high > eps_low), token-level loss aggregation and dynamic sampling.

The second half distils chain-of-thought: a teacher trained (SFT, then GRPO) to write one reasoning step before the
answer of a+b+c ("3+4+5=" -> "7+5=12") is sampled on the training sums; rejection sampling keeps the distinct
traces whose answer and step verify, never a held-out sum (you write the filter); a smaller student is fine-tuned on
them with plain SFT (you write the targets, with loss on completion tokens only, and the loop), and its held-out
accuracy is compared with the same student trained on the answers alone (`python solution.py --distill`).
"""
from __future__ import annotations

import argparse
import copy
import random
import re
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

import labkit  # noqa: E402

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
CHARS = list("0123456789+=")
VOCAB = [PAD, BOS, EOS] + CHARS
STOI = {s: i for i, s in enumerate(VOCAB)}
PAD_ID, BOS_ID, EOS_ID = STOI[PAD], STOI[BOS], STOI[EOS]


# ---------------------------------------------------------------- task, vocabulary and model (given)

def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


def decode(ids) -> str:
    """Characters up to (not including) the first <eos>. Any other special token becomes "?", so a completion
    such as "1<pad>2" can never pass for "12"."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        out.append("?" if i in (PAD_ID, BOS_ID) else VOCAB[i])
    return "".join(out)


def make_problems(seed: int = 0, held_out: int = 20) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All 100 single-digit sums a+b, shuffled, split into (train, held-out)."""
    pairs = [(a, b) for a in range(10) for b in range(10)]
    random.Random(seed).shuffle(pairs)
    return pairs[held_out:], pairs[:held_out]


def prompt_ids(problems: list[tuple[int, int]]) -> torch.Tensor:
    """(N, 5): <bos> a + b =  (every prompt has the same length, so no padding is needed)."""
    return torch.tensor([[BOS_ID] + encode(f"{a}+{b}=") for a, b in problems])


def tiny_policy(hidden: int = 64, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=32, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    return LlamaForCausalLM(config)


def sft_warmup(model, problems, steps: int = 60, lr: float = 3e-3, batch_size: int = 32, seed: int = 0) -> float:
    """Supervised steps on `problems` (cross-entropy on the answer and <eos> only): enough to get a few answers
    right so that GRPO has a signal. Returns the last loss."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        batch = [rng.choice(problems) for _ in range(batch_size)]
        seqs = [[BOS_ID] + encode(f"{a}+{b}=") + encode(str(a + b)) + [EOS_ID] for a, b in batch]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in seqs])
        labels = ids.clone()
        labels[:, :5] = -100  # the prompt carries no loss
        labels[ids == PAD_ID] = -100
        loss = model(input_ids=ids, attention_mask=(ids != PAD_ID).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


# ---------------------------------------------------------------- reward

def parse_answer(completion: str) -> int | None:
    """The final answer: the LAST integer written in the completion (GSM8K-style graders do the same), e.g.
    "12" -> 12, "3+4 is 7." -> 7, "-3" -> -3; None when the text holds no digit."""
    # BEGIN SOLUTION [verifiable-reward] re.findall an optional minus and a run of digits; int() the last match.
    found = re.findall(r"-?\d+", completion)
    return int(found[-1]) if found else None
    # END SOLUTION


def addition_reward(problems: list[tuple[int, ...]], completions: list[str]) -> torch.Tensor:
    """(N,) float rewards: 1.0 when parse_answer(completion) equals the sum of the problem's numbers exactly
    (a + b for (a, b), a + b + c for (a, b, c)), else 0.0 (unparsable = 0)."""
    if len(problems) != len(completions):
        raise ValueError(f"need one completion per problem, got {len(problems)} problems and "
                         f"{len(completions)} completions")
    # BEGIN SOLUTION [verifiable-reward] Exact match of the parsed answer against the sum of the problem's numbers.
    return torch.tensor([float(parse_answer(c) == sum(nums)) for nums, c in zip(problems, completions)])
    # END SOLUTION


# ---------------------------------------------------------------- the GRPO pieces

def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(N*G,) rewards, groups contiguous -> (N*G,) advantages (r - mean_group) / (std_group + eps).
    std is the sample standard deviation (Bessel's correction, n-1), as in trl; a group whose rewards are all
    equal gets advantage 0 for every member."""
    if rewards.dim() != 1 or rewards.numel() % group_size or group_size < 2:
        raise ValueError(f"need a 1-D reward tensor whose length is a multiple of group_size >= 2, got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    # BEGIN SOLUTION [group-advantages] View as (N, G); mean and std(unbiased) over dim 1; broadcast back; flatten.
    grouped = rewards.view(-1, group_size)  # (N, G)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)  # unbiased (n - 1)
    return ((grouped - mean) / (std + eps)).view(-1)
    # END SOLUTION


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from log-probs of tokens SAMPLED FROM pi:
    k3 = exp(ref - logp) - (ref - logp) - 1. Its expectation under pi is exactly the KL, and each term is >= 0
    (because e^x >= 1 + x)."""
    # BEGIN SOLUTION [kl-estimator] d = ref_logp - logp; exp(d) - d - 1.
    d = ref_logp - logp
    return torch.exp(d) - d - 1
    # END SOLUTION


def completion_logprobs(model, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """Log-probs of each completion token given everything before it: (N, P) prompts and (N, C) completions ->
    (N, C). Run the model once on the concatenation (no attention mask needed: padding comes only after the
    completion's <eos>, and positions after it are masked out of every loss)."""
    # BEGIN SOLUTION [token-logprobs] Logits at positions P-1 .. P+C-2 predict the C completion tokens.
    ids = torch.cat([prompts, completions], dim=1)  # (N, P + C)
    p = prompts.size(1)
    logits = model(input_ids=ids).logits[:, p - 1:-1]  # (N, C, V)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    # END SOLUTION


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, *, beta: float = 0.04, eps_low: float = 0.2, eps_high: float | None = None,
              aggregation: str = "sequence") -> torch.Tensor:
    """The GRPO objective as a loss to minimise. All per-token tensors are (N, C); advantages (N,).

    ratio = exp(logp - old_logp); per token: -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
    + beta * k3(logp, ref_logp) (the KL term is skipped when beta == 0). eps_high=None means eps_low (symmetric;
    DAPO's clip-higher uses e.g. 0.28). Aggregation: "sequence" (GRPO paper, trl loss_type="grpo"): mean over
    each sequence's masked tokens, then mean over sequences; "token" (DAPO, trl "bnpo"/"dapo" on one batch):
    sum over all masked tokens / number of masked tokens, so long answers are not down-weighted."""
    if aggregation not in ("sequence", "token"):
        raise ValueError(f"aggregation must be 'sequence' or 'token', got {aggregation!r}")
    if beta != 0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp (the frozen reference model's log-probs)")
    eps_high = eps_low if eps_high is None else eps_high
    # BEGIN SOLUTION [grpo-loss] Ratio, clipped surrogate with A broadcast over tokens, + beta*k3, masked aggregation.
    adv = advantages.unsqueeze(1)  # (N, 1): one advantage for every token of a sequence
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (N, C)
    if beta != 0:
        per_token = per_token + beta * kl_k3(logp, ref_logp)
    mask = mask.to(per_token.dtype)
    if aggregation == "sequence":
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
    # END SOLUTION


# ---------------------------------------------------------------- sampling and the training step

@torch.no_grad()
def sample_completions(model, prompts: torch.Tensor, group_size: int, max_new_tokens: int = 3,
                       temperature: float = 1.0, generator: torch.Generator | None = None, eos_id: int = EOS_ID,
                       pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G samples per prompt. Returns (prompts repeated, (N*G, P); completions, (N*G, C); mask, (N*G, C)), where
    the rows of one prompt are contiguous (prompt 0's G samples first). Each step samples from
    softmax(logits / temperature) with torch.multinomial(..., generator=generator); after a row emits <eos> it
    gets <pad> and mask 0. The mask is 1 on every sampled token up to and including the first <eos>."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive for sampling, got {temperature}")
    # BEGIN SOLUTION [rollout] repeat_interleave the prompts; loop max_new_tokens steps; track which rows finished.
    ids = prompts.repeat_interleave(group_size, dim=0)  # (N*G, P)
    done = torch.zeros(ids.size(0), dtype=torch.bool)
    new, mask = [], []
    seq = ids
    for _ in range(max_new_tokens):
        logits = model(input_ids=seq).logits[:, -1].float() / temperature  # (N*G, V)
        tok = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        mask.append(~done)
        new.append(tok)
        done = done | (tok == eos_id)
        seq = torch.cat([seq, tok[:, None]], dim=1)
    return ids, torch.stack(new, 1), torch.stack(mask, 1).long()
    # END SOLUTION


@torch.no_grad()
def greedy_accuracy(model, problems: list[tuple[int, int]], max_new_tokens: int = 3) -> float:
    """Share of problems answered exactly with greedy decoding."""
    model.eval()
    seq = prompt_ids(problems)
    p = seq.size(1)
    for _ in range(max_new_tokens):
        seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return addition_reward(problems, [decode(row[p:]) for row in seq]).mean().item()


@torch.no_grad()
def sampled_reward(model, problems: list[tuple[int, int]], samples: int = 16, temperature: float = 1.0,
                   seed: int = 1234) -> float:
    """Mean reward of `samples` sampled answers per problem (pass@1 at this temperature), with a fixed seed."""
    model.eval()
    _, completions, _ = sample_completions(model, prompt_ids(problems), samples, temperature=temperature,
                                           generator=torch.Generator().manual_seed(seed))
    rows = [p for p in problems for _ in range(samples)]
    return addition_reward(rows, [decode(c) for c in completions]).mean().item()


@dataclass
class GRPOConfig:
    group_size: int = 8
    prompts_per_step: int = 16
    lr: float = 5e-4
    beta: float = 0.04
    eps_low: float = 0.2
    eps_high: float | None = None  # DAPO clip-higher: 0.28
    aggregation: str = "sequence"  # DAPO: "token"
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal (they carry no gradient)
    inner_steps: int = 1  # mu: updates per batch of samples (ratio != 1 from the second one on)
    temperature: float = 1.0
    max_new_tokens: int = 3


def grpo_step(policy, ref, opt, problems: list[tuple[int, int]], cfg: GRPOConfig,
              generator: torch.Generator | None = None, *, prompts_fn=prompt_ids, decode_fn=decode,
              eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> dict:
    """One GRPO iteration on `problems`: sample G completions each, score them, compute group advantages, then
    `cfg.inner_steps` gradient steps on grpo_loss with old log-probs frozen from sampling time.
    prompts_fn(problems) -> (N, P) ids and decode_fn(completion ids) -> text adapt it to another tokenizer.
    Returns {"reward": mean reward of the samples, "loss": last loss, "kept_groups": groups used}."""
    # BEGIN SOLUTION [grpo-train] Sample (eval mode) -> rewards -> advantages -> optional group filter -> mu updates.
    policy.eval()
    prompts, completions, mask = sample_completions(policy, prompts_fn(problems), cfg.group_size,
                                                    cfg.max_new_tokens, cfg.temperature, generator, eos_id, pad_id)
    per_row = [p for p in problems for _ in range(cfg.group_size)]
    rewards = addition_reward(per_row, [decode_fn(c) for c in completions])  # (N*G,)
    advantages = group_advantages(rewards, cfg.group_size)
    keep = torch.ones_like(rewards, dtype=torch.bool)
    if cfg.dynamic_sampling:
        keep = (rewards.view(-1, cfg.group_size).std(1) > 0).repeat_interleave(cfg.group_size)
    stats = {"reward": rewards.mean().item(), "loss": 0.0, "kept_groups": int(keep.sum()) // cfg.group_size}
    if not keep.any():
        return stats
    prompts, completions, mask, advantages = prompts[keep], completions[keep], mask[keep], advantages[keep]
    with torch.no_grad():
        old_logp = completion_logprobs(policy, prompts, completions)
        ref_logp = completion_logprobs(ref, prompts, completions) if cfg.beta != 0 else None
    policy.train()
    for _ in range(cfg.inner_steps):
        logp = completion_logprobs(policy, prompts, completions)
        loss = grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta=cfg.beta, eps_low=cfg.eps_low,
                         eps_high=cfg.eps_high, aggregation=cfg.aggregation)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    stats["loss"] = loss.item()
    return stats
    # END SOLUTION


def train_grpo(policy, train: list[tuple[int, int]], held_out: list[tuple[int, int]], steps: int, cfg: GRPOConfig,
               seed: int = 0, eval_every: int = 10, progress: bool = False) -> dict:
    """The loop: a frozen copy of the starting policy is the reference; returns reward and accuracy histories."""
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    history = {"step": [], "reward": [], "eval_step": [0], "held_out": [sampled_reward(policy, held_out)]}
    for step in tqdm(range(1, steps + 1), disable=not progress, desc="GRPO"):
        stats = grpo_step(policy, ref, opt, [rng.choice(train) for _ in range(cfg.prompts_per_step)], cfg, gen)
        history["step"].append(step)
        history["reward"].append(stats["reward"])
        if step % eval_every == 0 or step == steps:
            history["eval_step"].append(step)
            history["held_out"].append(sampled_reward(policy, held_out))
    return history


def plot_history(history: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(history["step"], history["reward"], alpha=0.5, label="mean sampled reward (train prompts)")
    ax.plot(history["eval_step"], history["held_out"], "o-", label="sampled reward (held-out prompts)")
    ax.set(xlabel="GRPO step", ylabel="reward / accuracy", ylim=(0, 1.02), title="GRPO on single-digit addition")
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # atomic


# ---------------------------------------------------------------- chain-of-thought distillation
# The task: sums of three single digits, "3+4+5=". A teacher is taught to write one step of reasoning first,
# the partial sum rewritten as a two-number problem, then the answer: "3+4+5=" -> "7+5=12". The reward still
# reads the LAST number (12), so GRPO and rejection sampling work on the trace unchanged. No new symbols needed.

def make_triples(seed: int = 0, held_out: int = 200) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """All 1,000 sums a+b+c of single digits, shuffled, split into (train, held-out)."""
    triples = [(a, b, c) for a in range(10) for b in range(10) for c in range(10)]
    random.Random(seed).shuffle(triples)
    return triples[held_out:], triples[:held_out]


def triple_prompt(problem: tuple[int, ...]) -> str:
    return "+".join(map(str, problem)) + "="


def triple_prompt_ids(problems: list[tuple[int, ...]]) -> torch.Tensor:
    """(N, 7): <bos> a + b + c =  (equal lengths, no padding)."""
    return torch.tensor([[BOS_ID] + encode(triple_prompt(p)) for p in problems])


def cot_text(problem: tuple[int, int, int]) -> str:
    """The reasoning trace the teacher learns to write: partial sum, then the last addition, "7+5=12"."""
    a, b, c = problem
    return f"{a + b}+{c}={a + b + c}"


def answer_text(problem: tuple[int, ...]) -> str:
    return str(sum(problem))


COT_TOKENS = 8  # longest trace "18+9=27" is 7 symbols, plus <eos>


def sft_batch(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Supervised targets for (prompt, completion) text pairs. Each row is <bos> prompt completion <eos>,
    right-padded with <pad> to the longest row. Returns (ids, labels, attention_mask), all (N, T):
    labels equal ids on the completion's tokens and its <eos>, and -100 (ignored by the cross-entropy) on <bos>,
    the prompt and the padding; attention_mask is 1 on real tokens, 0 on padding. (LlamaForCausalLM shifts the
    labels itself: position t's logits are scored against labels[t + 1].)"""
    if not pairs:
        raise ValueError("sft_batch needs at least one (prompt, completion) pair")
    # BEGIN SOLUTION [sft-targets] Build each row and its label row side by side; pad both; mask = row is not padding.
    rows, label_rows = [], []
    for prompt, completion in pairs:
        head = [BOS_ID] + encode(prompt)  # carries no loss
        tail = encode(completion) + [EOS_ID]  # the model learns to write these
        rows.append(head + tail)
        label_rows.append([-100] * len(head) + tail)
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, labels, attention_mask
    # END SOLUTION


def sft_train(model, pairs: list[tuple[str, str]], steps: int, lr: float = 3e-3, batch_size: int = 32,
              seed: int = 0) -> list[float]:
    """Plain SFT on (prompt, completion) pairs: `steps` AdamW steps, each on a batch of `batch_size` pairs drawn
    with replacement by rng.choice, rng = random.Random(seed); the loss is the model's cross-entropy on
    sft_batch's labels. Leaves the model in eval mode; returns the loss of every step."""
    if not pairs:
        raise ValueError("sft_train needs at least one (prompt, completion) pair; is the distillation set empty?")
    # BEGIN SOLUTION [distill-student] Sample a batch, sft_batch it, model(..., labels=...).loss, zero_grad/backward/step.
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        ids, labels, attention_mask = sft_batch([rng.choice(pairs) for _ in range(batch_size)])
        loss = model(input_ids=ids, attention_mask=attention_mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses
    # END SOLUTION


def trace_is_valid(problem: tuple[int, int, int], completion: str, check_steps: bool = True) -> bool:
    """Rejection-sampling filter for one sampled completion. The final answer (the last number) must equal
    a + b + c. With check_steps, a completion that shows work must show it correctly: it must read exactly
    "x+y=z" with x = a + b, y = c and z = x + y (a right answer reached through a wrong step is rejected);
    one that shows no work (no "=") is judged on its answer alone."""
    # BEGIN SOLUTION [rejection-sampling] Reward first; then, if there is an "=", fullmatch x+y=z and check each number.
    if parse_answer(completion) != sum(problem):
        return False
    if not check_steps or "=" not in completion:
        return True
    step = re.fullmatch(r"(\d+)\+(\d+)=(\d+)", completion)
    if step is None:
        return False
    x, y, z = map(int, step.groups())
    a, b, c = problem
    return x == a + b and y == c and z == x + y
    # END SOLUTION


def build_distill_set(rows: list[tuple[int, int, int]], completions: list[str], held_out: list[tuple[int, int, int]],
                      check_steps: bool = True) -> tuple[list[tuple[tuple[int, int, int], str]], dict]:
    """Rejection sampling: row i is the problem completion i was sampled for. Keep the (problem, completion) pairs
    that pass trace_is_valid, never one whose problem is held out, each distinct pair once, in order of first
    appearance. Returns (kept, counts) with counts = {"sampled": all completions, "held_out": completions dropped
    because their problem is held out, "verified": completions of training problems that pass the filter
    (duplicates included), "kept": distinct pairs kept, "problems": distinct problems among them}."""
    if len(rows) != len(completions):
        raise ValueError(f"need one problem per completion, got {len(rows)} problems and {len(completions)} "
                         f"completions")
    # BEGIN SOLUTION [rejection-sampling] One pass: skip held-out rows, filter with trace_is_valid, dedupe with a set.
    banned = set(held_out)
    seen, kept = set(), []
    counts = {"sampled": len(completions), "held_out": 0, "verified": 0, "kept": 0, "problems": 0}
    for problem, text in zip(rows, completions):
        if problem in banned:
            counts["held_out"] += 1
            continue
        if not trace_is_valid(problem, text, check_steps):
            continue
        counts["verified"] += 1
        if (problem, text) not in seen:
            seen.add((problem, text))
            kept.append((problem, text))
    counts["kept"] = len(kept)
    counts["problems"] = len({p for p, _ in kept})
    return kept, counts
    # END SOLUTION


@torch.no_grad()
def sample_teacher(teacher, problems: list[tuple[int, int, int]], samples: int, generator: torch.Generator,
                   temperature: float = 1.0) -> tuple[list[tuple[int, int, int]], list[str]]:
    """`samples` completions per problem from the teacher: (the problem of each row, the decoded texts)."""
    teacher.eval()
    _, completions, _ = sample_completions(teacher, triple_prompt_ids(problems), samples, COT_TOKENS, temperature,
                                           generator)
    return [p for p in problems for _ in range(samples)], [decode(c) for c in completions]


@torch.no_grad()
def greedy_texts(model, problems: list[tuple[int, ...]], max_new_tokens: int = COT_TOKENS) -> list[str]:
    """Greedy completions of "a+b+c=" prompts, decoded up to <eos>."""
    model.eval()
    seq = triple_prompt_ids(problems)
    p = seq.size(1)
    for _ in range(max_new_tokens):
        seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return [decode(row[p:]) for row in seq]


def triple_accuracy(model, problems: list[tuple[int, int, int]]) -> float:
    """Share of problems whose greedy completion's last number is a + b + c (the trace itself is not graded)."""
    return addition_reward(problems, greedy_texts(model, problems)).mean().item()


def train_teacher(train: list[tuple[int, int, int]], held_out: list[tuple[int, int, int]], warmup_steps: int,
                  grpo_steps: int, seed: int = 0, progress: bool = False) -> tuple[torch.nn.Module, dict]:
    """The teacher: a tiny Llama (hidden 64, 2 layers) taught the trace format by SFT on the training problems,
    then improved with GRPO on the same problems (the lab's grpo_step, 8-token completions)."""
    teacher = tiny_policy(seed=seed)
    sft_train(teacher, [(triple_prompt(p), cot_text(p)) for p in train], warmup_steps, seed=seed)
    report = {"after_sft": triple_accuracy(teacher, held_out)}
    ref = copy.deepcopy(teacher).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    cfg = GRPOConfig(max_new_tokens=COT_TOKENS, inner_steps=2)
    opt = torch.optim.AdamW(teacher.parameters(), lr=cfg.lr)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in tqdm(range(grpo_steps), disable=not progress, desc="teacher GRPO"):
        grpo_step(teacher, ref, opt, [rng.choice(train) for _ in range(cfg.prompts_per_step)], cfg, gen,
                  prompts_fn=triple_prompt_ids)
    report["after_grpo"] = triple_accuracy(teacher, held_out)
    return teacher, report


def compare_students(kept: list[tuple[tuple[int, int, int], str]], held_out: list[tuple[int, int, int]],
                     seeds: list[int], steps: int, hidden: int = 32, layers: int = 1,
                     progress: bool = False) -> dict[str, list[float]]:
    """Held-out accuracy of a smaller student trained `steps` SFT steps on the distilled traces, and of the same
    student trained the same steps on the same problems with the answer alone ("3+4+5=" -> "12")."""
    problems = list(dict.fromkeys(p for p, _ in kept))
    data = {"cot": [(triple_prompt(p), text) for p, text in kept],
            "answer-only": [(triple_prompt(p), answer_text(p)) for p in problems]}
    results = {name: [] for name in data}
    for seed in tqdm(seeds, disable=not progress, desc="students"):
        for name, pairs in data.items():
            student = tiny_policy(hidden=hidden, layers=layers, seed=seed)
            sft_train(student, pairs, steps, seed=seed)
            results[name].append(triple_accuracy(student, held_out))
    return results


# ---------------------------------------------------------------- demo

def plot_students(results: dict[str, list[float]], teacher_accuracy: float, path) -> None:
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for i, (name, accs) in enumerate(results.items()):
        ax.scatter([i] * len(accs), accs, color=f"C{i}", zorder=3)
        ax.bar(i, sum(accs) / len(accs), width=0.5, color=f"C{i}", alpha=0.35, label=f"{name} (mean {sum(accs) / len(accs):.2f})")
    ax.axhline(teacher_accuracy, color="gray", ls="--", label=f"teacher {teacher_accuracy:.2f}")
    ax.set(xticks=range(len(results)), xticklabels=list(results), ylim=(0, 1.02), ylabel="held-out greedy accuracy",
           title="student trained on verified traces vs on answers alone")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # atomic


def distill_demo(args) -> None:
    train, held_out = make_triples(args.seed, args.held_out)
    print(f"task: a+b+c with a reasoning trace ({cot_text((3, 4, 5))!r} for 3+4+5=); {len(train)} training sums, "
          f"{len(held_out)} held-out sums")
    t0 = time.time()
    teacher, report = train_teacher(train, held_out, args.teacher_warmup, args.teacher_grpo, args.seed, progress=True)
    print(f"teacher (hidden 64, 2 layers, {sum(p.numel() for p in teacher.parameters()):,} parameters): held-out "
          f"greedy accuracy {report['after_sft']:.3f} after {args.teacher_warmup} SFT steps, {report['after_grpo']:.3f} "
          f"after {args.teacher_grpo} GRPO steps ({time.time() - t0:.1f} s)")
    rows, texts = sample_teacher(teacher, train, args.samples, torch.Generator().manual_seed(args.seed))
    kept, counts = build_distill_set(rows, texts, held_out)
    print(f"rejection sampling: {counts['sampled']} samples ({args.samples} per training sum, T=1), "
          f"{counts['verified']} verified, {counts['kept']} distinct traces kept for {counts['problems']} sums; "
          f"e.g. {kept[0][0]} -> {kept[0][1]!r}")
    seeds = list(range(args.student_seeds))
    t0 = time.time()
    results = compare_students(kept, held_out, seeds, args.student_steps, args.student_hidden, args.student_layers,
                               progress=True)
    student = tiny_policy(hidden=args.student_hidden, layers=args.student_layers)
    print(f"students (hidden {args.student_hidden}, {args.student_layers} layer(s), "
          f"{sum(p.numel() for p in student.parameters()):,} parameters), "
          f"{args.student_steps} SFT steps each, held-out greedy accuracy ({time.time() - t0:.1f} s):")
    for name, accs in results.items():
        mean = sum(accs) / len(accs)
        print(f"  {name:12} " + " ".join(f"{a:.3f}" for a in accs) + f"   mean {mean:.3f}  (min {min(accs):.3f}, "
              f"max {max(accs):.3f}; seeds {seeds[0]}-{seeds[-1]})")
    path = labkit.output_dir(__file__) / "distill_students.png"
    plot_students(results, report["after_grpo"], path)
    print(f"plot: {path.relative_to(labkit.ROOT)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="GRPO iterations")
    parser.add_argument("--warmup-steps", type=int, default=150, help="supervised steps before GRPO")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--dapo", action="store_true", help="clip-higher 0.28, token-level loss, dynamic sampling")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distill", action="store_true",
                        help="the distillation half: a+b+c teacher with a reasoning trace -> smaller students")
    parser.add_argument("--held-out", type=int, default=200, help="--distill: held-out sums of the 1,000 a+b+c")
    parser.add_argument("--teacher-warmup", type=int, default=300, help="--distill: teacher SFT steps")
    parser.add_argument("--teacher-grpo", type=int, default=20, help="--distill: teacher GRPO steps")
    parser.add_argument("--samples", type=int, default=4, help="--distill: teacher samples per training sum")
    parser.add_argument("--student-steps", type=int, default=300, help="--distill: SFT steps per student")
    parser.add_argument("--student-seeds", type=int, default=3, help="--distill: students per kind")
    parser.add_argument("--student-hidden", type=int, default=32, help="--distill: student width")
    parser.add_argument("--student-layers", type=int, default=1, help="--distill: student depth")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.distill:
        distill_demo(args)
        return
    train, held_out = make_problems(args.seed)
    policy = tiny_policy(seed=args.seed)
    print(f"policy: tiny Llama, {sum(p.numel() for p in policy.parameters()):,} parameters; "
          f"{len(train)} training sums, {len(held_out)} held-out sums")
    t0 = time.time()
    sft_loss = sft_warmup(policy, train, steps=args.warmup_steps, seed=args.seed)
    print(f"warm-up: {args.warmup_steps} supervised steps on the training sums, loss {sft_loss:.3f} "
          f"({time.time() - t0:.1f} s)")
    greedy_before = greedy_accuracy(policy, held_out)
    cfg = GRPOConfig(group_size=args.group_size, beta=args.beta)
    if args.dapo:
        cfg.eps_high, cfg.aggregation, cfg.dynamic_sampling = 0.28, "token", True
    t0 = time.time()
    history = train_grpo(policy, train, held_out, args.steps, cfg, seed=args.seed, progress=True)
    first, last = history["reward"][:5], history["reward"][-5:]
    print(f"GRPO ({'DAPO options' if args.dapo else 'plain'}): {args.steps} steps x {cfg.prompts_per_step} prompts "
          f"x {cfg.group_size} samples in {time.time() - t0:.1f} s")
    print(f"  sampled reward, first 5 steps {sum(first) / len(first):.3f} -> last 5 steps {sum(last) / len(last):.3f}")
    print(f"  held-out sampled reward (16 samples each, T=1) {history['held_out'][0]:.3f} -> "
          f"{history['held_out'][-1]:.3f}; held-out greedy accuracy {greedy_before:.2f} -> "
          f"{greedy_accuracy(policy, held_out):.2f}")
    for a, b in held_out[:6]:
        seq = prompt_ids([(a, b)])
        for _ in range(3):
            seq = torch.cat([seq, policy(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        print(f"  {a}+{b}= {decode(seq[0, 5:])!r:6} {'ok' if decode(seq[0, 5:]) == str(a + b) else 'wrong'}")
    path = labkit.output_dir(__file__) / "grpo_reward.png"
    plot_history(history, path)
    print(f"plot: {path.relative_to(labkit.ROOT)}")


if __name__ == "__main__":
    labkit.run(main)
