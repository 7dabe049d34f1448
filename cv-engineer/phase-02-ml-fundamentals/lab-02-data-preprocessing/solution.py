"""Lab 02 · Data preprocessing: scaling, imputation, and augmentation that keeps boxes and masks in step.

Two halves of the same discipline: statistics are fitted on training data and then applied, unchanged, to
everything else; and a geometric augmentation must move the labels exactly as it moves the pixels.

- standardisation and min-max scaling from scratch (equal to StandardScaler / MinMaxScaler);
- missing-value imputation by mean, median or most frequent value (equal to SimpleImputer);
- flips, 90-degree rotations, crops and rescaling applied to an image, its boxes and its mask together;
- a random augmentation that chains them, checked on drawn rectangles whose true box and mask are known.

Box convention: (x1, y1, x2, y2) in continuous pixel coordinates, pixel column c covering [c, c + 1), so a
rectangle filling columns 10..19 has x1 = 10, x2 = 20 (the torchvision / Pascal-VOC-without-+1 convention).

Run it:  python solution.py [--image astronaut] [--n 6]
Outputs: outputs/.../augmentations.png
"""
from __future__ import annotations

import argparse
import warnings

import cv2
import matplotlib
import numpy as np
import skimage.data
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _check_matrix(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D (samples, features) array, got shape {X.shape}; reshape 1-D data "
                         "with X.reshape(-1, 1)")
    return X


# ----------------------------------------------------------------------------- scaling

def fit_standard(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (mean, scale) for z = (x - mean) / scale; scale is the population std (ddof=0).

    A constant feature has std 0; its scale is set to 1 so it maps to 0 instead of NaN (sklearn does the same).
    """
    X = _check_matrix(X)
    # BEGIN SOLUTION [scaling] Column means and ddof=0 stds; replace zero stds by 1.
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale
    # END SOLUTION


def standardize(X, stats) -> np.ndarray:
    """Apply (mean, scale) from fit_standard: z = (x - mean) / scale, broadcast over rows."""
    X = _check_matrix(X)
    mean, scale = stats
    # BEGIN SOLUTION [scaling] One broadcast expression.
    return (X - mean) / scale
    # END SOLUTION


def fit_minmax(X, feature_range=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) so that x * scale + offset maps each training column's [min, max] onto feature_range.

    scale = (hi - lo) / (max - min) (a constant column gets data range 1), offset = lo - min * scale.
    """
    X = _check_matrix(X)
    lo, hi = feature_range
    if not lo < hi:
        raise ValueError(f"feature_range must be (low, high) with low < high, got {feature_range}")
    # BEGIN SOLUTION [scaling] Data range per column (0 -> 1), then scale and offset as in the docstring.
    data_min, data_max = X.min(axis=0), X.max(axis=0)
    data_range = data_max - data_min
    data_range[data_range == 0] = 1.0
    scale = (hi - lo) / data_range
    return scale, lo - data_min * scale
    # END SOLUTION


def minmax(X, stats) -> np.ndarray:
    """Apply (scale, offset) from fit_minmax. Test rows may fall outside the range: that is expected."""
    X = _check_matrix(X)
    scale, offset = stats
    # BEGIN SOLUTION [scaling] x * scale + offset.
    return X * scale + offset
    # END SOLUTION


# ----------------------------------------------------------------------------- imputation

def fit_imputer(X, strategy: str = "mean") -> np.ndarray:
    """One fill value per column from the non-missing (non-NaN) entries.

    mean / median as usual; most_frequent = the mode, the smallest value among ties (SimpleImputer's rule).
    """
    if strategy not in ("mean", "median", "most_frequent"):
        raise ValueError(f"strategy must be 'mean', 'median' or 'most_frequent', got {strategy!r}")
    X = _check_matrix(X)
    empty = np.isnan(X).all(axis=0)
    if empty.any():
        raise ValueError(f"columns {np.flatnonzero(empty).tolist()} are entirely missing; drop them before imputing")
    # BEGIN SOLUTION [impute] nanmean / nanmedian; for the mode, np.unique with counts per column, argmax.
    if strategy == "mean":
        return np.nanmean(X, axis=0)
    if strategy == "median":
        return np.nanmedian(X, axis=0)
    fill = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        col = X[:, j]
        values, counts = np.unique(col[~np.isnan(col)], return_counts=True)  # values come back sorted
        fill[j] = values[np.argmax(counts)]  # argmax returns the first, i.e. smallest, of tied counts
    return fill
    # END SOLUTION


def impute(X, fill) -> np.ndarray:
    """A copy of X with each NaN replaced by its column's fill value."""
    X = _check_matrix(X).copy()
    # BEGIN SOLUTION [impute] np.where over the NaN mask, with fill broadcast across rows.
    return np.where(np.isnan(X), np.asarray(fill)[None, :], X)
    # END SOLUTION


# ----------------------------------------------------------------------------- geometric augmentation

def _check_sample(image, boxes, mask):
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ValueError(f"image must be an (H, W) or (H, W, C) array, got {getattr(image, 'shape', type(image))}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if mask is not None and mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape[:2]} differs from image shape {image.shape[:2]}")
    return boxes


def hflip(image, boxes, mask=None):
    """Mirror left-right. A point x goes to W - x, so a box [x1, y1, x2, y2] becomes [W - x2, y1, W - x1, y2]."""
    boxes = _check_sample(image, boxes, mask)
    w = image.shape[1]
    # BEGIN SOLUTION [flip-rotate] Reverse the column axis of image and mask; new x1 = W - old x2 and vice versa.
    out_boxes = boxes.copy()
    out_boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    return image[:, ::-1].copy(), out_boxes, None if mask is None else mask[:, ::-1].copy()
    # END SOLUTION


def vflip(image, boxes, mask=None):
    """Mirror top-bottom: y -> H - y."""
    boxes = _check_sample(image, boxes, mask)
    h = image.shape[0]
    # BEGIN SOLUTION [flip-rotate] Same as hflip on the row axis and the y coordinates.
    out_boxes = boxes.copy()
    out_boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    return image[::-1].copy(), out_boxes, None if mask is None else mask[::-1].copy()
    # END SOLUTION


def rot90(image, boxes, mask=None, k: int = 1):
    """Rotate by k × 90° counter-clockwise, like np.rot90 (the image becomes (W, H) for odd k).

    One quarter turn maps a point (x, y) to (y, W - x), so a box becomes [y1, W - x2, y2, W - x1].
    """
    boxes = _check_sample(image, boxes, mask)
    # BEGIN SOLUTION [flip-rotate] Apply the quarter turn k % 4 times: np.rot90 on the arrays, the map on the boxes.
    for _ in range(k % 4):
        w = image.shape[1]
        boxes = np.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], axis=1)
        image = np.rot90(image)
        mask = None if mask is None else np.rot90(mask)
    return np.ascontiguousarray(image), boxes, None if mask is None else np.ascontiguousarray(mask)
    # END SOLUTION


def crop(image, boxes, mask=None, window=(0, 0, None, None), min_visible: float = 0.3):
    """Cut the integer window (x0, y0, x1, y1) out of the image and mask; shift and clip the boxes to it.

    A box keeps its place only if at least `min_visible` of its area survives the clip (and it is non-empty).
    Returns (image, boxes, mask, keep) where keep indexes the input boxes that survived (to filter labels).
    """
    boxes = _check_sample(image, boxes, mask)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = window
    x1, y1 = w if x1 is None else x1, h if y1 is None else y1
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"crop window {window} does not fit inside the {w}x{h} image (need 0 <= x0 < x1 <= W)")
    # BEGIN SOLUTION [crop-scale] Slice; subtract (x0, y0); clip to the new size; keep boxes with enough area left.
    shifted = boxes - np.array([x0, y0, x0, y0], np.float64)
    clipped = np.clip(shifted, 0, [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    before, after = area(shifted), area(clipped)
    keep = np.flatnonzero((after > 0) & (after >= min_visible * before))
    out_mask = None if mask is None else mask[y0:y1, x0:x1].copy()
    return image[y0:y1, x0:x1].copy(), clipped[keep], out_mask, keep
    # END SOLUTION


def rescale(image, boxes, mask=None, factor: float = 1.0, interpolation: int = cv2.INTER_LINEAR):
    """Resize by `factor` with cv2.resize (new size rounded); boxes scale by the actual per-axis ratio.

    Output pixel c samples the input at (c + 0.5) / ratio - 0.5 (half-pixel centres), which is what makes
    "multiply the box by the ratio" correct. The mask uses INTER_NEAREST_EXACT: labels are never blended, and
    unlike plain INTER_NEAREST (which floors c / ratio and shifts content by up to a pixel) it samples at the
    same centres. Pass interpolation=cv2.INTER_NEAREST_EXACT to keep image pixels and mask in exact step;
    the default INTER_LINEAR blends the edges over about a pixel.
    """
    boxes = _check_sample(image, boxes, mask)
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    h, w = image.shape[:2]
    # BEGIN SOLUTION [crop-scale] New size = round(W·f), round(H·f); cv2.resize takes (width, height); boxes × ratios.
    nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
    out = cv2.resize(image, (nw, nh), interpolation=interpolation)
    out_mask = None if mask is None else cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    return out, boxes * np.array([nw / w, nh / h, nw / w, nh / h]), out_mask
    # END SOLUTION


def random_augment(image, boxes, mask=None, rng=None, interpolation: int = cv2.INTER_LINEAR):
    """A random training-time augmentation: hflip (p=0.5), vflip (p=0.5), k ~ U{0..3} quarter turns, a random
    crop covering 60-100% of each side, then a rescale by U(0.75, 1.5).

    Returns (image, boxes, mask, keep); keep indexes the surviving input boxes. Validation data is not augmented.
    """
    rng = np.random.default_rng() if rng is None else rng
    boxes = _check_sample(image, boxes, mask)
    # BEGIN SOLUTION [augment] Chain the ops above in the docstring's order, drawing each choice from rng.
    if rng.random() < 0.5:
        image, boxes, mask = hflip(image, boxes, mask)
    if rng.random() < 0.5:
        image, boxes, mask = vflip(image, boxes, mask)
    image, boxes, mask = rot90(image, boxes, mask, int(rng.integers(4)))
    h, w = image.shape[:2]
    cw, ch = int(rng.integers(int(0.6 * w), w + 1)), int(rng.integers(int(0.6 * h), h + 1))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image, boxes, mask, keep = crop(image, boxes, mask, (x0, y0, x0 + cw, y0 + ch))
    image, boxes, mask = rescale(image, boxes, mask, float(rng.uniform(0.75, 1.5)), interpolation)
    return image, boxes, mask, keep
    # END SOLUTION


# ----------------------------------------------------------------------------- demo helpers

def drawn_sample(name: str = "astronaut", size: int = 256, seed: int = 0):
    """A bundled skimage photo in gray (as 3 equal channels) with two pure-colour rectangles drawn on it.

    Gray pixels have B = G = R, so no background pixel can equal pure red or blue: the mask of each rectangle
    can be recovered from the pixels exactly. Returns (image BGR uint8, boxes (2, 4), instance mask 0/1/2).
    """
    img = getattr(skimage.data, name)()
    gray = img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    boxes = []
    for label, colour in ((1, (0, 0, 255)), (2, (255, 0, 0))):
        bw, bh = rng.integers(size // 8, size // 3, 2)
        x, y = rng.integers(0, size - bw), rng.integers(0, size - bh)
        cv2.rectangle(image, (int(x), int(y)), (int(x + bw - 1), int(y + bh - 1)), colour, thickness=-1)
        mask[y:y + bh, x:x + bw] = label
        boxes.append([x, y, x + bw, y + bh])
    return image, np.array(boxes, np.float64), mask


def breast_cancer_with_gaps(missing: float = 0.1, seed: int = 0):
    """The breast-cancer table (569 x 30) with a fraction of entries set to NaN at random; 70/30 split."""
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(seed)
    X = X.copy()
    X[rng.random(X.shape) < missing] = np.nan
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="astronaut", help="a skimage.data image name")
    ap.add_argument("--n", type=int, default=6, help="augmented samples to draw")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = labkit.output_dir(__file__)

    X_tr, X_te, y_tr, y_te = breast_cancer_with_gaps(seed=args.seed)
    print(f"breast cancer: train {X_tr.shape}, {np.isnan(X_tr).mean():.1%} missing; test {X_te.shape}")
    for strategy in ("mean", "median", "most_frequent"):
        fill = fit_imputer(X_tr, strategy)  # fitted on the training rows only
        tr, te = impute(X_tr, fill), impute(X_te, fill)
        stats = fit_standard(tr)
        model = LogisticRegression(max_iter=2000).fit(standardize(tr, stats), y_tr)
        print(f"  impute {strategy:<13} + standardise + logistic regression: test accuracy "
              f"{model.score(standardize(te, stats), y_te):.4f}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        raw = LogisticRegression(max_iter=300).fit(impute(X_tr, fit_imputer(X_tr)), y_tr)
    print(f"  impute mean, no scaling: test accuracy {raw.score(impute(X_te, fit_imputer(X_tr)), y_te):.4f}, "
          f"converged in 300 iterations: {not caught} (features span {np.nanmin(X_tr):.3g}..{np.nanmax(X_tr):.0f})")
    z = standardize(impute(X_te, fit_imputer(X_tr)), fit_standard(impute(X_tr, fit_imputer(X_tr))))
    print(f"  standardised test set: column means in [{z.mean(0).min():.2f}, {z.mean(0).max():.2f}] "
          "(not exactly 0: the statistics are the training set's)")

    image, boxes, mask = drawn_sample(args.image, seed=args.seed)
    print(f"sample: {image.shape}, boxes {boxes.astype(int).tolist()}")
    rng = np.random.default_rng(args.seed)
    panels = [(image, boxes, mask, "original")]
    for i in range(args.n - 1):
        aug, b, m, keep = random_augment(image, boxes, mask, rng, interpolation=cv2.INTER_NEAREST_EXACT)
        panels.append((aug, b, m, f"aug {i + 1}: {aug.shape[1]}x{aug.shape[0]}, kept {keep.tolist()}"))
        print(f"  aug {i + 1}: image {aug.shape[:2]}, boxes {np.round(b, 1).tolist()}")
    fig, axes = plt.subplots(2, len(panels), figsize=(3 * len(panels), 6.2))
    for col, (img, b, m, title) in enumerate(panels):
        axes[0, col].imshow(img[..., ::-1])
        axes[1, col].imshow(m, cmap="viridis", vmin=0, vmax=2)
        for box in b:
            for ax in axes[:, col]:
                ax.add_patch(plt.Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1],
                                           fill=False, ec="yellow", lw=1.5))
        axes[0, col].set_title(title, fontsize=8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.tight_layout()
    path = out / "augmentations.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"figure (top: image + boxes, bottom: mask + boxes): {path}")


if __name__ == "__main__":
    labkit.run(main)
