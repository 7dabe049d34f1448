"""Reward modelling and DPO: learning from pairs of answers where one is preferred.

You build, one piece at a time:
- the Bradley-Terry pairwise loss, -log sigmoid(r_chosen - r_rejected), and a reward model: a transformers
  backbone (AutoModel) with a scalar head read at each sequence's last real token;
- sequence log-probabilities log pi(y | x): the sum of the completion tokens' log-probs, the prompt masked out;
- the DPO loss from scratch, -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]),
  equal to trl's on the same log-probs (and exactly ln 2 while the policy equals the reference), with IPO and KTO
  as options;
- the implicit reward beta * log(pi / ref) and the preference accuracy it gives on held-out pairs;
- a DPO run with trl's DPOTrainer (the library you would use on a 7B model) on a tiny Llama and, with
  `--model smollm2`, on SmolLM2-135M-Instruct.

The preference data is generated: each prompt gets a "kind" answer (chosen) and a "rude" answer (rejected), built
from two disjoint word lists, so a tiny model can learn the preference in seconds and held-out accuracy means
something: the held-out pairs are new combinations of words.
"""
from __future__ import annotations

import argparse
import copy
import math
import random
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import datasets  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402

import labkit  # noqa: E402

TOPICS = ("weather garden music dinner travel books coffee exams weekend movies football painting laundry "
          "budget picnic homework").split()
KIND = "thanks glad happy please sure lovely welcome kindly great cheers".split()
RUDE = "whatever boring stupid ugh nope annoying lame useless awful meh".split()
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
LOSS_TYPES = ("sigmoid", "ipo", "kto")


# ---------------------------------------------------------------- tiny model, tokenizer and data (given)

def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the lab's words (built in memory, no files)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = list(SPECIALS) + sorted(set(TOPICS + KIND + RUDE + ["user:", "bot:", "tell", "me", "about"]))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def tiny_llama(vocab_size: int, hidden: int = 64, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def preference_pairs(n: int, seed: int = 0, words: int = 3) -> list[dict]:
    """n {"prompt", "chosen", "rejected"} rows. The completions start with a space: trl tokenizes prompt+chosen
    as one string."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        rows.append({"prompt": f"user: tell me about {topic} bot:",
                     "chosen": " " + " ".join(rng.choice(KIND) for _ in range(words)),
                     "rejected": " " + " ".join(rng.choice(RUDE) for _ in range(words))})
    return rows


def encode_pairs(tokenizer, rows: list[dict]) -> dict[str, torch.Tensor]:
    """The batch layout trl uses: chosen sequences, then rejected ones, each prompt + completion + eos, right-padded;
    completion_mask is 1 on completion tokens (eos included)."""
    seqs, masks = [], []
    for key in ("chosen", "rejected"):
        for row in rows:
            p = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            c = tokenizer(row[key], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            seqs.append(p + c)
            masks.append([0] * len(p) + [1] * len(c))
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    return {"input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
            "completion_mask": torch.tensor([m + [0] * (width - len(m)) for m in masks])}


# ---------------------------------------------------------------- reward model

def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r); the loss is its mean negative log-likelihood.
    Use logsigmoid (stable for large margins), never log(sigmoid(.))."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen and r_rejected must have the same shape, got {tuple(r_chosen.shape)} and "
                         f"{tuple(r_rejected.shape)}")
    # BEGIN SOLUTION [reward-model] Mean of -logsigmoid of the margin.
    return -F.logsigmoid(r_chosen - r_rejected).mean()
    # END SOLUTION


class RewardModel(nn.Module):
    """A transformers backbone (AutoModel: no LM head) and a linear head to one scalar. The score of a sequence
    is the head applied to the hidden state of its LAST REAL token (the one before the right padding), the only
    position that has seen the whole sequence in a causal model."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)

    @classmethod
    def from_causal_lm(cls, lm) -> "RewardModel":
        """Reuse a causal LM's body: the usual way to start a reward model is from the SFT model's weights."""
        return cls(copy.deepcopy(lm.model))

    @classmethod
    def from_pretrained(cls, path) -> "RewardModel":
        return cls(AutoModel.from_pretrained(path))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids and mask -> (B,) scores."""
        # BEGIN SOLUTION [reward-model] Hidden states (B, T, H); index the last position where the mask is 1.
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        last = attention_mask.sum(dim=1) - 1  # (B,) index of the last real token (right padding)
        pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]  # (B, H)
        return self.head(pooled).squeeze(-1)  # (B,)
        # END SOLUTION


def train_reward_model(rm: RewardModel, batch: dict, steps: int = 60, lr: float = 3e-3) -> list[float]:
    """Full-batch AdamW on the Bradley-Terry loss; `batch` is encode_pairs' layout (first half chosen)."""
    opt = torch.optim.AdamW(rm.parameters(), lr=lr)
    n = batch["input_ids"].size(0) // 2
    losses = []
    rm.train()
    for _ in range(steps):
        scores = rm(batch["input_ids"], batch["attention_mask"])
        loss = bradley_terry_loss(scores[:n], scores[n:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    rm.eval()
    return losses


# ---------------------------------------------------------------- log-probs and the DPO family

def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_mask: torch.Tensor) -> torch.Tensor:
    """log pi(completion | prompt) per sequence: (B, T) tensors -> (B,).

    Position t's logits predict token t+1, so shift: logits[:, :-1] score input_ids[:, 1:]. Only tokens whose
    completion_mask is 1 count; prompt and padding contribute nothing."""
    # BEGIN SOLUTION [sequence-logprobs] log_softmax over the vocab, gather the next tokens, mask, sum over time.
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]  # (B, T-1, V)
    targets = input_ids[:, 1:]  # (B, T-1)
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * completion_mask[:, 1:]).sum(dim=1)  # (B,)
    # END SOLUTION


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1,
             loss_type: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss, chosen rewards, rejected rewards) from (B,) sequence log-probs.

    Implicit rewards: r_c = beta * (policy_chosen - ref_chosen), r_r = beta * (policy_rejected - ref_rejected)
    (returned detached). With h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected):
      sigmoid (DPO): -log sigmoid(beta * h)                          (ln 2 when policy == reference)
      ipo:           (h - 1 / (2 * beta))^2                           (a squared loss: the margin stops growing)
      kto:           (1 - sigmoid(beta * (logratio_c - z))) + (1 - sigmoid(beta * (z - logratio_r))), where the
                     reference point z = max(0, mean of all 2B log-ratios), detached: chosen answers are pushed
                     above z and rejected ones below it, each on its own (KTO needs no pairs).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    # BEGIN SOLUTION [dpo-loss] Log-ratios first; then one branch per loss type; rewards = beta * log-ratio, detached.
    logratio_c = policy_chosen - ref_chosen  # (B,)
    logratio_r = policy_rejected - ref_rejected  # (B,)
    h = logratio_c - logratio_r
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        z = torch.cat([logratio_c, logratio_r]).mean().clamp(min=0).detach()
        losses = (1 - torch.sigmoid(beta * (logratio_c - z))) + (1 - torch.sigmoid(beta * (z - logratio_r)))
    return losses.mean(), beta * logratio_c.detach(), beta * logratio_r.detach()
    # END SOLUTION


@torch.no_grad()
def implicit_reward_margins(policy, ref, batch: dict, beta: float = 0.1) -> torch.Tensor:
    """(B,) margins r_c - r_r of the implicit reward beta * log(pi / ref) on encode_pairs' layout; a pair is
    ranked correctly when its margin is > 0."""
    # BEGIN SOLUTION [preference-eval] Sequence log-probs under both models; split chosen/rejected halves; subtract.
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    ratio = sequence_logprobs(policy, *args) - sequence_logprobs(ref, *args)  # (2B,)
    n = ratio.size(0) // 2
    return beta * (ratio[:n] - ratio[n:])
    # END SOLUTION


def preference_accuracy(margins: torch.Tensor) -> float:
    """Share of pairs ranked correctly (margin strictly positive)."""
    # BEGIN SOLUTION [preference-eval] Mean of margins > 0, as a float.
    return (margins > 0).float().mean().item()
    # END SOLUTION


# ---------------------------------------------------------------- DPO with trl

def make_dpo_trainer(model, tokenizer, train_rows: list[dict], *, beta: float = 0.1, lr: float = 5e-3,
                     steps: int = 40, batch_size: int = 16, loss_type: str = "sigmoid", output_dir=None,
                     seed: int = 0):
    """trl's DPOTrainer, set up for a CPU run. Two pitfalls handled here:
    - ref_model: given an in-memory model and no reference, trl 1.16 tries to reload the reference from
      model.config._name_or_path (empty for a model built from a config) and fails, so pass a frozen copy;
    - bf16 defaults to True in trl's configs and fails on a CPU: set it from the device."""
    from trl import DPOConfig, DPOTrainer

    cuda = next(model.parameters()).is_cuda
    # BEGIN SOLUTION [dpo-run] DPOConfig(beta, loss_type=[...], bf16=cuda, max_steps, ...) and ref_model=deepcopy.
    config = DPOConfig(output_dir=str(output_dir or labkit.output_dir(__file__) / "dpo-trainer"), beta=beta,
                       loss_type=[loss_type], learning_rate=lr, max_steps=steps,
                       per_device_train_batch_size=batch_size, lr_scheduler_type="constant", logging_steps=5,
                       bf16=cuda, gradient_checkpointing=False, report_to="none", save_strategy="no", seed=seed,
                       disable_tqdm=True, max_length=64)
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(train_rows),
                      processing_class=tokenizer)
    # END SOLUTION


def plot_margins(before: torch.Tensor, after: torch.Tensor, history: list[dict], path: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = torch.linspace(min(before.min(), after.min()).item(), max(before.max(), after.max()).item(), 30)
    ax1.hist(before.numpy(), bins=bins.numpy(), alpha=0.6, label="before DPO")
    ax1.hist(after.numpy(), bins=bins.numpy(), alpha=0.6, label="after DPO")
    ax1.axvline(0, color="k", lw=0.8)
    ax1.set(title="held-out implicit reward margin r_c - r_r", xlabel="margin", ylabel="pairs")
    ax1.legend()
    logged = [h for h in history if "rewards/margins" in h]
    ax2.plot([h["step"] for h in logged], [h["rewards/margins"] for h in logged], label="margin")
    ax2.plot([h["step"] for h in logged], [h["rewards/chosen"] for h in logged], label="chosen reward")
    ax2.plot([h["step"] for h in logged], [h["rewards/rejected"] for h in logged], label="rejected reward")
    ax2.set(title="training rewards (trl logs)", xlabel="step")
    ax2.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a PNG
    return path


# ---------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--loss-type", choices=LOSS_TYPES[:2], default="sigmoid", help="trl's name for it")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy box)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    out = labkit.output_dir(__file__)
    if args.model == "smollm2":
        from labkit import assets

        model, tokenizer = assets.smollm2()
        model.train()
        lr, batch_size, n_train, n_test, rm_pairs, rm_steps = 5e-6, 4, 32, 32, 8, 3  # 135M params on a CPU
    else:
        tokenizer = tiny_tokenizer()
        model = tiny_llama(len(tokenizer), seed=args.seed)
        lr, batch_size, n_train, n_test, rm_pairs, rm_steps = 5e-3, 16, 256, 200, 64, 40
    train_rows = preference_pairs(n_train, seed=args.seed)
    test_batch = encode_pairs(tokenizer, preference_pairs(n_test, seed=args.seed + 1))
    print(f"model: {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"{len(train_rows)} training pairs, {n_test} held-out pairs, beta={args.beta}")

    # 1. A Bradley-Terry reward model on the same backbone (a copy), trained on the pairs.
    rm = RewardModel.from_causal_lm(model)
    t0 = time.time()
    losses = train_reward_model(rm, encode_pairs(tokenizer, train_rows[:rm_pairs]), steps=rm_steps,
                                lr=3e-3 if args.model == "tiny" else 1e-5)
    with torch.no_grad():
        scores = rm(test_batch["input_ids"], test_batch["attention_mask"])
    n = scores.size(0) // 2
    print(f"reward model: BT loss {losses[0]:.3f} -> {losses[-1]:.3f} in {time.time() - t0:.1f} s; held-out "
          f"accuracy {preference_accuracy(scores[:n] - scores[n:]):.3f}")

    # 2. DPO with trl; the implicit reward needs no reward model at all.
    ref = copy.deepcopy(model).eval()
    before = implicit_reward_margins(model, ref, test_batch, args.beta)
    print(f"before DPO: held-out implicit-reward accuracy {preference_accuracy(before):.3f} (policy == reference, "
          f"every margin is 0)")
    trainer = make_dpo_trainer(model, tokenizer, train_rows, beta=args.beta, lr=lr, steps=args.steps,
                               batch_size=batch_size, loss_type=args.loss_type, seed=args.seed)
    trainer.remove_callback(PrinterCallback)  # keep the console to our summary; the logs stay in log_history
    t0 = time.time()
    trainer.train()
    first = next(h for h in trainer.state.log_history if "loss" in h)
    last = [h for h in trainer.state.log_history if "loss" in h][-1]
    print(f"DPO ({args.loss_type}) {args.steps} steps in {time.time() - t0:.1f} s: loss {first['loss']:.3f} (step "
          f"{first['step']}) -> {last['loss']:.3f}; ln 2 = {math.log(2):.3f}")
    model.eval()
    after = implicit_reward_margins(model, ref, test_batch, args.beta)
    print(f"after DPO: held-out implicit-reward accuracy {preference_accuracy(after):.3f} (chance 0.5), "
          f"mean margin {after.mean():.3f}")
    path = plot_margins(before, after, trainer.state.log_history, out / f"reward_margins_{args.model}.png")
    print(f"plot: {path.relative_to(labkit.ROOT)}")


if __name__ == "__main__":
    labkit.run(main)
