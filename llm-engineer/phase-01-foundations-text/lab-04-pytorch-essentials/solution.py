"""Lab 04: PyTorch essentials: broadcasting, autograd, a training loop, and a backward pass by hand.

  1. Ten broadcasting puzzles, each a one-liner once you see which dimensions line up.
  2. Autograd on functions whose derivatives you know (and why `.grad` accumulates).
  3. Linear regression three ways: closed-form least squares, gradient descent on raw tensors with autograd,
     and an nn.Module trained by an optimizer over a DataLoader. All three must agree within 1e-3.
  4. A 2-layer MLP whose backward pass you derive and write yourself, checked against autograd in float64.
  5. Matmul timing done right (warm-up, synchronize), CPU against CUDA when there is one.

Broadcasting rule used throughout: align shapes from the right; each dimension pair must be equal or one of
them 1 (or missing), and the 1 is stretched without copying memory.
"""
from __future__ import annotations

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset  # noqa: E402
from tqdm import trange  # noqa: E402

import labkit  # noqa: E402

# ------------------------------------------------------------------ 1. broadcasting puzzles


def outer_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """M[i, j] = a[i] + b[j]. (n,), (m,) -> (n, m)."""
    # BEGIN SOLUTION [broadcasting] Make a a column and b a row, then add.
    return a[:, None] + b[None, :]
    # END SOLUTION


def center_columns(X: torch.Tensor) -> torch.Tensor:
    """Subtract each column's mean. (n, d) -> (n, d)."""
    # BEGIN SOLUTION [broadcasting] The column means have shape (d,) or (1, d): both broadcast over the rows.
    return X - X.mean(dim=0, keepdim=True)
    # END SOLUTION


def normalize_rows(X: torch.Tensor) -> torch.Tensor:
    """Divide each row by its Euclidean norm. (n, d) -> (n, d)."""
    # BEGIN SOLUTION [broadcasting] Row norms with keepdim=True are (n, 1), which divides every column.
    return X / X.norm(dim=1, keepdim=True)
    # END SOLUTION


def scale_rows(X: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Row i multiplied by w[i]. (n, d), (n,) -> (n, d). (X * w would fail or, if n == d, silently scale columns.)"""
    # BEGIN SOLUTION [broadcasting] Turn w into a column before multiplying.
    return X * w[:, None]
    # END SOLUTION


def pairwise_sq_dists(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """D[i, j] = |X[i] - Y[j]|^2. (n, d), (m, d) -> (n, m)."""
    # BEGIN SOLUTION [broadcasting] Insert axes to get (n, 1, d) - (1, m, d) = (n, m, d), square, sum the last axis.
    return ((X[:, None, :] - Y[None, :, :]) ** 2).sum(dim=-1)
    # END SOLUTION


def add_channel_bias(images: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add bias[c] to every pixel of channel c. (B, C, H, W), (C,) -> (B, C, H, W)."""
    # BEGIN SOLUTION [broadcasting] Reshape the bias to (1, C, 1, 1) (view or None-indexing).
    return images + bias.view(1, -1, 1, 1)
    # END SOLUTION


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot rows. (n,) int -> (n, num_classes)."""
    # BEGIN SOLUTION [broadcasting] Compare a column of labels with a row arange(num_classes); cast the booleans.
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)[None, :]).float()
    # END SOLUTION


def causal_mask(T: int) -> torch.Tensor:
    """Boolean (T, T): True where query position i may attend to key position j, i.e. j <= i."""
    # BEGIN SOLUTION [broadcasting] A column arange against a row arange, compared with >=.
    positions = torch.arange(T)
    return positions[:, None] >= positions[None, :]
    # END SOLUTION


def batch_matvec(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y[b] = A[b] @ x[b]. (B, n, m), (B, m) -> (B, n)."""
    # BEGIN SOLUTION [broadcasting] Make x a batch of column vectors (B, m, 1), batch-matmul, drop the last axis.
    return (A @ x[..., None]).squeeze(-1)
    # END SOLUTION


def softmax_rows(X: torch.Tensor) -> torch.Tensor:
    """Numerically stable softmax over the last axis. (..., k) -> (..., k)."""
    # BEGIN SOLUTION [broadcasting] Subtract the row max (keepdim) before exp; divide by the row sum (keepdim).
    z = torch.exp(X - X.max(dim=-1, keepdim=True).values)
    return z / z.sum(dim=-1, keepdim=True)
    # END SOLUTION


# ------------------------------------------------------------------ 2. autograd


def derivative(f, x: torch.Tensor) -> torch.Tensor:
    """df/dx at every element of x, for an element-wise f (same shape as x)."""
    # BEGIN SOLUTION [autograd] Fresh leaf with requires_grad; since f is element-wise, the gradient of f(x).sum() is the derivative.
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).sum(), x)
    return grad
    # END SOLUTION


def second_derivative(f, x: torch.Tensor) -> torch.Tensor:
    """d^2 f / dx^2 element-wise: differentiate the first derivative again."""
    # BEGIN SOLUTION [autograd] First grad with create_graph=True so that it is itself differentiable, then grad of its sum.
    x = x.detach().clone().requires_grad_(True)
    (first,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return second
    # END SOLUTION


def accumulated_grad(f, x: float, times: int) -> float:
    """Call backward() `times` times without zeroing: .grad holds the SUM of the gradients (times x f'(x)).
    That is why every training loop calls zero_grad()."""
    # BEGIN SOLUTION [autograd] A scalar leaf; build the graph and call backward() in a loop; read .grad.
    leaf = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
    for _ in range(times):
        f(leaf).backward()
    return leaf.grad.item()
    # END SOLUTION


# ------------------------------------------------------------------ 3. linear regression three ways


def make_regression_data(n: int = 1000, d: int = 5, noise: float = 0.1, seed: int = 0):
    """y = X w_true + b_true + noise. Returns X (n, d), y (n,), w_true (d,), b_true (scalar tensor)."""
    if n < 2 or d < 1:
        raise ValueError(f"need n >= 2 samples and d >= 1 features, got n={n}, d={d}")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w_true = torch.randn(d, generator=g)
    b_true = torch.randn((), generator=g)
    y = X @ w_true + b_true + noise * torch.randn(n, generator=g)
    return X, y, w_true, b_true


def closed_form(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares min |[X 1] theta - y|^2 with torch.linalg.lstsq. Returns (w (d,), b scalar)."""
    # BEGIN SOLUTION [linear-regression] Append a column of ones for the bias, solve with lstsq (y as a column), split theta.
    design = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)   # (n, d+1)
    theta = torch.linalg.lstsq(design, y[:, None]).solution.squeeze(1)                          # (d+1,)
    return theta[:-1], theta[-1]
    # END SOLUTION


def fit_by_autograd(X: torch.Tensor, y: torch.Tensor, steps: int = 300, lr: float = 0.1):
    """Full-batch gradient descent on the MSE with raw tensors. w, b start at zero.
    Returns (w (d,), b scalar, losses list: the loss BEFORE each step)."""
    if steps < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    # BEGIN SOLUTION [linear-regression] Leaves w, b with requires_grad; each step: loss, backward, update inside no_grad, zero the grads.
    w = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, device=X.device, requires_grad=True)
    losses = []
    for _ in range(steps):
        loss = ((X @ w + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():          # the update itself must not become part of the graph
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
        losses.append(loss.item())
    return w.detach(), b.detach(), losses
    # END SOLUTION


class LinearModel(nn.Module):
    """y_hat = x . w + b as an nn.Module (one nn.Linear with a single output). (n, d) -> (n,)."""

    def __init__(self, d: int):
        super().__init__()
        # BEGIN SOLUTION [module-training] One nn.Linear from d inputs to 1 output.
        self.linear = nn.Linear(d, 1)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION [module-training] Apply the layer and drop the trailing size-1 axis.
        return self.linear(x).squeeze(-1)
        # END SOLUTION


def train_model(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 50, lr: float = 0.1,
                batch_size: int = 64, optimizer: str = "sgd", seed: int = 0) -> list[float]:
    """The canonical loop: for each mini-batch, zero_grad, forward, loss, backward, (clip), step.
    Runs on the model's device. Returns the mean training loss of every epoch."""
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    device = next(model.parameters()).device
    # A TensorDataset can be indexed with a whole list of rows, so sample batches of indices (one fetch per
    # batch) instead of the default one __getitem__ per row: same shuffled batches, far less Python overhead.
    dataset = TensorDataset(X, y)
    sampler = BatchSampler(RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)), batch_size, False)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None)
    # BEGIN SOLUTION [module-training] Build SGD or AdamW over model.parameters(); per batch: move to device, zero_grad, MSE, backward, clip to norm 1.0 for AdamW, step.
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0))
    history = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            if optimizer == "adamw":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, count = total + loss.item() * len(xb), count + len(xb)
        history.append(total / count)
    return history
    # END SOLUTION


# ------------------------------------------------------------------ 4. a 2-layer MLP, backward by hand


def mlp_forward(x, W1, b1, W2, b2):
    """out = tanh(x W1 + b1) W2 + b2.   x (N, D), W1 (D, H), b1 (H,), W2 (H, O), b2 (O,) -> out (N, O).
    Also returns the cache the backward pass needs."""
    a = torch.tanh(x @ W1 + b1)       # (N, H)
    return a @ W2 + b2, (x, a, W1, W2)


def mlp_backward(grad_out, cache):
    """Given dL/dout (N, O), return (dL/dx, dL/dW1, dL/db1, dL/dW2, dL/db2) with the shapes of the inputs.

    Chain rule, layer by layer (a = tanh(h), tanh'(h) = 1 - a^2):
        dW2 = a^T g         db2 = sum_N g        da = g W2^T
        dh  = da * (1 - a^2)
        dW1 = x^T dh        db1 = sum_N dh       dx = dh W1^T
    """
    # BEGIN SOLUTION [mlp-backward] Follow the chain rule in the docstring: output layer first, through tanh, then the first layer.
    x, a, W1, W2 = cache
    g = grad_out                       # (N, O)
    dW2 = a.T @ g                      # (H, N) @ (N, O) -> (H, O)
    db2 = g.sum(dim=0)                 # (O,)
    dh = (g @ W2.T) * (1 - a ** 2)     # (N, H)
    dW1 = x.T @ dh                     # (D, N) @ (N, H) -> (D, H)
    db1 = dh.sum(dim=0)                # (H,)
    dx = dh @ W1.T                     # (N, D)
    return dx, dW1, db1, dW2, db2
    # END SOLUTION


def mse_and_grad(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error over all elements and its gradient 2 (pred - target) / numel."""
    # BEGIN SOLUTION [mlp-backward] The mean of squared differences; differentiate the mean by hand.
    diff = pred - target
    return (diff ** 2).mean(), 2.0 * diff / diff.numel()
    # END SOLUTION


class MLPFunction(torch.autograd.Function):
    """Plugs the hand-written backward into autograd, so torch.autograd.gradcheck can test it."""

    @staticmethod
    def forward(ctx, x, W1, b1, W2, b2):
        out, cache = mlp_forward(x, W1, b1, W2, b2)
        ctx.save_for_backward(*cache)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return mlp_backward(grad_out, ctx.saved_tensors)


def init_mlp(d_in: int, hidden: int, d_out: int, seed: int = 0, dtype=torch.float64):
    """Small random weights (scaled by 1/sqrt(fan_in)) and zero biases."""
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(d_in, hidden, generator=g, dtype=dtype) / math.sqrt(d_in)
    W2 = torch.randn(hidden, d_out, generator=g, dtype=dtype) / math.sqrt(hidden)
    return [W1, torch.zeros(hidden, dtype=dtype), W2, torch.zeros(d_out, dtype=dtype)]


def train_mlp_manual(x, y, hidden: int = 32, steps: int = 1500, lr: float = 0.07, seed: int = 0):
    """Full-batch gradient descent with the hand-written backward only (no autograd). Returns (params, losses)."""
    params = init_mlp(x.shape[1], hidden, y.shape[1], seed, x.dtype)
    losses = []
    for _ in trange(steps, desc="manual MLP", leave=False):
        out, cache = mlp_forward(x, *params)
        loss, grad_out = mse_and_grad(out, y)
        grads = mlp_backward(grad_out, cache)[1:]          # skip dL/dx
        params = [p - lr * g for p, g in zip(params, grads)]
        losses.append(loss.item())
    return params, losses


# ------------------------------------------------------------------ 5. timing


def matmul_gflops(n: int, seconds: float) -> float:
    """An n x n by n x n matmul does n^3 multiply-adds = 2 n^3 floating-point operations."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 2 * n ** 3 / seconds / 1e9


def time_matmul(n: int, device="cpu", repeats: int = 10, dtype=torch.float32) -> float:
    """Seconds per (n x n) @ (n x n) matmul on `device`, after a warm-up.
    CUDA launches are asynchronous: without torch.cuda.synchronize() you time the launch, not the work."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # BEGIN SOLUTION [matmul-timing] Warm up once; synchronize (on CUDA) before starting and before stopping the clock; divide by repeats.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return (time.perf_counter() - start) / repeats
    # END SOLUTION


# ------------------------------------------------------------------ demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PyTorch essentials: broadcasting, autograd, training loops")
    parser.add_argument("--n", type=int, default=1000, help="regression samples")
    parser.add_argument("--d", type=int, default=5, help="regression features")
    parser.add_argument("--mlp-steps", type=int, default=1500)
    parser.add_argument("--matmul-n", type=int, default=1024)
    args = parser.parse_args(argv)
    device = labkit.pick_device()
    out = labkit.output_dir(__file__)

    print("broadcasting:")
    print("  outer_sum([1,2,3], [10,20]) =", outer_sum(torch.tensor([1, 2, 3]), torch.tensor([10, 20])).tolist())
    print("  causal_mask(4) =", causal_mask(4).int().tolist())
    print("  one_hot([2,0,1], 3) =", one_hot(torch.tensor([2, 0, 1]), 3).int().tolist())

    x0 = torch.tensor(2.0, dtype=torch.float64)
    got = derivative(lambda x: torch.sin(x ** 3 + 2 * x), x0).item()
    print(f"\nautograd: d/dx sin(x^3 + 2x) at x=2 = {got:.6f}; by hand cos(12) * 14 = {math.cos(12) * 14:.6f}")
    print(f"  backward() three times without zero_grad: .grad = {accumulated_grad(lambda x: x ** 2, 3.0, 3):.1f} "
          f"(= 3 x 6)")

    X, y, w_true, b_true = make_regression_data(args.n, args.d)
    w_cf, b_cf = closed_form(X, y)
    w_ag, b_ag, ag_losses = fit_by_autograd(X, y, steps=300, lr=0.1)
    model = LinearModel(args.d).to(device)
    mod_losses = train_model(model, X, y, epochs=20, lr=0.05, batch_size=64, optimizer="adamw")
    full = LinearModel(args.d).to(device)
    train_model(full, X, y, epochs=300, lr=0.1, batch_size=len(X), optimizer="sgd")
    print(f"\nlinear regression, n={args.n}, d={args.d} (modules trained on {device}):")
    print(f"  closed form vs true w: max |diff| {(w_cf - w_true).abs().max():.4f}  (noise 0.1)")
    print(f"  autograd GD vs closed form: max |w diff| {(w_ag - w_cf).abs().max():.2e}, |b diff| "
          f"{(b_ag - b_cf).abs():.2e}")
    for name, m in (("nn.Module + AdamW, batches of 64", model), ("nn.Module + full-batch SGD", full)):
        w_m, b_m = m.linear.weight.detach().cpu().ravel(), m.linear.bias.detach().cpu()[0]
        print(f"  {name} vs closed form: max |w diff| {(w_m - w_cf).abs().max():.2e}, "
              f"|b diff| {(b_m - b_cf).abs():.2e}")
    print("  (mini-batch gradients are noisy, so a constant learning rate leaves a small jitter around the optimum)")

    params = init_mlp(3, 8, 2)
    xs = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    ps = [p.clone().requires_grad_(True) for p in params]
    ref = torch.autograd.grad((mlp_forward(xs, *ps)[0] ** 2).sum() / 2, [xs, *ps])
    mine = mlp_backward(mlp_forward(xs, *ps)[0].detach(), mlp_forward(xs.detach(), *[p.detach() for p in ps])[1])
    worst = max((r - m).abs().max().item() for r, m in zip(ref, mine))
    print(f"\nmanual MLP backward vs autograd (float64): max |diff| {worst:.2e}")
    g = torch.Generator().manual_seed(0)
    xm = torch.rand(256, 1, generator=g, dtype=torch.float64) * 4 - 2
    _, mlp_losses = train_mlp_manual(xm, torch.sin(2 * xm), steps=args.mlp_steps)
    print(f"  manual-gradient MLP on sin(2x): loss {mlp_losses[0]:.4f} -> {mlp_losses[-1]:.4f}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.semilogy(ag_losses, label="autograd GD, full batch (per step)")
    left.semilogy(range(1, len(mod_losses) + 1), mod_losses, "o-", ms=3, label="nn.Module + AdamW, batches of 64 (per epoch)")
    left.axhline(0.01, color="k", ls=":", lw=1, label="noise floor 0.1²")
    left.set_xlabel("step / epoch")
    left.set_ylabel("MSE")
    left.set_title(f"Linear regression (n={args.n}, d={args.d})")
    left.legend(fontsize=8)
    right.semilogy(mlp_losses)
    right.set_xlabel("step")
    right.set_title("2-layer tanh MLP on sin(2x), hand-written backward")
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    print(f"  loss curves: {out / 'loss_curves.png'}")

    n = args.matmul_n
    cpu_s = time_matmul(n, "cpu", repeats=5)
    print(f"\nmatmul {n}x{n} float32: CPU {cpu_s * 1e3:.1f} ms ({matmul_gflops(n, cpu_s):.1f} GFLOP/s)")
    if torch.cuda.is_available():
        gpu_s = time_matmul(n, "cuda", repeats=50)
        print(f"  CUDA {gpu_s * 1e3:.2f} ms ({matmul_gflops(n, gpu_s):.0f} GFLOP/s), {cpu_s / gpu_s:.0f}x the CPU")
    else:
        print("  no CUDA device here: bench.py prints the GPU column on a machine with one")


if __name__ == "__main__":
    labkit.run(main)
