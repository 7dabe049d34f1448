"""Training-loop mechanics: the parts that turn a toy loop into one you can leave running overnight.

You build, one function at a time:
- gradient accumulation that gives exactly the gradient of the large batch (the loss is a mean over *tokens*,
  so each micro-batch's summed loss is divided by the token count of the whole batch);
- a linear-warmup + cosine learning-rate schedule;
- gradient clipping by global L2 norm;
- one optimisation step with optional mixed precision (bf16 autocast, or fp16 with a GradScaler);
- checkpoints written atomically (temp file, fsync, os.replace), loaded with clear errors, and a resume that
  restores model, optimizer, scheduler, every RNG and the data position, so the run continues bit for bit.

The model is a deliberately tiny character-level LM (a bigram MLP with dropout) on Shakespeare: the loop is the
subject here, not the model, and dropout makes the RNG state matter for an exact resume.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit
from labkit import assets

IGNORE = -100  # target id that contributes nothing to the loss (padding)
CHECKPOINT_FORMAT = "labkit-training-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("format", "version", "step", "model", "optimizer", "scheduler", "data", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupted, truncated, or made for another model."""


# ---------------------------------------------------------------- model and data (given)

class TinyLM(nn.Module):
    """Bigram MLP language model: each position predicts the next character from the current one.

    (B, T) token ids -> (B, T, V) logits. Dropout is there on purpose: it consumes torch's RNG.
    """

    def __init__(self, vocab_size: int, d_model: int = 32, d_hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_hidden, vocab_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(ids))  # (B, T, d) -> (B, T, V)


class CharStream:
    """Fixed-length windows of a token array, visited in a shuffled order that is a pure function of
    (seed, epoch). Its whole position is (epoch, cursor), which is what a checkpoint must store."""

    def __init__(self, tokens: torch.Tensor, seq_len: int, batch_size: int, seed: int = 0):
        if tokens.ndim != 1 or len(tokens) < seq_len + 2:
            raise ValueError(f"need a 1-D token tensor longer than seq_len+1={seq_len + 1}, got shape "
                             f"{tuple(tokens.shape)}")
        self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed
        self.n_windows = (len(tokens) - 1) // seq_len
        self.epoch, self.cursor = 0, 0
        self._order = self._shuffle(0)

    def _shuffle(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(self.seed + epoch).permutation(self.n_windows)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each (batch_size, seq_len); y is x shifted left by one token."""
        if self.cursor + self.batch_size > self.n_windows:
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._shuffle(self.epoch)
        starts = self._order[self.cursor:self.cursor + self.batch_size] * self.seq_len
        self.cursor += self.batch_size
        rows = torch.stack([self.tokens[s:s + self.seq_len + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.cursor = state["seed"], state["epoch"], state["cursor"]
        self._order = self._shuffle(self.epoch)


def char_tokens(text: str) -> tuple[torch.Tensor, list[str]]:
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return torch.tensor([index[c] for c in text], dtype=torch.long), vocab


# ---------------------------------------------------------------- 1. gradient accumulation

def accumulate_gradients(model: nn.Module, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], *,
                         amp_dtype: torch.dtype | None = None, scaler=None) -> float:
    """Run forward+backward on each micro-batch so that the summed .grad equals the gradient of the mean
    token loss over *all* micro-batches together. Returns that mean loss.

    Targets equal to IGNORE (-100) do not count. With equal token counts this is the familiar loss/accum; with
    ragged padding only "sum of token losses / total tokens of the whole batch" is right.
    `amp_dtype` turns on autocast for the forward; `scaler` (a torch.amp.GradScaler) scales each backward.
    """
    if not micro_batches:
        raise ValueError("micro_batches is empty; pass at least one (x, y) pair")
    # BEGIN SOLUTION [accumulate-gradients] Count valid tokens over all micro-batches first; backprop each summed loss divided by that count.
    # L = (1/N) sum_i l_i over all N valid tokens of the big batch  =>  each micro-batch adds sum_{i in mb} l_i / N
    n_tokens = sum(int((y != IGNORE).sum()) for _, y in micro_batches)
    if n_tokens == 0:
        raise ValueError("every target is IGNORE (-100); there is nothing to learn from in this batch")
    device_type = next(model.parameters()).device.type
    total = 0.0
    for x, y in micro_batches:
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)  # (B, T, V), possibly in bf16/fp16
        # the loss itself in float32: log-softmax in half precision loses the small probabilities
        loss_sum = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
        loss = loss_sum / n_tokens
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.item()
    return total
    # END SOLUTION


# ---------------------------------------------------------------- 2. learning-rate schedule

def lr_at(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to `peak_lr` over `warmup_steps`, then a half cosine down to `min_lr` at
    `total_steps`, and `min_lr` after that.

        step < W:        lr = peak * step / W
        W <= step <= S:  lr = min + (peak - min) * (1 + cos(pi * (step - W) / (S - W))) / 2
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got warmup={warmup_steps}, total={total_steps}")
    if not 0 <= min_lr <= peak_lr:
        raise ValueError(f"need 0 <= min_lr <= peak_lr, got min_lr={min_lr}, peak_lr={peak_lr}")
    # BEGIN SOLUTION [lr-schedule] Two regimes: a straight line up to the peak, then half a cosine from peak to min_lr (clamp the progress at 1).
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # END SOLUTION


def make_scheduler(optimizer: torch.optim.Optimizer, *, peak_lr: float, warmup_steps: int, total_steps: int,
                   min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR driving `optimizer` along lr_at (the optimizer's lr must be set to peak_lr)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = peak_lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps,
                                      min_lr=min_lr) / peak_lr)


# ---------------------------------------------------------------- 3. gradient clipping

def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global L2 norm is at most `max_norm`.

    norm = sqrt(sum_p ||g_p||^2);  g <- g * min(1, max_norm / (norm + 1e-6)).  Returns the norm before clipping.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # BEGIN SOLUTION [clip-gradients] One norm over every gradient (a norm of per-tensor norms), one shared scale factor capped at 1.
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale)
    return norm
    # END SOLUTION


# ---------------------------------------------------------------- 4. one optimisation step

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, micro_batches, *,
               max_norm: float = 1.0, amp_dtype: torch.dtype | None = None, scaler=None) -> tuple[float, float]:
    """zero grads -> accumulate -> (unscale) -> clip -> optimizer step (through the scaler if any) -> scheduler.

    Returns (mean token loss, gradient norm before clipping). bf16 needs no scaler (same exponent range as fp32);
    fp16 does: small gradients underflow to zero unless the loss is multiplied up first.
    """
    # BEGIN SOLUTION [train-step] Clip only true gradients: with a scaler, unscale_ before clipping and let scaler.step skip steps with inf.
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, micro_batches, amp_dtype=amp_dtype, scaler=scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)  # grads now in true units; also records whether any is inf/nan
    norm = clip_gradients(model.parameters(), max_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the unscale found inf/nan
        scaler.update()         # shrink the scale after an overflow, grow it after a run of good steps
    else:
        optimizer.step()
    scheduler.step()
    return loss, float(norm)
    # END SOLUTION


# ---------------------------------------------------------------- 5. atomic checkpoint write

def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` so that `path` always holds either the old checkpoint or the complete new one.

    Write to a temporary file in the same folder, flush and fsync it, then os.replace it over the target
    (an atomic rename on POSIX and Windows), then fsync the folder so the rename itself is durable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # BEGIN SOLUTION [atomic-save] Temp file in the same folder, torch.save into it, flush + fsync, os.replace; remove the temp file on any error.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the directory entry durable too
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
    # END SOLUTION


# ---------------------------------------------------------------- 6. loading with clear errors

def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by save_checkpoint, refusing anything unusable with a one-line CheckpointError.

    Loads with weights_only=True (plain containers and tensors only: a checkpoint cannot run code on load).
    """
    path = Path(path)
    # BEGIN SOLUTION [load-checkpoint] Turn every failure (missing file, unreadable bytes, wrong format or version, missing keys) into one CheckpointError line naming the file.
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train from scratch or point at an existing file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickle with code in it...
        raise CheckpointError(f"{path} is corrupted or not a torch checkpoint ({type(err).__name__}); "
                              "delete it and resume from an earlier checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of this lab (no format={CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}, this code reads version "
                              f"{CHECKPOINT_VERSION}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it cannot resume a run")
    return state
    # END SOLUTION


# ---------------------------------------------------------------- 7. capture and restore a run

def capture_state(step: int, model: nn.Module, optimizer, scheduler, stream: CharStream) -> dict:
    """Everything a bit-for-bit resume needs, as plain containers and tensors (safe for weights_only loading)."""
    # BEGIN SOLUTION [resume] Store the state_dicts, the data position and all three RNG states (python, numpy, torch; CUDA too when present) in safe types.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"python": random.getstate(),
           "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "data": stream.state_dict(), "rng": rng}
    # END SOLUTION


def restore_state(state: dict, model: nn.Module, optimizer, scheduler, stream: CharStream) -> int:
    """Load a captured state into fresh objects; returns the step to continue from.

    Checks that the weights fit the model first, so a mismatch is one clear CheckpointError line.
    """
    # BEGIN SOLUTION [resume] Compare names and shapes before load_state_dict; then restore the optimizer, scheduler, stream and each RNG.
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    theirs = {name: tuple(t.shape) for name, t in state["model"].items()}
    if ours != theirs:
        missing, extra = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
        wrong = [n for n in ours.keys() & theirs.keys() if ours[n] != theirs[n]]
        detail = (f"{wrong[0]} is {theirs[wrong[0]]} in the checkpoint but {ours[wrong[0]]} here" if wrong else
                  f"missing {missing[:3]}, unexpected {extra[:3]}")
        raise CheckpointError(f"checkpoint does not fit this model: {detail}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stream.load_state_dict(state["data"])
    rng = state["rng"]
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])
    # END SOLUTION


# ---------------------------------------------------------------- the loop (given)

def build_run(tokens: torch.Tensor, vocab_size: int, *, seq_len: int = 32, micro_batch: int = 8,
              peak_lr: float = 3e-3, warmup_steps: int = 10, total_steps: int = 100, seed: int = 0):
    """(model, optimizer, scheduler, stream), seeded, ready for step 0."""
    torch.manual_seed(seed)
    model = TinyLM(vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.1)
    scheduler = make_scheduler(optimizer, peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps,
                               min_lr=0.1 * peak_lr)
    stream = CharStream(tokens, seq_len, micro_batch, seed=seed)
    return model, optimizer, scheduler, stream


def run_steps(model, optimizer, scheduler, stream, n_steps: int, *, accum: int = 2, max_norm: float = 1.0,
              amp_dtype=None, scaler=None, progress: bool = False) -> list[float]:
    """n_steps optimisation steps of `accum` micro-batches each; returns the losses."""
    model.train()
    device = next(model.parameters()).device
    losses = []
    for _ in tqdm(range(n_steps), disable=not progress, desc="train", unit="step"):
        micro = [tuple(t.to(device) for t in stream.next_batch()) for _ in range(accum)]
        loss, _ = train_step(model, optimizer, scheduler, micro, max_norm=max_norm, amp_dtype=amp_dtype,
                             scaler=scaler)
        losses.append(loss)
    return losses


def main(argv: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--accum", type=int, default=4, help="micro-batches per optimisation step")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--chars", type=int, default=200_000, help="characters of Shakespeare to train on")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: labkit.pick_device())")
    args = parser.parse_args(argv)

    device = labkit.pick_device(args.device)
    amp_dtype = labkit.device.autocast_dtype(device)
    out = labkit.output_dir(__file__)
    tokens, vocab = char_tokens(assets.shakespeare(args.chars))
    settings = dict(seq_len=args.seq_len, micro_batch=args.micro_batch, total_steps=args.steps,
                    warmup_steps=max(1, args.steps // 20))
    print(f"device={device} autocast={amp_dtype} vocab={len(vocab)} tokens={len(tokens):,} "
          f"effective batch = {args.micro_batch} x {args.accum} x {args.seq_len} = "
          f"{args.micro_batch * args.accum * args.seq_len:,} tokens/step")

    # A: one uninterrupted run.
    labkit.seed_everything(0)
    model, opt, sched, stream = build_run(tokens, len(vocab), **settings)
    model.to(device)
    start = time.perf_counter()
    losses = run_steps(model, opt, sched, stream, args.steps, accum=args.accum, amp_dtype=amp_dtype, progress=True)
    straight = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print(f"uninterrupted: loss {losses[0]:.3f} -> {losses[-1]:.3f} (ln V = {math.log(len(vocab)):.3f}) "
          f"in {time.perf_counter() - start:.1f} s")

    # B: the same run, stopped halfway, checkpointed, and resumed into brand-new objects.
    half = args.steps // 2
    labkit.seed_everything(0)
    model, opt, sched, stream = build_run(tokens, len(vocab), **settings)
    model.to(device)
    first = run_steps(model, opt, sched, stream, half, accum=args.accum, amp_dtype=amp_dtype)
    ckpt = save_checkpoint(capture_state(half, model, opt, sched, stream), out / "checkpoint.pt")
    print(f"saved {ckpt.name} at step {half} ({ckpt.stat().st_size / 1024:.0f} KiB); simulating a restart")
    del model, opt, sched, stream
    labkit.seed_everything(123)  # a new process would start from some other RNG state
    model, opt, sched, stream = build_run(tokens, len(vocab), **{**settings}, seed=1)
    model.to(device)
    step = restore_state(load_checkpoint(ckpt), model, opt, sched, stream)
    second = run_steps(model, opt, sched, stream, args.steps - step, accum=args.accum, amp_dtype=amp_dtype)
    same = all(torch.equal(straight[k], v) for k, v in model.state_dict().items())
    print(f"resumed from step {step}: parameters identical to the uninterrupted run: {same}; "
          f"max loss gap {max(abs(a - b) for a, b in zip(losses, first + second)):.1e}")

    lrs = [lr_at(s, peak_lr=opt.defaults["lr"], warmup_steps=settings["warmup_steps"], total_steps=args.steps,
                 min_lr=0.1 * opt.defaults["lr"]) for s in range(args.steps)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(losses, label="uninterrupted")
    ax1.plot(range(half, args.steps), second, "--", label=f"resumed at {half}")
    ax1.set(xlabel="step", ylabel="mean token loss", title="Training loss")
    ax1.legend()
    ax2.plot(lrs)
    ax2.set(xlabel="step", ylabel="learning rate", title="Warmup + cosine")
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=120)
    print(f"wrote {out / 'loss_curve.png'}")


if __name__ == "__main__":
    labkit.run(main)
