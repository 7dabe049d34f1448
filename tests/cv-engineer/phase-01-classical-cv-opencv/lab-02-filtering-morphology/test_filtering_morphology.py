"""Lab 02 checks: filters, Canny and morphology against OpenCV (same border modes) and SciPy on real
scikit-image photos downscaled to 128 px, plus drawn shapes with known edges."""
import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data

NAMES = ("camera", "coins", "astronaut", "brick")
CV_BORDER = {"reflect101": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE,
             "reflect": cv2.BORDER_REFLECT, "constant": cv2.BORDER_CONSTANT}


@pytest.fixture(scope="module")
def images():
    out = {}
    for name in NAMES:
        img = getattr(skimage.data, name)()
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        out[name] = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    return out


def worst(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.mark.task("correlate")
def test_correlate_matches_filter2d_for_every_border(impl, images):
    rng = np.random.default_rng(0)
    for shape in [(3, 3), (5, 3), (1, 7), (7, 7)]:
        kernel = rng.normal(size=shape)
        for border, flag in CV_BORDER.items():
            for name, img in images.items():
                f = img.astype(np.float64)
                ref = cv2.filter2D(f, cv2.CV_64F, kernel, borderType=flag)
                got = impl.correlate2d(f, kernel, border)
                assert got.shape == img.shape, f"expected shape {img.shape}, got {got.shape}"
                assert worst(got, ref) < 1e-9, \
                    f"{name}, kernel {shape}, border {border}: differs from cv2.filter2D by {worst(got, ref):.2e}"


@pytest.mark.task("correlate")
def test_convolution_flips_the_kernel(impl, images):
    kernel = np.arange(9, dtype=np.float64).reshape(3, 3)  # asymmetric, so a missing flip shows
    img = images["camera"].astype(np.float64)
    ref = ndi.convolve(img, kernel, mode="mirror")  # scipy "mirror" = OpenCV BORDER_REFLECT_101
    assert worst(impl.convolve2d(img, kernel), ref) < 1e-9, "convolve2d should equal scipy.ndimage.convolve"
    impulse = np.zeros((5, 5))
    impulse[2, 2] = 1
    got = impl.correlate2d(impulse, kernel, "constant")[1:4, 1:4]
    assert np.array_equal(got, kernel[::-1, ::-1]), \
        f"correlating an impulse should give the kernel rotated 180 degrees, got\n{got}"


@pytest.mark.task("gaussian")
def test_gaussian_kernel_matches_opencv(impl):
    for ksize, sigma in [(3, 0.8), (5, 1.0), (9, 2.0), (15, 3.5), (11, 0.0), (21, -1)]:
        ref = cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel()
        got = np.asarray(impl.gaussian_kernel(ksize, sigma)).ravel()
        assert got.shape == ref.shape and worst(got, ref) < 1e-12, \
            f"ksize {ksize}, sigma {sigma}: expected cv2.getGaussianKernel {np.round(ref, 6)}, got {np.round(got, 6)}"
        assert abs(got.sum() - 1) < 1e-12, f"taps should sum to 1, got {got.sum()}"


@pytest.mark.task("gaussian")
def test_gaussian_blur_matches_opencv(impl, images):
    for name, img in images.items():
        f = img.astype(np.float32)
        for ksize, sigma, border in [(5, 1.0, "reflect101"), (9, 2.0, "replicate"), (15, 3.0, "reflect101")]:
            ref = cv2.GaussianBlur(f, (ksize, ksize), sigma, borderType=CV_BORDER[border])
            got = impl.gaussian_blur(f, ksize, sigma, border)
            assert worst(got, ref) < 1e-3, \
                f"{name} k={ksize} sigma={sigma} {border}: differs from cv2.GaussianBlur by {worst(got, ref):.2e}"


@pytest.mark.task("median")
def test_median_matches_opencv(impl, images):
    rng = np.random.default_rng(0)
    for name, img in images.items():
        noisy = img.copy()
        hit = rng.random(img.shape) < 0.05
        noisy[hit] = rng.choice([0, 255], hit.sum())
        for k in (3, 5):
            got = impl.median_blur(noisy, k)
            ref = cv2.medianBlur(noisy, k)
            assert got.dtype == np.uint8 and np.array_equal(got, ref), \
                f"{name} k={k}: differs from cv2.medianBlur on {(got != ref).sum()} pixels (dtype {got.dtype})"


@pytest.mark.task("sobel")
def test_sobel_matches_opencv(impl, images):
    for name, img in images.items():
        f = img.astype(np.float32)
        for border in ("reflect101", "replicate"):
            gx, gy = impl.sobel(f, border)
            rx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, borderType=CV_BORDER[border])
            ry = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, borderType=CV_BORDER[border])
            assert worst(gx, rx) < 1e-3 and worst(gy, ry) < 1e-3, \
                f"{name} {border}: differs from cv2.Sobel by {worst(gx, rx):.2e} (x), {worst(gy, ry):.2e} (y)"


@pytest.mark.task("sobel")
def test_sobel_on_a_vertical_step(impl):
    step = np.zeros((20, 20))
    step[:, 10:] = 100.0
    gx, gy = impl.sobel(step)
    assert np.abs(gy).max() == 0, f"a vertical edge has no vertical gradient; got max |gy| {np.abs(gy).max()}"
    cols = sorted(set(np.argwhere(gx == gx.max())[:, 1].tolist()))
    assert cols == [9, 10] and gx.max() == 400, \
        f"gx should peak at 4 x 100 = 400 on columns [9, 10]; got {gx.max()} on {cols}"


def nms_cases(images):
    """uint8 images whose edges run in every direction, tie across two pixels, or touch the border."""
    disc = np.zeros((64, 64), np.uint8)
    cv2.circle(disc, (32, 32), 20, 200, -1)                    # every gradient direction, diagonals included
    plateau = np.zeros((32, 32), np.uint8)
    plateau[:, 16:] = 200                                      # a sharp step: two columns share the top magnitude
    plateau[20:, :] = np.maximum(plateau[20:, :], 120)         # and a sharp horizontal one
    at_border = np.zeros((32, 32), np.uint8)
    at_border[:, 1:] = 200                                     # the step sits on the image's first column
    return {"blurred disc": cv2.GaussianBlur(disc, (5, 5), 1.5), "sharp steps": plateau,
            "step at the border": at_border, "camera": cv2.GaussianBlur(images["camera"], (5, 5), 1.0)}


@pytest.mark.task("nms")
def test_nms_equals_opencv_canny_with_equal_thresholds(impl, images):
    """cv2.Canny(img, t, t) keeps exactly the NMS survivors above t (no weak pixels to link), with Sobel on
    replicated borders and |gx| + |gy|: an independent reference for sectors, tie rules and borders."""
    t = 40
    for name, img in nms_cases(images).items():
        gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        got = np.asarray(impl.non_max_suppression(np.abs(gx) + np.abs(gy), gx, gy)) > t
        want = cv2.Canny(img, t, t) > 0
        assert np.array_equal(got, want), \
            f"{name}: NMS survivors above {t} differ from cv2.Canny({t}, {t}) on {(got != want).sum()} of " \
            f"{want.sum()} edge pixels (first at {np.argwhere(got != want)[:3].tolist()})"


@pytest.mark.task("nms")
def test_nms_thins_a_blurred_edge_to_one_pixel(impl):
    img = np.zeros((40, 40), np.float32)
    img[:, 20:] = 200
    img = cv2.GaussianBlur(img, (9, 9), 2.0)
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3)
    mag = np.abs(gx) + np.abs(gy)
    kept = np.asarray(impl.non_max_suppression(mag, gx, gy)) > 0
    per_row = kept[5:35].sum(axis=1)
    assert np.all(per_row == 1), f"expected one surviving pixel per row on a blurred step, got {per_row.tolist()}"
    assert set(np.argwhere(kept[5:35])[:, 1].tolist()) <= {19, 20}, "the surviving pixel should sit on the edge"


@pytest.mark.task("hysteresis")
def test_hysteresis_keeps_only_chains_touching_strong_pixels(impl):
    m = np.zeros((9, 12))
    m[2, 1:6] = [30, 30, 90, 30, 30]      # weak chain with a strong pixel in the middle: kept
    m[3, 6] = 30                          # diagonal neighbour of the chain's end: kept (8-connectivity)
    m[6, 2:8] = 30                        # weak chain alone: dropped
    m[6, 10] = 90                         # a lone strong pixel: kept
    got = np.asarray(impl.hysteresis(m, 20, 80)) > 0
    labels, _ = ndi.label(m > 20, structure=np.ones((3, 3)))
    want = np.isin(labels, np.unique(labels[m > 80]))
    assert np.array_equal(got, want), f"expected edges at {np.argwhere(want).tolist()}, got {np.argwhere(got).tolist()}"


@pytest.mark.task("hysteresis")
def test_hysteresis_matches_connected_components(impl, images):
    gray = cv2.GaussianBlur(images["coins"], (5, 5), 1.0).astype(np.float64)
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_64F, 1, 0), cv2.Sobel(gray, cv2.CV_64F, 0, 1))
    got = np.asarray(impl.hysteresis(mag, 100, 300)) > 0
    labels, _ = ndi.label(mag > 100, structure=np.ones((3, 3)))
    want = np.isin(labels, np.unique(labels[mag > 300]))
    assert np.array_equal(got, want), f"differs from the connected-component answer on {(got != want).sum()} px"


@pytest.mark.task("hysteresis")
def test_canny_agrees_with_opencv(impl, images):
    """The full pipeline (Sobel, NMS, hysteresis) vs cv2.Canny: F1 of edge pixels with a 1-pixel tolerance
    must be >= 0.95, and at least 95% of the edge pixels must coincide exactly."""
    for name, img in images.items():
        smooth = cv2.GaussianBlur(img, (5, 5), 1.0)
        for low, high, l2 in [(50, 150, False), (80, 160, True)]:
            ours = np.asarray(impl.canny(smooth, low, high, l2)) > 0
            ref = cv2.Canny(smooth, low, high, L2gradient=l2) > 0
            f1 = impl.edge_f1(ours, ref, 1)
            iou = (ours & ref).sum() / max((ours | ref).sum(), 1)
            assert f1 >= 0.95 and iou >= 0.95, \
                f"{name} ({low}, {high}, L2={l2}): expected F1 >= 0.95 and exact IoU >= 0.95 vs cv2.Canny, " \
                f"got F1 {f1:.3f}, IoU {iou:.3f} ({ours.sum()} vs {ref.sum()} edge px)"


@pytest.mark.task("hysteresis")
def test_canny_finds_a_drawn_rectangle(impl):
    img = np.zeros((100, 120), np.uint8)
    cv2.rectangle(img, (20, 30), (90, 70), 255, -1)
    edges = np.asarray(impl.canny(cv2.GaussianBlur(img, (5, 5), 1.0), 50, 150)) > 0
    border = np.zeros_like(img)
    cv2.rectangle(border, (20, 30), (90, 70), 255, 1)
    near = cv2.dilate(border, np.ones((5, 5), np.uint8)) > 0
    assert edges.sum() > 200 and near[edges].all(), \
        f"expected edges only within 2 px of the rectangle border; {(~near[edges]).sum()} of {edges.sum()} are not"


@pytest.mark.task("morphology")
def test_erode_dilate_match_opencv(impl, images):
    rng = np.random.default_rng(0)
    elements = [cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)),
                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)),
                cv2.getStructuringElement(cv2.MORPH_CROSS, (5, 3))]
    for name, img in images.items():
        binary = ((img > img.mean()) ^ (rng.random(img.shape) < 0.02)).astype(np.uint8) * 255
        for test_img in (img, binary):
            for se in elements:
                for ours, ref, what in [(impl.erode(test_img, se), cv2.erode(test_img, se), "erode"),
                                        (impl.dilate(test_img, se), cv2.dilate(test_img, se), "dilate")]:
                    assert np.array_equal(ours, ref), \
                        f"{name} {what} {se.shape}: differs from cv2.{what} on {(ours != ref).sum()} pixels"


@pytest.mark.task("morphology")
def test_asymmetric_elements_are_not_reflected(impl, images):
    """cv2.erode/dilate take out[y, x] over img[y + i - ry, x + j - rx] for the element's on-pixels (i, j), with
    no reflection; only an asymmetric element shows the difference."""
    l_shape = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1]], np.uint8)
    scattered = np.zeros((3, 5), np.uint8)
    scattered[0, 0] = scattered[1, 2] = scattered[1, 4] = scattered[2, 4] = 1
    img = images["camera"]
    for se in (l_shape, scattered):
        for op, ours, ref in [("erode", impl.erode(img, se), cv2.erode(img, se)),
                              ("dilate", impl.dilate(img, se), cv2.dilate(img, se)),
                              ("open", impl.morphology(img, "open", se), cv2.morphologyEx(img, cv2.MORPH_OPEN, se)),
                              ("close", impl.morphology(img, "close", se),
                               cv2.morphologyEx(img, cv2.MORPH_CLOSE, se))]:
            assert np.array_equal(ours, ref), \
                f"{op} with the asymmetric element\n{se}\ndiffers from OpenCV on {(ours != ref).sum()} pixels"


@pytest.mark.task("morphology")
def test_composites_match_morphologyex(impl, images):
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    codes = {"open": cv2.MORPH_OPEN, "close": cv2.MORPH_CLOSE, "gradient": cv2.MORPH_GRADIENT,
             "tophat": cv2.MORPH_TOPHAT, "blackhat": cv2.MORPH_BLACKHAT}
    for name, img in images.items():
        for op, code in codes.items():
            ours, ref = impl.morphology(img, op, se), cv2.morphologyEx(img, code, se)
            assert np.array_equal(ours, ref), f"{name} {op}: differs from cv2.morphologyEx on {(ours != ref).sum()} px"


@pytest.mark.task("morphology")
def test_opening_removes_specks_and_keeps_the_square(impl):
    img = np.zeros((100, 100), np.uint8)
    img[30:70, 30:70] = 255
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, 100, 60), rng.integers(0, 100, 60)
    outside = (ys < 28) | (ys > 71) | (xs < 28) | (xs > 71)
    img[ys[outside], xs[outside]] = 255
    opened = impl.morphology(img, "open", np.ones((3, 3), np.uint8))
    assert opened[:28].sum() == 0 and opened[72:].sum() == 0, "opening should remove every isolated speck"
    assert (opened > 0).sum() == 1600, f"opening should keep the 40x40 square (1600 px), got {(opened > 0).sum()}"
