"""2-D correlation four ways on a real gray photograph (skimage's camera), timed side by side in one run:

  loops      a Python double loop over output pixels, one small NumPy product per pixel (the naive way)
  im2col     this lab's correlate2d: unroll windows into a matrix, one matrix-vector product
  scipy      scipy.signal.correlate2d (direct C loops)
  cv2        cv2.filter2D (SIMD; switches to a DFT for kernels of 11 x 11 and larger)

All four compute the same 'valid' output (checked here before timing). Ratios are relative to the loops.

    python bench.py [--sizes 64 128 256] [--kernels 3 7 15] [--repeats 3]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import skimage.data
from scipy import signal

import labkit
from labkit.bench import best_seconds

lab = labkit.load_impl("cv-engineer/phase-00-foundations/lab-02-numpy-matplotlib", "solution")


def correlate_loops(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape
    out = np.empty((gray.shape[0] - kh + 1, gray.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(gray[i:i + kh, j:j + kw] * kernel)
    return out


def correlate_cv2_valid(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape
    full = cv2.filter2D(gray, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT_101)
    return full[kh // 2: gray.shape[0] - kh // 2, kw // 2: gray.shape[1] - kw // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 7, 15])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    camera = skimage.data.camera().astype(np.float64)
    rng = np.random.default_rng(0)
    print(f"{'image':>9} {'kernel':>7} | {'loops ms':>9} | {'im2col ms':>9} {'x loops':>8} | {'scipy ms':>9} "
          f"{'x loops':>8} | {'cv2 ms':>8} {'x loops':>8} | {'cv2 vs im2col':>13}")
    for size in args.sizes:
        gray = cv2.resize(camera, (size, size), interpolation=cv2.INTER_AREA)
        for k in args.kernels:
            kernel = rng.standard_normal((k, k))
            ref = signal.correlate2d(gray, kernel, mode="valid")
            for name, out in [("im2col", lab.correlate2d(gray, kernel)), ("cv2", correlate_cv2_valid(gray, kernel))]:
                assert np.allclose(out, ref, atol=1e-8), f"{name} disagrees with scipy"
            t_loop = best_seconds(lambda: correlate_loops(gray, kernel), 1)
            t_im2col = best_seconds(lambda: lab.correlate2d(gray, kernel), args.repeats)
            t_scipy = best_seconds(lambda: signal.correlate2d(gray, kernel, mode="valid"), args.repeats)
            t_cv2 = best_seconds(lambda: correlate_cv2_valid(gray, kernel), args.repeats)
            print(f"{size:>4}x{size:<4} {k:>3}x{k:<3} | {1e3 * t_loop:9.2f} | {1e3 * t_im2col:9.3f} "
                  f"{t_loop / t_im2col:7.0f}x | {1e3 * t_scipy:9.3f} {t_loop / t_scipy:7.0f}x | "
                  f"{1e3 * t_cv2:8.3f} {t_loop / t_cv2:7.0f}x | {t_im2col / t_cv2:12.1f}x")


if __name__ == "__main__":
    main()
