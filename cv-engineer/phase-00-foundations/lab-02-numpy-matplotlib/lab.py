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
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import cv2
import matplotlib
import numpy as np
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
    # TODO [channel-layout]: Reverse the last axis with a slice step of -1.
    raise NotImplementedError('TODO [channel-layout]: Reverse the last axis with a slice step of -1.')


def to_chw_float(img_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> RGB float32 (3, H, W) in [0, 1], C-contiguous (what torch.from_numpy wants)."""
    _check_hwc(img_bgr)
    # TODO [channel-layout]: bgr_to_rgb, scale by 1/255 as float32, transpose(2, 0, 1), np.ascontiguousarray.
    raise NotImplementedError('TODO [channel-layout]: bgr_to_rgb, scale by 1/255 as float32, transpose(2, 0, 1), np.ascontiguousarray.')


def batch_to_nchw(images: list[np.ndarray]) -> np.ndarray:
    """A list of same-sized BGR uint8 images -> (N, 3, H, W) float32 RGB in [0, 1]."""
    if not images or len({im.shape for im in images}) != 1:
        raise ValueError("need a non-empty list of images that all have the same shape; resize them first")
    # TODO [channel-layout]: np.stack to (N, H, W, 3); reverse channels, scale, transpose(0, 3, 1, 2).
    raise NotImplementedError('TODO [channel-layout]: np.stack to (N, H, W, 3); reverse channels, scale, transpose(0, 3, 1, 2).')


# ------------------------------------------------------------------ 2. crop and flip


def crop(img: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Pixels with x1 <= x < x2 and y1 <= y < y2, as a view (writing into it changes the image)."""
    h, w = img.shape[:2]
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise ValueError(f"crop box ({x1}, {y1}, {x2}, {y2}) is empty or outside a {w}x{h} image")
    # TODO [crop-flip]: Basic slicing rows y1:y2, columns x1:x2 (slicing never copies).
    raise NotImplementedError('TODO [crop-flip]: Basic slicing rows y1:y2, columns x1:x2 (slicing never copies).')


def flip(img: np.ndarray, code: int) -> np.ndarray:
    """Same meaning as cv2.flip: 0 = upside down (rows reversed), 1 = mirror (columns), -1 = both. A view."""
    if code not in (0, 1, -1):
        raise ValueError(f"flip code must be 0 (vertical), 1 (horizontal) or -1 (both), got {code}")
    # TODO [crop-flip]: Reverse rows for 0, columns for 1, both for -1, with ::-1 slices.
    raise NotImplementedError('TODO [crop-flip]: Reverse rows for 0, columns for 1, both for -1, with ::-1 slices.')


# ------------------------------------------------------------------ 3. statistics and normalisation


def channel_mean_std(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (ddof=0) over all pixels: two float64 arrays of shape (C,)."""
    _check_hwc(img)
    # TODO [normalise]: Reduce over axes (0, 1) in float64.
    raise NotImplementedError('TODO [normalise]: Reduce over axes (0, 1) in float64.')


def normalize(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(img / 255 - mean) / std per channel, float32 (H, W, C). mean and std are (C,), in the image's order.

    Broadcasting: (H, W, C) op (C,) -> the (C,) is read as (1, 1, C) and stretched over every pixel.
    """
    _check_hwc(img)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (img.shape[2],) or std.shape != (img.shape[2],) or np.any(std <= 0):
        raise ValueError(f"mean and std need one value per channel ({img.shape[2]}) and std > 0, "
                         f"got {mean.tolist()} and {std.tolist()}")
    # TODO [normalise]: One broadcast expression in float32.
    raise NotImplementedError('TODO [normalise]: One broadcast expression in float32.')


def denormalize(x: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Inverse of normalize, back to uint8 (rounded and clipped to 0..255)."""
    # TODO [normalise]: x * std + mean, times 255, np.rint, np.clip, astype uint8.
    raise NotImplementedError('TODO [normalise]: x * std + mean, times 255, np.rint, np.clip, astype uint8.')


# ------------------------------------------------------------------ 4. masks and fancy indexing


def in_range(img: np.ndarray, lo, hi) -> np.ndarray:
    """Boolean (H, W): True where every channel c has lo[c] <= img[..., c] <= hi[c] (inclusive, like cv2.inRange)."""
    # TODO [masking]: Compare against lo and hi (they broadcast over pixels), then .all over the last axis.
    raise NotImplementedError('TODO [masking]: Compare against lo and hi (they broadcast over pixels), then .all over the last axis.')


def paint(img: np.ndarray, mask: np.ndarray, color) -> np.ndarray:
    """A copy of img with every masked pixel set to color (boolean-mask assignment)."""
    if mask.shape != img.shape[:2] or mask.dtype != bool:
        raise ValueError(f"mask must be boolean with shape {img.shape[:2]}, got {mask.dtype} {mask.shape}")
    # TODO [masking]: Copy first (never edit the caller's image), then out[mask] = color.
    raise NotImplementedError("TODO [masking]: Copy first (never edit the caller's image), then out[mask] = color.")


def gather_pixels(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Values at the points (ys[i], xs[i]): shape (N, C) for colour. Integer-array indexing (always a copy)."""
    # TODO [masking]: Index with the two integer arrays at once: img[ys, xs].
    raise NotImplementedError('TODO [masking]: Index with the two integer arrays at once: img[ys, xs].')


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
    # TODO [patches]: as_strided with shape (n_rows, n_cols, k, k) and strides (stride*s0, stride*s1, s0, s1).
    raise NotImplementedError('TODO [patches]: as_strided with shape (n_rows, n_cols, k, k) and strides (stride*s0, stride*s1, s0, s1).')


# ------------------------------------------------------------------ 6. convolution as a matrix product


def im2col(gray: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Unroll every kh x kw window into a row: (H_out * W_out, kh * kw), H_out = H - kh + 1 (a copy, float64)."""
    if gray.ndim != 2:
        raise ValueError(f"im2col takes a 2-D array, got shape {gray.shape}")
    # TODO [im2col-conv]: Cast to float64 first (small), sliding_window_view -> (H_out, W_out, kh, kw), reshape.
    raise NotImplementedError('TODO [im2col-conv]: Cast to float64 first (small), sliding_window_view -> (H_out, W_out, kh, kw), reshape.')


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
    # TODO [im2col-conv]: Pad unless valid (np.pad mode "reflect" or "constant"), im2col, @ kernel.ravel(), reshape.
    raise NotImplementedError('TODO [im2col-conv]: Pad unless valid (np.pad mode "reflect" or "constant"), im2col, @ kernel.ravel(), reshape.')


def convolve2d(gray: np.ndarray, kernel: np.ndarray, border: str = "valid") -> np.ndarray:
    """True convolution: correlation with the kernel flipped in both axes (matters only for asymmetric kernels)."""
    # TODO [im2col-conv]: Flip the kernel with [::-1, ::-1] and call correlate2d.
    raise NotImplementedError('TODO [im2col-conv]: Flip the kernel with [::-1, ::-1] and call correlate2d.')


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="astronaut", choices=[s for s in SAMPLES if s not in
                                                                  ("camera", "coins", "moon")])
    parser.add_argument("--size", type=int, default=256)
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


if __name__ == "__main__":
    labkit.run(main)
