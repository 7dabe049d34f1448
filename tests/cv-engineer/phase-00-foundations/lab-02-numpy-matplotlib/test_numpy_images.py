"""Lab 02 checks: every NumPy image operation equals its OpenCV or SciPy counterpart on real sample images
(cv2.cvtColor, cv2.flip, cv2.meanStdDev, cv2.inRange, sliding_window_view, scipy.signal.correlate2d /
convolve2d, cv2.filter2D with BORDER_REFLECT_101), and views are views (np.shares_memory)."""
import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal


@pytest.fixture(scope="module")
def bgr():
    """skimage's astronaut, halved to 256 x 256, as OpenCV holds it (BGR)."""
    return np.ascontiguousarray(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[::2, ::2])


@pytest.fixture(scope="module")
def gray():
    """skimage's camera (a real gray photograph), 128 x 128, float64."""
    return skimage.data.camera()[::4, ::4].astype(np.float64)


def equal(got, want, what):
    assert got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}"
    assert np.array_equal(got, want), f"{what}: {np.count_nonzero(got != want)} of {want.size} values differ"


def close(got, want, what, atol=1e-9):
    assert got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}"
    err = np.abs(got - want).max()
    assert err <= atol, f"{what}: max |difference| {err:.3g} exceeds {atol:g}"


# ------------------------------------------------------------------ channel layout

@pytest.mark.task("channel-layout")
def test_bgr_to_rgb_equals_cvtcolor_and_is_a_view(impl, bgr):
    rgb = impl.bgr_to_rgb(bgr)
    equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "bgr_to_rgb vs cv2.cvtColor(BGR2RGB)")
    assert np.shares_memory(rgb, bgr), "the channel swap should be a view (a slice), not a copy"
    equal(impl.bgr_to_rgb(rgb), bgr, "swapping twice")


@pytest.mark.task("channel-layout")
def test_to_chw_float_layout_and_values(impl, bgr):
    chw = impl.to_chw_float(bgr)
    assert chw.shape == (3, 256, 256) and chw.dtype == np.float32, \
        f"expected (3, 256, 256) float32, got {chw.shape} {chw.dtype}"
    assert chw.flags["C_CONTIGUOUS"], "the result should be C-contiguous (np.ascontiguousarray)"
    assert chw.strides == (256 * 256 * 4, 256 * 4, 4), f"contiguous float32 strides are (262144, 1024, 4), got {chw.strides}"
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[..., 0].astype(np.float32) / 255
    close(chw[0], want, "channel 0 should be red / 255", atol=1e-7)


@pytest.mark.task("channel-layout")
def test_batch_to_nchw(impl, bgr):
    imgs = [bgr, cv2.flip(bgr, 1), bgr[::-1].copy()]
    batch = impl.batch_to_nchw(imgs)
    assert batch.shape == (3, 3, 256, 256) and batch.dtype == np.float32, f"got {batch.shape} {batch.dtype}"
    for n, img in enumerate(imgs):
        want = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) / 255
        close(batch[n], want, f"batch[{n}]", atol=1e-7)


# ------------------------------------------------------------------ crop and flip

@pytest.mark.task("crop-flip")
def test_flip_equals_cv2_flip(impl, bgr):
    for code in (0, 1, -1):
        equal(impl.flip(bgr, code), cv2.flip(bgr, code), f"flip(code={code}) vs cv2.flip")
        assert np.shares_memory(impl.flip(bgr, code), bgr), f"flip(code={code}) should return a view"
    g = np.ascontiguousarray(bgr[..., 1])
    equal(impl.flip(g, 1), cv2.flip(g, 1), "flip of a 2-D gray image")


@pytest.mark.task("crop-flip")
def test_crop_is_the_right_view(impl, bgr):
    img = bgr.copy()
    patch = impl.crop(img, 10, 20, 50, 30)
    equal(patch, bgr[20:30, 10:50], "crop(x1=10, y1=20, x2=50, y2=30)")
    patch[:] = 0
    assert img[25, 30].sum() == 0, "writing into the crop should change the image: a crop is a view"
    with pytest.raises(ValueError):
        impl.crop(img, 10, 10, 300, 20)


# ------------------------------------------------------------------ normalisation

@pytest.mark.task("normalise")
def test_channel_stats_equal_cv2_meanstddev(impl, bgr):
    mean, std = impl.channel_mean_std(bgr)
    cv_mean, cv_std = cv2.meanStdDev(bgr)
    close(mean, cv_mean.ravel(), "per-channel mean vs cv2.meanStdDev", atol=1e-9)
    close(std, cv_std.ravel(), "per-channel std (population) vs cv2.meanStdDev", atol=1e-9)


@pytest.mark.task("normalise")
def test_normalize_matches_a_per_channel_loop_and_round_trips(impl, bgr):
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = impl.normalize(rgb, mean, std)
    assert got.dtype == np.float32 and got.shape == rgb.shape, f"expected float32 {rgb.shape}, got {got.dtype} {got.shape}"
    for c in range(3):
        want = (rgb[..., c].astype(np.float64) / 255 - mean[c]) / std[c]
        close(got[..., c].astype(np.float64), want, f"channel {c}", atol=1e-5)
    equal(impl.denormalize(got, mean, std), rgb, "denormalize(normalize(x))")
    own_mean, own_std = rgb.reshape(-1, 3).mean(0) / 255, rgb.reshape(-1, 3).std(0) / 255
    z = impl.normalize(rgb, own_mean, own_std)
    close(z.reshape(-1, 3).mean(0).astype(np.float64), np.zeros(3), "mean after normalising by own stats", atol=1e-4)
    close(z.reshape(-1, 3).std(0).astype(np.float64), np.ones(3), "std after normalising by own stats", atol=1e-4)


@pytest.mark.task("normalise")
def test_denormalize_rounds_and_clips_out_of_range_values(impl):
    # with mean 0 and std 1, denormalize is x * 255: 260 and -3 must clip (not wrap), 127.6 rounds up
    x = np.array([[[260.0, -3.0, 127.6], [300.0, 254.4, 0.4]]], np.float32) / 255
    got = impl.denormalize(x, (0, 0, 0), (1, 1, 1))
    assert got.dtype == np.uint8, f"expected uint8, got {got.dtype}"
    assert got.tolist() == [[[255, 0, 128], [255, 254, 0]]], \
        f"expected [[[255, 0, 128], [255, 254, 0]]] (rounded, then clipped to 0..255), got {got.tolist()}"


# ------------------------------------------------------------------ masks and fancy indexing

@pytest.mark.task("masking")
def test_in_range_equals_cv2_inrange_on_hsv(impl, bgr):
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    for lo, hi in [((0, 80, 60), (12, 255, 255)), ((100, 50, 0), (130, 255, 200)), ((0, 0, 200), (179, 40, 255))]:
        got = impl.in_range(hsv, lo, hi)
        assert got.dtype == bool, f"the mask should be boolean, got {got.dtype}"
        equal(got, cv2.inRange(hsv, np.array(lo), np.array(hi)) > 0, f"in_range{lo, hi} vs cv2.inRange")


@pytest.mark.task("masking")
def test_paint_and_gather(impl):
    img = np.zeros((60, 60, 3), np.uint8)
    cv2.circle(img, (30, 30), 12, (0, 0, 255), -1)                     # a pure red disk, BGR
    mask = impl.in_range(img, (0, 0, 250), (5, 5, 255))
    assert abs(mask.sum() - np.pi * 12 ** 2) < 0.1 * np.pi * 12 ** 2, \
        f"the red disk of radius 12 should cover about {np.pi * 144:.0f} pixels, mask has {mask.sum()}"
    painted = impl.paint(img, mask, (0, 255, 0))
    assert img[30, 30].tolist() == [0, 0, 255], "paint must not modify its input (copy first)"
    assert painted[30, 30].tolist() == [0, 255, 0] and painted[0, 0].tolist() == [0, 0, 0]
    ys, xs = np.array([30, 0, 59]), np.array([30, 0, 59])
    got = impl.gather_pixels(painted, ys, xs)
    assert got.tolist() == [[0, 255, 0], [0, 0, 0], [0, 0, 0]], f"gather_pixels gave {got.tolist()}"


@pytest.mark.task("masking")
def test_gather_pixels_reads_row_y_column_x(impl):
    img = np.arange(6 * 9 * 3, dtype=np.int32).reshape(6, 9, 3)     # a wide image: rows and columns differ
    ys, xs = np.array([1, 5, 0, 3]), np.array([8, 2, 5, 3])
    want = [img[y, x].tolist() for y, x in zip(ys, xs)]
    got = impl.gather_pixels(img, ys, xs)
    assert got.tolist() == want, \
        f"pixels at (y, x) = {list(zip(ys.tolist(), xs.tolist()))}: expected {want}, got {got.tolist()}"


# ------------------------------------------------------------------ patches

@pytest.mark.task("patches")
@pytest.mark.parametrize("k,stride", [(3, 1), (8, 8), (16, 5), (128, 1)])
def test_patches_equal_sliding_window_view(impl, gray, k, stride):
    got = impl.extract_patches(gray, k, stride)
    want = sliding_window_view(gray, (k, k))[::stride, ::stride]
    equal(got, want, f"extract_patches(k={k}, stride={stride}) vs sliding_window_view[::s, ::s]")
    assert np.shares_memory(got, gray), "patches should be a view made with strides, not a copy"
    with pytest.raises(ValueError):
        got[0, 0, 0, 0] = -1.0     # patches overlap: a write through one would change its neighbours


@pytest.mark.task("patches")
@settings(max_examples=30, deadline=None)
@given(st.integers(5, 20), st.integers(5, 20), st.integers(1, 5), st.integers(1, 4))
def test_patches_equal_brute_force_slices(impl, h, w, k, stride):
    arr = np.arange(h * w, dtype=np.int32).reshape(h, w)[:, ::-1]     # a non-contiguous input too
    got = impl.extract_patches(arr, k, stride)
    rows, cols = range(0, h - k + 1, stride), range(0, w - k + 1, stride)
    want = np.array([[arr[i:i + k, j:j + k] for j in cols] for i in rows])
    equal(got, want, f"{h}x{w}, k={k}, stride={stride}")


# ------------------------------------------------------------------ im2col convolution

@pytest.mark.task("im2col-conv")
def test_im2col_rows_are_windows(impl):
    arr = np.arange(20.0).reshape(4, 5)
    cols = impl.im2col(arr, 2, 3)
    assert cols.shape == (3 * 3, 6), f"4x5 with a 2x3 window gives 9 windows of 6 values, got {cols.shape}"
    assert cols[0].tolist() == [0, 1, 2, 5, 6, 7] and cols[-1].tolist() == [12, 13, 14, 17, 18, 19]


@pytest.mark.task("im2col-conv")
def test_valid_correlation_equals_scipy(impl, gray):
    rng = np.random.default_rng(0)
    for shape in [(3, 3), (5, 5), (3, 7), (4, 2)]:
        kernel = rng.standard_normal(shape)
        close(impl.correlate2d(gray, kernel), signal.correlate2d(gray, kernel, mode="valid"),
              f"valid correlation with a {shape} kernel vs scipy.signal.correlate2d", atol=1e-8)
        close(impl.convolve2d(gray, kernel), signal.convolve2d(gray, kernel, mode="valid"),
              f"valid convolution with a {shape} kernel vs scipy.signal.convolve2d", atol=1e-8)


@pytest.mark.task("im2col-conv")
def test_same_size_borders_equal_opencv_and_scipy(impl, gray):
    rng = np.random.default_rng(1)
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    for kernel in [sobel, rng.standard_normal((5, 5)), rng.standard_normal((3, 7))]:
        want = cv2.filter2D(gray, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT_101)
        close(impl.correlate2d(gray, kernel, "reflect101"), want,
              f"reflect101 correlation ({kernel.shape}) vs cv2.filter2D(BORDER_REFLECT_101)", atol=1e-8)
        close(impl.correlate2d(gray, kernel, "constant"),
              signal.correlate2d(gray, kernel, mode="same", boundary="fill"),
              f"zero-padded correlation ({kernel.shape}) vs scipy correlate2d(mode='same')", atol=1e-8)
    with pytest.raises(ValueError):
        impl.correlate2d(gray, np.ones((2, 2)), "reflect101")


@pytest.mark.task("im2col-conv")
def test_operations_grid_png(impl, bgr, tmp_path):
    small = np.ascontiguousarray(bgr[::4, ::4])
    impl.save_operations_grid(small, tmp_path / "grid.png")
    png = cv2.imread(str(tmp_path / "grid.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 400, "expected a readable PNG figure"
