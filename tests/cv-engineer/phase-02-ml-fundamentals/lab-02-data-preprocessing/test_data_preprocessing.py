"""Lab 02 checks: scalers and imputers against scikit-learn (fitted on train, applied to test), and every
geometric augmentation on images with drawn pure-colour rectangles: after the op, the box must still bound the
rectangle's pixels (exactly, or within a pixel for rescaling) and the mask must equal the colour's pixels."""
import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings, strategies as st
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler

RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR


@pytest.fixture(scope="module")
def split():
    X = load_breast_cancer().data.copy()
    X[:, 5] = 3.0  # a constant column: std and range are 0
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    return X[idx[:400]], X[idx[400:]]


def sample(size=(120, 160), seed=0):
    """Gray camera background (B = G = R) with a red and a blue rectangle, their boxes and instance mask."""
    h, w = size
    gray = cv2.resize(skimage.data.camera(), (w, h), interpolation=cv2.INTER_AREA)
    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    mask = np.zeros((h, w), np.uint8)
    rng = np.random.default_rng(seed)
    boxes = []
    for label, colour in ((1, RED), (2, BLUE)):  # red in the left half, blue in the right: no overlap
        bw, bh = int(rng.integers(10, w // 3)), int(rng.integers(10, h // 3))
        x = int(rng.integers(0, w // 2 - bw)) + (label - 1) * (w // 2)
        y = int(rng.integers(0, h - bh))
        image[y:y + bh, x:x + bw] = colour
        mask[y:y + bh, x:x + bw] = label
        boxes.append([x, y, x + bw, y + bh])
    return image, np.array(boxes, float), mask


def colour_pixels(image, colour):
    return np.all(image == np.array(colour, np.uint8), axis=-1)


def tight_box(pixels):
    ys, xs = np.nonzero(pixels)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def assert_consistent(image, boxes, mask, labels, exact=True, what=""):
    """Mask equals the colour pixels; each kept box equals its rectangle's pixel box (exact), or else contains
    every pixel centre of the rectangle and lies within half a pixel of its pixel box (non-integer resampling)."""
    for label, colour in ((1, RED), (2, BLUE)):
        pix = colour_pixels(image, colour)
        assert np.array_equal(mask == label, pix), \
            f"{what}: mask == {label} differs from the colour's pixels at {int(np.sum((mask == label) != pix))} places"
    for box, label in zip(boxes, labels):
        pix = mask == label
        assert pix.any(), f"{what}: box {np.round(box, 2)} was kept for label {label} but no pixels of it remain"
        tb = tight_box(pix)
        if exact:
            assert np.allclose(box, tb), f"{what}: label {label}: expected box {tb}, got {np.round(box, 3)}"
        else:
            centres = tb + np.array([0.5, 0.5, -0.5, -0.5])
            inside = box[0] <= centres[0] and box[1] <= centres[1] and box[2] >= centres[2] and box[3] >= centres[3]
            assert inside and np.abs(box - tb).max() <= 0.5 + 1e-9, \
                f"{what}: label {label}: box {np.round(box, 3)} should contain every pixel centre of the " \
                f"rectangle and lie within 0.5 px of its pixel box {tb}"


# ----------------------------------------------------------------------------- scaling / imputation

@pytest.mark.task("scaling")
def test_standardize_matches_standard_scaler(impl, split):
    train, test = split
    ref = StandardScaler().fit(train)
    stats = impl.fit_standard(train)
    for name, X in (("train", train), ("test", test)):
        got = impl.standardize(X, stats)
        assert np.allclose(got, ref.transform(X), atol=1e-10), \
            f"{name} rows: max gap to StandardScaler {np.abs(got - ref.transform(X)).max():.2e}"
    assert np.all(impl.standardize(test, stats)[:, 5] == 0), "a constant column should map to 0, not NaN"


@pytest.mark.task("scaling")
@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0), (2.0, 5.0)])
def test_minmax_matches_minmax_scaler(impl, split, feature_range):
    train, test = split
    ref = MinMaxScaler(feature_range).fit(train)
    stats = impl.fit_minmax(train, feature_range)
    for name, X in (("train", train), ("test", test)):
        got = impl.minmax(X, stats)
        assert np.allclose(got, ref.transform(X), atol=1e-10), \
            f"{name} rows, range {feature_range}: max gap to MinMaxScaler {np.abs(got - ref.transform(X)).max():.2e}"


@pytest.mark.task("impute")
@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_imputer_matches_simple_imputer(impl, strategy):
    X = np.round(load_wine().data, 1)  # rounded so most_frequent has real modes and ties
    rng = np.random.default_rng(1)
    X[rng.random(X.shape) < 0.15] = np.nan
    train, test = X[:120], X[120:]
    ref = SimpleImputer(strategy=strategy).fit(train)
    fill = impl.fit_imputer(train, strategy)
    assert np.allclose(fill, ref.statistics_, atol=1e-12), f"{strategy}: expected fill values {ref.statistics_[:4]}..., got {np.asarray(fill)[:4]}..."
    got = impl.impute(test, fill)
    assert np.allclose(got, ref.transform(test), atol=1e-12) and not np.isnan(got).any(), \
        f"{strategy}: imputed test rows differ from SimpleImputer's"
    assert np.isnan(test).any(), "impute must not modify its input in place"


@pytest.mark.task("impute")
def test_most_frequent_tie_takes_smallest(impl):
    X = np.array([[3.0, 1.0], [1.0, np.nan], [3.0, 2.0], [1.0, 2.0], [np.nan, 1.0]])
    got = impl.fit_imputer(X, "most_frequent")
    assert np.array_equal(got, [1.0, 1.0]), f"ties (two 3s and two 1s) should pick the smallest value: expected [1, 1], got {got}"


# ----------------------------------------------------------------------------- geometric ops

@pytest.mark.task("flip-rotate")
def test_flips_keep_boxes_and_masks(impl):
    for seed in range(3):
        image, boxes, mask = sample(seed=seed)
        for name in ("hflip", "vflip"):
            out, b, m = getattr(impl, name)(image, boxes, mask)
            ref = cv2.flip(image, 1 if name == "hflip" else 0)
            assert np.array_equal(out, ref), f"{name}: image should equal cv2.flip"
            assert_consistent(out, b, m, [1, 2], what=f"{name} seed {seed}")
            back = getattr(impl, name)(out, b, m)
            assert np.allclose(back[1], boxes), f"{name} twice should give the boxes back, got {back[1]}"
    got = impl.hflip(np.zeros((50, 100, 3), np.uint8), [[10, 20, 30, 40]])[1]
    assert np.allclose(got, [[70, 20, 90, 40]]), f"hflip of [10, 20, 30, 40] in W=100: expected [70, 20, 90, 40], got {got}"


@pytest.mark.task("flip-rotate")
def test_flips_and_turns_leave_the_input_boxes_alone(impl):
    # one sample augmented twice (two epochs) must give the same labels twice: the caller's boxes stay untouched
    image, boxes, mask = sample(seed=1)
    original = boxes.copy()
    ops = {"hflip": impl.hflip, "vflip": impl.vflip, "rot90": lambda i, b, m: impl.rot90(i, b, m, 1)}
    for name, op in ops.items():
        first = np.array(op(image, boxes, mask)[1], copy=True)
        assert np.array_equal(boxes, original), f"{name} changed the input boxes to {boxes.tolist()}; work on a copy"
        second = op(image, boxes, mask)[1]
        assert np.allclose(first, second), f"{name} applied twice to the same sample gave {first} then {second}"


@pytest.mark.task("flip-rotate")
@pytest.mark.parametrize("k", [1, 2, 3, 4, -1])
def test_rot90_keeps_boxes_and_masks(impl, k):
    image, boxes, mask = sample(seed=k + 5)
    out, b, m = impl.rot90(image, boxes, mask, k)
    assert np.array_equal(out, np.rot90(image, k)), f"k={k}: image should equal np.rot90(image, {k})"
    assert_consistent(out, b, m, [1, 2], what=f"rot90 k={k}")


@pytest.mark.task("crop-scale")
def test_crop_clips_and_drops_boxes(impl):
    image, boxes, mask = sample(seed=3)
    for window in [(5, 7, 150, 110), (0, 0, 80, 60), (40, 30, 160, 120)]:
        out, b, m, keep = impl.crop(image, boxes, mask, window)
        x0, y0, x1, y1 = window
        assert out.shape[:2] == (y1 - y0, x1 - x0), f"crop {window}: expected shape {(y1 - y0, x1 - x0)}, got {out.shape[:2]}"
        assert_consistent(out, b, m, [int(i) + 1 for i in keep], what=f"crop {window}")
    # hand case: a 20 x 20 box with only 5 x 20 (25%) inside the window is dropped at min_visible=0.3
    _, b, _, keep = impl.crop(np.zeros((100, 100), np.uint8), [[10, 10, 30, 30], [50, 50, 70, 70]], None, (25, 0, 100, 100))
    assert keep.tolist() == [1] and np.allclose(b, [[25, 50, 45, 70]]), f"expected only box 1 kept as [25, 50, 45, 70], got {keep}, {b}"


@pytest.mark.task("crop-scale")
def test_crop_boundaries_by_hand(impl):
    blank = np.zeros((100, 100), np.uint8)
    boxes = [[10, 10, 30, 30], [30, 40, 50, 60], [60, 60, 80, 80]]
    # window from x = 25: box 0 keeps 5 of its 20 columns, exactly 25%; box 1 starts on the window's left edge
    _, b, _, keep = impl.crop(blank, boxes, None, (25, 0, 100, 100), min_visible=0.25)
    assert np.asarray(keep).tolist() == [0, 1, 2], \
        f"a box with exactly min_visible = 25% of its area inside is kept: expected keep [0, 1, 2], got {keep}"
    assert np.allclose(b, [[0, 10, 5, 30], [5, 40, 25, 60], [35, 60, 55, 80]]), f"shifted and clipped boxes: got {b}"
    # window from x = 30: box 0 ends exactly on the window's edge, so nothing of it is left, even at min_visible 0
    _, b, _, keep = impl.crop(blank, boxes, None, (30, 0, 100, 100), min_visible=0.0)
    assert np.asarray(keep).tolist() == [1, 2], \
        f"a box cut exactly at its edge has zero area and must be dropped: expected keep [1, 2], got {keep}"
    assert np.allclose(b, [[0, 40, 20, 60], [30, 60, 50, 80]]), f"box 1 on the window's edge becomes [0, 40, 20, 60]: got {b}"


@pytest.mark.task("crop-scale")
def test_rescale_full_frame_box_follows_rounded_size(impl):
    # H = 10, W = 7 at factor 0.3: the new size is round(2.1) x round(3.0) = 2 wide, 3 high, so the ratios are
    # 2/7 in x and 3/10 in y; a box along the image's border must still span the whole new image
    out, b, _ = impl.rescale(np.zeros((10, 7), np.uint8), [[0, 0, 7, 10], [5, 0, 7, 10]], None, 0.3)
    assert out.shape == (3, 2), f"expected a 3 x 2 image (rows, columns), got {out.shape}"
    assert np.allclose(b, [[0, 0, 2, 3], [10 / 7, 0, 2, 3]]), \
        f"expected [[0, 0, 2, 3], [1.4286, 0, 2, 3]] (x scaled by 2/7, y by 3/10), got {np.round(b, 4).tolist()}"


@pytest.mark.task("crop-scale")
@pytest.mark.parametrize("factor", [2.0, 3.0, 0.5, 1.37, 0.81])
def test_rescale_keeps_boxes_and_masks(impl, factor):
    image, boxes, mask = sample(seed=4)
    out, b, m = impl.rescale(image, boxes, mask, factor, interpolation=cv2.INTER_NEAREST_EXACT)
    expected = (round(120 * factor), round(160 * factor))
    assert out.shape[:2] == expected and m.shape == expected, f"x{factor}: expected {expected}, got {out.shape[:2]}, {m.shape}"
    exact = float(factor).is_integer()  # integer upscaling is exact; otherwise edges land between pixels
    assert_consistent(out, b, m, [1, 2], exact=exact, what=f"rescale x{factor}")


@pytest.mark.task("crop-scale")
def test_rescale_linear_image_keeps_box(impl):
    image, boxes, mask = sample(seed=2)
    out, b, m = impl.rescale(image, boxes, mask, 1.5)  # default: bilinear image, nearest mask
    red = (out[..., 2] > 200) & (out[..., 0] < 60) & (out[..., 1] < 60)  # clearly red pixels
    tb = tight_box(red)
    assert np.abs(b[0] - tb).max() <= 1.0, f"bilinear x1.5: box {np.round(b[0], 2)} should match the red pixels' box {tb} within 1 px"
    assert m.dtype == mask.dtype and set(np.unique(m)) <= {0, 1, 2}, "the mask must be resized without blending labels"
    for label in (1, 2):  # blending 0 and 2 makes 1s around the blue box: each label must stay near its own box
        x1, y1, x2, y2 = b[label - 1]
        ys, xs = np.nonzero(m == label)
        inside = (xs >= np.floor(x1) - 1) & (xs < np.ceil(x2) + 1) & (ys >= np.floor(y1) - 1) & (ys < np.ceil(y2) + 1)
        assert inside.all(), f"bilinear x1.5: {int(np.sum(~inside))} mask pixels labelled {label} lie outside its " \
                             f"box {np.round(b[label - 1], 1)}: the mask was interpolated, not resized by nearest label"


# ----------------------------------------------------------------------------- random augmentation

@pytest.mark.task("augment")
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_random_augment_keeps_labels_consistent(impl, seed):
    image, boxes, mask = sample(seed=seed % 7)
    out, b, m, keep = impl.random_augment(image, boxes, mask, np.random.default_rng(seed), interpolation=cv2.INTER_NEAREST_EXACT)
    assert len(b) == len(keep), f"seed {seed}: {len(b)} boxes but keep has {len(keep)} entries"
    assert_consistent(out, b, m, [int(i) + 1 for i in keep], exact=False, what=f"random_augment seed {seed}")


@pytest.mark.task("augment")
def test_random_augment_is_seeded_and_varied(impl):
    image, boxes, mask = sample()
    a = impl.random_augment(image, boxes, mask, np.random.default_rng(7))
    b = impl.random_augment(image, boxes, mask, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1]), "the same seed should give the same augmentation"
    shapes = {impl.random_augment(image, boxes, mask, np.random.default_rng(s))[0].shape for s in range(8)}
    assert len(shapes) > 4, f"8 seeds should give varied output sizes (crop + rescale), got {shapes}"
