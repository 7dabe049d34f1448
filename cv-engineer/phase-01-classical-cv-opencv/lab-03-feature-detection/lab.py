"""Lab 03 · Features and geometry: Harris corners from scratch, SIFT/ORB matching with Lowe's ratio test, and
a homography from your own DLT + RANSAC, checked against cv2.cornerHarris, cv2.BFMatcher and a known warp.

The experiment: warp a real photo with a homography H we choose, detect and match keypoints between the two
images, and estimate H back. Because H is known, the error is measurable: map the image's four corners with the
estimated and the true H and compare (pixels).

Shapes: points are (N, 2) float arrays of (x, y) in pixels; descriptors are (N, 128) float32 for SIFT and
(N, 32) uint8 (256 bits) for ORB; homographies are (3, 3) float64 normalised so that H[2, 2] = 1.

Run it:  python solution.py [--image astronaut] [--size 256] [--detector sift]
Outputs: outputs/.../harris.png, matches.png, registration.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import cv2
import matplotlib
import numpy as np

import labkit
from labkit import assets

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "coins")


def load_gray(name: str = "astronaut", size: int | None = 256) -> np.ndarray:
    """A bundled scikit-image sample as gray uint8 (H, W), longer side scaled to `size`."""
    if name not in SAMPLES:
        raise ValueError(f"unknown image {name!r}; pick one of {', '.join(SAMPLES)}")
    return assets.sample_image(name, size, gray=True)


def random_homography(width: int, height: int, jitter: float = 0.12, seed: int = 0) -> np.ndarray:
    """A plausible perspective warp: move each image corner by up to `jitter` of the image size."""
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    dst = src + rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * np.float32([width, height])
    return cv2.getPerspectiveTransform(src, dst)


def corner_error(h_est: np.ndarray, h_true: np.ndarray, width: int, height: int) -> float:
    """Largest distance (px) between the image corners mapped by the estimated and by the true homography."""
    corners = np.float64([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    a = cv2.perspectiveTransform(corners[None], np.asarray(h_est, np.float64))[0]
    b = cv2.perspectiveTransform(corners[None], np.asarray(h_true, np.float64))[0]
    return float(np.linalg.norm(a - b, axis=1).max())


def interior_error(h_est: np.ndarray, h_true: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px) between the two mappings of a 5x5 grid spanning 10%..90% of the image: the error
    where the matches are, without the extrapolation to the corners."""
    xs, ys = np.meshgrid(np.linspace(0.1 * width, 0.9 * width, 5), np.linspace(0.1 * height, 0.9 * height, 5))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)[None]
    a = cv2.perspectiveTransform(grid, np.asarray(h_est, np.float64))[0]
    b = cv2.perspectiveTransform(grid, np.asarray(h_true, np.float64))[0]
    return float(np.linalg.norm(a - b, axis=1).mean())


# ----------------------------------------------------------------------------- Harris

def harris_response(gray: np.ndarray, block_size: int = 2, k: float = 0.04) -> np.ndarray:
    """Harris corner response R = det(M) - k trace(M)^2 per pixel, equal to
    cv2.cornerHarris(np.float32(gray), block_size, 3, k).

    M = sum over a block_size x block_size window of [[Ix^2, Ix Iy], [Ix Iy, Iy^2]], with Ix, Iy the 3x3 Sobel
    derivatives scaled by 1 / (4 block_size) as OpenCV does. Borders are BORDER_REFLECT_101. The window's anchor
    is block_size // 2 (for block_size 2 it covers the pixel and the one before it). Returns (H, W) float64.
    R >> 0 at corners (two large eigenvalues), R < 0 on edges (one), |R| small on flat regions.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a gray (H, W) image, got shape {gray.shape}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    # TODO [harris]: Sobel Ix, Iy (scaled), products Ix^2, IxIy, Iy^2, box-sum each over the block, then det - k trace^2.
    raise NotImplementedError('TODO [harris]: Sobel Ix, Iy (scaled), products Ix^2, IxIy, Iy^2, box-sum each over the block, then det - k trace^2.')


def harris_corners(gray: np.ndarray, block_size: int = 2, k: float = 0.04, rel_threshold: float = 0.01,
                   radius: int = 3, max_corners: int | None = None) -> np.ndarray:
    """Corner locations (N, 2) as (x, y) ints, strongest first: pixels whose response exceeds
    rel_threshold * max(R) and is the maximum of its (2 radius + 1)^2 neighbourhood (non-maximum suppression)."""
    # TODO [harris-corners]: Threshold R, then keep pixels equal to the max over shifted copies; sort by R.
    raise NotImplementedError('TODO [harris-corners]: Threshold R, then keep pixels equal to the max over shifted copies; sort by R.')


# ----------------------------------------------------------------------------- matching

def detect_and_describe(gray: np.ndarray, method: str = "sift", n_features: int = 1000):
    """OpenCV keypoints and descriptors: SIFT -> (N, 128) float32, ORB -> (N, 32) uint8 (256-bit BRIEF)."""
    if method == "sift":
        detector = cv2.SIFT_create(nfeatures=n_features)
    elif method == "orb":
        detector = cv2.ORB_create(nfeatures=n_features)
    else:
        raise ValueError(f"method must be 'sift' or 'orb', got {method!r}")
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    return keypoints, descriptors


def pairwise_distances(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """(N1, N2) distances: Euclidean for float descriptors, Hamming (differing bits) for uint8 binary ones."""
    # TODO [ratio-match]: L2 via |a|^2 + |b|^2 - 2 a.b; Hamming via unpackbits and two matrix products.
    raise NotImplementedError('TODO [ratio-match]: L2 via |a|^2 + |b|^2 - 2 a.b; Hamming via unpackbits and two matrix products.')


def ratio_match(d1: np.ndarray, d2: np.ndarray, ratio: float = 0.75) -> np.ndarray:
    """Lowe's ratio test: for each descriptor in d1 find its two nearest in d2 and keep the pair when
    best < ratio * second best (the best match is clearly better than any alternative).
    Returns (M, 2) int array of (index in d1, index in d2)."""
    if d1 is None or d2 is None or len(d1) == 0 or len(d2) < 2:
        raise ValueError("need descriptors in both images and at least 2 in the second; detect more keypoints")
    if d1.dtype != d2.dtype or d1.shape[1] != d2.shape[1]:
        raise ValueError(f"descriptors differ: {d1.dtype}{d1.shape} vs {d2.dtype}{d2.shape}")
    # TODO [ratio-match]: Distance matrix, the two smallest per row (argpartition), keep rows passing the ratio.
    raise NotImplementedError('TODO [ratio-match]: Distance matrix, the two smallest per row (argpartition), keep rows passing the ratio.')


# ----------------------------------------------------------------------------- homography

def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through H in homogeneous coordinates: [x', y', w]^T = H [x, y, 1]^T, then divide by w."""
    # TODO [dlt]: Append a column of ones, multiply by H^T, divide the first two columns by the third.
    raise NotImplementedError('TODO [dlt]: Append a column of ones, multiply by H^T, divide the first two columns by the third.')


def dlt_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Normalised Direct Linear Transform: H (3, 3), H[2, 2] = 1, from N >= 4 correspondences src -> dst.

    Each pair gives two rows of A h = 0 (h = H flattened, 9 unknowns, 8 degrees of freedom); h is the right
    singular vector of A with the smallest singular value. Hartley normalisation first (centroid to the origin,
    mean distance sqrt(2)) keeps A well conditioned; undo it at the end: H = T_dst^-1 H_n T_src.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 4:
        raise ValueError(f"need matching (N, 2) point arrays with N >= 4, got {src.shape} and {dst.shape}")
    # TODO [dlt]: Normalise both sets, stack 2 rows per pair, SVD, last row of V^T, denormalise, scale H[2,2] = 1.
    raise NotImplementedError('TODO [dlt]: Normalise both sets, stack 2 rows per pair, SVD, last row of V^T, denormalise, scale H[2,2] = 1.')


def ransac_homography(src: np.ndarray, dst: np.ndarray, threshold: float = 3.0, max_iters: int = 2000,
                      confidence: float = 0.999, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC around the DLT: fit H to random minimal samples of 4 pairs, count inliers (forward reprojection
    error < threshold px), keep the best, refit on all its inliers. Stops early once
    iterations >= log(1 - confidence) / log(1 - w^4), w being the best inlier fraction so far.
    Returns H (3, 3) and an inlier mask (N,) bool."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if len(src) < 4 or src.shape != dst.shape:
        raise ValueError(f"need at least 4 matching correspondences, got {src.shape} and {dst.shape}")
    # TODO [ransac]: Loop: sample 4, DLT, errors = |apply_homography(H, src) - dst|, keep the most inliers; refit.
    raise NotImplementedError('TODO [ransac]: Loop: sample 4, DLT, errors = |apply_homography(H, src) - dst|, keep the most inliers; refit.')


def register(img1: np.ndarray, img2: np.ndarray, method: str = "sift", ratio: float = 0.75,
             own_ransac: bool = False, threshold: float = 3.0):
    """Detect, describe, ratio-match, then RANSAC: the homography mapping img1's pixels onto img2's.
    Returns H, the matched points (pts1, pts2) and the inlier mask."""
    kp1, d1 = detect_and_describe(img1, method)
    kp2, d2 = detect_and_describe(img2, method)
    pairs = ratio_match(d1, d2, ratio)
    if len(pairs) < 4:
        raise ValueError(f"only {len(pairs)} matches passed the ratio test; need 4+ (try ratio 0.8 or SIFT)")
    pts1 = np.float64([kp1[i].pt for i in pairs[:, 0]])
    pts2 = np.float64([kp2[j].pt for j in pairs[:, 1]])
    if own_ransac:
        h, mask = ransac_homography(pts1, pts2, threshold)
    else:
        h, mask = cv2.findHomography(pts1, pts2, cv2.RANSAC, threshold)
        h, mask = h / h[2, 2], mask.ravel().astype(bool)
    return h, pts1, pts2, mask


# ----------------------------------------------------------------------------- demo

def checkerboard(squares: int = 6, square: int = 24, margin: int = 16) -> np.ndarray:
    """A gray checkerboard with a white margin; its inner corners lie at margin + k * square - 0.5."""
    size = squares * square + 2 * margin
    img = np.full((size, size), 230, np.uint8)
    for i in range(squares):
        for j in range(squares):
            if (i + j) % 2 == 0:
                y, x = margin + i * square, margin + j * square
                img[y:y + square, x:x + square] = 30
    return img


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Harris, ratio-test matching and RANSAC homography.")
    parser.add_argument("--image", default="astronaut", choices=SAMPLES)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector", default="sift", choices=("sift", "orb"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic warp")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    board = checkerboard()
    r = harris_response(board)
    ref = cv2.cornerHarris(board.astype(np.float32), 2, 3, 0.04)
    print(f"harris_response vs cv2.cornerHarris on a checkerboard: max |diff| / max |R| = "
          f"{np.abs(r - ref).max() / np.abs(ref).max():.1e}")
    corners = harris_corners(board)
    lattice = np.array([[16 + 24 * i - 0.5, 16 + 24 * j - 0.5] for i in range(7) for j in range(7)])
    inner = lattice.reshape(7, 7, 2)[1:-1, 1:-1].reshape(-1, 2)
    to_lattice = np.linalg.norm(corners[:, None] - lattice[None], axis=2).min(axis=1)
    to_inner = np.linalg.norm(inner[:, None] - corners[None], axis=2).min(axis=1)
    print(f"harris_corners: {len(corners)} detections, all within {to_lattice.max():.2f} px of a square corner; "
          f"all 25 inner corners found within {to_inner.max():.2f} px")

    gray = load_gray(args.image, args.size)
    h, w = gray.shape
    h_true = random_homography(w, h, seed=args.seed)
    warped = cv2.warpPerspective(gray, h_true, (w, h))
    for method in ("sift", "orb"):
        for own in (False, True):
            h_est, p1, p2, mask = register(gray, warped, method, own_ransac=own)
            print(f"{method:4} + ratio 0.75 + {'own RANSAC    ' if own else 'cv2 RANSAC    '}: {len(p1):4d} matches, "
                  f"{mask.sum():4d} inliers ({mask.mean():.0%}), error at corners {corner_error(h_est, h_true, w, h):.2f} px, "
                  f"inside {interior_error(h_est, h_true, w, h):.2f} px")

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(board, cmap="gray")
    axes[0].plot(corners[:, 0], corners[:, 1], "r+", ms=10)
    axes[0].set_title("Harris corners (ours)")
    axes[1].imshow(np.sign(r) * np.abs(r) ** 0.25, cmap="RdBu_r")
    axes[1].set_title("R^(1/4): red corners, blue edges")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "harris.png", dpi=80)
    plt.close(fig)

    h_est, p1, p2, mask = register(gray, warped, args.detector)
    canvas = np.hstack([gray, warped])
    fig, ax = plt.subplots(figsize=(12, 6))
    ax.imshow(canvas, cmap="gray")
    for (x1, y1), (x2, y2), ok in zip(p1, p2, mask):
        ax.plot([x1, x2 + w], [y1, y2], color="lime" if ok else "red", lw=0.6, alpha=0.8)
    ax.set_title(f"{args.detector} matches after the ratio test: green = RANSAC inliers, red = outliers")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "matches.png", dpi=80)
    plt.close(fig)

    unwarped = cv2.warpPerspective(warped, np.linalg.inv(h_est), (w, h))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    for ax, (title, img) in zip(axes, [("original", gray), ("warped by the known H", warped),
                                       ("warped back with the estimated H", unwarped)]):
        ax.imshow(img, cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "registration.png", dpi=80)
    plt.close(fig)
    print(f"figures in {out}")


if __name__ == "__main__":
    labkit.run(main)
