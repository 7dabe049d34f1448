"""Harris, matching and RANSAC from scratch vs OpenCV, same inputs, same run.

    python bench.py [--size 512] [--repeats 5]

Harris on the astronaut photo (gray, size x size); matching on 1000 SIFT / ORB descriptors of the photo and a
warped copy; RANSAC on those matches. Median of `repeats` runs after a warm-up. ratio = ours / OpenCV.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

import labkit
from labkit.bench import median_ms

lab = labkit.load_impl("cv-engineer/phase-01-classical-cv-opencv/lab-03-feature-detection", "solution")


def cv2_ratio(d1, d2, norm):
    return [m[0] for m in cv2.BFMatcher(norm).knnMatch(d1, d2, k=2)
            if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    gray = lab.load_gray("astronaut", args.size)
    f32 = gray.astype(np.float32)
    h_true = lab.random_homography(gray.shape[1], gray.shape[0])
    warped = cv2.warpPerspective(gray, h_true, gray.shape[::-1])
    rows = [("harris_response (block 2)", lambda: lab.harris_response(gray, 2, 0.04),
             "cv2.cornerHarris", lambda: cv2.cornerHarris(f32, 2, 3, 0.04)),
            ("harris_corners (+ NMS r=3)", lambda: lab.harris_corners(gray, max_corners=500),
             "goodFeaturesToTrack(Harris)", lambda: cv2.goodFeaturesToTrack(
                 gray, 500, 0.01, 3, blockSize=2, useHarrisDetector=True, k=0.04))]
    for method, norm in (("sift", cv2.NORM_L2), ("orb", cv2.NORM_HAMMING)):
        kp1, d1 = lab.detect_and_describe(gray, method, 1000)
        kp2, d2 = lab.detect_and_describe(warped, method, 1000)
        rows.append((f"ratio_match {method} {len(d1)}x{len(d2)}", lambda d1=d1, d2=d2: lab.ratio_match(d1, d2),
                     "BFMatcher.knnMatch k=2", lambda d1=d1, d2=d2, n=norm: cv2_ratio(d1, d2, n)))
        if method == "sift":
            pairs = lab.ratio_match(d1, d2)
            p1 = np.float64([kp1[i].pt for i in pairs[:, 0]])
            p2 = np.float64([kp2[j].pt for j in pairs[:, 1]])
            rows.append((f"ransac_homography ({len(p1)} pts)", lambda: lab.ransac_homography(p1, p2, 3.0),
                         "cv2.findHomography RANSAC", lambda: cv2.findHomography(p1, p2, cv2.RANSAC, 3.0)))
    print(f"astronaut {gray.shape}, median of {args.repeats} runs, OpenCV on 1 thread")
    print(f"{'ours (NumPy)':<34}{'ms':>9} | {'OpenCV':<30}{'ms':>8} | {'ratio':>7}")
    for name, ours, base_name, base in rows:
        a, b = median_ms(ours, args.repeats), median_ms(base, args.repeats)
        print(f"{name:<34}{a:9.2f} | {base_name:<30}{b:8.2f} | {a / b:6.1f}x")
    print("ratio = ours / OpenCV (above 1: the NumPy version is that many times slower)")


if __name__ == "__main__":
    main()
