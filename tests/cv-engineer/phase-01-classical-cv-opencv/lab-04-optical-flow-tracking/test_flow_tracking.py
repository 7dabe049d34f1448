"""Lab 04 checks: flow on a real photo shifted by a known sub-pixel amount (end-point error against the truth
and against cv2.calcOpticalFlowPyrLK), bilinear sampling against SciPy, the flow picture against OpenCV's
cartToPolar pipeline, and the Kalman filter against cv2.KalmanFilter and a simulated trajectory."""
import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data


@pytest.fixture(scope="module")
def photo():
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(img, (5, 5), 1.0)


def shifted(img, dx, dy):
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def corners(photo):
    pts = cv2.goodFeaturesToTrack(photo.astype(np.uint8), 60, 0.05, 7).reshape(-1, 2).astype(np.float64)
    return pts[(pts.min(1) > 12) & (pts.max(1) < 115)]


def epe(flow, truth):
    return float(np.linalg.norm(np.asarray(flow, np.float64) - truth, axis=-1).mean())


@pytest.mark.task("bilinear")
def test_bilinear_matches_map_coordinates(impl, photo):
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-3, 131, (7, 9)), rng.uniform(-3, 131, (7, 9))  # some outside: clamped
    got = np.asarray(impl.bilinear_sample(photo, xs, ys))
    want = ndi.map_coordinates(photo.astype(np.float64), [ys, xs], order=1, mode="nearest")
    assert got.shape == xs.shape and np.allclose(got, want, atol=1e-6), \
        f"expected scipy's map_coordinates(order=1, nearest) values, max gap {np.abs(got - want).max():.2e}"
    grid = np.asarray(impl.bilinear_sample(photo, np.array([5.0, 127.0]), np.array([9.0, 127.0])))
    assert np.allclose(grid, [photo[9, 5], photo[127, 127]]), "integer positions (including the last pixel) " \
                                                               "must return the pixel itself"


@pytest.mark.task("lk")
@pytest.mark.parametrize("dx,dy", [(1.3, -0.7), (-0.4, 0.9), (2.0, 1.5)])
def test_lk_recovers_a_known_shift(impl, photo, corners, dx, dy):
    flow, status, _ = impl.lucas_kanade(photo, shifted(photo, dx, dy), corners)
    status = np.asarray(status, bool)
    assert np.asarray(flow).shape == corners.shape, f"expected flow of shape {corners.shape}, got {np.shape(flow)}"
    assert status.mean() > 0.9, f"expected >90% of corners tracked, got {status.mean():.0%}"
    err = epe(np.asarray(flow)[status], [dx, dy])
    assert err < 0.15, f"shift ({dx}, {dy}): expected mean end-point error < 0.15 px, got {err:.3f}"


@pytest.mark.task("lk")
def test_lk_agrees_with_opencv_single_level(impl, photo, corners):
    nxt = shifted(photo, 1.3, -0.7)
    flow, status, _ = impl.lucas_kanade(photo, nxt, corners)
    moved, cv_status, _ = cv2.calcOpticalFlowPyrLK(photo.astype(np.uint8), nxt.astype(np.uint8),
                                                  corners.astype(np.float32), None, winSize=(15, 15), maxLevel=0)
    both = np.asarray(status, bool) & (cv_status.ravel() == 1)
    gap = epe(np.asarray(flow)[both], moved.reshape(-1, 2)[both] - corners[both])
    assert both.mean() > 0.9 and gap < 0.1, \
        f"expected mean distance < 0.1 px from cv2.calcOpticalFlowPyrLK(maxLevel=0), got {gap:.3f} on {both.sum()} pts"


@pytest.mark.task("lk")
def test_lk_flags_the_aperture_problem(impl):
    img = np.zeros((64, 64), np.float32)
    img[:, 32:] = 200
    img = cv2.GaussianBlur(img, (7, 7), 1.5)
    img[40:, 20:44] = cv2.GaussianBlur(np.full((24, 24), 80, np.float32), (3, 3), 1)  # a block with corners
    img = cv2.GaussianBlur(img, (5, 5), 1.0)
    pts = np.array([[32.0, 15.0], [10.0, 10.0], [20.0, 40.0]])  # on the straight edge, in a flat area, a corner
    _, status, eig = impl.lucas_kanade(img, shifted(img, 1.0, 0.5), pts)
    status = np.asarray(status, bool).tolist()
    assert status == [False, False, True], \
        f"expected [edge, flat, corner] -> [False, False, True] (smallest eigenvalue {np.round(eig, 4)}), got {status}"


@pytest.mark.task("lk")
def test_lk_eigenvalue_is_the_normalised_minimum_of_the_structure_tensor(impl, photo):
    pts = np.array([[40.0, 50.0], [70.0, 30.0], [90.0, 96.0]])       # integer positions: no interpolation
    _, _, eig = impl.lucas_kanade(photo, photo, pts, win=9)
    gy, gx = np.gradient(photo.astype(np.float64))                    # central differences (rows first)
    want = []
    for x, y in pts.astype(int):
        wx, wy = gx[y - 4:y + 5, x - 4:x + 5].ravel(), gy[y - 4:y + 5, x - 4:x + 5].ravel()
        g = np.array([[wx @ wx, wx @ wy], [wx @ wy, wy @ wy]])
        want.append(np.linalg.eigvalsh(g)[0] / 81)                     # smallest eigenvalue / window area
    assert np.allclose(eig, want, rtol=1e-6), f"expected min eig(G) / win^2 = {np.round(want, 4)}, got {np.round(eig, 4)}"


@pytest.mark.task("lk")
def test_lk_flags_points_that_leave_the_image(impl, photo):
    edge = np.array([[127.0, y] for y in range(20, 110, 10)])         # on the last column, moving right by 2 px
    flow, status, _ = impl.lucas_kanade(photo, shifted(photo, 2.0, 0.5), edge)
    status = np.asarray(status, bool)
    assert not status.any(), \
        f"points moved past x = 127 are lost and must have status False; got True at {np.flatnonzero(status).tolist()}"


@pytest.mark.task("lk")
def test_lk_iterates_until_every_point_converges(impl, photo, corners):
    """Half the points start at the true flow (converged at once), half at zero: the others still need their
    iterations, so stopping when the first point converges leaves them about 1 px short."""
    dx, dy = 2.5, -1.5
    init = np.zeros_like(corners)
    init[::2] = [dx, dy]
    flow, status, _ = impl.lucas_kanade(photo, shifted(photo, dx, dy), corners, init=init)
    status = np.asarray(status, bool)
    err = epe(np.asarray(flow)[1::2][status[1::2]], [dx, dy])
    assert err < 0.15, f"points started from zero: expected EPE < 0.15 px, got {err:.3f}"


@pytest.mark.task("pyramid-lk")
def test_pyramid_handles_large_motion(impl, photo, corners):
    dx, dy = 9.0, -6.5
    nxt = shifted(photo, dx, dy)
    flow, status = impl.pyramid_lucas_kanade(photo, nxt, corners, levels=3)
    status = np.asarray(status, bool)
    err = epe(np.asarray(flow)[status], [dx, dy])
    assert status.mean() > 0.8 and err < 0.2, \
        f"({dx}, {dy}) with 3 levels: expected EPE < 0.2 px on >80% of points, got {err:.3f} on {status.mean():.0%}"
    flat, _ = impl.pyramid_lucas_kanade(photo, nxt, corners, levels=0)
    assert epe(flat, [dx, dy]) > 2.0, "a single level should fail on a ~11 px motion (that is what the pyramid is for)"


@pytest.mark.task("dense-flow")
def test_farneback_recovers_a_uniform_shift(impl, photo):
    dx, dy = 1.3, -0.7
    flow = impl.farneback_flow(photo, shifted(photo, dx, dy))
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32, \
        f"expected (H, W, 2) float32 flow, got {flow.dtype} {flow.shape}"
    inner = flow[16:-16, 16:-16]
    assert epe(inner, [dx, dy]) < 0.2, f"expected Farneback EPE < 0.2 px inside a 16 px margin, got {epe(inner, [dx, dy]):.3f}"
    got = impl.endpoint_error(flow, np.array([dx, dy]), margin=16)
    assert abs(got - epe(inner, [dx, dy])) < 1e-6, f"endpoint_error: expected {epe(inner, [dx, dy]):.6f}, got {got:.6f}"


@pytest.mark.task("dense-flow")
def test_endpoint_error_hand_case(impl):
    flow = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert abs(impl.endpoint_error(flow, np.array([0.0, 0.0])) - 2.5) < 1e-12, "mean of lengths 5 and 0 is 2.5"
    dense, truth = np.zeros((6, 6, 2)), np.full((6, 6, 2), 100.0)
    truth[1:-1, 1:-1] = [3.0, 4.0]                                   # the border of the truth is junk
    got = impl.endpoint_error(dense, truth, margin=1)
    assert abs(got - 5.0) < 1e-12, f"with margin 1 both fields lose their border: expected 5.0, got {got}"


@pytest.mark.task("dense-flow")
@pytest.mark.parametrize("spread,offset", [(3.0, (0.0, 0.0)), (1.0, (6.0, -2.0))])  # the second: |flow| >= ~2
def test_flow_picture_matches_opencv_recipe(impl, spread, offset):
    rng = np.random.default_rng(0)
    flow = (rng.normal(0, spread, (40, 50, 2)) + offset).astype(np.float32)
    mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    hsv = np.zeros((40, 50, 3), np.uint8)
    hsv[..., 0] = np.rint(ang / 2).astype(np.uint8) % 180
    hsv[..., 1] = 255
    hsv[..., 2] = cv2.normalize(mag, None, 0, 255, cv2.NORM_MINMAX).round().astype(np.uint8)
    want = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    got = impl.flow_to_bgr(flow)
    assert got.shape == want.shape and got.dtype == np.uint8, f"expected uint8 {want.shape}, got {got.dtype} {got.shape}"
    gap = np.abs(got.astype(int) - want)
    assert np.mean(gap <= 6) > 0.99, f"colours should match the cartToPolar/normalize recipe; " \
                                     f"{np.mean(gap > 6):.1%} of channels differ by more than 6 levels"


@pytest.mark.task("kalman-model")
def test_constant_velocity_matrices(impl):
    f, h, q, r = impl.constant_velocity_model(0.5, 2.0, 3.0)
    assert np.allclose(f @ [1, 2, 3, 4], [2.5, 4.0, 3.0, 4.0]), f"F should advance x by vx dt: got {f @ [1, 2, 3, 4]}"
    assert np.allclose(h @ [1, 2, 3, 4], [1, 2]), "H should read out the position"
    assert np.allclose(r, 9 * np.eye(2)), f"R should be meas_std^2 I, got {r}"
    # accel_std^2 = 4: var(x) = 4 dt^4/4 = 0.0625, cov(x, vx) = 4 dt^3/2 = 0.25, var(vx) = 4 dt^2 = 1
    assert np.allclose(q[[0, 0, 2], [0, 2, 2]], [0.0625, 0.25, 1.0]) and np.allclose(q[0, 1], 0), \
        f"Q per axis should be 4 * [[dt^4/4, dt^3/2], [dt^3/2, dt^2]]; got\n{q}"
    assert np.allclose(q, q.T) and np.linalg.eigvalsh(q).min() > -1e-12, "Q must be symmetric positive semi-definite"


@pytest.mark.task("kalman")
def test_kalman_equals_cv2_kalmanfilter(impl):
    f, h, q, r = impl.constant_velocity_model(1.0, 0.3, 2.0)
    rng = np.random.default_rng(0)
    zs = np.cumsum(rng.normal(1, 2, (40, 2)), axis=0)
    x0, p0 = np.array([0.0, 0.0, 0.0, 0.0]), np.eye(4) * 10
    ref = cv2.KalmanFilter(4, 2)
    ref.transitionMatrix, ref.measurementMatrix = f.astype(np.float32), h.astype(np.float32)
    ref.processNoiseCov, ref.measurementNoiseCov = q.astype(np.float32), r.astype(np.float32)
    ref.statePost, ref.errorCovPost = x0.reshape(4, 1).astype(np.float32), p0.astype(np.float32)
    ours = impl.KalmanTracker(f, h, q, r, x0, p0)
    for t, z in enumerate(zs):
        a, b = np.asarray(ours.predict()), ref.predict().ravel()
        assert np.allclose(a, b, rtol=1e-4, atol=1e-3), f"step {t}: predicted state {a} vs cv2 {b}"
        a, b = np.asarray(ours.update(z)), ref.correct(z.reshape(2, 1).astype(np.float32)).ravel()
        assert np.allclose(a, b, rtol=1e-4, atol=1e-3), f"step {t}: corrected state {a} vs cv2 {b}"
    assert np.allclose(ours.p, ref.errorCovPost, rtol=1e-3, atol=1e-4), "posterior covariance differs from cv2's"


@pytest.mark.task("kalman")
def test_kalman_beats_the_measurement_noise(impl):
    truth, measured = impl.simulate_trajectory(200, 1.0, 0.05, 3.0, seed=1)
    filtered = impl.track(measured, 1.0, 0.05, 3.0)
    rmse = lambda a: float(np.sqrt(((a - truth) ** 2).sum(1).mean()))  # noqa: E731
    assert rmse(filtered) < 3.0 and rmse(filtered) < 0.6 * rmse(measured), \
        f"expected filtered RMSE below the 3 px noise and below 60% of the measured RMSE ({rmse(measured):.2f}), " \
        f"got {rmse(filtered):.2f}"
