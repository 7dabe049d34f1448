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
    # BEGIN SOLUTION [confusion-matrix] Map each label to its index, then count (true, pred) index pairs.
    k = len(labels)
    index = {label: i for i, label in enumerate(labels.tolist())}
    keep = np.isin(y_true, labels) & np.isin(y_pred, labels)  # samples outside `labels` are not counted
    t = np.array([index[v] for v in y_true[keep].tolist()], dtype=np.int64)
    p = np.array([index[v] for v in y_pred[keep].tolist()], dtype=np.int64)
    # one flat bincount: the pair (t, p) lands in cell t * K + p
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    # END SOLUTION


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
    # BEGIN SOLUTION [prf] Get TP/FP/FN per class from the confusion matrix; divide safely; then average.
    def safe_div(num, den):
        num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp  # predicted as c, truly something else
    fn = cm.sum(axis=1) - tp  # truly c, predicted as something else
    support = cm.sum(axis=1)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision, recall = safe_div(tp, tp + fp), safe_div(tp, tp + fn)
    f1 = safe_div(2 * tp, 2 * tp + fp + fn)
    if average == "micro":
        return float(precision), float(recall), float(f1), None
    if average is None:
        return precision, recall, f1, support
    if average == "binary":
        i = labels.tolist().index(pos_label)
        return float(precision[i]), float(recall[i]), float(f1[i]), None
    weights = support / support.sum() if average == "weighted" else np.full(len(labels), 1 / len(labels))
    return float(precision @ weights), float(recall @ weights), float(f1 @ weights), None
    # END SOLUTION


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
    # BEGIN SOLUTION [roc] Stable descending sort; cumulative sums; keep the last index of each run of equal scores.
    order = np.argsort(-y_score.astype(np.float64), kind="mergesort")
    s, y = y_score[order], y[order]
    last_of_run = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # ties move together across a threshold
    tps = np.cumsum(y)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1) - tps  # everything above the threshold that is not a TP
    return tps, fps, s[last_of_run].astype(np.float64)
    # END SOLUTION


def roc_curve(y_true, y_score):
    """(fpr, tpr, thresholds): one point per distinct score plus the origin (threshold +inf).

    Predict positive when score >= threshold. TPR = TP/P, FPR = FP/N. Equals
    sklearn.metrics.roc_curve(..., drop_intermediate=False).
    """
    tps, fps, thresholds = _descending_counts(y_true, y_score)
    # BEGIN SOLUTION [roc] Prepend the (0, 0) point; divide by the number of positives and negatives.
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]
    # END SOLUTION


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
    # BEGIN SOLUTION [roc] Trapezoid: np.trapezoid over (fpr, tpr). Rank: average ranks of the positives.
    if method == "trapezoid":
        fpr, tpr, _ = roc_curve(y, y_score)
        return float(np.trapezoid(tpr, fpr))
    ranks = average_ranks(y_score.astype(np.float64))
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2  # pairs (pos, neg) the positive wins
    return float(u / (n_pos * n_neg))
    # END SOLUTION


def precision_recall_curve(y_true, y_score):
    """(precision, recall, thresholds) in sklearn's layout.

    thresholds ascending (one per distinct score); precision/recall follow them, with a final (1, 0) point
    that has no threshold. Precision at threshold t = TP/(TP+FP) counting every score >= t.
    """
    tps, fps, thresholds = _descending_counts(y_true, y_score)
    # BEGIN SOLUTION [pr-ap] Precision and recall per threshold, reverse to ascending, append (1, 0).
    precision = tps / (tps + fps)  # never 0/0: each threshold keeps at least one sample
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]
    # END SOLUTION


def average_precision(y_true, y_score) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over thresholds: the PR curve as a step function, no interpolation.

    This is sklearn's average_precision_score. (Detection AP below interpolates instead.)
    """
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    # BEGIN SOLUTION [pr-ap] Arrays run from high recall to low: use -diff(recall) as the steps.
    return float(-np.sum(np.diff(recall) * precision[:-1]))
    # END SOLUTION


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
    # BEGIN SOLUTION [box-iou] Broadcast (M,1,2) against (1,N,2) for the overlap corners; clamp at 0.
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])  # (M, N, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (M, N, 2)
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]  # (M, N)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    # END SOLUTION


def voc_ap(recall, precision) -> float:
    """All-point interpolated AP (VOC 2010+): area under the precision envelope p_interp(r) = max_{r' >= r} p(r').

    `recall`/`precision` are the cumulative values down the ranked detection list (recall non-decreasing).
    """
    # BEGIN SOLUTION [detection-map] Sentinels (0, ..., 1) and (0, ..., 0); running max from the right; sum Δr·p.
    r = np.r_[0.0, np.asarray(recall, np.float64), 1.0]
    p = np.r_[0.0, np.asarray(precision, np.float64), 0.0]
    p = np.maximum.accumulate(p[::-1])[::-1]  # the envelope: best precision at this recall or beyond
    step = np.flatnonzero(r[1:] != r[:-1])  # where recall moves
    return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))
    # END SOLUTION


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
    # BEGIN SOLUTION [detection-map] IoU matrix once; greedy over detections by score; a GT is used at most once.
    is_tp = np.zeros(len(det_boxes), bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return is_tp
    iou = box_iou(det_boxes, gt_boxes)  # (D, G)
    taken = np.zeros(len(gt_boxes), bool)
    for d in np.argsort(-det_scores, kind="mergesort"):
        g = int(np.argmax(iou[d]))  # VOC: the best-overlapping GT, matched or not
        if iou[d, g] >= iou_threshold and not taken[g]:
            taken[g] = True
            is_tp[d] = True
    return is_tp
    # END SOLUTION


def mean_average_precision(predictions: list[dict], targets: list[dict], iou_threshold: float = 0.5):
    """VOC-style mAP: per class, rank all its detections over all images, accumulate TP/FP, AP by voc_ap.

    predictions[i] = {"boxes": (N, 4), "scores": (N,), "labels": (N,)} for image i;
    targets[i] = {"boxes": (G, 4), "labels": (G,)}. Classes with no ground truth are skipped.
    Returns (mAP, {class: AP}).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction dicts for {len(targets)} target dicts; give one per image")
    # BEGIN SOLUTION [detection-map] Per class: match per image, pool (score, is_tp), sort, cumsum, voc_ap.
    classes = sorted({int(c) for t in targets for c in np.asarray(t["labels"]).reshape(-1)})
    per_class = {}
    for c in classes:
        scores, flags, n_gt = [], [], 0
        for pred, tgt in zip(predictions, targets):
            p_lab, t_lab = np.asarray(pred["labels"]).reshape(-1), np.asarray(tgt["labels"]).reshape(-1)
            p_sc = np.asarray(pred["scores"], np.float64).reshape(-1)
            gt = np.asarray(tgt["boxes"], np.float64).reshape(-1, 4)[t_lab == c]
            boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)[p_lab == c]
            n_gt += len(gt)
            flags.append(match_detections(boxes, p_sc[p_lab == c], gt, iou_threshold))
            scores.append(p_sc[p_lab == c])
        scores, flags = np.concatenate(scores), np.concatenate(flags)
        order = np.argsort(-scores, kind="mergesort")
        tp = np.cumsum(flags[order])
        fp = np.cumsum(~flags[order])
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1)
        per_class[c] = voc_ap(recall, precision) if len(scores) else 0.0
    return float(np.mean(list(per_class.values()))), per_class
    # END SOLUTION


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
    # BEGIN SOLUTION [f-beta] Per-class TP/FP/FN from the confusion matrix; the count form of F_β; then average.
    counts = confusion_matrix(y_true, y_pred, labels)
    hits = np.diag(counts).astype(np.float64)  # TP per class
    false_pos, false_neg = counts.sum(axis=0) - hits, counts.sum(axis=1) - hits
    true_count = counts.sum(axis=1)  # support
    if average == "micro":  # pool the counts over classes first
        hits, false_pos, false_neg = hits.sum(), false_pos.sum(), false_neg.sum()
    b2 = beta ** 2
    num, den = (1 + b2) * hits, (1 + b2) * hits + b2 * false_neg + false_pos
    score = np.divide(num, den, out=np.zeros_like(np.asarray(num, np.float64)), where=np.asarray(den) > 0)
    if average == "micro":
        return float(score)
    if average is None:
        return score
    if average == "binary":
        return float(score[labels.tolist().index(pos_label)])
    share = true_count / true_count.sum() if average == "weighted" else np.full(len(labels), 1 / len(labels))
    return float(score @ share)
    # END SOLUTION


# ----------------------------------------------------------------------------- COCO-style detection AP

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50, 0.55, ..., 0.95
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # 0.00, 0.01, ..., 1.00


def coco_ap(recall, precision) -> float:
    """101-point interpolated AP (COCO): AP = (1/101) Σ_{r ∈ {0, 0.01, ..., 1}} max_{r' >= r} p(r').

    `recall`/`precision` are the cumulative values down the ranked detection list (recall non-decreasing). A
    recall level the list never reaches contributes 0.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    # BEGIN SOLUTION [coco-map] Envelope (running max from the right); for each recall point the first index with recall >= r.
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")  # first position with recall >= r
    reached = first < len(recall)
    return float(np.sum(envelope[first[reached]]) / len(COCO_RECALL_POINTS))
    # END SOLUTION


def match_detections_coco(det_boxes, det_scores, gt_boxes, iou_threshold: float) -> np.ndarray:
    """COCO's matching for ONE class in ONE image: detections by descending score (stable on ties), each takes
    the best-overlapping ground truth that is still unmatched, if that IoU >= threshold. (VOC's rule differs: it
    looks at the best ground truth overall and calls the detection a duplicate if that one is taken.)
    Returns a bool TP array aligned with the input order."""
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    # BEGIN SOLUTION [coco-map] IoU matrix; greedy by score; mask taken GTs out before choosing the best.
    is_tp = np.zeros(len(det_boxes), bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return is_tp
    overlap = box_iou(det_boxes, gt_boxes)  # (D, G)
    used = np.zeros(len(gt_boxes), bool)
    for d in np.argsort(-det_scores, kind="stable"):  # highest score first, input order on ties
        free = np.where(used, -1.0, overlap[d])  # a matched GT cannot be matched again
        g = int(np.argmax(free))
        if free[g] >= iou_threshold:
            used[g] = True
            is_tp[d] = True
    return is_tp
    # END SOLUTION


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
    # BEGIN SOLUTION [coco-map] ap[t, c]: per image cap at max_dets by score, match, pool, stable sort, cumsum, coco_ap.
    classes = sorted(set(np.concatenate([np.asarray(t["labels"]).reshape(-1) for t in targets]).astype(int).tolist()))
    ap = np.zeros((len(thresholds), len(classes)))
    for ci, c in enumerate(classes):
        per_image = []  # (boxes, scores, gt) of class c, detections capped and sorted per image
        for pred, tgt in zip(predictions, targets):
            p_lab, t_lab = np.asarray(pred["labels"]).reshape(-1), np.asarray(tgt["labels"]).reshape(-1)
            scores = np.asarray(pred["scores"], np.float64).reshape(-1)[p_lab == c]
            boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)[p_lab == c]
            top = np.argsort(-scores, kind="mergesort")[:max_dets]
            per_image.append((boxes[top], scores[top], np.asarray(tgt["boxes"], np.float64).reshape(-1, 4)[t_lab == c]))
        n_gt = sum(len(gt) for _, _, gt in per_image)
        all_scores = np.concatenate([s for _, s, _ in per_image])
        order = np.argsort(-all_scores, kind="mergesort")
        for ti, t in enumerate(thresholds):
            flags = np.concatenate([match_detections_coco(b, s, gt, t) for b, s, gt in per_image])[order]
            tp, fp = np.cumsum(flags), np.cumsum(~flags)
            ap[ti, ci] = coco_ap(tp / n_gt, tp / np.maximum(tp + fp, np.finfo(float).eps))
    result = {"map": float(ap.mean()), "per_class": dict(zip(classes, ap.mean(axis=0).tolist()))}
    for name, level in (("map_50", 0.5), ("map_75", 0.75)):
        hit = np.flatnonzero(np.isclose(thresholds, level))
        if len(hit):
            result[name] = float(ap[hit[0]].mean())
    return result
    # END SOLUTION


def write_coco_json(predictions: list[dict], targets: list[dict], folder) -> tuple[Path, Path]:
    """Write ground truth and detections in COCO's JSON formats, for pycocotools or any COCO tool.

    gt.json: {"images": [{"id"}], "categories": [{"id", "name"}], "annotations": [{"id" (from 1), "image_id",
    "category_id", "bbox": [x, y, w, h], "area": w·h, "iscrowd": 0}]}; detections.json: a list of
    {"image_id", "category_id", "bbox": [x, y, w, h], "score"}. Image i gets id i; a class keeps its label as id.
    COCO boxes are (x, y, width, height), not corners. Returns (gt path, detections path).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # BEGIN SOLUTION [coco-map] Corners -> [x, y, w, h] as plain floats; annotation ids start at 1 (0 is falsy in pycocotools).
    def xywh(box):
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    images, annotations, detections, classes = [], [], [], set()
    for i, (pred, tgt) in enumerate(zip(predictions, targets)):
        images.append({"id": i})
        for box, label in zip(np.asarray(tgt["boxes"]).reshape(-1, 4), np.asarray(tgt["labels"]).reshape(-1)):
            b = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label), "bbox": b,
                                "area": b[2] * b[3], "iscrowd": 0})
            classes.add(int(label))
        for box, label, score in zip(np.asarray(pred["boxes"]).reshape(-1, 4), np.asarray(pred["labels"]).reshape(-1),
                                     np.asarray(pred["scores"]).reshape(-1)):
            detections.append({"image_id": i, "category_id": int(label), "bbox": xywh(box), "score": float(score)})
            classes.add(int(label))
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": c, "name": f"class_{c}"} for c in sorted(classes)]}
    gt_path, dt_path = folder / "gt.json", folder / "detections.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(detections))
    return gt_path, dt_path
    # END SOLUTION


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
    # BEGIN SOLUTION [calibration] Edges; bin id = np.searchsorted(inner edges, p) (right-closed); bincount sums; drop empties.
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.percentile(y_prob, np.linspace(0, 100, n_bins + 1))
    bin_id = np.searchsorted(edges[1:-1], y_prob, side="left")
    count = np.bincount(bin_id, minlength=n_bins)
    positives = np.bincount(bin_id, weights=y, minlength=n_bins)
    prob_sum = np.bincount(bin_id, weights=y_prob, minlength=n_bins)
    used = count > 0
    return positives[used] / count[used], prob_sum[used] / count[used]
    # END SOLUTION


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / N) · |fraction of positives in b − mean predicted probability in b|, over n_bins uniform,
    right-closed bins (the same bins as calibration_curve). 0 for a perfectly calibrated model."""
    y_true, y_prob = _check_pair(y_true, y_prob)
    y = _check_binary(y_true)
    # BEGIN SOLUTION [calibration] Same binning; weight each bin's |gap| by its share of the samples.
    y_prob = y_prob.astype(np.float64)
    bin_id = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], y_prob, side="left")
    count = np.bincount(bin_id, minlength=n_bins)
    gap = np.abs(np.bincount(bin_id, weights=y, minlength=n_bins) - np.bincount(bin_id, weights=y_prob, minlength=n_bins))
    return float(gap.sum() / len(y))  # Σ (n_b/N)·|pos_b/n_b − psum_b/n_b| = Σ |pos_b − psum_b| / N
    # END SOLUTION


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
    # BEGIN SOLUTION [imbalance] Count each class; N / (K * count).
    classes, counts = np.unique(y, return_counts=True)
    return {c: len(y) / (len(classes) * n) for c, n in zip(classes.tolist(), counts.tolist())}
    # END SOLUTION


def random_oversample(X, y, seed: int = 0):
    """Repeat rows of the smaller classes (drawn with replacement) until every class has the majority's count.

    The original rows are all kept; only copies are added. Resample the TRAINING split only.
    """
    X, y = np.asarray(X), _as_1d("y", y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    rng = np.random.default_rng(seed)
    # BEGIN SOLUTION [imbalance] For each class, draw (max_count - count) extra indices from that class.
    classes, counts = np.unique(y, return_counts=True)
    extra = [rng.choice(np.flatnonzero(y == c), counts.max() - n, replace=True) for c, n in zip(classes, counts)]
    idx = np.concatenate([np.arange(len(y)), *extra]).astype(np.int64)
    return X[idx], y[idx]
    # END SOLUTION


def fit_logreg(X, y, strategy: str = "none", seed: int = 0) -> LogisticRegression:
    """A LogisticRegression trained three ways: 'none', 'weights' (balanced per-sample weights), 'oversample'."""
    if strategy not in ("none", "weights", "oversample"):
        raise ValueError(f"strategy must be 'none', 'weights' or 'oversample', got {strategy!r}")
    model = LogisticRegression(max_iter=1000)
    # BEGIN SOLUTION [imbalance] 'weights': sample_weight from balanced_class_weights; 'oversample': refit on copies.
    if strategy == "weights":
        w = balanced_class_weights(y)
        return model.fit(X, y, sample_weight=np.array([w[v] for v in np.asarray(y).tolist()]))
    if strategy == "oversample":
        return model.fit(*random_oversample(X, y, seed))
    return model.fit(X, y)
    # END SOLUTION


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
