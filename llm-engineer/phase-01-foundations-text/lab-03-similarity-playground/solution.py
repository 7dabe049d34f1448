"""Lab 03: five ways to compare vectors, the laws they obey (or break), and why distances concentrate.

You write dot, cosine, Euclidean, Manhattan and Jaccard (for sets and for binary vectors), then a vectorised
pairwise version of each, then the "relative contrast" (max - min) / min that shows how, in high dimension,
the nearest and the farthest random point end up almost equally far away.

Facts the demo and tests make visible:
  * Euclidean and Manhattan are metrics (triangle inequality holds); 1 - cosine is NOT (counterexample below),
    while the angle arccos(cos) is.
  * On unit vectors cosine == dot, and ||a - b||^2 = 2 - 2 cos(a, b): all three rank neighbours identically.
    That is why vector databases normalise once and then use the (cheaper) inner product.
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import labkit  # noqa: E402


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float vectors of the same length, or a clear ValueError."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"expected two non-empty 1-D vectors of the same length, got shapes {a.shape} and {b.shape}")
    return a, b


# ------------------------------------------------------------------ the five metrics, one pair at a time

def dot(a, b) -> float:
    """Inner product sum_i a_i b_i: grows with both length and alignment."""
    a, b = _pair(a, b)
    # BEGIN SOLUTION [dot-cosine] Multiply element-wise and sum (or use the @ operator).
    return float(a @ b)
    # END SOLUTION


def cosine_similarity(a, b) -> float:
    """cos(angle) = a.b / (|a| |b|), in [-1, 1]; undefined for a zero vector."""
    a, b = _pair(a, b)
    if not np.any(a) or not np.any(b):
        raise ValueError("cosine similarity is undefined for a zero vector; drop it or use dot/euclidean")
    # BEGIN SOLUTION [dot-cosine] Dot product over the product of the two Euclidean norms; clip rounding to [-1, 1].
    return float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))
    # END SOLUTION


def cosine_distance(a, b) -> float:
    """1 - cosine similarity, in [0, 2] (scipy's `cosine`). Not a metric: it breaks the triangle inequality."""
    return 1.0 - cosine_similarity(a, b)


def angular_distance(a, b) -> float:
    """The angle itself, arccos(cos) / pi, in [0, 1]: a true metric on directions."""
    return float(np.arccos(cosine_similarity(a, b)) / np.pi)


def euclidean(a, b) -> float:
    """L2 distance sqrt(sum (a_i - b_i)^2)."""
    a, b = _pair(a, b)
    # BEGIN SOLUTION [euclidean-manhattan] Square root of the sum of squared differences.
    return float(np.sqrt(np.sum((a - b) ** 2)))
    # END SOLUTION


def manhattan(a, b) -> float:
    """L1 distance sum |a_i - b_i| (city-block: walk along the axes)."""
    a, b = _pair(a, b)
    # BEGIN SOLUTION [euclidean-manhattan] Sum of absolute differences.
    return float(np.sum(np.abs(a - b)))
    # END SOLUTION


def jaccard_sets(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B|, in [0, 1]. Two empty sets are identical: similarity 1."""
    a, b = set(a), set(b)
    # BEGIN SOLUTION [jaccard] Size of the intersection over size of the union; handle the empty union first.
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)
    # END SOLUTION


def jaccard_binary(u, v) -> float:
    """Jaccard similarity of two 0/1 vectors, read as sets of the positions that are 1."""
    u, v = _pair(u, v)
    if not np.all(np.isin(u, (0, 1))) or not np.all(np.isin(v, (0, 1))):
        raise ValueError("jaccard_binary expects 0/1 vectors; threshold or binarise the input first")
    # BEGIN SOLUTION [jaccard] Count positions where both are 1, and where at least one is 1; empty union means 1.
    both, either = np.sum((u == 1) & (v == 1)), np.sum((u == 1) | (v == 1))
    return 1.0 if either == 0 else float(both / either)
    # END SOLUTION


# ------------------------------------------------------------------ all pairs at once

METRICS = ("dot", "cosine", "euclidean", "manhattan", "jaccard")


def pairwise(X, Y, metric: str) -> np.ndarray:
    """Matrix M[i, j] comparing row i of X (n, d) with row j of Y (m, d). Shape (n, m).

    "dot" gives similarities; "cosine", "euclidean", "manhattan" and "jaccard" give DISTANCES (1 - similarity
    for cosine and jaccard), the convention of scipy.spatial.distance.cdist (a zero row's cosine is NaN there
    too). Jaccard expects 0/1 rows.
    """
    X, Y = np.atleast_2d(np.asarray(X, dtype=np.float64)), np.atleast_2d(np.asarray(Y, dtype=np.float64))
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if X.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y need the same number of columns, got shapes {X.shape} and {Y.shape}")
    # BEGIN SOLUTION [pairwise] Use X @ Y.T for dot/cosine/jaccard counts, |x|^2 + |y|^2 - 2 x.y for Euclidean, broadcasting (n,1,d)-(1,m,d) for Manhattan.
    gram = X @ Y.T                                                     # (n, m) all inner products
    if metric == "dot":
        return gram
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1)[:, None] * np.linalg.norm(Y, axis=1)[None, :]   # (n, m)
        cos = np.divide(gram, norms, out=np.full_like(gram, np.nan), where=norms > 0)  # NaN for a zero row, as scipy
        return 1.0 - np.clip(cos, -1.0, 1.0)
    if metric == "euclidean":
        squared = (X ** 2).sum(1)[:, None] + (Y ** 2).sum(1)[None, :] - 2.0 * gram       # (n, m)
        return np.sqrt(np.maximum(squared, 0.0))                      # rounding can dip just below 0
    if metric == "manhattan":
        return np.abs(X[:, None, :] - Y[None, :, :]).sum(axis=2)      # (n, m, d) -> (n, m)
    # jaccard on 0/1 rows: |x ∩ y| = x.y, |x ∪ y| = |x| + |y| - x.y
    union = X.sum(1)[:, None] + Y.sum(1)[None, :] - gram
    return 1.0 - np.divide(gram, union, out=np.ones_like(gram), where=union > 0)
    # END SOLUTION


# ------------------------------------------------------------------ distance concentration

def relative_contrast(distances) -> float:
    """(max - min) / min over a set of distances from one query: how much farther the farthest point is than
    the nearest, relative to the nearest. Near 0 means "nearest neighbour" has stopped meaning much."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    if d.size < 2 or np.any(d < 0):
        raise ValueError(f"need at least two non-negative distances, got {d.size} values (min {d.min() if d.size else None})")
    # BEGIN SOLUTION [concentration] Spread (largest minus smallest) divided by the smallest.
    return float((d.max() - d.min()) / d.min())
    # END SOLUTION


def concentration_curve(dims, n_points: int = 500, trials: int = 5, metric: str = "euclidean",
                        seed: int = 0) -> np.ndarray:
    """Mean relative contrast per dimension: `trials` times, draw a query and `n_points` points uniform in
    [0, 1]^d and measure the contrast of the query's distances. Shape (len(dims),)."""
    rng = np.random.default_rng(seed)
    curve = []
    for d in tqdm(list(dims), desc=f"{metric} contrast", leave=False):
        # BEGIN SOLUTION [concentration] Per trial: a (1, d) query and (n_points, d) points from rng.random, pairwise distances, contrast; average the trials.
        contrasts = [relative_contrast(pairwise(rng.random((1, d)), rng.random((n_points, d)), metric))
                     for _ in range(trials)]
        curve.append(np.mean(contrasts))
        # END SOLUTION
    return np.asarray(curve)


# ------------------------------------------------------------------ demo

def synthetic(kind: str, n: int, d: int, rng) -> np.ndarray:
    """Gaussian, sparse (90 % zeros; in low d many rows are all zero and have no cosine) or unit-normalised
    Gaussian vectors. Shape (n, d)."""
    x = rng.normal(size=(n, d))
    if kind == "sparse":
        x *= rng.random((n, d)) < 0.1
    elif kind == "normalized":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="similarity metrics and distance concentration")
    parser.add_argument("--points", type=int, default=400, help="points per distribution / per trial")
    parser.add_argument("--max-dim", type=int, default=4096)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)
    rng = np.random.default_rng(0)

    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.0])
    print(f"a={a}, b={b}: dot {dot(a, b):.3f}  cosine {cosine_similarity(a, b):.3f}  "
          f"euclidean {euclidean(a, b):.3f}  manhattan {manhattan(a, b):.3f}  "
          f"jaccard(words) {jaccard_sets({'to', 'be', 'or'}, {'not', 'to', 'be'}):.3f}")

    x, y, z = np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([0.0, 1.0])
    print(f"cosine distance is not a metric: d(x,z) = {cosine_distance(x, z):.3f} > d(x,y) + d(y,z) = "
          f"{cosine_distance(x, y) + cosine_distance(y, z):.3f}; the angle is: {angular_distance(x, z):.3f} <= "
          f"{angular_distance(x, y) + angular_distance(y, z):.3f} (equal: y lies on the arc from x to z)")

    units = synthetic("normalized", 200, 64, rng)
    query = units[0]
    by_cos = np.argsort(-np.array([cosine_similarity(query, u) for u in units]), kind="stable")
    by_dot = np.argsort(-pairwise(query, units, "dot").ravel(), kind="stable")
    by_l2 = np.argsort(pairwise(query, units, "euclidean").ravel(), kind="stable")
    print(f"unit vectors: cosine, dot and euclidean give the same top-10 ranking: "
          f"{np.array_equal(by_cos[:10], by_dot[:10]) and np.array_equal(by_dot[:10], by_l2[:10])}")

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for row, d in enumerate((16, 1024)):
        for col, kind in enumerate(("gaussian", "sparse", "normalized")):
            pts = synthetic(kind, args.points, d, rng)
            upper = np.triu_indices(len(pts), k=1)
            ax = axes[row, col]
            for metric in ("euclidean", "cosine"):
                values = pairwise(pts, pts, metric)[upper]
                values = values[np.isfinite(values)]
                ax.hist(values / values.mean(), bins=60, alpha=0.6, label=metric, density=True)
            ax.set_title(f"{kind}, d={d}")
            ax.set_xlabel("pairwise distance / its mean")
            ax.legend()
    fig.suptitle("Pairwise distances narrow around their mean as the dimension grows")
    fig.tight_layout()
    fig.savefig(out / "pairwise_distance_histograms.png", dpi=110)
    plt.close(fig)

    dims = [d for d in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if d <= args.max_dim]
    curves = {m: concentration_curve(dims, n_points=args.points, metric=m) for m in ("euclidean", "manhattan")}
    print("\n  dim   (max-min)/min euclidean   manhattan")
    for i, d in enumerate(dims):
        print(f"{d:5d}   {curves['euclidean'][i]:22.3f}   {curves['manhattan'][i]:9.3f}")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for metric, curve in curves.items():
        ax.loglog(dims, curve, "o-", label=metric)
    ax.loglog(dims, curves["euclidean"][-1] * (np.array(dims) / dims[-1]) ** -0.5, "k--", lw=1, label="∝ 1/√d (large d)")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("(max − min) / min distance to a query")
    ax.set_title(f"Distance concentration, {args.points} uniform points")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "distance_concentration.png", dpi=110)
    plt.close(fig)
    print(f"\nplots: {out / 'pairwise_distance_histograms.png'}\n       {out / 'distance_concentration.png'}")


if __name__ == "__main__":
    labkit.run(main)
