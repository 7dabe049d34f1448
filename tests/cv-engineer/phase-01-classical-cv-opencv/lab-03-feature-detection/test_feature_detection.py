"""Lab 03 checks: Harris against cv2.cornerHarris and drawn shapes with known corners, the ratio test against
cv2.BFMatcher.knnMatch, and homographies against known warps (exact points, outliers, real photos)."""
import cv2
import numpy as np
import pytest
import skimage.data


def gray_sample(name, size=192):
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    scale = size / max(img.shape)
    return cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photos():
    return {n: gray_sample(n) for n in ("astronaut", "camera", "coffee")}


def known_homography(w, h, seed):
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    dst = src + rng.uniform(-0.1, 0.1, (4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.getPerspectiveTransform(src, dst)


def corner_gap(h_est, h_true, w, h):
    corners = np.float64([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]])
    a = cv2.perspectiveTransform(corners, np.asarray(h_est, np.float64))[0]
    b = cv2.perspectiveTransform(corners, np.asarray(h_true, np.float64))[0]
    return float(np.linalg.norm(a - b, axis=1).max())


@pytest.mark.task("harris")
def test_harris_matches_cornerharris(impl, photos):
    for name, img in photos.items():
        f = img.astype(np.float32)
        for block, k in [(2, 0.04), (3, 0.05), (5, 0.06)]:
            ref = cv2.cornerHarris(f, block, 3, k).astype(np.float64)
            got = np.asarray(impl.harris_response(img, block, k))
            gap = np.abs(got - ref).max() / np.abs(ref).max()
            assert got.shape == ref.shape and gap < 1e-4, \
                f"{name} block {block} k {k}: expected cv2.cornerHarris within 1e-4 of max|R|, got {gap:.2e}"


@pytest.mark.task("harris")
def test_harris_sign_on_corner_edge_flat(impl):
    img = np.zeros((60, 60), np.uint8)
    img[20:60, 20:60] = 200                     # one corner at (20, 20), edges along x = 20 and y = 20
    r = np.asarray(impl.harris_response(img, 3, 0.04))
    assert r[19:22, 19:22].max() > 0, "R should be positive at a corner"
    assert r[40, 19:22].min() < 0, "R should be negative on a straight edge"
    assert abs(r[5, 5]) < 1e-9 and abs(r[45, 45]) < 1e-9, "R should be 0 on flat regions"


@pytest.mark.task("harris-corners")
def test_harris_finds_polygon_vertices(impl):
    img = np.full((128, 128), 40, np.uint8)
    quad = np.array([[20, 30], [100, 18], [110, 95], [35, 108]])
    cv2.fillPoly(img, [quad], 220)
    found = np.asarray(impl.harris_corners(img, 2, 0.04, 0.01, 5, max_corners=4))
    assert found.shape == (4, 2), f"expected 4 corners as (4, 2) (x, y), got shape {found.shape}"
    gaps = np.linalg.norm(quad[:, None] - found[None], axis=2).min(axis=1)
    assert gaps.max() <= 2.0, f"every drawn vertex should have a detection within 2 px; distances {gaps.round(2)}"


@pytest.mark.task("harris-corners")
def test_harris_finds_checkerboard_corners(impl):
    square, margin = 16, 16
    board = np.full((6 * square + 2 * margin,) * 2, 230, np.uint8)
    for i in range(6):
        for j in range(6):
            if (i + j) % 2 == 0:
                board[margin + i * square:margin + (i + 1) * square, margin + j * square:margin + (j + 1) * square] = 30
    found = np.asarray(impl.harris_corners(board))
    lattice = np.array([[margin + square * i - 0.5, margin + square * j - 0.5] for i in range(7) for j in range(7)])
    inner = lattice.reshape(7, 7, 2)[1:-1, 1:-1].reshape(-1, 2)
    stray = np.linalg.norm(found[:, None] - lattice[None], axis=2).min(axis=1)
    missed = np.linalg.norm(inner[:, None] - found[None], axis=2).min(axis=1)
    assert stray.max() <= 2.5, f"a detection lies {stray.max():.1f} px from every square corner (allowed 2.5)"
    assert missed.max() <= 1.0, f"an inner corner has no detection within 1 px (nearest {missed.max():.2f} px)"


def reference_corners(img, radius, rel_threshold):
    """Brute force on cv2.cornerHarris: pixels that are the maximum of their (2r + 1)^2 window and above
    rel_threshold * max(R), strongest first."""
    r = cv2.cornerHarris(img.astype(np.float32), 2, 3, 0.04).astype(np.float64)
    k = 2 * radius + 1
    window_max = np.lib.stride_tricks.sliding_window_view(
        np.pad(r, radius, constant_values=-np.inf), (k, k)).max(axis=(2, 3))
    ys, xs = np.nonzero((r >= window_max) & (r > rel_threshold * r.max()))
    order = np.argsort(-r[ys, xs], kind="stable")
    return [(int(x), int(y)) for x, y in zip(xs[order], ys[order])]


@pytest.mark.task("harris-corners")
def test_harris_corners_equal_brute_force_on_photos(impl, photos):
    for name, img in photos.items():
        want = reference_corners(img, 3, 0.01)
        got = [tuple(p) for p in np.asarray(impl.harris_corners(img, 2, 0.04, 0.01, 3)).tolist()]
        # float32 (OpenCV) vs float64 responses may flip a near-tie; a wrong window or threshold changes many
        assert len(set(got) ^ set(want)) <= 1, \
            f"{name}: expected the {len(want)} window maxima above 1% of max R, got {len(got)}; " \
            f"{len(set(got) ^ set(want))} differ (a corner survives only if no stronger response lies within " \
            f"3 px in any direction)"
        assert got[:5] == want[:5], f"{name}: strongest first: expected {want[:5]}, got {got[:5]}"


def cv2_ratio_pairs(d1, d2, norm, ratio):
    pairs = set()
    for m in cv2.BFMatcher(norm).knnMatch(d1, d2, k=2):
        if len(m) == 2 and m[0].distance < ratio * m[1].distance:
            pairs.add((m[0].queryIdx, m[0].trainIdx))
    return pairs


@pytest.mark.task("ratio-match")
def test_distances_match_bfmatcher(impl, photos):
    img = photos["astronaut"]
    for method, norm in [("orb", cv2.NORM_HAMMING), ("sift", cv2.NORM_L2)]:
        _, d = impl.detect_and_describe(img, method, 200)
        got = np.asarray(impl.pairwise_distances(d[:50], d[50:120]))
        ref = np.array([[m.distance for m in row] for row in
                        cv2.BFMatcher(norm).knnMatch(d[:50], d[50:120], k=70)])
        assert got.shape == (50, 70), f"expected (50, 70) distances, got {got.shape}"
        assert np.allclose(np.sort(got, axis=1), ref, atol=1e-2), \
            f"{method}: sorted distances differ from cv2.BFMatcher by up to {np.abs(np.sort(got, 1) - ref).max():.3f}"


@pytest.mark.task("ratio-match")
def test_ratio_match_equals_bfmatcher_knn(impl, photos):
    img = photos["coffee"]
    warped = cv2.warpPerspective(img, known_homography(img.shape[1], img.shape[0], 3), img.shape[::-1])
    for method, norm in [("orb", cv2.NORM_HAMMING), ("sift", cv2.NORM_L2)]:
        _, d1 = impl.detect_and_describe(img, method, 500)
        _, d2 = impl.detect_and_describe(warped, method, 500)
        for ratio in (0.7, 0.8):
            got = {tuple(p) for p in np.asarray(impl.ratio_match(d1, d2, ratio)).tolist()}
            want = cv2_ratio_pairs(d1, d2, norm, ratio)
            overlap = len(got & want) / max(len(got | want), 1)
            assert overlap >= 0.99, f"{method} ratio {ratio}: expected the pairs of BFMatcher.knnMatch + ratio " \
                                    f"test ({len(want)}), got {len(got)} with Jaccard overlap {overlap:.3f}"


@pytest.mark.task("ratio-match")
def test_ratio_test_is_strict_at_the_boundary(impl):
    d1 = np.float32([[0, 0], [10, 1]])
    d2 = np.float32([[3, 0], [0, 4], [10, 0]])
    # row 0: distances 3, 4, 10 -> 3 < 0.75 * 4 is false (a tie), 3 < 0.8 * 4 is true
    # row 1: distances sqrt(50), sqrt(116), 1 -> best is d2[2], clearly better than the second
    for ratio, want in [(0.75, [[1, 2]]), (0.8, [[0, 0], [1, 2]])]:
        got = sorted(np.asarray(impl.ratio_match(d1, d2, ratio)).tolist())
        assert got == want, f"ratio {ratio}: expected pairs (index in d1, index in d2) {want}, got {got}"


@pytest.mark.task("dlt")
def test_dlt_recovers_h_from_four_exact_points(impl):
    h_true = known_homography(200, 150, 1)
    src = np.float64([[10, 20], [180, 15], [170, 140], [25, 130]])
    dst = cv2.perspectiveTransform(src[None], h_true)[0]
    h = np.asarray(impl.dlt_homography(src, dst))
    assert abs(h[2, 2] - 1) < 1e-12, f"H should be normalised to H[2, 2] = 1, got {h[2, 2]}"
    assert np.allclose(h, h_true / h_true[2, 2], atol=1e-6), f"expected\n{h_true / h_true[2, 2]}\ngot\n{h}"
    mapped = np.asarray(impl.apply_homography(h_true, src))
    assert np.allclose(mapped, dst, atol=1e-9), "apply_homography should equal cv2.perspectiveTransform"


@pytest.mark.task("dlt")
def test_dlt_on_noisy_points_matches_findhomography(impl):
    rng = np.random.default_rng(0)
    h_true = known_homography(300, 200, 2)
    src = rng.uniform([0, 0], [300, 200], (60, 2))
    dst = cv2.perspectiveTransform(src[None], h_true)[0] + rng.normal(0, 0.5, (60, 2))
    ours = np.asarray(impl.dlt_homography(src, dst))
    ref, _ = cv2.findHomography(src, dst, 0)
    assert corner_gap(ours, ref, 300, 200) < 0.3, \
        f"least-squares H should agree with cv2.findHomography(method=0): corner gap {corner_gap(ours, ref, 300, 200):.3f} px"
    assert corner_gap(ours, h_true, 300, 200) < 1.0, "and lie within 1 px of the true H at the image corners"


@pytest.mark.task("ransac")
def test_ransac_with_30_percent_outliers(impl):
    rng = np.random.default_rng(0)
    h_true = known_homography(320, 240, 4)
    src = rng.uniform([0, 0], [320, 240], (200, 2))
    dst = cv2.perspectiveTransform(src[None], h_true)[0] + rng.normal(0, 0.3, (200, 2))
    bad = rng.random(200) < 0.3
    dst[bad] = rng.uniform([0, 0], [320, 240], (bad.sum(), 2))
    far = np.linalg.norm(dst - cv2.perspectiveTransform(src[None], h_true)[0], axis=1) > 3
    h, mask = impl.ransac_homography(src, dst, 2.0, 2000, 0.999, 0)
    mask = np.asarray(mask, bool)
    assert corner_gap(h, h_true, 320, 240) < 1.0, \
        f"expected the true H within 1 px at the image corners, got {corner_gap(h, h_true, 320, 240):.2f} px"
    assert not (mask & far).any() and mask[~bad].mean() > 0.95, \
        f"inlier mask: {(mask & far).sum()} outliers kept, {mask[~bad].mean():.0%} of true inliers found"


@pytest.mark.task("ransac")
@pytest.mark.parametrize("seed", range(4))
def test_ransac_with_60_percent_outliers(impl, seed):
    """A clean 4-point sample has probability 0.4^4 = 2.6% here: RANSAC needs log(0.001) / log(1 - 0.4^4) ~ 266
    iterations for 99.9% confidence. Stopping after log(0.001) / log(1 - 0.4) ~ 14 usually finds none."""
    rng = np.random.default_rng(100 + seed)
    h_true = known_homography(320, 240, seed)
    src = rng.uniform([0, 0], [320, 240], (150, 2))
    dst = cv2.perspectiveTransform(src[None], h_true)[0] + rng.normal(0, 0.3, (150, 2))
    bad = np.arange(150) < 90
    dst[bad] = rng.uniform([0, 0], [320, 240], (90, 2))
    h, mask = impl.ransac_homography(src, dst, 2.0, 2000, 0.999, seed)
    assert corner_gap(h, h_true, 320, 240) < 1.0, \
        f"seed {seed}, 60% outliers: corner error {corner_gap(h, h_true, 320, 240):.2f} px (allowed 1)"


@pytest.mark.task("ransac")
def test_ransac_picks_the_larger_of_two_planes(impl):
    """55% of the pairs follow one homography, 45% another (two planes in a scene): RANSAC must return the
    one with the larger consensus, for every seed."""
    rng = np.random.default_rng(5)
    h_big, h_small = known_homography(320, 240, 10), known_homography(320, 240, 11)
    src = rng.uniform([0, 0], [320, 240], (200, 2))
    big = np.arange(200) < 110
    dst = np.where(big[:, None], cv2.perspectiveTransform(src[None], h_big)[0],
                   cv2.perspectiveTransform(src[None], h_small)[0]) + rng.normal(0, 0.3, (200, 2))
    for seed in range(6):
        h, mask = impl.ransac_homography(src, dst, 2.0, 2000, 0.999, seed)
        mask = np.asarray(mask, bool)
        assert corner_gap(h, h_big, 320, 240) < 1.0 and mask[big].mean() > 0.95, \
            f"seed {seed}: expected the 55% plane (corner error {corner_gap(h, h_big, 320, 240):.2f} px, " \
            f"{mask[big].mean():.0%} of its pairs inliers), not the 45% one"


def interior_gap(h_est, h_true, w, h):
    """Mean distance between the two mappings of a 5x5 grid spanning 10%..90% of the image."""
    xs, ys = np.meshgrid(np.linspace(0.1 * w, 0.9 * w, 5), np.linspace(0.1 * h, 0.9 * h, 5))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)[None]
    a = cv2.perspectiveTransform(grid, np.asarray(h_est, np.float64))[0]
    b = cv2.perspectiveTransform(grid, np.asarray(h_true, np.float64))[0]
    return float(np.linalg.norm(a - b, axis=1).mean())


@pytest.mark.task("ratio-match")
def test_register_recovers_a_known_warp(impl, photos):
    """Ratio test + cv2.findHomography(RANSAC) on real photos warped by a known H. SIFT: the four image corners
    within 2 px. ORB (integer keypoints on a coarse pyramid, so less precise): a 5x5 interior grid within 1.5 px
    on average."""
    for seed, name in enumerate(("astronaut", "coffee")):
        img = photos[name]
        w, h = img.shape[1], img.shape[0]
        h_true = known_homography(w, h, seed)
        warped = cv2.warpPerspective(img, h_true, (w, h))
        h_sift, _, _, mask = impl.register(img, warped, "sift")
        gap = corner_gap(h_sift, h_true, w, h)
        assert gap < 2.0 and mask.mean() > 0.5,             f"{name}/sift: corner error {gap:.2f} px (allowed 2), inlier ratio {mask.mean():.0%}"
        h_orb, _, _, mask = impl.register(img, warped, "orb")
        gap = interior_gap(h_orb, h_true, w, h)
        assert gap < 1.5 and mask.mean() > 0.5,             f"{name}/orb: mean interior error {gap:.2f} px (allowed 1.5), inlier ratio {mask.mean():.0%}"


@pytest.mark.task("ransac")
def test_own_ransac_registers_a_real_photo(impl, photos):
    img = photos["astronaut"]
    h_true = known_homography(img.shape[1], img.shape[0], 7)
    warped = cv2.warpPerspective(img, h_true, img.shape[::-1])
    h, _, _, mask = impl.register(img, warped, "sift", own_ransac=True)
    gap = corner_gap(h, h_true, img.shape[1], img.shape[0])
    assert gap < 2.0 and mask.mean() > 0.5, f"own RANSAC: corner error {gap:.2f} px (allowed 2), inliers {mask.mean():.0%}"
