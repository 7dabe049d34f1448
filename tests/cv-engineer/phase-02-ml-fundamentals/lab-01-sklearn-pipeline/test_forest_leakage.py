"""Lab 01 checks for the hand-assembled random forest (against RandomForestClassifier tree for tree: the same
probabilities, out-of-bag score and Gini importances), the bootstrap's out-of-bag fraction (against (1 - 1/n)^n
and 1/e), permutation importance (against sklearn.inspection.permutation_importance), and the leak of a scaler
fitted before cross-validation (against hand-written fold loops, with a measured margin)."""
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


def graded_features(seed, n=600):
    """6 standard-normal features; the label follows a logistic model with weights 3, 1.5, 0.7, 0, 0, 0, so the
    true order of importance starts 0, 1 (feature 2 is weak, 3-5 are noise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    logit = 3 * X[:, 0] + 1.5 * X[:, 1] + 0.7 * X[:, 2]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


# ----------------------------------------------------------------------------- random-forest

@pytest.mark.task("random-forest")
def test_out_of_bag_fraction_tends_to_one_over_e(impl):
    # (1 - 1/n)^n: 0.32768 for n = 5, 0.36770 for n = 1000, and 1/e = 0.36788 in the limit
    n = 1000
    fractions = [impl.out_of_bag_mask(n, impl.bootstrap_sample(n, seed)).mean() for seed in range(300)]
    # one bootstrap's OOB fraction has std sqrt(p(1 - p)/n) ≈ 0.015; the mean of 300 has 0.0009
    assert abs(np.mean(fractions) - (1 - 1 / n) ** n) < 0.004 and abs(np.mean(fractions) - 1 / np.e) < 0.004, \
        f"mean out-of-bag fraction over 300 bootstraps of 1000 rows: expected ≈ 0.368 (1/e), got {np.mean(fractions):.4f}"
    small = np.mean([impl.out_of_bag_mask(5, impl.bootstrap_sample(5, seed)).mean() for seed in range(4000)])
    assert abs(small - 0.8 ** 5) < 0.01, f"n = 5: expected (4/5)^5 = 0.328, got {small:.4f}"
    draws = impl.bootstrap_sample(50, 3)
    assert len(draws) == 50 and len(np.unique(draws)) < 50 and draws.min() >= 0 and draws.max() < 50, \
        "a bootstrap draws n indices in [0, n) with replacement (so some repeat)"
    mask = impl.out_of_bag_mask(6, [0, 0, 2, 3, 3, 3])
    assert mask.tolist() == [False, True, False, False, True, True], f"rows 1, 4, 5 were never drawn; got {mask.tolist()}"


@pytest.mark.task("random-forest")
def test_forest_equals_sklearn_tree_for_tree(impl, cancer):
    X, y = cancer
    for seed in (0, 1):
        ours = impl.BaggedForest(n_trees=30, seed=seed).fit(X, y)
        ref = RandomForestClassifier(n_estimators=30, max_features="sqrt", random_state=seed, oob_score=True).fit(X, y)
        gap = np.abs(ours.predict_proba(X[::3]) - ref.predict_proba(X[::3])).max()
        assert gap < 1e-12, f"seed {seed}: probabilities differ from RandomForestClassifier(random_state={seed}) by " \
                            f"{gap:.3g}; check the per-tree seeds, the bootstrap and max_features"
        assert np.isclose(ours.oob_score(X, y), ref.oob_score_, atol=1e-12), \
            f"seed {seed}: out-of-bag accuracy {ours.oob_score(X, y):.6f}, sklearn's oob_score_ {ref.oob_score_:.6f}"
    # depth-3 trees have mixed leaves, so the forest averages probabilities, not votes
    ours = impl.BaggedForest(n_trees=20, max_depth=3, seed=5).fit(X, y)
    ref = RandomForestClassifier(n_estimators=20, max_depth=3, random_state=5).fit(X, y)
    gap = np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max()
    assert gap < 1e-12, f"max_depth=3: probabilities differ from RandomForestClassifier's by {gap:.3g} (soft voting: " \
                        "average the trees' probabilities)"


@pytest.mark.task("random-forest")
def test_oob_score_tracks_cross_validation(impl, cancer):
    # the free validation set: OOB accuracy lands near 5-fold CV accuracy (measured over seeds 0-4 with 50 trees:
    # OOB 0.961-0.968, CV 0.953-0.961, |gap| 0.002-0.011)
    X, y = cancer
    forest = impl.BaggedForest(n_trees=50, seed=0).fit(X, y)
    cv = cross_val_score(RandomForestClassifier(50, random_state=0), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    assert abs(forest.oob_score(X, y) - cv.mean()) < 0.05, \
        f"OOB accuracy {forest.oob_score(X, y):.4f} should lie within 0.05 of the CV accuracy {cv.mean():.4f}"
    assert forest.oob_score(X, y) < forest.score(X, y), "OOB accuracy must be below the training accuracy of the forest"


# ----------------------------------------------------------------------------- importance

@pytest.mark.task("importance")
def test_gini_importance_equals_sklearn(impl, cancer):
    X, y = cancer
    ours = impl.BaggedForest(n_trees=30, seed=2).fit(X, y).gini_importance()
    ref = RandomForestClassifier(n_estimators=30, random_state=2).fit(X, y).feature_importances_
    assert np.allclose(ours, ref, atol=1e-12) and np.isclose(np.sum(ours), 1.0), \
        f"Gini importances differ from feature_importances_ by {np.abs(ours - ref).max():.3g} (they sum to 1)"
    assert np.array_equal(np.argsort(-ours)[:5], np.argsort(-ref)[:5]), "top-5 ranking differs from sklearn's"


@pytest.mark.task("importance")
def test_permutation_importance_agrees_with_sklearn(impl):
    X, y = graded_features(0)
    forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(X[:400], y[:400])
    mean, std = impl.permutation_importance(forest, X[400:], y[400:], n_repeats=10, seed=0)
    ref = permutation_importance(forest, X[400:], y[400:], n_repeats=10, random_state=0)
    # different random shuffles, so values agree within noise: max |difference of means| over seeds 0-9 was
    # 0.005-0.027 (per-repeat std 0.01-0.03)
    assert np.abs(mean - ref.importances_mean).max() < 0.04, \
        f"mean accuracy drops {np.round(mean, 3)} vs sklearn's {np.round(ref.importances_mean, 3)}: more than 0.04 apart"
    assert np.argsort(-mean)[:2].tolist() == [0, 1] == np.argsort(-ref.importances_mean)[:2].tolist(), \
        f"features 0 (weight 3) and 1 (weight 1.5) should rank first and second; got order {np.argsort(-mean).tolist()}"
    assert np.all(np.abs(mean[3:]) < 0.04) and mean[0] > 0.2, f"noise features should score near 0, feature 0 above 0.2; got {np.round(mean, 3)}"
    assert np.all(std >= 0) and np.all(std < 0.06) and std[0] > 0, f"per-feature std of the drops looks wrong: {np.round(std, 3)}"


@pytest.mark.task("importance")
def test_permutation_importance_leaves_input_alone_and_is_seeded(impl):
    X, y = graded_features(1, n=300)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    before = X.copy()
    a = impl.permutation_importance(forest, X, y, n_repeats=3, seed=4)
    assert np.array_equal(X, before), "permutation importance must shuffle a copy, not the caller's X"
    b = impl.permutation_importance(forest, X, y, n_repeats=3, seed=4)
    assert np.allclose(a[0], b[0]) and np.allclose(a[1], b[1]), "the same seed must give the same importances"


# ----------------------------------------------------------------------------- leakage

def hand_cv(model, X, y, splits, scale_on_all):
    """The two protocols written as plain loops: scale with statistics of all rows, or of the training rows only."""
    scores = []
    all_rows = StandardScaler().fit(X)
    for train, test in splits:
        scaler = all_rows if scale_on_all else StandardScaler().fit(X[train])
        model.fit(scaler.transform(X[train]), y[train])
        scores.append(np.mean(model.predict(scaler.transform(X[test])) == y[test]))
    return np.array(scores)


@pytest.mark.task("leakage")
def test_leaky_and_pipeline_scores_equal_hand_loops(impl):
    X, y, camera = impl.camera_table(3)
    splits = list(LeaveOneGroupOut().split(X, y, camera))
    leaky, honest = impl.leaky_vs_pipeline_cv(KNeighborsClassifier(7), X, y, LeaveOneGroupOut(), camera)
    ref_leaky = hand_cv(KNeighborsClassifier(7), X, y, splits, scale_on_all=True)
    ref_honest = hand_cv(KNeighborsClassifier(7), X, y, splits, scale_on_all=False)
    assert np.allclose(leaky, ref_leaky), f"leaky scores {np.round(leaky, 3)} should equal scaling on all rows then CV {np.round(ref_leaky, 3)}"
    assert np.allclose(honest, ref_honest), f"pipeline scores {np.round(honest, 3)} should equal scaling per training fold {np.round(ref_honest, 3)}"


@pytest.mark.task("leakage")
def test_scaler_leak_inflates_a_new_camera_score(impl):
    # folds = cameras; the held-out camera's noisy sensor features are scaled down only if the scaler saw it.
    # Measured leaky - pipeline mean accuracy over seeds 0-9 (k-NN, k = 7): 0.058-0.121, all of it on the noisy
    # camera's fold (+0.23 to +0.50); with the same rows in shuffled stratified folds the gap is -0.008 to +0.017
    X, y, camera = impl.camera_table(0)
    leaky, honest = impl.leaky_vs_pipeline_cv(KNeighborsClassifier(7), X, y, LeaveOneGroupOut(), camera)
    assert len(leaky) == len(honest) == 4, f"one score per camera expected, got {len(leaky)} and {len(honest)}"
    assert leaky.mean() - honest.mean() > 0.03, \
        f"a scaler fitted on all rows should flatter the new-camera CV: leaky {leaky.mean():.3f} vs pipeline {honest.mean():.3f}"
    assert leaky[3] - honest[3] > 0.15, f"the noisy camera's fold should carry the leak: {leaky[3]:.3f} vs {honest[3]:.3f}"
    leaky, honest = impl.leaky_vs_pipeline_cv(KNeighborsClassifier(7), X, y, StratifiedKFold(4, shuffle=True, random_state=0))
    assert abs(leaky.mean() - honest.mean()) < 0.04, \
        f"with every camera in every fold the scaler leak is small: {leaky.mean():.3f} vs {honest.mean():.3f}"
