"""Lab 04 checks: pandas features against hand cases and plain-Python loops, out-of-fold target encoding
against sklearn's TargetEncoder on the same folds, the leakage demonstration on a label-noise table, and the
defining properties of group and time splits."""
import statistics

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import TargetEncoder


@pytest.fixture(scope="module")
def events(impl):
    return impl.camera_events(600, n_cameras=12, seed=3)


# ----------------------------------------------------------------------------- features

@pytest.mark.task("features")
def test_time_features_hand_cases(impl):
    df = pd.DataFrame({"time": pd.to_datetime(["2024-03-01 05:59", "2024-03-02 12:00", "2024-03-03 20:00",
                                               "2024-03-04 06:00"])})
    got = impl.add_time_features(df)
    # 1 March 2024 was a Friday
    expect = {"hour": [5, 12, 20, 6], "day_of_week": [4, 5, 6, 0], "is_weekend": [0, 1, 1, 0], "is_night": [1, 0, 1, 0]}
    for col, want in expect.items():
        assert got[col].tolist() == want, f"{col}: expected {want}, got {got[col].tolist()}"
    assert "hour" not in df, "add_time_features must return a copy, not modify its input"


@pytest.mark.task("features")
def test_group_stats_match_python_loops(impl, events):
    got = impl.add_group_stats(events, "camera", "motion")
    groups = {}
    for cam, m in zip(events["camera"], events["motion"]):
        groups.setdefault(cam, []).append(m)
    for i in range(0, len(events), 37):
        vals = groups[events["camera"].iloc[i]]
        row = got.iloc[i]
        assert row["motion_count_by_camera"] == len(vals), f"row {i}: count expected {len(vals)}"
        assert row["motion_mean_by_camera"] == pytest.approx(statistics.fmean(vals), rel=1e-12), f"row {i}: group mean"
        assert row["motion_std_by_camera"] == pytest.approx(statistics.stdev(vals), rel=1e-10), f"row {i}: group std (ddof=1)"
        assert row["motion_minus_mean_by_camera"] == pytest.approx(events["motion"].iloc[i] - statistics.fmean(vals))
    assert len(got) == len(events) and got.index.equals(events.index), "one output row per input row, same index"


@pytest.mark.task("features")
def test_per_group_summary_matches_loops(impl, events):
    events = events.sample(frac=1.0, random_state=2)  # rows out of time and camera order: no sorted input to lean on
    got = impl.per_group_summary(events, "camera")
    assert got.index.tolist() == sorted(events["camera"].unique()), "expected one row per camera, sorted"
    for cam in got.index[:4]:
        rows = events[events["camera"] == cam]
        assert got.loc[cam, "n_events"] == len(rows), f"{cam}: n_events expected {len(rows)}"
        assert got.loc[cam, "positive_rate"] == pytest.approx(rows["label"].sum() / len(rows)), f"{cam}: positive_rate"
        assert got.loc[cam, "mean_motion"] == pytest.approx(rows["motion"].sum() / len(rows)), f"{cam}: mean_motion"
        assert got.loc[cam, "first"] == min(rows["time"]) and got.loc[cam, "last"] == max(rows["time"]), f"{cam}: time range"


# ----------------------------------------------------------------------------- target encoding

def coded(seed=0, n=300, k=15):
    rng = np.random.default_rng(seed)
    keys = np.array([f"c{i}" for i in rng.integers(0, k, n)])
    y = (rng.random(n) < 0.2 + 0.04 * np.char.lstrip(keys, "c").astype(int)).astype(int)
    return keys, y


@pytest.mark.task("target-encoding")
def test_target_means_hand_case(impl):
    means, prior = impl.target_means(["a", "a", "b"], [1, 0, 1], smoothing=1.0)
    assert prior == pytest.approx(2 / 3), f"prior expected 2/3, got {prior}"
    assert means["a"] == pytest.approx(5 / 9) and means["b"] == pytest.approx(5 / 6), \
        f"(sum + m*prior) / (n + m): expected a = 5/9, b = 5/6, got {dict(means)}"


@pytest.mark.task("target-encoding")
@pytest.mark.parametrize("smoothing", [1.0, 10.0])
def test_oof_encoding_matches_sklearn_target_encoder(impl, smoothing):
    keys, y = coded(1)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    ref = TargetEncoder(smooth=smoothing, cv=cv, target_type="binary").fit_transform(keys.reshape(-1, 1), y).ravel()
    got = impl.oof_target_encode(keys, y, list(cv.split(keys, y)), smoothing)
    assert np.allclose(got, ref, atol=1e-12), f"m={smoothing}: max gap to sklearn's cross-fitted TargetEncoder {np.abs(got - ref).max():.2e}"


@pytest.mark.task("target-encoding")
def test_oof_encoding_of_categories_missing_from_training_folds(impl):
    keys, y = coded(4)
    # three categories seen once each: in the split that holds them out, the other folds have never seen them
    keys, y = np.r_[keys, ["solo-a", "solo-b", "solo-c"]], np.r_[y, [1, 0, 1]]
    cv = StratifiedKFold(5, shuffle=True, random_state=2)
    splits = list(cv.split(keys, y))
    ref = TargetEncoder(smooth=10.0, cv=cv, target_type="binary").fit_transform(keys.reshape(-1, 1), y).ravel()
    got = impl.oof_target_encode(keys, y, splits, 10.0)
    for i in range(len(keys) - 3, len(keys)):
        train = next(tr for tr, te in splits if i in te)
        prior = y[train].mean()  # hand rule: an unseen category gets the mean target of the training folds
        assert got[i] == pytest.approx(prior, abs=1e-12) and got[i] == pytest.approx(ref[i], abs=1e-12), \
            f"row {i} ({keys[i]}, absent from its training folds): expected their prior {prior:.6f}, got {got[i]:.6f}"
    assert np.allclose(got, ref, atol=1e-12), f"max gap to sklearn's cross-fitted TargetEncoder {np.abs(got - ref).max():.2e}"


@pytest.mark.task("target-encoding")
def test_oof_encoding_never_sees_own_label(impl):
    keys, y = coded(2)
    splits = list(KFold(5, shuffle=True, random_state=1).split(keys))
    base = impl.oof_target_encode(keys, y, splits, 5.0)
    for i in (0, 17, 123):
        flipped = y.copy()
        flipped[i] = 1 - flipped[i]
        again = impl.oof_target_encode(keys, flipped, splits, 5.0)
        assert again[i] == base[i], f"row {i}: its encoding changed when only its own label changed (leak)"


@pytest.mark.task("target-encoding")
def test_encoder_transformer_matches_sklearn(impl):
    keys, y = coded(3)
    X = keys.reshape(-1, 1)
    ref = TargetEncoder(smooth=10.0, cv=KFold(5, shuffle=True, random_state=0), target_type="binary")
    enc = impl.OOFTargetEncoder(smoothing=10.0, n_splits=5, seed=0)
    got_train, ref_train = enc.fit_transform(X, y).ravel(), ref.fit_transform(X, y).ravel()
    assert np.allclose(got_train, ref_train, atol=1e-12), "fit_transform should give sklearn's out-of-fold encodings"
    new = np.array([["c1"], ["c7"], ["never-seen"]], dtype=object)
    got_new, ref_new = enc.transform(new).ravel(), ref.transform(new).ravel()
    assert np.allclose(got_new, ref_new, atol=1e-12), f"transform on new rows: expected {ref_new}, got {got_new}"


# ----------------------------------------------------------------------------- leakage

@pytest.mark.task("leakage")
def test_leaky_encoding_is_optimistic_and_pipeline_is_not(impl):
    noise = impl.camera_events(900, n_cameras=300, seed=1, noise_only=True)
    cv = KFold(5, shuffle=True, random_state=0)
    leaky = impl.leaky_cv_score(noise, ["camera"], "label", cv)
    safe = impl.safe_cv_score(noise, ["camera"], "label", cv)
    assert leaky > 0.65, f"labels are coin flips: encoding on all rows should still score well above chance (> 0.65), got {leaky:.3f}"
    assert 0.4 < safe < 0.6, f"labels are coin flips: the out-of-fold pipeline should score near 0.5, got {safe:.3f}"


@pytest.mark.task("leakage")
def test_safe_cv_score_passes_groups_to_the_splitter(impl, events):
    # reference: sklearn's TargetEncoder cross-fitted on the same folds as OOFTargetEncoder, inside a pipeline
    encoder = TargetEncoder(smooth=10.0, cv=KFold(5, shuffle=True, random_state=0), target_type="binary")
    ref_pipe = Pipeline([("prep", ColumnTransformer([("te", encoder, ["camera"])])),
                         ("model", LogisticRegression(max_iter=1000))])
    cv = GroupKFold(4)
    want = cross_val_score(ref_pipe, events[["camera"]], events["label"], cv=cv, groups=events["camera"]).mean()
    got = impl.safe_cv_score(events, ["camera"], "label", cv, groups=events["camera"])
    assert got == pytest.approx(want, abs=1e-9), \
        f"GroupKFold by camera: expected CV accuracy {want:.4f} (test cameras unseen in training), got {got:.4f}"


# ----------------------------------------------------------------------------- splits

@pytest.mark.task("splits")
def test_group_splits_keep_groups_apart(impl, events):
    splits = impl.group_splits(events, "camera", 4)
    assert len(splits) == 4, f"expected 4 splits, got {len(splits)}"
    seen = []
    for i, (tr, te) in enumerate(splits):
        tr_groups, te_groups = set(events["camera"].iloc[tr]), set(events["camera"].iloc[te])
        assert not tr_groups & te_groups, f"split {i}: cameras {sorted(tr_groups & te_groups)[:3]} on both sides"
        assert len(tr) + len(te) == len(events), f"split {i}: train + test should cover all rows"
        seen.extend(te_groups)
    assert sorted(seen) == sorted(events["camera"].unique()), "each camera should be a test group exactly once"


@pytest.mark.task("splits")
def test_time_splits_validate_on_the_future(impl, events):
    shuffled = events.sample(frac=1.0, random_state=0)  # positions no longer follow time
    splits = impl.time_splits(shuffled, "time", 5)
    assert len(splits) == 5, f"expected 5 splits, got {len(splits)}"
    times = shuffled["time"].to_numpy()
    sizes = []
    for i, (tr, te) in enumerate(splits):
        assert times[tr].max() < times[te].min(), f"split {i}: a training event is not before every test event"
        sizes.append(len(tr))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], f"training folds should grow: {sizes}"
    assert times[splits[-1][1]].max() == times.max(), "the last test fold should end at the latest event"
