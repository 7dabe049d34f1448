"""Lab 01 · scikit-learn pipelines: ColumnTransformer, k-fold cross-validation from scratch, grid and random search.

A model is never just an estimator: it is the preprocessing plus the estimator, fitted together on training
folds only. This lab builds that object with `Pipeline` + `ColumnTransformer` on a mixed table (the wine
measurements plus two categorical columns), writes k-fold cross-validation by hand and checks it against
`cross_val_score`, tunes hyperparameters with `GridSearchCV` and `RandomizedSearchCV`, and finishes with an
RBF-SVM pipeline on the 8x8 digits that clears a stated accuracy floor.

Run it:  python solution.py [--folds 5] [--n-iter 8]
Outputs: outputs/.../search_curve.png
"""
from __future__ import annotations

import argparse

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import labkit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CATEGORICAL = ["region", "vessel"]
DIGITS_FLOOR = 0.97  # 5-fold accuracy the digits pipeline must beat (an RBF-SVM reaches about 0.98)


def mixed_wine_table(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """The 178-row wine data as a DataFrame, plus two synthetic categorical columns (strings).

    'region' depends on the cultivar (informative, noisy); 'vessel' is pure noise. Returns (X, y).
    """
    data = load_wine(as_frame=True)
    X, y = data.data.copy(), data.target.rename("cultivar")
    rng = np.random.default_rng(seed)
    regions = np.array(["north", "south", "coast"])
    # 70% of rows take the region of their cultivar, 30% a random one
    X["region"] = np.where(rng.random(len(y)) < 0.7, regions[y.to_numpy()], rng.choice(regions, len(y)))
    X["vessel"] = rng.choice(["oak", "steel", "clay"], len(y))
    return X, y


def split_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric columns and object/category columns, in table order."""
    numeric = X.select_dtypes(include="number").columns.tolist()
    categorical = X.select_dtypes(include=["object", "category", "string"]).columns.tolist()
    return numeric, categorical


def build_pipeline(numeric: list[str], categorical: list[str], model=None) -> Pipeline:
    """Pipeline(prep -> model), where prep standardises the numeric columns and one-hot encodes the categorical ones.

    Steps are named "prep" and "model", and the transformers "num" and "cat", so search grids can address
    parameters as "model__C" or "prep__num__with_mean". Unknown categories at predict time become all-zero rows.
    """
    if not numeric and not categorical:
        raise ValueError("give at least one numeric or categorical column name")
    model = LogisticRegression(max_iter=2000) if model is None else model
    # BEGIN SOLUTION [build-pipeline] ColumnTransformer([("num", scaler, cols), ("cat", one-hot, cols)]) then the model.
    prep = ColumnTransformer([
        ("num", StandardScaler(), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
    ])
    return Pipeline([("prep", prep), ("model", model)])
    # END SOLUTION


def kfold_splits(n_samples: int, k: int = 5, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, test_idx) pairs, exactly like sklearn's KFold(k, shuffle=seed is not None, random_state=seed).

    Fold sizes: the first n % k folds get one extra sample. With a seed the indices are first permuted by
    np.random.RandomState(seed) (the legacy generator sklearn uses), then cut into consecutive folds.
    """
    if not 2 <= k <= n_samples:
        raise ValueError(f"k must be between 2 and the number of samples ({n_samples}), got {k}")
    # BEGIN SOLUTION [kfold-cv] Permute (if seeded), fold sizes n//k (+1 for the first n%k), test = a slice.
    idx = np.arange(n_samples) if seed is None else np.random.RandomState(seed).permutation(n_samples)
    sizes = np.full(k, n_samples // k)
    sizes[: n_samples % k] += 1
    splits, start = [], 0
    for size in sizes:
        test = idx[start:start + size]
        train = np.concatenate([idx[:start], idx[start + size:]])
        splits.append((np.sort(train), np.sort(test)))  # KFold yields indices in increasing order
        start += size
    return splits
    # END SOLUTION


def cross_val_scores(estimator, X, y, splits) -> np.ndarray:
    """Accuracy on each held-out fold of a fresh clone of `estimator` fitted on that fold's training rows.

    Works for NumPy arrays and DataFrames (rows by position). Cloning matters: nothing fitted leaks
    from one fold into the next.
    """
    # BEGIN SOLUTION [kfold-cv] For each split: clone, fit on the train rows, accuracy on the test rows.
    take = (lambda a, i: a.iloc[i]) if hasattr(X, "iloc") else (lambda a, i: a[i])
    scores = []
    for train, test in splits:
        model = clone(estimator).fit(take(X, train), take(y, train))
        scores.append(accuracy_score(take(y, test), model.predict(take(X, test))))
    return np.array(scores)
    # END SOLUTION


def grid_search(pipe: Pipeline, X, y, grid: dict, folds: int = 5, seed: int = 0) -> GridSearchCV:
    """Exhaustive search over `grid` with shuffled stratified k-fold CV (accuracy), refitted on all of X."""
    # BEGIN SOLUTION [search] GridSearchCV with a seeded StratifiedKFold, n_jobs=1, then .fit.
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, grid, cv=cv, scoring="accuracy", n_jobs=1).fit(X, y)
    # END SOLUTION


def random_search(pipe: Pipeline, X, y, distributions: dict, n_iter: int = 8, folds: int = 5,
                  seed: int = 0) -> RandomizedSearchCV:
    """`n_iter` candidates drawn from `distributions` (seeded), same CV as grid_search."""
    # BEGIN SOLUTION [search] RandomizedSearchCV: same cv as above, random_state=seed for the draws.
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return RandomizedSearchCV(pipe, distributions, n_iter=n_iter, cv=cv, scoring="accuracy", n_jobs=1,
                              random_state=seed).fit(X, y)
    # END SOLUTION


def digits_pipeline(C: float = 10.0) -> Pipeline:
    """Scaler + RBF-SVM for the 64 pixel features of load_digits; gamma='scale' = 1 / (n_features · Var(X))."""
    # BEGIN SOLUTION [digits] StandardScaler then SVC(kernel="rbf", C=C, gamma="scale").
    return Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="rbf", C=C, gamma="scale"))])
    # END SOLUTION


def plot_search(search: GridSearchCV, param: str, path) -> None:
    """Mean ± std CV accuracy against one searched parameter (log x axis), saved as PNG."""
    res = search.cv_results_
    x = np.array([p[param] for p in res["params"]], float)
    order = np.argsort(x)
    mean, std = res["mean_test_score"][order], res["std_test_score"][order]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(x[order], mean, yerr=std, marker="o", capsize=4)
    ax.set(xscale="log", xlabel=param, ylabel="CV accuracy", title="grid search: mean ± std over folds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--n-iter", type=int, default=8, help="candidates for the random search")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = labkit.output_dir(__file__)

    X, y = mixed_wine_table(args.seed)
    numeric, categorical = split_columns(X)
    print(f"wine table: {X.shape[0]} rows, {len(numeric)} numeric + {len(categorical)} categorical columns "
          f"{categorical}; classes {np.bincount(y).tolist()}")
    pipe = build_pipeline(numeric, categorical)
    n_out = pipe.fit(X, y).named_steps["prep"].transform(X.head(1)).shape[1]
    print(f"pipeline: {[name for name, _ in pipe.steps]}, {n_out} features after the ColumnTransformer")

    splits = kfold_splits(len(y), args.folds, args.seed)
    ours = cross_val_scores(pipe, X, y, splits)
    ref = cross_val_score(pipe, X, y, cv=KFold(args.folds, shuffle=True, random_state=args.seed))
    print(f"k-fold from scratch : {np.round(ours, 4).tolist()}  mean {ours.mean():.4f}")
    print(f"sklearn cross_val_score: {np.round(ref, 4).tolist()}  max |diff| {np.abs(ours - ref).max():.1e}")

    grid = grid_search(pipe, X, y, {"model__C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}, args.folds, args.seed)
    print(f"grid search (6 candidates): best {grid.best_params_} CV accuracy {grid.best_score_:.4f}")
    rand = random_search(pipe, X, y, {"model__C": loguniform(1e-3, 1e2)}, args.n_iter, args.folds, args.seed)
    print(f"random search ({args.n_iter} draws): best C={rand.best_params_['model__C']:.4g} "
          f"CV accuracy {rand.best_score_:.4f}")
    path = out / "search_curve.png"
    plot_search(grid, "model__C", path)

    digits = load_digits()
    scores = cross_val_score(digits_pipeline(), digits.data, digits.target,
                             cv=StratifiedKFold(args.folds, shuffle=True, random_state=args.seed))
    print(f"digits ({digits.data.shape[0]} images 8x8): scaler + RBF-SVM {args.folds}-fold accuracy "
          f"{scores.mean():.4f} ± {scores.std():.4f} (floor {DIGITS_FLOOR})")
    print(f"figure: {path}")


if __name__ == "__main__":
    labkit.run(main)
