"""Lab 02 · NumPy for images: layouts, views, broadcasting, fancy indexing, strides, and convolution by im2col.

An OpenCV image is a NumPy array (H, W, 3) of uint8 in BGR order; PyTorch wants (C, H, W) float32 RGB in [0, 1].
Every operation below is one or two lines of NumPy, and each is checked against the OpenCV or SciPy call that
does the same job:

  1. channel layout: BGR <-> RGB by a reversed slice (a view), HWC -> CHW, a batch to NCHW   (cv2.cvtColor)
  2. crop (a view, not a copy) and flips by negative strides                                  (cv2.flip)
  3. per-channel statistics and normalisation by broadcasting (ImageNet mean/std)             (cv2.meanStdDev)
  4. boolean masks and fancy indexing: in-range masks, painting, gathering pixels             (cv2.inRange)
  5. patch extraction with as_strided: every k x k window without copying a byte              (sliding_window_view)
  6. correlation as one matrix product: im2col, then (H_out W_out, k k) @ (k k,)             (scipy.signal, cv2.filter2D)

Run it:  python solution.py [--image astronaut] [--size 256]
Outputs: outputs/.../operations_grid.png, patches.png
"""
from __future__ import annotations

import argparse

import cv2
import matplotlib
import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided, sliding_window_view

import labkit
from labkit import assets

matplotlib.use("Agg")
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB order
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon")


def load_image(name: str = "astronaut", size: int | None = 256) -> np.ndarray:
    """A scikit-image sample as OpenCV holds it: BGR uint8 (H, W, 3), or gray (H, W); longer side = size."""
    if name not in SAMPLES:
        raise ValueError(f"unknown image {name!r}; pick one of {', '.join(SAMPLES)}")
    return assets.sample_image(name, size)


def _check_hwc(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a colour image of shape (H, W, 3), got {getattr(img, 'shape', type(img))}")


# ------------------------------------------------------------------ 1. channel layout


def bgr_to_rgb(img: np.ndarray) -> np.ndarray:
    """Swap channel order (works both ways). Returns a VIEW: the channel axis gets a negative stride."""
    _check_hwc(img)
    # BEGIN SOLUTION [channel-layout] Reverse the last axis with a slice step of -1.
    return img[..., ::-1]
    # END SOLUTION


def to_chw_float(img_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> RGB float32 (3, H, W) in [0, 1], C-contiguous (what torch.from_numpy wants)."""
    _check_hwc(img_bgr)
    # BEGIN SOLUTION [channel-layout] bgr_to_rgb, scale by 1/255 as float32, transpose(2, 0, 1), np.ascontiguousarray.
    rgb = bgr_to_rgb(img_bgr).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    # END SOLUTION


def batch_to_nchw(images: list[np.ndarray]) -> np.ndarray:
    """A list of same-sized BGR uint8 images -> (N, 3, H, W) float32 RGB in [0, 1]."""
    if not images or len({im.shape for im in images}) != 1:
        raise ValueError("need a non-empty list of images that all have the same shape; resize them first")
    # BEGIN SOLUTION [channel-layout] np.stack to (N, H, W, 3); reverse channels, scale, transpose(0, 3, 1, 2).
    batch = np.stack(images)[..., ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    # END SOLUTION


# ------------------------------------------------------------------ 2. crop and flip


def crop(img: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Pixels with x1 <= x < x2 and y1 <= y < y2, as a view (writing into it changes the image)."""
    h, w = img.shape[:2]
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise ValueError(f"crop box ({x1}, {y1}, {x2}, {y2}) is empty or outside a {w}x{h} image")
    # BEGIN SOLUTION [crop-flip] Basic slicing rows y1:y2, columns x1:x2 (slicing never copies).
    return img[y1:y2, x1:x2]
    # END SOLUTION


def flip(img: np.ndarray, code: int) -> np.ndarray:
    """Same meaning as cv2.flip: 0 = upside down (rows reversed), 1 = mirror (columns), -1 = both. A view."""
    if code not in (0, 1, -1):
        raise ValueError(f"flip code must be 0 (vertical), 1 (horizontal) or -1 (both), got {code}")
    # BEGIN SOLUTION [crop-flip] Reverse rows for 0, columns for 1, both for -1, with ::-1 slices.
    if code == 0:
        return img[::-1]
    if code == 1:
        return img[:, ::-1]
    return img[::-1, ::-1]
    # END SOLUTION


# ------------------------------------------------------------------ 3. statistics and normalisation


def channel_mean_std(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (ddof=0) over all pixels: two float64 arrays of shape (C,)."""
    _check_hwc(img)
    # BEGIN SOLUTION [normalise] Reduce over axes (0, 1) in float64.
    pixels = img.astype(np.float64)
    return pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))
    # END SOLUTION


def normalize(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(img / 255 - mean) / std per channel, float32 (H, W, C). mean and std are (C,), in the image's order.

    Broadcasting: (H, W, C) op (C,) -> the (C,) is read as (1, 1, C) and stretched over every pixel.
    """
    _check_hwc(img)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (img.shape[2],) or std.shape != (img.shape[2],) or np.any(std <= 0):
        raise ValueError(f"mean and std need one value per channel ({img.shape[2]}) and std > 0, "
                         f"got {mean.tolist()} and {std.tolist()}")
    # BEGIN SOLUTION [normalise] One broadcast expression in float32.
    return (img.astype(np.float32) / 255.0 - mean) / std
    # END SOLUTION


def denormalize(x: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Inverse of normalize, back to uint8 (rounded and clipped to 0..255)."""
    # BEGIN SOLUTION [normalise] x * std + mean, times 255, np.rint, np.clip, astype uint8.
    restored = (x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8)
    # END SOLUTION


# ------------------------------------------------------------------ 4. masks and fancy indexing


def in_range(img: np.ndarray, lo, hi) -> np.ndarray:
    """Boolean (H, W): True where every channel c has lo[c] <= img[..., c] <= hi[c] (inclusive, like cv2.inRange)."""
    # BEGIN SOLUTION [masking] Compare against lo and hi (they broadcast over pixels), then .all over the last axis.
    return np.all((img >= np.asarray(lo)) & (img <= np.asarray(hi)), axis=-1)
    # END SOLUTION


def paint(img: np.ndarray, mask: np.ndarray, color) -> np.ndarray:
    """A copy of img with every masked pixel set to color (boolean-mask assignment)."""
    if mask.shape != img.shape[:2] or mask.dtype != bool:
        raise ValueError(f"mask must be boolean with shape {img.shape[:2]}, got {mask.dtype} {mask.shape}")
    # BEGIN SOLUTION [masking] Copy first (never edit the caller's image), then out[mask] = color.
    out = img.copy()
    out[mask] = color
    return out
    # END SOLUTION


def gather_pixels(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Values at the points (ys[i], xs[i]): shape (N, C) for colour. Integer-array indexing (always a copy)."""
    # BEGIN SOLUTION [masking] Index with the two integer arrays at once: img[ys, xs].
    return img[np.asarray(ys), np.asarray(xs)]
    # END SOLUTION


# ------------------------------------------------------------------ 5. patches with strides


def extract_patches(gray: np.ndarray, k: int, stride: int = 1) -> np.ndarray:
    """Every k x k window of a 2-D array, stepping by `stride`: shape (n_rows, n_cols, k, k), a read-only VIEW.

    n_rows = (H - k) // stride + 1. Patch (i, j) starts at byte i*stride*s0 + j*stride*s1, and inside a patch one
    step down is s0 bytes and one step right s1 bytes, where (s0, s1) = gray.strides. No pixel is copied.
    """
    if gray.ndim != 2:
        raise ValueError(f"extract_patches takes a 2-D (gray) array, got shape {gray.shape}; split channels first")
    h, w = gray.shape
    if not (1 <= k <= min(h, w)) or stride < 1:
        raise ValueError(f"need 1 <= k <= min(H, W) = {min(h, w)} and stride >= 1, got k={k}, stride={stride}")
    # BEGIN SOLUTION [patches] as_strided with shape (n_rows, n_cols, k, k) and strides (stride*s0, stride*s1, s0, s1).
    s0, s1 = gray.strides
    shape = ((h - k) // stride + 1, (w - k) // stride + 1, k, k)
    return as_strided(gray, shape=shape, strides=(stride * s0, stride * s1, s0, s1), writeable=False)
    # END SOLUTION


# ------------------------------------------------------------------ 6. convolution as a matrix product


def im2col(gray: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Unroll every kh x kw window into a row: (H_out * W_out, kh * kw), H_out = H - kh + 1 (a copy, float64)."""
    if gray.ndim != 2:
        raise ValueError(f"im2col takes a 2-D array, got shape {gray.shape}")
    # BEGIN SOLUTION [im2col-conv] Cast to float64 first (small), sliding_window_view -> (H_out, W_out, kh, kw), reshape.
    windows = sliding_window_view(gray.astype(np.float64, copy=False), (kh, kw))
    return windows.reshape(-1, kh * kw)  # reshape of a strided view copies: kh*kw times the image's size
    # END SOLUTION


def correlate2d(gray: np.ndarray, kernel: np.ndarray, border: str = "valid") -> np.ndarray:
    """Cross-correlation out[i, j] = sum_{m,n} in[i+m, j+n] k[m, n] (what DL calls convolution), float64.

    border="valid": no padding, (H - kh + 1, W - kw + 1), like scipy.signal.correlate2d(mode="valid").
    border="reflect101" / "constant": pad by (kh//2, kw//2) for an output of the input's size; reflect101
    mirrors without repeating the edge (dcb|abcd|cba, OpenCV's default, np.pad mode="reflect"); constant pads 0.
    """
    kernel = np.asarray(kernel, np.float64)
    if gray.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"need a 2-D image and a 2-D kernel, got shapes {gray.shape} and {kernel.shape}")
    if border not in ("valid", "reflect101", "constant"):
        raise ValueError(f"border must be 'valid', 'reflect101' or 'constant', got {border!r}")
    kh, kw = kernel.shape
    if border != "valid" and (kh % 2 == 0 or kw % 2 == 0):
        raise ValueError(f"same-size output needs an odd kernel (a centre pixel), got {kh}x{kw}")
    # BEGIN SOLUTION [im2col-conv] Pad unless valid (np.pad mode "reflect" or "constant"), im2col, @ kernel.ravel(), reshape.
    if border != "valid":
        mode = "reflect" if border == "reflect101" else "constant"
        gray = np.pad(gray, ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode=mode)
    h_out, w_out = gray.shape[0] - kh + 1, gray.shape[1] - kw + 1
    return (im2col(gray, kh, kw) @ kernel.ravel()).reshape(h_out, w_out)
    # END SOLUTION


def convolve2d(gray: np.ndarray, kernel: np.ndarray, border: str = "valid") -> np.ndarray:
    """True convolution: correlation with the kernel flipped in both axes (matters only for asymmetric kernels)."""
    # BEGIN SOLUTION [im2col-conv] Flip the kernel with [::-1, ::-1] and call correlate2d.
    return correlate2d(gray, np.asarray(kernel)[::-1, ::-1], border)
    # END SOLUTION


# ------------------------------------------------------------------ 7. detection tables with pandas

CLASSES = ("person", "car", "dog", "bicycle")  # first-seen order is not alphabetical, on purpose
BOX = ["x1", "y1", "x2", "y2"]  # continuous corners: width = x2 - x1, area = (x2 - x1) (y2 - y1), as torchvision


def make_detection_tables(n_images: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A small detection dataset and a pretend detector's output, reproducible from `seed`:

      images       (image_id, file_name, width, height)          one row per image
      ground_truth (gt_id, image_id, class, x1, y1, x2, y2)      0-4 boxes per image
      predictions  (det_id, image_id, class, x1, y1, x2, y2, score)

    Each true box is found with probability 0.85 (a jittered copy, score 0.40-0.99), sometimes twice (a
    duplicate with a lower score), and every image gets 0-3 false alarms (random boxes, random class, score
    0.05-0.95); about one frame in seven the detector returns nothing at all. Scores are rounded to 2 decimals,
    so ties happen, as they do in real score files.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (480, 640), (320, 240)]
    images, truth, preds = [], [], []

    def random_box(w, h):
        bw, bh = rng.integers(16, w // 2), rng.integers(16, h // 2)
        x1, y1 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        return [float(x1), float(y1), float(x1 + bw), float(y1 + bh)]

    def jitter(box, w, h):
        x1, y1, x2, y2 = box
        dx, dy = 0.08 * (x2 - x1), 0.08 * (y2 - y1)
        moved = np.rint(np.array(box) + rng.uniform(-1, 1, 4) * [dx, dy, dx, dy])
        x1, y1 = np.clip(moved[:2], 0, [w - 2, h - 2])
        x2, y2 = np.clip(moved[2:], [x1 + 2, y1 + 2], [w, h])
        return [float(x1), float(y1), float(x2), float(y2)]

    for image_id in range(1, n_images + 1):
        w, h = sizes[rng.integers(len(sizes))]
        images.append((image_id, f"img_{image_id:04d}.jpg", w, h))
        blank = rng.random() < 0.15  # a frame the detector returns nothing for
        for _ in range(rng.integers(0, 5)):
            cls, box = str(rng.choice(CLASSES, p=[0.4, 0.3, 0.2, 0.1])), random_box(w, h)
            truth.append((len(truth) + 1, image_id, cls, *box))
            if not blank and rng.random() < 0.85:
                score = rng.uniform(0.40, 0.99)
                preds.append([image_id, cls, *jitter(box, w, h), score])
                if rng.random() < 0.2:
                    preds.append([image_id, cls, *jitter(box, w, h), score * rng.uniform(0.5, 0.95)])
        for _ in range(0 if blank else rng.integers(0, 4)):
            preds.append([image_id, str(rng.choice(CLASSES)), *random_box(w, h), rng.uniform(0.05, 0.95)])
    images = pd.DataFrame(images, columns=["image_id", "file_name", "width", "height"])
    truth = pd.DataFrame(truth, columns=["gt_id", "image_id", "class", *BOX])
    preds = pd.DataFrame(preds, columns=["image_id", "class", *BOX, "score"])
    preds["score"] = preds["score"].round(2)
    preds.insert(0, "det_id", np.arange(1, len(preds) + 1))
    return images, truth, preds


def _check_columns(df: pd.DataFrame, needed, what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing}; it has {list(df.columns)}")


def class_summary(preds: pd.DataFrame) -> pd.DataFrame:
    """Per class (index "class", alphabetical): count of boxes, mean box area (px^2) and mean score.

    Mean area is the mean of each box's own w * h, not mean(w) * mean(h): E[wh] != E[w] E[h].
    """
    _check_columns(preds, ["det_id", "class", *BOX, "score"], "predictions")
    # BEGIN SOLUTION [class-summary] Add an area column with assign, then groupby("class").agg with named aggregations.
    area = (preds["x2"] - preds["x1"]) * (preds["y2"] - preds["y1"])
    return (preds.assign(area=area)
            .groupby("class")  # sort=True (the default): classes in alphabetical order
            .agg(count=("det_id", "size"), mean_area=("area", "mean"), mean_score=("score", "mean")))
    # END SOLUTION


def attach_images(preds: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Each prediction (same rows, same order) with its image's file_name, width, height, plus
    rel_area = box area / image area. A prediction whose image_id the images table lacks, or an images table that
    lists an id twice, is an error (ValueError naming the ids), never a silently dropped or doubled row."""
    _check_columns(preds, ["image_id", *BOX], "predictions")
    _check_columns(images, ["image_id", "width", "height"], "images")
    # BEGIN SOLUTION [merge-images] Left merge on image_id with validate="many_to_one" and indicator=True; check "_merge".
    merged = preds.merge(images, on="image_id", how="left", validate="many_to_one", indicator=True)
    unknown = merged.loc[merged["_merge"] == "left_only", "image_id"].unique()
    if len(unknown):
        raise ValueError(f"predictions refer to image ids {sorted(unknown.tolist())} that the images table lacks; "
                         "fix the ids or add those images")
    merged = merged.drop(columns="_merge")
    box_area = (merged["x2"] - merged["x1"]) * (merged["y2"] - merged["y1"])
    merged["rel_area"] = box_area / (merged["width"] * merged["height"])
    return merged
    # END SOLUTION


def image_summary(preds: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """One row per image of the images table, in its order: image_id, file_name, n_detections (0 for an image
    the detector found nothing in), n_classes (distinct classes, 0 likewise) and max_score (NaN when none)."""
    # BEGIN SOLUTION [merge-images] Aggregate per image_id first, then left-merge the images table onto it; fillna(0) the counts.
    per_image = preds.groupby("image_id").agg(n_detections=("det_id", "size"), n_classes=("class", "nunique"),
                                              max_score=("score", "max"))
    out = images[["image_id", "file_name"]].merge(per_image, left_on="image_id", right_index=True, how="left")
    counts = ["n_detections", "n_classes"]
    out[counts] = out[counts].fillna(0).astype(int)
    return out.reset_index(drop=True)
    # END SOLUTION


def top_k_per_class(preds: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k best-scoring predictions of every class (fewer when a class has fewer), with a rank column 1..k.

    Rows come sorted by class (alphabetical), then score descending; equal scores are broken by det_id ascending,
    so the answer never depends on the order the rows arrived in.
    """
    _check_columns(preds, ["det_id", "class", "score"], "predictions")
    # BEGIN SOLUTION [top-k] Reject k < 1; sort by (class, score desc, det_id), groupby("class").head(k), rank = cumcount + 1.
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ordered = preds.sort_values(["class", "score", "det_id"], ascending=[True, False, True])
    top = ordered.groupby("class", sort=False).head(k).copy()  # head keeps the sorted order inside each class
    top["rank"] = top.groupby("class").cumcount() + 1
    return top.reset_index(drop=True)
    # END SOLUTION


def _boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as x1, y1, x2, y2, got {boxes.shape}")
    if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
        raise ValueError("every box needs x2 > x1 and y2 > y1; swap or drop the degenerate ones")
    return boxes


def box_iou(a, b) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), corners x1, y1, x2, y2 -> (N, M) float64.

    inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)); IoU = inter / (area_a + area_b - inter).
    Broadcasting a[:, None] against b[None, :] gives all N * M pairs at once.
    """
    a, b = _boxes(a), _boxes(b)
    # BEGIN SOLUTION [iou-matrix] Corners of the overlap by np.maximum/np.minimum on (N, 1, 2) vs (1, M, 2); clip the sides at 0.
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])       # (N, M, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])   # (N, M, 2)
    sides = np.clip(bottom_right - top_left, 0, None)           # disjoint boxes: a side would go negative
    inter = sides[..., 0] * sides[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)
    # END SOLUTION


def iou_frame(preds: pd.DataFrame, truth: pd.DataFrame, image_id) -> pd.DataFrame:
    """IoU of one image's predictions (rows, index "det_id") with its ground-truth boxes (columns, "gt_id")."""
    _check_columns(preds, ["det_id", "image_id", *BOX], "predictions")
    _check_columns(truth, ["gt_id", "image_id", *BOX], "ground-truth")
    # BEGIN SOLUTION [iou-matrix] Filter both tables to the image, box_iou on .to_numpy(), label rows and columns by id.
    p = preds[preds["image_id"] == image_id]
    g = truth[truth["image_id"] == image_id]
    values = box_iou(p[BOX].to_numpy(), g[BOX].to_numpy()) if len(p) and len(g) else np.zeros((len(p), len(g)))
    return pd.DataFrame(values, index=pd.Index(p["det_id"], name="det_id"),
                        columns=pd.Index(g["gt_id"], name="gt_id"))
    # END SOLUTION


def match_detections(preds: pd.DataFrame, truth: pd.DataFrame, iou_threshold: float = 0.5) -> pd.DataFrame:
    """Greedy matching, as COCO evaluation does it, per image and class.

    Predictions are visited by score descending (ties: det_id ascending); each takes the ground-truth box of the
    same image and class, not yet taken, with the highest IoU, provided that IoU >= iou_threshold. Returns the
    predictions (same rows, same order) plus matched_gt (gt_id, or -1), iou (of that match, else 0.0) and is_tp.
    A second detection of a taken object is a false positive (a duplicate).
    """
    _check_columns(preds, ["det_id", "image_id", "class", *BOX, "score"], "predictions")
    _check_columns(truth, ["gt_id", "image_id", "class", *BOX], "ground-truth")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    # BEGIN SOLUTION [hard-negatives] np.lexsort for the visiting order; per (image, class) the gt boxes, box_iou, a taken mask.
    groups = {key: (g["gt_id"].to_numpy(), g[BOX].to_numpy()) for key, g in truth.groupby(["image_id", "class"])}
    taken = {key: np.zeros(len(ids), bool) for key, (ids, _) in groups.items()}
    matched, ious = np.full(len(preds), -1), np.zeros(len(preds))
    image_ids, classes, boxes = preds["image_id"].to_numpy(), preds["class"].to_numpy(), preds[BOX].to_numpy()
    order = np.lexsort((preds["det_id"].to_numpy(), -preds["score"].to_numpy()))  # last key sorts first
    for row in order:
        key = (image_ids[row], classes[row])
        if key not in groups:
            continue
        gt_ids, gt_boxes = groups[key]
        overlap = np.where(taken[key], -1.0, box_iou(boxes[row:row + 1], gt_boxes)[0])
        best = int(np.argmax(overlap))
        if overlap[best] >= iou_threshold:
            taken[key][best] = True
            matched[row], ious[row] = gt_ids[best], overlap[best]
    return preds.assign(matched_gt=matched, iou=ious, is_tp=matched >= 0)
    # END SOLUTION


def hard_negatives(preds: pd.DataFrame, truth: pd.DataFrame, min_score: float = 0.5,
                   iou_threshold: float = 0.5) -> pd.DataFrame:
    """False positives the detector was sure of: unmatched predictions with score >= min_score, most confident
    first (ties: det_id ascending), with match_detections' columns. These are the boxes to mine for training."""
    # BEGIN SOLUTION [hard-negatives] match_detections, keep ~is_tp with score >= min_score, sort, reset_index.
    matched = match_detections(preds, truth, iou_threshold)
    wrong = matched[~matched["is_tp"] & (matched["score"] >= min_score)]
    return wrong.sort_values(["score", "det_id"], ascending=[False, True]).reset_index(drop=True)
    # END SOLUTION


# ------------------------------------------------------------------ 8. SVD compression


def _check_matrix(gray: np.ndarray, k: int) -> None:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2:
        raise ValueError(f"SVD compression takes a 2-D (gray) image, got {getattr(gray, 'shape', type(gray))}; "
                         "convert with cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) or compress each channel")
    if not 1 <= k <= min(gray.shape):
        raise ValueError(f"rank k must lie in 1..min(H, W) = {min(gray.shape)}, got {k}")


def svd_compress(gray: np.ndarray, k: int) -> np.ndarray:
    """Best rank-k approximation M_k = sum_{i<k} s_i u_i v_i^T = U[:, :k] diag(s[:k]) Vt[:k] (float64, (H, W)).

    Eckart-Young: no rank-k matrix is closer to M in the Frobenius (or spectral) norm.
    """
    _check_matrix(gray, k)
    # BEGIN SOLUTION [svd-compress] np.linalg.svd(full_matrices=False) in float64; scale the first k columns of U by s[:k].
    u, s, vt = np.linalg.svd(gray.astype(np.float64), full_matrices=False)
    return (u[:, :k] * s[:k]) @ vt[:k]   # (H, k) * (k,) broadcasts over columns, then (H, k) @ (k, W)
    # END SOLUTION


def svd_error(gray: np.ndarray, k: int) -> float:
    """||M - M_k||_F, the Frobenius norm of what rank k leaves out: sqrt(sum_{i>=k} s_i^2) (Eckart-Young)."""
    _check_matrix(gray, k)
    # BEGIN SOLUTION [svd-compress] Singular values only (compute_uv=False), then the root of the tail's energy.
    s = np.linalg.svd(gray.astype(np.float64), compute_uv=False)
    return float(np.sqrt(np.sum(s[k:] ** 2)))
    # END SOLUTION


def svd_storage(shape: tuple[int, int], k: int) -> tuple[int, int]:
    """Numbers stored: (rank k, full) = (k (m + n + 1), m n): k columns of U, k rows of Vt and k singular values."""
    m, n = shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"rank k must lie in 1..min(m, n) = {min(m, n)}, got {k}")
    # BEGIN SOLUTION [svd-compress] Count U's m*k, Vt's k*n and the k singular values.
    return k * (m + n + 1), m * n
    # END SOLUTION


# ------------------------------------------------------------------ figures


SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
BOX_5 = np.full((5, 5), 1 / 25)


def save_operations_grid(img_bgr: np.ndarray, path) -> None:
    """A 2 x 4 grid: original, crop (box drawn on the original), flips, channel swap, normalised channel,
    a red-ish mask painted green, box blur and Sobel-x by im2col. Saved as PNG at `path`."""
    h, w = img_bgr.shape[:2]
    box = (w // 4, h // 6, 3 * w // 4, 2 * h // 3)
    gray = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)
    hsv = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2HSV)
    mask = in_range(hsv, (0, 80, 60), (12, 255, 255))
    norm = normalize(bgr_to_rgb(img_bgr))
    panels = [
        ("original (RGB for display)", bgr_to_rgb(img_bgr), None),
        ("crop (a view)", bgr_to_rgb(crop(img_bgr, *box)), None),
        ("flip code -1", bgr_to_rgb(flip(img_bgr, -1)), None),
        ("BGR shown as RGB (forgot the swap)", img_bgr, None),
        ("normalised R channel", norm[..., 0], "coolwarm"),
        (f"red-ish hue masked ({mask.mean():.1%})", bgr_to_rgb(paint(img_bgr, mask, (0, 255, 0))), None),
        ("5x5 box blur (im2col)", correlate2d(gray, BOX_5, "reflect101"), "gray"),
        ("Sobel x (im2col)", correlate2d(gray, SOBEL_X, "reflect101"), "gray"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.5))
    for ax, (title, image, cmap) in zip(axes.ravel(), panels):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    x1, y1, x2, y2 = box
    axes[0, 0].add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, edgecolor="red",
                                            facecolor="none"))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_patches_figure(gray: np.ndarray, path, k: int = 32, stride: int = 32) -> None:
    """The image cut into k x k tiles by extract_patches, drawn as a grid with gaps (no copy was made)."""
    tiles = extract_patches(gray, k, stride)
    rows, cols = tiles.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8))
    for (i, j), ax in np.ndenumerate(axes):
        ax.imshow(tiles[i, j], cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
    fig.suptitle(f"{rows} x {cols} patches of {k} x {k} (as_strided view, strides {tiles.strides})", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def svd_table(gray: np.ndarray, ks) -> pd.DataFrame:
    """Per rank k: Frobenius error, error relative to ||M||_F, PSNR of the clipped reconstruction, numbers stored
    and the fraction of the full image's m * n that is."""
    norm = np.linalg.norm(gray.astype(np.float64))
    rows = []
    for k in ks:
        approx = np.clip(svd_compress(gray, k), 0, 255)
        mse = np.mean((approx - gray) ** 2)
        stored, full = svd_storage(gray.shape, k)
        error = svd_error(gray, k)
        rows.append({"k": k, "frobenius_error": error, "relative_error": error / norm,
                     "psnr_db": 10 * np.log10(255.0 ** 2 / mse), "stored": stored, "fraction": stored / full})
    return pd.DataFrame(rows)


def save_svd_figure(gray: np.ndarray, ks, path) -> None:
    """Top row: the photo and its rank-k reconstructions. Bottom: ||M - M_k||_F against k (the tail energy of
    the singular values, from one SVD) with svd_error's values on it, and the storage fraction k (m + n + 1) / mn."""
    s = np.linalg.svd(gray.astype(np.float64), compute_uv=False)
    tail = np.sqrt(np.cumsum((s ** 2)[::-1])[::-1])           # tail[k] = sqrt(sum_{i >= k} s_i^2)
    all_k = np.arange(1, len(s) + 1)
    fig = plt.figure(figsize=(3 * (len(ks) + 1), 7))
    grid = fig.add_gridspec(2, len(ks) + 1)
    panels = [("original", gray.astype(np.float64))] + [(f"k = {k}", svd_compress(gray, k)) for k in ks]
    for col, (title, image) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(np.clip(image, 0, 255), cmap="gray", vmin=0, vmax=255)
        if col:
            stored, full = svd_storage(gray.shape, ks[col - 1])
            title += f" ({stored / full:.1%} of the numbers)"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    half = (len(ks) + 1) // 2
    ax = fig.add_subplot(grid[1, :half])
    ax.semilogy(all_k[:-1], tail[1:], label="sqrt(sum of s_i^2 for i > k)")
    ax.semilogy(ks, [svd_error(gray, k) for k in ks], "o", label="svd_error(M, k)")
    ax.set_xlabel("rank k")
    ax.set_ylabel("||M - M_k||_F")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(grid[1, half:])
    ax.plot(all_k, [svd_storage(gray.shape, k)[0] / gray.size for k in all_k])
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("rank k")
    ax.set_ylabel("k (m + n + 1) / (m n)")
    ax.set_title(f"fewer numbers than the image only while k <= {gray.size // (sum(gray.shape) + 1)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="astronaut", choices=[s for s in SAMPLES if s not in
                                                                  ("camera", "coins", "moon")])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-images", type=int, default=12, help="images in the generated detection tables")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated detection tables")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)
    img = load_image(args.image, args.size)
    print(f"{args.image}: shape {img.shape} {img.dtype}, strides {img.strides}, "
          f"C-contiguous {img.flags['C_CONTIGUOUS']}")

    rgb = bgr_to_rgb(img)
    print(f"bgr_to_rgb: strides {rgb.strides} (negative: a view), shares memory {np.shares_memory(rgb, img)}, "
          f"equals cv2.cvtColor {np.array_equal(rgb, cv2.cvtColor(img, cv2.COLOR_BGR2RGB))}")
    t = img.transpose(2, 0, 1)
    chw = to_chw_float(img)
    print(f"transpose(2, 0, 1): C-contiguous {t.flags['C_CONTIGUOUS']}; to_chw_float: {chw.shape} {chw.dtype} "
          f"C-contiguous {chw.flags['C_CONTIGUOUS']}, range [{chw.min():.3f}, {chw.max():.3f}]")
    nchw = batch_to_nchw([img, flip(img, 1)])
    print(f"batch_to_nchw of 2: {nchw.shape}")

    print(f"flip codes 0/1/-1 equal cv2.flip: {[np.array_equal(flip(img, c), cv2.flip(img, c)) for c in (0, 1, -1)]}")
    mean, std = channel_mean_std(rgb)
    print(f"RGB mean {np.round(mean / 255, 3)}, std {np.round(std / 255, 3)} (ImageNet: {IMAGENET_MEAN}, "
          f"{IMAGENET_STD})")
    norm = normalize(rgb)
    print(f"after ImageNet normalisation: per-channel mean {np.round(norm.mean(axis=(0, 1)), 3)}, "
          f"round trip exact {np.array_equal(denormalize(norm), rgb)}")

    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    patches = extract_patches(gray, 16, 8)
    print(f"extract_patches(k=16, stride=8): {patches.shape}, strides {patches.strides}, "
          f"shares memory {np.shares_memory(patches, gray)}")
    g = gray.astype(np.float64)
    ours = correlate2d(g, SOBEL_X, "reflect101")
    ref = cv2.filter2D(g, cv2.CV_64F, SOBEL_X, borderType=cv2.BORDER_REFLECT_101)
    print(f"Sobel-x by im2col vs cv2.filter2D (reflect101): max |diff| {np.abs(ours - ref).max():.2e}")

    save_operations_grid(img, out / "operations_grid.png")
    save_patches_figure(gray, out / "patches.png")
    print(f"figures: {out / 'operations_grid.png'}, {out / 'patches.png'}")

    images, truth, preds = make_detection_tables(args.n_images, args.seed)
    print(f"\ndetection tables (seed {args.seed}): {len(images)} images, {len(truth)} ground-truth boxes, "
          f"{len(preds)} predictions")
    print(class_summary(preds).round(3).to_string())
    summary = image_summary(preds, images)
    print(f"images without a single detection: {summary.loc[summary['n_detections'] == 0, 'image_id'].tolist()}")
    merged = attach_images(preds, images)
    print(f"attach_images: {merged.shape}, median box covers {merged['rel_area'].median():.1%} of its image")
    top = top_k_per_class(preds, 2)
    print("top-2 per class:\n" + top[["class", "rank", "det_id", "image_id", "score"]].to_string(index=False))
    matched = match_detections(preds, truth, 0.5)
    print(f"greedy matching at IoU >= 0.5: {int(matched['is_tp'].sum())} true positives, "
          f"{int((~matched['is_tp']).sum())} false positives, {len(truth) - int(matched['is_tp'].sum())} objects missed")
    hard = hard_negatives(preds, truth, min_score=0.5)
    print(f"hard negatives (false positives with score >= 0.5): {len(hard)}\n"
          + hard[["det_id", "image_id", "class", "score"]].to_string(index=False))
    hard.to_csv(out / "hard_negatives.csv", index=False)
    busiest = int(summary.loc[summary["n_detections"].idxmax(), "image_id"])
    print(f"IoU of image {busiest}'s predictions (rows) with its ground truth (columns):\n"
          + iou_frame(preds, truth, busiest).round(2).to_string())

    table = svd_table(gray, (5, 10, 20, 50, 100))
    print(f"\nSVD compression of the {gray.shape[0]}x{gray.shape[1]} gray {args.image}:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    save_svd_figure(gray, (5, 10, 20, 50, 100), out / "svd_compression.png")
    print(f"figures: {out / 'svd_compression.png'}; table: {out / 'hard_negatives.csv'}")


if __name__ == "__main__":
    labkit.run(main)
