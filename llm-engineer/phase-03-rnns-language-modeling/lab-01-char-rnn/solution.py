"""Lab 01: a character-level RNN language model, from the raw recurrence up.

What you build:
1. a character vocabulary for Shakespeare (encode / decode);
2. the vanilla RNN forward pass and backpropagation through time (BPTT) by hand in NumPy, checked against
   numerical gradients in float64;
3. the same cell in PyTorch from primitives (no nn.RNN), a CharRNN around it, and one training step with
   gradient clipping;
4. temperature sampling, and the two numbers people quote for a language model: bits per character and
   perplexity.

The recurrence, for one step with input character x_t (a one-hot vector) and previous state h_{t-1}:

    h_t      = tanh(W_xh x_t + W_hh h_{t-1} + b_h)          (H,)
    logits_t = W_hy h_t + b_y                               (V,)
    loss     = mean_t  -log softmax(logits_t)[y_t]          y_t = x_{t+1}, the next character

Run `python solution.py` for the demo (a minute or less on a laptop CPU).
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import labkit  # noqa: E402
from labkit import assets  # noqa: E402


# ----------------------------------------------------------------------------- 1. characters

def build_vocab(text: str) -> tuple[dict[str, int], list[str]]:
    """(stoi, itos): every distinct character of `text`, sorted by code point, numbered from 0."""
    if not text:
        raise ValueError("build_vocab needs a non-empty text; pass the training corpus")
    # BEGIN SOLUTION [char-vocab] Sort the set of characters; a character's id is its position in that list.
    itos = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(itos)}
    return stoi, itos
    # END SOLUTION


def encode(text: str, stoi: dict[str, int]) -> list[int]:
    """Character ids of `text`; a character outside the vocabulary is an error."""
    # BEGIN SOLUTION [char-vocab] Look each character up; report the first unknown one.
    unknown = next((ch for ch in text if ch not in stoi), None)
    if unknown is not None:
        raise ValueError(f"character {unknown!r} is not in the vocabulary; build the vocabulary from this text")
    return [stoi[ch] for ch in text]
    # END SOLUTION


def decode(ids, itos: list[str]) -> str:
    """The text for a sequence of character ids (a list or a 1-D tensor)."""
    # BEGIN SOLUTION [char-vocab] Join the characters of each id.
    return "".join(itos[int(i)] for i in ids)
    # END SOLUTION


# ----------------------------------------------------------------------------- 2. NumPy: forward and BPTT by hand

def init_numpy_params(vocab_size: int, hidden: int, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    """Small random weights: W_xh (H,V), W_hh (H,H), b_h (H,), W_hy (V,H), b_y (V,)."""
    rng = np.random.default_rng(seed)
    return {
        "W_xh": rng.normal(0, 0.1, (hidden, vocab_size)).astype(dtype),
        "W_hh": rng.normal(0, 0.1, (hidden, hidden)).astype(dtype),
        "b_h": np.zeros(hidden, dtype),
        "W_hy": rng.normal(0, 0.1, (vocab_size, hidden)).astype(dtype),
        "b_y": np.zeros(vocab_size, dtype),
    }


def rnn_forward_numpy(params: dict, inputs, targets, h0=None):
    """Run the RNN over one sequence and return (loss, cache).

    inputs, targets: int sequences of equal length T (targets[t] is the character after inputs[t]).
    loss is the mean cross-entropy over the T positions, in nats. `cache` holds what the backward pass needs:
    "h" (T+1, H) with h[0] = h0, and "probs" (T, V), plus the inputs and targets.
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    if inputs.shape != targets.shape or inputs.ndim != 1 or len(inputs) == 0:
        raise ValueError(f"inputs and targets must be equal-length 1-D id sequences, got shapes "
                         f"{inputs.shape} and {targets.shape}")
    hidden = params["W_hh"].shape[0]
    # BEGIN SOLUTION [numpy-forward] Loop over t: h = tanh(W_xh[:, x] + W_hh h + b_h); softmax of W_hy h + b_y.
    T = len(inputs)
    h = np.zeros((T + 1, hidden), params["W_hh"].dtype)
    if h0 is not None:
        h[0] = h0
    probs = np.zeros((T, params["W_hy"].shape[0]), params["W_hy"].dtype)
    loss = 0.0
    for t in range(T):
        # W_xh @ one_hot(x_t) is just column x_t of W_xh
        h[t + 1] = np.tanh(params["W_xh"][:, inputs[t]] + params["W_hh"] @ h[t] + params["b_h"])
        logits = params["W_hy"] @ h[t + 1] + params["b_y"]          # (V,)
        e = np.exp(logits - logits.max())                          # stable softmax
        probs[t] = e / e.sum()
        loss -= math.log(probs[t, targets[t]])
    cache = {"h": h, "probs": probs, "inputs": inputs, "targets": targets}
    return loss / T, cache
    # END SOLUTION


def rnn_backward_numpy(params: dict, cache: dict) -> dict[str, np.ndarray]:
    """Gradients of the mean loss with respect to every parameter (same keys and shapes as `params`), plus
    "h0": the gradient with respect to the initial state. Backpropagation through time, by hand."""
    # BEGIN SOLUTION [numpy-backward] Walk t backwards; dlogits = probs - onehot(y), carry dh_next through W_hh and tanh'.
    h, probs, inputs, targets = cache["h"], cache["probs"], cache["inputs"], cache["targets"]
    T = len(inputs)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dh_next = np.zeros_like(h[0])                                  # gradient flowing into h_t from step t+1
    for t in reversed(range(T)):
        dlogits = probs[t].copy()
        dlogits[targets[t]] -= 1.0                                 # d(-log softmax)/dlogits = p - onehot
        dlogits /= T                                               # the loss is a mean over T positions
        grads["W_hy"] += np.outer(dlogits, h[t + 1])
        grads["b_y"] += dlogits
        dh = params["W_hy"].T @ dlogits + dh_next                  # (H,) from the output and from the future
        da = dh * (1.0 - h[t + 1] ** 2)                            # through tanh: tanh'(a) = 1 - tanh(a)^2
        grads["W_xh"][:, inputs[t]] += da
        grads["W_hh"] += np.outer(da, h[t])
        grads["b_h"] += da
        dh_next = params["W_hh"].T @ da
    grads["h0"] = dh_next
    return grads
    # END SOLUTION


# ----------------------------------------------------------------------------- 3. PyTorch: the cell and the model

class RNNCell(nn.Module):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), built from parameters (no nn.RNN / nn.RNNCell).

    The parameter names and shapes match torch's nn.RNNCell, so weights copy across one to one.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)                       # torch's default init for recurrent cells
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, input_size), h (B, hidden_size) -> h' (B, hidden_size)."""
        # BEGIN SOLUTION [rnn-cell] Two affine maps (input and previous state), summed, through tanh.
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh)
        # END SOLUTION


class CharRNN(nn.Module):
    """Embedding -> RNNCell unrolled over time -> linear head to the vocabulary."""

    def __init__(self, vocab_size: int, hidden_size: int = 128, embed_size: int = 32):
        super().__init__()
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.cell = RNNCell(embed_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        nn.init.normal_(self.head.weight, std=0.01)                 # near-uniform predictions at init: loss ~ ln V
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) ids -> (logits (B, T, V), last hidden state (B, H)). h defaults to zeros."""
        if x.dim() != 2:
            raise ValueError(f"x must be a (batch, time) tensor of ids, got shape {tuple(x.shape)}")
        # BEGIN SOLUTION [char-rnn] Embed, then step the cell over T keeping every h_t; stack and project with the head.
        B, T = x.shape
        if h is None:
            h = x.new_zeros((B, self.hidden_size), dtype=self.head.weight.dtype)
        emb = self.embed(x)                                        # (B, T, E)
        states = []
        for t in range(T):                                         # sequential: h_t needs h_{t-1}
            h = self.cell(emb[:, t], h)
            states.append(h)
        hs = torch.stack(states, dim=1)                            # (B, T, H)
        return self.head(hs), h                                    # (B, T, V), (B, H)
        # END SOLUTION


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def get_batch(data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None):
    """Random windows of the id stream: x (B, T) and y (B, T), y shifted one character to the right."""
    if len(data) <= seq_len + 1:
        raise ValueError(f"the data ({len(data)} ids) must be longer than seq_len + 1 = {seq_len + 1}")
    starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + seq_len] for s in starts.tolist()])
    y = torch.stack([data[s + 1:s + seq_len + 1] for s in starts.tolist()])
    return x, y


def train_step(model: CharRNN, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               clip: float = 1.0) -> float:
    """One optimisation step on (x, y): forward, loss, backward, clip the global gradient norm, update.
    Returns the loss before the update."""
    # BEGIN SOLUTION [train-step] zero_grad, loss of model(x) against y, backward, clip_grad_norm_, step.
    optimizer.zero_grad(set_to_none=True)
    logits, _ = model(x)
    loss = lm_loss(logits, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)      # BPTT can explode: cap the gradient norm
    optimizer.step()
    return loss.item()
    # END SOLUTION


@torch.no_grad()
def evaluate(model: CharRNN, data: torch.Tensor, seq_len: int = 128) -> float:
    """Mean cross-entropy (nats per character) over `data` cut into consecutive windows."""
    model.eval()
    n = (len(data) - 1) // seq_len
    x = data[:n * seq_len].view(n, seq_len)
    y = data[1:n * seq_len + 1].view(n, seq_len)
    logits, _ = model(x)
    model.train()
    return lm_loss(logits, y).item()


# ----------------------------------------------------------------------------- 4. sampling and metrics

def sample_next(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None):
    """Draw one id per row from softmax(logits / temperature); temperature 0 means greedy (argmax).

    logits (B, V) -> ids (B,). Low temperature sharpens the distribution, high temperature flattens it.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    # BEGIN SOLUTION [sampling] Greedy at 0; otherwise divide the logits by T, softmax, torch.multinomial.
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    # END SOLUTION


@torch.no_grad()
def generate(model: CharRNN, prompt: str, stoi: dict[str, int], itos: list[str], n: int,
             temperature: float = 1.0, generator: torch.Generator | None = None) -> str:
    """The prompt followed by `n` sampled characters. The prompt warms the hidden state up first."""
    if not prompt:
        raise ValueError("generate needs a non-empty prompt to start from (e.g. a newline)")
    model.eval()
    ids = torch.tensor([encode(prompt, stoi)])
    logits, h = model(ids)                                         # prefill: read the whole prompt
    out = []
    for _ in range(n):
        nxt = sample_next(logits[:, -1], temperature, generator)   # (1,)
        out.append(int(nxt))
        logits, h = model(nxt.view(1, 1), h)                       # one step, carrying the state
    model.train()
    return prompt + decode(out, itos)


def bits_per_char(loss_nats: float) -> float:
    """Cross-entropy in bits: nats / ln 2."""
    # BEGIN SOLUTION [metrics] Change the log base from e to 2.
    return float(loss_nats) / math.log(2)
    # END SOLUTION


def perplexity(loss_nats: float) -> float:
    """e^loss: the size of a uniform choice that would be as surprised as the model."""
    # BEGIN SOLUTION [metrics] Exponentiate the mean loss in nats.
    return math.exp(float(loss_nats))
    # END SOLUTION


# ----------------------------------------------------------------------------- demo

def _save_figure(fig, path) -> None:
    """Write a figure atomically: a temp file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a character-level RNN on Shakespeare and sample from it.")
    parser.add_argument("--data", default=None,
                        help="a plain-text file to train on instead (e.g. Tiny Shakespeare's input.txt)")
    parser.add_argument("--chars", type=int, default=300_000, help="characters of Shakespeare to use")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; tiny step-by-step recurrent models run best on one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = labkit.output_dir(__file__)

    # NumPy first: a tiny check that the hand-written BPTT agrees with finite differences.
    params = init_numpy_params(vocab_size=5, hidden=4)
    xs, ys = [0, 3, 1, 4, 2], [3, 1, 4, 2, 0]
    loss, cache = rnn_forward_numpy(params, xs, ys)
    grads = rnn_backward_numpy(params, cache)
    eps, i, j = 1e-6, 1, 2
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus["W_hh"][i, j] += eps
    minus["W_hh"][i, j] -= eps
    numeric = (rnn_forward_numpy(plus, xs, ys)[0] - rnn_forward_numpy(minus, xs, ys)[0]) / (2 * eps)
    print(f"NumPy BPTT: dL/dW_hh[{i},{j}] analytic {grads['W_hh'][i, j]:+.8f}  numeric {numeric:+.8f}")

    if args.data:
        with open(args.data, encoding="utf-8") as f:
            text = f.read()[:args.chars]
    else:
        text = assets.shakespeare(max_chars=args.chars)
    stoi, itos = build_vocab(text)
    data = torch.tensor(encode(text, stoi))
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    V = len(itos)
    model = CharRNN(V, hidden_size=args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"corpus: {len(text):,} chars, vocab {V}, model {sum(p.numel() for p in model.parameters()):,} params")
    init_val = evaluate(model, val_data[:20_000])
    print(f"initial val loss {init_val:.4f} (ln V = {math.log(V):.4f})")

    losses, start = [], time.time()
    for step in tqdm(range(args.steps), desc="training", leave=False):
        x, y = get_batch(train_data, args.batch, args.seq_len, gen)
        losses.append(train_step(model, optimizer, x, y))
        if step % 100 == 0:
            tqdm.write(f"step {step:4d}  train loss {losses[-1]:.4f}")
    val = evaluate(model, val_data[:20_000])
    print(f"trained {args.steps} steps in {time.time() - start:.1f}s")
    print(f"val loss {val:.4f} nats/char  bpc {bits_per_char(val):.3f}  perplexity {perplexity(val):.2f}")

    samples = []
    for temperature in (0.5, 0.8, 1.2):
        g = torch.Generator().manual_seed(args.seed)
        sample = generate(model, "ROMEO:\n", stoi, itos, 200, temperature, g)
        samples.append(f"--- temperature {temperature} ---\n{sample}\n")
        print(samples[-1])
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(samples))
    os.replace(tmp, out / "samples.txt")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.8, label="train (batch)")
    ax.axhline(math.log(V), ls="--", c="gray", label="ln V (uniform)")
    ax.axhline(val, ls=":", c="C1", label=f"val after training ({val:.2f})")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", title="Char-RNN on Shakespeare")
    ax.legend()
    _save_figure(fig, out / "loss_curve.png")
    print(f"wrote {out / 'loss_curve.png'} and {out / 'samples.txt'}")


if __name__ == "__main__":
    labkit.run(main)
