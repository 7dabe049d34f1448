"""Lab 02 checks: scalers and imputers against scikit-learn (fitted on train, applied to test), and every
geometric augmentation on images with drawn pure-colour rectangles: after the op, the box must still bound the
rectangle's pixels (exactly, or within a pixel for rescaling) and the mask must equal the colour's pixels.
Albumentations 2.x is the reference library for the same flips, turns, crops and resizes."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check against PyPI on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skimage.data  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_wine  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402

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
            eps = 1e-4  # Albumentations stores boxes in float32: an edge on a pixel centre may come back 1e-6 off
            inside = box[0] <= centres[0] + eps and box[1] <= centres[1] + eps and box[2] >= centres[2] - eps \
                and box[3] >= centres[3] - eps
            assert inside and np.abs(box - tb).max() <= 0.5 + eps, \
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


# ----------------------------------------------------------------------------- Albumentations as the reference

QUARTER_TURN = [A.Transpose(p=1.0), A.VerticalFlip(p=1.0)]  # (x, y) -> (y, x) -> (y, W - x): np.rot90's turn


def albu(ops, image, boxes, mask=None, min_visibility=0.0):
    """Run Albumentations ops on one sample; returns (image, boxes float64, mask, surviving box indices)."""
    compose = A.Compose(ops, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"],
                                                       min_visibility=min_visibility))
    extra = {} if mask is None else {"mask": mask}
    out = compose(image=image, bboxes=np.asarray(boxes, float), labels=np.arange(len(boxes)), **extra)
    return out["image"], np.asarray(out["bboxes"], float).reshape(-1, 4), out.get("mask"), np.asarray(out["labels"])


def random_boxes(rng, h, w, n=12):
    """n float boxes inside an h x w image, 4 to 40 px a side (random floats: no box sits exactly on an edge)."""
    x1, y1 = rng.uniform(0, w - 5, n), rng.uniform(0, h - 5, n)
    return np.stack([x1, y1, np.minimum(x1 + rng.uniform(4, 40, n), w), np.minimum(y1 + rng.uniform(4, 40, n), h)], 1)


@pytest.mark.task("flip-rotate")
def test_flips_and_turns_match_albumentations(impl):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)  # not square: a turn swaps the sides
    boxes = random_boxes(rng, 90, 130)
    cases = [("hflip", lambda: impl.hflip(image, boxes), [A.HorizontalFlip(p=1.0)]),
             ("vflip", lambda: impl.vflip(image, boxes), [A.VerticalFlip(p=1.0)])]
    cases += [(f"rot90 k={k}", lambda k=k: impl.rot90(image, boxes, None, k), QUARTER_TURN * k) for k in (1, 2, 3)]
    for name, ours, ops in cases:
        out, b, _ = ours()
        ref_image, ref_boxes, _, _ = albu(ops, image, boxes)
        assert np.array_equal(out, ref_image), f"{name}: image differs from Albumentations'"
        # Albumentations keeps boxes as float32 fractions of the image size: agreement to 1e-3 px is exact here
        assert np.allclose(b, ref_boxes, atol=1e-3), \
            f"{name}: boxes differ from Albumentations' by up to {np.abs(np.asarray(b) - ref_boxes).max():.3g} px"


@pytest.mark.task("crop-scale")
def test_crop_and_resize_match_albumentations(impl):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    boxes = random_boxes(rng, 90, 130, n=20)
    for window in [(20, 10, 110, 70), (0, 35, 64, 90), (47, 0, 130, 33)]:
        out, b, _, keep = impl.crop(image, boxes, None, window, min_visible=0.3)
        ref_image, ref_boxes, _, ref_keep = albu([A.Crop(*window)], image, boxes, min_visibility=0.3)
        assert np.array_equal(out, ref_image), f"crop {window}: image differs from A.Crop's"
        assert np.asarray(keep).tolist() == ref_keep.tolist(), \
            f"crop {window}: kept boxes {np.asarray(keep).tolist()}, Albumentations (min_visibility=0.3) keeps {ref_keep.tolist()}"
        assert np.allclose(b, ref_boxes, atol=1e-3), f"crop {window}: boxes differ from A.Crop's"
    mask = rng.integers(0, 3, (90, 130), dtype=np.uint8)
    for factor in (0.5, 1.37, 2.0):
        out, b, m = impl.rescale(image, boxes, mask, factor, interpolation=cv2.INTER_NEAREST_EXACT)
        size = (round(90 * factor), round(130 * factor))
        ops = [A.Resize(*size, interpolation=cv2.INTER_NEAREST_EXACT, mask_interpolation=cv2.INTER_NEAREST_EXACT)]
        ref_image, ref_boxes, ref_mask, _ = albu(ops, image, boxes, mask)
        assert np.array_equal(out, ref_image) and np.array_equal(m, ref_mask), f"x{factor}: image or mask differs from A.Resize's"
        assert np.allclose(b, ref_boxes, atol=1e-3), f"x{factor}: boxes differ from A.Resize's"


def numpy_chain(image, hflip, vflip, k, window, size):
    """The reference pixels of one chain, written with plain array ops (independent of the lab's code)."""
    if hflip:
        image = image[:, ::-1]
    if vflip:
        image = image[::-1]
    image = np.rot90(image, k)
    if window is not None:
        x0, y0, x1, y1 = window
        image = image[y0:y1, x0:x1]
    if size is not None:
        image = cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.ascontiguousarray(image)


CHAINS = [  # (hflip, vflip, k, window in the turned frame, output size (H, W))
    (False, False, 1, None, None),
    (True, False, 3, (10, 5, 110, 150), None),
    (False, True, 2, (0, 20, 160, 120), (150, 240)),  # 100 x 160 crop upscaled by 1.5
    (True, True, 1, (7, 3, 113, 141), (97, 61)),      # non-integer factors on both axes
    (True, False, 0, (40, 30, 160, 120), (45, 60)),   # downscale by 2
]


@pytest.mark.task("albumentations")
@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: f"h{int(c[0])}v{int(c[1])}k{c[2]}-{c[4]}")
def test_albumentations_chain_moves_pixels_boxes_and_mask(impl, chain):
    hflip, vflip, k, window, size = chain
    image, boxes, mask = sample(seed=k + 3)
    transform = impl.albumentations_chain(hflip, vflip, k, window, size, interpolation=cv2.INTER_NEAREST_EXACT)
    out, b, m, keep = impl.run_albumentations(transform, image, boxes, mask)
    ref = numpy_chain(image, hflip, vflip, k, window, size)
    assert np.array_equal(out, ref), f"{chain}: image {out.shape} differs from the same flips/turns/crop/resize done " \
                                     f"with numpy and cv2 {ref.shape}"
    assert np.array_equal(m, numpy_chain(mask, hflip, vflip, k, window, size)), \
        f"{chain}: the mask must move with the image and be resized with INTER_NEAREST_EXACT"
    assert len(b) == len(keep), f"{chain}: {len(b)} boxes but {len(keep)} kept labels"
    # flips, turns and crops move boxes exactly; a resize puts edges between pixels (within half a pixel)
    assert_consistent(out, b, m, [int(i) + 1 for i in keep], exact=size is None, what=f"albumentations {chain}")


@pytest.mark.task("albumentations")
def test_albumentations_chain_drops_hidden_boxes_and_keeps_indices(impl):
    blank = np.zeros((100, 100), np.uint8)
    boxes = [[10, 10, 30, 30], [30, 40, 50, 60], [60, 60, 80, 80]]
    # window from x = 25: box 0 keeps 25% of its area, below min_visible = 0.3, so it and its label go
    t = impl.albumentations_chain(window=(25, 0, 100, 100), min_visible=0.3)
    out, b, _, keep = impl.run_albumentations(t, blank, boxes)
    assert out.shape == (100, 75), f"crop (25, 0, 100, 100) should give a 100 x 75 image, got {out.shape}"
    assert np.asarray(keep).tolist() == [1, 2], f"expected boxes 1 and 2 to survive, got keep {np.asarray(keep).tolist()}"
    assert np.allclose(b, [[5, 40, 25, 60], [35, 60, 55, 80]], atol=1e-3), f"shifted boxes: got {np.round(b, 3).tolist()}"
    t = impl.albumentations_chain(window=(25, 0, 100, 100), min_visible=0.2)
    assert np.asarray(impl.run_albumentations(t, blank, boxes)[3]).tolist() == [0, 1, 2], \
        "at min_visible = 0.2 the 25%-visible box must be kept"
    # a turn of a 60 x 100 image gives 100 x 60, and a resize to (H, W) = (50, 30) halves both sides
    t = impl.albumentations_chain(k=1, size=(50, 30))
    out, b, _, keep = impl.run_albumentations(t, np.zeros((60, 100), np.uint8), [[10, 20, 30, 40], [70, 0, 100, 10]])
    assert out.shape == (50, 30), f"expected a 50 x 30 image after one turn and the resize, got {out.shape}"
    assert np.asarray(keep).tolist() == [0, 1] and np.allclose(b, [[10, 35, 20, 45], [0, 0, 5, 15]], atol=1e-3), \
        f"a turn maps (x, y) to (y, W - x), then both axes halve: expected [[10, 35, 20, 45], [0, 0, 5, 15]], " \
        f"got {np.round(b, 3).tolist()}"
