"""Lab 01 · Image basics: colour spaces, histograms, equalisation, CLAHE and Otsu, each from scratch.

An image is a NumPy array: (H, W) uint8 for gray, (H, W, 3) uint8 in **BGR** order for colour, because that is
what OpenCV reads and writes. Every function here is written with NumPy only and checked against the OpenCV call
that does the same job (cvtColor, inRange, calcHist, equalizeHist, createCLAHE, threshold with THRESH_OTSU).

Run it:  python solution.py [--image astronaut] [--size 256]
Outputs: outputs/.../colour_spaces.png, equalisation.png, otsu.png
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

# skimage.data images that ship inside the package (no download); gray ones come back (H, W).
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "brick")

# ITU-R BT.601 luma weights, the ones cv2.COLOR_BGR2GRAY uses, in B, G, R order.
BT601_BGR = (0.114, 0.587, 0.299)


def load_image(name: str = "astronaut", size: int | None = 256) -> np.ndarray:
    """A bundled scikit-image sample as OpenCV would hold it: BGR uint8 (H, W, 3), or gray uint8 (H, W).

    `size` scales the longer side to that many pixels (INTER_AREA, the right filter for shrinking).
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown image {name!r}; pick one of {', '.join(SAMPLES)}")
    return assets.sample_image(name, size)


def _check_bgr(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 image of shape (H, W, 3), got "
                         f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}; convert with "
                         "cv2.cvtColor or .astype(np.uint8)")


def _check_gray(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"expected a gray uint8 image of shape (H, W), got "
                         f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}; convert colour "
                         "images with bgr_to_gray first")


# ----------------------------------------------------------------------------- colour spaces

def bgr_to_gray(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (H, W) uint8 luma: Y = 0.114 B + 0.587 G + 0.299 R, rounded."""
    _check_bgr(bgr)
    # TODO [gray]: Weighted sum of the three channels in float, round half up, back to uint8.
    raise NotImplementedError('TODO [gray]: Weighted sum of the three channels in float, round half up, back to uint8.')


def bgr_to_hsv(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> HSV uint8 in OpenCV's 8-bit ranges: H in [0, 180), S and V in [0, 255].

    V = max(B, G, R); S = 255 (V - min) / V; H is the angle on the colour wheel in degrees, halved so it fits a
    byte (red 0, green 60, blue 120).
    """
    _check_bgr(bgr)
    # TODO [hsv]: V is the max channel, S the spread over V, H depends on which channel is the max.
    raise NotImplementedError('TODO [hsv]: V is the max channel, S the spread over V, H depends on which channel is the max.')


def hsv_mask(hsv: np.ndarray, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """255 where lo <= pixel <= hi on every channel, else 0 (like cv2.inRange), as (H, W) uint8.

    Hue is circular: when lo[0] > hi[0] the hue range wraps through 0, so red can be asked for as (170 .. 10).
    """
    if hsv.ndim != 3 or hsv.shape[2] != 3:
        raise ValueError(f"expected an HSV image of shape (H, W, 3), got {hsv.shape}")
    # TODO [hsv-mask]: Compare each channel with its bounds; for a wrapped hue use "h >= lo or h <= hi".
    raise NotImplementedError('TODO [hsv-mask]: Compare each channel with its bounds; for a wrapped hue use "h >= lo or h <= hi".')


# ----------------------------------------------------------------------------- histograms

def histogram(gray: np.ndarray, bins: int = 256) -> np.ndarray:
    """Counts of gray levels in `bins` equal-width bins over [0, 256), as an int64 vector of length `bins`."""
    _check_gray(gray)
    if not 1 <= bins <= 256 or 256 % bins:
        raise ValueError(f"bins must divide 256 (1, 2, 4, ..., 256), got {bins}")
    # TODO [histogram]: Map each level to its bin by integer division, then count with np.bincount.
    raise NotImplementedError('TODO [histogram]: Map each level to its bin by integer division, then count with np.bincount.')


def equalize_hist(gray: np.ndarray) -> np.ndarray:
    """Global histogram equalisation, the mapping cv2.equalizeHist uses.

    lut(v) = round((cdf(v) - cdf_min) / (H W - cdf_min) * 255), where cdf_min is the count of the darkest level
    present. The darkest level goes to 0, the brightest to 255, and levels spread by how many pixels they hold.
    """
    _check_gray(gray)
    # TODO [equalize]: Cumulative histogram -> a 256-entry lookup table -> index it with the image.
    raise NotImplementedError('TODO [equalize]: Cumulative histogram -> a 256-entry lookup table -> index it with the image.')


def clip_histogram(hist: np.ndarray, limit: int) -> np.ndarray:
    """CLAHE's contrast limit: cut every bin at `limit` and hand the excess back evenly (OpenCV's scheme).

    The excess E is split as E // 256 to every bin, and the remaining E % 256 counts go one each to bins
    0, step, 2 step, ... with step = max(256 // remainder, 1). The total count is unchanged.
    """
    hist = np.asarray(hist)
    if hist.shape != (256,) or limit < 1:
        raise ValueError(f"expected a 256-bin histogram and a limit >= 1, got shape {hist.shape} and {limit}")
    # TODO [clahe-clip]: Sum what lies above the limit, cap the bins, add back E // 256 everywhere, then the rest.
    raise NotImplementedError('TODO [clahe-clip]: Sum what lies above the limit, cap the bins, add back E // 256 everywhere, then the rest.')


def clahe(gray: np.ndarray, clip_limit: float = 2.0, tiles: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation, as cv2.createCLAHE(clip_limit, tiles).apply(gray).

    `tiles` is (tiles across, tiles down), OpenCV's order. The image must divide into whole tiles (OpenCV pads
    otherwise). Steps: a clipped, equalised lookup table per tile; each pixel then blends the tables of the four
    tile centres around it bilinearly, so tile borders do not show.
    """
    _check_gray(gray)
    tiles_x, tiles_y = tiles
    height, width = gray.shape
    if height % tiles_y or width % tiles_x:
        raise ValueError(f"image {width}x{height} does not divide into {tiles_x}x{tiles_y} tiles; crop or resize "
                         "it to a multiple of the tile grid")
    # TODO [clahe]: Per tile: clip_histogram + cdf * 255 / area -> LUT; per pixel: bilinear mix of 4 tile LUTs.
    raise NotImplementedError('TODO [clahe]: Per tile: clip_histogram + cdf * 255 / area -> LUT; per pixel: bilinear mix of 4 tile LUTs.')


# ----------------------------------------------------------------------------- thresholding

def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold t: pixels <= t are class 0, > t class 1, chosen to maximise the between-class variance

        sigma_B^2(t) = w0(t) w1(t) (mu0(t) - mu1(t))^2,

    with w the class probabilities and mu the class means. Ties go to the smallest t (as in OpenCV).
    """
    _check_gray(gray)
    # TODO [otsu]: Probabilities p, then w0 = cumsum(p), mu = cumsum(i p); evaluate sigma_B^2 for all t at once.
    raise NotImplementedError('TODO [otsu]: Probabilities p, then w0 = cumsum(p), mu = cumsum(i p); evaluate sigma_B^2 for all t at once.')


def threshold(gray: np.ndarray, t: int) -> np.ndarray:
    """Binary image: 255 where gray > t, else 0 (cv2.THRESH_BINARY)."""
    _check_gray(gray)
    return np.where(gray > t, 255, 0).astype(np.uint8)


def local_contrast(gray: np.ndarray, window: int = 15) -> float:
    """Mean of the local standard deviation in window x window neighbourhoods: how much detail is visible."""
    x = gray.astype(np.float32)
    mean = cv2.blur(x, (window, window))
    var = np.maximum(cv2.blur(x * x, (window, window)) - mean * mean, 0)
    return float(np.sqrt(var).mean())


# ----------------------------------------------------------------------------- demo

def _save_colour_spaces(bgr: np.ndarray, path) -> None:
    hsv = bgr_to_hsv(bgr)
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)  # 8-bit Lab: L scaled to [0, 255], a and b offset by 128
    panels = [("RGB (what you see)", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None),
              ("BGR shown as RGB (the classic bug)", bgr, None),
              ("gray (BT.601)", bgr_to_gray(bgr), "gray"),
              ("H (hue)", hsv[..., 0], "hsv"), ("S (saturation)", hsv[..., 1], "gray"),
              ("V (value)", hsv[..., 2], "gray"),
              ("L* (lightness)", lab[..., 0], "gray"), ("a* (green-red)", lab[..., 1], "RdYlGn_r"),
              ("b* (blue-yellow)", lab[..., 2], "coolwarm")]
    fig, axes = plt.subplots(3, 3, figsize=(10, 10))
    for ax, (title, img, cmap) in zip(axes.ravel(), panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _save_equalisation(gray: np.ndarray, eq: np.ndarray, cl: np.ndarray, path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for col, (title, img) in enumerate([("original", gray), ("global equalisation", eq), ("CLAHE clip 2, 8x8", cl)]):
        axes[0, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[0, col].set_title(f"{title}: local contrast {local_contrast(img):.1f}", fontsize=9)
        axes[0, col].axis("off")
        hist = histogram(img)
        axes[1, col].bar(np.arange(256), hist, width=1.0, color="0.3")
        axes[1, col].plot(np.cumsum(hist) / hist.sum() * hist.max(), color="tab:red", label="cdf (scaled)")
        axes[1, col].set_xlim(0, 255)
        axes[1, col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _save_otsu(gray: np.ndarray, t: int, path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].imshow(gray, cmap="gray")
    axes[0].set_title("input")
    axes[1].bar(np.arange(256), histogram(gray), width=1.0, color="0.3")
    axes[1].axvline(t, color="tab:red", label=f"Otsu t = {t}")
    axes[1].legend()
    axes[1].set_title("histogram")
    axes[2].imshow(threshold(gray, t), cmap="gray")
    axes[2].set_title("gray > t")
    for ax in (axes[0], axes[2]):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Colour spaces, histograms, equalisation, CLAHE and Otsu.")
    parser.add_argument("--image", default="astronaut", choices=[s for s in SAMPLES if s not in
                        ("camera", "coins", "moon", "page", "text", "brick")], help="a colour sample")
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    bgr = load_image(args.image, args.size)
    gray = bgr_to_gray(bgr)
    ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    print(f"{args.image} {bgr.shape}: gray vs cv2.cvtColor max |diff| = "
          f"{np.abs(gray.astype(int) - ref).max()}, equal on {np.mean(gray == ref):.2%} of pixels")
    hsv, hsv_ref = bgr_to_hsv(bgr), cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    dh = np.abs(hsv[..., 0].astype(int) - hsv_ref[..., 0])
    print(f"HSV vs cv2: hue max circular diff {np.minimum(dh, 180 - dh).max()}, "
          f"S/V max diff {np.abs(hsv[..., 1:].astype(int) - hsv_ref[..., 1:]).max()}")
    warm = hsv_mask(hsv, (170, 80, 60), (15, 255, 255))  # reds and oranges, hue wrapping through 0
    print(f"warm-colour mask (hue 170..15 wrapping): {np.mean(warm > 0):.1%} of pixels")
    _save_colour_spaces(bgr, out / "colour_spaces.png")

    moon = load_image("moon", 256)  # a dim, low-contrast photo: where equalisation helps
    eq, cl = equalize_hist(moon), clahe(moon, 2.0, (8, 8))
    print(f"equalize_hist == cv2.equalizeHist: {np.array_equal(eq, cv2.equalizeHist(moon))}")
    cl_ref = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(moon)
    print(f"clahe vs cv2.createCLAHE: max |diff| {np.abs(cl.astype(int) - cl_ref).max()}, "
          f"equal on {np.mean(cl == cl_ref):.2%}")
    print(f"local contrast (mean 15x15 std): original {local_contrast(moon):.1f}, "
          f"global HE {local_contrast(eq):.1f}, CLAHE {local_contrast(cl):.1f}")
    _save_equalisation(moon, eq, cl, out / "equalisation.png")

    for name in ("coins", "camera", "page"):
        img = load_image(name, 256)
        t = otsu_threshold(img)
        t_ref, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        print(f"Otsu on {name:<7}: ours t = {t:3d}, cv2 t = {int(t_ref):3d}")
        if name == "coins":
            _save_otsu(img, t, out / "otsu.png")
    print(f"figures in {out}")


if __name__ == "__main__":
    labkit.run(main)
