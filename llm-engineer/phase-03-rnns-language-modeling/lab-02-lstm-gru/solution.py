"""Lab 02: LSTM and GRU cells from primitives, and why their gradients survive long sequences.

What you build:
1. an LSTM cell and a GRU cell from parameters and elementwise ops, equal to torch.nn.LSTMCell / nn.GRUCell when
   the weights are copied across (same parameter names, shapes and gate order);
2. a language model that unrolls any of the three cells (vanilla RNN, LSTM, GRU) over time;
3. the gradient norm through time, ||dL/dh_t|| for L = sum(h_T), which shows the vanishing gradient of the
   vanilla RNN and the cell-state highway of the LSTM;
4. an equal-compute comparison: the hidden size that fits a parameter budget, and held-out perplexity after the
   same number of steps.

Gate equations (torch's layout: rows of weight_ih / weight_hh stacked gate by gate):

    LSTM (gates i, f, g, o)                       GRU (gates r, z, n)
    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    g = tanh   (W_ig x + b_ig + W_hg h + b_hg)    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)    h' = (1 - z) * n + z * h
    c' = f * c + i * g
    h' = o * tanh(c')

Run `python solution.py` for the demo (about a minute on a laptop CPU).
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

KINDS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # blocks of H rows in weight_ih / weight_hh


class _Cell(nn.Module):
    """Shared parameters of a recurrent cell with `gates` blocks, named and shaped as in torch's cells."""

    def __init__(self, input_size: int, hidden_size: int, gates: int):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)                         # torch's default for recurrent cells
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class RNNCell(_Cell):
    """The vanilla cell of lab 01: h' = tanh(W_ih x + b_ih + W_hh h + b_hh). Given, not a task here."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))


class LSTMCell(_Cell):
    """LSTM from primitives. State is the pair (h, c), both (B, H). `forget_bias` is added to the forget gate's
    input bias at init (1.0 is the usual choice: the cell starts out remembering)."""

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size, 4)
        with torch.no_grad():
            self.bias_ih[hidden_size:2 * hidden_size] += forget_bias

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (B, I), state (h, c) each (B, H) -> (h', c')."""
        h, c = state
        # BEGIN SOLUTION [lstm-cell] One matmul for all four gates, chunk in torch's order i, f, g, o; c' = f*c + i*g.
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_next = f * c + i * g                                       # additive update: the gradient highway
        h_next = o * torch.tanh(c_next)
        return h_next, c_next
        # END SOLUTION


class GRUCell(_Cell):
    """GRU from primitives. State is h (B, H)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, 3)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, I), h (B, H) -> h' (B, H)."""
        # BEGIN SOLUTION [gru-cell] Keep the input and hidden projections apart: r multiplies (W_hn h + b_hn) only.
        xr, xz, xn = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=-1)   # each (B, H)
        hr, hz, hn = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)                                   # reset: how much of the past feeds n
        z = torch.sigmoid(xz + hz)                                   # update: keep old h (z) or take n (1 - z)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h
        # END SOLUTION


CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def is_lstm(cell: nn.Module) -> bool:
    return isinstance(cell, (LSTMCell, nn.LSTMCell))


def zero_state(cell: nn.Module, batch: int, dtype=torch.float32):
    """The all-zero initial state: (h, c) for an LSTM, h otherwise."""
    h = torch.zeros(batch, cell.hidden_size, dtype=dtype)
    return (h, torch.zeros_like(h)) if is_lstm(cell) else h


def hidden_of(state):
    """The h part of a state (the whole state for RNN and GRU)."""
    return state[0] if isinstance(state, tuple) else state


def unroll(cell: nn.Module, xs: torch.Tensor, state=None):
    """Run `cell` over xs (B, T, I) from `state` (zeros by default). Returns (hs (B, T, H), final state).

    Works for this lab's cells and torch's nn.RNNCell / nn.LSTMCell / nn.GRUCell alike."""
    if xs.dim() != 3:
        raise ValueError(f"xs must be (batch, time, features), got shape {tuple(xs.shape)}")
    # BEGIN SOLUTION [unroll] Start from zero_state when state is None; step t by t, collecting hidden_of(state).
    if state is None:
        state = zero_state(cell, xs.size(0), xs.dtype)
    hs = []
    for t in range(xs.size(1)):
        state = cell(xs[:, t], state)
        hs.append(hidden_of(state))
    return torch.stack(hs, dim=1), state
    # END SOLUTION


class RecurrentLM(nn.Module):
    """Embedding -> one recurrent cell (rnn | lstm | gru) -> linear head over the vocabulary."""

    def __init__(self, kind: str, vocab_size: int, hidden_size: int, embed_size: int = 32):
        super().__init__()
        if kind not in CELLS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.cell = CELLS[kind](embed_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        nn.init.normal_(self.head.weight, std=0.01)                  # near-uniform predictions at init
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) ids -> logits (B, T, V)."""
        hs, _ = unroll(self.cell, self.embed(x))
        return self.head(hs)


# ----------------------------------------------------------------------------- gradient flow

def grad_norms_through_time(cell: nn.Module, xs: torch.Tensor) -> np.ndarray:
    """||dL/dh_t|| for t = 0..T, where L = sum(h_T) after running `cell` over xs (B, T, I) from zeros.

    Entry 0 is the initial state h_0, entry T the last one (where the norm is sqrt(B*H)). For an LSTM only h is
    differentiated (its c is carried along as the other half of the state). Run it in float64: a vanilla RNN's
    gradient underflows float32 within ~100 steps."""
    # BEGIN SOLUTION [grad-norms] Make h_0 a leaf that requires grad, retain_grad() on every h_t, backward sum(h_T).
    state = zero_state(cell, xs.size(0), xs.dtype)
    h0 = hidden_of(state).requires_grad_(True)
    state = (h0, state[1]) if isinstance(state, tuple) else h0
    hs = [h0]
    for t in range(xs.size(1)):
        state = cell(xs[:, t], state)
        h = hidden_of(state)
        h.retain_grad()                                              # keep dL/dh_t on a non-leaf tensor
        hs.append(h)
    hs[-1].sum().backward()
    return np.array([h.grad.norm().item() for h in hs])
    # END SOLUTION


# ----------------------------------------------------------------------------- equal compute

def count_params(kind: str, vocab_size: int, hidden_size: int, embed_size: int = 32) -> int:
    """Parameters of RecurrentLM(kind, V, H, E) by formula: embedding V*E, cell G*H*(E + H + 2), head H*V + V,
    with G gate blocks (1 for rnn, 4 for lstm, 3 for gru)."""
    if kind not in GATES:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    # BEGIN SOLUTION [param-budget] Embedding + G stacked (input + recurrent weights and two biases) + head.
    G = GATES[kind]
    return vocab_size * embed_size + G * hidden_size * (embed_size + hidden_size + 2) + hidden_size * vocab_size \
        + vocab_size
    # END SOLUTION


def hidden_for_budget(kind: str, vocab_size: int, budget: int, embed_size: int = 32) -> int:
    """The largest hidden size whose RecurrentLM has at most `budget` parameters."""
    if count_params(kind, vocab_size, 1, embed_size) > budget:
        raise ValueError(f"a budget of {budget} parameters cannot fit even hidden_size=1 for {kind}; raise it")
    # BEGIN SOLUTION [param-budget] count_params grows with H: walk (or bisect) up to the last H that fits.
    low, high = 1, 2
    while count_params(kind, vocab_size, high, embed_size) <= budget:
        low, high = high, high * 2
    while high - low > 1:                                            # invariant: low fits, high does not
        mid = (low + high) // 2
        low, high = (mid, high) if count_params(kind, vocab_size, mid, embed_size) <= budget else (low, mid)
    return low
    # END SOLUTION


@torch.no_grad()
def perplexity(model: nn.Module, data: torch.Tensor, seq_len: int = 64) -> float:
    """exp(mean next-token cross-entropy) over `data` (1-D ids) cut into consecutive windows of seq_len.

    `model` maps (B, T) ids to (B, T, V) logits. Every position of every full window counts once."""
    n = (len(data) - 1) // seq_len
    if n < 1:
        raise ValueError(f"data has {len(data)} ids; perplexity needs more than seq_len={seq_len}")
    # BEGIN SOLUTION [perplexity] Cut x = data[:-1] and y = data[1:] into (n, seq_len) windows; exp of the mean CE.
    x = data[:n * seq_len].view(n, seq_len)
    y = data[1:n * seq_len + 1].view(n, seq_len)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    return math.exp(loss.item())
    # END SOLUTION


# ----------------------------------------------------------------------------- demo

def train_lm(model: RecurrentLM, data: torch.Tensor, steps: int, batch: int, seq_len: int, lr: float,
             seed: int = 0, desc: str = "train") -> list[float]:
    """Adam with global-norm clipping at 1.0 on random windows; returns the per-step training losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc=desc, leave=False):
        starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=gen).tolist()
        x = torch.stack([data[s:s + seq_len] for s in starts])
        y = torch.stack([data[s + 1:s + seq_len + 1] for s in starts])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def _atomic(path, write) -> None:
    """Call write(tmp_path), then move the file into place: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    write(tmp)
    os.replace(tmp, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="RNN vs LSTM vs GRU: gradient flow and perplexity at equal compute.")
    parser.add_argument("--data", default=None,
                        help="a plain-text file to train on instead (e.g. Tiny Shakespeare's input.txt)")
    parser.add_argument("--chars", type=int, default=200_000)
    parser.add_argument("--budget", type=int, default=40_000, help="parameter budget for each model")
    parser.add_argument("--steps", type=int, default=300, help="training steps for each model")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--grad-steps", type=int, default=150, help="sequence length for the gradient-norm plot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; tiny step-by-step recurrent models run best on one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = labkit.output_dir(__file__)

    # 1. Gradient flow at init, on random inputs, in float64.
    xs = torch.randn(1, args.grad_steps, 32, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)
    curves = {}
    for kind in KINDS:
        torch.manual_seed(args.seed)
        curves[kind] = grad_norms_through_time(CELLS[kind](32, 64).double(), xs)
    print(f"||dL/dh_t|| at init, L = sum(h_T), T = {args.grad_steps}, H = 64:")
    print(f"  {'t':>6} " + " ".join(f"{k:>10}" for k in KINDS))
    for t in (args.grad_steps, args.grad_steps - 10, args.grad_steps - 50, 0):
        print(f"  {t:>6} " + " ".join(f"{curves[k][t]:10.2e}" for k in KINDS))

    # 2. Equal compute: same parameter budget, same steps, batch and data.
    if args.data:
        with open(args.data, encoding="utf-8") as f:
            text = f.read()[:args.chars]
    else:
        text = assets.shakespeare(max_chars=args.chars)
    itos = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(itos)}
    data = torch.tensor([stoi[ch] for ch in text])
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:split + 20_000]
    V = len(itos)
    rows, trained = [], {}
    for kind in KINDS:
        H = hidden_for_budget(kind, V, args.budget)
        torch.manual_seed(args.seed)
        model = RecurrentLM(kind, V, H)
        start = time.time()
        losses = train_lm(model, train, args.steps, args.batch, args.seq_len, args.lr, args.seed, desc=kind)
        seconds = time.time() - start
        ppl = perplexity(model, val)
        rows.append((kind, H, sum(p.numel() for p in model.parameters()), losses[-1], ppl, seconds))
        trained[kind] = model
        _atomic(out / f"{kind}.pt", lambda p, m=model: torch.save(m.state_dict(), p))
    base = rows[0][4]
    print(f"\nheld-out perplexity after {args.steps} steps, budget {args.budget:,} params (vocab {V}):")
    print(f"  {'model':<6} {'hidden':>6} {'params':>8} {'train loss':>10} {'val ppl':>8} {'bpc':>6} "
          f"{'vs rnn':>7} {'time':>6}")
    for kind, H, n, loss, ppl, seconds in rows:
        print(f"  {kind:<6} {H:>6} {n:>8,} {loss:>10.3f} {ppl:>8.2f} {math.log2(ppl):>6.3f} "
              f"{(ppl - base) / base:>+7.1%} {seconds:>5.1f}s")

    # 3. Gradient flow in the trained models, on real text.
    x_real = val[:args.grad_steps].view(1, -1)
    trained_curves = {}
    for kind, model in trained.items():
        emb = model.embed(x_real).detach().double()
        trained_curves[kind] = grad_norms_through_time(model.cell.double(), emb)
        model.float()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, data_curves, title in ((axes[0], curves, "at init (random inputs)"),
                                   (axes[1], trained_curves, f"after {args.steps} steps (Shakespeare)")):
        for kind in KINDS:
            ax.semilogy(np.maximum(data_curves[kind], 1e-300), label=kind)
        ax.set(xlabel="time step t", title=title)
    axes[0].set_ylabel(r"$\|\partial L / \partial h_t\|$,  L = sum($h_T$)")
    axes[0].legend()
    _atomic(out / "grad_norms.png", lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    print(f"\nwrote {out / 'grad_norms.png'} and checkpoints {', '.join(k + '.pt' for k in KINDS)}")


if __name__ == "__main__":
    labkit.run(main)
