"""Lab 02 · Data preprocessing: scaling, imputation, augmentation that keeps boxes and masks in step, and
class imbalance.

Statistics are fitted on training data and then applied, unchanged, to everything else; a geometric
augmentation must move the labels exactly as it moves the pixels; a rare class needs help from the loss or
the sampler.

- standardisation and min-max scaling from scratch (equal to StandardScaler / MinMaxScaler);
- missing-value imputation by mean, median or most frequent value (equal to SimpleImputer);
- flips, 90-degree rotations, crops and rescaling applied to an image, its boxes and its mask together;
- a random augmentation that chains them, checked on drawn rectangles whose true box and mask are known;
- the same chain in Albumentations 2.x (the library used in practice), agreeing box for box;
- photometric (brightness, contrast, gamma, HSV) and noise augmentation, Cutout, MixUp and CutMix;
- focal loss, balanced class weights, SMOTE and random undersampling;
- test-time augmentation: predictions averaged over flipped and turned views, boxes mapped back.

Box convention: (x1, y1, x2, y2) in continuous pixel coordinates, pixel column c covering [c, c + 1), so a
rectangle filling columns 10..19 has x1 = 10, x2 = 20 (the torchvision / Pascal-VOC-without-+1 convention).

Run it:  python solution.py [--image astronaut] [--n 6] [--draws 20]
Outputs: outputs/.../augmentations.png, outputs/.../photometric_and_mixing.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import os
import warnings
from collections import Counter

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for a newer version on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from imblearn.over_sampling import SMOTE  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import labkit  # noqa: E402

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
    # TODO [scaling]: Column means and ddof=0 stds; replace zero stds by 1.
    raise NotImplementedError('TODO [scaling]: Column means and ddof=0 stds; replace zero stds by 1.')


def standardize(X, stats) -> np.ndarray:
    """Apply (mean, scale) from fit_standard: z = (x - mean) / scale, broadcast over rows."""
    X = _check_matrix(X)
    mean, scale = stats
    # TODO [scaling]: One broadcast expression.
    raise NotImplementedError('TODO [scaling]: One broadcast expression.')


def fit_minmax(X, feature_range=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) so that x * scale + offset maps each training column's [min, max] onto feature_range.

    scale = (hi - lo) / (max - min) (a constant column gets data range 1), offset = lo - min * scale.
    """
    X = _check_matrix(X)
    lo, hi = feature_range
    if not lo < hi:
        raise ValueError(f"feature_range must be (low, high) with low < high, got {feature_range}")
    # TODO [scaling]: Data range per column (0 -> 1), then scale and offset as in the docstring.
    raise NotImplementedError('TODO [scaling]: Data range per column (0 -> 1), then scale and offset as in the docstring.')


def minmax(X, stats) -> np.ndarray:
    """Apply (scale, offset) from fit_minmax. Test rows may fall outside the range: that is expected."""
    X = _check_matrix(X)
    scale, offset = stats
    # TODO [scaling]: x * scale + offset.
    raise NotImplementedError('TODO [scaling]: x * scale + offset.')


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
    # TODO [impute]: nanmean / nanmedian; for the mode, np.unique with counts per column, argmax.
    raise NotImplementedError('TODO [impute]: nanmean / nanmedian; for the mode, np.unique with counts per column, argmax.')


def impute(X, fill) -> np.ndarray:
    """A copy of X with each NaN replaced by its column's fill value."""
    X = _check_matrix(X).copy()
    # TODO [impute]: np.where over the NaN mask, with fill broadcast across rows.
    raise NotImplementedError('TODO [impute]: np.where over the NaN mask, with fill broadcast across rows.')


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
    # TODO [flip-rotate]: Reverse the column axis of image and mask; new x1 = W - old x2 and vice versa.
    raise NotImplementedError('TODO [flip-rotate]: Reverse the column axis of image and mask; new x1 = W - old x2 and vice versa.')


def vflip(image, boxes, mask=None):
    """Mirror top-bottom: y -> H - y."""
    boxes = _check_sample(image, boxes, mask)
    h = image.shape[0]
    # TODO [flip-rotate]: Same as hflip on the row axis and the y coordinates.
    raise NotImplementedError('TODO [flip-rotate]: Same as hflip on the row axis and the y coordinates.')


def rot90(image, boxes, mask=None, k: int = 1):
    """Rotate by k × 90° counter-clockwise, like np.rot90 (the image becomes (W, H) for odd k).

    One quarter turn maps a point (x, y) to (y, W - x), so a box becomes [y1, W - x2, y2, W - x1].
    """
    boxes = _check_sample(image, boxes, mask)
    # TODO [flip-rotate]: Apply the quarter turn k % 4 times: np.rot90 on the arrays, the map on the boxes.
    raise NotImplementedError('TODO [flip-rotate]: Apply the quarter turn k % 4 times: np.rot90 on the arrays, the map on the boxes.')


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
    # TODO [crop-scale]: Slice; subtract (x0, y0); clip to the new size; keep boxes with enough area left.
    raise NotImplementedError('TODO [crop-scale]: Slice; subtract (x0, y0); clip to the new size; keep boxes with enough area left.')


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
    # TODO [crop-scale]: New size = round(W·f), round(H·f); cv2.resize takes (width, height); boxes × ratios.
    raise NotImplementedError('TODO [crop-scale]: New size = round(W·f), round(H·f); cv2.resize takes (width, height); boxes × ratios.')


def random_augment(image, boxes, mask=None, rng=None, interpolation: int = cv2.INTER_LINEAR):
    """A random training-time augmentation: hflip (p=0.5), vflip (p=0.5), k ~ U{0..3} quarter turns, a random
    crop covering 60-100% of each side, then a rescale by U(0.75, 1.5).

    Returns (image, boxes, mask, keep); keep indexes the surviving input boxes. Validation data is not augmented.
    """
    rng = np.random.default_rng() if rng is None else rng
    boxes = _check_sample(image, boxes, mask)
    # TODO [augment]: Chain the ops above in the docstring's order, drawing each choice from rng.
    raise NotImplementedError("TODO [augment]: Chain the ops above in the docstring's order, drawing each choice from rng.")


# ----------------------------------------------------------------------------- the same chain in Albumentations

def albumentations_chain(hflip: bool = False, vflip: bool = False, k: int = 0, window=None, size=None,
                         min_visible: float = 0.3, interpolation: int = cv2.INTER_LINEAR):
    """The Albumentations 2.x `Compose` that performs one fixed draw of random_augment, in the same order:
    hflip, vflip, k counter-clockwise quarter turns, crop to `window` (x0, y0, x1, y1), resize to `size` (H, W).

    Boxes travel as "pascal_voc" (x1, y1, x2, y2) with a `labels` field; boxes keeping less than `min_visible`
    of their area are dropped. Albumentations 2.x has no fixed-angle quarter turn (RandomRotate90 draws k
    itself), but one counter-clockwise turn is a transpose followed by a vertical flip. Masks are resized with
    INTER_NEAREST_EXACT (the library's default mask mode is plain INTER_NEAREST, which is not centre-aligned).
    """
    # TODO [albumentations]: Flips with p=1, k × (Transpose, VerticalFlip), Crop, Resize; BboxParams.
    raise NotImplementedError('TODO [albumentations]: Flips with p=1, k × (Transpose, VerticalFlip), Crop, Resize; BboxParams.')


def run_albumentations(transform, image, boxes, mask=None):
    """Apply an Albumentations Compose to one sample; returns (image, boxes (n, 4) float64, mask, keep) where
    keep indexes the input boxes that survived, like crop()."""
    boxes = _check_sample(image, boxes, mask)
    # TODO [albumentations]: Pass the box indices as the label field: the surviving labels are `keep`.
    raise NotImplementedError('TODO [albumentations]: Pass the box indices as the label field: the surviving labels are `keep`.')


# ----------------------------------------------------------------------------- photometric and noise augmentation
# These work on float RGB images in [0, 1], shape (H, W, 3): convert a BGR uint8 image with
# `image[..., ::-1].astype(np.float32) / 255`. They change pixel values only, so boxes and masks pass through.

GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114])  # ITU-R 601 luma weights for R, G, B (torchvision's)


def _check_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a float RGB image (H, W, 3) in [0, 1], got {image.dtype} {image.shape}; "
                         "convert uint8 with image.astype(np.float32) / 255")
    return image


def adjust_brightness(image, factor: float) -> np.ndarray:
    """Scale every channel by `factor` (1 = unchanged, 0 = black), clipped to [0, 1]."""
    image = _check_rgb(image)
    # TODO [photometric]: Multiply, then clip.
    raise NotImplementedError('TODO [photometric]: Multiply, then clip.')


def adjust_contrast(image, factor: float) -> np.ndarray:
    """Blend with the image's mean gray level: out = factor·x + (1 − factor)·mean(luma), clipped to [0, 1].

    factor 0 gives a flat gray image, 1 the original; the mean is one number for the whole image.
    """
    image = _check_rgb(image)
    # TODO [photometric]: Luma = RGB · GRAY_WEIGHTS per pixel; its mean over the image is the blend target.
    raise NotImplementedError('TODO [photometric]: Luma = RGB · GRAY_WEIGHTS per pixel; its mean over the image is the blend target.')


def adjust_gamma(image, gamma: float, gain: float = 1.0) -> np.ndarray:
    """out = gain · x^gamma, clipped to [0, 1]: gamma < 1 brightens the shadows, gamma > 1 darkens them."""
    image = _check_rgb(image)
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma}")
    # TODO [photometric]: Power, gain, clip.
    raise NotImplementedError('TODO [photometric]: Power, gain, clip.')


def hsv_jitter(image, hue_shift: float = 0.0, sat_scale: float = 1.0, val_scale: float = 1.0) -> np.ndarray:
    """Shift the hue by `hue_shift` turns of the colour wheel (0.5 = opposite colour, wraps around), scale
    saturation and value, all in HSV space; S and V are clipped to [0, 1].

    cv2.cvtColor on float32 RGB gives H in degrees [0, 360) and S, V in [0, 1].
    """
    image = _check_rgb(image)
    # TODO [photometric]: RGB -> HSV (float32), H += 360·shift modulo 360, scale and clip S and V, back.
    raise NotImplementedError('TODO [photometric]: RGB -> HSV (float32), H += 360·shift modulo 360, scale and clip S and V, back.')


def gaussian_noise(image, sigma: float, rng=None) -> np.ndarray:
    """Add independent N(0, sigma²) noise to every pixel and channel (sigma in [0, 1] units), clipped to [0, 1]."""
    image = _check_rgb(image)
    rng = np.random.default_rng() if rng is None else rng
    # TODO [photometric]: One normal draw per value, from rng; clip.
    raise NotImplementedError('TODO [photometric]: One normal draw per value, from rng; clip.')


def random_photometric(image, rng=None, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, noise=0.03):
    """A training-time colour augmentation: brightness, contrast and saturation factors drawn from
    U(1 − r, 1 + r), a hue shift from U(−hue, hue), then Gaussian noise with sigma U(0, noise)."""
    rng = np.random.default_rng() if rng is None else rng
    image = adjust_brightness(image, rng.uniform(1 - brightness, 1 + brightness))
    image = adjust_contrast(image, rng.uniform(1 - contrast, 1 + contrast))
    image = hsv_jitter(image, rng.uniform(-hue, hue), rng.uniform(1 - saturation, 1 + saturation))
    return gaussian_noise(image, rng.uniform(0, noise), rng)


# ----------------------------------------------------------------------------- Cutout, MixUp, CutMix

def _square_box(h: int, w: int, cut_h: int, cut_w: int, rng) -> tuple[int, int, int, int]:
    """A cut_h x cut_w box centred on a uniformly drawn pixel, clipped to the image: (x1, y1, x2, y2)."""
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    x1, y1 = cx - cut_w // 2, cy - cut_h // 2
    return max(x1, 0), max(y1, 0), min(x1 + cut_w, w), min(y1 + cut_h, h)


def _check_pair(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"the two images must have the same shape, got {a.shape} and {b.shape}; resize first")
    return a, b


def cutout(image, size: int, rng=None, fill: float = 0.0):
    """Cutout (DeVries & Taylor, 2017): fill a size x size square with `fill`. Its centre is any pixel, so near
    the border only part of the square lands in the image. Returns (new image, box (x1, y1, x2, y2)).
    The label is unchanged; the input image is not modified."""
    image = np.asarray(image)
    rng = np.random.default_rng() if rng is None else rng
    h, w = image.shape[:2]
    # TODO [mix]: Draw the clipped box with _square_box, copy the image, fill rows y1:y2 and columns x1:x2.
    raise NotImplementedError('TODO [mix]: Draw the clipped box with _square_box, copy the image, fill rows y1:y2 and columns x1:x2.')


def mixup(a, label_a, b, label_b, lam: float):
    """MixUp (Zhang et al., 2018): image lam·a + (1 − lam)·b and label lam·label_a + (1 − lam)·label_b (one-hot
    or soft label vectors, so the mixed label still sums to 1). lam is usually drawn from Beta(α, α)."""
    a, b = _check_pair(a, b)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    # TODO [mix]: The same convex weights for the pixels and the labels.
    raise NotImplementedError('TODO [mix]: The same convex weights for the pixels and the labels.')


def cutmix(a, label_a, b, label_b, lam: float, rng=None):
    """CutMix (Yun et al., 2019): paste a box of b into a. The box has sides sqrt(1 − lam)·(H, W) (truncated to
    whole pixels) around a uniformly drawn centre, clipped to the image. The label weight of a is the fraction of
    pixels that still come from a, 1 − box area / (H·W), recomputed after clipping (not the drawn lam).
    Returns (image, label, box)."""
    a, b = _check_pair(a, b)
    rng = np.random.default_rng() if rng is None else rng
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    h, w = a.shape[:2]
    # TODO [mix]: cut = int(side · sqrt(1 − lam)) per axis; paste; weight = 1 − clipped area / (H·W).
    raise NotImplementedError('TODO [mix]: cut = int(side · sqrt(1 − lam)) per axis; paste; weight = 1 − clipped area / (H·W).')


# ----------------------------------------------------------------------------- class imbalance

def focal_loss(logits, targets, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean"):
    """Binary focal loss on raw logits (Lin et al., 2017): FL = −α_t · (1 − p_t)^γ · log(p_t).

    p = sigmoid(logit); p_t = p for a positive (target 1) and 1 − p for a negative; α_t = α for positives and
    1 − α for negatives; alpha=None leaves the classes unweighted. γ = 0 with alpha=None is plain binary
    cross-entropy. An easy example (p_t = 0.9) keeps (1 − 0.9)² = 1% of its cross-entropy at γ = 2, a hard one
    (p_t = 0.1) keeps 81%. reduction: "none" (per element), "mean" over all elements, or "sum".
    """
    logits = torch.as_tensor(logits)
    logits = logits if logits.is_floating_point() else logits.float()
    targets = torch.as_tensor(targets).to(logits.dtype)
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (or be None for no class weight), got {alpha}")
    # TODO [focal-loss]: ce = BCE-with-logits per element (= −log p_t, stable); 1 − p_t = −expm1(−ce).
    raise NotImplementedError('TODO [focal-loss]: ce = BCE-with-logits per element (= −log p_t, stable); 1 − p_t = −expm1(−ce).')


def class_weights(y) -> np.ndarray:
    """'Balanced' class weights N / (K · N_c) for the sorted classes of y: a class with half the average
    count gets weight 2. [90 negatives, 10 positives] -> [0.556, 5.0]."""
    y = np.asarray(y)
    # TODO [resample]: Counts per sorted class, then N / (K · N_c).
    raise NotImplementedError('TODO [resample]: Counts per sorted class, then N / (K · N_c).')


def _check_xy(X, y):
    X, y = _check_matrix(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    return X, y


def smote(X, y, k: int = 5, rng=None):
    """SMOTE (Chawla et al., 2002): raise every class below the largest one to the largest count with synthetic
    rows. Each new row picks a random row x of its class, one of x's k nearest neighbours n *within that class*
    (x itself excluded), and a gap u ~ U(0, 1): new = x + u·(n − x), a point on the segment from x to n.

    Returns (X_res, y_res): the original rows first, then the synthetic ones, class by class (sorted).
    """
    X, y = _check_xy(X, y)
    rng = np.random.default_rng() if rng is None else rng
    classes, counts = np.unique(y, return_counts=True)
    if counts[counts < counts.max()].min(initial=k + 1) <= k:
        raise ValueError(f"SMOTE with k={k} needs more than k rows in every class it oversamples; "
                         f"class counts are {dict(zip(classes.tolist(), counts.tolist()))}: lower k")
    # TODO [resample]: Per minority class: pairwise distances, diagonal = inf, k nearest, draw, interpolate.
    raise NotImplementedError('TODO [resample]: Per minority class: pairwise distances, diagonal = inf, k nearest, draw, interpolate.')


def random_undersample(X, y, rng=None):
    """Drop rows at random, without replacement, until every class has as many rows as the smallest one.

    Returns (X_res, y_res, idx) with idx the kept row indices in their original order.
    """
    X, y = _check_xy(X, y)
    rng = np.random.default_rng() if rng is None else rng
    # TODO [resample]: For each class: rng.choice of its row indices, smallest count, replace=False; sort.
    raise NotImplementedError('TODO [resample]: For each class: rng.choice of its row indices, smallest count, replace=False; sort.')


# ----------------------------------------------------------------------------- test-time augmentation

TTA_VIEWS = ("identity", "hflip", "vflip", "rot90")


def tta_classify(predict, image) -> np.ndarray:
    """Test-time augmentation for a classifier: the mean of predict(image) and predict(left-right mirror).

    `predict` maps an image to class probabilities (K,). A mirror does not change the class, so nothing needs
    mapping back; the average is usually a little more accurate than one view, at twice the cost.
    """
    # TODO [tta]: Mirror the column axis (axis 1), predict both, average.
    raise NotImplementedError('TODO [tta]: Mirror the column axis (axis 1), predict both, average.')


def tta_detect(detect, image, views=TTA_VIEWS) -> np.ndarray:
    """Test-time augmentation for a box regressor with fixed slots (one box per object slot, same order in every
    view). `detect` maps an image to boxes (n, 4) in that image's coordinates. For each view: transform the
    image, detect, map the boxes back to the original frame with the inverse transform; return the mean box.

    The inverses: a flip undoes itself; a counter-clockwise quarter turn is undone by a clockwise one (k = −1)
    applied in the turned image's frame.
    """
    unknown = set(views) - set(TTA_VIEWS)
    if unknown or not views:
        raise ValueError(f"views must be a non-empty subset of {TTA_VIEWS}, got {views}")
    # TODO [tta]: Use hflip / vflip / rot90 forward on the image, then their inverse on detect()'s boxes.
    raise NotImplementedError("TODO [tta]: Use hflip / vflip / rot90 forward on the image, then their inverse on detect()'s boxes.")


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


def compare_with_albumentations(image, boxes, mask, draws: int, seed: int = 0):
    """Draw `draws` random chains (the choices random_augment makes), run each with the numpy ops above and with
    albumentations_chain, and return (draws where pixels, mask and kept boxes all agree, largest box gap in px)."""
    rng = np.random.default_rng(seed)
    agree, gap = 0, 0.0
    for _ in range(draws):
        hf, vf, k = bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(4))
        turned_h, turned_w = image.shape[:2] if k % 2 == 0 else image.shape[1::-1]
        crop_w = int(rng.integers(int(0.6 * turned_w), turned_w + 1))
        crop_h = int(rng.integers(int(0.6 * turned_h), turned_h + 1))
        left, top = int(rng.integers(0, turned_w - crop_w + 1)), int(rng.integers(0, turned_h - crop_h + 1))
        window, factor = (left, top, left + crop_w, top + crop_h), float(rng.uniform(0.75, 1.5))
        im, b, m = (hflip(image, boxes, mask) if hf else (image, boxes, mask))
        im, b, m = vflip(im, b, m) if vf else (im, b, m)
        im, b, m, keep = crop(*rot90(im, b, m, k), window)
        im, b, m = rescale(im, b, m, factor, cv2.INTER_NEAREST_EXACT)
        chain = albumentations_chain(hf, vf, k, window, im.shape[:2], interpolation=cv2.INTER_NEAREST_EXACT)
        a_im, a_b, a_m, a_keep = run_albumentations(chain, image, boxes, mask)
        same_keep = np.array_equal(keep, a_keep)
        if same_keep and len(b):
            gap = max(gap, float(np.abs(a_b - b).max()))
        agree += same_keep and np.array_equal(im, a_im) and np.array_equal(m, a_m)
    return agree, gap


def shifted_colour_detector(shift=(3.0, 0.0)):
    """A deliberately biased 'detector' for the TTA demo: the tight box of the pure red pixels, moved by `shift`
    (dx, dy) in whatever frame it is shown."""
    def detect(image):
        ys, xs = np.nonzero(np.all(image == np.array((0, 0, 255), np.uint8), axis=-1))
        dx, dy = shift
        return np.array([[xs.min() + dx, ys.min() + dy, xs.max() + 1 + dx, ys.max() + 1 + dy]], float)
    return detect


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="astronaut", help="a skimage.data image name")
    ap.add_argument("--n", type=int, default=6, help="augmented samples to draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=20, help="random chains compared with albumentations")
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

    agree, gap = compare_with_albumentations(image, boxes, mask, args.draws, args.seed)
    print(f"albumentations {A.__version__}: {agree}/{args.draws} random chains give the same pixels, mask and kept "
          f"boxes as the numpy ops; largest box gap {gap:.1e} px")

    # photometric, noise and mixing augmentations on the colour photo (labels untouched, or mixed)
    rgb = cv2.resize(skimage.data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    other = cv2.resize(skimage.data.chelsea(), (160, 160), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    prng = np.random.default_rng(args.seed)
    mixed, mix_label = mixup(rgb, [1.0, 0.0], other, [0.0, 1.0], 0.6)
    cut, cut_label, cut_box = cutmix(rgb, [1.0, 0.0], other, [0.0, 1.0], 0.7, prng)
    views = [("original", rgb), ("brightness x1.4", adjust_brightness(rgb, 1.4)),
             ("contrast x0.5", adjust_contrast(rgb, 0.5)), ("gamma 0.5", adjust_gamma(rgb, 0.5)),
             ("hue +0.3 turn", hsv_jitter(rgb, 0.3)), ("saturation x0.3", hsv_jitter(rgb, sat_scale=0.3)),
             ("noise sigma 0.08", gaussian_noise(rgb, 0.08, prng)), ("random colour jitter", random_photometric(rgb, prng)),
             ("cutout 48 px", cutout(rgb, 48, prng)[0]),
             (f"mixup label {np.round(mix_label, 2).tolist()}", mixed),
             (f"cutmix label {np.round(cut_label, 3).tolist()}", cut)]
    fig, axes = plt.subplots(2, 6, figsize=(15, 5.6))
    for ax, (title, view) in zip(axes.ravel(), views):
        ax.imshow(np.clip(view, 0, 1))
        ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    path = out / "photometric_and_mixing.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    x1, y1, x2, y2 = cut_box
    print(f"cutmix lam 0.7: box {cut_box} covers {(x2 - x1) * (y2 - y1) / 160 ** 2:.3f} of the image -> label "
          f"{np.round(cut_label, 3).tolist()}; figure: {path}")

    # class imbalance: the loss share of easy negatives, focal vs cross-entropy (253 easy negatives, 3 hard positives)
    logits = torch.tensor([-np.log(9.0)] * 253 + [-np.log(9.0)] * 3)  # p = 0.1: negatives easy (p_t 0.9), positives hard
    targets = torch.tensor([0.0] * 253 + [1.0] * 3)
    for name, kw in (("cross-entropy", dict(alpha=None, gamma=0.0)), ("focal, gamma 2", dict(alpha=None, gamma=2.0)),
                     ("focal, gamma 2, alpha 0.25", dict(alpha=0.25, gamma=2.0))):
        per = focal_loss(logits, targets, reduction="none", **kw)
        print(f"  {name:<27} easy negative {per[0]:.5f}, hard positive {per[-1]:.4f}; the 253 negatives carry "
              f"{per[:253].sum() / per.sum():.1%} of the batch loss")
    y_imb = np.array([0] * 90 + [1] * 10)
    print(f"balanced class weights for [90, 10]: {np.round(class_weights(y_imb), 3).tolist()}")
    X_imb = np.random.default_rng(args.seed).normal(size=(100, 2)) + y_imb[:, None] * 2.5
    _, y_sm = smote(X_imb, y_imb, k=5, rng=np.random.default_rng(args.seed))
    _, y_ref = SMOTE(k_neighbors=5, random_state=args.seed).fit_resample(X_imb, y_imb)
    _, y_us, _ = random_undersample(X_imb, y_imb, np.random.default_rng(args.seed))
    print(f"SMOTE: {dict(Counter(y_sm.tolist()))} (imbalanced-learn: {dict(Counter(y_ref.tolist()))}); "
          f"random undersampling: {dict(Counter(y_us.tolist()))}")

    # test-time augmentation: a detector that reads every box 3 px too far right (and 2 px too low)
    truth = boxes[:1]
    biased = shifted_colour_detector((3.0, 2.0))
    for views_used in (("identity",), ("identity", "hflip"), ("identity", "hflip", "vflip"), TTA_VIEWS):
        err = tta_detect(biased, image, views_used) - truth
        print(f"  TTA over {'+'.join(views_used):<28} mean box error (x1, y1, x2, y2) {np.round(err[0], 2).tolist()}")


if __name__ == "__main__":
    labkit.run(main)
