"""Lab 03 · Model evaluation: classification metrics, ROC/PR curves, box IoU and detection mAP, from scratch.

Every number a CV engineer reports comes from a handful of counts. This lab rebuilds them with NumPy only:

- the confusion matrix, and precision / recall / F1 with binary, macro, micro and weighted averaging;
- the ROC curve and its area (by the trapezoid rule and by ranks: AUC = P(score of a positive > a negative));
- the precision-recall curve and average precision (sklearn's step-wise sum, no interpolation);
- pairwise box IoU and VOC-style mAP@0.5 (greedy matching, all-point interpolated AP);
- class-imbalance handling: balanced class weights and random oversampling for a logistic regression.

Each one is checked against sklearn.metrics or torchvision.ops in the tests (1e-9 for the classification ones).

Run it:  python solution.py [--samples 4000] [--minority 0.05]
Outputs: outputs/.../roc_pr_curves.png
"""
from __future__ import annotations

import argparse

import matplotlib
import numpy as np
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

    Detections are visited by descending score (stable on ties); each takes the unmatched ground-truth box it
    overlaps most if that IoU >= threshold. A second detection of an already-matched box is a duplicate: FP.
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
    print("confusion matrix (none):\n", confusion_matrix(y_te, (scores["none"] >= 0.5).astype(int)))
    print("confusion matrix (weights):\n", confusion_matrix(y_te, (scores["weights"] >= 0.5).astype(int)))
    print(f"AUC rank vs trapezoid: {roc_auc(y_te, scores['none'], 'rank'):.12f} "
          f"{roc_auc(y_te, scores['none'], 'trapezoid'):.12f}")

    preds, tgts = toy_detections(seed=args.seed)
    m50, per_class = mean_average_precision(preds, tgts, 0.5)
    m75, _ = mean_average_precision(preds, tgts, 0.75)
    print(f"toy detector: mAP@0.5 {m50:.3f} (per class {', '.join(f'{k}: {v:.3f}' for k, v in per_class.items())}),"
          f" mAP@0.75 {m75:.3f}")
    path = out / "roc_pr_curves.png"
    plot_curves(y_te, scores, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    labkit.run(main)
