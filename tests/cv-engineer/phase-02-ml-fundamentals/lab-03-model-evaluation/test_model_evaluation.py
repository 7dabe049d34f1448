"""Lab 03 checks: every metric against sklearn.metrics (1e-9) or torchvision.ops.box_iou on seeded data with
ties, plus hand-computed detection cases and the effect of imbalance handling on a seeded problem."""
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
import torchvision.ops
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight


def seeded_labels(seed, n=300, k=4):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    # mostly right, sometimes a random class: realistic confusion, every class present
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    return y_true, y_pred


def tied_scores(seed, n=400):
    """Binary labels with scores rounded to 1 decimal, so many ties span both classes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(np.clip(0.35 * y + rng.normal(0.4, 0.2, n), 0, 1), 1)
    return y, s


# ----------------------------------------------------------------------------- confusion matrix

@pytest.mark.task("confusion-matrix")
def test_confusion_matrix_matches_sklearn(impl):
    for seed in range(3):
        y_true, y_pred = seeded_labels(seed)
        ours, ref = impl.confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred)
        assert np.array_equal(ours, ref), f"seed {seed}: expected\n{ref}\ngot\n{ours}"


@pytest.mark.task("confusion-matrix")
def test_confusion_matrix_string_labels_and_order(impl):
    y_true = np.array(["cat", "dog", "cat", "bird", "dog", "dog"])
    y_pred = np.array(["cat", "cat", "cat", "dog", "dog", "bird"])
    labels = ["dog", "cat", "bird"]
    ours = impl.confusion_matrix(y_true, y_pred, labels=labels)
    ref = skm.confusion_matrix(y_true, y_pred, labels=labels)
    assert np.array_equal(ours, ref), f"with labels={labels}: expected\n{ref}\ngot\n{ours}"


@pytest.mark.task("confusion-matrix")
def test_confusion_matrix_unpredicted_class_and_labels_subset(impl):
    y_true = np.array([0, 1, 2, 2, 1, 0])
    y_pred = np.array([0, 1, 1, 0, 3, 0])  # class 2 is never predicted; class 3 is never true
    ours, ref = impl.confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred)
    assert np.array_equal(ours, ref), f"a class never predicted keeps its (zero) column: expected\n{ref}\ngot\n{ours}"
    # with labels=[0, 1, 2] the sample predicted as 3 is outside the table and is not counted at all
    ours, ref = impl.confusion_matrix(y_true, y_pred, labels=[0, 1, 2]), skm.confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
    assert np.array_equal(ours, ref), f"labels=[0, 1, 2], one prediction outside them: expected\n{ref}\ngot\n{ours}"


# ----------------------------------------------------------------------------- P/R/F1

@pytest.mark.task("prf")
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_prf_multiclass_matches_sklearn(impl, average):
    for seed in range(3):
        y_true, y_pred = seeded_labels(seed)
        p, r, f, _ = impl.precision_recall_f1(y_true, y_pred, average=average)
        rp, rr, rf, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        for name, a, b in (("precision", p, rp), ("recall", r, rr), ("f1", f, rf)):
            assert np.allclose(a, b, atol=1e-9, rtol=0), f"seed {seed}, average={average}: {name} expected {b}, got {a}"


@pytest.mark.task("prf")
def test_prf_binary_and_pos_label(impl):
    y_true = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1])
    y_pred = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0])
    for pos in (1, 0):
        got = impl.precision_recall_f1(y_true, y_pred, "binary", pos_label=pos)[:3]
        ref = skm.precision_recall_fscore_support(y_true, y_pred, average="binary", pos_label=pos)[:3]
        assert np.allclose(got, ref, atol=1e-9), f"pos_label={pos}: expected (P, R, F1) {ref}, got {got}"
    # hand count for pos_label=1: TP=3, FP=2, FN=2 -> P = R = F1 = 0.6
    assert np.allclose(impl.precision_recall_f1(y_true, y_pred)[:3], 0.6), "hand case: expected P = R = F1 = 0.6"
    # an asymmetric case: for pos_label=0, TP=1, FP=2, FN=1 -> P = 1/3, R = 1/2, F1 = 2/(2+2+1) = 2/5
    y_true, y_pred = np.array([1, 1, 1, 1, 0, 0]), np.array([1, 1, 0, 0, 0, 1])
    got = impl.precision_recall_f1(y_true, y_pred, "binary", pos_label=0)[:3]
    assert np.allclose(got, [1 / 3, 1 / 2, 2 / 5]), f"pos_label=0 (TP 1, FP 2, FN 1): expected (1/3, 1/2, 2/5), got {got}"


@pytest.mark.task("prf")
def test_prf_zero_division_and_micro_equals_accuracy(impl):
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 1])  # class 2 is never predicted: its precision is 0/0
    p, r, f, support = impl.precision_recall_f1(y_true, y_pred, average=None)
    rp, rr, rf, rs = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    assert np.allclose(p, rp) and np.allclose(r, rr) and np.allclose(f, rf), \
        f"per class with an unpredicted class: expected P {rp} R {rr} F1 {rf}, got P {p} R {r} F1 {f}"
    assert np.array_equal(support, rs), f"support: expected {rs}, got {support}"
    y_true, y_pred = seeded_labels(7)
    micro = impl.precision_recall_f1(y_true, y_pred, "micro")[2]
    assert abs(micro - skm.accuracy_score(y_true, y_pred)) < 1e-12, "micro-F1 should equal accuracy (single-label)"


def test_prf_rejects_bad_average(impl):
    with pytest.raises(ValueError):
        impl.precision_recall_f1([0, 1], [0, 1], average="samples")


# ----------------------------------------------------------------------------- ROC

@pytest.mark.task("roc")
def test_roc_curve_matches_sklearn_with_ties(impl):
    for seed in range(3):
        y, s = tied_scores(seed)
        fpr, tpr, thr = impl.roc_curve(y, s)
        rf, rt, rth = skm.roc_curve(y, s, drop_intermediate=False)
        assert len(fpr) == len(rf), f"seed {seed}: expected {len(rf)} ROC points (one per distinct score + origin), " \
                                    f"got {len(fpr)}"
        assert np.allclose(fpr, rf, atol=1e-12) and np.allclose(tpr, rt, atol=1e-12), f"seed {seed}: ROC points differ"
        assert np.array_equal(thr, rth), f"seed {seed}: thresholds expected {rth[:5]}..., got {thr[:5]}..."


@pytest.mark.task("roc")
@pytest.mark.parametrize("method", ["rank", "trapezoid"])
def test_roc_auc_matches_sklearn(impl, method):
    for seed in range(4):
        y, s = tied_scores(seed) if seed % 2 else (tied_scores(seed)[0], np.random.default_rng(seed).random(400))
        ours, ref = impl.roc_auc(y, s, method=method), skm.roc_auc_score(y, s)
        assert abs(ours - ref) < 1e-9, f"seed {seed} ({method}): expected AUC {ref:.12f}, got {ours:.12f}"


@pytest.mark.task("roc")
def test_roc_auc_extremes(impl):
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    for method in ("rank", "trapezoid"):
        assert impl.roc_auc(y, s, method) == pytest.approx(1.0), f"{method}: perfect separation should give 1.0"
        assert impl.roc_auc(y, -s, method) == pytest.approx(0.0), f"{method}: inverted scores should give 0.0"
        assert impl.roc_auc(y, np.ones(5), method) == pytest.approx(0.5), f"{method}: all-tied scores should give 0.5"


# ----------------------------------------------------------------------------- PR / AP

@pytest.mark.task("pr-ap")
def test_pr_curve_matches_sklearn_with_ties(impl):
    for seed in range(3):
        y, s = tied_scores(seed)
        p, r, t = impl.precision_recall_curve(y, s)
        rp, rr, rt = skm.precision_recall_curve(y, s)
        assert p.shape == rp.shape, f"seed {seed}: expected {rp.shape} precision values, got {p.shape}"
        assert np.allclose(p, rp, atol=1e-12) and np.allclose(r, rr, atol=1e-12), f"seed {seed}: PR points differ"
        assert np.array_equal(t, rt), f"seed {seed}: thresholds expected {rt[:5]}..., got {t[:5]}..."


@pytest.mark.task("pr-ap")
def test_average_precision_matches_sklearn(impl):
    for seed in range(4):
        y, s = tied_scores(seed) if seed % 2 else (tied_scores(seed)[0], np.random.default_rng(seed).random(400))
        ours, ref = impl.average_precision(y, s), skm.average_precision_score(y, s)
        assert abs(ours - ref) < 1e-9, f"seed {seed}: expected AP {ref:.12f}, got {ours:.12f}"
    # hand case: ranked labels 1, 0, 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert impl.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6), "ranking 1,0,1 should give 5/6"


# ----------------------------------------------------------------------------- IoU

@pytest.mark.task("box-iou")
def test_box_iou_matches_torchvision(impl):
    rng = np.random.default_rng(0)
    xy_a, xy_b = rng.uniform(0, 50, (7, 2)), rng.uniform(0, 50, (5, 2))
    a = np.c_[xy_a, xy_a + rng.uniform(1, 30, (7, 2))]
    b = np.c_[xy_b, xy_b + rng.uniform(1, 30, (5, 2))]
    ours = impl.box_iou(a, b)
    ref = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert ours.shape == (7, 5), f"expected shape (7, 5), got {ours.shape}"
    assert np.allclose(ours, ref, atol=1e-12), f"max gap to torchvision.ops.box_iou {np.abs(ours - ref).max():.2e}"
    assert np.allclose(impl.box_iou(b, a), ours.T), "IoU should be symmetric: box_iou(b, a) == box_iou(a, b).T"


@pytest.mark.task("box-iou")
def test_box_iou_hand_cases(impl):
    got = impl.box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [10, 0, 20, 10]])
    want = [1.0, 25 / 175, 0.0, 0.0]  # identical, quarter overlap, disjoint, touching edge
    assert np.allclose(got, [want]), f"expected {np.round(want, 6)}, got {np.round(got, 6)}"


# ----------------------------------------------------------------------------- detection AP

def hand_case():
    """Three GT boxes of class 0 in one image; five detections, hand-matched at IoU 0.5.

    by score: d0 hits g0 (TP), d1 duplicates g0 (FP), d2 hits g1 (TP), d3 overlaps g2 only 1/3 (FP), d4 hits g2 (TP)
    cumulative: TP 1,1,2,2,3  FP 0,1,1,2,2  -> recall 1/3,1/3,2/3,2/3,1  precision 1,1/2,2/3,1/2,3/5
    envelope: recall (0,1/3] -> 1, (1/3,2/3] -> 2/3, (2/3,1] -> 3/5;  AP = (1 + 2/3 + 3/5) / 3 = 34/45
    """
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    det = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 0, 30, 10], [45, 0, 55, 10], [40, 0, 50, 11]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    return gt, det, scores


@pytest.mark.task("detection-map")
def test_match_detections_hand_case(impl):
    gt, det, scores = hand_case()
    got = impl.match_detections(det, scores, gt, 0.5).tolist()
    assert got == [True, False, True, False, True], f"expected TP,FP(duplicate),TP,FP(IoU 1/3),TP, got {got}"
    shuffled = [4, 2, 0, 3, 1]  # input order must not matter, only the scores
    got = impl.match_detections(det[shuffled], scores[shuffled], gt, 0.5).tolist()
    assert got == [True, True, True, False, False], f"same case shuffled: expected [T, T, T, F, F], got {got}"
    reversed_ = [4, 3, 2, 1, 0]  # the duplicate d1 now comes before d0 in the input; d0 still scores higher
    got = impl.match_detections(det[reversed_], scores[reversed_], gt, 0.5).tolist()
    assert got == [True, False, True, False, True], \
        f"same case reversed: the higher-scored d0 takes g0 and d1 is the duplicate: expected [T, F, T, F, T], got {got}"


@pytest.mark.task("detection-map")
def test_iou_exactly_at_threshold_is_a_hit(impl):
    # the detection covers the top half of the GT box: IoU = 50 / 100 = 0.5 exactly, and the rule is IoU >= 0.5
    gt, det = np.array([[0, 0, 10, 10]], float), np.array([[0, 0, 10, 5]], float)
    got = impl.match_detections(det, [0.9], gt, 0.5).tolist()
    assert got == [True], f"IoU exactly 0.5 at threshold 0.5 counts as a match (>=): expected [True], got {got}"
    m, _ = impl.mean_average_precision([{"boxes": det, "scores": [0.9], "labels": [0]}],
                                       [{"boxes": gt, "labels": [0]}], 0.5)
    assert m == pytest.approx(1.0), f"one detection at IoU exactly 0.5: expected mAP@0.5 = 1, got {m}"


@pytest.mark.task("detection-map")
def test_map_ranks_detections_across_two_images(impl):
    """Image A: one GT, hit by a 0.6 detection. Image B: one GT, a 0.9 false positive and a 0.3 hit.

    ranked over both images: FP 0.9, TP 0.6, TP 0.3 -> recall 0, 1/2, 1 and precision 0, 1/2, 2/3;
    the envelope raises precision at recall 1/2 to 2/3, so AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3
    (without the envelope 1/2 * 1/2 + 1/2 * 2/3 = 7/12; ranked image by image, TP, FP, TP gives 5/6)
    A third image with an undetected GT caps recall at 2/3: AP = 2/3 * 2/3 + 1/3 * 0 = 4/9.
    """
    box = np.array([[0, 0, 10, 10]], float)
    preds = [{"boxes": box, "scores": [0.6], "labels": [0]},
             {"boxes": np.array([[50, 50, 60, 60], [0, 0, 10, 10]], float), "scores": [0.9, 0.3], "labels": [0, 0]}]
    tgts = [{"boxes": box, "labels": [0]}, {"boxes": box, "labels": [0]}]
    m, per = impl.mean_average_precision(preds, tgts, 0.5)
    assert m == pytest.approx(2 / 3, abs=1e-12), f"two images, ranked together: expected AP 2/3, got {m:.6f}"
    ap = impl.voc_ap([0.0, 0.5, 1.0], [0.0, 0.5, 2 / 3])
    assert ap == pytest.approx(2 / 3, abs=1e-12), f"voc_ap on FP, TP, TP with 2 GT: expected the envelope's 2/3, got {ap}"
    # a third image whose GT nobody detects: recall stops at 2/3, and beyond it precision is 0, so AP = 2/3 * 2/3
    m, _ = impl.mean_average_precision([*preds, {"boxes": np.zeros((0, 4)), "scores": [], "labels": []}],
                                       [*tgts, {"boxes": box, "labels": [0]}], 0.5)
    assert m == pytest.approx(4 / 9, abs=1e-12), f"with a third, missed GT: expected AP 4/9, got {m:.6f}"


@pytest.mark.task("detection-map")
def test_map_hand_case_and_voc_ap(impl):
    gt, det, scores = hand_case()
    m, per = impl.mean_average_precision([{"boxes": det, "scores": scores, "labels": np.zeros(5, int)}],
                                         [{"boxes": gt, "labels": np.zeros(3, int)}], 0.5)
    assert m == pytest.approx(34 / 45, abs=1e-12), f"hand case: expected mAP@0.5 = 34/45 = {34 / 45:.6f}, got {m:.6f}"
    ap = impl.voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3), f"voc_ap on TP,FP,TP with 2 GT: expected 5/6, got {ap}"


@pytest.mark.task("detection-map")
def test_map_perfect_jittered_and_multiclass(impl):
    rng = np.random.default_rng(0)
    preds, tgts, jittered = [], [], []
    for _ in range(4):
        xy = rng.uniform(0, 100, (3, 2))
        boxes = np.c_[xy, xy + 40]
        labels = np.array([0, 1, 2])
        tgts.append({"boxes": boxes, "labels": labels})
        preds.append({"boxes": boxes.copy(), "scores": rng.random(3), "labels": labels})
        # shift by 7 px in x: IoU = 33*40 / (47*40) = 0.702 -> a hit at 0.5, a miss at 0.75
        jittered.append({"boxes": boxes + [7, 0, 7, 0], "scores": rng.random(3), "labels": labels})
    m, per = impl.mean_average_precision(preds, tgts, 0.5)
    assert m == pytest.approx(1.0) and sorted(per) == [0, 1, 2], f"predictions == GT: expected mAP 1.0 for 3 classes, got {m}, {per}"
    assert impl.mean_average_precision(jittered, tgts, 0.5)[0] == pytest.approx(1.0), "IoU 0.70 boxes: mAP@0.5 should be 1"
    assert impl.mean_average_precision(jittered, tgts, 0.75)[0] == pytest.approx(0.0), "IoU 0.70 boxes: mAP@0.75 should be 0"
    # a class label swap makes class 2's predictions all wrong: mean over three classes drops to 2/3
    swapped = [{**p, "labels": np.array([0, 1, 1])} for p in preds]
    got = impl.mean_average_precision(swapped, tgts, 0.5)
    assert got[1][2] == pytest.approx(0.0) and got[1][0] == pytest.approx(1.0), f"per-class AP after a label swap: {got[1]}"
    assert got[0] == pytest.approx(np.mean([1.0, got[1][1], 0.0])), \
        f"class 2 is never predicted but has ground truth: it counts as AP 0 in the mean, got mAP {got[0]} from {got[1]}"


# ----------------------------------------------------------------------------- imbalance

@pytest.fixture(scope="module")
def imbalanced():
    X, y = make_classification(n_samples=3000, n_features=20, n_informative=5, weights=[0.95], class_sep=0.8,
                               flip_y=0.01, random_state=0)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.mark.task("imbalance")
def test_balanced_weights_match_sklearn(impl):
    y = np.array([0] * 90 + [1] * 10)
    got = impl.balanced_class_weights(y)
    assert got[0] == pytest.approx(100 / 180) and got[1] == pytest.approx(5.0), f"[90, 10]: expected 0.556 and 5.0, got {got}"
    y = np.random.default_rng(0).choice([3, 5, 8], 500, p=[0.7, 0.2, 0.1])
    ref = compute_class_weight("balanced", classes=np.array([3, 5, 8]), y=y)
    got = impl.balanced_class_weights(y)
    assert np.allclose([got[3], got[5], got[8]], ref), f"expected sklearn's {ref}, got {got}"


@pytest.mark.task("imbalance")
def test_oversample_balances_with_original_rows(impl, imbalanced):
    X_tr, _, y_tr, _ = imbalanced
    X2, y2 = impl.random_oversample(X_tr, y_tr, seed=0)
    counts = np.bincount(y2)
    assert counts[0] == counts[1] == np.bincount(y_tr).max(), f"expected both classes at {np.bincount(y_tr).max()}, got {counts}"
    missing = {r.tobytes() for r in X_tr} - {r.tobytes() for r in X2}
    assert not missing, f"every original row should be kept; {len(missing)} are gone"
    originals = {r.tobytes(): c for r, c in zip(X_tr, y_tr)}
    assert all(originals.get(r.tobytes()) == c for r, c in zip(X2, y2)), "oversampled rows must be copies of rows of their class"


@pytest.mark.task("imbalance")
def test_imbalance_handling_raises_minority_recall(impl, imbalanced):
    X_tr, X_te, y_tr, y_te = imbalanced
    recall = {}
    for strategy in ("none", "weights", "oversample"):
        pred = impl.fit_logreg(X_tr, y_tr, strategy, seed=0).predict(X_te)
        recall[strategy] = skm.recall_score(y_te, pred)
        if strategy != "none":
            bal = skm.balanced_accuracy_score(y_te, pred)
            assert recall[strategy] > recall["none"] + 0.2, \
                f"{strategy}: expected minority recall well above the unweighted model's {recall['none']:.3f}, got {recall[strategy]:.3f}"
            assert bal > 0.75, f"{strategy}: expected balanced accuracy > 0.75, got {bal:.3f}"


@pytest.mark.task("roc")
def test_curves_png(impl, tmp_path):
    y, s = tied_scores(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        impl.plot_curves(y, {"a": s, "b": np.random.default_rng(0).random(len(y))}, tmp_path / "c.png")
    data = (tmp_path / "c.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, "expected a non-trivial PNG figure"
