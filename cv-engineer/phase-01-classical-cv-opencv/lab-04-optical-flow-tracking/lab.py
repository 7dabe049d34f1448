"""Lab 04 · Optical flow and tracking: Lucas-Kanade from scratch (single level and coarse-to-fine), Farneback
dense flow, and a constant-velocity Kalman filter, each measured against motion we generated ourselves.

Ground truth by construction: a real photo shifted by a known sub-pixel (dx, dy) with cv2.warpAffine, so every
pixel's true flow is (dx, dy); and a simulated trajectory whose true positions we keep while the tracker only
sees noisy measurements.

Brightness constancy: I(x, y, t) = I(x + u, y + v, t + 1). A first-order Taylor expansion gives
Ix u + Iy v + It = 0: one equation, two unknowns (the aperture problem). Lucas-Kanade assumes (u, v) is constant
in a window and solves the window's equations by least squares: G d = b with
G = sum [[Ix^2, Ix Iy], [Ix Iy, Iy^2]] (the Harris matrix) and b = sum [Ix, Iy] (I - J).

Shapes: images (H, W) float; points (N, 2) as (x, y); flow (N, 2) or dense (H, W, 2) as (dx, dy).

Run it:  python solution.py [--size 192] [--steps 150]
Outputs: outputs/.../sparse_flow.png, dense_flow.png, kalman.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import cv2
import matplotlib
import numpy as np
import skimage.data
from tqdm import tqdm

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


# ----------------------------------------------------------------------------- generated motion

def textured_image(name: str = "astronaut", size: int = 192) -> np.ndarray:
    """A real photo (gray float32, size x size), lightly blurred so the Taylor expansion holds locally."""
    if name not in ("astronaut", "camera", "brick", "coffee", "chelsea", "coins"):
        raise ValueError(f"unknown image {name!r}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(img, (5, 5), 1.0)


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image moved by (dx, dy) pixels: out(x, y) = img(x - dx, y - dy), so a point at p moves to p + d."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def moving_square_video(n_frames: int = 12, size: int = 128, velocity=(2.0, 1.0), seed: int = 0):
    """Frames (uint8) of a textured square gliding over a static noise background, plus the true
    per-frame displacement (dx, dy) and each frame's square mask."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (7, 7), 2)
    patch = cv2.GaussianBlur(rng.uniform(0, 255, (32, 32)).astype(np.float32), (3, 3), 1)
    frames, masks = [], []
    for t in range(n_frames):
        x, y = 20 + velocity[0] * t, 30 + velocity[1] * t
        m = np.float32([[1, 0, x], [0, 1, y]])
        placed = cv2.warpAffine(patch, m, (size, size), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.ones_like(patch), m, (size, size), flags=cv2.INTER_LINEAR)
        frames.append(np.clip(background * (1 - mask) + placed, 0, 255).astype(np.uint8))
        masks.append(mask > 0.5)
    return frames, np.asarray(velocity, float), masks


# ----------------------------------------------------------------------------- Lucas-Kanade

def bilinear_sample(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Image values at real-valued positions (any shape), bilinear, with coordinates clamped to the image
    (replicated border). Equals scipy.ndimage.map_coordinates(img, [ys, xs], order=1, mode="nearest")."""
    # TODO [bilinear]: Clamp, split into integer corner + fraction, blend the 4 neighbours by area.
    raise NotImplementedError('TODO [bilinear]: Clamp, split into integer corner + fraction, blend the 4 neighbours by area.')


def lucas_kanade(prev: np.ndarray, nxt: np.ndarray, points: np.ndarray, win: int = 15, iters: int = 20,
                 eps: float = 0.01, min_eig: float = 1e-2, init: np.ndarray | None = None):
    """Iterative single-level Lucas-Kanade for every point at once.

    For each point p: the template is prev in a win x win window around p, with gradients (Ix, Iy) from central
    differences; G (2x2) is their structure tensor. Starting from d = init (or 0), repeat: sample nxt at the
    window shifted by d (bilinear), e = template - sample, d += G^-1 [sum Ix e, sum Iy e], until |step| < eps.
    Returns flow (N, 2), status (N,) bool and the normalised smallest eigenvalue of G (N,): status is False
    where that eigenvalue is below `min_eig` (flat or edge-only window: the aperture problem), or where the
    point left the image.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if win % 2 == 0 or win < 3:
        raise ValueError(f"win must be odd and >= 3, got {win}")
    if prev.shape != nxt.shape or prev.ndim != 2:
        raise ValueError(f"prev and nxt must be gray images of the same shape, got {prev.shape} and {nxt.shape}")
    # TODO [lk]: Window offsets (win^2,), sample template/gradients once, build G per point; then Gauss-Newton on d.
    raise NotImplementedError('TODO [lk]: Window offsets (win^2,), sample template/gradients once, build G per point; then Gauss-Newton on d.')


def pyramid_lucas_kanade(prev: np.ndarray, nxt: np.ndarray, points: np.ndarray, levels: int = 3, win: int = 15,
                         **kwargs):
    """Coarse-to-fine LK: solve at the coarsest pyramid level (cv2.pyrDown halves the image each level), double
    the flow, use it as the starting guess one level finer, and so on. A 16 px motion is 2 px at level 3.
    Returns flow (N, 2) and status (N,) at full resolution."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    # TODO [pyramid-lk]: Build both pyramids; from the top: LK with points / 2^l and init = 2 * previous flow.
    raise NotImplementedError('TODO [pyramid-lk]: Build both pyramids; from the top: LK with points / 2^l and init = 2 * previous flow.')


# ----------------------------------------------------------------------------- dense flow

def farneback_flow(prev: np.ndarray, nxt: np.ndarray, **overrides) -> np.ndarray:
    """Dense flow (H, W, 2) float32 with cv2.calcOpticalFlowFarneback (uint8 frames, this lab's parameters:
    3 pyramid levels at scale 0.5, 15 px averaging window, polynomial expansion over 5x5 with sigma 1.1)."""
    params = dict(FARNEBACK, **overrides)
    # TODO [dense-flow]: Convert both frames to uint8 and call cv2.calcOpticalFlowFarneback(prev, next, None, **params).
    raise NotImplementedError('TODO [dense-flow]: Convert both frames to uint8 and call cv2.calcOpticalFlowFarneback(prev, next, None, **params).')


def endpoint_error(flow: np.ndarray, truth: np.ndarray, margin: int = 0) -> float:
    """Mean end-point error: the average length of (flow - truth), ignoring `margin` pixels at each border of a
    dense field (borders have no valid neighbours after a shift). `truth` is (2,) or the flow's shape."""
    flow = np.asarray(flow, np.float64)
    # TODO [dense-flow]: Broadcast truth, crop the margin of dense fields, average the Euclidean norm.
    raise NotImplementedError('TODO [dense-flow]: Broadcast truth, crop the margin of dense fields, average the Euclidean norm.')


def flow_to_bgr(flow: np.ndarray) -> np.ndarray:
    """The usual flow picture: hue = direction (OpenCV hue = degrees / 2; right is red, down is 90 degrees
    because image y points down), full saturation, value = magnitude scaled so the largest is 255."""
    # TODO [dense-flow]: Angle in degrees in [0, 360) with arctan2(dy, dx), magnitude min-max scaled, HSV -> BGR.
    raise NotImplementedError('TODO [dense-flow]: Angle in degrees in [0, 360) with arctan2(dy, dx), magnitude min-max scaled, HSV -> BGR.')


# ----------------------------------------------------------------------------- Kalman filter

def constant_velocity_model(dt: float, accel_std: float, meas_std: float):
    """Matrices of a 2-D constant-velocity model, state [x, y, vx, vy], measurement [x, y]:

    F = [[I, dt I], [0, I]]; H = [I, 0]; R = meas_std^2 I; Q from white-noise acceleration a ~ N(0, accel_std^2)
    acting over one step: per axis accel_std^2 [[dt^4/4, dt^3/2], [dt^3/2, dt^2]] (position gets a dt^2/2,
    velocity a dt). Returns F (4, 4), H (2, 4), Q (4, 4), R (2, 2), all float64.
    """
    if dt <= 0 or accel_std < 0 or meas_std <= 0:
        raise ValueError(f"need dt > 0, accel_std >= 0, meas_std > 0; got {dt}, {accel_std}, {meas_std}")
    # TODO [kalman-model]: F and H from blocks of the 2x2 identity; Q = accel_std^2 G G^T with G = [dt^2/2 I; dt I].
    raise NotImplementedError('TODO [kalman-model]: F and H from blocks of the 2x2 identity; Q = accel_std^2 G G^T with G = [dt^2/2 I; dt I].')


class KalmanTracker:
    """A linear Kalman filter: predict with the motion model, correct with each measurement.

    predict:  x = F x;  P = F P F^T + Q
    update:   y = z - H x;  S = H P H^T + R;  K = P H^T S^-1;  x = x + K y;  P = (I - K H) P
    """

    def __init__(self, f, h, q, r, x0, p0):
        self.f, self.h, self.q, self.r = (np.asarray(m, np.float64) for m in (f, h, q, r))
        self.x = np.asarray(x0, np.float64).reshape(-1).copy()
        self.p = np.asarray(p0, np.float64).copy()
        if self.f.shape != (len(self.x),) * 2 or self.p.shape != self.f.shape:
            raise ValueError(f"F {self.f.shape} and P0 {self.p.shape} must be square with the state size {len(self.x)}")

    def predict(self) -> np.ndarray:
        # TODO [kalman]: Propagate the mean with F and the covariance with F P F^T + Q.
        raise NotImplementedError('TODO [kalman]: Propagate the mean with F and the covariance with F P F^T + Q.')

    def update(self, z) -> np.ndarray:
        # TODO [kalman]: Innovation, its covariance S, gain K = P H^T S^-1 (solve, do not invert), then correct x and P.
        raise NotImplementedError('TODO [kalman]: Innovation, its covariance S, gain K = P H^T S^-1 (solve, do not invert), then correct x and P.')


def simulate_trajectory(steps: int = 150, dt: float = 1.0, accel_std: float = 0.05, meas_std: float = 3.0,
                        seed: int = 0):
    """True positions (steps, 2) of a target moving with small random accelerations, and noisy measurements."""
    rng = np.random.default_rng(seed)
    state = np.array([20.0, 40.0, 1.5, 0.8])
    f, _, _, _ = constant_velocity_model(dt, accel_std, meas_std)
    g = np.vstack([0.5 * dt * dt * np.eye(2), dt * np.eye(2)])
    truth = []
    for _ in range(steps):
        state = f @ state + g @ rng.normal(0, accel_std, 2)
        truth.append(state[:2].copy())
    truth = np.array(truth)
    return truth, truth + rng.normal(0, meas_std, truth.shape)


def track(measurements: np.ndarray, dt: float = 1.0, accel_std: float = 0.05, meas_std: float = 3.0) -> np.ndarray:
    """Filtered positions (steps, 2): start at the first measurement with zero velocity and a wide covariance."""
    f, h, q, r = constant_velocity_model(dt, accel_std, meas_std)
    x0 = np.array([*measurements[0], 0.0, 0.0])
    kf = KalmanTracker(f, h, q, r, x0, np.diag([meas_std ** 2, meas_std ** 2, 100.0, 100.0]))
    out = [x0[:2]]
    for z in measurements[1:]:
        kf.predict()
        out.append(kf.update(z)[:2])
    return np.array(out)


# ----------------------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Lucas-Kanade, Farneback and a Kalman tracker on generated motion.")
    parser.add_argument("--size", type=int, default=192, help="side of the test image in pixels")
    parser.add_argument("--dx", type=float, default=1.3)
    parser.add_argument("--dy", type=float, default=-0.7)
    parser.add_argument("--steps", type=int, default=150, help="Kalman simulation length")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)
    truth = np.array([args.dx, args.dy])

    prev = textured_image("astronaut", args.size)
    nxt = shift_image(prev, args.dx, args.dy)
    corners = cv2.goodFeaturesToTrack(prev.astype(np.uint8), maxCorners=100, qualityLevel=0.05, minDistance=7)
    pts = corners.reshape(-1, 2).astype(np.float64)
    pts = pts[(pts.min(1) > 12) & (pts.max(1) < args.size - 13)]
    flow, ok, _ = lucas_kanade(prev, nxt, pts)
    cv_next, cv_status, _ = cv2.calcOpticalFlowPyrLK(prev.astype(np.uint8), nxt.astype(np.uint8),
                                                     pts.astype(np.float32), None, winSize=(15, 15), maxLevel=0)
    cv_flow = cv_next.reshape(-1, 2) - pts
    print(f"shift ({args.dx}, {args.dy}) px, {len(pts)} corners")
    print(f"  our LK:          EPE {endpoint_error(flow[ok], truth):.3f} px ({ok.sum()} tracked)")
    both = ok & (cv_status.ravel() == 1)
    print(f"  cv2 LK level 0:  EPE {endpoint_error(cv_flow[both], truth):.3f} px; "
          f"ours vs cv2 {endpoint_error(flow[both], cv_flow[both]):.3f} px")

    big = (9.0, -6.5)
    far = shift_image(prev, *big)
    single, ok1, _ = lucas_kanade(prev, far, pts)
    pyramid, ok3 = pyramid_lucas_kanade(prev, far, pts, levels=3)
    print(f"large shift {big}: single-level EPE {endpoint_error(single, big):.2f} px, "
          f"3-level pyramid EPE {endpoint_error(pyramid[ok3], big):.3f} px")

    dense = farneback_flow(prev, nxt)
    print(f"Farneback {dense.shape}: EPE {endpoint_error(dense, truth, margin=16):.3f} px (16 px border ignored)")

    frames, velocity, masks = moving_square_video()
    video_flow = farneback_flow(frames[4], frames[5])
    moving = np.hypot(video_flow[..., 0], video_flow[..., 1]) > 1.0
    iou = (moving & masks[4]).sum() / max((moving | masks[4]).sum(), 1)
    print(f"moving square: Farneback inside the square EPE {endpoint_error(video_flow[masks[4]], velocity):.2f} px, "
          f"|flow| > 1 vs square mask IoU {iou:.2f}")

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    axes[0].imshow(prev, cmap="gray")
    axes[0].quiver(pts[ok, 0], pts[ok, 1], flow[ok, 0], flow[ok, 1], color="lime", angles="xy",
                   scale_units="xy", scale=0.1)
    axes[0].set_title(f"LK flow x10 (true {args.dx}, {args.dy})")
    axes[1].imshow(flow_to_bgr(dense)[..., ::-1])
    axes[1].set_title("Farneback, HSV coding (uniform shift)")
    axes[2].imshow(flow_to_bgr(video_flow)[..., ::-1])
    axes[2].set_title("Farneback on the moving square")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "dense_flow.png", dpi=80)
    plt.close(fig)

    truth_xy, measured = simulate_trajectory(args.steps)
    filtered = np.empty_like(measured)
    f, h, q, r = constant_velocity_model(1.0, 0.05, 3.0)
    kf = KalmanTracker(f, h, q, r, [*measured[0], 0, 0], np.diag([9.0, 9.0, 100.0, 100.0]))
    filtered[0] = measured[0]
    for t in tqdm(range(1, args.steps), desc="kalman", leave=False):
        kf.predict()
        filtered[t] = kf.update(measured[t])[:2]
    rmse = lambda a: float(np.sqrt(((a - truth_xy) ** 2).sum(1).mean()))  # noqa: E731
    print(f"Kalman over {args.steps} steps, measurement noise 3 px per axis: measured RMSE {rmse(measured):.2f} px, "
          f"filtered RMSE {rmse(filtered):.2f} px")
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(*truth_xy.T, "k-", label="truth")
    ax.plot(*measured.T, ".", color="tab:red", ms=3, label=f"measured (RMSE {rmse(measured):.2f})")
    ax.plot(*filtered.T, "-", color="tab:blue", label=f"Kalman (RMSE {rmse(filtered):.2f})")
    ax.invert_yaxis()
    ax.legend()
    ax.set_title("constant-velocity Kalman filter")
    fig.tight_layout()
    fig.savefig(out / "kalman.png", dpi=80)
    plt.close(fig)
    print(f"figures in {out}")


if __name__ == "__main__":
    labkit.run(main)
