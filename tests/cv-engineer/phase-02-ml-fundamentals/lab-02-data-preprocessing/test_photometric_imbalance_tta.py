"""Lab 02 checks for the label-preserving colour and noise augmentations (against torchvision's functional ops),
Cutout / MixUp / CutMix (label weights against counted pixels), focal loss (against torchvision's
sigmoid_focal_loss, torch's BCE and hand-worked values), SMOTE and undersampling (against imbalanced-learn), and
test-time augmentation (boxes mapped back to the original frame, checked on drawn rectangles)."""
from collections import Counter

import cv2
import numpy as np
import pytest
import skimage.color
import skimage.data
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import RandomUnderSampler
from sklearn.utils.class_weight import compute_class_weight
from torchvision.ops import sigmoid_focal_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photo():
    """The astronaut photo as float32 RGB in [0, 1], 48 x 64."""
    return cv2.resize(skimage.data.astronaut(), (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def tv(op, image, *args):
    """Apply a torchvision functional op to an (H, W, 3) float image and come back to numpy."""
    return op(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), *args).permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- photometric and noise

@pytest.mark.task("photometric")
def test_brightness_contrast_gamma_match_torchvision(impl, photo):
    for factor in (0.0, 0.6, 1.0, 1.7):  # 1.7 pushes bright pixels past 1: they must be clipped
        got = impl.adjust_brightness(photo, factor)
        assert np.allclose(got, tv(TF.adjust_brightness, photo, factor), atol=1e-6), \
            f"brightness x{factor}: differs from torchvision's adjust_brightness"
    for factor in (0.0, 0.5, 1.0, 1.8):
        got = impl.adjust_contrast(photo, factor)
        ref = tv(TF.adjust_contrast, photo, factor)
        assert np.allclose(got, ref, atol=1e-5), \
            f"contrast {factor}: max gap {np.abs(got - ref).max():.3g} to torchvision's adjust_contrast (blend with " \
            "the image's mean luma 0.2989 R + 0.587 G + 0.114 B)"
    for gamma, gain in ((0.5, 1.0), (2.2, 1.0), (0.8, 1.3)):
        got = impl.adjust_gamma(photo, gamma, gain)
        assert np.allclose(got, tv(TF.adjust_gamma, photo, gamma, gain), atol=1e-5), \
            f"gamma {gamma}, gain {gain}: differs from torchvision's adjust_gamma"


@pytest.mark.task("photometric")
@pytest.mark.parametrize("shift", [0.1, -0.3, 0.45, -0.5])
def test_hue_shift_matches_torchvision(impl, photo, shift):
    got = impl.hsv_jitter(photo, hue_shift=shift)
    ref = tv(TF.adjust_hue, photo, shift)
    assert got.shape == photo.shape and np.allclose(got, ref, atol=1e-5), \
        f"hue shift {shift}: max gap {np.abs(got - ref).max():.3g} to torchvision's adjust_hue (shift in turns, wrapping)"


@pytest.mark.task("photometric")
def test_saturation_and_value_scale_in_hsv(impl, photo):
    before = skimage.color.rgb2hsv(photo.astype(np.float64))
    after = skimage.color.rgb2hsv(impl.hsv_jitter(photo, sat_scale=0.5).astype(np.float64))
    coloured = before[..., 1] > 0.1  # hue is undefined for gray pixels
    # float32 HSV loses about 2e-5 of S on the darkest pixels (V = 1/255)
    assert np.allclose(after[..., 1], before[..., 1] * 0.5, atol=1e-4), "saturation x0.5 should halve S everywhere"
    assert np.allclose(after[..., 2], before[..., 2], atol=1e-5), "a saturation change must keep V"
    assert np.allclose(after[..., 0][coloured], before[..., 0][coloured], atol=1e-4), "a saturation change must keep H"
    # scaling V by 0.7 scales R, G and B alike: the same as a brightness factor of 0.7
    got = impl.hsv_jitter(photo, val_scale=0.7)
    assert np.allclose(got, tv(TF.adjust_brightness, photo, 0.7), atol=1e-5), "value x0.7 should equal brightness x0.7"


@pytest.mark.task("photometric")
def test_gaussian_noise_statistics_and_range(impl):
    gray = np.full((64, 64, 3), 0.5, np.float32)
    noisy = impl.gaussian_noise(gray, 0.05, np.random.default_rng(0))
    residual = noisy - gray
    # 12,288 draws: the sample std has a standard error of 0.6%, the mean one of 0.00045
    assert abs(residual.std() - 0.05) < 0.05 * 0.03 and abs(residual.mean()) < 0.002, \
        f"noise should have std 0.05 and mean 0: got std {residual.std():.4f}, mean {residual.mean():.4f}"
    assert not np.allclose(residual[..., 0], residual[..., 1]), "each channel gets its own noise draw"
    again = impl.gaussian_noise(gray, 0.05, np.random.default_rng(0))
    assert np.array_equal(noisy, again), "the same generator seed must give the same noise"
    bright = impl.gaussian_noise(np.full((32, 32, 3), 0.98, np.float32), 0.2, np.random.default_rng(1))
    assert bright.min() >= 0.0 and bright.max() <= 1.0, f"noisy values must be clipped to [0, 1], got [{bright.min():.3f}, {bright.max():.3f}]"


# ----------------------------------------------------------------------------- Cutout, MixUp, CutMix

@pytest.mark.task("mix")
def test_mixup_by_hand(impl):
    a, b = np.full((4, 6, 3), 0.2), np.full((4, 6, 3), 0.8)
    image, label = impl.mixup(a, [1.0, 0.0, 0.0], b, [0.0, 0.0, 1.0], 0.3)
    assert np.allclose(image, 0.3 * 0.2 + 0.7 * 0.8), f"0.3 * 0.2 + 0.7 * 0.8 = 0.62 per pixel, got {np.unique(image)}"
    assert np.allclose(label, [0.3, 0.0, 0.7]) and np.isclose(np.sum(label), 1.0), \
        f"mixed label should be [0.3, 0, 0.7] (sums to 1), got {label}"


@pytest.mark.task("mix")
def test_cutmix_label_weight_equals_pixel_share(impl):
    h, w = 20, 48  # not square: the box's sides scale with each side
    a, b = np.zeros((h, w, 3)), np.ones((h, w, 3))
    clipped, widths, heights = 0, [], []
    for seed in range(150):
        image, label, box = impl.cutmix(a, [1.0, 0.0], b, [0.0, 1.0], 0.75, np.random.default_rng(seed))
        x1, y1, x2, y2 = box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h, f"seed {seed}: box {box} leaves the {w}x{h} image"
        share_b = image[..., 0].mean()  # pixels pasted from b are 1, the rest 0
        assert np.allclose(label, [1 - share_b, share_b], atol=1e-12), \
            f"seed {seed}: {share_b:.4f} of the pixels come from b but the label is {label}; the weights must be " \
            "the pixel shares after clipping"
        assert image[y1:y2, x1:x2].min() == 1 and image.sum() == 3 * (x2 - x1) * (y2 - y1), \
            f"seed {seed}: exactly the box {box} should hold b's pixels"
        clipped += abs(share_b - 0.25) > 1e-9
        widths.append(x2 - x1)
        heights.append(y2 - y1)
    # lam = 0.75: sides sqrt(0.25) = 0.5 of the image, 24 x 10 when the box does not touch the border
    assert max(widths) == 24 and max(heights) == 10, f"unclipped box should be 24 wide, 10 high; got {max(widths)}, {max(heights)}"
    assert clipped > 30, f"boxes centred near the border are clipped; only {clipped} of 150 were"


@pytest.mark.task("mix")
def test_cutout_fills_one_clipped_square(impl):
    image = np.random.default_rng(0).random((30, 50, 3))
    original = image.copy()
    clipped = 0
    for seed in range(100):
        out, box = impl.cutout(image, 12, np.random.default_rng(seed), fill=-1.0)
        x1, y1, x2, y2 = box
        filled = np.all(out == -1.0, axis=-1)
        expected = np.zeros((30, 50), bool)
        expected[y1:y2, x1:x2] = True
        assert np.array_equal(filled, expected), f"seed {seed}: the filled pixels should be exactly the box {box}"
        assert np.array_equal(out[~expected], image[~expected]), f"seed {seed}: pixels outside the box changed"
        assert (x2 - x1, y2 - y1) == (12, 12) or min(x1, y1) == 0 or x2 == 50 or y2 == 30, \
            f"seed {seed}: box {box} is smaller than 12 x 12 without touching the border"
        clipped += (x2 - x1) * (y2 - y1) < 144
    assert np.array_equal(image, original), "cutout must not modify its input image"
    assert clipped > 10, f"the centre may be any pixel, so squares near the border are clipped: only {clipped} of 100 were"


# ----------------------------------------------------------------------------- focal loss

@pytest.fixture(scope="module")
def scores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g) * 4
    targets = (torch.rand(6, 50, generator=g) < 0.2).float()  # imbalanced, like anchors
    return logits, targets


@pytest.mark.task("focal-loss")
def test_gamma_zero_is_binary_cross_entropy(impl, scores):
    logits, targets = scores
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    got = impl.focal_loss(logits, targets, alpha=None, gamma=0.0, reduction="none")
    assert torch.allclose(got, bce, atol=1e-6), "gamma = 0 without alpha must equal binary_cross_entropy_with_logits"
    got = impl.focal_loss(logits, targets, alpha=0.5, gamma=0.0, reduction="mean")
    assert torch.allclose(got, 0.5 * bce.mean(), atol=1e-6), f"alpha = 0.5 halves every term: expected {0.5 * bce.mean():.6f}, got {got:.6f}"


@pytest.mark.task("focal-loss")
def test_documented_modulating_factors(impl):
    ce_easy = -np.log(0.9)  # 0.10536
    logit = np.log(9.0)  # sigmoid = 0.9
    # p_t = 0.9 for a positive with p = 0.9, and for a negative with p = 0.1
    got = impl.focal_loss(torch.tensor([logit, -logit]), torch.tensor([1.0, 0.0]), alpha=None, gamma=2.0, reduction="none")
    assert np.allclose(got.numpy(), 0.01 * ce_easy, rtol=1e-5), \
        f"p_t = 0.9, gamma = 2: (1 - 0.9)^2 = 0.01 of the CE {ce_easy:.5f}, i.e. {0.01 * ce_easy:.3e}; got {got.tolist()}"
    hard = impl.focal_loss(torch.tensor([-logit]), torch.tensor([1.0]), alpha=None, gamma=2.0, reduction="none")
    assert np.isclose(hard.item(), 0.81 * -np.log(0.1), rtol=1e-5), \
        f"p_t = 0.1: (1 - 0.1)^2 = 0.81 of the CE 2.3026, i.e. 1.8651; got {hard.item():.5f}"
    weighted = impl.focal_loss(torch.tensor([logit, -logit]), torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0, reduction="none")
    assert np.allclose(weighted.numpy(), [0.25 * 0.01 * ce_easy, 0.75 * 0.01 * ce_easy], rtol=1e-5), \
        f"alpha = 0.25 weights positives by 0.25 and negatives by 0.75, got {weighted.tolist()}"


@pytest.mark.task("focal-loss")
@pytest.mark.parametrize("alpha", [0.25, None, 0.9])
@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_loss_matches_torchvision(impl, scores, alpha, gamma):
    logits, targets = scores
    for reduction in ("none", "mean", "sum"):
        ref = sigmoid_focal_loss(logits, targets, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction)
        got = impl.focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction)
        assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-5, atol=1e-6), \
            f"alpha={alpha}, gamma={gamma}, reduction={reduction}: differs from torchvision's sigmoid_focal_loss " \
            f"(max gap {(got - ref).abs().max().item():.3g}); 'mean' averages over all elements"


@pytest.mark.task("focal-loss")
def test_confident_logits_stay_finite(impl):
    logits = torch.tensor([200.0, -200.0, 200.0, -200.0], requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0])  # two confidently wrong, two confidently right
    loss = impl.focal_loss(logits, targets, alpha=None, gamma=2.0, reduction="none")
    assert torch.allclose(loss.detach(), torch.tensor([200.0, 200.0, 0.0, 0.0])), \
        f"float32 logits of ±200: wrong ones cost -log(p_t) = 200 (factor 1), right ones 0; got {loss.tolist()} " \
        "(log of a sigmoid that rounds to 0 is -inf: take -log p_t from the logits)"
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all(), f"gradients must be finite, got {logits.grad.tolist()}"


@pytest.mark.task("focal-loss")
def test_focal_loss_shrinks_easy_examples_as_gamma_grows(impl):
    logits = torch.linspace(-4, 4, 41)
    targets = torch.ones(41)
    losses = torch.stack([impl.focal_loss(logits, targets, None, g, "none") for g in (0.0, 1.0, 2.0, 3.0)])
    assert (losses[1:] <= losses[:-1] + 1e-7).all(), "for fixed p_t < 1, the loss must fall as gamma rises"


# ----------------------------------------------------------------------------- SMOTE, undersampling, class weights

@pytest.fixture(scope="module")
def imbalanced():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (60, 3)), rng.normal(3, 1, (15, 3)), rng.normal(-3, 1.5, (9, 3))])
    return X, np.repeat([0, 1, 2], [60, 15, 9])


def on_neighbour_segment(points, X_class, k):
    """For each point: does it lie on a segment from a row of X_class to one of that row's k nearest (other)
    rows? Brute force over every (row, neighbour) pair."""
    d = ((X_class[:, None] - X_class[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    starts = np.repeat(X_class, k, axis=0)  # (n·k, d)
    dirs = X_class[nn.ravel()] - starts
    ok = []
    for p in points:
        u = ((p - starts) * dirs).sum(1) / (dirs ** 2).sum(1)
        off = np.linalg.norm(starts + u[:, None] * dirs - p, axis=1)
        ok.append(bool(np.any((off < 1e-9) & (u >= -1e-12) & (u <= 1 + 1e-12))))
    return np.array(ok)


@pytest.mark.task("resample")
def test_class_weights_match_sklearn(impl):
    y = np.array([0] * 90 + [1] * 10)
    assert np.allclose(impl.class_weights(y), [100 / 180, 5.0]), f"[90, 10] -> [0.556, 5.0], got {impl.class_weights(y)}"
    y = np.array(["car"] * 7 + ["bus"] * 2 + ["person"] * 11)
    ref = compute_class_weight("balanced", classes=np.unique(y), y=y)
    assert np.allclose(impl.class_weights(y), ref), f"expected sklearn's balanced weights {ref}, got {impl.class_weights(y)}"


@pytest.mark.task("resample")
def test_smote_counts_and_segments_match_imblearn(impl, imbalanced):
    X, y = imbalanced
    Xr, yr = impl.smote(X, y, k=5, rng=np.random.default_rng(1))
    Xi, yi = SMOTE(k_neighbors=5, random_state=0).fit_resample(X, y)
    assert Counter(yr.tolist()) == Counter(yi.tolist()), \
        f"class counts {Counter(yr.tolist())}, imbalanced-learn's SMOTE gives {Counter(yi.tolist())}"
    assert np.array_equal(Xr[:len(X)], X) and np.array_equal(yr[:len(y)], y), "the original rows come first, unchanged"
    for c in (1, 2):
        new = Xr[len(X):][yr[len(X):] == c]
        assert on_neighbour_segment(Xi[len(X):][yi[len(X):] == c], X[y == c], 5).all(), "test's segment checker"
        on = on_neighbour_segment(new, X[y == c], 5)
        assert on.all(), f"class {c}: {int((~on).sum())} of {len(new)} synthetic rows are not on a segment from a " \
                         "row to one of its 5 nearest neighbours of the same class"
        gaps = np.abs(new[:, None] - X[None]).sum(-1).min(1)
        assert gaps.min() > 1e-9, f"class {c}: a synthetic row repeats an original one (a row is not its own neighbour)"


@pytest.mark.task("resample")
def test_smote_refuses_too_few_rows(impl, imbalanced):
    X, y = imbalanced  # class 2 has 9 rows: each has 8 possible neighbours
    Xr, yr = impl.smote(X, y, k=8, rng=np.random.default_rng(0))
    assert Counter(yr.tolist()) == {0: 60, 1: 60, 2: 60}, f"k = 8 with 9 rows is allowed; got counts {Counter(yr.tolist())}"
    assert on_neighbour_segment(Xr[len(X):][yr[len(X):] == 2], X[y == 2], 8).all(), "k = 8: rows off their segments"
    with pytest.raises(ValueError, match="k"):
        impl.smote(X, y, k=9, rng=np.random.default_rng(0))


@pytest.mark.task("resample")
def test_random_undersample_matches_imblearn(impl, imbalanced):
    X, y = imbalanced
    Xu, yu, idx = impl.random_undersample(X, y, np.random.default_rng(0))
    _, yi = RandomUnderSampler(random_state=0).fit_resample(X, y)
    assert Counter(yu.tolist()) == Counter(yi.tolist()), f"class counts {Counter(yu.tolist())}, imbalanced-learn gives {Counter(yi.tolist())}"
    idx = np.asarray(idx)
    assert len(set(idx.tolist())) == len(idx), "rows are drawn without replacement: no index twice"
    assert np.array_equal(idx, np.sort(idx)) and np.array_equal(Xu, X[idx]) and np.array_equal(yu, y[idx]), \
        "idx must be the kept rows in their original order, and X_res = X[idx]"
    assert set(np.flatnonzero(y == 2).tolist()) <= set(idx.tolist()), "the smallest class keeps all its rows"
    other = np.asarray(impl.random_undersample(X, y, np.random.default_rng(1))[2])
    assert not np.array_equal(idx, other), "two seeds should keep different rows of the larger classes"


# ----------------------------------------------------------------------------- test-time augmentation

RED, BLUE = (0, 0, 255), (255, 0, 0)


@pytest.fixture(scope="module")
def scene():
    """A 70 x 110 gray image with a red and a blue rectangle; their pixel boxes."""
    image = np.full((70, 110, 3), 90, np.uint8)
    image[10:25, 8:40] = RED
    image[30:62, 70:101] = BLUE
    return image, np.array([[8, 10, 40, 25], [70, 30, 101, 62]], float)


def colour_boxes(image):
    """A perfect detector with two fixed slots: the tight box of the red pixels, then of the blue ones."""
    out = []
    for colour in (RED, BLUE):
        ys, xs = np.nonzero(np.all(image == np.array(colour, np.uint8), axis=-1))
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(out, float)


@pytest.mark.task("tta")
def test_tta_of_a_perfect_detector_is_exact(impl, scene):
    image, truth = scene
    got = impl.tta_detect(colour_boxes, image)
    assert np.allclose(got, truth), f"each view's boxes, mapped back, are the true boxes; expected {truth.tolist()}, got {np.round(got, 3).tolist()}"


@pytest.mark.task("tta")
def test_tta_cancels_a_shifted_detector(impl, scene):
    image, truth = scene
    shifted = lambda im: colour_boxes(im) + [3, 0, 3, 0]  # noqa: E731  every box 3 px too far right in its view
    got = impl.tta_detect(shifted, image, views=("identity", "hflip"))
    assert np.allclose(got, truth), \
        f"+3 px in the original view and -3 px once the mirrored view is mapped back: the mean is exact; got {got.tolist()}"
    # all four views: x errs by +3, -3, +3 and 0 (the turned view's x axis is the original y axis, so there y errs by
    # +3): the mean is +0.75 on every coordinate
    got = impl.tta_detect(shifted, image)
    assert np.allclose(got, truth + 0.75), f"expected the true boxes + 0.75, got {np.round(got - truth, 3).tolist()} off"
    lifted = lambda im: colour_boxes(im) + [0, 2, 0, 2]  # noqa: E731
    got = impl.tta_detect(lifted, image, views=("identity", "vflip"))
    assert np.allclose(got, truth), f"a vertical offset cancels over identity + vflip; got {(got - truth).tolist()}"


@pytest.mark.task("tta")
def test_tta_classify_averages_the_mirror(impl, scene):
    image, _ = scene

    def predict(im):  # depends on where the red is, left/right and top/bottom: not mirror-invariant
        red = np.all(im == np.array(RED, np.uint8), axis=-1)
        ys, xs = np.nonzero(red)
        z = np.array([xs.mean() / im.shape[1], ys.mean() / im.shape[0], 0.5])
        return np.exp(z) / np.exp(z).sum()

    expected = (predict(image) + predict(image[:, ::-1])) / 2
    got = impl.tta_classify(predict, image)
    assert np.allclose(got, expected), f"expected the mean of the original and the left-right mirror, {expected}, got {got}"
