"""Lab 01 checks: the pipeline's features against a hand-built StandardScaler + get_dummies matrix, k-fold
splits and scores against KFold / cross_val_score, searches against brute force over the same folds, and the
digits accuracy floor."""
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted
from scipy.stats import loguniform


@pytest.fixture(scope="module")
def table(impl):
    X, y = impl.mixed_wine_table(0)
    numeric, categorical = impl.split_columns(X)
    return X, y, numeric, categorical


def reference_features(X_fit, X_apply, numeric, categorical):
    scaler = StandardScaler().fit(X_fit[numeric])
    cats = [sorted(X_fit[c].unique()) for c in categorical]
    onehot = [(X_apply[c].to_numpy()[:, None] == np.array(levels)[None, :]).astype(float)
              for c, levels in zip(categorical, cats)]
    return np.hstack([scaler.transform(X_apply[numeric]), *onehot])


@pytest.mark.task("build-pipeline")
def test_pipeline_features_equal_scaler_plus_onehot(impl, table):
    X, y, numeric, categorical = table
    pipe = impl.build_pipeline(numeric, categorical).fit(X.iloc[:120], y.iloc[:120])
    names = [n for n, _ in pipe.steps]
    assert names == ["prep", "model"], f"expected steps ['prep', 'model'], got {names}"
    got = np.asarray(pipe.named_steps["prep"].transform(X.iloc[120:]))
    want = reference_features(X.iloc[:120], X.iloc[120:], numeric, categorical)
    assert got.shape == want.shape, f"expected {want.shape} features (13 scaled + 6 one-hot), got {got.shape}"
    assert np.allclose(got, want, atol=1e-10), \
        f"features differ from StandardScaler fitted on the training rows + one-hot: max gap {np.abs(got - want).max():.2e}"


@pytest.mark.task("build-pipeline")
def test_pipeline_predicts_like_manual_composition(impl, table):
    X, y, numeric, categorical = table
    pipe = impl.build_pipeline(numeric, categorical, LogisticRegression(max_iter=2000)).fit(X.iloc[:120], y.iloc[:120])
    manual = LogisticRegression(max_iter=2000).fit(reference_features(X.iloc[:120], X.iloc[:120], numeric, categorical),
                                                    y.iloc[:120])
    ref = manual.predict(reference_features(X.iloc[:120], X.iloc[120:], numeric, categorical))
    got = pipe.predict(X.iloc[120:])
    assert np.array_equal(got, ref), f"predictions differ from scaler+one-hot+LogisticRegression by hand on {np.sum(got != ref)} rows"
    unseen = X.iloc[120:125].copy()
    unseen["region"] = "mountain"  # a category never seen in training must not crash prediction
    row = np.asarray(pipe.named_steps["prep"].transform(unseen))[:, len(numeric):len(numeric) + 3]
    assert np.all(row == 0), f"an unseen category should one-hot to all zeros, got {row[0]}"


@pytest.mark.task("kfold-cv")
@pytest.mark.parametrize("n,k,seed", [(10, 3, None), (178, 5, 0), (23, 4, 3), (50, 7, 11)])
def test_kfold_splits_equal_sklearn(impl, n, k, seed):
    ours = impl.kfold_splits(n, k, seed)
    ref = list(KFold(k, shuffle=seed is not None, random_state=seed).split(np.zeros(n)))
    assert len(ours) == k, f"expected {k} folds, got {len(ours)}"
    for i, ((tr, te), (rtr, rte)) in enumerate(zip(ours, ref)):
        assert np.array_equal(np.asarray(te), rte), f"n={n} k={k} seed={seed}: fold {i} test indices differ from KFold's"
        assert np.array_equal(np.asarray(tr), rtr), f"n={n} k={k} seed={seed}: fold {i} train indices differ from KFold's"


@pytest.mark.task("kfold-cv")
def test_cross_val_scores_equal_cross_val_score(impl, table):
    X, y, numeric, categorical = table
    prep = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), categorical)])
    pipe = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=2000))])  # built here: kfold-cv stands alone
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    got = impl.cross_val_scores(pipe, X, y, folds)
    ref = cross_val_score(pipe, X, y, cv=folds)
    assert np.allclose(got, ref, atol=1e-12), f"expected cross_val_score's {np.round(ref, 4)}, got {np.round(got, 4)}"
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe)  # the estimator passed in must stay unfitted: each fold fits a clone


@pytest.mark.task("kfold-cv")
def test_cross_val_scores_take_rows_by_position(impl, table):
    X, y, numeric, _ = table
    # same rows, but the index labels are a permutation of 0..n-1: folds are positions, never labels
    labels = np.random.default_rng(7).permutation(len(y))
    Xp, yp = X[numeric].set_axis(labels), y.set_axis(labels)
    pipe = Pipeline([("scale", StandardScaler()), ("model", KNeighborsClassifier(1))])
    folds = list(KFold(3, shuffle=True, random_state=2).split(Xp))
    got = impl.cross_val_scores(pipe, Xp, yp, folds)
    ref = cross_val_score(pipe, Xp, yp, cv=folds)
    assert np.allclose(got, ref, atol=1e-12), \
        f"a DataFrame with shuffled index labels: expected {np.round(ref, 4)}, got {np.round(got, 4)} " \
        "(split indices are row positions)"


@pytest.mark.task("kfold-cv")
def test_cross_val_scores_numpy_other_estimator(impl):
    d = load_digits()
    X, y = d.data[:300], d.target[:300]
    folds = list(StratifiedKFold(3, shuffle=True, random_state=1).split(X, y))
    got = impl.cross_val_scores(KNeighborsClassifier(3), X, y, folds)
    ref = cross_val_score(KNeighborsClassifier(3), X, y, cv=folds)
    assert np.allclose(got, ref, atol=1e-12), f"k-NN on digits: expected {np.round(ref, 4)}, got {np.round(got, 4)}"


@pytest.fixture(scope="module")
def wine_numeric(table):
    X, y, numeric, _ = table
    # four numeric columns only: the C values then rank clearly apart, and each fit is quick
    return X[numeric[:4]].to_numpy(), y.to_numpy()


def small_pipe():
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))])


@pytest.mark.task("search")
def test_grid_search_picks_brute_force_best(impl, wine_numeric):
    X, y = wine_numeric
    grid = {"model__C": [0.001, 10.0]}
    search = impl.grid_search(small_pipe(), X, y, grid, folds=3, seed=0)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    means = [cross_val_score(small_pipe().set_params(**p), X, y, cv=cv).mean() for p in ParameterGrid(grid)]
    best = list(ParameterGrid(grid))[int(np.argmax(means))]
    assert search.best_params_ == best, f"brute force over the same folds picks {best} (means {np.round(means, 4)}), " \
                                        f"got {search.best_params_}"
    assert search.best_score_ == pytest.approx(max(means), abs=1e-12), f"best score expected {max(means):.4f}"
    assert hasattr(search, "best_estimator_"), "the search should refit the best pipeline on all rows"


@pytest.mark.task("search")
def test_random_search_is_seeded_and_draws_n_iter(impl, wine_numeric):
    X, y = wine_numeric
    dist = {"model__C": loguniform(1e-3, 1e2)}
    search = impl.random_search(small_pipe(), X, y, dist, n_iter=3, folds=3, seed=5)
    drawn = [p["model__C"] for p in search.cv_results_["params"]]
    ref = [p["model__C"] for p in ParameterSampler(dist, 3, random_state=5)]
    assert np.allclose(drawn, ref), f"with seed 5 the 3 candidates should be {np.round(ref, 5)}, got {np.round(drawn, 5)}"
    assert search.best_score_ == pytest.approx(search.cv_results_["mean_test_score"].max())
    cv = StratifiedKFold(3, shuffle=True, random_state=5)  # the same stratified, shuffled folds as grid_search
    for p, got in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        want = cross_val_score(small_pipe().set_params(**p), X, y, cv=cv).mean()
        assert got == pytest.approx(want, abs=1e-12), \
            f"C={p['model__C']:.4g}: expected mean accuracy {want:.4f} over StratifiedKFold(3, shuffle, seed 5), got {got:.4f}"


@pytest.mark.task("digits")
@pytest.mark.parametrize("C", [0.5, 10.0])
def test_digits_pipeline_equals_scaler_plus_rbf_svc(impl, C):
    d = load_digits()
    X_fit, y_fit, X_new = d.data[:500], d.target[:500], d.data[500:800]
    ref = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="rbf", C=C, gamma="scale"))]).fit(X_fit, y_fit)
    got = impl.digits_pipeline(C).fit(X_fit, y_fit)
    want = ref.decision_function(X_new)
    gap = np.abs(np.asarray(got.decision_function(X_new)) - want).max()
    assert gap < 1e-6, f"C={C}: decision values differ from StandardScaler + SVC(rbf, C={C}, gamma='scale') " \
                       f"by {gap:.2e}"


@pytest.mark.task("digits")
def test_digits_pipeline_clears_floor(impl):
    d = load_digits()
    pipe = impl.digits_pipeline()
    svc = [s for _, s in pipe.steps if isinstance(s, SVC)]
    assert svc and svc[0].kernel == "rbf", "expected an RBF SVC as the pipeline's classifier"
    scores = cross_val_score(pipe, d.data, d.target, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    assert scores.mean() > impl.DIGITS_FLOOR, f"expected 5-fold accuracy above {impl.DIGITS_FLOOR}, got {scores.mean():.4f}"
