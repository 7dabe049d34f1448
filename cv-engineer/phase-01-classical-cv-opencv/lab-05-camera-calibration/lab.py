"""Lab 05 · Camera calibration and pose: render checkerboard views from a camera we define (intrinsics K, lens
distortion, board poses), then get all of it back: corners with findChessboardCorners + cornerSubPix, K and the
distortion with calibrateCamera and with Zhang's closed form, undistortion that straightens the board's lines,
and the board's pose with solvePnPRansac.

Pinhole model with distortion (OpenCV's, coefficients k1, k2, p1, p2, k3):
    X_c = R X + t                          board point -> camera frame (R from the Rodrigues vector rvec)
    x, y = X_c / Z_c,  r^2 = x^2 + y^2     normalised image plane
    x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y (1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y^2) + 2 p2 x y
    u = fx x_d + cx,  v = fy y_d + cy       pixels

Board units are squares (one square = 1.0), so translations are in squares too.

Run it:  python solution.py [--views 12] [--seed 0]
Outputs: outputs/.../views.png, undistortion.png, pose_axes.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
from functools import lru_cache

import cv2
import matplotlib
import numpy as np

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

IMAGE_SIZE = (320, 240)          # (width, height), OpenCV's order
PATTERN = (7, 5)                 # inner corners per row, per column: a board of 8 x 6 squares
TRUE_K = np.array([[300.0, 0.0, 162.0], [0.0, 305.0, 118.0], [0.0, 0.0, 1.0]])
TRUE_DIST = np.array([-0.25, 0.08, 0.001, -0.0008, 0.0])     # k1, k2, p1, p2, k3: visible barrel distortion
SUBPIX = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)


# ----------------------------------------------------------------------------- synthetic views

def board_points(pattern: tuple[int, int] = PATTERN) -> np.ndarray:
    """(N, 3) inner-corner coordinates on the board plane Z = 0, row by row (findChessboardCorners' order):
    (1, 1, 0), (2, 1, 0), ..., (cols, rows, 0)."""
    cols, rows = pattern
    return np.array([[x, y, 0.0] for y in range(1, rows + 1) for x in range(1, cols + 1)])


def random_poses(n: int, pattern: tuple[int, int] = PATTERN, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """n board poses (rvec, tvec): tilted up to about 30 degrees, 9-12 squares away, roughly centred."""
    rng = np.random.default_rng(seed)
    centre = np.array([(pattern[0] + 1) / 2, (pattern[1] + 1) / 2, 0.0])
    poses = []
    for _ in range(n):
        rvec = rng.uniform(-0.5, 0.5, 3) * np.array([1.0, 1.0, 0.4])
        rotation = cv2.Rodrigues(rvec)[0]
        tvec = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.0, 1.0), rng.uniform(9, 12)]) - rotation @ centre
        poses.append((rvec, tvec))
    return poses


@lru_cache(maxsize=4)
def _pixel_corner_rays(k_key: tuple, dist_key: tuple, size: tuple[int, int]) -> np.ndarray:
    """Normalised undistorted coordinates (H+1, W+1, 2) of every pixel corner: where each corner 'looks'."""
    width, height = size
    xs, ys = np.meshgrid(np.arange(width + 1) - 0.5, np.arange(height + 1) - 0.5)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)[:, None].astype(np.float64)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    k, dist = np.array(k_key).reshape(3, 3), np.array(dist_key)
    return cv2.undistortPointsIter(pts, k, dist, None, None, criteria).reshape(height + 1, width + 1, 2)


def render_view(k: np.ndarray, dist: np.ndarray, rvec: np.ndarray, tvec: np.ndarray,
                size: tuple[int, int] = IMAGE_SIZE, pattern: tuple[int, int] = PATTERN, supersample: int = 4):
    """Ray-trace a checkerboard (with a one-square white border, on a gray background) as seen by the camera.

    Each pixel corner's ray is intersected with the board plane through the inverse of the plane-to-image
    homography [r1 r2 t]; board coordinates inside a pixel are interpolated from its corners, shaded at
    supersample^2 points and averaged (anti-aliasing, so corners can be located to a fraction of a pixel).
    """
    rays = _pixel_corner_rays(tuple(np.ravel(k)), tuple(np.ravel(dist)), tuple(size))
    rotation = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
    to_board = np.linalg.inv(np.column_stack([rotation[:, 0], rotation[:, 1], np.ravel(tvec)]))
    homog = rays[..., :1] * to_board[:, 0] + rays[..., 1:] * to_board[:, 1] + to_board[:, 2]
    behind = homog[..., 2] <= 0
    board = homog[..., :2] / np.where(behind, 1.0, homog[..., 2])[..., None]      # (H+1, W+1, 2)
    cols, rows = pattern[0] + 1, pattern[1] + 1                                    # squares
    total = np.zeros(board.shape[:2] - np.array([1, 1]))
    offsets = (np.arange(supersample) + 0.5) / supersample
    for fy in offsets:
        for fx in offsets:
            b = (board[:-1, :-1] * (1 - fx) * (1 - fy) + board[:-1, 1:] * fx * (1 - fy)
                 + board[1:, :-1] * (1 - fx) * fy + board[1:, 1:] * fx * fy)
            bx, by = b[..., 0], b[..., 1]
            shade = np.where((bx >= -1) & (bx <= cols + 1) & (by >= -1) & (by <= rows + 1), 235.0, 90.0)
            dark = (bx >= 0) & (bx < cols) & (by >= 0) & (by < rows) & ((np.floor(bx) + np.floor(by)) % 2 == 0)
            total += np.where(dark, 20.0, shade)
    img = total / supersample ** 2
    img[behind[:-1, :-1]] = 90.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def synthesize_views(n: int = 12, seed: int = 0, k: np.ndarray = TRUE_K, dist: np.ndarray = TRUE_DIST):
    """n rendered views of the board and their true poses [(rvec, tvec), ...]."""
    poses = random_poses(n, seed=seed)
    return [render_view(k, dist, r, t) for r, t in poses], poses


# ----------------------------------------------------------------------------- projection

def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) from an axis-angle vector: angle = |rvec|, axis = rvec / angle,
    R = I + sin(angle) [k]x + (1 - cos(angle)) [k]x^2 (Rodrigues' formula); the identity for angle 0."""
    rvec = np.asarray(rvec, np.float64).reshape(-1)
    if rvec.shape != (3,):
        raise ValueError(f"rvec must have 3 elements, got {rvec.shape}")
    # TODO [rodrigues]: Angle = norm; skew-symmetric matrix of the unit axis; plug into the formula.
    raise NotImplementedError('TODO [rodrigues]: Angle = norm; skew-symmetric matrix of the unit axis; plug into the formula.')


def project_points(obj: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, k: np.ndarray,
                   dist: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) points -> (N, 2) pixels with the model in the module docstring (what cv2.projectPoints does)."""
    obj = np.asarray(obj, np.float64).reshape(-1, 3)
    dist = np.zeros(5) if dist is None else np.asarray(dist, np.float64).ravel()
    if dist.size < 5:
        dist = np.concatenate([dist, np.zeros(5 - dist.size)])
    # TODO [project]: Rotate and translate, divide by Z, apply radial + tangential distortion, then K.
    raise NotImplementedError('TODO [project]: Rotate and translate, divide by Z, apply radial + tangential distortion, then K.')


# ----------------------------------------------------------------------------- calibration

def find_corners(gray: np.ndarray, pattern: tuple[int, int] = PATTERN) -> np.ndarray | None:
    """Inner corners (N, 2) to sub-pixel accuracy, or None when the board is not found.

    cv2.findChessboardCorners gives pixel-level corners (flags: adaptive threshold + normalise image);
    cv2.cornerSubPix then refines each within a 5x5 half-window (11x11 px) using the fact that the gradient
    at every point near a corner is orthogonal to the vector from the corner to that point.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a gray uint8 image, got {gray.dtype} {gray.shape}")
    # TODO [detect-corners]: findChessboardCorners(gray, pattern, flags); if found, cornerSubPix(gray, corners, (5, 5), (-1, -1), SUBPIX).
    raise NotImplementedError('TODO [detect-corners]: findChessboardCorners(gray, pattern, flags); if found, cornerSubPix(gray, corners, (5, 5), (-1, -1), SUBPIX).')


def calibrate(images: list[np.ndarray], pattern: tuple[int, int] = PATTERN) -> dict:
    """Zhang's calibration with OpenCV: corners per view, then cv2.calibrateCamera (closed-form start, then
    Levenberg-Marquardt on the reprojection error). Returns rms, K, dist, rvecs, tvecs and the views used."""
    obj, img_points, used = [], [], []
    for index, image in enumerate(images):
        corners = find_corners(image, pattern)
        if corners is not None:
            obj.append(board_points(pattern).astype(np.float32))
            img_points.append(corners.astype(np.float32))
            used.append(index)
    if len(used) < 3:
        raise ValueError(f"the board was found in only {len(used)} views; calibration needs at least 3")
    size = images[0].shape[::-1]
    # k3 stays 0: with a narrow lens it only trades off against k2 (free it for wide-angle or fisheye-ish lenses)
    rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img_points, size, None, None, flags=cv2.CALIB_FIX_K3)
    return {"rms": rms, "K": k, "dist": dist.ravel(), "rvecs": [r.ravel() for r in rvecs],
            "tvecs": [t.ravel() for t in tvecs], "used": used, "obj": obj, "img_points": img_points}


def reprojection_errors(obj_points, img_points, rvecs, tvecs, k, dist) -> tuple[float, list[float]]:
    """RMS reprojection error over all points, sqrt(sum |projected - detected|^2 / N) (the number
    cv2.calibrateCamera returns), and the RMS of each view."""
    # TODO [reprojection]: project_points per view; keep the sum of squared distances and the count.
    raise NotImplementedError('TODO [reprojection]: project_points per view; keep the sum of squared distances and the count.')


def zhang_intrinsics(homographies: list[np.ndarray]) -> np.ndarray:
    """Zhang's closed-form K from >= 3 board-to-image homographies (no distortion model).

    With H = [h1 h2 h3] ~ K [r1 r2 t] and r1, r2 orthonormal: h1^T B h2 = 0 and h1^T B h1 = h2^T B h2, where
    B = K^-T K^-1 is symmetric (6 unknowns b = [B11, B12, B22, B13, B23, B33]). Each view gives two rows of
    V b = 0; b is the right singular vector of V with the smallest singular value; K follows from B in closed
    form (Zhang 2000, appendix B), including the skew gamma.
    """
    if len(homographies) < 3:
        raise ValueError(f"need at least 3 homographies (views), got {len(homographies)}")
    # TODO [zhang]: Rows v12 and v11 - v22 per H, SVD for b, then v0, lambda, alpha, beta, gamma, u0.
    raise NotImplementedError('TODO [zhang]: Rows v12 and v11 - v22 per H, SVD for b, then v0, lambda, alpha, beta, gamma, u0.')


# ----------------------------------------------------------------------------- undistortion and pose

def undistort_points(pts: np.ndarray, k: np.ndarray, dist: np.ndarray, iters: int = 20) -> np.ndarray:
    """Remove lens distortion from (N, 2) pixel coordinates; returns the ideal pinhole pixels (N, 2), as
    cv2.undistortPoints(pts, K, dist, P=K) does. The distortion has no closed-form inverse, so iterate the
    fixed point x = (x_d - tangential(x)) / radial(x), starting from x = x_d."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    dist = np.asarray(dist, np.float64).ravel()
    if dist.size < 5:
        dist = np.concatenate([dist, np.zeros(5 - dist.size)])
    # TODO [undistort]: Normalise with K^-1, iterate the fixed point, map back with fx, fy, cx, cy.
    raise NotImplementedError('TODO [undistort]: Normalise with K^-1, iterate the fixed point, map back with fx, fy, cx, cy.')


def line_residual(points: np.ndarray) -> float:
    """RMS distance (px) of points from their total-least-squares line: 0 for points on a straight line."""
    p = np.asarray(points, np.float64) - np.mean(points, axis=0)
    return float(np.linalg.svd(p, compute_uv=False)[-1] / np.sqrt(len(p)))


def rotation_error_deg(rvec_a: np.ndarray, rvec_b: np.ndarray) -> float:
    """The angle (degrees) of the rotation taking one orientation to the other: arccos((trace(Ra^T Rb) - 1) / 2)."""
    # TODO [pose]: Relative rotation Ra^T Rb; its angle from the trace (clip the cosine into [-1, 1]).
    raise NotImplementedError('TODO [pose]: Relative rotation Ra^T Rb; its angle from the trace (clip the cosine into [-1, 1]).')


def estimate_pose(obj: np.ndarray, img: np.ndarray, k: np.ndarray, dist: np.ndarray, threshold: float = 2.0):
    """6-DoF pose of a known object from 2-D detections, robust to outliers: cv2.solvePnPRansac (minimal
    samples, inliers within `threshold` px), then refined on the inliers. Returns rvec (3,), tvec (3,) and the
    inlier indices."""
    if len(obj) < 4 or len(obj) != len(img):
        raise ValueError(f"need >= 4 matching 3-D/2-D points, got {len(obj)} and {len(img)}")
    # TODO [pose]: solvePnPRansac(obj, img, K, dist, reprojectionError=threshold, iterationsCount=200, flags=SOLVEPNP_EPNP); refine with solvePnPRefineLM on the inliers.
    raise NotImplementedError('TODO [pose]: solvePnPRansac(obj, img, K, dist, reprojectionError=threshold, iterationsCount=200, flags=SOLVEPNP_EPNP); refine with solvePnPRefineLM on the inliers.')


# ----------------------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate a synthetic camera and recover its parameters.")
    parser.add_argument("--views", type=int, default=12, help="number of rendered board views")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    images, poses = synthesize_views(args.views, args.seed)
    result = calibrate(images)
    k, dist = result["K"], result["dist"]
    print(f"{len(result['used'])}/{len(images)} views with the board found, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} px")
    for name, got, true in zip(("fx", "fy", "cx", "cy"), (k[0, 0], k[1, 1], k[0, 2], k[1, 2]),
                               (TRUE_K[0, 0], TRUE_K[1, 1], TRUE_K[0, 2], TRUE_K[1, 2])):
        print(f"  {name}: true {true:7.2f}  recovered {got:7.2f}  ({(got - true) / true:+.2%})")
    print(f"  dist: true {np.round(TRUE_DIST, 4).tolist()}\n        recovered {np.round(dist, 4).tolist()}")
    rms, per_view = reprojection_errors(result["obj"], result["img_points"], result["rvecs"], result["tvecs"], k, dist)
    print(f"reprojection RMS {rms:.3f} px (cv2.calibrateCamera says {result['rms']:.3f}); worst view {max(per_view):.3f}")

    homographies = [cv2.findHomography(result["obj"][i][:, :2], undistort_points(result["img_points"][i], k, dist))[0]
                    for i in range(len(result["used"]))]
    kz = zhang_intrinsics(homographies)
    print(f"Zhang closed form on undistorted corners: fx {kz[0, 0]:.1f}, fy {kz[1, 1]:.1f}, cx {kz[0, 2]:.1f}, "
          f"cy {kz[1, 2]:.1f}, skew {kz[0, 1]:.2f}")

    view = images[0]
    rows = result["img_points"][0].reshape(PATTERN[1], PATTERN[0], 2)
    straight = undistort_points(result["img_points"][0], k, dist).reshape(PATTERN[1], PATTERN[0], 2)
    print(f"board rows, RMS distance from a straight line: distorted {np.mean([line_residual(r) for r in rows]):.3f} "
          f"px, undistorted {np.mean([line_residual(r) for r in straight]):.3f} px")
    fixed = cv2.undistort(view, k, dist)

    rng = np.random.default_rng(args.seed)
    rvec_true, tvec_true = poses[result["used"][1]]
    obj = board_points()
    img = result["img_points"][1].astype(np.float64).copy()
    bad = rng.random(len(img)) < 0.2
    img[bad] += rng.uniform(-40, 40, (bad.sum(), 2))
    rvec, tvec, inliers = estimate_pose(obj, img, k, dist)
    t_err = np.linalg.norm(tvec - tvec_true) / np.linalg.norm(tvec_true)
    print(f"solvePnPRansac with {bad.sum()} of {len(img)} corners corrupted: rotation error "
          f"{rotation_error_deg(rvec, rvec_true):.3f} deg, translation error {t_err:.3%}, {len(inliers)} inliers")

    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, image, index in zip(axes.ravel(), images, range(6)):
        ax.imshow(image, cmap="gray")
        if index in result["used"]:
            pts = result["img_points"][result["used"].index(index)]
            ax.plot(pts[:, 0], pts[:, 1], "r+", ms=5)
        ax.set_title(f"view {index}")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "views.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, image, pts, title in [(axes[0], view, rows, "distorted (rows bend)"),
                                  (axes[1], fixed, straight, "cv2.undistort (rows straight)")]:
        ax.imshow(image, cmap="gray")
        for row in pts:
            ax.plot(row[[0, -1], 0], row[[0, -1], 1], "y-", lw=0.8)
            ax.plot(row[:, 0], row[:, 1], "r.", ms=3)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "undistortion.png", dpi=80)
    plt.close(fig)

    axes_img = cv2.drawFrameAxes(cv2.cvtColor(images[result["used"][1]], cv2.COLOR_GRAY2BGR), k, dist, rvec, tvec, 3)
    cv2.imwrite(str(out / "pose_axes.png"), axes_img)
    print(f"figures in {out}")


if __name__ == "__main__":
    labkit.run(main)
