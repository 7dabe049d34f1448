"""Supervised fine-tuning (SFT) of a real chat model, with every mechanism checked exactly.

What this lab teaches:
- chat templates: a conversation becomes text through the model's own Jinja template
  (`tokenizer.apply_chat_template`), so training sees exactly the markup the model sees at inference;
- loss masking: labels are -100 on the system prompt, the user turn and the template markup, so only the
  assistant's answer (and its end-of-turn token `<|im_end|>`, which teaches the model to stop) carries loss;
- padding and packing: several short examples share one row; position ids restart at 0 for each example and a
  block-diagonal causal mask stops attention from crossing examples, so each example's logits are the ones it
  would get alone;
- the SFT loss and a hand-written training loop, the same loss trl's `SFTTrainer` computes on the same batch;
- a real run: SmolLM2-135M-Instruct on 72 short instruction pairs shipped with the lab, with held-out loss and
  side-by-side answers before and after.

Label convention (this lab's choice, documented in the README): with SmolLM2's ChatML template an assistant turn
renders as `<|im_start|>assistant\\n{answer}<|im_end|>\\n`. The answer tokens and `<|im_end|>` carry loss; the
`\\n` after `<|im_end|>` does not, because generation stops at `<|im_end|>` and never produces it. (trl's
prompt-completion format also trains on that final `\\n`; the tests show the one-token difference.)

Shapes: B = batch rows, T = tokens per row, V = vocabulary size.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from tqdm import tqdm

import labkit
from labkit import assets

IGNORE = -100  # the label value cross-entropy skips (torch's and Hugging Face's ignore_index)
DATA = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------ data

def load_pairs(path: Path | str) -> list[dict]:
    """Rows of a JSONL file of {"instruction": ..., "response": ...} objects."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("response"), str):
            raise ValueError(f"{path}:{number}: each line needs string fields 'instruction' and 'response'")
        rows.append(row)
    return rows


def to_messages(instruction: str, response: str | None = None, system: str | None = None) -> list[dict]:
    """The conversation in the role/content format chat templates take. No system turn by default: SmolLM2's
    template then inserts its own default system prompt, exactly as it does at inference."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": instruction})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


# ------------------------------------------------------------------ chat template and labels

def render_chat(tokenizer, instruction: str, response: str | None = None, system: str | None = None) -> str:
    """The conversation as the model's chat template renders it.

    With a response: the full conversation, ending after the assistant's end-of-turn markup.
    Without one: the prompt plus the header that opens the assistant's turn (`add_generation_prompt`), which is
    exactly what the model is given at inference.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction must be a non-empty string")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat_template; use an instruct/chat checkpoint or set one")
    # BEGIN SOLUTION [chat-template] apply_chat_template with tokenize=False; ask for the generation prompt only when there is no response.
    messages = to_messages(instruction, response, system)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=response is None)
    # END SOLUTION


def tokenize_example(tokenizer, instruction: str, response: str, max_length: int | None = None,
                     system: str | None = None) -> dict[str, list[int]]:
    """input_ids of the whole conversation and labels that are -100 everywhere except on the assistant's answer
    and its end-of-turn token.

    The prompt (system + user turn + the `<|im_start|>assistant\\n` header) is a prefix of the full conversation,
    so its token count is where the answer starts. Everything after the end-of-turn token (template markup such
    as a trailing newline) is masked too. Truncates to `max_length` tokens.
    """
    # BEGIN SOLUTION [mask-labels] Tokenise the rendered prompt and the rendered conversation (no extra special tokens); the answer starts where the prompt ends and stops after eos.
    prompt_ids = tokenizer(render_chat(tokenizer, instruction, None, system), add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(render_chat(tokenizer, instruction, response, system), add_special_tokens=False)["input_ids"]
    start = len(prompt_ids)
    if full_ids[:start] != prompt_ids:
        raise ValueError("the rendered prompt is not a token prefix of the rendered conversation; this chat "
                         "template changes the prompt when an answer follows, so the boundary is ambiguous")
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    end = full_ids.index(eos, start) + 1 if eos in full_ids[start:] else len(full_ids)  # keep <|im_end|>
    labels = [IGNORE] * start + full_ids[start:end] + [IGNORE] * (len(full_ids) - end)
    if max_length is not None:
        full_ids, labels = full_ids[:max_length], labels[:max_length]
    return {"input_ids": full_ids, "labels": labels}
    # END SOLUTION


# ------------------------------------------------------------------ batches: padding and packing

def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into tensors: input_ids (B, T) padded with `pad_token_id`, labels (B, T)
    padded with -100, attention_mask (B, T) with 1 on real tokens. A `position_ids` field, when the examples
    have one (packed rows), is padded with 0 and kept."""
    if not examples:
        raise ValueError("collate needs at least one example")
    # BEGIN SOLUTION [collate] Pad every field to the longest row: pad id for inputs, -100 for labels, 0 for the mask and positions.
    width = max(len(e["input_ids"]) for e in examples)

    def pad(rows, value):
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    batch = {
        "input_ids": pad([e["input_ids"] for e in examples], pad_token_id),
        "labels": pad([e["labels"] for e in examples], IGNORE),
        "attention_mask": pad([[1] * len(e["input_ids"]) for e in examples], 0),
    }
    if "position_ids" in examples[0]:
        batch["position_ids"] = pad([e["position_ids"] for e in examples], 0)
    return batch
    # END SOLUTION


def pack_examples(examples: list[dict], max_length: int) -> list[dict[str, list[int]]]:
    """Greedily concatenate examples, in order, into rows of at most `max_length` tokens.

    Each row has input_ids, labels and position_ids; positions restart at 0 where an example starts (that is how
    `packed_attention_mask` finds the borders). The first label of every example is -100: after the model's
    one-token shift it would be the target of the previous example's last token, a prediction across examples.
    An example longer than `max_length` is truncated to it.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    # BEGIN SOLUTION [pack] Start a new row when the next example would overflow; positions count 0.. within each example.
    rows, row = [], {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        ids, labels = example["input_ids"][:max_length], list(example["labels"][:max_length])
        if row["input_ids"] and len(row["input_ids"]) + len(ids) > max_length:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": []}
        labels[0] = IGNORE
        row["input_ids"] += ids
        row["labels"] += labels
        row["position_ids"] += list(range(len(ids)))
    if row["input_ids"]:
        rows.append(row)
    return rows
    # END SOLUTION


def packed_attention_mask(position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive 4-D mask (B, 1, T, T) for packed rows: 0 where token i may attend to token j, a very large
    negative number elsewhere.

    Token i sees token j when both belong to the same example (the example index is the number of position-0
    tokens seen so far) and j <= i. Padding (attention_mask 0) is seen by nobody; a padding token sees only
    itself, so no softmax row is empty. transformers passes a 4-D mask straight to the attention kernels.
    """
    if position_ids.dim() != 2:
        raise ValueError(f"position_ids must be (batch, tokens), got shape {tuple(position_ids.shape)}")
    # BEGIN SOLUTION [pack] Example id = cumsum(position == 0); allowed = same example & causal & real token (diagonal always allowed).
    batch, length = position_ids.shape
    segment = (position_ids == 0).long().cumsum(dim=1)                        # (B, T)
    real = torch.ones_like(position_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    same = segment[:, :, None] == segment[:, None, :]                          # (B, T, T)
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = same & causal & real[:, None, :] & real[:, :, None]
    allowed |= torch.eye(length, dtype=torch.bool, device=position_ids.device)
    mask = torch.zeros(batch, 1, length, length, dtype=dtype, device=position_ids.device)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)
    # END SOLUTION


def model_inputs(batch: dict[str, torch.Tensor], device, dtype: torch.dtype = torch.float32) -> dict:
    """The keyword arguments for the model's forward: plain rows use the 2-D padding mask; packed rows (with
    position_ids) use the block-diagonal 4-D mask."""
    inputs = {"input_ids": batch["input_ids"].to(device)}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"].to(device)
        inputs["attention_mask"] = packed_attention_mask(batch["position_ids"], batch.get("attention_mask"),
                                                         dtype).to(device)
    elif "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"].to(device)
    return inputs


# ------------------------------------------------------------------ loss and training

def sft_loss(model, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the tokens whose label is not -100.

    The logits at position t predict the token at t + 1, so logits[:, :-1] pair with labels[:, 1:]. With
    reduction="mean" the loss is averaged over all unmasked tokens of the batch (not per row first): the same
    number trl's SFTTrainer and the model's own `labels=` loss give. reduction="sum" returns the total.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    # BEGIN SOLUTION [sft-loss] Shift by one (logits[:, :-1] vs labels[:, 1:]) and use cross_entropy with ignore_index=-100 in float32.
    logits = model(**model_inputs(batch, device, dtype)).logits            # (B, T, V)
    labels = batch["labels"].to(device)
    shifted_logits = logits[:, :-1].float().reshape(-1, logits.size(-1))  # (B*(T-1), V)
    shifted_labels = labels[:, 1:].reshape(-1)                            # (B*(T-1),)
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE, reduction=reduction)
    # END SOLUTION


def train_sft(model, batches: list[dict[str, torch.Tensor]], steps: int, lr: float = 5e-5,
              max_grad_norm: float | None = 1.0, optimizer: torch.optim.Optimizer | None = None,
              progress: bool = False) -> list[float]:
    """Plain SFT loop: for each step take the next batch (cycling), loss -> backward -> clip the gradient norm ->
    optimizer step -> zero the gradients. Returns the loss of every step (measured before its update).

    The default optimizer is AdamW(lr, weight_decay=0), which is what transformers' Trainer uses by default, so
    the same batches give the same losses as trl's SFTTrainer with a constant learning rate.
    """
    if steps < 1 or not batches:
        raise ValueError("train_sft needs steps >= 1 and at least one batch")
    optimizer = optimizer or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                               weight_decay=0.0)
    model.train()
    losses = []
    # BEGIN SOLUTION [train-loop] loss.backward(), clip_grad_norm_ when max_grad_norm is set, optimizer.step(), zero_grad(); record loss.item().
    for step in tqdm(range(steps), desc="sft", disable=not progress):
        loss = sft_loss(model, batches[step % len(batches)])
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    # END SOLUTION
    model.eval()
    return losses


@torch.no_grad()
def evaluate_loss(model, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean loss per answer token over all batches (summed, then divided by the number of answer tokens)."""
    was_training = model.training
    model.eval()
    total = sum(sft_loss(model, b, reduction="sum").item() for b in batches)
    tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    model.train(was_training)
    return total / max(tokens, 1)


@torch.no_grad()
def generate_reply(model, tokenizer, instruction: str, max_new_tokens: int = 32) -> str:
    """Greedy answer to one instruction, decoded without the prompt and special tokens."""
    device = next(model.parameters()).device
    prompt = tokenizer(render_chat(tokenizer, instruction), add_special_tokens=False, return_tensors="pt")
    out = model.generate(**prompt.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# ---------------------------------------------------------------- judging before vs after: a rule-based judge

# Loss says the model fits the answers' style; a judge says whether its answers got better. An LLM judge is the
# usual choice (phase 8 lab 02 builds one and measures its biases); here a transparent rule-based judge suffices,
# because every held-out reference is one short sentence with a clear key fact:
#   score(reply) = 2 * (share of the reference's answer words found in the reply) + 1 if the reply is one sentence
#                  of at most twice the reference's length
# The answer words are the reference's words that the question does not already contain (minus filler words),
# with number words mapped to digits: "A pentagon has five sides." for "How many sides does a pentagon have?"
# leaves {"5"}. A reply that repeats the question gets no credit for it.
FILLER = frozenset("a an the is are was were of in on at to for and or it its this that be has have does do".split())
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def words_of(text: str) -> list[str]:
    """Lower-case words and numbers, number words as digits ('Five sides.' -> ['5', 'sides'])."""
    return [NUMBER_WORDS.get(w, w) for w in re.findall(r"[a-z]+|\d+(?:\.\d+)?", text.lower())]


def answer_words(instruction: str, reference: str) -> set[str]:
    # BEGIN SOLUTION [judged-win-rate] The reference's words minus the question's words minus FILLER (both through words_of).
    return set(words_of(reference)) - set(words_of(instruction)) - FILLER
    # END SOLUTION


def judge_score(instruction: str, reference: str, reply: str) -> float:
    """2 x answer-word recall + 1 for a single sentence of at most 2x the reference's word count."""
    # BEGIN SOLUTION [judged-win-rate] Recall over answer_words (an empty set counts as fully recalled); a sentence = no '.', '!' or '?' before the last character.
    wanted = answer_words(instruction, reference)
    found = set(words_of(reply))
    recall = len(wanted & found) / len(wanted) if wanted else 1.0
    body = reply.strip()
    one_sentence = bool(body) and not re.search(r"[.!?]", body[:-1])
    concise = len(body.split()) <= 2 * len(reference.split())
    return 2 * recall + (1.0 if one_sentence and concise else 0.0)
    # END SOLUTION


def judge_pair(instruction: str, reference: str, first: str, second: str) -> int:
    """+1 when the first reply scores higher, -1 when the second does, 0 for a tie (within 1e-9)."""
    # BEGIN SOLUTION [judged-win-rate] Compare the two judge_score values.
    difference = judge_score(instruction, reference, first) - judge_score(instruction, reference, second)
    return 0 if abs(difference) <= 1e-9 else (1 if difference > 0 else -1)
    # END SOLUTION


def win_rate(verdicts: list[int]) -> dict:
    """Summary of after-vs-before verdicts (+1: after wins): wins, losses, ties, the win rate with ties counted as
    half, and a two-sided sign test p-value on the decided pairs (ties dropped; 1.0 when every pair is a tie)."""
    # BEGIN SOLUTION [judged-win-rate] Count; rate = (wins + ties / 2) / n; p = scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue.
    if not verdicts:
        raise ValueError("win_rate needs at least one verdict")
    wins, losses = verdicts.count(1), verdicts.count(-1)
    ties = len(verdicts) - wins - losses
    decided = wins + losses
    p_value = float(binomtest(wins, decided, 0.5).pvalue) if decided else 1.0
    return {"wins": wins, "losses": losses, "ties": ties, "rate": (wins + ties / 2) / len(verdicts), "p_value": p_value}
    # END SOLUTION


def batched(examples: list[dict], batch_size: int, pad_token_id: int, pack_to: int | None = None) -> list[dict]:
    """Examples -> padded batches; with `pack_to`, examples are first packed into rows of that many tokens."""
    rows = pack_examples(examples, pack_to) if pack_to else examples
    return [collate(rows[i:i + batch_size], pad_token_id) for i in range(0, len(rows), batch_size)]


# ------------------------------------------------------------------ demo

# ChatML, the format SmolLM2-Instruct uses, for base checkpoints that ship without a template.
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def load_model(name: str | None, device, bf16: bool):
    """SmolLM2-135M-Instruct from the offline assets, or any causal-LM checkpoint (a local folder or a Hub id)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = name or assets.smollm2_path()
    dtype = torch.bfloat16 if bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # many base checkpoints ship without one; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:  # a base checkpoint may have no chat format yet: SFT is where it learns one
        tokenizer.chat_template = CHATML
        print(f"{path}: no chat template; using ChatML (its special tokens must exist in the vocabulary)")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tokenizer


def main(argv=None):
    parser = argparse.ArgumentParser(description="SFT of SmolLM2-135M-Instruct on the lab's instruction set")
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: offline SmolLM2-135M)")
    parser.add_argument("--examples", type=int, default=32, help="training pairs used (72 ship with the lab)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-embeddings", action="store_true",
                        help="also train the (tied) embedding / LM-head matrix: 28M of SmolLM2's 135M weights")
    parser.add_argument("--pack", type=int, default=0, help="pack examples into rows of this many tokens (0: off)")
    parser.add_argument("--show", type=int, default=3, help="held-out prompts shown side by side")
    parser.add_argument("--bf16", action="store_true", help="bf16 weights (default on CUDA)")
    parser.add_argument("--optim", choices=("adamw", "adamw8bit"), default="adamw",
                        help="adamw8bit (bitsandbytes) keeps optimizer state in 1 byte per value: use it for 7B")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (7B on a GPU)")
    args = parser.parse_args(argv)

    labkit.seed_everything(0)
    device = labkit.pick_device()
    bf16 = args.bf16 or device.type == "cuda"
    started = time.perf_counter()
    model, tokenizer = load_model(args.model, device, bf16)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if not args.train_embeddings:  # cheaper steps on a CPU; the transformer blocks still all train
        model.get_input_embeddings().weight.requires_grad_(False)
    train_rows, held_rows = load_pairs(DATA / "train.jsonl")[:args.examples], load_pairs(DATA / "heldout.jsonl")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model: {args.model or 'SmolLM2-135M-Instruct (offline)'} on {device}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters ({trainable / 1e6:.1f}M trained), "
          f"{'bf16' if bf16 else 'fp32'}")

    print(f"\nrendered example:\n{render_chat(tokenizer, train_rows[0]['instruction'], train_rows[0]['response'])}")
    example = tokenize_example(tokenizer, train_rows[0]["instruction"], train_rows[0]["response"])
    shown = "".join(tokenizer.decode([t]) if lab != IGNORE else "·" for t, lab in
                    zip(example["input_ids"], example["labels"]))
    print(f"tokens that carry loss (· = masked):\n{shown}\n")

    train = [tokenize_example(tokenizer, r["instruction"], r["response"]) for r in train_rows]
    held = [tokenize_example(tokenizer, r["instruction"], r["response"]) for r in held_rows]
    pad = tokenizer.pad_token_id
    train_batches = batched(train, args.batch_size, pad, args.pack or None)
    held_batches = batched(held, args.batch_size, pad)
    answer_tokens = sum(sum(lab != IGNORE for lab in e["labels"]) for e in train)
    print(f"train: {len(train)} examples, {sum(len(e['input_ids']) for e in train)} tokens, {answer_tokens} "
          f"carry loss; {len(train_batches)} batches/epoch{f' (packed to {args.pack})' if args.pack else ''}; "
          f"held-out: {len(held)} examples")

    prompts = [r["instruction"] for r in held_rows]  # every held-out prompt is judged; --show of them printed
    before = [generate_reply(model, tokenizer, p) for p in tqdm(prompts, desc="answers before", leave=False)]
    held_before = evaluate_loss(model, held_batches)

    optimizer = None
    if args.optim == "adamw8bit":
        import bitsandbytes as bnb  # optional: only for large models on a GPU

        optimizer = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                        weight_decay=0.0)
    steps = args.epochs * len(train_batches)
    losses = train_sft(model, train_batches, steps, lr=args.lr, optimizer=optimizer, progress=True)
    held_after = evaluate_loss(model, held_batches)
    after = [generate_reply(model, tokenizer, p) for p in tqdm(prompts, desc="answers after", leave=False)]

    print(f"\ntrain loss: first step {losses[0]:.3f} -> last step {losses[-1]:.3f} ({steps} steps)")
    print(f"held-out loss per answer token: {held_before:.3f} -> {held_after:.3f} "
          f"(perplexity {math.exp(held_before):.1f} -> {math.exp(held_after):.1f})\n")
    for prompt, old, new in list(zip(prompts, before, after))[:args.show]:
        print(f"Q: {prompt}\n  before: {old[:120]!r}\n  after:  {new[:120]!r}")
    verdicts = [judge_pair(r["instruction"], r["response"], new, old) for r, old, new in zip(held_rows, before, after)]
    summary = win_rate(verdicts)
    correct = lambda replies: sum(answer_words(r["instruction"], r["response"]) <= set(words_of(x))  # noqa: E731
                                  for r, x in zip(held_rows, replies))
    print(f"\njudged on all {len(held_rows)} held-out prompts (rule-based judge, after vs before): "
          f"{summary['wins']} wins, {summary['losses']} losses, {summary['ties']} ties; win rate "
          f"{summary['rate']:.2f} (ties count half), sign test p = {summary['p_value']:.3f}")
    print(f"answers with every key fact: {correct(before)}/{len(held_rows)} before, {correct(after)}/{len(held_rows)} after")

    out = labkit.output_dir(__file__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, steps + 1), losses, label="train loss (per batch)")
    ax.axhline(held_before, color="gray", ls="--", label=f"held-out before {held_before:.2f}")
    ax.axhline(held_after, color="green", ls="--", label=f"held-out after {held_after:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per answer token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sft-loss.png", dpi=120)
    print(f"\nloss curve: {out / 'sft-loss.png'}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    labkit.run(main)
