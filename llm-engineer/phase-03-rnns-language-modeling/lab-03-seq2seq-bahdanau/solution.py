"""Lab 03: a GRU encoder-decoder with additive (Bahdanau) attention, on date normalisation.

The task: read a date written any of a dozen ways ("3 March 2021", "03/03/21", "Wednesday, the 3rd of March
2021") and write it as ISO 8601 ("2021-03-03"). The data is generated, seeded, unlimited.

What you build:
1. padding and masks for a batch of variable-length sources;
2. a bidirectional GRU encoder that ignores padding (packed sequences);
3. additive attention: score_j = v . tanh(W_q s + W_k h_j), masked softmax over the source, context = sum_j a_j h_j;
4. one decoder step, with attention (a fresh context every step) or without (one fixed summary vector: the
   bottleneck that attention removes);
5. teacher-forced training loss; greedy decoding; beam search (checked against brute force).

Shapes: B batch, S source length, T target length, H hidden size; encoder outputs are (B, S, 2H).
Run `python solution.py` for the demo: both models trained for the same 200 steps (under a minute), accuracy on short and long inputs,
and an attention heatmap.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import labkit  # noqa: E402

# ----------------------------------------------------------------------------- data (given)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th ... 21st, 22nd, 23rd ... 31st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _two_digit_year(d: dt.date) -> str:
    return f"{d.year % 100:02d}"   # read back with the pivot: 00-49 -> 20xx, 50-99 -> 19xx (years 1950-2049)


FORMATS = {   # name -> how a date is written; the "long" ones are 24+ characters
    "d Month yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "dd/mm/yy": lambda d: f"{d.day:02d}/{d.month:02d}/{_two_digit_year(d)}",
    "Month dth, yyyy": lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    "Mon d, yyyy": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",
    "d.m.yyyy": lambda d: f"{d.day}.{d.month}.{d.year}",
    "yyyy/mm/dd": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    "dd-MON-yy": lambda d: f"{d.day:02d}-{MONTHS[d.month - 1][:3].upper()}-{_two_digit_year(d)}",
    "Weekday, d Month yyyy": lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
    "Weekday, the dth of Month yyyy": lambda d: f"{WEEKDAYS[d.weekday()]}, the {ordinal(d.day)} of "
                                                f"{MONTHS[d.month - 1]} {d.year}",
    "on Wkd the dth day of Month in the year yyyy": lambda d: f"on {WEEKDAYS[d.weekday()][:3]} the {ordinal(d.day)} "
                                                              f"day of {MONTHS[d.month - 1]} in the year {d.year}",
    "the dth of Month, yyyy (a Weekday)": lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year} "
                                                    f"(a {WEEKDAYS[d.weekday()]})",
}
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)

SRC_CHARS = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,./-()"))
PAD, BOS, EOS = 0, 1, 2
SRC_ITOS = ["<pad>"] + SRC_CHARS
SRC_STOI = {ch: i for i, ch in enumerate(SRC_ITOS)}
TGT_ITOS = ["<pad>", "<s>", "</s>"] + list("0123456789-")
TGT_STOI = {ch: i for i, ch in enumerate(TGT_ITOS)}


def random_dates(n: int, seed: int = 0, formats: list[str] | None = None) -> list[tuple[str, str]]:
    """n (source, target) pairs: a uniformly random day in 1950-2049 written in a random format, and its ISO form."""
    rng = random.Random(seed)
    names = formats or list(FORMATS)
    unknown = set(names) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown date formats {sorted(unknown)}; choose from {list(FORMATS)}")
    span = (LAST_DAY - FIRST_DAY).days
    pairs = []
    for _ in range(n):
        day = FIRST_DAY + dt.timedelta(days=rng.randint(0, span))
        pairs.append((FORMATS[rng.choice(names)](day), day.isoformat()))
    return pairs


def encode_target(iso: str) -> list[int]:
    """"2021-03-03" -> ids of the characters followed by </s> (the decoder input is <s> + this, minus the last)."""
    return [TGT_STOI[ch] for ch in iso] + [EOS]


def decode_target(ids) -> str:
    """Ids -> text, stopping at the first </s> and skipping <s>/<pad>."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i > EOS:
            out.append(TGT_ITOS[i])
    return "".join(out)


# ----------------------------------------------------------------------------- 1. padding and masks

def pad_batch(sequences: list[list[int]], pad_id: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to the longest one. Returns ids (B, S) long and mask (B, S) bool, True on real tokens."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("pad_batch needs at least one sequence and no empty ones")
    # BEGIN SOLUTION [padding] Fill a (B, max_len) tensor with pad_id, copy each sequence into its row's start.
    S = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), S), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = True
    return ids, mask
    # END SOLUTION


def make_batch(pairs: list[tuple[str, str]]):
    """(src (B, S), src_mask (B, S), tgt_in (B, T), tgt_out (B, T)): tgt_in starts with <s>, tgt_out ends with </s>."""
    src, src_mask = pad_batch([[SRC_STOI[ch] for ch in s] for s, _ in pairs])
    tgt = torch.tensor([encode_target(t) for _, t in pairs])          # every target has 11 tokens
    tgt_in = torch.cat([torch.full((len(pairs), 1), BOS), tgt[:, :-1]], dim=1)
    return src, src_mask, tgt_in, tgt


# ----------------------------------------------------------------------------- 2-4. the model

class AdditiveAttention(nn.Module):
    """Bahdanau attention: score_j = v . tanh(W_q s + W_k h_j), softmax over the unmasked source positions."""

    def __init__(self, query_size: int, key_size: int, attn_size: int):
        super().__init__()
        self.W_q = nn.Linear(query_size, attn_size, bias=False)
        self.W_k = nn.Linear(key_size, attn_size)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor):
        """query (B, Q), keys (B, S, K), mask (B, S) bool -> context (B, K), weights (B, S) summing to 1 over
        the True positions and exactly 0 on padding."""
        # BEGIN SOLUTION [additive-attention] Broadcast W_q s over S, add W_k h, tanh, v -> (B, S); -inf on pads; softmax.
        scores = self.v(torch.tanh(self.W_q(query).unsqueeze(1) + self.W_k(keys))).squeeze(-1)   # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)                                                 # (B, S)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)                               # (B, K)
        return context, weights
        # END SOLUTION


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder; with attention or with one fixed context vector."""

    def __init__(self, hidden: int = 64, embed: int = 32, attention: bool = True,
                 src_vocab: int = len(SRC_ITOS), tgt_vocab: int = len(TGT_ITOS)):
        super().__init__()
        self.attention, self.hidden = attention, hidden
        self.src_embed = nn.Embedding(src_vocab, embed, padding_idx=PAD)
        self.encoder = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)                  # encoder summary -> decoder's first state
        self.tgt_embed = nn.Embedding(tgt_vocab, embed)
        self.attn = AdditiveAttention(hidden, 2 * hidden, hidden) if attention else None
        self.decoder = nn.GRUCell(embed + 2 * hidden, hidden)
        self.out = nn.Linear(hidden + 2 * hidden + embed, tgt_vocab)

    def encode(self, src: torch.Tensor, mask: torch.Tensor):
        """src (B, S), mask (B, S) -> (outputs (B, S, 2H) with zeros at padding, summary (B, 2H), s0 (B, H)).

        summary is [last forward state ; last backward state], computed on each sequence's real tokens only;
        s0 = tanh(bridge(summary)) starts the decoder."""
        # BEGIN SOLUTION [encoder] pack_padded_sequence with the true lengths, run the GRU, pad back to S; concat h_n.
        lengths = mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.src_embed(src), lengths, batch_first=True,
                                                   enforce_sorted=False)
        packed_out, h_n = self.encoder(packed)                       # h_n (2, B, H): forward, backward
        outputs, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        summary = torch.cat([h_n[0], h_n[1]], dim=-1)                # (B, 2H)
        return outputs, summary, torch.tanh(self.bridge(summary))
        # END SOLUTION

    def decode_step(self, prev: torch.Tensor, state: torch.Tensor, enc_out: torch.Tensor, summary: torch.Tensor,
                    mask: torch.Tensor):
        """One decoder step. prev (B,) previous target ids, state (B, H) -> (logits (B, V), new state, weights).

        context = attention(state, enc_out, mask) with attention, else the fixed summary (weights is None then);
        new state = GRUCell([embed(prev) ; context], state); logits = out([new state ; context ; embed(prev)])."""
        # BEGIN SOLUTION [decoder-step] Context from the previous state (Bahdanau), then the GRU cell, then the output layer.
        emb = self.tgt_embed(prev)                                   # (B, E)
        if self.attention:
            context, weights = self.attn(state, enc_out, mask)       # (B, 2H), (B, S)
        else:
            context, weights = summary, None                         # the same vector at every step
        state = self.decoder(torch.cat([emb, context], dim=-1), state)
        logits = self.out(torch.cat([state, context, emb], dim=-1))
        return logits, state, weights
        # END SOLUTION

    def forward(self, src: torch.Tensor, mask: torch.Tensor, tgt_in: torch.Tensor):
        """Teacher forcing: feed the true previous token at every step.
        Returns logits (B, T, V) and attention weights (B, T, S) (None without attention)."""
        # BEGIN SOLUTION [teacher-forcing] Encode once; loop t over tgt_in feeding tgt_in[:, t]; stack logits and weights.
        enc_out, summary, state = self.encode(src, mask)
        logits, weights = [], []
        for t in range(tgt_in.size(1)):
            step_logits, state, w = self.decode_step(tgt_in[:, t], state, enc_out, summary, mask)
            logits.append(step_logits)
            weights.append(w)
        attn = torch.stack(weights, dim=1) if self.attention else None
        return torch.stack(logits, dim=1), attn
        # END SOLUTION


def seq_loss(logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the target tokens, ignoring <pad>. logits (B, T, V), tgt_out (B, T)."""
    # BEGIN SOLUTION [teacher-forcing] Flatten to (B*T, V) and (B*T,), ignore_index=PAD.
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=PAD)
    # END SOLUTION


# ----------------------------------------------------------------------------- 5. decoding

@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, mask: torch.Tensor, max_len: int = 11):
    """Feed back the argmax at every step, max_len steps, for the whole batch.
    Returns tokens (B, max_len) (after </s> the content does not matter) and weights (B, max_len, S) or None."""
    # BEGIN SOLUTION [greedy-decode] Start from <s>; each step take logits.argmax(-1) as the next input.
    enc_out, summary, state = model.encode(src, mask)
    prev = torch.full((src.size(0),), BOS, dtype=torch.long)
    tokens, weights = [], []
    for _ in range(max_len):
        logits, state, w = model.decode_step(prev, state, enc_out, summary, mask)
        prev = logits.argmax(dim=-1)
        tokens.append(prev)
        weights.append(w)
    return torch.stack(tokens, dim=1), (torch.stack(weights, dim=1) if model.attention else None)
    # END SOLUTION


def beam_search(step, state: torch.Tensor, bos: int, eos: int, max_len: int, width: int):
    """Best sequence under the model by beam search with `width` beams, and its total log-probability.

    step(prev (K,), state (K, ...)) -> (log_probs (K, V), new state (K, ...)) scores K hypotheses at once;
    `state` is the starting state for one hypothesis, shape (1, ...). A hypothesis ends when it emits `eos`
    (kept, with eos) or after max_len tokens. Scores are plain sums of log-probabilities (no length penalty).
    Returns (tokens: list[int] without bos, score: float)."""
    if width < 1 or max_len < 1:
        raise ValueError(f"width and max_len must be >= 1, got width={width}, max_len={max_len}")
    # BEGIN SOLUTION [beam-search] Expand every live beam by every token, keep the top `width`; move eos endings aside.
    beams = [([], 0.0)]                                              # live hypotheses: (tokens, score)
    states = state
    finished = []
    for _ in range(max_len):
        prev = torch.tensor([toks[-1] if toks else bos for toks, _ in beams])
        log_probs, new_states = step(prev, states)                   # (K, V), (K, ...)
        totals = torch.tensor([s for _, s in beams], dtype=log_probs.dtype).unsqueeze(1) + log_probs
        flat = totals.flatten()
        top = torch.topk(flat, min(width, flat.numel())).indices     # best `width` extensions overall
        vocab = log_probs.size(1)
        next_beams, keep = [], []
        for index in top.tolist():
            row, token = divmod(index, vocab)
            hypothesis = (beams[row][0] + [token], flat[index].item())
            if token == eos:
                finished.append(hypothesis)                          # ended: it keeps its score, no more steps
            else:
                next_beams.append(hypothesis)
                keep.append(row)                                     # which old state this beam continues
        beams = next_beams
        if not beams:
            break
        states = new_states[keep]
    best = max(finished + beams, key=lambda h: h[1])                 # live beams here have reached max_len
    return best[0], best[1]
    # END SOLUTION


@torch.no_grad()
def beam_decode(model: Seq2Seq, source: str, width: int = 3, max_len: int = 11) -> tuple[str, float]:
    """Beam search for one source string with the trained model: (ISO text, log-probability)."""
    src, mask = pad_batch([[SRC_STOI[ch] for ch in source]])
    enc_out, summary, s0 = model.encode(src, mask)

    def step(prev, states):
        k = prev.size(0)
        logits, new_states, _ = model.decode_step(prev, states, enc_out.expand(k, -1, -1),
                                                  summary.expand(k, -1), mask.expand(k, -1))
        return torch.log_softmax(logits, dim=-1), new_states

    tokens, score = beam_search(step, s0, BOS, EOS, max_len, width)
    return decode_target(tokens), score


# ----------------------------------------------------------------------------- demo

def train(model: Seq2Seq, steps: int, batch: int = 64, lr: float = 3e-3, seed: int = 0,
          desc: str = "train") -> list[float]:
    """Adam with clipping on a fresh random batch every step; returns the per-step losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in tqdm(range(steps), desc=desc, leave=False):
        src, mask, tgt_in, tgt_out = make_batch(random_dates(batch, seed=seed * 1_000_003 + step))
        logits, _ = model(src, mask, tgt_in)
        loss = seq_loss(logits, tgt_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(model: Seq2Seq, pairs: list[tuple[str, str]]) -> float:
    """Exact-match rate of greedy decoding."""
    src, mask, _, _ = make_batch(pairs)
    tokens, _ = greedy_decode(model, src, mask)
    return sum(decode_target(row) == iso for row, (_, iso) in zip(tokens, pairs)) / len(pairs)


def save_heatmap(weights: torch.Tensor, source: str, output: str, path) -> None:
    """Attention weights (T, S) as an image: rows are output characters, columns source characters."""
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(source)), 3.2))
    ax.imshow(weights.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(source)), list(source), fontsize=7)
    ax.set_yticks(range(len(output)), list(output), fontsize=8)
    ax.set(xlabel="source", ylabel="output", title="Bahdanau attention weights")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Seq2seq date normalisation, with and without Bahdanau attention.")
    parser.add_argument("--steps", type=int, default=200, help="training steps for each model (batch 64)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--test", type=int, default=500, help="test examples per group (short, long)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; tiny step-by-step recurrent models run best on one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = labkit.output_dir(__file__)

    for source, target in random_dates(4, seed=args.seed):
        print(f"  {source!r:<50} -> {target}")
    test = random_dates(4 * args.test, seed=10_000 + args.seed)
    short = [p for p in test if len(p[0]) < 20][:args.test]
    long = [p for p in test if len(p[0]) >= 30][:args.test]

    models = {}
    print(f"\nexact-match accuracy after {args.steps} steps, greedy decoding, {len(short)} short (< 20 chars) and "
          f"{len(long)} long (>= 30 chars) test dates:")
    print(f"{'model':<16} {'final loss':>10} {'short acc':>9} {'long acc':>9} {'time':>6}")
    for attention in (False, True):
        name = "with attention" if attention else "no attention"
        torch.manual_seed(args.seed)
        model = Seq2Seq(hidden=args.hidden, attention=attention)
        start = time.time()
        losses = train(model, args.steps, seed=args.seed, desc=name)
        seconds = time.time() - start
        model.eval()
        models[name] = model
        print(f"{name:<16} {sum(losses[-20:]) / 20:>10.4f} {accuracy(model, short):>9.1%} "
              f"{accuracy(model, long):>9.1%} {seconds:>5.1f}s")

    model = models["with attention"]
    example = "Wednesday, the 3rd of March 2021"
    src, mask = pad_batch([[SRC_STOI[ch] for ch in example]])
    tokens, weights = greedy_decode(model, src, mask)
    text = decode_target(tokens[0])
    beam, score = beam_decode(model, example, width=3)
    print(f"\n{example!r}: greedy -> {text}, beam(3) -> {beam} (log p = {score:.3f}, p = {math.exp(score):.3f})")
    rows = len(text) + 1                                             # the characters and </s>
    save_heatmap(weights[0, :rows], example, text + "$", out / "attention_heatmap.png")
    print(f"wrote {out / 'attention_heatmap.png'}")


if __name__ == "__main__":
    labkit.run(main)
