"""Lab 01 · Image basics: colour spaces, histograms, equalisation, CLAHE and Otsu, each from scratch.

An image is a NumPy array: (H, W) uint8 for gray, (H, W, 3) uint8 in **BGR** order for colour, because that is
what OpenCV reads and writes. Every function here is written with NumPy only and checked against the OpenCV call
that does the same job (cvtColor, inRange, calcHist, equalizeHist, createCLAHE, threshold with THRESH_OTSU).

Run it:  python solution.py [--image astronaut] [--size 256]
Outputs: outputs/.../colour_spaces.png, equalisation.png, otsu.png
"""
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
    # BEGIN SOLUTION [gray] Weighted sum of the three channels in float, round half up, back to uint8.
    x = bgr.astype(np.float64)
    y = x[..., 0] * BT601_BGR[0] + x[..., 1] * BT601_BGR[1] + x[..., 2] * BT601_BGR[2]
    return np.floor(y + 0.5).astype(np.uint8)  # weights sum to 1, so y <= 255: no clipping needed
    # END SOLUTION


def bgr_to_hsv(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> HSV uint8 in OpenCV's 8-bit ranges: H in [0, 180), S and V in [0, 255].

    V = max(B, G, R); S = 255 (V - min) / V; H is the angle on the colour wheel in degrees, halved so it fits a
    byte (red 0, green 60, blue 120).
    """
    _check_bgr(bgr)
    # BEGIN SOLUTION [hsv] V is the max channel, S the spread over V, H depends on which channel is the max.
    x = bgr.astype(np.float64)
    b, g, r = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    delta = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * delta / np.maximum(v, 1), 0.0)
    d = np.maximum(delta, 1e-12)  # avoid 0/0 on gray pixels; their hue is set to 0 below
    h = np.where(v == r, 60.0 * (g - b) / d,                       # between yellow (60) and magenta (-60)
                 np.where(v == g, 120.0 + 60.0 * (b - r) / d,       # around green
                          240.0 + 60.0 * (r - g) / d))              # around blue
    h = np.where(delta > 0, np.mod(h, 360.0), 0.0)
    return np.stack([np.floor(h / 2 + 0.5) % 180, np.floor(s + 0.5), v], axis=-1).astype(np.uint8)
    # END SOLUTION


def hsv_mask(hsv: np.ndarray, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """255 where lo <= pixel <= hi on every channel, else 0 (like cv2.inRange), as (H, W) uint8.

    Hue is circular: when lo[0] > hi[0] the hue range wraps through 0, so red can be asked for as (170 .. 10).
    """
    if hsv.ndim != 3 or hsv.shape[2] != 3:
        raise ValueError(f"expected an HSV image of shape (H, W, 3), got {hsv.shape}")
    # BEGIN SOLUTION [hsv-mask] Compare each channel with its bounds; for a wrapped hue use "h >= lo or h <= hi".
    h, s, v = (hsv[..., i].astype(np.int32) for i in range(3))
    if lo[0] <= hi[0]:
        hue_ok = (h >= lo[0]) & (h <= hi[0])
    else:
        hue_ok = (h >= lo[0]) | (h <= hi[0])
    ok = hue_ok & (s >= lo[1]) & (s <= hi[1]) & (v >= lo[2]) & (v <= hi[2])
    return ok.astype(np.uint8) * 255
    # END SOLUTION


# ----------------------------------------------------------------------------- histograms

def histogram(gray: np.ndarray, bins: int = 256) -> np.ndarray:
    """Counts of gray levels in `bins` equal-width bins over [0, 256), as an int64 vector of length `bins`."""
    _check_gray(gray)
    if not 1 <= bins <= 256 or 256 % bins:
        raise ValueError(f"bins must divide 256 (1, 2, 4, ..., 256), got {bins}")
    # BEGIN SOLUTION [histogram] Map each level to its bin by integer division, then count with np.bincount.
    return np.bincount(gray.ravel() // (256 // bins), minlength=bins).astype(np.int64)
    # END SOLUTION


def equalize_hist(gray: np.ndarray) -> np.ndarray:
    """Global histogram equalisation, the mapping cv2.equalizeHist uses.

    lut(v) = round((cdf(v) - cdf_min) / (H W - cdf_min) * 255), where cdf_min is the count of the darkest level
    present. The darkest level goes to 0, the brightest to 255, and levels spread by how many pixels they hold.
    """
    _check_gray(gray)
    # BEGIN SOLUTION [equalize] Cumulative histogram -> a 256-entry lookup table -> index it with the image.
    counts = np.bincount(gray.ravel(), minlength=256)
    cdf = np.cumsum(counts)
    cdf_min = cdf[np.flatnonzero(counts)[0]]
    total = gray.size
    if total == cdf_min:  # a constant image has nothing to spread
        return gray.copy()
    lut = np.rint((cdf - cdf_min) * (255.0 / (total - cdf_min)))
    return np.clip(lut, 0, 255).astype(np.uint8)[gray]
    # END SOLUTION


def clip_histogram(hist: np.ndarray, limit: int) -> np.ndarray:
    """CLAHE's contrast limit: cut every bin at `limit` and hand the excess back evenly (OpenCV's scheme).

    The excess E is split as E // 256 to every bin, and the remaining E % 256 counts go one each to bins
    0, step, 2 step, ... with step = max(256 // remainder, 1). The total count is unchanged.
    """
    hist = np.asarray(hist)
    if hist.shape != (256,) or limit < 1:
        raise ValueError(f"expected a 256-bin histogram and a limit >= 1, got shape {hist.shape} and {limit}")
    # BEGIN SOLUTION [clahe-clip] Sum what lies above the limit, cap the bins, add back E // 256 everywhere, then the rest.
    hist = hist.astype(np.int64)
    excess = int(np.maximum(hist - limit, 0).sum())
    out = np.minimum(hist, limit) + excess // 256
    remainder = excess % 256
    if remainder:
        step = max(256 // remainder, 1)
        out[np.arange(0, 256, step)[:remainder]] += 1
    return out
    # END SOLUTION


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
    # BEGIN SOLUTION [clahe] Per tile: clip_histogram + cdf * 255 / area -> LUT; per pixel: bilinear mix of 4 tile LUTs.
    th, tw = height // tiles_y, width // tiles_x
    area = th * tw
    limit = max(int(clip_limit * area / 256), 1)   # clip limit is relative to a flat histogram (area / 256)
    luts = np.empty((tiles_y, tiles_x, 256))
    for i in range(tiles_y):
        for j in range(tiles_x):
            tile = gray[i * th:(i + 1) * th, j * tw:(j + 1) * tw]
            clipped = clip_histogram(np.bincount(tile.ravel(), minlength=256), limit)
            luts[i, j] = np.clip(np.rint(np.cumsum(clipped) * (255.0 / area)), 0, 255)

    def neighbours(n_pixels: int, size: int, n_tiles: int):
        """Per row (or column): the two tile indices whose centres bracket it, and the weight of the second."""
        pos = np.arange(n_pixels) / size - 0.5       # position in tile units, 0 at the first tile's centre
        first = np.floor(pos).astype(int)
        weight = pos - first
        return np.clip(first, 0, n_tiles - 1), np.clip(first + 1, 0, n_tiles - 1), weight

    y1, y2, wy = neighbours(height, th, tiles_y)
    x1, x2, wx = neighbours(width, tw, tiles_x)
    y1, y2, wy = y1[:, None], y2[:, None], wy[:, None]   # (H, 1) broadcasts against (1, W)
    top = luts[y1, x1, gray] * (1 - wx) + luts[y1, x2, gray] * wx
    bottom = luts[y2, x1, gray] * (1 - wx) + luts[y2, x2, gray] * wx
    return np.clip(np.rint(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)
    # END SOLUTION


# ----------------------------------------------------------------------------- thresholding

def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold t: pixels <= t are class 0, > t class 1, chosen to maximise the between-class variance

        sigma_B^2(t) = w0(t) w1(t) (mu0(t) - mu1(t))^2,

    with w the class probabilities and mu the class means. Ties go to the smallest t (as in OpenCV).
    """
    _check_gray(gray)
    # BEGIN SOLUTION [otsu] Probabilities p, then w0 = cumsum(p), mu = cumsum(i p); evaluate sigma_B^2 for all t at once.
    p = np.bincount(gray.ravel(), minlength=256) / gray.size
    w0 = np.cumsum(p)
    w1 = 1.0 - w0
    mu_cum = np.cumsum(np.arange(256) * p)
    mu_total = mu_cum[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = mu_cum / w0
        mu1 = (mu_total - mu_cum) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[(w0 < 1e-7) | (w1 < 1e-7)] = -1.0  # an empty class is not a split
    return int(np.argmax(between))
    # END SOLUTION


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
