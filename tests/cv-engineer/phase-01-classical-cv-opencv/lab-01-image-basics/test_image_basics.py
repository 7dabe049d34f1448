"""Lab 01 checks: every from-scratch function against the OpenCV call that does the same job, on real images
from scikit-image (downscaled), plus hand-computed cases and generated images with known answers."""
import cv2
import numpy as np
import pytest
import skimage.data

COLOUR = ("astronaut", "coffee", "chelsea")
GRAY = ("camera", "coins", "moon", "page")


def small(img, size=128):
    scale = size / max(img.shape[:2])
    return cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def colour_images():
    return {n: small(cv2.cvtColor(getattr(skimage.data, n)(), cv2.COLOR_RGB2BGR)) for n in COLOUR}


@pytest.fixture(scope="module")
def gray_images():
    return {n: small(getattr(skimage.data, n)()) for n in GRAY}


def hue_gap(a, b):
    d = np.abs(a.astype(int) - b.astype(int))
    return np.minimum(d, 180 - d)


@pytest.mark.task("gray")
def test_gray_matches_cvtcolor(impl, colour_images):
    for name, img in colour_images.items():
        ours, ref = impl.bgr_to_gray(img), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        assert ours.shape == ref.shape and ours.dtype == np.uint8, \
            f"{name}: expected uint8 {ref.shape}, got {ours.dtype} {ours.shape}"
        gap = np.abs(ours.astype(int) - ref)
        assert gap.max() <= 1, f"{name}: expected within 1 level of cv2.cvtColor(BGR2GRAY), max gap {gap.max()}"
        assert np.mean(gap == 0) > 0.99, f"{name}: expected >99% identical pixels, got {np.mean(gap == 0):.2%}"


@pytest.mark.task("gray")
def test_gray_channel_order_is_bgr(impl):
    pure = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)  # blue, green, red in BGR
    got = impl.bgr_to_gray(pure).ravel().tolist()
    assert got == [29, 150, 76], f"pure blue/green/red should map to [29, 150, 76] (0.114/0.587/0.299 x 255), got {got}"


@pytest.mark.task("hsv")
def test_hsv_matches_cvtcolor(impl, colour_images):
    for name, img in colour_images.items():
        ours, ref = impl.bgr_to_hsv(img), cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        assert ours.shape == ref.shape and ours.dtype == np.uint8, \
            f"{name}: expected uint8 {ref.shape}, got {ours.dtype} {ours.shape}"
        assert hue_gap(ours[..., 0], ref[..., 0]).max() <= 1, \
            f"{name}: hue differs from cv2 by up to {hue_gap(ours[..., 0], ref[..., 0]).max()} (allowed 1, circular)"
        sv = np.abs(ours[..., 1:].astype(int) - ref[..., 1:])
        assert sv.max() <= 1, f"{name}: S/V differ from cv2 by up to {sv.max()} (allowed 1)"
        same = [np.mean(ours[..., c] == ref[..., c]) for c in range(3)]
        assert min(same) > 0.98, \
            f"{name}: expected >98% identical H, S, V (rounded, not truncated); got {[f'{x:.2%}' for x in same]}"


@pytest.mark.task("hsv")
def test_hsv_primaries(impl):
    px = np.array([[[0, 0, 255], [0, 255, 0], [255, 0, 0], [0, 255, 255], [128, 128, 128], [0, 0, 0]]], np.uint8)
    got = impl.bgr_to_hsv(px)[0].tolist()
    want = [[0, 255, 255], [60, 255, 255], [120, 255, 255], [30, 255, 255], [0, 0, 128], [0, 0, 0]]
    assert got == want, f"red, green, blue, yellow, gray, black: expected {want}, got {got}"


@pytest.mark.task("hsv-mask")
def test_hsv_mask_matches_inrange(impl, colour_images):
    for name, img in colour_images.items():
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        for lo, hi in [((0, 50, 50), (30, 255, 255)), ((90, 20, 0), (130, 255, 200))]:
            ours, ref = impl.hsv_mask(hsv, lo, hi), cv2.inRange(hsv, lo, hi)
            assert np.array_equal(ours, ref), \
                f"{name} {lo}..{hi}: mask differs from cv2.inRange on {(ours != ref).sum()} pixels"


@pytest.mark.task("hsv-mask")
def test_hsv_mask_wraps_hue_for_red(impl, colour_images):
    hsv = cv2.cvtColor(colour_images["astronaut"], cv2.COLOR_BGR2HSV)
    want = cv2.inRange(hsv, (170, 60, 60), (179, 255, 255)) | cv2.inRange(hsv, (0, 60, 60), (10, 255, 255))
    got = impl.hsv_mask(hsv, (170, 60, 60), (10, 255, 255))
    assert np.array_equal(got, want), f"wrapped hue 170..10 should equal the union of two inRange calls; " \
                                      f"{(got != want).sum()} pixels differ"


@pytest.mark.task("hsv-mask")
def test_hsv_mask_bounds_are_inclusive(impl):
    lo, hi = (20, 50, 60), (40, 200, 220)
    # each pixel sits exactly on one bound (inside), or one level beyond it (outside)
    px = np.array([[[20, 100, 100], [40, 100, 100], [30, 50, 100], [30, 200, 100], [30, 100, 60], [30, 100, 220],
                    [19, 100, 100], [41, 100, 100], [30, 49, 100], [30, 201, 100], [30, 100, 59], [30, 100, 221]]],
                  np.uint8)
    got = (impl.hsv_mask(px, lo, hi)[0] > 0).tolist()
    want = (cv2.inRange(px, lo, hi)[0] > 0).tolist()
    assert want == [True] * 6 + [False] * 6, "reference check: cv2.inRange includes both bounds"
    assert got == want, f"pixels exactly on lo or hi are inside (inclusive bounds): expected {want}, got {got}"


@pytest.mark.task("hsv-mask")
def test_red_disc_area(impl):
    img = np.full((200, 200, 3), (90, 160, 60), np.uint8)  # a green background
    cv2.circle(img, (100, 100), 40, (20, 20, 230), -1)      # a filled red disc (BGR), radius 40
    mask = impl.hsv_mask(cv2.cvtColor(img, cv2.COLOR_BGR2HSV), (170, 100, 100), (10, 255, 255))
    area, want = (mask > 0).sum(), np.pi * 40 ** 2
    assert abs(area - want) < 0.05 * want, f"red disc area: expected about {want:.0f} px (within 5%), got {area}"


@pytest.mark.task("histogram")
def test_histogram_matches_calchist(impl, gray_images):
    for name, img in gray_images.items():
        ours = np.asarray(impl.histogram(img))
        ref = cv2.calcHist([img], [0], None, [256], [0, 256]).ravel()
        assert ours.shape == (256,), f"{name}: expected 256 bins, got shape {ours.shape}"
        assert np.array_equal(ours, ref), f"{name}: differs from cv2.calcHist in {(ours != ref).sum()} bins"
        assert ours.sum() == img.size, f"{name}: counts sum to {ours.sum()}, expected H*W = {img.size}"
        coarse = np.asarray(impl.histogram(img, 32))
        np_ref, _ = np.histogram(img, bins=32, range=(0, 256))
        assert np.array_equal(coarse, np_ref), f"{name}: 32 bins differ from np.histogram: {coarse} vs {np_ref}"


@pytest.mark.task("equalize")
def test_equalize_matches_cv2(impl, gray_images, colour_images):
    images = dict(gray_images, astronaut=cv2.cvtColor(colour_images["astronaut"], cv2.COLOR_BGR2GRAY))
    for name, img in images.items():
        ours, ref = impl.equalize_hist(img), cv2.equalizeHist(img)
        gap = np.abs(ours.astype(int) - ref)
        assert ours.dtype == np.uint8 and gap.max() <= 1, \
            f"{name}: expected within 1 level of cv2.equalizeHist, max gap {gap.max()} (dtype {ours.dtype})"


@pytest.mark.task("equalize")
def test_equalize_edge_cases(impl):
    flat = np.full((16, 16), 77, np.uint8)
    assert np.array_equal(impl.equalize_hist(flat), cv2.equalizeHist(flat)), "a constant image should be unchanged"
    two = np.zeros((10, 10), np.uint8)
    two[:, 5:] = 100
    got = np.unique(impl.equalize_hist(two)).tolist()
    assert got == [0, 255], f"a two-level image should stretch to [0, 255], got levels {got}"


@pytest.mark.task("clahe-clip")
def test_clip_histogram_hand_case(impl):
    hist = np.zeros(256, np.int64)
    hist[0], hist[10] = 600, 50
    got = np.asarray(impl.clip_histogram(hist, 100))
    # excess 500 = 1 x 256 + 244: every bin +1, then bins 0..243 (step 1) +1 more
    assert got.sum() == 650, f"clipping must preserve the total count 650, got {got.sum()}"
    assert (got[0], got[10], got[243], got[244], got[255]) == (102, 52, 2, 1, 1), \
        f"expected bins 0/10/243/244/255 = 102/52/2/1/1, got {got[[0, 10, 243, 244, 255]].tolist()}"
    spread = np.zeros(256, np.int64)
    spread[5] = 110
    got = np.asarray(impl.clip_histogram(spread, 100))  # excess 10: step 25, bins 0, 25, ..., 225
    want = np.zeros(256, np.int64)
    want[5] = 100
    want[np.arange(0, 256, 25)[:10]] += 1
    assert np.array_equal(got, want), f"excess 10 should go to bins 0, 25, ..., 225; got nonzero bins " \
                                      f"{np.flatnonzero(got).tolist()}"


@pytest.mark.task("clahe")
def test_clahe_matches_cv2(impl, gray_images):
    cases = [(2.0, (8, 8)), (4.0, (4, 4)), (1.5, (8, 4))]
    for name, img in gray_images.items():
        img = img[:img.shape[0] // 8 * 8, :img.shape[1] // 8 * 8]
        for clip, tiles in cases:
            ours = impl.clahe(img, clip, tiles)
            ref = cv2.createCLAHE(clipLimit=clip, tileGridSize=tiles).apply(img)
            gap = np.abs(ours.astype(int) - ref)
            assert gap.max() <= 1 and np.mean(gap == 0) > 0.99, \
                f"{name} clip {clip} tiles {tiles}: expected within 1 level of cv2 CLAHE on >99% identical " \
                f"pixels; max gap {gap.max()}, identical {np.mean(gap == 0):.2%}"


@pytest.mark.task("otsu")
def test_otsu_hand_cases_and_ties(impl):
    # three levels 10, 11, 12 with 30, 30, 40 pixels: sigma_B^2(10) = .3 * .7 * (10 - 81/7)^2 = 0.519,
    # sigma_B^2(11) = .6 * .4 * (10.5 - 12)^2 = 0.54, so t = 11 (pixels <= 11 are the dark class)
    img = np.repeat(np.array([10] * 3 + [11] * 3 + [12] * 4, np.uint8)[None], 10, axis=0)
    assert impl.otsu_threshold(img) == 11, f"levels 10/11/12 (30/30/40 px): expected t = 11, got {impl.otsu_threshold(img)}"
    # two levels 50 and 200: every t in 50..199 gives the same split, and ties go to the smallest t
    two = np.zeros((10, 10), np.uint8)
    two[:, :5], two[:, 5:] = 50, 200
    assert impl.otsu_threshold(two) == 50, \
        f"levels 50 and 200: all t in 50..199 tie, the smallest (50) should win; got {impl.otsu_threshold(two)}"


@pytest.mark.task("otsu")
def test_otsu_matches_cv2_on_real_images(impl, gray_images, colour_images):
    images = dict(gray_images, chelsea=cv2.cvtColor(colour_images["chelsea"], cv2.COLOR_BGR2GRAY))
    for name, img in images.items():
        t_ref, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        t = impl.otsu_threshold(img)
        assert int(t) == int(t_ref), f"{name}: expected Otsu threshold {int(t_ref)} (as cv2.threshold), got {t}"


@pytest.mark.task("otsu")
def test_otsu_separates_a_bimodal_image(impl):
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(60, 12, (120, 120)), 0, 255)
    img[30:90, 30:90] = np.clip(rng.normal(180, 12, (60, 60)), 0, 255)
    img = img.astype(np.uint8)
    t = impl.otsu_threshold(img)
    t_ref, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    assert int(t) == int(t_ref), f"expected Otsu threshold {int(t_ref)} (as cv2.threshold), got {t}"
    square = np.zeros_like(img, bool)
    square[30:90, 30:90] = True
    assert np.mean((img > t) == square) > 0.999, "thresholding at t should separate the bright square"
