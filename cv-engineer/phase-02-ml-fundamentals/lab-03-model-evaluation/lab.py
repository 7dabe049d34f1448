"""Lab 03 · Model evaluation: classification metrics, ROC/PR curves, box IoU and detection mAP, from scratch.

Every number a CV engineer reports comes from a handful of counts. This lab rebuilds them with NumPy only
(pycocotools appears only as the cross-check of COCO mAP):

- the confusion matrix, and precision / recall / F1 with binary, macro, micro and weighted averaging;
- the ROC curve and its area (by the trapezoid rule and by ranks: AUC = P(score of a positive > a negative));
- the precision-recall curve and average precision (sklearn's step-wise sum, no interpolation);
- F-beta, which trades precision for recall (β > 1 favours recall);
- pairwise box IoU and VOC-style mAP@0.5 (greedy matching, all-point interpolated AP);
- COCO-style 101-point AP and mAP@0.5:0.95, written out as COCO JSON and cross-checked with pycocotools;
- calibration: the reliability diagram and the expected calibration error (ECE);
- class-imbalance handling: balanced class weights and random oversampling for a logistic regression.

Each one is checked against sklearn.metrics, torchvision.ops or pycocotools in the tests.

Run it:  python solution.py [--samples 4000] [--minority 0.05]
Outputs: outputs/.../roc_pr_curves.png, reliability.png, coco/gt.json, coco/detections.json
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AVERAGES = ("binary", "macro", "micro", "weighted", None)


def _as_1d(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}; flatten it with .ravel()")
    return a


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_1d("y_true", y_true), _as_1d("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} entries but y_pred/y_score has {y_pred.size}; pass one "
                         "prediction per sample")
    return y_true, y_pred


def _check_binary(y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"binary curves need labels in {{0, 1}}, got {np.unique(y)[:5]}; map the positive "
                         "class to 1 first")
    if y.min() == y.max():
        raise ValueError("y_true holds a single class: ROC and PR curves need both positives and negatives")
    return y.astype(np.int64)


# ----------------------------------------------------------------------------- counting

def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class, in the order of `labels`.

    `labels` defaults to the sorted union of the values in y_true and y_pred (sklearn's convention).
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    # TODO [confusion-matrix]: Map each label to its index, then count (true, pred) index pairs.
    raise NotImplementedError('TODO [confusion-matrix]: Map each label to its index, then count (true, pred) index pairs.')


def precision_recall_f1(y_true, y_pred, average: str | None = "binary", pos_label=1):
    """Precision, recall, F1 and support, like sklearn's precision_recall_fscore_support.

    Per class c: P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R) = 2TP/(2TP+FP+FN); a 0/0 counts as 0.
      binary   -> the scores of `pos_label` only
      macro    -> unweighted mean of the per-class scores (every class counts the same)
      micro    -> pool TP, FP, FN over classes first (single-label: P = R = F1 = accuracy)
      weighted -> mean of per-class scores weighted by support (the true count of each class)
      None     -> per-class arrays in sorted label order
    Returns (precision, recall, f1, support); support is None for averaged results, like sklearn.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary":
        if len(labels) > 2:
            raise ValueError(f"average='binary' needs at most two classes, found {len(labels)}; use 'macro', "
                             "'micro' or 'weighted'")
        if pos_label not in labels.tolist():
            raise ValueError(f"pos_label={pos_label!r} is not among the labels {labels.tolist()}")
    # TODO [prf]: Get TP/FP/FN per class from the confusion matrix; divide safely; then average.
    raise NotImplementedError('TODO [prf]: Get TP/FP/FN per class from the confusion matrix; divide safely; then average.')


# ----------------------------------------------------------------------------- ranking curves

def average_ranks(x) -> np.ndarray:
    """1-based ranks of x, ties sharing the mean of the ranks they span (scipy.stats.rankdata 'average')."""
    x = _as_1d("x", x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # a new group starts wherever the sorted value changes
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]  # exclusive
    group_rank = (starts + 1 + ends) / 2.0  # mean of the ranks starts+1 .. ends
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def _descending_counts(y_true, y_score):
    """Sort by score (high first) and count TP and FP above each distinct threshold.

    Returns (tps, fps, thresholds), each of length = number of distinct scores, thresholds descending.
    """
    y_true, y_score = _check_pair(y_true, y_score)
    y = _check_binary(y_true)
    # TODO [roc]: Stable descending sort; cumulative sums; keep the last index of each run of equal scores.
    raise NotImplementedError('TODO [roc]: Stable descending sort; cumulative sums; keep the last index of each run of equal scores.')


def roc_curve(y_true, y_score):
    """(fpr, tpr, thresholds): one point per distinct score plus the origin (threshold +inf).

    Predict positive when score >= threshold. TPR = TP/P, FPR = FP/N. Equals
    sklearn.metrics.roc_curve(..., drop_intermediate=False).
    """
    tps, fps, thresholds = _descending_counts(y_true, y_score)
    # TODO [roc]: Prepend the (0, 0) point; divide by the number of positives and negatives.
    raise NotImplementedError('TODO [roc]: Prepend the (0, 0) point; divide by the number of positives and negatives.')


def roc_auc(y_true, y_score, method: str = "rank") -> float:
    """Area under the ROC curve.

    method="trapezoid": integrate the ROC curve (ties give a diagonal segment = half credit).
    method="rank": Mann-Whitney U / (P·N) = (sum of positives' average ranks - P(P+1)/2) / (P·N), i.e. the
    probability that a random positive outscores a random negative, ties counting one half.
    """
    if method not in ("rank", "trapezoid"):
        raise ValueError(f"method must be 'rank' or 'trapezoid', got {method!r}")
    y_true, y_score = _check_pair(y_true, y_score)
    y = _check_binary(y_true)
    # TODO [roc]: Trapezoid: np.trapezoid over (fpr, tpr). Rank: average ranks of the positives.
    raise NotImplementedError('TODO [roc]: Trapezoid: np.trapezoid over (fpr, tpr). Rank: average ranks of the positives.')


def precision_recall_curve(y_true, y_score):
    """(precision, recall, thresholds) in sklearn's layout.

    thresholds ascending (one per distinct score); precision/recall follow them, with a final (1, 0) point
    that has no threshold. Precision at threshold t = TP/(TP+FP) counting every score >= t.
    """
    tps, fps, thresholds = _descending_counts(y_true, y_score)
    # TODO [pr-ap]: Precision and recall per threshold, reverse to ascending, append (1, 0).
    raise NotImplementedError('TODO [pr-ap]: Precision and recall per threshold, reverse to ascending, append (1, 0).')


def average_precision(y_true, y_score) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over thresholds: the PR curve as a step function, no interpolation.

    This is sklearn's average_precision_score. (Detection AP below interpolates instead.)
    """
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    # TODO [pr-ap]: Arrays run from high recall to low: use -diff(recall) as the steps.
    raise NotImplementedError('TODO [pr-ap]: Arrays run from high recall to low: use -diff(recall) as the steps.')


# ----------------------------------------------------------------------------- detection

def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise IoU of (M, 4) and (N, 4) boxes in (x1, y1, x2, y2) continuous coordinates -> (M, N).

    IoU = |A ∩ B| / (|A| + |B| - |A ∩ B|); the intersection's width and height are clamped at 0.
    Same convention as torchvision.ops.box_iou (area = (x2 - x1)(y2 - y1), no +1).
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4) if np.size(boxes_a) == 0 else np.asarray(boxes_a, np.float64)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4) if np.size(boxes_b) == 0 else np.asarray(boxes_b, np.float64)
    for name, x in (("boxes_a", a), ("boxes_b", b)):
        if x.ndim != 2 or x.shape[1] != 4:
            raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {x.shape}")
        if (x[:, 2] < x[:, 0]).any() or (x[:, 3] < x[:, 1]).any():
            raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1; convert (x, y, w, h) boxes to corners")
    # TODO [box-iou]: Broadcast (M,1,2) against (1,N,2) for the overlap corners; clamp at 0.
    raise NotImplementedError('TODO [box-iou]: Broadcast (M,1,2) against (1,N,2) for the overlap corners; clamp at 0.')


def voc_ap(recall, precision) -> float:
    """All-point interpolated AP (VOC 2010+): area under the precision envelope p_interp(r) = max_{r' >= r} p(r').

    `recall`/`precision` are the cumulative values down the ranked detection list (recall non-decreasing).
    """
    # TODO [detection-map]: Sentinels (0, ..., 1) and (0, ..., 0); running max from the right; sum Δr·p.
    raise NotImplementedError('TODO [detection-map]: Sentinels (0, ..., 1) and (0, ..., 0); running max from the right; sum Δr·p.')


def match_detections(det_boxes, det_scores, gt_boxes, iou_threshold: float = 0.5) -> np.ndarray:
    """Mark each detection of ONE class in ONE image as TP (True) or FP (False).

    Pascal VOC's rule: detections are visited by descending score (stable on ties); each looks at the
    ground-truth box it overlaps most, matched or not. If that IoU >= threshold and the box is still free, the
    detection is a TP and takes it; if that box is already taken, the detection is a duplicate: FP (it does not
    fall back to its second-best box; COCO's rule does, see match_detections_coco).
    Returns a bool array aligned with the input order.
    """
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    if len(det_scores) != len(det_boxes):
        raise ValueError(f"{len(det_boxes)} boxes but {len(det_scores)} scores; pass one score per box")
    # TODO [detection-map]: IoU matrix once; greedy over detections by score; a GT is used at most once.
    raise NotImplementedError('TODO [detection-map]: IoU matrix once; greedy over detections by score; a GT is used at most once.')


def mean_average_precision(predictions: list[dict], targets: list[dict], iou_threshold: float = 0.5):
    """VOC-style mAP: per class, rank all its detections over all images, accumulate TP/FP, AP by voc_ap.

    predictions[i] = {"boxes": (N, 4), "scores": (N,), "labels": (N,)} for image i;
    targets[i] = {"boxes": (G, 4), "labels": (G,)}. Classes with no ground truth are skipped.
    Returns (mAP, {class: AP}).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction dicts for {len(targets)} target dicts; give one per image")
    # TODO [detection-map]: Per class: match per image, pool (score, is_tp), sort, cumsum, voc_ap.
    raise NotImplementedError('TODO [detection-map]: Per class: match per image, pool (score, is_tp), sort, cumsum, voc_ap.')


# ----------------------------------------------------------------------------- F-beta

def fbeta(y_true, y_pred, beta: float = 1.0, average: str | None = "binary", pos_label=1):
    """F-beta, like sklearn's fbeta_score: F_β = (1 + β²)·P·R / (β²·P + R) = (1 + β²)TP / ((1 + β²)TP + β²FN + FP).

    β > 1 weighs recall more (missing a tumour costs more than a false alarm), β < 1 weighs precision more
    (a spam filter), β = 1 is F1. Averaging as in precision_recall_f1: binary, macro (mean of per-class F_β),
    micro (pooled counts), weighted (by support), None (per class). A 0/0 counts as 0.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary" and (len(labels) > 2 or pos_label not in labels.tolist()):
        raise ValueError(f"average='binary' needs two classes including pos_label={pos_label!r}, got labels "
                         f"{labels.tolist()}; use 'macro', 'micro' or 'weighted'")
    # TODO [f-beta]: Per-class TP/FP/FN from the confusion matrix; the count form of F_β; then average.
    raise NotImplementedError('TODO [f-beta]: Per-class TP/FP/FN from the confusion matrix; the count form of F_β; then average.')


# ----------------------------------------------------------------------------- COCO-style detection AP

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50, 0.55, ..., 0.95
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # 0.00, 0.01, ..., 1.00


def coco_ap(recall, precision) -> float:
    """101-point interpolated AP (COCO): AP = (1/101) Σ_{r ∈ {0, 0.01, ..., 1}} max_{r' >= r} p(r').

    `recall`/`precision` are the cumulative values down the ranked detection list (recall non-decreasing). A
    recall level the list never reaches contributes 0.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    # TODO [coco-map]: Envelope (running max from the right); for each recall point the first index with recall >= r.
    raise NotImplementedError('TODO [coco-map]: Envelope (running max from the right); for each recall point the first index with recall >= r.')


def match_detections_coco(det_boxes, det_scores, gt_boxes, iou_threshold: float) -> np.ndarray:
    """COCO's matching for ONE class in ONE image: detections by descending score (stable on ties), each takes
    the best-overlapping ground truth that is still unmatched, if that IoU >= threshold. (VOC's rule differs: it
    looks at the best ground truth overall and calls the detection a duplicate if that one is taken.)
    Returns a bool TP array aligned with the input order."""
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    # TODO [coco-map]: IoU matrix; greedy by score; mask taken GTs out before choosing the best.
    raise NotImplementedError('TODO [coco-map]: IoU matrix; greedy by score; mask taken GTs out before choosing the best.')


def coco_map(predictions: list[dict], targets: list[dict], iou_thresholds=COCO_IOU_THRESHOLDS, max_dets: int = 100):
    """COCO-style mAP (area "all"): per class and IoU threshold, keep each image's `max_dets` highest-scored
    detections, match them with match_detections_coco, rank all images' detections together (images in order,
    then by descending score, stable), and take coco_ap. Classes without ground truth are left out.

    Same inputs as mean_average_precision. Returns {"map": mean over thresholds and classes (mAP@0.5:0.95),
    "map_50", "map_75" (the thresholds 0.5 and 0.75 alone, when present), "per_class": {class: AP over thresholds}}.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction dicts for {len(targets)} target dicts; give one per image")
    thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
    # TODO [coco-map]: ap[t, c]: per image cap at max_dets by score, match, pool, stable sort, cumsum, coco_ap.
    raise NotImplementedError('TODO [coco-map]: ap[t, c]: per image cap at max_dets by score, match, pool, stable sort, cumsum, coco_ap.')


def write_coco_json(predictions: list[dict], targets: list[dict], folder) -> tuple[Path, Path]:
    """Write ground truth and detections in COCO's JSON formats, for pycocotools or any COCO tool.

    gt.json: {"images": [{"id"}], "categories": [{"id", "name"}], "annotations": [{"id" (from 1), "image_id",
    "category_id", "bbox": [x, y, w, h], "area": w·h, "iscrowd": 0}]}; detections.json: a list of
    {"image_id", "category_id", "bbox": [x, y, w, h], "score"}. Image i gets id i; a class keeps its label as id.
    COCO boxes are (x, y, width, height), not corners. Returns (gt path, detections path).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # TODO [coco-map]: Corners -> [x, y, w, h] as plain floats; annotation ids start at 1 (0 is falsy in pycocotools).
    raise NotImplementedError('TODO [coco-map]: Corners -> [x, y, w, h] as plain floats; annotation ids start at 1 (0 is falsy in pycocotools).')


def pycocotools_stats(gt_path, dt_path) -> np.ndarray:
    """Run pycocotools' COCOeval (bbox) on two JSON files, quietly; returns its 12 summary numbers
    (stats[0] = AP@[.5:.95], stats[1] = AP@.5, stats[2] = AP@.75, all areas, 100 detections per image)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(str(dt_path)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


# ----------------------------------------------------------------------------- calibration

def calibration_curve(y_true, y_prob, n_bins: int = 10, strategy: str = "uniform"):
    """Reliability diagram data, like sklearn.calibration.calibration_curve: (fraction of positives, mean
    predicted probability) per non-empty bin, bins in increasing order.

    strategy "uniform": n_bins equal-width bins on [0, 1]; "quantile": edges at the quantiles of y_prob (equal
    counts). Bins are closed on the right: a probability exactly on an inner edge belongs to the lower bin.
    """
    y_true, y_prob = _check_pair(y_true, y_prob)
    y = _check_binary(y_true)
    y_prob = y_prob.astype(np.float64)
    if y_prob.min() < 0 or y_prob.max() > 1:
        raise ValueError(f"y_prob must lie in [0, 1], got [{y_prob.min():.3g}, {y_prob.max():.3g}]; pass "
                         "probabilities (predict_proba), not scores or logits")
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    # TODO [calibration]: Edges; bin id = np.searchsorted(inner edges, p) (right-closed); bincount sums; drop empties.
    raise NotImplementedError('TODO [calibration]: Edges; bin id = np.searchsorted(inner edges, p) (right-closed); bincount sums; drop empties.')


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / N) · |fraction of positives in b − mean predicted probability in b|, over n_bins uniform,
    right-closed bins (the same bins as calibration_curve). 0 for a perfectly calibrated model."""
    y_true, y_prob = _check_pair(y_true, y_prob)
    y = _check_binary(y_true)
    # TODO [calibration]: Same binning; weight each bin's |gap| by its share of the samples.
    raise NotImplementedError("TODO [calibration]: Same binning; weight each bin's |gap| by its share of the samples.")


def plot_reliability(y_true, probs_by_name: dict, path, n_bins: int = 10) -> None:
    """Reliability diagram (fraction of positives vs mean predicted probability per bin) with the diagonal of
    perfect calibration, and a histogram of the predicted probabilities underneath; saved as a PNG."""
    fig, (ax, ax_hist) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    for name, p in probs_by_name.items():
        frac, mean_p = calibration_curve(y_true, p, n_bins)
        ax.plot(mean_p, frac, "o-", label=f"{name} (ECE {expected_calibration_error(y_true, p, n_bins):.3f})")
        ax_hist.hist(p, bins=np.linspace(0, 1, n_bins + 1), histtype="step", label=name)
    ax.set(ylabel="fraction of positives", title="Reliability diagram", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_hist.set(xlabel="mean predicted probability", ylabel="count", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- class imbalance

def balanced_class_weights(y) -> dict:
    """weight[c] = N / (K · N_c): rare classes weigh more, and the weighted class totals are all N/K."""
    y = _as_1d("y", y)
    # TODO [imbalance]: Count each class; N / (K * count).
    raise NotImplementedError('TODO [imbalance]: Count each class; N / (K * count).')


def random_oversample(X, y, seed: int = 0):
    """Repeat rows of the smaller classes (drawn with replacement) until every class has the majority's count.

    The original rows are all kept; only copies are added. Resample the TRAINING split only.
    """
    X, y = np.asarray(X), _as_1d("y", y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    rng = np.random.default_rng(seed)
    # TODO [imbalance]: For each class, draw (max_count - count) extra indices from that class.
    raise NotImplementedError('TODO [imbalance]: For each class, draw (max_count - count) extra indices from that class.')


def fit_logreg(X, y, strategy: str = "none", seed: int = 0) -> LogisticRegression:
    """A LogisticRegression trained three ways: 'none', 'weights' (balanced per-sample weights), 'oversample'."""
    if strategy not in ("none", "weights", "oversample"):
        raise ValueError(f"strategy must be 'none', 'weights' or 'oversample', got {strategy!r}")
    model = LogisticRegression(max_iter=1000)
    # TODO [imbalance]: 'weights': sample_weight from balanced_class_weights; 'oversample': refit on copies.
    raise NotImplementedError("TODO [imbalance]: 'weights': sample_weight from balanced_class_weights; 'oversample': refit on copies.")


# ----------------------------------------------------------------------------- demo

def imbalanced_data(n_samples: int = 4000, minority: float = 0.05, seed: int = 0):
    """A seeded binary problem where the positive class is `minority` of the rows; stratified 70/30 split."""
    X, y = make_classification(n_samples=n_samples, n_features=20, n_informative=5, weights=[1 - minority],
                               class_sep=0.8, flip_y=0.01, random_state=seed)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def plot_curves(y_true, scores_by_name: dict, path) -> None:
    """ROC (left) and PR (right) curves for several scorers on the same labels, saved as a PNG."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.8))
    for name, s in scores_by_name.items():
        fpr, tpr, _ = roc_curve(y_true, s)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y_true, s):.3f})")
        precision, recall, _ = precision_recall_curve(y_true, s)
        ax_pr.step(recall, precision, where="post", label=f"{name} (AP {average_precision(y_true, s):.3f})")
    ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax_pr.axhline(np.mean(y_true), color="k", ls="--", lw=0.8, label=f"chance (prevalence {np.mean(y_true):.3f})")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def toy_detections(n_images: int = 20, seed: int = 0):
    """Synthetic detection results: jittered copies of each GT box (scored high), misses, and random FPs."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(n_images):
        n = rng.integers(1, 5)
        xy = rng.uniform(0, 200, (n, 2))
        gt = np.c_[xy, xy + rng.uniform(20, 60, (n, 2))]
        labels = rng.integers(0, 3, n)
        found = rng.random(n) < 0.85  # 15% of objects are missed
        det = gt[found] + rng.normal(0, 4, (found.sum(), 4))
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        n_fp = rng.integers(0, 3)
        fxy = rng.uniform(0, 200, (n_fp, 2))
        fp = np.c_[fxy, fxy + rng.uniform(20, 60, (n_fp, 2))]
        predictions.append({"boxes": np.r_[det, fp], "labels": np.r_[labels[found], rng.integers(0, 3, n_fp)],
                            "scores": np.r_[rng.uniform(0.5, 1.0, found.sum()), rng.uniform(0.0, 0.8, n_fp)]})
        targets.append({"boxes": gt, "labels": labels})
    return predictions, targets


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4000, help="rows of the imbalanced make_classification set")
    ap.add_argument("--minority", type=float, default=0.05, help="fraction of positives")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = labkit.output_dir(__file__)

    X_tr, X_te, y_tr, y_te = imbalanced_data(args.samples, args.minority, args.seed)
    print(f"train {len(y_tr)} rows, {y_tr.mean():.1%} positive; test {len(y_te)} rows, {y_te.sum()} positives")
    print(f"balanced class weights: { {k: round(v, 3) for k, v in balanced_class_weights(y_tr).items()} }")
    print(f"{'strategy':<11}{'acc':>7}{'P':>7}{'R':>7}{'F1':>7}{'macroF1':>9}{'AUC':>7}{'AP':>7}")
    scores = {}
    for strategy in ("none", "weights", "oversample"):
        model = fit_logreg(X_tr, y_tr, strategy, args.seed)
        pred, s = model.predict(X_te), model.predict_proba(X_te)[:, 1]
        scores[strategy] = s
        p, r, f, _ = precision_recall_f1(y_te, pred)
        acc = precision_recall_f1(y_te, pred, "micro")[2]
        macro = precision_recall_f1(y_te, pred, "macro")[2]
        print(f"{strategy:<11}{acc:7.3f}{p:7.3f}{r:7.3f}{f:7.3f}{macro:9.3f}"
              f"{roc_auc(y_te, s):7.3f}{average_precision(y_te, s):7.3f}")
    print(f"{'strategy':<11}{'F0.5':>7}{'F1':>7}{'F2':>7}{'ECE':>7}   (F-beta at threshold 0.5; ECE over 10 bins)")
    for strategy, s in scores.items():
        pred = (s >= 0.5).astype(int)
        print(f"{strategy:<11}" + "".join(f"{fbeta(y_te, pred, b):7.3f}" for b in (0.5, 1.0, 2.0))
              + f"{expected_calibration_error(y_te, s):7.3f}")
    print("confusion matrix (none):\n", confusion_matrix(y_te, (scores["none"] >= 0.5).astype(int)))
    print("confusion matrix (weights):\n", confusion_matrix(y_te, (scores["weights"] >= 0.5).astype(int)))
    print(f"AUC rank vs trapezoid: {roc_auc(y_te, scores['none'], 'rank'):.12f} "
          f"{roc_auc(y_te, scores['none'], 'trapezoid'):.12f}")

    preds, tgts = toy_detections(seed=args.seed)
    m50, per_class = mean_average_precision(preds, tgts, 0.5)
    m75, _ = mean_average_precision(preds, tgts, 0.75)
    print(f"toy detector: mAP@0.5 {m50:.3f} (per class {', '.join(f'{k}: {v:.3f}' for k, v in per_class.items())}),"
          f" mAP@0.75 {m75:.3f}")
    coco = coco_map(preds, tgts)
    gt_path, dt_path = write_coco_json(preds, tgts, out / "coco")
    stats = pycocotools_stats(gt_path, dt_path)
    print(f"COCO-style (101-point AP): mAP@0.5:0.95 {coco['map']:.4f}, @0.5 {coco['map_50']:.4f}, "
          f"@0.75 {coco['map_75']:.4f}")
    print(f"pycocotools COCOeval on {gt_path.parent}: {stats[0]:.4f}, {stats[1]:.4f}, {stats[2]:.4f} "
          f"(largest gap {np.abs(np.array([coco['map'], coco['map_50'], coco['map_75']]) - stats[:3]).max():.1e})")
    path = out / "roc_pr_curves.png"
    plot_curves(y_te, scores, path)
    print(f"figure: {path}")
    path = out / "reliability.png"
    plot_reliability(y_te, scores, path)
    print(f"reliability diagram: {path}")


if __name__ == "__main__":
    labkit.run(main)
