"""Lab 01 · scikit-learn pipelines: ColumnTransformer, k-fold cross-validation from scratch, grid and random search.

A model is never just an estimator: it is the preprocessing plus the estimator, fitted together on training
folds only. This lab builds that object with `Pipeline` + `ColumnTransformer` on a mixed table (the wine
measurements plus two categorical columns), writes k-fold cross-validation by hand and checks it against
`cross_val_score`, tunes hyperparameters with `GridSearchCV` and `RandomizedSearchCV`, and runs an RBF-SVM
pipeline on the 8x8 digits that clears a stated accuracy floor. Then it assembles a random forest from bootstrap
samples and decision trees (out-of-bag score, Gini and permutation importance, all checked against
scikit-learn), and measures the leak of a scaler fitted on all rows before cross-validation.

Run it:  python solution.py [--folds 5] [--n-iter 8] [--trees 100]
Outputs: outputs/.../search_curve.png, outputs/.../feature_importance.png
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import (GridSearchCV, KFold, LeaveOneGroupOut, RandomizedSearchCV, StratifiedKFold,
                                     cross_val_score)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

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
    # TODO [build-pipeline]: ColumnTransformer([("num", scaler, cols), ("cat", one-hot, cols)]) then the model.
    raise NotImplementedError('TODO [build-pipeline]: ColumnTransformer([("num", scaler, cols), ("cat", one-hot, cols)]) then the model.')


def kfold_splits(n_samples: int, k: int = 5, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, test_idx) pairs, exactly like sklearn's KFold(k, shuffle=seed is not None, random_state=seed).

    Fold sizes: the first n % k folds get one extra sample. With a seed the indices are first permuted by
    np.random.RandomState(seed) (the legacy generator sklearn uses), then cut into consecutive folds.
    """
    if not 2 <= k <= n_samples:
        raise ValueError(f"k must be between 2 and the number of samples ({n_samples}), got {k}")
    # TODO [kfold-cv]: Permute (if seeded), fold sizes n//k (+1 for the first n%k), test = a slice.
    raise NotImplementedError('TODO [kfold-cv]: Permute (if seeded), fold sizes n//k (+1 for the first n%k), test = a slice.')


def cross_val_scores(estimator, X, y, splits) -> np.ndarray:
    """Accuracy on each held-out fold of a fresh clone of `estimator` fitted on that fold's training rows.

    Works for NumPy arrays and DataFrames (rows by position). Cloning matters: nothing fitted leaks
    from one fold into the next.
    """
    # TODO [kfold-cv]: For each split: clone, fit on the train rows, accuracy on the test rows.
    raise NotImplementedError('TODO [kfold-cv]: For each split: clone, fit on the train rows, accuracy on the test rows.')


def grid_search(pipe: Pipeline, X, y, grid: dict, folds: int = 5, seed: int = 0) -> GridSearchCV:
    """Exhaustive search over `grid` with shuffled stratified k-fold CV (accuracy), refitted on all of X."""
    # TODO [search]: GridSearchCV with a seeded StratifiedKFold, n_jobs=1, then .fit.
    raise NotImplementedError('TODO [search]: GridSearchCV with a seeded StratifiedKFold, n_jobs=1, then .fit.')


def random_search(pipe: Pipeline, X, y, distributions: dict, n_iter: int = 8, folds: int = 5,
                  seed: int = 0) -> RandomizedSearchCV:
    """`n_iter` candidates drawn from `distributions` (seeded), same CV as grid_search."""
    # TODO [search]: RandomizedSearchCV: same cv as above, random_state=seed for the draws.
    raise NotImplementedError('TODO [search]: RandomizedSearchCV: same cv as above, random_state=seed for the draws.')


def digits_pipeline(C: float = 10.0) -> Pipeline:
    """Scaler + RBF-SVM for the 64 pixel features of load_digits; gamma='scale' = 1 / (n_features · Var(X))."""
    # TODO [digits]: StandardScaler then SVC(kernel="rbf", C=C, gamma="scale").
    raise NotImplementedError('TODO [digits]: StandardScaler then SVC(kernel="rbf", C=C, gamma="scale").')


# ----------------------------------------------------------------------------- random forest from bagged trees

def bootstrap_sample(n_samples: int, seed: int) -> np.ndarray:
    """n_samples row indices drawn uniformly WITH replacement by np.random.RandomState(seed).randint (the draw
    scikit-learn's forests make for a tree whose random_state is `seed`)."""
    # TODO [random-forest]: One randint call on a RandomState seeded with `seed`.
    raise NotImplementedError('TODO [random-forest]: One randint call on a RandomState seeded with `seed`.')


def out_of_bag_mask(n_samples: int, in_bag) -> np.ndarray:
    """True for the rows a bootstrap sample never drew. Each row is missed with probability (1 − 1/n)^n, which
    tends to 1/e ≈ 0.368: about a third of the rows are a free validation set for every tree."""
    # TODO [random-forest]: Count the draws per row (np.bincount with minlength); zero draws = out of bag.
    raise NotImplementedError('TODO [random-forest]: Count the draws per row (np.bincount with minlength); zero draws = out of bag.')


class BaggedForest(ClassifierMixin, BaseEstimator):
    """A random forest assembled by hand: each tree is a DecisionTreeClassifier(max_features=...) fitted on its own
    bootstrap sample, and the forest averages the trees' class probabilities.

    Seeds follow scikit-learn's RandomForestClassifier(random_state=seed), so the two agree tree for tree:
    a RandomState(seed) draws one integer per tree with randint(np.iinfo(np.int32).max); that integer seeds both
    the tree's bootstrap sample and the tree itself (its random feature subsets). (sklearn passes the draw counts
    as sample weights instead of repeating rows; for these trees that gives the same splits.)
    """

    def __init__(self, n_trees: int = 100, max_features="sqrt", max_depth: int | None = None, seed: int = 0):
        self.n_trees = n_trees
        self.max_features = max_features
        self.max_depth = max_depth  # None grows each tree until its leaves are pure
        self.seed = seed

    def fit(self, X, y):
        X, y = np.asarray(X, np.float64), np.asarray(y)
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        # TODO [random-forest]: Per tree: seed = rs.randint(int32 max); rows = bootstrap_sample; fit a tree.
        raise NotImplementedError('TODO [random-forest]: Per tree: seed = rs.randint(int32 max); rows = bootstrap_sample; fit a tree.')

    def _tree_proba(self, tree, X) -> np.ndarray:
        """One tree's probabilities in the forest's class order (a bootstrap may miss a class entirely)."""
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, np.searchsorted(self.classes_, tree.classes_)] = tree.predict_proba(X)
        return proba

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) mean of the trees' class probabilities (soft voting)."""
        X = np.asarray(X, np.float64)
        # TODO [random-forest]: Average _tree_proba over the trees.
        raise NotImplementedError('TODO [random-forest]: Average _tree_proba over the trees.')

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def oob_score(self, X, y) -> float:
        """Out-of-bag accuracy on the training data: each row is predicted only by the trees whose bootstrap
        missed it (probabilities averaged over those trees); rows that no tree missed are left out."""
        X, y = np.asarray(X, np.float64), np.asarray(y)
        # TODO [random-forest]: Sum each tree's probabilities over its out-of-bag rows; count the trees per row.
        raise NotImplementedError("TODO [random-forest]: Sum each tree's probabilities over its out-of-bag rows; count the trees per row.")

    def gini_importance(self) -> np.ndarray:
        """Mean decrease in Gini impurity per feature: each tree's feature_importances_ (already normalised to sum
        to 1) averaged over the trees that split at least once, then normalised again. Like
        RandomForestClassifier.feature_importances_."""
        # TODO [importance]: Mean over trees with node_count > 1, divided by its sum.
        raise NotImplementedError('TODO [importance]: Mean over trees with node_count > 1, divided by its sum.')


def permutation_importance(model, X, y, n_repeats: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Permutation importance: accuracy on (X, y) minus the accuracy after shuffling one column, which breaks that
    feature's link to the label while keeping its distribution. Repeated n_repeats times per feature with
    np.random.default_rng(seed). Returns (mean drop, std of the drops) per feature.

    Unlike the Gini importance it is measured on held-out data and on the model's actual predictions, so it is
    not inflated for high-cardinality features; two correlated features share (and hide) their importance.
    """
    X, y = np.asarray(X, np.float64), np.asarray(y)
    rng = np.random.default_rng(seed)
    # TODO [importance]: Baseline accuracy; per column and repeat: copy X, permute that column, re-score.
    raise NotImplementedError('TODO [importance]: Baseline accuracy; per column and repeat: copy X, permute that column, re-score.')


# ----------------------------------------------------------------------------- leakage: a scaler fitted before CV

def camera_table(seed: int = 0, per_camera: int = 60, noise_scales=(1.0, 1.0, 1.0, 20.0)):
    """Image-level features from four cameras: 2 informative features (class 1 sits 2 units higher) and 6 sensor
    nuisance features whose spread depends on the camera (the last camera is 20x noisier). Returns (X, y, camera)."""
    rng = np.random.default_rng(seed)
    camera = np.repeat(np.arange(len(noise_scales)), per_camera)
    y = rng.integers(0, 2, len(camera))
    informative = rng.normal(0.0, 1.0, (len(y), 2)) + 2.0 * y[:, None]
    nuisance = rng.normal(0.0, 1.0, (len(y), 6)) * np.asarray(noise_scales)[camera][:, None]
    return np.c_[informative, nuisance], y, camera


def leaky_vs_pipeline_cv(model, X, y, cv, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy of `model` under the same folds, two ways:

    leaky:    StandardScaler fitted on ALL rows first, then cross-validation of the model on the scaled rows
              (the held-out fold's statistics leak into the scaling of the training rows);
    pipeline: cross-validation of Pipeline(StandardScaler, model), so each fold's scaler sees training rows only.
    `groups` goes to the splitter (GroupKFold, LeaveOneGroupOut). Returns (leaky scores, pipeline scores).
    """
    # TODO [leakage]: cross_val_score twice: on StandardScaler().fit_transform(X), and on make_pipeline(scaler, model).
    raise NotImplementedError('TODO [leakage]: cross_val_score twice: on StandardScaler().fit_transform(X), and on make_pipeline(scaler, model).')


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


def plot_importances(names, gini, gini_ref, perm, perm_ref, path) -> None:
    """Grouped bars: Gini importance (ours, sklearn's) and permutation importance (ours, sklearn's) per feature."""
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 4))
    for offset, values, label in ((-0.3, gini, "Gini (bagged trees)"), (-0.1, gini_ref, "Gini (RandomForestClassifier)"),
                                  (0.1, perm, "permutation (ours)"), (0.3, perm_ref, "permutation (sklearn)")):
        ax.bar(x + offset, values, width=0.2, label=label)
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="importance", title="Gini (training impurity) vs permutation (held-out accuracy drop)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--n-iter", type=int, default=8, help="candidates for the random search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=100, help="trees in the random forest")
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

    # random forest from bagged trees, next to scikit-learn's
    wine = load_wine()
    Xw, yw = wine.data, wine.target
    order = np.random.default_rng(args.seed).permutation(len(yw))
    train, test = order[:120], order[120:]
    forest = BaggedForest(n_trees=args.trees, seed=args.seed).fit(Xw[train], yw[train])
    ref = RandomForestClassifier(n_estimators=args.trees, random_state=args.seed, oob_score=True).fit(Xw[train], yw[train])
    oob = np.mean([out_of_bag_mask(len(train), rows).mean() for rows in forest.in_bag_])
    print(f"random forest ({args.trees} bagged trees, max_features=sqrt) on wine: test accuracy "
          f"{forest.score(Xw[test], yw[test]):.4f}, OOB accuracy {forest.oob_score(Xw[train], yw[train]):.4f} "
          f"(sklearn: {ref.score(Xw[test], yw[test]):.4f}, {ref.oob_score_:.4f}); largest probability gap "
          f"{np.abs(forest.predict_proba(Xw[test]) - ref.predict_proba(Xw[test])).max():.1e}")
    print(f"  out-of-bag fraction per tree: {oob:.4f} (expected (1 - 1/{len(train)})^{len(train)} = "
          f"{(1 - 1 / len(train)) ** len(train):.4f}; 1/e = {1 / np.e:.4f})")
    gini, perm = forest.gini_importance(), permutation_importance(forest, Xw[test], yw[test], 10, args.seed)[0]
    perm_ref = sklearn_permutation_importance(ref, Xw[test], yw[test], n_repeats=10, random_state=args.seed)
    top = lambda v: [wine.feature_names[i] for i in np.argsort(-v)[:3]]  # noqa: E731
    print(f"  top 3 by Gini: {top(gini)} (sklearn {top(ref.feature_importances_)})")
    print(f"  top 3 by permutation on the test rows: {top(perm)} (sklearn {top(perm_ref.importances_mean)})")
    path = out / "feature_importance.png"
    plot_importances(wine.feature_names, gini, ref.feature_importances_, perm, perm_ref.importances_mean, path)
    print(f"  figure: {path}")

    # leakage: a scaler fitted on all rows before cross-validation
    Xc, yc, camera = camera_table(args.seed)
    knn = KNeighborsClassifier(7)
    leaky, honest = leaky_vs_pipeline_cv(knn, Xc, yc, LeaveOneGroupOut(), camera)
    print(f"camera table {Xc.shape}, one fold per camera (camera 3 is 20x noisier), k-NN (k=7):")
    print(f"  scaler fitted on all rows, then CV : {np.round(leaky, 3).tolist()} mean {leaky.mean():.3f}")
    print(f"  Pipeline(scaler, k-NN) inside CV   : {np.round(honest, 3).tolist()} mean {honest.mean():.3f}")
    leaky, honest = leaky_vs_pipeline_cv(knn, Xc, yc, StratifiedKFold(4, shuffle=True, random_state=args.seed))
    print(f"  same rows, shuffled stratified folds: leaky {leaky.mean():.3f} vs pipeline {honest.mean():.3f}")


if __name__ == "__main__":
    labkit.run(main)
