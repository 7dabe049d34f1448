"""Lab 04 · pandas + scikit-learn: feature engineering without leakage, and a bounding-box annotation workflow.

A table of camera events (timestamp, camera, site, a couple of measurements, a binary label) is the running
example. The lab builds features with pandas (datetime parts, per-group aggregates), encodes a
high-cardinality column by its target mean out-of-fold, and shows what goes wrong when any statistic is
fitted on data the model is later scored on:

- on a pure label-noise table (labels independent of everything), target encoding fitted on all rows gives a
  cross-validated accuracy far above chance; the same encoder inside a Pipeline, fitted per training fold with
  out-of-fold encodings, stays at chance;
- rows from one camera are correlated, so they must not sit on both sides of a split (GroupKFold), and a
  model that will predict the future is validated on the future (TimeSeriesSplit).

The second half is the bounding-box annotation workflow: derived box features, cleaning, per-class and
per-image statistics, a pivot, predictions matched to ground truth by IoU, false-positive and confusion
reports, and a random forest on box features (custom transformer, imputers, one-hot encoding) tuned by
RandomizedSearchCV on image-grouped stratified folds.

Run it:  python solution.py [--rows 3000] [--folds 5] [--images 200] [--n-iter 10]
Outputs: outputs/.../leakage.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import randint
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (GroupKFold, KFold, RandomizedSearchCV, StratifiedGroupKFold, StratifiedKFold,
                                     TimeSeriesSplit, cross_val_score)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def camera_events(n_rows: int = 3000, n_cameras: int = 40, seed: int = 0, noise_only: bool = False) -> pd.DataFrame:
    """A seeded event log: one row per detection event from one of `n_cameras` cameras over 60 days.

    Columns: time (datetime64), camera (str id), site (str, 4 values), brightness, motion (floats), label (0/1).
    The label depends on the hour (more at night), the camera (some are noisy) and motion; with
    noise_only=True it is a fair coin, independent of every column.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01")
    time = start + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24 * 3600, n_rows)), unit="s")  # whole seconds
    camera = rng.integers(0, n_cameras, n_rows)
    hour = time.hour.to_numpy()
    night = (hour < 6) | (hour >= 20)
    brightness = rng.normal(np.where(night, 40, 140), 25)
    motion = rng.gamma(2.0, 1.0, n_rows)
    camera_bias = rng.normal(0, 1.0, n_cameras)[camera]
    logit = -1.0 + 1.2 * night + 0.4 * motion + camera_bias
    label = rng.random(n_rows) < (0.5 if noise_only else 1 / (1 + np.exp(-logit)))
    return pd.DataFrame({
        "time": time, "camera": [f"cam{c:03d}" for c in camera], "site": np.array(list("ABCD"))[camera % 4],
        "brightness": brightness, "motion": motion, "label": label.astype(int),
    })


# ----------------------------------------------------------------------------- pandas features

def add_time_features(df: pd.DataFrame, col: str = "time") -> pd.DataFrame:
    """A copy of df with hour, day_of_week (Monday = 0), is_weekend (0/1) and is_night (hour < 6 or >= 20)."""
    if col not in df or not pd.api.types.is_datetime64_any_dtype(df[col]):
        raise ValueError(f"column {col!r} must exist and hold datetimes; parse it with pd.to_datetime first")
    # TODO [features]: The .dt accessor gives hour and day_of_week; derive the two flags from them.
    raise NotImplementedError('TODO [features]: The .dt accessor gives hour and day_of_week; derive the two flags from them.')


def add_group_stats(df: pd.DataFrame, key: str, value: str) -> pd.DataFrame:
    """A copy of df with, for every row, the count, mean and (ddof=1) std of `value` within its `key` group,
    and the row's deviation from its group mean. Columns: {value}_count_by_{key}, ..._mean_..., ..._std_...,
    {value}_minus_mean_by_{key}. A group of one has std NaN (pandas' rule).

    These are statistics of the rows you pass in: compute them on training rows and merge onto test rows.
    """
    # TODO [features]: groupby(key)[value].transform("count" / "mean" / "std"): one value per row.
    raise NotImplementedError('TODO [features]: groupby(key)[value].transform("count" / "mean" / "std"): one value per row.')


def per_group_summary(df: pd.DataFrame, key: str = "camera") -> pd.DataFrame:
    """One row per group, sorted by key: n_events, positive_rate, mean_motion, first and last event time."""
    # TODO [features]: groupby(key).agg with named aggregations.
    raise NotImplementedError('TODO [features]: groupby(key).agg with named aggregations.')


# ----------------------------------------------------------------------------- target encoding

def target_means(keys, y, smoothing: float = 10.0) -> tuple[pd.Series, float]:
    """Smoothed mean target per category: (sum_c + m·prior) / (n_c + m), and the prior (mean of y).

    m = smoothing pulls rare categories towards the prior. Returns (Series indexed by category, prior).
    """
    keys, y = pd.Series(np.asarray(keys)), pd.Series(np.asarray(y, np.float64))
    if len(keys) != len(y):
        raise ValueError(f"{len(keys)} keys but {len(y)} targets; pass one target per row")
    # TODO [target-encoding]: groupby sum and count of y per key; blend with the prior.
    raise NotImplementedError('TODO [target-encoding]: groupby sum and count of y per key; blend with the prior.')


def oof_target_encode(keys, y, splits, smoothing: float = 10.0) -> np.ndarray:
    """Out-of-fold encoding: each row gets the smoothed mean computed from the OTHER folds only (their prior
    too); a category absent from those folds gets their prior. No row ever sees its own label."""
    keys, y = np.asarray(keys), np.asarray(y, np.float64)
    # TODO [target-encoding]: For each (train, test) split: target_means on train, map onto test keys.
    raise NotImplementedError('TODO [target-encoding]: For each (train, test) split: target_means on train, map onto test keys.')


class OOFTargetEncoder(BaseEstimator, TransformerMixin):
    """A scikit-learn transformer for categorical columns: target-mean encoding that cannot leak.

    fit_transform (what a Pipeline calls on training rows) returns OUT-OF-FOLD encodings; fit also stores the
    full-training-set means, which transform applies to new rows (unknown categories get the prior).
    """

    def __init__(self, smoothing: float = 10.0, n_splits: int = 5, seed: int = 0):
        self.smoothing = smoothing
        self.n_splits = n_splits
        self.seed = seed

    def fit(self, X, y):
        cols = np.asarray(X, dtype=object).reshape(len(y), -1)
        self.tables_ = [target_means(cols[:, j], y, self.smoothing) for j in range(cols.shape[1])]
        return self

    def transform(self, X):
        cols = np.asarray(X, dtype=object).reshape(len(X), -1)
        return np.column_stack([pd.Series(cols[:, j]).map(means).fillna(prior).to_numpy(np.float64)
                                for j, (means, prior) in enumerate(self.tables_)])

    def fit_transform(self, X, y):
        # TODO [target-encoding]: fit (for later transforms), then encode each column out-of-fold.
        raise NotImplementedError('TODO [target-encoding]: fit (for later transforms), then encode each column out-of-fold.')


# ----------------------------------------------------------------------------- leakage and splits

def safe_pipeline(categorical: list[str], numeric: list[str], smoothing: float = 10.0) -> Pipeline:
    """Out-of-fold target encoding for `categorical`, standardisation for `numeric`, then logistic regression."""
    prep = ColumnTransformer([("te", OOFTargetEncoder(smoothing), categorical), ("num", StandardScaler(), numeric)])
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))])


def leaky_cv_score(df: pd.DataFrame, categorical: list[str], target: str, cv, smoothing: float = 10.0) -> float:
    """The mistake: target-encode with means fitted on ALL rows, then cross-validate a model on the result.

    Every held-out row's feature already contains its own label, so the CV score is optimistic.
    """
    # TODO [leakage]: target_means on the full table, map each column, cross_val_score a LogisticRegression.
    raise NotImplementedError('TODO [leakage]: target_means on the full table, map each column, cross_val_score a LogisticRegression.')


def safe_cv_score(df: pd.DataFrame, categorical: list[str], target: str, cv, smoothing: float = 10.0,
                  groups=None) -> float:
    """The fix: the encoder lives inside the pipeline, so each fold fits it on that fold's training rows only."""
    # TODO [leakage]: cross_val_score(safe_pipeline(categorical, []), df[categorical], ...).
    raise NotImplementedError('TODO [leakage]: cross_val_score(safe_pipeline(categorical, []), df[categorical], ...).')


def group_splits(df: pd.DataFrame, group_col: str, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold splits: every group's rows fall in exactly one test fold and never on both sides."""
    # TODO [splits]: GroupKFold(n_splits).split(df, groups=df[group_col]).
    raise NotImplementedError('TODO [splits]: GroupKFold(n_splits).split(df, groups=df[group_col]).')


def time_splits(df: pd.DataFrame, time_col: str, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """TimeSeriesSplit splits in time order (positions into df, which need not be sorted): each test fold
    lies strictly after everything in its training fold, and training folds grow."""
    # TODO [splits]: argsort by time (stable), split the sorted positions, map back through the order.
    raise NotImplementedError('TODO [splits]: argsort by time (stable), split the sorted positions, map back through the order.')


# ----------------------------------------------------------------------------- bounding-box annotations

BOX_CLASSES = ("bicycle", "car", "person", "traffic_light")
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]
# typical (height in px at 1080p, width / height) per class: the model will have to tell them apart by shape
_CLASS_SHAPE = {"bicycle": (110, 1.5), "car": (150, 1.9), "person": (220, 0.42), "traffic_light": (70, 0.38)}
_SCENE_CLASSES = {"street": (0.25, 0.3, 0.35, 0.1), "highway": (0.02, 0.85, 0.03, 0.1), "plaza": (0.3, 0.05, 0.6, 0.05)}


def box_annotations(n_images: int = 200, seed: int = 0) -> pd.DataFrame:
    """A seeded ground-truth table, one row per box: image_id, img_w, img_h, scene_type (str, 8% missing),
    dataset_split ("train"/"val"), class, xmin, ymin, xmax, ymax (pixels, corners), truncated (0..1, 10% missing).

    Each image has a camera distance that scales all its boxes, so boxes of one image resemble each other.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        w, h = (1920, 1080) if rng.random() < 0.7 else (1280, 720)
        scene = str(rng.choice(list(_SCENE_CLASSES)))
        split = "train" if rng.random() < 0.8 else "val"
        distance = rng.uniform(0.5, 1.6)  # one scale for the whole image
        for _ in range(int(rng.integers(1, 9))):
            cls = str(rng.choice(BOX_CLASSES, p=_SCENE_CLASSES[scene]))
            height, aspect = _CLASS_SHAPE[cls]
            bh = min(height * distance * h / 1080 * rng.lognormal(0, 0.15), h - 2)
            bw = min(bh * aspect * rng.lognormal(0, 0.15), w - 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            rows.append({"image_id": f"img{i:04d}", "img_w": w, "img_h": h, "scene_type": scene, "dataset_split": split,
                         "class": cls, "xmin": round(x, 1), "ymin": round(y, 1), "xmax": round(x + bw, 1),
                         "ymax": round(y + bh, 1), "truncated": round(float(rng.beta(1, 6)), 3)})
    df = pd.DataFrame(rows)
    df["scene_type"] = df["scene_type"].astype(object)
    df.loc[rng.random(len(df)) < 0.08, "scene_type"] = np.nan
    df.loc[rng.random(len(df)) < 0.10, "truncated"] = np.nan
    return df


def box_predictions(gt: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Seeded detector output for the images of `gt`: image_id, class, confidence, xmin, ymin, xmax, ymax.

    85% of objects are found (boxes jittered by ~4% of their size); 12% of those get a confusable class
    (person <-> bicycle, traffic_light -> person, car -> bicycle); each image adds 0-2 background false positives.
    """
    rng = np.random.default_rng(seed)
    confusable = {"person": "bicycle", "bicycle": "person", "traffic_light": "person", "car": "bicycle"}
    rows = []
    for _, r in gt.iterrows():
        if rng.random() >= 0.85:
            continue
        bw, bh = r.xmax - r.xmin, r.ymax - r.ymin
        box = np.array([r.xmin, r.ymin, r.xmax, r.ymax]) + rng.normal(0, 0.04, 4) * [bw, bh, bw, bh]
        wrong = rng.random() < 0.12
        rows.append({"image_id": r.image_id, "class": confusable[r["class"]] if wrong else r["class"],
                     "confidence": round(float(rng.uniform(0.3, 0.9) if wrong else rng.uniform(0.5, 1.0)), 3),
                     **dict(zip(BOX_COLUMNS, np.round(box, 1)))})
    for image_id, size in gt.groupby("image_id")[["img_w", "img_h"]].first().iterrows():
        for _ in range(int(rng.integers(0, 3))):
            bw, bh = rng.uniform(30, 300, 2)
            x, y = rng.uniform(0, size.img_w - bw), rng.uniform(0, size.img_h - bh)
            rows.append({"image_id": image_id, "class": str(rng.choice(BOX_CLASSES)),
                         "confidence": round(float(rng.uniform(0.05, 0.95)), 3),
                         "xmin": round(x, 1), "ymin": round(y, 1), "xmax": round(x + bw, 1), "ymax": round(y + bh, 1)})
    return pd.DataFrame(rows)


def add_box_features(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of df with width, height, area, aspect_ratio (w / h, h clipped below at 1e-6), cx, cy (box centre)
    and, from img_w / img_h, cx_norm, cy_norm (centre as a fraction of the image) and norm_area (area / image area)."""
    # TODO [box-table]: One df.assign: later columns may use earlier ones through lambdas.
    raise NotImplementedError('TODO [box-table]: One df.assign: later columns may use earlier ones through lambdas.')


def clean_annotations(df: pd.DataFrame, min_area: float = 100.0) -> pd.DataFrame:
    """Drop the rows an annotation tool should never have exported, keeping the original index:

    - a missing (NaN) or infinite coordinate;
    - a box leaving its image: xmin < 0, ymin < 0, xmax > img_w or ymax > img_h (touching the border is fine);
    - a degenerate box: xmin >= xmax or ymin >= ymax;
    - a box smaller than min_area square pixels (a box of exactly min_area stays);
    - an exact duplicate of an earlier row (every column equal; the first copy stays).
    """
    # TODO [box-table]: One boolean mask for the validity rules (NaN compares False), then drop_duplicates.
    raise NotImplementedError('TODO [box-table]: One boolean mask for the validity rules (NaN compares False), then drop_duplicates.')


def per_class_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per class (boxes with features): count, images (distinct image_id), mean_area, median_aspect,
    sorted by count, largest first (ties: class name, A to Z)."""
    # TODO [box-table]: groupby("class").agg with named aggregations; sort by (-count, class).
    raise NotImplementedError('TODO [box-table]: groupby("class").agg with named aggregations; sort by (-count, class).')


def per_image_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per image_id (sorted): n_objects, n_classes (distinct), mean_area, classes (sorted list of the
    distinct class names)."""
    # TODO [box-table]: groupby("image_id").agg, with a lambda for the sorted list of distinct classes.
    raise NotImplementedError('TODO [box-table]: groupby("image_id").agg, with a lambda for the sorted list of distinct classes.')


def class_pivot(preds: pd.DataFrame) -> pd.DataFrame:
    """Image x class table of the highest confidence each image has for each class, 0 where there is none
    (rows: sorted image ids, columns: sorted classes)."""
    # TODO [box-table]: pivot_table(index, columns, values, aggfunc="max", fill_value=0).
    raise NotImplementedError('TODO [box-table]: pivot_table(index, columns, values, aggfunc="max", fill_value=0).')


# ----------------------------------------------------------------------------- predictions vs ground truth

def _pair_iou(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Row-wise IoU of two aligned frames of corner boxes."""
    iw = (np.minimum(a["xmax"].to_numpy(), b["xmax"].to_numpy()) - np.maximum(a["xmin"].to_numpy(), b["xmin"].to_numpy())).clip(0)
    ih = (np.minimum(a["ymax"].to_numpy(), b["ymax"].to_numpy()) - np.maximum(a["ymin"].to_numpy(), b["ymin"].to_numpy())).clip(0)
    inter = iw * ih
    area = lambda d: (d["xmax"] - d["xmin"]).to_numpy() * (d["ymax"] - d["ymin"]).to_numpy()  # noqa: E731
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def match_predictions(preds: pd.DataFrame, gt: pd.DataFrame, iou_threshold: float = 0.5) -> pd.DataFrame:
    """Match each prediction to a ground-truth box of the same image, whatever the classes, so class mistakes show.

    Returns a copy of preds (same index) with:
    - iou_with_gt: the highest IoU with any ground-truth box of its image (0 if the image has none);
    - gt_index: the matched ground-truth row's index label, or -1. Within an image, predictions are visited by
      descending confidence (stable on ties); each takes the still-unmatched ground truth it overlaps most, if
      that IoU >= iou_threshold;
    - true_class: the matched box's class, or "background";
    - outcome: "tp" (same class), "wrong_class" (matched, other class) or "fp" (unmatched: background or a
      duplicate of an already matched object).
    The pairs come from a merge on image_id (every prediction with every ground truth of its image).
    """
    # TODO [box-matching]: merge on image_id; IoU per pair; max per prediction; greedy over each image's IoU matrix.
    raise NotImplementedError("TODO [box-matching]: merge on image_id; IoU per pair; max per prediction; greedy over each image's IoU matrix.")


def missed_classes(preds: pd.DataFrame, gt: pd.DataFrame) -> list[str]:
    """Classes present in the ground truth that the detector never predicted, sorted."""
    # TODO [box-matching]: A set difference of the two class columns.
    raise NotImplementedError('TODO [box-matching]: A set difference of the two class columns.')


def false_positive_report(matched: pd.DataFrame, iou_below: float = 0.5, conf_above: float = 0.7,
                          k: int = 20) -> pd.DataFrame:
    """Confident detections that overlap no object well: iou_with_gt < iou_below and confidence > conf_above
    (both strict), the k largest by area (ties keep table order). These are the first ones to look at."""
    # TODO [box-matching]: Filter with both strict comparisons; an area column; nlargest(k, "area").
    raise NotImplementedError('TODO [box-matching]: Filter with both strict comparisons; an area column; nlargest(k, "area").')


def top_confused_pairs(matched: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The k most frequent (true_class, pred_class) pairs among "wrong_class" matches, as columns true_class,
    pred_class, count; sorted by count, largest first, ties by true_class then pred_class (A to Z)."""
    # TODO [box-matching]: Filter, groupby the two columns, size, sort by (-count, names), head(k).
    raise NotImplementedError('TODO [box-matching]: Filter, groupby the two columns, size, sort by (-count, names), head(k).')


# ----------------------------------------------------------------------------- a box classifier

BOX_NUMERIC = ["truncated"]
BOX_CATEGORICAL = ["dataset_split", "scene_type"]
BOX_PARAM_DIST = {  # what RandomizedSearchCV samples; names follow the pipeline's step names
    "classifier__n_estimators": randint(20, 80),
    "classifier__max_depth": [None, 5, 10, 20],
    "classifier__min_samples_leaf": randint(1, 20),
    "preprocessor__num__imputer__strategy": ["mean", "median"],
}


class BBoxFeatureExtractor(BaseEstimator, TransformerMixin):
    """Stateless: (N, 4) corner boxes [xmin, ymin, xmax, ymax] -> (N, 5) features
    [area, aspect_ratio (w / h, h clipped at 1e-6), cx / img_w, cy / img_h, area / (img_w · img_h)]."""

    def __init__(self, img_w: float = 1920, img_h: float = 1080):
        self.img_w = img_w
        self.img_h = img_h

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        boxes = np.asarray(X, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"expected (N, 4) boxes as xmin, ymin, xmax, ymax; got shape {boxes.shape}")
        # TODO [box-model]: Widths and heights from the corners, then the five columns stacked.
        raise NotImplementedError('TODO [box-model]: Widths and heights from the corners, then the five columns stacked.')


def box_pipeline(seed: int = 42) -> Pipeline:
    """Pipeline(preprocessor, classifier) predicting a box's class from its geometry and image metadata:

    preprocessor = ColumnTransformer of
      "box": BBoxFeatureExtractor then StandardScaler, on BOX_COLUMNS;
      "num": SimpleImputer(median) then StandardScaler, on BOX_NUMERIC;
      "cat": SimpleImputer(most_frequent) then OneHotEncoder(handle_unknown="ignore", sparse_output=False),
             on BOX_CATEGORICAL;
    classifier = RandomForestClassifier(n_estimators=100, random_state=seed).
    """
    # TODO [box-model]: Three small Pipelines in a ColumnTransformer named as in the docstring.
    raise NotImplementedError('TODO [box-model]: Three small Pipelines in a ColumnTransformer named as in the docstring.')


def image_folds(df: pd.DataFrame, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """StratifiedGroupKFold splits of the boxes: class proportions kept per fold as far as whole images allow,
    and every image's boxes in exactly one test fold (never in train and test at once)."""
    # TODO [box-model]: StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(df, class, groups=image_id).
    raise NotImplementedError('TODO [box-model]: StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(df, class, groups=image_id).')


def tune_box_model(df: pd.DataFrame, n_iter: int = 10, n_splits: int = 3, seed: int = 0) -> RandomizedSearchCV:
    """RandomizedSearchCV of box_pipeline() over BOX_PARAM_DIST (n_iter draws, random_state=seed), scored by
    macro F1 on image_folds(df, n_splits, seed), n_jobs=1; refitted on all rows. X = the box, numeric and
    categorical columns of df, y = df["class"]."""
    # TODO [box-model]: Pass the precomputed image folds as cv (a list of splits), fit on the three column groups.
    raise NotImplementedError('TODO [box-model]: Pass the precomputed image folds as cv (a list of splits), fit on the three column groups.')


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=200, help="images in the box-annotation table")
    ap.add_argument("--n-iter", type=int, default=10, help="random-search candidates for the box classifier")
    args = ap.parse_args(argv)
    out = labkit.output_dir(__file__)

    df = add_time_features(camera_events(args.rows, seed=args.seed))
    df = add_group_stats(df, "camera", "motion")
    print(f"events: {df.shape}, {df['label'].mean():.1%} positive, {df['camera'].nunique()} cameras, "
          f"{df['time'].min():%Y-%m-%d} .. {df['time'].max():%Y-%m-%d}")
    print(df.groupby("is_night")["label"].mean().rename("positive rate by is_night").to_string())
    print(per_group_summary(df).head(4).to_string(float_format=lambda v: f"{v:.3f}"))

    numeric = ["motion", "brightness", "is_night", "is_weekend"]
    kf = KFold(args.folds, shuffle=True, random_state=args.seed)
    gkf = group_splits(df, "camera", args.folds)
    tss = time_splits(df, "time", args.folds)
    with_camera = safe_pipeline(["camera"], numeric)
    without = safe_pipeline([], numeric)
    X = df[["camera", *numeric]]
    print(f"{'model':<34}{'KFold':>8}{'GroupKFold':>12}{'TimeSeries':>12}")
    for name, pipe in (("numeric + OOF camera encoding", with_camera), ("numeric only", without)):
        scores = [cross_val_score(pipe, X, df["label"], cv=cv).mean() for cv in (kf, gkf, tss)]
        print(f"{name:<34}" + "".join(f"{s:>{w}.4f}" for s, w in zip(scores, (8, 12, 12))))
    print("(GroupKFold scores cameras never seen in training: their encoding falls back to the prior)")

    noise = camera_events(args.rows, n_cameras=args.rows // 3, seed=args.seed + 1, noise_only=True)
    leaky = leaky_cv_score(noise, ["camera"], "label", kf)
    safe = safe_cv_score(noise, ["camera"], "label", kf)
    print(f"label-noise table ({noise['camera'].nunique()} cameras, labels are coin flips): "
          f"leaky target encoding CV accuracy {leaky:.4f}, out-of-fold pipeline {safe:.4f} (chance 0.5)")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.bar(["encoded on all rows\n(leaky)", "encoded per fold\n(pipeline)"], [leaky, safe], color=["tab:red", "tab:green"])
    ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance")
    ax.set(ylabel="5-fold CV accuracy", ylim=(0, 1), title="random labels: leakage inflates CV")
    ax.legend()
    fig.tight_layout()
    path = out / "leakage.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")

    # the bounding-box annotation workflow
    gt = box_annotations(args.images, seed=args.seed)
    dirty = pd.concat([gt, gt.sample(5, random_state=args.seed)], ignore_index=True)  # 5 exact duplicates
    dirty.loc[[0, 1], "xmax"] = dirty.loc[[0, 1], "xmin"]  # 2 zero-width boxes
    dirty.loc[2, "xmin"] = -10.0  # one box leaving the image
    gt = add_box_features(clean_annotations(dirty))
    print(f"\nbox annotations: {len(dirty)} rows, {len(dirty) - len(gt)} dropped by cleaning, {len(gt)} boxes in "
          f"{gt['image_id'].nunique()} images; missing: {dirty.isna().sum()[lambda s: s > 0].to_dict()}")
    print(per_class_stats(gt).to_string(float_format=lambda v: f"{v:.2f}"))
    print(per_image_stats(gt).head(3).to_string(float_format=lambda v: f"{v:.0f}"))
    preds = box_predictions(gt, seed=args.seed)
    print("highest confidence per image and class:\n" + class_pivot(preds).head(3).to_string())
    matched = match_predictions(preds, gt)
    print(f"{len(preds)} predictions matched to ground truth (IoU >= 0.5): {matched['outcome'].value_counts().to_dict()}; "
          f"classes never predicted: {missed_classes(preds, gt)}")
    print("top confused pairs:\n" + top_confused_pairs(matched).to_string(index=False))
    fp = false_positive_report(matched, k=5)
    print("largest confident false positives:\n"
          + fp[["image_id", "class", "confidence", "iou_with_gt", "area"]].to_string(float_format=lambda v: f"{v:.2f}"))
    search = tune_box_model(gt, n_iter=args.n_iter, n_splits=args.folds, seed=args.seed)
    print(f"random forest on box features, RandomizedSearchCV ({args.n_iter} draws, {args.folds} image-grouped "
          f"stratified folds): best macro F1 {search.best_score_:.4f} with {search.best_params_}")
    top = pd.DataFrame(search.cv_results_).sort_values("rank_test_score")[["mean_test_score", "std_test_score"]]
    print(top.head(3).to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    labkit.run(main)
