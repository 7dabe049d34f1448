"""Lab 05 checks: projection and Rodrigues against OpenCV, corners against the true projections of the
rendered board, calibration recovering the camera we defined (K within 1%, RMS < 0.5 px), Zhang's closed form on
exact homographies, undistortion against cv2.undistortPointsIter and straight lines, PnP against the true pose."""
import cv2
import numpy as np
import pytest

N_VIEWS = 10


@pytest.fixture(scope="module")
def camera(impl):
    return impl.TRUE_K.copy(), impl.TRUE_DIST.copy()


@pytest.fixture(scope="module")
def views(impl):
    return impl.synthesize_views(N_VIEWS, seed=3)


@pytest.fixture(scope="module")
def calibration(impl, views):
    return impl.calibrate(views[0])


def true_corners(impl, rvec, tvec, k, dist):
    obj = impl.board_points()
    return cv2.projectPoints(obj, rvec, tvec, k, dist)[0].reshape(-1, 2)


@pytest.mark.task("rodrigues")
def test_rodrigues_matches_opencv(impl):
    rng = np.random.default_rng(0)
    for rvec in [np.zeros(3), np.array([0, 0, np.pi / 2]), *rng.normal(0, 1.2, (6, 3))]:
        got, want = np.asarray(impl.rodrigues(rvec)), cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
        assert np.allclose(got, want, atol=1e-12), f"rvec {np.round(rvec, 3)}: expected\n{want}\ngot\n{got}"


@pytest.mark.task("project")
def test_project_points_matches_opencv(impl, camera):
    k, dist = camera
    rng = np.random.default_rng(0)
    obj = np.c_[rng.uniform(-3, 3, (50, 2)), rng.uniform(-1, 1, 50)]
    for rvec, tvec, d in [(np.array([0.1, -0.2, 0.3]), np.array([0.5, -0.2, 9.0]), dist),
                          (np.array([-0.4, 0.3, 0.0]), np.array([0.0, 0.0, 12.0]), np.array([0.1, -0.05, 0.002, 0.001, 0.01])),
                          (np.zeros(3), np.array([0.0, 0.0, 10.0]), np.zeros(5))]:
        got = np.asarray(impl.project_points(obj, rvec, tvec, k, d))
        want = cv2.projectPoints(obj, rvec, tvec, k, d)[0].reshape(-1, 2)
        assert got.shape == (50, 2) and np.abs(got - want).max() < 1e-6, \
            f"expected cv2.projectPoints within 1e-6 px, max gap {np.abs(got - want).max():.2e}"


@pytest.mark.task("detect-corners")
def test_corners_land_on_the_true_projections(impl, views, camera):
    images, poses = views
    k, dist = camera
    found, errors = 0, []
    for image, (rvec, tvec) in zip(images[:5], poses[:5]):
        corners = impl.find_corners(image)
        if corners is None:
            continue
        found += 1
        truth = true_corners(impl, rvec, tvec, k, dist)
        err = min(np.linalg.norm(corners - truth, axis=1).mean(), np.linalg.norm(corners[::-1] - truth, axis=1).mean())
        assert err < 0.2, f"corners should sit within 0.2 px of the true projections on average, got {err:.3f} px"
        errors.append(err)
    assert found == 5, f"the board should be found in all 5 rendered views, found in {found}"
    # measured: 0.065 px with cornerSubPix, 0.094 px with findChessboardCorners' own corners
    assert np.mean(errors) < 0.08, \
        f"sub-pixel refinement should bring the mean corner error over 5 views below 0.08 px, got {np.mean(errors):.3f}"
    assert impl.find_corners(np.full((240, 320), 128, np.uint8)) is None, "a blank image has no board: expected None"


@pytest.mark.task("detect-corners")
def test_calibration_recovers_the_camera(impl, calibration, camera):
    """fx, fy, cx, cy within 1% of the camera that rendered the views; RMS reprojection error below 0.5 px."""
    k_true, dist_true = camera
    k = calibration["K"]
    assert len(calibration["used"]) == N_VIEWS, f"expected the board in all {N_VIEWS} views, got {len(calibration['used'])}"
    for name, got, want in zip(("fx", "fy", "cx", "cy"), (k[0, 0], k[1, 1], k[0, 2], k[1, 2]),
                               (k_true[0, 0], k_true[1, 1], k_true[0, 2], k_true[1, 2])):
        assert abs(got - want) < 0.01 * want, f"{name}: expected {want} within 1%, got {got:.2f}"
    assert calibration["rms"] < 0.5, f"expected RMS reprojection error < 0.5 px, got {calibration['rms']:.3f}"
    assert abs(calibration["dist"][0] - dist_true[0]) < 0.02, \
        f"k1: expected {dist_true[0]} within 0.02, got {calibration['dist'][0]:.4f}"


@pytest.mark.task("reprojection")
def test_reprojection_rms_equals_calibratecamera(impl, camera):
    k_true, dist_true = camera
    rng = np.random.default_rng(0)
    obj = impl.board_points().astype(np.float32)
    objs, imgs = [], []
    for rvec, tvec in impl.random_poses(6, seed=2):       # exact projections + 0.2 px noise
        img = cv2.projectPoints(obj, rvec, tvec, k_true, dist_true)[0].reshape(-1, 2) + rng.normal(0, 0.2, (len(obj), 2))
        objs.append(obj)
        imgs.append(img.astype(np.float32))
    ret = cv2.calibrateCamera(objs, imgs, (320, 240), None, None, flags=cv2.CALIB_FIX_K3)
    c = {"rms": ret[0], "K": ret[1], "dist": ret[2].ravel(), "rvecs": [r.ravel() for r in ret[3]],
         "tvecs": [t.ravel() for t in ret[4]], "obj": objs, "img_points": imgs}
    rms, per_view = impl.reprojection_errors(c["obj"], c["img_points"], c["rvecs"], c["tvecs"], c["K"], c["dist"])
    assert abs(rms - c["rms"]) < 1e-4, f"expected the RMS cv2.calibrateCamera reports ({c['rms']:.6f}), got {rms:.6f}"
    assert len(per_view) == len(c["obj"]) and min(per_view) <= rms <= max(per_view), \
        f"per-view RMS should bracket the overall RMS {rms:.4f}: got {np.round(per_view, 4)}"


@pytest.mark.task("reprojection")
def test_reprojection_hand_case(impl):
    k = np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
    obj = [np.array([[0.0, 0, 0], [1, 0, 0]])]
    img = [np.array([[53.0, 54.0], [60.0, 50.0]])]     # projections are (50, 50) and (60, 50): errors 5 and 0
    rms, per_view = impl.reprojection_errors(obj, img, [np.zeros(3)], [np.array([0.0, 0, 10])], k, np.zeros(5))
    assert abs(rms - np.sqrt(12.5)) < 1e-9, f"errors 5 px and 0 px: expected RMS sqrt(12.5) = 3.5355, got {rms:.4f}"


@pytest.mark.task("zhang")
def test_zhang_closed_form_on_exact_homographies(impl, camera):
    k_true, _ = camera
    obj = impl.board_points()
    homographies = []
    for rvec, tvec in impl.random_poses(5, seed=1):
        img = cv2.projectPoints(obj, rvec, tvec, k_true, np.zeros(5))[0].reshape(-1, 2)
        homographies.append(cv2.findHomography(obj[:, :2], img, 0)[0])
    k = np.asarray(impl.zhang_intrinsics(homographies))
    assert np.allclose(k, k_true, rtol=1e-3, atol=0.1), f"expected K\n{k_true}\nfrom noise-free views, got\n{k.round(3)}"


@pytest.mark.task("zhang")
def test_zhang_closed_form_recovers_a_skewed_camera(impl):
    """H = K [r1 r2 t] built directly (no projection code) for a camera with an exaggerated skew of 20, so that
    every term of the closed form (gamma, the gamma v0 / beta part of u0, B12 in beta) matters."""
    k_true = np.array([[300.0, 20.0, 162.0], [0.0, 305.0, 118.0], [0.0, 0.0, 1.0]])
    homographies = []
    for rvec, tvec in impl.random_poses(5, seed=4):
        r = cv2.Rodrigues(rvec)[0]
        h = k_true @ np.column_stack([r[:, 0], r[:, 1], tvec])
        homographies.append(h / h[2, 2])
    k = np.asarray(impl.zhang_intrinsics(homographies))
    assert np.allclose(k, k_true, rtol=1e-4, atol=0.05), f"expected K\n{k_true}\nfrom exact homographies, got\n{k.round(3)}"


@pytest.mark.task("undistort")
def test_undistort_points_matches_opencv(impl, camera):
    k, dist = camera
    rng = np.random.default_rng(0)
    pts = rng.uniform([5, 5], [315, 235], (200, 2))
    got = np.asarray(impl.undistort_points(pts, k, dist))
    want = cv2.undistortPointsIter(pts[:, None], k, dist, None, k,
                                   (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)).reshape(-1, 2)
    assert np.abs(got - want).max() < 1e-3, f"expected cv2.undistortPointsIter within 1e-3 px, max gap " \
                                            f"{np.abs(got - want).max():.2e}"
    back = cv2.projectPoints(np.c_[(got - k[:2, 2]) / np.diag(k)[:2], np.ones(len(got))], np.zeros(3), np.zeros(3),
                             k, dist)[0].reshape(-1, 2)
    assert np.abs(back - pts).max() < 0.01, f"re-distorting should give the input back within 0.01 px, " \
                                            f"max gap {np.abs(back - pts).max():.2e}"


@pytest.mark.task("undistort")
def test_undistortion_straightens_a_projected_line(impl, camera):
    k, dist = camera
    line = np.c_[np.linspace(-4.5, 4.5, 25), np.full(25, 2.6), np.zeros(25)]     # a straight 3-D line
    pts = cv2.projectPoints(line, np.array([0.05, -0.1, 0.02]), np.array([0.0, 0.0, 7.0]), k, dist)[0].reshape(-1, 2)
    before = impl.line_residual(pts)
    after = impl.line_residual(np.asarray(impl.undistort_points(pts, k, dist)))
    assert before > 1.0 and after < 0.01, \
        f"a straight line bent by the lens: expected residual > 1 px before and < 0.01 px after, got " \
        f"{before:.3f} and {after:.4f}"


@pytest.mark.task("pose")
def test_rotation_error_hand_cases(impl):
    assert abs(impl.rotation_error_deg(np.zeros(3), np.array([0, 0, np.radians(10)])) - 10) < 1e-9, \
        "a 10 degree turn about z should give 10 degrees"
    a = np.array([0.3, -0.2, 0.5])
    assert impl.rotation_error_deg(a, a) < 1e-5, "the same rotation should give 0"
    assert abs(impl.rotation_error_deg(np.zeros(3), np.array([np.pi, 0, 0])) - 180) < 1e-6, "a half turn is 180 degrees"
    # R^T R rounds to a trace a hair above 3 for about a quarter of random rotations: the cosine must be clipped
    for rvec in np.random.default_rng(0).normal(0, 1.5, (20, 3)):
        err = impl.rotation_error_deg(rvec, rvec)
        assert np.isfinite(err) and err < 1e-5, f"rotation {np.round(rvec, 3)} against itself: expected 0, got {err}"


@pytest.mark.task("pose")
def test_pnp_recovers_the_true_pose_with_outliers(impl, views, camera):
    """20% of the detected corners moved by up to 40 px: rotation within 0.5 degrees, translation within 1%."""
    images, poses = views
    k, dist = camera
    rng = np.random.default_rng(0)
    obj = impl.board_points()
    for index in (0, 4):
        rvec_true, tvec_true = poses[index]
        img = true_corners(impl, rvec_true, tvec_true, k, dist) + rng.normal(0, 0.1, (len(obj), 2))
        bad = rng.permutation(len(obj))[:len(obj) // 5]
        img[bad] += rng.uniform(15, 40, (len(bad), 2)) * rng.choice([-1, 1], (len(bad), 2))
        rvec, tvec, inliers = impl.estimate_pose(obj, img, k, dist)
        rot = impl.rotation_error_deg(rvec, rvec_true)
        trans = np.linalg.norm(np.ravel(tvec) - tvec_true) / np.linalg.norm(tvec_true)
        assert rot < 0.5 and trans < 0.01, f"view {index}: rotation error {rot:.3f} deg (allowed 0.5), " \
                                           f"translation error {trans:.2%} (allowed 1%)"
        assert not set(bad.tolist()) & set(np.ravel(inliers).tolist()), "corrupted corners should not be inliers"


@pytest.mark.task("pose")
def test_pnp_keeps_every_corner_of_a_board_filling_the_frame(impl, camera):
    """Near the image border the lens moves corners by several pixels: RANSAC must judge reprojections with the
    distortion model, or good corners fall outside the 2 px threshold (7 of 35 here)."""
    k, dist = camera
    obj = impl.board_points()
    rvec_true = np.array([0.2, -0.25, 0.05])
    tvec_true = np.array([0.0, 0.0, 7.0]) - cv2.Rodrigues(rvec_true)[0] @ np.array([4.0, 3.0, 0.0])
    img = true_corners(impl, rvec_true, tvec_true, k, dist) + np.random.default_rng(1).normal(0, 0.1, (len(obj), 2))
    rvec, tvec, inliers = impl.estimate_pose(obj, img, k, dist)
    assert len(np.ravel(inliers)) == len(obj), \
        f"all {len(obj)} corners are exact up to 0.1 px noise: expected all inliers, got {len(np.ravel(inliers))}"
    assert impl.rotation_error_deg(rvec, rvec_true) < 0.2, "the pose should match the true rotation within 0.2 degrees"


def test_image_undistortion_straightens_board_rows(impl, views):
    """Not graded (only OpenCV calls): after cv2.undistort with the true model, the board's rows are straighter."""
    images, _ = views
    k, dist = impl.TRUE_K, impl.TRUE_DIST
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH + cv2.CALIB_CB_NORMALIZE_IMAGE
    rows_before, rows_after = [], []
    for image in images[:4]:
        for img, store in ((image, rows_before), (cv2.undistort(image, k, dist), rows_after)):
            ok, c = cv2.findChessboardCorners(img, impl.PATTERN, flags=flags)
            assert ok, "the board should be found before and after undistortion"
            c = cv2.cornerSubPix(img, c, (5, 5), (-1, -1), impl.SUBPIX).reshape(impl.PATTERN[1], impl.PATTERN[0], 2)
            store += [impl.line_residual(row) for row in c]
    assert np.mean(rows_after) < 0.5 * np.mean(rows_before), \
        f"rows should be straighter after cv2.undistort: {np.mean(rows_before):.3f} -> {np.mean(rows_after):.3f} px"
