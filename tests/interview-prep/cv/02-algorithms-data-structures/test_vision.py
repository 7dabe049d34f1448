"""IoU and NMS (torchvision.ops), track-to-detection assignment (brute force over every matching), perceptual
hashing (hand-built images, resized/re-encoded photos from labkit.assets) and vectorised distances (torch.cdist)."""
import itertools

import cv2
import numpy as np
import pytest
import torch
import torchvision.ops as ops
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import assets
from labkit.checks import assert_close_to_reference

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


# ------------------------------------------------------------------ IoU and NMS

@pytest.mark.task("iou-nms")
def test_iou_by_hand(impl):
    iou = impl.box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [3, -4, 4, -2]])
    assert iou.shape == (1, 4), f"(N, M) = (1, 4) expected, got {iou.shape}"
    assert np.isclose(iou[0, 0], 1 / 7), f"overlap 1, union 4 + 4 - 1 = 7: expected 1/7, got {iou[0, 0]}"
    assert iou[0, 1] == 1.0, f"a box with itself has IoU 1, got {iou[0, 1]}"
    assert iou[0, 2] == 0.0 and iou[0, 3] == 0.0, f"disjoint boxes have IoU 0, got {iou[0, 2]} and {iou[0, 3]}"


@pytest.mark.task("iou-nms")
def test_iou_matches_torchvision(impl):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    assert_close_to_reference(impl.box_iou(a, b), ops.box_iou(torch.as_tensor(a), torch.as_tensor(b)),
                              atol=1e-12, what="IoU matrix vs torchvision.ops.box_iou")


@pytest.mark.task("iou-nms")
def test_nms_keeps_iou_exactly_at_the_threshold(impl):
    boxes = np.array([[0.0, 0, 2, 1], [0, 0, 1, 1]])  # overlap 1, union 2: IoU exactly 0.5
    got = impl.nms(boxes, np.array([0.9, 0.8]), 0.5).tolist()
    ref = ops.nms(torch.as_tensor(boxes), torch.tensor([0.9, 0.8], dtype=torch.float64), 0.5).tolist()
    assert got == ref == [0, 1], f"IoU 0.5 is not above the threshold 0.5: both survive (torchvision {ref}), got {got}"
    assert impl.nms(boxes, np.array([0.9, 0.8]), 0.49).tolist() == [0], "at 0.49 the second box is suppressed"


@pytest.mark.task("iou-nms")
def test_nms_matches_torchvision(impl):
    rng = np.random.default_rng(1)
    for trial in range(4):
        boxes = random_boxes(rng, 40, size=60.0)
        scores = rng.permutation(40) / 40 + 0.01  # distinct scores
        for threshold in (0.3, 0.5, 0.7):
            got = impl.nms(boxes, scores, threshold)
            ref = ops.nms(torch.as_tensor(boxes), torch.as_tensor(scores), threshold).numpy()
            assert got.tolist() == ref.tolist(), \
                f"trial {trial}, threshold {threshold}: kept {got.tolist()}, torchvision keeps {ref.tolist()}"


@pytest.mark.task("iou-nms")
def test_nms_returns_kept_boxes_best_first(impl):
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [100, 100, 140, 150], [11, 9, 49, 51], [0, 0, 20, 20]])
    got = impl.nms(boxes, np.array([0.9, 0.8, 0.75, 0.95, 0.3]), 0.5).tolist()
    assert got == [3, 2, 4], f"box 3 (0.95) suppresses 0 and 1; 2 and 4 overlap nothing: expected [3, 2, 4], got {got}"
    tie = impl.nms(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.5, 0.5]), 0.5).tolist()
    assert tie == [0], f"two identical boxes with equal scores: keep the lower index, got {tie}"


# ------------------------------------------------------------------ assignment

def best_matching_by_brute_force(cost, threshold):
    """Try every way to pair the smaller side with distinct members of the larger side."""
    n, m = cost.shape
    if n <= m:
        options = (list(zip(range(n), cols)) for cols in itertools.permutations(range(m), n))
    else:
        options = (list(zip(rows, range(m))) for rows in itertools.permutations(range(n), m))
    best = min(options, key=lambda pairs: sum(cost[r, c] for r, c in pairs))
    return sorted((r, c) for r, c in best if cost[r, c] < threshold)


@pytest.mark.task("assignment")
def test_assignment_beats_greedy(impl):
    cost = np.array([[0.1, 0.2, 0.9], [0.15, 0.9, 0.9], [0.9, 0.9, 0.3]])
    got = impl.match_tracks_to_detections(cost)
    # greedy row by row takes (0, 0) at 0.1 and pays 0.9 for track 1; the optimum costs 0.2 + 0.15 + 0.3
    assert got == [(0, 1), (1, 0), (2, 2)], f"expected [(0, 1), (1, 0), (2, 2)], got {got}"


@pytest.mark.task("assignment")
def test_cost_at_the_threshold_is_rejected(impl):
    got = impl.match_tracks_to_detections(np.array([[0.7, 0.95], [0.95, 0.2]]), threshold=0.7)
    assert got == [(1, 1)], f"a pair at cost exactly 0.7 is not below 0.7: expected [(1, 1)], got {got}"
    assert impl.match_tracks_to_detections(np.zeros((0, 3))) == [], "no tracks: no matches"


@pytest.mark.task("assignment")
def test_assignment_equals_brute_force(impl):
    impl.match_tracks_to_detections(np.zeros((1, 1)))

    @FAST
    @given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16), st.sampled_from([0.3, 0.5, 0.7, 1.1]))
    def check(n, m, seed, threshold):
        cost = np.random.default_rng(seed).random((n, m))
        expected = best_matching_by_brute_force(cost, threshold)
        got = sorted(impl.match_tracks_to_detections(cost, threshold))
        assert got == expected, f"{n}x{m} cost matrix, threshold {threshold}: expected {expected}, got {got}"
    check()


# ------------------------------------------------------------------ hashing

def stripes(increasing_rows):
    """8 rows x 9 columns: rows listed in `increasing_rows` brighten left to right, the others darken."""
    img = np.zeros((8, 9), dtype=np.uint8)
    for row in range(8):
        ramp = np.arange(9, dtype=np.uint8) * 20
        img[row] = ramp if row in increasing_rows else ramp[::-1]
    return img


@pytest.mark.task("hashing")
def test_dhash_bits_by_hand(impl):
    assert impl.dhash(stripes(range(8))) == 2**64 - 1, "every pixel brighter than its left neighbour: all 64 bits set"
    assert impl.dhash(stripes([])) == 0, "every pixel darker than its left neighbour: 0"
    got = impl.dhash(stripes([0]))
    assert got == 0xFF << 56, f"only the first row brightens: its 8 bits lead (0xff00000000000000), got {got:#018x}"


@pytest.mark.task("hashing")
def test_dhash_resizes_any_image_first(impl):
    small = stripes([0, 3, 5])
    big = cv2.resize(small, (90, 80), interpolation=cv2.INTER_NEAREST)  # 10x blow-up of the same pattern
    assert impl.dhash(big) == impl.dhash(small), "the same picture at 10x the size must give the same hash"
    assert impl.dhash(big) < 2**64, "an 8x8 dHash has 64 bits whatever the input size"
    assert impl.dhash(cv2.resize(small, (36, 16), interpolation=cv2.INTER_NEAREST), hash_size=4) < 2**16, \
        "hash_size=4 gives 16 bits"
    color = assets.sample_image("coffee", size=128)
    assert impl.dhash(color) == impl.dhash(cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)), "color hashes as its gray"


@pytest.mark.task("hashing")
def test_near_duplicates_are_close_and_different_photos_are_far(impl):
    photo = assets.sample_image("camera", size=256)
    copies = [cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA),
              cv2.convertScaleAbs(photo, alpha=1.1, beta=15),
              cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_UNCHANGED)]
    base = impl.dhash(photo)
    # measured: 0 (half size), 1 (brighter), 2 (JPEG q=30); the rule of thumb calls <= 10 a duplicate
    near = [bin(base ^ impl.dhash(c)).count("1") for c in copies]
    assert max(near) <= 6, f"resized / brightened / JPEG copies should stay within 6 bits, got {near}"
    # measured: 30 to 33 bits between these photos and the camera
    others = [bin(base ^ impl.dhash(assets.sample_image(name, size=256, gray=True))).count("1")
              for name in ("coins", "moon", "page", "astronaut")]
    assert min(others) > 16, f"different photos should differ by more than 16 bits, got {others}"


@pytest.mark.task("hashing")
def test_hamming_distance(impl):
    assert impl.hamming_distance(0b1011, 0b0010) == 2
    assert impl.hamming_distance(0b1000, 0b0111) == 4, "every one of the four bits differs"
    assert impl.hamming_distance(2**64 - 1, 0) == 64
    assert impl.hamming_distance(12345, 12345) == 0

    @FAST
    @given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
    def check(a, b):
        expected = sum(((a >> i) & 1) != ((b >> i) & 1) for i in range(64))
        assert impl.hamming_distance(a, b) == expected, f"{a:#x} vs {b:#x}: expected {expected}"
    check()


# ------------------------------------------------------------------ vectorise

def cdist(a, b):
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")  # the exact (slow) reference path


@pytest.mark.task("vectorize")
def test_pairwise_l2_matches_cdist(impl):
    g = torch.Generator().manual_seed(0)
    for n, m in ((7, 5), (6, 6), (1, 9)):
        a, b = torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(m, 3, generator=g, dtype=torch.float64)
        got = impl.pairwise_l2(a, b)
        assert tuple(got.shape) == (n, m), f"expected ({n}, {m}), got {tuple(got.shape)}"
        assert_close_to_reference(got, cdist(a, b), atol=1e-9, what=f"{n}x{m} distances vs torch.cdist")


@pytest.mark.task("vectorize")
def test_identical_rows_give_zero_not_nan(impl):
    a = 3 * torch.randn(50, 16, generator=torch.Generator().manual_seed(0))  # float32: rounding makes some
    got = impl.pairwise_l2(a, a.clone())                                    # |a|^2 + |a|^2 - 2 a.a negative
    assert torch.isfinite(got).all(), f"{(~torch.isfinite(got)).sum().item()} NaN distances: clamp before sqrt"
    assert got.diagonal().max() < 0.05, f"a row's distance to itself should be ~0, got {got.diagonal().max():.3g}"


@pytest.mark.task("vectorize")
def test_chunked_equals_unchunked(impl):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    for chunk in (3, 1, 10, 64):  # 3: the last chunk holds one row
        got = impl.chunked_pairwise(a, b, chunk_size=chunk)
        assert tuple(got.shape) == (10, 6), f"chunk_size={chunk}: expected (10, 6), got {tuple(got.shape)}"
        assert_close_to_reference(got, cdist(a, b), atol=1e-9, what=f"chunked distances (chunk_size={chunk})")
