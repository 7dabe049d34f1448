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
    # TODO [correlate]: Pad by the kernel radius with the border mode, then add kernel[i, j] * (shifted view).
    raise NotImplementedError('TODO [correlate]: Pad by the kernel radius with the border mode, then add kernel[i, j] * (shifted view).')


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
    # TODO [gaussian]: Offsets -r..r, exp(-x^2 / 2 sigma^2), divide by the sum.
    raise NotImplementedError('TODO [gaussian]: Offsets -r..r, exp(-x^2 / 2 sigma^2), divide by the sum.')


def gaussian_blur(img: np.ndarray, ksize: int, sigma: float, border: str = "reflect101") -> np.ndarray:
    """Separable Gaussian blur: the 2-D kernel is the outer product g g^T, so blur the rows, then the columns.

    Cost per pixel drops from k^2 to 2k multiply-adds. Equals cv2.GaussianBlur on float input.
    """
    # TODO [gaussian]: Correlate with g as a (1, k) row kernel, then with g as a (k, 1) column kernel.
    raise NotImplementedError('TODO [gaussian]: Correlate with g as a (1, k) row kernel, then with g as a (k, 1) column kernel.')


def median_blur(img: np.ndarray, ksize: int) -> np.ndarray:
    """Median of each ksize x ksize window (border replicated, like cv2.medianBlur); uint8 in, uint8 out.

    Non-linear: a salt-and-pepper outlier never reaches the output unless it is the window's majority.
    """
    _check_image(img)
    if ksize < 3 or ksize % 2 == 0:
        raise ValueError(f"ksize must be odd and >= 3, got {ksize}")
    # TODO [median]: Stack the k*k shifted views of the edge-padded image and take the median over that axis.
    raise NotImplementedError('TODO [median]: Stack the k*k shifted views of the edge-padded image and take the median over that axis.')


def sobel(gray: np.ndarray, border: str = "reflect101") -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel derivatives (gx, gy), each (H, W) float64, equal to cv2.Sobel(ksize=3).

    Sobel x = [1, 2, 1]^T (smooth across) times [-1, 0, 1] (difference along): gx > 0 where the image gets
    brighter to the right, gy > 0 where it gets brighter downwards.
    """
    # TODO [sobel]: Build the 3x3 kernel as an outer product and correlate; gy uses the transpose.
    raise NotImplementedError('TODO [sobel]: Build the 3x3 kernel as an outer product and correlate; gy uses the transpose.')


# ----------------------------------------------------------------------------- Canny

def non_max_suppression(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep a pixel's magnitude only where it is a maximum along its gradient direction, else 0.

    The direction is quantised to 4 sectors (0, 45, 90, 135 degrees) with tan(22.5) = 0.4142 and
    tan(67.5) = 2.4142, exactly as cv2.Canny does, and its tie rule too: strictly greater than the neighbour
    "before" and greater or equal to the one "after" for the horizontal and vertical sectors, strictly greater
    than both on diagonals. Outside the image counts as 0.
    """
    # TODO [nms]: Pad mag with zeros, take the 8 neighbour views, pick the pair by sector, compare.
    raise NotImplementedError('TODO [nms]: Pad mag with zeros, take the 8 neighbour views, pick the pair by sector, compare.')


def hysteresis(nms: np.ndarray, low: float, high: float) -> np.ndarray:
    """Double threshold plus hysteresis: pixels > high are edges; pixels > low are edges only when an
    8-connected chain of such pixels links them to one above high. Returns a uint8 0/255 edge map."""
    if low > high:
        raise ValueError(f"low threshold {low} is above high threshold {high}; swap them")
    # TODO [hysteresis]: Flood fill from every strong pixel through weak ones with an explicit stack (8 neighbours).
    raise NotImplementedError('TODO [hysteresis]: Flood fill from every strong pixel through weak ones with an explicit stack (8 neighbours).')


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
    # TODO [morphology]: Pad with the dtype's max value, then a running np.minimum over the on-pixel shifts.
    raise NotImplementedError("TODO [morphology]: Pad with the dtype's max value, then a running np.minimum over the on-pixel shifts.")


def dilate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Maximum over the structuring element's on-pixels (centre anchor); outside the image never wins the max.
    Grows bright regions and fills dark gaps smaller than the element."""
    _check_image(img)
    se = _structuring(kernel)
    # TODO [morphology]: Same as erode with the dtype's min as padding and np.maximum.
    raise NotImplementedError("TODO [morphology]: Same as erode with the dtype's min as padding and np.maximum.")


def morphology(img: np.ndarray, op: str, kernel: np.ndarray) -> np.ndarray:
    """The composite operators of cv2.morphologyEx, built from erode and dilate:
    open = dilate(erode) removes small bright specks; close = erode(dilate) fills small dark holes;
    gradient = dilate - erode outlines shapes; tophat = img - open keeps small bright details."""
    ops = ("open", "close", "gradient", "tophat", "blackhat")
    if op not in ops:
        raise ValueError(f"unknown operation {op!r}; use one of {', '.join(ops)}")
    # TODO [morphology]: Compose erode/dilate; subtract in a signed type (uint8 would wrap).
    raise NotImplementedError('TODO [morphology]: Compose erode/dilate; subtract in a signed type (uint8 would wrap).')


# ----------------------------------------------------------------------------- edge-preserving smoothing

def bilateral_filter(img: np.ndarray, d: int, sigma_color: float, sigma_space: float,
                     border: str = "reflect101") -> np.ndarray:
    """Bilateral filter, float64 (H, W), equal to cv2.bilateralFilter on float32 input:

        out(p) = sum_q w(p, q) img(q) / sum_q w(p, q),
        w(p, q) = exp(-|q - p|^2 / 2 sigma_space^2) * exp(-(img(q) - img(p))^2 / 2 sigma_color^2)

    over the disc |q - p| <= r, with r = d // 2, or round(1.5 sigma_space) when d <= 0 (OpenCV's rule; its
    rounding sends halves to the even neighbour, like Python's round). Pixels across an edge differ a lot in
    value, so their weight vanishes: flat regions are smoothed, edges are kept.
    """
    _check_image(img)
    if sigma_color <= 0 or sigma_space <= 0:
        raise ValueError(f"sigma_color and sigma_space must be positive, got {sigma_color} and {sigma_space}")
    if border not in BORDERS:
        raise ValueError(f"unknown border {border!r}; use one of {', '.join(BORDERS)}")
    # TODO [bilateral]: Radius from d; loop over offsets inside the disc; weights = spatial * range; normalise by their sum.
    raise NotImplementedError('TODO [bilateral]: Radius from d; loop over offsets inside the disc; weights = spatial * range; normalise by their sum.')


# ----------------------------------------------------------------------------- Laplacian and LoG

LAPLACE_4 = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])  # d2/dx2 + d2/dy2, cv2.Laplacian ksize=1


def laplacian(img: np.ndarray, border: str = "reflect101") -> np.ndarray:
    """Discrete Laplacian (H, W) float64: f(x-1) + f(x+1) + f(y-1) + f(y+1) - 4 f, equal to
    cv2.Laplacian(img, cv2.CV_64F, ksize=1). Zero on flat and linear ramps; it changes sign across an edge."""
    # TODO [log-edges]: Correlate with the 4-neighbour kernel (it is symmetric, so no flip matters).
    raise NotImplementedError('TODO [log-edges]: Correlate with the 4-neighbour kernel (it is symmetric, so no flip matters).')


def log_filter(img: np.ndarray, sigma: float, border: str = "reflect101") -> np.ndarray:
    """Laplacian of Gaussian: blur with a (k, k) Gaussian, k = 2 ceil(3 sigma) + 1, then take the Laplacian.
    Equal to cv2.Laplacian(cv2.GaussianBlur(img, (k, k), sigma), cv2.CV_64F, ksize=1). A band-pass filter
    (the "Mexican hat"): sigma picks the scale of the edges it answers to."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ksize = 2 * int(np.ceil(3 * sigma)) + 1
    # TODO [log-edges]: gaussian_blur with (ksize, sigma), then laplacian, both with the same border.
    raise NotImplementedError('TODO [log-edges]: gaussian_blur with (ksize, sigma), then laplacian, both with the same border.')


def zero_crossings(response: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Edges of a LoG response (Marr-Hildreth): a pixel is marked when, for at least one of the four pairs of
    opposite neighbours (left/right, up/down and both diagonals), the two have strictly opposite signs
    (a * b < 0) and differ by more than `threshold`. Exact zeros (flat regions) never count. Border pixels lack
    a full neighbourhood and are never marked. Returns a bool (H, W) map."""
    _check_image(response)
    # TODO [log-edges]: Four pairs of shifted views of the interior; OR together (a * b < 0) & (|a - b| > threshold).
    raise NotImplementedError('TODO [log-edges]: Four pairs of shifted views of the interior; OR together (a * b < 0) & (|a - b| > threshold).')


# ----------------------------------------------------------------------------- contours and shape

def contour_features(mask: np.ndarray, min_area: float = 0.0) -> list[dict]:
    """Outer contours of the non-zero regions of a mask, with area >= min_area, ordered top to bottom then left
    to right (by their bounding box's y, then x). Each is a dict:

      contour      (N, 1, 2) int32 points, as cv2.findContours gives them (CHAIN_APPROX_SIMPLE)
      area         cv2.contourArea: the polygon through the boundary pixels' centres (a filled n x n square
                   of pixels has area (n - 1)^2, not n^2)
      perimeter    cv2.arcLength(closed=True)
      circularity  4 pi area / perimeter^2: 1 for a true circle, pi/4 for a square (0 when perimeter is 0)
      bbox         cv2.boundingRect (x, y, w, h): w and h count pixels, so n for an n-pixel-wide shape
      center, radius  cv2.minEnclosingCircle
      hull_area    area of cv2.convexHull; solidity = area / hull_area (1 for convex shapes, 0 if hull_area is 0)
    """
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {getattr(mask, 'shape', type(mask))}; threshold an "
                         "image first, e.g. cv2.threshold(gray, 0, 255, cv2.THRESH_OTSU)")
    binary = (mask > 0).astype(np.uint8)
    # TODO [contours]: findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE); one dict of features per contour; filter, sort.
    raise NotImplementedError('TODO [contours]: findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE); one dict of features per contour; filter, sort.')


def match_shapes(a: np.ndarray, b: np.ndarray, method: int = 1) -> float:
    """Distance between two contours from their Hu moments, equal to cv2.matchShapes(a, b, method, 0):

      method 1 (CONTOURS_MATCH_I1): sum_i |1/m_a,i - 1/m_b,i|
      method 2 (CONTOURS_MATCH_I2): sum_i |m_a,i - m_b,i|
      method 3 (CONTOURS_MATCH_I3): max_i |m_a,i - m_b,i| / |m_a,i|

    with m = sign(h) log10 |h| of the Hu moments h, and only over the i where both |h_a,i| and |h_b,i| exceed
    1e-5 (OpenCV skips the rest, which are noise for symmetric shapes). 0 means the same shape.
    """
    if method not in (1, 2, 3):
        raise ValueError(f"method must be 1, 2 or 3 (cv2.CONTOURS_MATCH_I1..I3), got {method}")
    # TODO [match-shapes]: Hu moments of both (cv2.moments, cv2.HuMoments), keep |h| > 1e-5 in both, log-scale, combine.
    raise NotImplementedError('TODO [match-shapes]: Hu moments of both (cv2.moments, cv2.HuMoments), keep |h| > 1e-5 in both, log-scale, combine.')


# ----------------------------------------------------------------------------- Hough transforms

def rho_theta(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """The line through two points in Hough's normal form x cos(theta) + y sin(theta) = rho, with theta in
    [0, pi) (the direction of the line's normal) and rho signed, as cv2.HoughLines reports lines. The normal
    form has no infinite slope: a vertical line x = c is (rho, theta) = (c, 0)."""
    if (x1, y1) == (x2, y2):
        raise ValueError(f"a line needs two distinct points, got ({x1}, {y1}) twice")
    # TODO [hough-lines]: theta = (angle of the direction + pi/2) mod pi via arctan2; rho from either point.
    raise NotImplementedError('TODO [hough-lines]: theta = (angle of the direction + pi/2) mod pi via arctan2; rho from either point.')


def detect_lines(gray: np.ndarray, low: float = 50, high: float = 150, threshold: int = 50,
                 min_length: int = 40, max_gap: int = 10) -> np.ndarray:
    """Line segments (N, 4) int as x1, y1, x2, y2: GaussianBlur 5x5 (sigma 1), cv2.Canny(low, high), then the
    probabilistic Hough transform cv2.HoughLinesP at 1 pixel and 1 degree resolution with `threshold` votes,
    segments of at least `min_length` pixels and gaps up to `max_gap` bridged. (0, 4) when there are none."""
    _check_image(gray)
    # TODO [hough-lines]: Blur, Canny, HoughLinesP(edges, 1, np.pi / 180, ...); it returns None or (N, 1, 4).
    raise NotImplementedError('TODO [hough-lines]: Blur, Canny, HoughLinesP(edges, 1, np.pi / 180, ...); it returns None or (N, 1, 4).')


def detect_circles(gray: np.ndarray, min_radius: int, max_radius: int, min_dist: float | None = None,
                   param1: float = 100, param2: float = 25) -> np.ndarray:
    """Circles (N, 3) float as x, y, r, strongest first: GaussianBlur 9x9 (sigma 2) against noise, then
    cv2.HoughCircles(HOUGH_GRADIENT, dp=1), which votes for centres along gradient directions (param1 is its
    Canny high threshold, param2 the votes a centre needs). Centres closer than min_dist are merged (default
    2 min_radius: two circles that do not overlap are at least that far apart). (0, 3) when there are none."""
    _check_image(gray)
    if not 0 < min_radius <= max_radius:
        raise ValueError(f"need 0 < min_radius <= max_radius, got {min_radius} and {max_radius}")
    # TODO [hough-circles]: Blur, HoughCircles(..., cv2.HOUGH_GRADIENT, 1, min_dist, ...); None or (1, N, 3) -> (N, 3).
    raise NotImplementedError('TODO [hough-circles]: Blur, HoughCircles(..., cv2.HOUGH_GRADIENT, 1, min_dist, ...); None or (1, N, 3) -> (N, 3).')


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


def add_gaussian_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 image plus N(0, sigma^2) noise, rounded and clipped to 0..255: rint(img + normal(0, sigma)) with the
    draws from np.random.default_rng(seed).normal(0, sigma, img.shape)."""
    # TODO [denoise-psnr]: Draw with default_rng(seed).normal, add in float, np.rint, np.clip, back to uint8.
    raise NotImplementedError('TODO [denoise-psnr]: Draw with default_rng(seed).normal, add in float, np.rint, np.clip, back to uint8.')


def compare_denoisers(clean: np.ndarray, noisy: np.ndarray, ksize: int = 3) -> dict[str, float]:
    """PSNR (dB) against the clean image of: the noisy input; a ksize x ksize Gaussian (sigma from OpenCV's size
    rule, gaussian_kernel with sigma <= 0: 0.8 for 3 x 3) rounded back to uint8; and a ksize x ksize median.
    Same footprint, so only the kind of filter differs. Keys "noisy", "gaussian", "median"."""
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy images differ in shape: {clean.shape} vs {noisy.shape}")
    # TODO [denoise-psnr]: gaussian_blur(noisy, ksize, 0) -> rint/clip/uint8; median_blur(noisy, ksize); psnr each.
    raise NotImplementedError('TODO [denoise-psnr]: gaussian_blur(noisy, ksize, 0) -> rint/clip/uint8; median_blur(noisy, ksize); psnr each.')


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


# Scenes with known answers for the demo: shapes, lines and circles drawn with OpenCV, plus a little noise.
SHAPES = {  # name -> polygon (or None for the disc), drawn filled on a 200 x 200 canvas
    "square": np.array([[40, 40], [100, 40], [100, 100], [40, 100]]),
    "triangle": np.array([[100, 30], [160, 150], [40, 150]]),
    "L": np.array([[50, 30], [80, 30], [80, 130], [150, 130], [150, 160], [50, 160]]),
    "disc": None,
}
SCENE_LINES = [((20, 30), (300, 60)), ((30, 215), (140, 95)), ((260, 100), (260, 225)), ((170, 190), (230, 120))]
SCENE_CIRCLES = [(70, 70, 30), (200, 150, 45), (270, 50, 20)]


def draw_shape(name: str, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A 200 x 200 uint8 mask of one shape from SHAPES, rotated by `angle` degrees and scaled about the centre."""
    mask = np.zeros((200, 200), np.uint8)
    if SHAPES[name] is None:
        cv2.circle(mask, (100, 100), round(60 * scale), 255, -1)
        return mask
    rotation = cv2.getRotationMatrix2D((100.0, 100.0), angle, scale)
    points = SHAPES[name] @ rotation[:, :2].T + rotation[:, 2]
    cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 255)
    return mask


def hough_scene(seed: int = 0, noise: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Two 240 x 320 gray scenes: SCENE_LINES drawn 2 px wide, and SCENE_CIRCLES filled, on a level-40
    background with N(0, noise^2) pixel noise."""
    rng = np.random.default_rng(seed)
    lines, circles = np.full((240, 320), 40, np.uint8), np.full((240, 320), 40, np.uint8)
    for p, q in SCENE_LINES:
        cv2.line(lines, p, q, 200, 2)
    for x, y, r in SCENE_CIRCLES:
        cv2.circle(circles, (x, y), r, 170, -1)
    noisy = [np.clip(np.rint(im + rng.normal(0, noise, im.shape)), 0, 255).astype(np.uint8) for im in (lines, circles)]
    return noisy[0], noisy[1]


def step_edge(seed: int = 0, noise: float = 10.0) -> np.ndarray:
    """A 64 x 64 float32 vertical step, 60 on columns 0-31 and 180 on 32-63, plus N(0, noise^2)."""
    rng = np.random.default_rng(seed)
    step = np.where(np.arange(64) < 32, 60.0, 180.0)[None, :].repeat(64, axis=0)
    return (step + rng.normal(0, noise, step.shape)).astype(np.float32)


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

    # --- median vs Gaussian: which noise each one is for (same 3 x 3 footprint)
    print("denoising, PSNR in dB (3x3 Gaussian vs 3x3 median):")
    for label, noisy_img in [("salt and pepper 5%", add_salt_pepper(gray, 0.05)),
                             ("salt and pepper 10%", add_salt_pepper(gray, 0.10)),
                             ("Gaussian sigma 20", add_gaussian_noise(gray, 20)),
                             ("Gaussian sigma 30", add_gaussian_noise(gray, 30))]:
        scores = compare_denoisers(gray, noisy_img, 3)
        print(f"  {label:20s} noisy {scores['noisy']:5.2f}  gaussian {scores['gaussian']:5.2f}  "
              f"median {scores['median']:5.2f}  median - gaussian {scores['median'] - scores['gaussian']:+.2f}")

    # --- bilateral: smooths like a Gaussian inside regions, keeps the step
    step = step_edge()
    bil, gau = bilateral_filter(step, 9, 40, 3), cv2.GaussianBlur(step, (9, 9), 3)
    jump = {name: float(np.median(x[:, 32] - x[:, 31])) for name, x in [("input", step), ("bilateral", bil),
                                                                        ("gaussian", gau)]}
    flat = {name: float(x[:, 5:25].std()) for name, x in [("input", step), ("bilateral", bil), ("gaussian", gau)]}
    print(f"step 60 -> 180 with noise 10: jump across the edge {jump['input']:.1f} in, bilateral(9, 40, 3) "
          f"{jump['bilateral']:.1f}, Gaussian 9x9 sigma 3 {jump['gaussian']:.1f}; noise std on the flat side "
          f"{flat['input']:.1f} -> {flat['bilateral']:.1f} / {flat['gaussian']:.1f}")
    photo_bil = bilateral_filter(f, 9, 40, 3)
    print(f"bilateral_filter vs cv2.bilateralFilter on the photo: max |diff| "
          f"{np.abs(photo_bil - cv2.bilateralFilter(f, 9, 40, 3)).max():.1e}")

    # --- Laplacian of Gaussian and its zero crossings
    log = log_filter(gray, 2.0)
    k = 2 * int(np.ceil(3 * 2.0)) + 1
    ref_log = cv2.Laplacian(cv2.GaussianBlur(gray.astype(np.float64), (k, k), 2.0), cv2.CV_64F, ksize=1)
    crossings = zero_crossings(log, threshold=4.0)
    print(f"LoG (sigma 2) vs cv2.Laplacian(GaussianBlur): max |diff| {np.abs(log - ref_log).max():.1e}; "
          f"{crossings.sum()} zero crossings (threshold 4), F1 vs Canny {edge_f1(crossings, theirs):.2f}")
    _show(out / "bilateral_log.png", [("noisy step", step), ("bilateral 9, 40, 3", bil), ("Gaussian 9x9 sigma 3", gau),
                                     ("bilateral on the photo", photo_bil), ("LoG sigma 2", log),
                                     ("LoG zero crossings", crossings)])

    # --- contours and shape descriptors
    print("contours of drawn shapes (area, perimeter, circularity 4 pi A / P^2, solidity; matchShapes I1 "
          "to the same shape rotated 30 deg and scaled 0.7):")
    for name in SHAPES:
        shape = contour_features(draw_shape(name))[0]
        turned = contour_features(draw_shape(name, 30, 0.7))[0]
        print(f"  {name:8s} area {shape['area']:7.1f}  perimeter {shape['perimeter']:6.1f}  circularity "
              f"{shape['circularity']:.3f}  solidity {shape['solidity']:.3f}  match I1 "
              f"{match_shapes(shape['contour'], turned['contour']):.4f}")
    names = list(SHAPES)
    contours_of = {n: contour_features(draw_shape(n))[0]["contour"] for n in names}
    print("  I1 between different shapes: " + ", ".join(
        f"{a}/{b} {match_shapes(contours_of[a], contours_of[b]):.3f}" for i, a in enumerate(names) for b in names[i + 1:]))
    coins = load_gray("coins", args.size)
    coin_mask = (coins > cv2.threshold(coins, 0, 255, cv2.THRESH_OTSU)[0]).astype(np.uint8)
    coin_mask = cv2.morphologyEx(coin_mask, cv2.MORPH_OPEN, se)
    blobs = contour_features(coin_mask, min_area=100)
    round_ones = [b for b in blobs if b["circularity"] > 0.8]
    print(f"coins, Otsu mask opened: {len(blobs)} blobs of area >= 100, {len(round_ones)} with circularity > 0.8")

    # --- Hough lines and circles on drawn scenes
    line_img, circle_img = hough_scene()
    segments = detect_lines(line_img)
    circles = detect_circles(circle_img, 10, 60)
    print(f"HoughLinesP: {len(segments)} segments for {len(SCENE_LINES)} drawn lines; (rho, theta) of the drawn "
          "lines: " + ", ".join(f"({r:.1f}, {np.degrees(t):.1f} deg)" for r, t in
                                (rho_theta(*p, *q) for p, q in SCENE_LINES)))
    print(f"HoughCircles: found {np.round(circles).astype(int).tolist()}, drawn {SCENE_CIRCLES}")
    _draw_hough_and_contours(out / "hough_contours.png", line_img, segments, circle_img, circles, coins, blobs)
    print(f"figures in {out}")


def _draw_hough_and_contours(path, line_img, segments, circle_img, circles, coins, blobs) -> None:
    lines_rgb = cv2.cvtColor(line_img, cv2.COLOR_GRAY2RGB)
    for x1, y1, x2, y2 in segments:
        cv2.line(lines_rgb, (int(x1), int(y1)), (int(x2), int(y2)), (255, 0, 0), 1)
    circles_rgb = cv2.cvtColor(circle_img, cv2.COLOR_GRAY2RGB)
    for x, y, r in circles:
        cv2.circle(circles_rgb, (round(x), round(y)), round(r), (255, 0, 0), 2)
        cv2.circle(circles_rgb, (round(x), round(y)), 2, (255, 0, 0), -1)
    coins_rgb = cv2.cvtColor(coins, cv2.COLOR_GRAY2RGB)
    for blob in blobs:
        colour = (0, 255, 0) if blob["circularity"] > 0.8 else (255, 160, 0)
        cv2.drawContours(coins_rgb, [blob["contour"]], -1, colour, 1)
        x, y, w, h = blob["bbox"]
        cv2.rectangle(coins_rgb, (x, y), (x + w - 1, y + h - 1), (0, 120, 255), 1)
    _show(path, [("HoughLinesP segments", lines_rgb), ("HoughCircles", circles_rgb),
                 ("coin contours (green: circularity > 0.8)", coins_rgb)], cols=3)


if __name__ == "__main__":
    labkit.run(main)
