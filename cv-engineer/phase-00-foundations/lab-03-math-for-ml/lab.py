"""Lab 03 · The math under ML, each piece verified numerically: SVD/PCA, eigenvectors, gradients, probability.

  1. PCA by the SVD of centred data: components, explained variance, projection, reconstruction (= sklearn's PCA
     up to each component's sign), and the best rank-k approximation (Eckart–Young).
  2. Eigenvectors by power iteration with deflation (= numpy.linalg.eigh for the top ones).
  3. Central-difference numerical gradients, the referee for every analytic gradient.
  4. Softmax cross-entropy and its gradient (p - y) / N.
  5. L2-regularised logistic regression: loss, gradient, and the same optimum as sklearn's LogisticRegression.
  6. Bayes' rule on discrete hypotheses (the rare-disease test).
  7. Gaussians: the maximum-likelihood fit (= scipy.stats.norm.fit) and sampling N(mu, Sigma) by Cholesky.

The demo runs "eigenfaces" on scikit-learn's 8 x 8 digits: the mean digit, the top components, and
reconstructions from a few of them.

Run it:  python solution.py [--components 16]
Outputs: outputs/.../digit_components.png, digit_reconstructions.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib
import numpy as np
from sklearn.datasets import load_digits

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _check_matrix(X: np.ndarray, what: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"{what} must be a 2-D array (samples, features) with at least 2 rows, got shape {X.shape}")
    return X


# ------------------------------------------------------------------ 1. PCA through the SVD


@dataclass
class PCAResult:
    mean: np.ndarray                      # (D,)
    components: np.ndarray                # (k, D), orthonormal rows, largest variance first
    explained_variance: np.ndarray        # (k,), variance along each component (divided by N - 1)
    explained_variance_ratio: np.ndarray  # (k,), fraction of the total variance
    singular_values: np.ndarray           # (k,)


def pca_fit(X: np.ndarray, k: int) -> PCAResult:
    """PCA of X (N, D) keeping k components.

    Centre: Xc = X - mean. SVD: Xc = U S V^T. The rows of V^T are the principal directions (eigenvectors of the
    covariance Xc^T Xc / (N - 1)), and the variance along direction i is S_i^2 / (N - 1).
    """
    X = _check_matrix(X)
    if not 1 <= k <= min(X.shape):
        raise ValueError(f"k must be between 1 and min(N, D) = {min(X.shape)}, got {k}")
    # TODO [pca-svd]: Centre, np.linalg.svd(full_matrices=False), keep k rows of Vt; variances are S^2/(N-1).
    raise NotImplementedError('TODO [pca-svd]: Centre, np.linalg.svd(full_matrices=False), keep k rows of Vt; variances are S^2/(N-1).')


def pca_transform(pca: PCAResult, X: np.ndarray) -> np.ndarray:
    """Coordinates of X in the component basis: (N, D) -> (N, k)."""
    # TODO [pca-svd]: Subtract the mean, multiply by components transposed.
    raise NotImplementedError('TODO [pca-svd]: Subtract the mean, multiply by components transposed.')


def pca_inverse(pca: PCAResult, Z: np.ndarray) -> np.ndarray:
    """Back from (N, k) coordinates to (N, D): the projection of the data onto the k-dimensional subspace."""
    # TODO [pca-svd]: Z @ components, plus the mean.
    raise NotImplementedError('TODO [pca-svd]: Z @ components, plus the mean.')


def low_rank_approx(M: np.ndarray, k: int) -> np.ndarray:
    """The best rank-k approximation sum_{i<k} s_i u_i v_i^T (Eckart–Young: no rank-k matrix is closer in the
    Frobenius or spectral norm, and the Frobenius error is sqrt(sum of the dropped s_i^2))."""
    M = _check_matrix(M, "M")
    # TODO [pca-svd]: Thin SVD; keep k singular triplets; (U[:, :k] * S[:k]) @ Vt[:k].
    raise NotImplementedError('TODO [pca-svd]: Thin SVD; keep k singular triplets; (U[:, :k] * S[:k]) @ Vt[:k].')


# ------------------------------------------------------------------ 2. eigenvectors by power iteration


def power_iteration(A: np.ndarray, iters: int = 5000, tol: float = 1e-12,
                    rng: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
    """Largest-magnitude eigenpair of a symmetric matrix: repeat v <- A v / |A v| until v stops moving.

    Converges at the rate |lambda_2 / lambda_1| per step. Returns (lambda, v) with |v| = 1 and the sign fixed so
    that the largest-magnitude entry of v is positive; lambda is the Rayleigh quotient v^T A v.
    """
    A = np.asarray(A, np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.allclose(A, A.T):
        raise ValueError(f"power_iteration expects a symmetric square matrix, got shape {A.shape}")
    rng = rng or np.random.default_rng(0)
    # TODO [power-iteration]: Random unit v; loop v = A v normalised; stop when |v_new - v| < tol (after sign fix).
    raise NotImplementedError('TODO [power-iteration]: Random unit v; loop v = A v normalised; stop when |v_new - v| < tol (after sign fix).')


def top_eigenpairs(A: np.ndarray, k: int, iters: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of a symmetric PSD matrix by deflation: after finding (l, v), continue on A - l v v^T.

    Returns (values (k,), vectors (D, k)), largest first.
    """
    # TODO [power-iteration]: Loop k times: power_iteration, store, subtract l * outer(v, v).
    raise NotImplementedError('TODO [power-iteration]: Loop k times: power_iteration, store, subtract l * outer(v, v).')


# ------------------------------------------------------------------ 3. numerical gradients


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences: df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), error O(eps^2).

    Works for x of any shape; x itself is left unchanged. Use float64: in float32 the rounding error
    (~1e-7 / eps) swamps the answer.
    """
    x = np.asarray(x, dtype=np.float64)
    # TODO [numerical-grad]: Copy x; for each flat index nudge +eps and -eps, difference, restore.
    raise NotImplementedError('TODO [numerical-grad]: Copy x; for each flat index nudge +eps and -eps, difference, restore.')


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|, 1e-12): the number a gradient check compares with ~1e-6."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))


# ------------------------------------------------------------------ 4. softmax cross-entropy


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits. Subtract each row's max first: exp(1000) overflows, the answer doesn't change."""
    # TODO [softmax-ce]: Shift by the row max (keepdims), exponentiate, divide by the row sum.
    raise NotImplementedError('TODO [softmax-ce]: Shift by the row max (keepdims), exponentiate, divide by the row sum.')


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over rows of -log softmax(logits)[label]. Uses log-sum-exp, never log(softmax), to stay finite."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, C) and integer labels (N,), got {logits.shape} and {labels.shape}")
    # TODO [softmax-ce]: log p = z - max - log(sum exp(z - max)); pick each row's label; negate the mean.
    raise NotImplementedError("TODO [softmax-ce]: log p = z - max - log(sum exp(z - max)); pick each row's label; negate the mean.")


def cross_entropy_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean CE)/d logits = (softmax(logits) - one_hot(labels)) / N, shape (N, C)."""
    # TODO [softmax-ce]: softmax, subtract 1 at each row's label, divide by N.
    raise NotImplementedError("TODO [softmax-ce]: softmax, subtract 1 at each row's label, divide by N.")


# ------------------------------------------------------------------ 5. logistic regression


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), written so neither branch overflows."""
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def logistic_loss(w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> float:
    """Mean binary cross-entropy of p = sigmoid(X w + b) against y in {0, 1}, plus (l2 / 2) |w|^2 (b unpenalised).

    Per sample: -[y log p + (1 - y) log(1 - p)] = log(1 + e^z) - y z with z = x.w + b (stable via logaddexp).
    """
    # TODO [logistic-grad]: z = X @ w + b; mean of logaddexp(0, z) - y z; add the L2 term.
    raise NotImplementedError('TODO [logistic-grad]: z = X @ w + b; mean of logaddexp(0, z) - y z; add the L2 term.')


def logistic_grad(w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> tuple[np.ndarray, float]:
    """(dL/dw, dL/db) = (X^T (p - y) / N + l2 w, mean(p - y)). The same p - y as softmax-CE, for two classes."""
    # TODO [logistic-grad]: residual r = sigmoid(z) - y; dw = X.T @ r / N + l2 * w; db = r.mean().
    raise NotImplementedError('TODO [logistic-grad]: residual r = sigmoid(z) - y; dw = X.T @ r / N + l2 * w; db = r.mean().')


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, lr: float = 0.5, steps: int = 2000
                 ) -> tuple[np.ndarray, float]:
    """Plain full-batch gradient descent on logistic_loss (the demo uses it on two digit classes)."""
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(steps):
        dw, db = logistic_grad(w, b, X, y, l2)
        w, b = w - lr * dw, b - lr * db
    return w, b


# ------------------------------------------------------------------ 6. Bayes' rule


def bayes_posterior(prior: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    """P(h | data) = P(data | h) P(h) / sum_h' P(data | h') P(h') for discrete hypotheses h."""
    prior, likelihood = np.asarray(prior, np.float64), np.asarray(likelihood, np.float64)
    if prior.shape != likelihood.shape or np.any(prior < 0) or not np.isclose(prior.sum(), 1.0):
        raise ValueError("prior must be non-negative, sum to 1, and have one entry per likelihood value")
    # TODO [bayes]: Multiply elementwise, divide by the total (the evidence P(data)); refuse a zero evidence.
    raise NotImplementedError('TODO [bayes]: Multiply elementwise, divide by the total (the evidence P(data)); refuse a zero evidence.')


def positive_test_posterior(prevalence: float, sensitivity: float, specificity: float) -> float:
    """P(disease | positive test): hypotheses (disease, healthy), likelihoods of a positive (sens, 1 - spec)."""
    # TODO [bayes]: Call bayes_posterior with prior (prevalence, 1 - prevalence); return the first entry.
    raise NotImplementedError('TODO [bayes]: Call bayes_posterior with prior (prevalence, 1 - prevalence); return the first entry.')


# ------------------------------------------------------------------ 7. Gaussians


def gaussian_mle(x: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (mu, sigma) of a 1-D sample: the mean and sqrt(mean squared deviation), i.e. ddof=0
    (biased: E[sigma_hat^2] = (n - 1)/n sigma^2)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"need a 1-D sample of at least 2 values, got shape {x.shape}")
    # TODO [distributions]: Set the derivatives of the log-likelihood to 0: mu = mean, sigma^2 = mean((x-mu)^2).
    raise NotImplementedError('TODO [distributions]: Set the derivatives of the log-likelihood to 0: mu = mean, sigma^2 = mean((x-mu)^2).')


def gaussian_logpdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """log N(x; mu, sigma^2) = -0.5 ((x - mu)/sigma)^2 - log sigma - 0.5 log(2 pi)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    # TODO [distributions]: The closed form above, elementwise.
    raise NotImplementedError('TODO [distributions]: The closed form above, elementwise.')


def sample_mvn(mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws from N(mean, cov), shape (n, D): x = mean + L z with cov = L L^T (Cholesky) and z ~ N(0, I)."""
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    if cov.shape != (mean.size, mean.size):
        raise ValueError(f"cov must be ({mean.size}, {mean.size}) for a mean of length {mean.size}, got {cov.shape}")
    # TODO [distributions]: L = np.linalg.cholesky(cov); z = rng.standard_normal((n, D)); mean + z @ L.T.
    raise NotImplementedError('TODO [distributions]: L = np.linalg.cholesky(cov); z = rng.standard_normal((n, D)); mean + z @ L.T.')


# ------------------------------------------------------------------ demo: eigen-digits


def save_components_figure(pca: PCAResult, path, shape=(8, 8)) -> None:
    """The mean digit, the first components (red positive, blue negative), and the cumulative variance curve."""
    n = min(len(pca.components), 15)
    fig, axes = plt.subplots(2, 9, figsize=(15, 4))
    axes[0, 0].imshow(pca.mean.reshape(shape), cmap="gray_r")
    axes[0, 0].set_title("mean", fontsize=9)
    for i, ax in enumerate(axes.ravel()[1:n + 1]):
        c = pca.components[i].reshape(shape)
        lim = np.abs(c).max()
        ax.imshow(c, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"PC{i + 1} {pca.explained_variance_ratio[i]:.1%}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    curve = axes.ravel()[-1]
    curve.axis("on")
    curve.plot(np.arange(1, len(pca.components) + 1), np.cumsum(pca.explained_variance_ratio), ".-")
    curve.set_title("cumulative variance", fontsize=9)
    curve.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_reconstructions_figure(X: np.ndarray, ks: list[int], path) -> list[float]:
    """Rows: originals, then reconstructions from k components. Returns the mean squared error for each k."""
    samples = X[:10]
    errors = []
    fig, axes = plt.subplots(len(ks) + 1, 10, figsize=(10, 1.1 * (len(ks) + 1)))
    for j in range(10):
        axes[0, j].imshow(samples[j].reshape(8, 8), cmap="gray_r")
    axes[0, 0].set_ylabel("original", fontsize=8)
    for row, k in enumerate(ks, start=1):
        pca = pca_fit(X, k)
        recon = pca_inverse(pca, pca_transform(pca, samples))
        errors.append(float(np.mean((pca_inverse(pca, pca_transform(pca, X)) - X) ** 2)))
        for j in range(10):
            axes[row, j].imshow(recon[j].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        axes[row, 0].set_ylabel(f"k={k}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return errors


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=16)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)
    digits = load_digits()
    X, y = digits.data, digits.target
    print(f"digits: X {X.shape} (8x8 images, values 0..16), {len(np.unique(y))} classes")

    pca = pca_fit(X, args.components)
    print(f"PCA k={args.components}: explained variance ratio of the first 5 "
          f"{np.round(pca.explained_variance_ratio[:5], 4)}, total {pca.explained_variance_ratio.sum():.3f}")
    cov = np.cov(X, rowvar=False)
    values, vectors = top_eigenpairs(cov, 3)
    print(f"power iteration on the 64x64 covariance: top eigenvalues {np.round(values, 3)}; "
          f"PCA variances {np.round(pca.explained_variance[:3], 3)}; "
          f"|cos| with PCs {np.round(np.abs(np.sum(vectors.T * pca.components[:3], axis=1)), 6)}")

    ks = [2, 5, 10, 20, 40]
    errors = save_reconstructions_figure(X, ks, out / "digit_reconstructions.png")
    rank_err = [np.sqrt(np.sum(np.linalg.svd(X - X.mean(0), compute_uv=False)[k:] ** 2)) for k in ks]
    print("reconstruction MSE by k: " + ", ".join(f"k={k}: {e:.3f}" for k, e in zip(ks, errors)))
    print("  Eckart-Young: sqrt(N * D * MSE) = Frobenius error = sqrt(sum of dropped s^2): "
          + ", ".join(f"{np.sqrt(e * X.size):.1f}={r:.1f}" for e, r in zip(errors, rank_err)))
    save_components_figure(pca, out / "digit_components.png")

    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4, 10)), rng.integers(0, 10, 4)
    num = numerical_gradient(lambda z: cross_entropy(z, labels), logits)
    print(f"softmax-CE gradient: analytic vs central differences, relative error "
          f"{relative_error(cross_entropy_grad(logits, labels), num):.1e}")

    mask = (y == 3) | (y == 8)
    Xb, yb = X[mask] / 16.0, (y[mask] == 8).astype(float)
    w, b = rng.standard_normal(64) * 0.1, 0.1
    num_w = numerical_gradient(lambda v: logistic_loss(v, b, Xb, yb, 1e-2), w)
    print(f"logistic gradient (3 vs 8, 64 weights): relative error {relative_error(logistic_grad(w, b, Xb, yb, 1e-2)[0], num_w):.1e}")
    w, b = fit_logistic(Xb, yb)
    acc = np.mean((sigmoid(Xb @ w + b) > 0.5) == yb)
    print(f"  gradient descent with it: training accuracy {acc:.3f} on {len(yb)} digits, "
          f"final loss {logistic_loss(w, b, Xb, yb, 1e-2):.4f}")

    post = positive_test_posterior(prevalence=0.01, sensitivity=0.99, specificity=0.95)
    print(f"Bayes: 1% prevalence, 99% sensitivity, 95% specificity -> P(disease | +) = {post:.4f}")
    sample = rng.normal(3.0, 2.0, 10_000)
    mu, sigma = gaussian_mle(sample)
    print(f"Gaussian MLE on 10,000 draws of N(3, 2^2): mu {mu:.4f}, sigma {sigma:.4f}")
    draws = sample_mvn([1.0, -2.0], [[2.0, 0.8], [0.8, 1.0]], 20_000, rng)
    print(f"MVN by Cholesky, 20,000 draws: mean {np.round(draws.mean(0), 3)}, "
          f"cov {np.round(np.cov(draws, rowvar=False), 3).tolist()}")
    print(f"figures: {out / 'digit_components.png'}, {out / 'digit_reconstructions.png'}")


if __name__ == "__main__":
    labkit.run(main)
