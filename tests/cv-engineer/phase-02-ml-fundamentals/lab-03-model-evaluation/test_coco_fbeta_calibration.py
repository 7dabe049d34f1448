"""Lab 03 checks for COCO-style detection AP (against pycocotools' COCOeval on the same detections, written as
COCO JSON by the test itself), F-beta (against sklearn.metrics.fbeta_score) and calibration (against
sklearn.calibration.calibration_curve, hand-worked ECE values and synthetic models of known calibration)."""
import contextlib
import io
import json

import numpy as np
import pytest
import sklearn.metrics as skm
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.calibration import calibration_curve as sk_calibration_curve


# ----------------------------------------------------------------------------- COCO reference, written here

def to_coco(predictions, targets, folder):
    """The test's own COCO JSON writer (boxes as [x, y, w, h], annotation ids from 1)."""
    images, anns, dets, cats = [], [], [], set()
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i})
        for (x1, y1, x2, y2), c in zip(np.asarray(t["boxes"], float).reshape(-1, 4), np.asarray(t["labels"]).reshape(-1)):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
            cats.add(int(c))
        for (x1, y1, x2, y2), c, s in zip(np.asarray(p["boxes"], float).reshape(-1, 4), np.asarray(p["labels"]).reshape(-1),
                                          np.asarray(p["scores"], float).reshape(-1)):
            dets.append({"image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
            cats.add(int(c))
    gt_path, dt_path = folder / "ref_gt.json", folder / "ref_dt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": anns,
                                   "categories": [{"id": c, "name": str(c)} for c in sorted(cats)]}))
    dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path


def cocoeval_stats(gt_path, dt_path):
    """pycocotools' summary: [AP@.5:.95, AP@.5, AP@.75, ...] (area all, 100 detections per image)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(dt_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def generated(seed, n_images=12, jitter=2.5, decimals=None):
    """Detections of 3 classes: 0, 1 or 2 jittered copies of each object (duplicates), random false positives
    (some of a class with no ground truth at all), scores optionally rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        gt = np.c_[xy, xy + rng.uniform(10, 60, (n, 2))]
        labels = rng.integers(0, 3, n)
        copies = rng.integers(0, 3, n)
        det = np.repeat(gt, copies, axis=0) + rng.normal(0, jitter, (copies.sum(), 4))
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        n_fp = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 200, (n_fp, 2))
        scores = rng.random(copies.sum() + n_fp)
        if decimals is not None:
            scores = np.round(scores, decimals)
        predictions.append({"boxes": np.r_[det, np.c_[fxy, fxy + rng.uniform(10, 60, (n_fp, 2))]],
                            "labels": np.r_[np.repeat(labels, copies), rng.integers(0, 4, n_fp)], "scores": scores})
        targets.append({"boxes": gt, "labels": labels})
    return predictions, targets


# ----------------------------------------------------------------------------- coco-map

@pytest.mark.task("coco-map")
def test_coco_ap_101_points_by_hand(impl):
    # recall reaches 0.5 at precision 1, then 1.0 at precision 0.5: the 51 points r = 0..0.50 see 1.0, the 50
    # points r = 0.51..1 see 0.5: (51 + 25) / 101 (VOC's all-point area would be 0.75)
    assert np.isclose(impl.coco_ap([0.5, 1.0], [1.0, 0.5]), 76 / 101), f"expected 76/101, got {impl.coco_ap([0.5, 1.0], [1.0, 0.5])}"
    # the envelope: precision 0.5 then 2/3 at a higher recall -> the first half also sees 2/3
    got = impl.coco_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
    assert np.isclose(got, (51 * 1.0 + 50 * 2 / 3) / 101), f"expected (51 + 50·2/3)/101, got {got}"
    got = impl.coco_ap([0.25, 0.5], [1.0, 1.0])  # recall stops at 0.5: the 50 points above it add 0
    assert np.isclose(got, 51 / 101), f"recall levels never reached count as 0: expected 51/101, got {got}"
    assert impl.coco_ap([], []) == 0.0, "no detections give AP 0"


@pytest.mark.task("coco-map")
def test_coco_matching_takes_the_best_free_ground_truth(impl):
    gt = [[0, 0, 10, 10], [4, 0, 14, 10]]  # two overlapping objects
    det = [[0, 0, 10, 10], [1, 0, 11, 10]]  # det 1: IoU 9/11 with GT 0 (taken by det 0), 7/13 with GT 1
    got = impl.match_detections_coco(det, [0.9, 0.8], gt, 0.5)
    assert got.tolist() == [True, True], \
        f"COCO matches the second detection to the free GT 1 (IoU 7/13 >= 0.5), so both are TPs; got {got.tolist()}"
    # IoU exactly 0.5 is a match at threshold 0.5
    got = impl.match_detections_coco([[0, 0, 10, 5]], [0.5], [[0, 0, 10, 10]], 0.5)
    assert got.tolist() == [True], f"IoU exactly 0.5 counts at threshold 0.5 (>=); got {got.tolist()}"


@pytest.mark.task("coco-map")
@pytest.mark.parametrize("seed,decimals", [(0, None), (1, None), (2, 1), (3, 1)])
def test_coco_map_matches_pycocotools(impl, tmp_path, seed, decimals):
    preds, tgts = generated(seed, decimals=decimals)
    ref = cocoeval_stats(*to_coco(preds, tgts, tmp_path))
    got = impl.coco_map(preds, tgts)
    ours = [got["map"], got["map_50"], got["map_75"]]
    assert np.allclose(ours, ref[:3], atol=1e-9), \
        f"seed {seed}: (mAP@.5:.95, @.5, @.75) = {np.round(ours, 6).tolist()}, pycocotools' COCOeval gives " \
        f"{np.round(ref[:3], 6).tolist()}"


@pytest.mark.task("coco-map")
def test_coco_map_keeps_100_detections_per_image(impl, tmp_path):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 900, (70, 2))
    gt = np.c_[xy, xy + 30]
    det = np.repeat(gt, 2, axis=0) + rng.normal(0, 1.0, (140, 4))  # 140 detections of one class in one image
    preds = [{"boxes": det, "labels": np.zeros(140, int), "scores": rng.random(140)}]
    tgts = [{"boxes": gt, "labels": np.zeros(70, int)}]
    ref = cocoeval_stats(*to_coco(preds, tgts, tmp_path))
    got = impl.coco_map(preds, tgts)
    assert np.isclose(got["map_50"], ref[1], atol=1e-9), \
        f"only each image's 100 best-scored detections count: pycocotools gives AP@.5 {ref[1]:.6f}, got {got['map_50']:.6f}"


@pytest.mark.task("coco-map")
def test_coco_map_is_one_for_perfect_detections_and_falls_with_jitter(impl):
    preds, tgts = generated(7, jitter=0.0)
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": np.ones(len(t["labels"]))} for t in tgts]
    got = impl.coco_map(perfect, tgts)
    assert np.isclose(got["map"], 1.0) and np.isclose(got["map_50"], 1.0), f"detections equal to GT give 1.0, got {got}"
    shifted = [{"boxes": t["boxes"] + [3, 0, 3, 0], "labels": t["labels"], "scores": np.ones(len(t["labels"]))} for t in tgts]
    got = impl.coco_map(shifted, tgts)
    assert np.isclose(got["map_50"], 1.0) and got["map"] < 0.95, \
        f"3 px shifts keep every match at IoU 0.5 but not at 0.95: expected map_50 1.0 and map < 0.95, got {got}"


@pytest.mark.task("coco-map")
def test_write_coco_json_reads_back_in_pycocotools(impl, tmp_path):
    preds, tgts = generated(4)
    # the very first ground-truth box is found exactly: with annotation ids from 0, pycocotools would store the
    # match as id 0, which it reads as "no match", and the detection would count as a false positive
    tgts[0] = {"boxes": np.r_[[[10.0, 10.0, 50.0, 40.0]], tgts[0]["boxes"]], "labels": np.r_[0, tgts[0]["labels"]]}
    preds[0] = {"boxes": np.r_[[[10.0, 10.0, 50.0, 40.0]], preds[0]["boxes"]], "labels": np.r_[0, preds[0]["labels"]],
                "scores": np.r_[0.99, preds[0]["scores"]]}
    gt_path, dt_path = impl.write_coco_json(preds, tgts, tmp_path / "ours")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[0]))[0]
    x1, y1, x2, y2 = tgts[0]["boxes"][0]
    assert np.allclose(ann["bbox"], [x1, y1, x2 - x1, y2 - y1]) and np.isclose(ann["area"], (x2 - x1) * (y2 - y1)), \
        f"COCO boxes are [x, y, width, height] with area w·h: expected {[x1, y1, x2 - x1, y2 - y1]}, got {ann['bbox']}"
    assert len(coco.getAnnIds()) == sum(len(t["labels"]) for t in tgts), "one annotation per ground-truth box"
    ours = cocoeval_stats(gt_path, dt_path)
    ref = cocoeval_stats(*to_coco(preds, tgts, tmp_path))
    assert np.allclose(ours, ref, atol=1e-12), f"COCOeval on your files {np.round(ours[:3], 4)} vs on the reference files {np.round(ref[:3], 4)}"


# ----------------------------------------------------------------------------- f-beta

def labels(seed, n=300, k=4):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.55, y_true, rng.integers(0, k, n))
    return y_true, y_pred


@pytest.mark.task("f-beta")
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 3.0])
def test_fbeta_matches_sklearn(impl, beta):
    for seed in range(3):
        y_true, y_pred = labels(seed)
        for average in ("macro", "micro", "weighted", None):
            ref = skm.fbeta_score(y_true, y_pred, beta=beta, average=average, zero_division=0)
            got = impl.fbeta(y_true, y_pred, beta, average)
            assert np.allclose(got, ref, atol=1e-12), f"seed {seed}, beta {beta}, average {average}: expected {ref}, got {got}"
        yb, pb = (y_true == 1).astype(int), (y_pred == 1).astype(int)
        for pos in (0, 1):
            ref = skm.fbeta_score(yb, pb, beta=beta, pos_label=pos)
            got = impl.fbeta(yb, pb, beta, "binary", pos_label=pos)
            assert np.isclose(got, ref, atol=1e-12), f"binary, pos_label {pos}, beta {beta}: expected {ref}, got {got}"


@pytest.mark.task("f-beta")
def test_fbeta_by_hand(impl):
    # TP = 2, FP = 2, FN = 0: P = 0.5, R = 1
    y_true, y_pred = [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]
    f2, f05 = impl.fbeta(y_true, y_pred, 2.0), impl.fbeta(y_true, y_pred, 0.5)
    assert np.isclose(f2, 5 * 0.5 / (4 * 0.5 + 1)), f"F2 = 5·0.5·1/(4·0.5 + 1) = 0.8333 (recall counts more), got {f2}"
    assert np.isclose(f05, 1.25 * 0.5 / (0.25 * 0.5 + 1)), f"F0.5 = 1.25·0.5/(0.25·0.5 + 1) = 0.5556, got {f05}"
    # a class that is never predicted scores 0, and that 0 counts in the macro mean
    got = impl.fbeta([0, 1, 2, 2], [0, 1, 1, 1], 2.0, None)
    assert np.allclose(got, [1.0, 5 / 7, 0.0]), \
        f"per class expected [1, 5/7, 0] (class 1: TP 1, FP 2, FN 0 -> 5·1/(5·1 + 4·0 + 2)), got {got}"


# ----------------------------------------------------------------------------- calibration

@pytest.fixture(scope="module")
def probs():
    """Probabilities with values exactly on bin edges (0, 0.1, 0.2, 0.5, 0.9, 1) and a loosely calibrated rest."""
    rng = np.random.default_rng(0)
    p = np.r_[rng.beta(2, 3, 500), [0.0, 0.1, 0.1, 0.2, 0.5, 0.5, 0.9, 1.0, 1.0]]
    y = (rng.random(len(p)) < p ** 1.3).astype(int)
    return y, p


@pytest.mark.task("calibration")
@pytest.mark.parametrize("n_bins", [5, 10, 15])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_curve_matches_sklearn(impl, probs, n_bins, strategy):
    y, p = probs
    ref_true, ref_pred = sk_calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    got_true, got_pred = impl.calibration_curve(y, p, n_bins, strategy)
    assert len(got_true) == len(ref_true) and np.allclose(got_true, ref_true, atol=1e-12) \
        and np.allclose(got_pred, ref_pred, atol=1e-12), \
        f"{strategy}, {n_bins} bins: expected fraction of positives {np.round(ref_true, 3)} at mean probability " \
        f"{np.round(ref_pred, 3)}, got {np.round(got_true, 3)} at {np.round(got_pred, 3)} (empty bins are dropped; " \
        "a probability on an inner edge belongs to the lower bin)"


@pytest.mark.task("calibration")
def test_calibration_edges_are_right_closed(impl):
    y = [0, 1, 1, 0]
    got_true, got_pred = impl.calibration_curve(y, [0.1, 0.15, 0.5, 0.55], n_bins=10)
    assert np.allclose(got_pred, [0.1, 0.15, 0.5, 0.55]) and np.allclose(got_true, [0, 1, 1, 0]), \
        f"0.1 is in (0, 0.1], 0.15 in (0.1, 0.2], 0.5 in (0.4, 0.5], 0.55 in (0.5, 0.6]: four bins; got " \
        f"{np.round(got_pred, 3)}, {np.round(got_true, 3)}"


@pytest.mark.task("calibration")
def test_ece_by_hand_and_against_sklearn_bins(impl, probs):
    # bin (0.1, 0.2]: 3 samples, 1/3 positive at mean 0.2 -> |gap| 0.1333, weight 3/4; bin (0.7, 0.8]: 1 sample,
    # positive at 0.8 -> 0.2, weight 1/4. ECE = 0.75·0.1333 + 0.25·0.2 = 0.15 (an unweighted mean would say 0.1667)
    got = impl.expected_calibration_error([0, 1, 0, 1], [0.2, 0.2, 0.2, 0.8], 10)
    assert np.isclose(got, 0.15), f"expected ECE 0.15, got {got}"
    y, p = probs
    frac, mean_p = sk_calibration_curve(y, p, n_bins=10)
    edges = np.linspace(0, 1, 11)
    counts = [np.sum((p > lo) & (p <= hi)) + (np.sum(p == 0) if lo == 0 else 0) for lo, hi in zip(edges[:-1], edges[1:])]
    counts = np.array([c for c in counts if c > 0])
    ref = float(np.sum(counts / len(p) * np.abs(frac - mean_p)))
    assert np.isclose(impl.expected_calibration_error(y, p, 10), ref, atol=1e-12), \
        f"ECE should be the count-weighted mean |gap| of sklearn's calibration_curve bins, {ref:.6f}; got " \
        f"{impl.expected_calibration_error(y, p, 10):.6f}"


@pytest.mark.task("calibration")
def test_ece_of_calibrated_and_overconfident_models(impl):
    # labels drawn as Bernoulli(p) are calibrated by construction; drawn as Bernoulli(p²) the model says p where
    # the truth is p² < p, so ECE ≈ E[p − p²] = 1/2 − 1/3 = 1/6. Measured over seeds 0-9 with N = 20,000:
    # calibrated ECE 0.003-0.010, over-confident 0.161-0.173 (the test uses seed 0: 0.007 and 0.166)
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    u = rng.random(20_000)
    calibrated = impl.expected_calibration_error((u < p).astype(int), p, 10)
    over = impl.expected_calibration_error((u < p ** 2).astype(int), p, 10)
    assert calibrated < 0.02, f"a calibrated model should have ECE near 0, got {calibrated:.4f}"
    assert abs(over - 1 / 6) < 0.015, f"over-confident by p - p²: expected ECE ≈ 1/6 = 0.1667, got {over:.4f}"
