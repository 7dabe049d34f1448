"""Lab 04 · pandas + scikit-learn: feature engineering without leakage.

A table of camera events (timestamp, camera, site, a couple of measurements, a binary label) is the running
example. The lab builds features with pandas (datetime parts, per-group aggregates), encodes a
high-cardinality column by its target mean out-of-fold, and shows what goes wrong when any statistic is
fitted on data the model is later scored on:

- on a pure label-noise table (labels independent of everything), target encoding fitted on all rows gives a
  cross-validated accuracy far above chance; the same encoder inside a Pipeline, fitted per training fold with
  out-of-fold encodings, stays at chance;
- rows from one camera are correlated, so they must not sit on both sides of a split (GroupKFold), and a
  model that will predict the future is validated on the future (TimeSeriesSplit).

Run it:  python solution.py [--rows 3000] [--folds 5]
Outputs: outputs/.../leakage.png
"""
from __future__ import annotations

import argparse

import matplotlib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, TimeSeriesSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

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
    # BEGIN SOLUTION [features] The .dt accessor gives hour and day_of_week; derive the two flags from them.
    out = df.copy()
    out["hour"] = out[col].dt.hour
    out["day_of_week"] = out[col].dt.day_of_week
    out["is_weekend"] = (out["day_of_week"] >= 5).astype(int)
    out["is_night"] = ((out["hour"] < 6) | (out["hour"] >= 20)).astype(int)
    return out
    # END SOLUTION


def add_group_stats(df: pd.DataFrame, key: str, value: str) -> pd.DataFrame:
    """A copy of df with, for every row, the count, mean and (ddof=1) std of `value` within its `key` group,
    and the row's deviation from its group mean. Columns: {value}_count_by_{key}, ..._mean_..., ..._std_...,
    {value}_minus_mean_by_{key}. A group of one has std NaN (pandas' rule).

    These are statistics of the rows you pass in: compute them on training rows and merge onto test rows.
    """
    # BEGIN SOLUTION [features] groupby(key)[value].transform("count" / "mean" / "std"): one value per row.
    out = df.copy()
    g = out.groupby(key)[value]
    for stat in ("count", "mean", "std"):
        out[f"{value}_{stat}_by_{key}"] = g.transform(stat)
    out[f"{value}_minus_mean_by_{key}"] = out[value] - out[f"{value}_mean_by_{key}"]
    return out
    # END SOLUTION


def per_group_summary(df: pd.DataFrame, key: str = "camera") -> pd.DataFrame:
    """One row per group, sorted by key: n_events, positive_rate, mean_motion, first and last event time."""
    # BEGIN SOLUTION [features] groupby(key).agg with named aggregations.
    return (df.groupby(key)
              .agg(n_events=("label", "size"), positive_rate=("label", "mean"), mean_motion=("motion", "mean"),
                   first=("time", "min"), last=("time", "max"))
              .sort_index())
    # END SOLUTION


# ----------------------------------------------------------------------------- target encoding

def target_means(keys, y, smoothing: float = 10.0) -> tuple[pd.Series, float]:
    """Smoothed mean target per category: (sum_c + m·prior) / (n_c + m), and the prior (mean of y).

    m = smoothing pulls rare categories towards the prior. Returns (Series indexed by category, prior).
    """
    keys, y = pd.Series(np.asarray(keys)), pd.Series(np.asarray(y, np.float64))
    if len(keys) != len(y):
        raise ValueError(f"{len(keys)} keys but {len(y)} targets; pass one target per row")
    # BEGIN SOLUTION [target-encoding] groupby sum and count of y per key; blend with the prior.
    prior = float(y.mean())
    stats = y.groupby(keys.to_numpy()).agg(["sum", "count"])
    return (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing), prior
    # END SOLUTION


def oof_target_encode(keys, y, splits, smoothing: float = 10.0) -> np.ndarray:
    """Out-of-fold encoding: each row gets the smoothed mean computed from the OTHER folds only (their prior
    too); a category absent from those folds gets their prior. No row ever sees its own label."""
    keys, y = np.asarray(keys), np.asarray(y, np.float64)
    # BEGIN SOLUTION [target-encoding] For each (train, test) split: target_means on train, map onto test keys.
    out = np.full(len(keys), np.nan)
    for train, test in splits:
        means, prior = target_means(keys[train], y[train], smoothing)
        out[test] = pd.Series(keys[test]).map(means).fillna(prior).to_numpy()
    if np.isnan(out).any():
        raise ValueError("the splits do not cover every row once as a test row; use a KFold-style splitter")
    return out
    # END SOLUTION


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
        # BEGIN SOLUTION [target-encoding] fit (for later transforms), then encode each column out-of-fold.
        self.fit(X, y)
        cols = np.asarray(X, dtype=object).reshape(len(y), -1)
        splits = list(KFold(self.n_splits, shuffle=True, random_state=self.seed).split(cols))
        return np.column_stack([oof_target_encode(cols[:, j], y, splits, self.smoothing)
                                for j in range(cols.shape[1])])
        # END SOLUTION


# ----------------------------------------------------------------------------- leakage and splits

def safe_pipeline(categorical: list[str], numeric: list[str], smoothing: float = 10.0) -> Pipeline:
    """Out-of-fold target encoding for `categorical`, standardisation for `numeric`, then logistic regression."""
    prep = ColumnTransformer([("te", OOFTargetEncoder(smoothing), categorical), ("num", StandardScaler(), numeric)])
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))])


def leaky_cv_score(df: pd.DataFrame, categorical: list[str], target: str, cv, smoothing: float = 10.0) -> float:
    """The mistake: target-encode with means fitted on ALL rows, then cross-validate a model on the result.

    Every held-out row's feature already contains its own label, so the CV score is optimistic.
    """
    # BEGIN SOLUTION [leakage] target_means on the full table, map each column, cross_val_score a LogisticRegression.
    encoded = np.column_stack([df[c].map(target_means(df[c], df[target], smoothing)[0]).to_numpy(np.float64)
                               for c in categorical])
    return float(cross_val_score(LogisticRegression(max_iter=1000), encoded, df[target], cv=cv).mean())
    # END SOLUTION


def safe_cv_score(df: pd.DataFrame, categorical: list[str], target: str, cv, smoothing: float = 10.0,
                  groups=None) -> float:
    """The fix: the encoder lives inside the pipeline, so each fold fits it on that fold's training rows only."""
    # BEGIN SOLUTION [leakage] cross_val_score(safe_pipeline(categorical, []), df[categorical], ...).
    pipe = safe_pipeline(categorical, [], smoothing)
    return float(cross_val_score(pipe, df[categorical], df[target], cv=cv, groups=groups).mean())
    # END SOLUTION


def group_splits(df: pd.DataFrame, group_col: str, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold splits: every group's rows fall in exactly one test fold and never on both sides."""
    # BEGIN SOLUTION [splits] GroupKFold(n_splits).split(df, groups=df[group_col]).
    return list(GroupKFold(n_splits).split(df, groups=df[group_col]))
    # END SOLUTION


def time_splits(df: pd.DataFrame, time_col: str, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """TimeSeriesSplit splits in time order (positions into df, which need not be sorted): each test fold
    lies strictly after everything in its training fold, and training folds grow."""
    # BEGIN SOLUTION [splits] argsort by time (stable), split the sorted positions, map back through the order.
    order = np.argsort(df[time_col].to_numpy(), kind="stable")
    return [(order[tr], order[te]) for tr, te in TimeSeriesSplit(n_splits).split(order)]
    # END SOLUTION


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
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


if __name__ == "__main__":
    labkit.run(main)
