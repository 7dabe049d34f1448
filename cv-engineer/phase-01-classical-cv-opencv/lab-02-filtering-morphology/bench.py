"""From-scratch NumPy filters vs OpenCV, same image, same run.

    python bench.py [--size 512] [--repeats 7]

Each row times one operation on the camera photo (gray, size x size): the median of `repeats` runs after a
warm-up, for this lab's function and for the OpenCV call the tests compare it with. ratio = ours / OpenCV.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

import labkit
from labkit.bench import median_ms

lab = labkit.load_impl("cv-engineer/phase-01-classical-cv-opencv/lab-02-filtering-morphology", "solution")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core for both sides; OpenCV would otherwise parallelise some filters

    gray = lab.load_gray("camera", args.size)
    f32 = gray.astype(np.float32)
    smooth = cv2.GaussianBlur(gray, (5, 5), 1.0)
    kernel5 = np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32)
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    rows = [
        ("correlate2d 5x5", lambda: lab.correlate2d(f32, kernel5), "cv2.filter2D (float32)",
         lambda: cv2.filter2D(f32, cv2.CV_32F, kernel5)),
        ("gaussian_blur 9x9 separable", lambda: lab.gaussian_blur(f32, 9, 2.0), "cv2.GaussianBlur (float32)",
         lambda: cv2.GaussianBlur(f32, (9, 9), 2.0)),
        ("median_blur 5x5", lambda: lab.median_blur(gray, 5), "cv2.medianBlur (uint8)",
         lambda: cv2.medianBlur(gray, 5)),
        ("sobel 3x3 (gx, gy)", lambda: lab.sobel(f32), "cv2.Sobel x2 (float32)",
         lambda: (cv2.Sobel(f32, cv2.CV_32F, 1, 0), cv2.Sobel(f32, cv2.CV_32F, 0, 1))),
        ("canny (50, 150)", lambda: lab.canny(smooth, 50, 150), "cv2.Canny (uint8)",
         lambda: cv2.Canny(smooth, 50, 150)),
        ("erode ellipse 5x5", lambda: lab.erode(gray, ellipse), "cv2.erode (uint8)",
         lambda: cv2.erode(gray, ellipse)),
        ("morphology open 5x5", lambda: lab.morphology(gray, "open", ellipse), "cv2.morphologyEx OPEN",
         lambda: cv2.morphologyEx(gray, cv2.MORPH_OPEN, ellipse)),
    ]
    print(f"camera {gray.shape}, median of {args.repeats} runs, OpenCV on 1 thread")
    print(f"{'ours (NumPy)':<30}{'ms':>9} | {'OpenCV':<28}{'ms':>8} | {'ratio':>8}")
    for name, ours, base_name, base in rows:
        a, b = median_ms(ours, args.repeats), median_ms(base, args.repeats)
        print(f"{name:<30}{a:9.2f} | {base_name:<28}{b:8.3f} | {a / b:7.0f}x")
    print("ratio = ours / OpenCV (how many times slower the NumPy version is)")


if __name__ == "__main__":
    main()
