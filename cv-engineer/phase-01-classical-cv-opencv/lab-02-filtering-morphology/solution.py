"""Lab 02 · Spatial filtering, edges and morphology from scratch: correlation, Gaussian, median, Sobel, Canny,
erosion/dilation, each equal to its OpenCV counterpart on real images.

Conventions (OpenCV's, so results can be compared exactly):
- cv2.filter2D computes *correlation* (the kernel is not flipped); convolution is correlation with the kernel
  rotated by 180 degrees. The anchor is the kernel centre, so kernels have odd sizes here.
- Borders: OpenCV's default BORDER_REFLECT_101 mirrors without repeating the edge pixel (`dcb|abcd|cba`), which
  is NumPy's np.pad mode "reflect". BORDER_REPLICATE (`aaa|abcd|ddd`) is mode "edge".
- Images are (H, W) gray; filters work in float64 so nothing is lost to rounding.

Run it:  python solution.py [--image camera] [--size 256]
Outputs: outputs/.../filters.png, canny.png, morphology.png
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

# Border names -> (np.pad mode, OpenCV flag)
BORDERS = {
    "reflect101": ("reflect", cv2.BORDER_REFLECT_101),   # OpenCV's default
    "replicate": ("edge", cv2.BORDER_REPLICATE),
    "reflect": ("symmetric", cv2.BORDER_REFLECT),
    "constant": ("constant", cv2.BORDER_CONSTANT),       # zeros
}
SAMPLES = ("camera", "coins", "moon", "page", "text", "brick", "astronaut", "coffee", "chelsea")


def load_gray(name: str = "camera", size: int | None = 256) -> np.ndarray:
    """A bundled scikit-image sample as a gray uint8 (H, W) array, longer side scaled to `size`."""
    if name not in SAMPLES:
        raise ValueError(f"unknown image {name!r}; pick one of {', '.join(SAMPLES)}")
    return assets.sample_image(name, size, gray=True)


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 2:
        raise ValueError(f"expected a 2-D gray image (H, W), got shape {getattr(img, 'shape', type(img))}; "
                         "convert colour with cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)")


def _odd_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be 2-D with odd height and width (so it has a centre), got {kernel.shape}")
    return kernel


# ----------------------------------------------------------------------------- linear filters

def correlate2d(img: np.ndarray, kernel: np.ndarray, border: str = "reflect101") -> np.ndarray:
    """out[y, x] = sum_{i, j} kernel[i, j] * img[y + i - r_y, x + j - r_x]   (what cv2.filter2D computes).

    (H, W) image, (kh, kw) odd kernel -> (H, W) float64. One shifted copy of the padded image per kernel tap:
    kh * kw vectorised multiply-adds instead of H * W Python loops.
    """
    _check_image(img)
    kernel = _odd_kernel(kernel)
    if border not in BORDERS:
        raise ValueError(f"unknown border {border!r}; use one of {', '.join(BORDERS)}")
    # BEGIN SOLUTION [correlate] Pad by the kernel radius with the border mode, then add kernel[i, j] * (shifted view).
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(img.astype(np.float64), ((ry, ry), (rx, rx)), mode=BORDERS[border][0])
    height, width = img.shape
    out = np.zeros((height, width))
    for i, j in zip(*np.nonzero(kernel)):            # zero taps cost nothing
        out += kernel[i, j] * padded[i:i + height, j:j + width]
    return out
    # END SOLUTION


def convolve2d(img: np.ndarray, kernel: np.ndarray, border: str = "reflect101") -> np.ndarray:
    """True convolution: correlation with the kernel flipped in both axes (same result for symmetric kernels)."""
    return correlate2d(img, _odd_kernel(kernel)[::-1, ::-1], border)


def gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """1-D Gaussian taps g[i] = exp(-(i - r)^2 / (2 sigma^2)), normalised to sum 1, shape (ksize,).

    sigma <= 0 means "derive it from the size", OpenCV's rule sigma = 0.3 ((ksize - 1) / 2 - 1) + 0.8.
    (cv2.getGaussianKernel uses fixed tables instead for ksize <= 7 with sigma <= 0.)
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be a positive odd integer, got {ksize}")
    # BEGIN SOLUTION [gaussian] Offsets -r..r, exp(-x^2 / 2 sigma^2), divide by the sum.
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()
    # END SOLUTION


def gaussian_blur(img: np.ndarray, ksize: int, sigma: float, border: str = "reflect101") -> np.ndarray:
    """Separable Gaussian blur: the 2-D kernel is the outer product g g^T, so blur the rows, then the columns.

    Cost per pixel drops from k^2 to 2k multiply-adds. Equals cv2.GaussianBlur on float input.
    """
    # BEGIN SOLUTION [gaussian] Correlate with g as a (1, k) row kernel, then with g as a (k, 1) column kernel.
    g = gaussian_kernel(ksize, sigma)
    return correlate2d(correlate2d(img, g[None, :], border), g[:, None], border)
    # END SOLUTION


def median_blur(img: np.ndarray, ksize: int) -> np.ndarray:
    """Median of each ksize x ksize window (border replicated, like cv2.medianBlur); uint8 in, uint8 out.

    Non-linear: a salt-and-pepper outlier never reaches the output unless it is the window's majority.
    """
    _check_image(img)
    if ksize < 3 or ksize % 2 == 0:
        raise ValueError(f"ksize must be odd and >= 3, got {ksize}")
    # BEGIN SOLUTION [median] Stack the k*k shifted views of the edge-padded image and take the median over that axis.
    r = ksize // 2
    padded = np.pad(img, r, mode="edge")
    height, width = img.shape
    windows = np.stack([padded[i:i + height, j:j + width] for i in range(ksize) for j in range(ksize)])
    return np.median(windows, axis=0).astype(img.dtype)   # k*k is odd: the median is one of the values
    # END SOLUTION


def sobel(gray: np.ndarray, border: str = "reflect101") -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel derivatives (gx, gy), each (H, W) float64, equal to cv2.Sobel(ksize=3).

    Sobel x = [1, 2, 1]^T (smooth across) times [-1, 0, 1] (difference along): gx > 0 where the image gets
    brighter to the right, gy > 0 where it gets brighter downwards.
    """
    # BEGIN SOLUTION [sobel] Build the 3x3 kernel as an outer product and correlate; gy uses the transpose.
    kx = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
    return correlate2d(gray, kx, border), correlate2d(gray, kx.T, border)
    # END SOLUTION


# ----------------------------------------------------------------------------- Canny

def non_max_suppression(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep a pixel's magnitude only where it is a maximum along its gradient direction, else 0.

    The direction is quantised to 4 sectors (0, 45, 90, 135 degrees) with tan(22.5) = 0.4142 and
    tan(67.5) = 2.4142, exactly as cv2.Canny does, and its tie rule too: strictly greater than the neighbour
    "before" and greater or equal to the one "after" for the horizontal and vertical sectors, strictly greater
    than both on diagonals. Outside the image counts as 0.
    """
    # BEGIN SOLUTION [nms] Pad mag with zeros, take the 8 neighbour views, pick the pair by sector, compare.
    p = np.pad(mag, 1)
    c = p[1:-1, 1:-1]
    left, right, up, down = p[1:-1, :-2], p[1:-1, 2:], p[:-2, 1:-1], p[2:, 1:-1]
    up_left, up_right, down_left, down_right = p[:-2, :-2], p[:-2, 2:], p[2:, :-2], p[2:, 2:]
    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay < ax * np.tan(np.pi / 8)        # gradient within 22.5 deg of the x axis: compare left/right
    vertical = ay > ax * np.tan(3 * np.pi / 8)      # within 22.5 deg of the y axis: compare up/down
    same_sign = gx * gy >= 0                        # gradient along the main diagonal (y axis points down)
    keep_diag = np.where(same_sign, (c > up_left) & (c > down_right), (c > up_right) & (c > down_left))
    keep = np.where(horizontal, (c > left) & (c >= right),
                    np.where(vertical, (c > up) & (c >= down), keep_diag))
    return np.where(keep, mag, 0.0)
    # END SOLUTION


def hysteresis(nms: np.ndarray, low: float, high: float) -> np.ndarray:
    """Double threshold plus hysteresis: pixels > high are edges; pixels > low are edges only when an
    8-connected chain of such pixels links them to one above high. Returns a uint8 0/255 edge map."""
    if low > high:
        raise ValueError(f"low threshold {low} is above high threshold {high}; swap them")
    # BEGIN SOLUTION [hysteresis] Flood fill from every strong pixel through weak ones with an explicit stack (8 neighbours).
    weak = nms > low
    edges = nms > high
    stack = list(zip(*np.nonzero(edges)))
    height, width = nms.shape
    while stack:
        y, x = stack.pop()
        for yy in range(max(y - 1, 0), min(y + 2, height)):
            for xx in range(max(x - 1, 0), min(x + 2, width)):
                if weak[yy, xx] and not edges[yy, xx]:
                    edges[yy, xx] = True
                    stack.append((yy, xx))
    return edges.astype(np.uint8) * 255
    # END SOLUTION


def canny(gray: np.ndarray, low: float, high: float, l2_gradient: bool = False) -> np.ndarray:
    """Canny on an (already blurred) uint8 image, the pipeline of cv2.Canny(gray, low, high, L2gradient=...):
    Sobel with replicated borders -> magnitude (|gx| + |gy|, or the true length with l2_gradient) -> NMS ->
    hysteresis. cv2.Canny does not blur: blur first (GaussianBlur 5x5) to keep noise out of the edges."""
    gx, gy = sobel(gray, border="replicate")
    mag = np.hypot(gx, gy) if l2_gradient else np.abs(gx) + np.abs(gy)
    return hysteresis(non_max_suppression(mag, gx, gy), low, high)


def edge_f1(pred: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> float:
    """F1 of two edge maps where an edge pixel counts as matched when the other map has an edge within
    `tolerance` pixels (Chebyshev distance): precision uses pred's pixels, recall uses truth's."""
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    p, t = pred > 0, truth > 0
    if not p.any() and not t.any():
        return 1.0
    precision = (p & (cv2.dilate(t.astype(np.uint8), kernel) > 0)).sum() / max(p.sum(), 1)
    recall = (t & (cv2.dilate(p.astype(np.uint8), kernel) > 0)).sum() / max(t.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-12))


# ----------------------------------------------------------------------------- morphology

def _structuring(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0 or not kernel.any():
        raise ValueError(f"structuring element must be 2-D, odd-sized and non-empty, got {kernel.shape}; "
                         "build one with cv2.getStructuringElement")
    return kernel != 0


def erode(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Minimum over the structuring element's on-pixels (centre anchor). Outside the image never wins the min,
    as in OpenCV's default border. Shrinks bright regions, removes bright specks smaller than the element."""
    _check_image(img)
    se = _structuring(kernel)
    # BEGIN SOLUTION [morphology] Pad with the dtype's max value, then a running np.minimum over the on-pixel shifts.
    ry, rx = se.shape[0] // 2, se.shape[1] // 2
    top = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else np.inf
    padded = np.pad(img, ((ry, ry), (rx, rx)), constant_values=top)
    height, width = img.shape
    out = np.full(img.shape, top, dtype=img.dtype)
    for i, j in zip(*np.nonzero(se)):
        np.minimum(out, padded[i:i + height, j:j + width], out=out)
    return out
    # END SOLUTION


def dilate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Maximum over the structuring element's on-pixels (centre anchor); outside the image never wins the max.
    Grows bright regions and fills dark gaps smaller than the element."""
    _check_image(img)
    se = _structuring(kernel)
    # BEGIN SOLUTION [morphology] Same as erode with the dtype's min as padding and np.maximum.
    ry, rx = se.shape[0] // 2, se.shape[1] // 2
    bottom = np.iinfo(img.dtype).min if img.dtype.kind in "ui" else -np.inf
    padded = np.pad(img, ((ry, ry), (rx, rx)), constant_values=bottom)
    height, width = img.shape
    out = np.full(img.shape, bottom, dtype=img.dtype)
    for i, j in zip(*np.nonzero(se)):
        np.maximum(out, padded[i:i + height, j:j + width], out=out)
    return out
    # END SOLUTION


def morphology(img: np.ndarray, op: str, kernel: np.ndarray) -> np.ndarray:
    """The composite operators of cv2.morphologyEx, built from erode and dilate:
    open = dilate(erode) removes small bright specks; close = erode(dilate) fills small dark holes;
    gradient = dilate - erode outlines shapes; tophat = img - open keeps small bright details."""
    ops = ("open", "close", "gradient", "tophat", "blackhat")
    if op not in ops:
        raise ValueError(f"unknown operation {op!r}; use one of {', '.join(ops)}")
    # BEGIN SOLUTION [morphology] Compose erode/dilate; subtract in a signed type (uint8 would wrap).
    if op == "open":
        return dilate(erode(img, kernel), kernel)
    if op == "close":
        return erode(dilate(img, kernel), kernel)
    if op == "gradient":
        return (dilate(img, kernel).astype(np.int32) - erode(img, kernel)).astype(img.dtype)
    if op == "tophat":
        return (img.astype(np.int32) - morphology(img, "open", kernel)).astype(img.dtype)
    return (morphology(img, "close", kernel).astype(np.int32) - img).astype(img.dtype)
    # END SOLUTION


# ----------------------------------------------------------------------------- demo helpers

def add_salt_pepper(img: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Set `fraction` of the pixels to 0 or 255 at random (half each)."""
    rng = np.random.default_rng(seed)
    noisy = img.copy()
    hit = rng.random(img.shape) < fraction
    noisy[hit] = np.where(rng.random(hit.sum()) < 0.5, 0, 255)
    return noisy


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _show(path, panels, cols=3):
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (title, img) in zip(np.ravel(axes), panels):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Filters, Canny and morphology from scratch vs OpenCV.")
    parser.add_argument("--image", default="camera", choices=SAMPLES)
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels")
    parser.add_argument("--low", type=float, default=50, help="Canny low threshold")
    parser.add_argument("--high", type=float, default=150, help="Canny high threshold (2-3x low)")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    gray = load_gray(args.image, args.size)
    f = gray.astype(np.float32)
    blur = gaussian_blur(gray, 7, 1.5)
    ref = cv2.GaussianBlur(f, (7, 7), 1.5)
    print(f"{args.image} {gray.shape}")
    print(f"gaussian_blur(7, 1.5) vs cv2.GaussianBlur: max |diff| {np.abs(blur - ref).max():.1e}")
    gx, gy = sobel(gray)
    print(f"sobel vs cv2.Sobel: max |diff| gx {np.abs(gx - cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)).max():.1e}, "
          f"gy {np.abs(gy - cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)).max():.1e}")

    noisy = add_salt_pepper(gray, 0.05)
    med, gauss = median_blur(noisy, 3), np.clip(np.rint(gaussian_blur(noisy, 5, 1.0)), 0, 255).astype(np.uint8)
    print(f"salt and pepper 5%: PSNR noisy {psnr(noisy, gray):.1f} dB, Gaussian 5x5 {psnr(gauss, gray):.1f} dB, "
          f"median 3x3 {psnr(med, gray):.1f} dB (median == cv2.medianBlur: "
          f"{np.array_equal(med, cv2.medianBlur(noisy, 3))})")
    _show(out / "filters.png", [("input", gray), ("Gaussian 7x7 sigma 1.5", blur), ("|gx| + |gy|", np.abs(gx) + np.abs(gy)),
                               ("salt and pepper 5%", noisy), ("Gaussian 5x5 on noise", gauss), ("median 3x3 on noise", med)])

    smooth = cv2.GaussianBlur(gray, (5, 5), 1.0)
    ours = canny(smooth, args.low, args.high)
    theirs = cv2.Canny(smooth, args.low, args.high)
    print(f"canny({args.low:g}, {args.high:g}): {(ours > 0).sum()} edge px, cv2.Canny {(theirs > 0).sum()}; "
          f"identical pixels {np.mean(ours == theirs):.4%}, F1 (1 px tolerance) {edge_f1(ours, theirs):.4f}")
    diff = np.dstack([theirs, ours, np.zeros_like(ours)])
    _show(out / "canny.png", [("blurred input", smooth), ("canny (ours)", ours), ("cv2.Canny", theirs),
                             ("overlay: yellow = both", diff)], cols=2)

    binary = (gray > cv2.threshold(gray, 0, 255, cv2.THRESH_OTSU)[0]).astype(np.uint8) * 255
    speckled = add_salt_pepper(binary, 0.02, seed=1)
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    same = all(np.array_equal(morphology(speckled, op, se), cv2.morphologyEx(speckled, code, se))
               for op, code in [("open", cv2.MORPH_OPEN), ("close", cv2.MORPH_CLOSE),
                                ("gradient", cv2.MORPH_GRADIENT), ("tophat", cv2.MORPH_TOPHAT)])
    print(f"morphology (ellipse 5x5) open/close/gradient/tophat == cv2.morphologyEx: {same}")
    _show(out / "morphology.png", [("Otsu mask + 2% specks", speckled), ("erode", erode(speckled, se)),
                                  ("dilate", dilate(speckled, se)), ("open", morphology(speckled, "open", se)),
                                  ("close", morphology(speckled, "close", se)),
                                  ("gradient", morphology(binary, "gradient", se))])
    print(f"figures in {out}")


if __name__ == "__main__":
    labkit.run(main)
