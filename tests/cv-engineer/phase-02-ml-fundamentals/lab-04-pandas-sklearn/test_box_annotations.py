"""Lab 04 checks for the bounding-box annotation workflow: derived box features and cleaning against hand cases,
per-class / per-image statistics and the pivot against plain-Python loops, prediction-to-ground-truth matching
against a brute-force greedy matcher, the false-positive and confusion reports against hand cases, the box
feature extractor and ColumnTransformer against hand-built matrices, the random search against
ParameterSampler and cross_val_score on the same image folds, and StratifiedGroupKFold's defining property."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import ParameterSampler, StratifiedGroupKFold, cross_val_score
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def gt(impl):
    return impl.box_annotations(60, seed=2)


@pytest.fixture(scope="module")
def preds(impl, gt):
    return impl.box_predictions(gt, seed=2)


def frame(rows, columns=("image_id", "img_w", "img_h", "class", "xmin", "ymin", "xmax", "ymax")):
    return pd.DataFrame(rows, columns=list(columns))


# ----------------------------------------------------------------------------- box-table

@pytest.mark.task("box-table")
def test_box_features_by_hand(impl):
    df = frame([["a", 1920, 1080, "car", 0, 0, 192, 108], ["a", 1920, 1080, "car", 100, 50, 140, 50]])
    out = impl.add_box_features(df)
    first = out.iloc[0]
    expected = {"width": 192, "height": 108, "area": 20736, "aspect_ratio": 192 / 108, "cx": 96, "cy": 54,
                "cx_norm": 0.05, "cy_norm": 0.05, "norm_area": 0.01}
    for col, value in expected.items():
        assert math.isclose(first[col], value, rel_tol=1e-12), f"{col} of [0, 0, 192, 108] in 1920x1080: expected {value}, got {first[col]}"
    assert math.isclose(out.iloc[1]["aspect_ratio"], 40 / 1e-6), "a zero-height box divides by 1e-6 (the clip), not 0"
    assert "width" not in df, "add_box_features must return a copy and leave its input alone"


@pytest.mark.task("box-table")
def test_clean_drops_exactly_the_bad_rows(impl, gt):
    good = gt.head(5)
    bad = pd.DataFrame([good.iloc[0]] * 9).reset_index(drop=True)
    bad.loc[0, "xmin"] = np.nan                          # missing coordinate
    bad.loc[1, "xmax"] = np.inf                          # infinite coordinate
    bad.loc[2, "xmin"] = -0.5                            # leaves the image on the left
    bad.loc[3, ["xmin", "xmax"]] = [1900.0, 1920.5]      # leaves on the right (img_w is 1920 or 1280)
    bad.loc[3, "img_w"] = 1920
    bad.loc[4, ["xmin", "xmax"]] = [300.0, 300.0]        # zero width
    bad.loc[5, ["ymin", "ymax"]] = [400.0, 380.0]        # upside down
    bad.loc[6, ["xmin", "ymin", "xmax", "ymax"]] = [10.0, 10.0, 19.9, 20.0]  # 99 px² < 100
    keep = pd.DataFrame([good.iloc[1]] * 3).reset_index(drop=True)
    keep.loc[0, ["xmin", "ymin", "xmax", "ymax"]] = [10.0, 10.0, 20.0, 20.0]  # exactly 100 px²: stays
    keep.loc[1, ["xmin", "ymin", "xmax", "ymax"]] = [0.0, 0.0, keep.loc[1, "img_w"], keep.loc[1, "img_h"]]  # the whole image
    keep.loc[2, "truncated"] = 0.777                     # differs from row 1 of good in one column: not a duplicate
    dup = good.iloc[[3]]                                 # an exact copy of row 3
    df = pd.concat([good, bad.iloc[:7], keep, dup], ignore_index=True)
    out = impl.clean_annotations(df, min_area=100)
    expected = [0, 1, 2, 3, 4, 12, 13, 14]  # the five good rows and the three borderline ones
    assert out.index.tolist() == expected, f"expected to keep rows {expected} (index preserved), kept {out.index.tolist()}"
    assert len(impl.clean_annotations(gt)) == len(gt), "the generated annotations are all valid"


@pytest.mark.task("box-table")
def test_per_class_and_per_image_stats_match_loops(impl, gt):
    f = impl.add_box_features(gt)
    stats = impl.per_class_stats(f)
    for cls in stats.index:
        rows = f[f["class"] == cls]
        assert stats.loc[cls, "count"] == len(rows) and stats.loc[cls, "images"] == len(set(rows["image_id"]))
        assert math.isclose(stats.loc[cls, "mean_area"], sum(rows["area"]) / len(rows), rel_tol=1e-12)
        assert math.isclose(stats.loc[cls, "median_aspect"], float(np.median(rows["aspect_ratio"])), rel_tol=1e-12)
    assert stats["count"].is_monotonic_decreasing, f"classes must be sorted by count, largest first: {stats['count'].tolist()}"
    tie = impl.add_box_features(frame([["a", 100, 100, c, 0, 0, 10, 10] for c in ("person", "car", "car", "person", "bus")]))
    assert impl.per_class_stats(tie).index.tolist() == ["car", "person", "bus"], \
        f"two classes with 2 boxes each: ties go A to Z (car, person), then bus; got {impl.per_class_stats(tie).index.tolist()}"
    per_image = impl.per_image_stats(f)
    assert per_image.index.tolist() == sorted(set(f["image_id"]))
    for image_id in per_image.index[:15]:
        rows = f[f["image_id"] == image_id]
        got = per_image.loc[image_id]
        assert got["n_objects"] == len(rows) and got["n_classes"] == len(set(rows["class"])), f"{image_id}: wrong counts"
        assert list(got["classes"]) == sorted(set(rows["class"])), f"{image_id}: classes {got['classes']}"
        assert math.isclose(got["mean_area"], rows["area"].mean(), rel_tol=1e-12)


@pytest.mark.task("box-table")
def test_class_pivot_matches_loops(impl, preds):
    pivot = impl.class_pivot(preds)
    assert pivot.index.tolist() == sorted(set(preds["image_id"])) and pivot.columns.tolist() == sorted(set(preds["class"]))
    for image_id in pivot.index[:20]:
        for cls in pivot.columns:
            conf = [c for i, k, c in zip(preds["image_id"], preds["class"], preds["confidence"]) if i == image_id and k == cls]
            expected = max(conf) if conf else 0
            assert pivot.loc[image_id, cls] == expected, f"{image_id}/{cls}: expected max confidence {expected}, got {pivot.loc[image_id, cls]}"


# ----------------------------------------------------------------------------- box-matching

def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def brute_force_match(preds, gt, threshold=0.5):
    """Per image: predictions by confidence (stable), each takes the free GT box of highest IoU >= threshold."""
    result = {}
    for image_id in dict.fromkeys(preds["image_id"]):
        p = preds[preds["image_id"] == image_id]
        g = gt[gt["image_id"] == image_id]
        free = list(g.index)
        order = sorted(range(len(p)), key=lambda i: -p["confidence"].iloc[i])  # sorted() is stable
        for i in order:
            box = p[["xmin", "ymin", "xmax", "ymax"]].iloc[i].tolist()
            ious = [iou(box, g.loc[j, ["xmin", "ymin", "xmax", "ymax"]].tolist()) for j in g.index]
            best_any = max(ious, default=0.0)
            cands = [(iou(box, g.loc[j, ["xmin", "ymin", "xmax", "ymax"]].tolist()), j) for j in free]
            best = max(cands, key=lambda t: t[0], default=(0.0, None))  # first of equal IoUs, in table order
            if best[1] is not None and best[0] >= threshold:
                free.remove(best[1])
                result[p.index[i]] = (best_any, best[1], g.loc[best[1], "class"])
            else:
                result[p.index[i]] = (best_any, -1, "background")
    return result


@pytest.mark.task("box-matching")
def test_matching_equals_brute_force(impl, gt, preds):
    matched = impl.match_predictions(preds, gt)
    assert matched.index.equals(preds.index), "the result keeps the predictions' index"
    ref = brute_force_match(preds, gt)
    for idx, (best, gt_index, true_class) in ref.items():
        row = matched.loc[idx]
        assert math.isclose(row["iou_with_gt"], best, abs_tol=1e-12), f"prediction {idx}: iou_with_gt {row['iou_with_gt']} vs {best}"
        assert row["gt_index"] == gt_index and row["true_class"] == true_class, \
            f"prediction {idx}: matched to {row['gt_index']} ({row['true_class']}), expected {gt_index} ({true_class})"
        expected = "fp" if gt_index == -1 else ("tp" if true_class == preds.loc[idx, "class"] else "wrong_class")
        assert row["outcome"] == expected, f"prediction {idx}: outcome {row['outcome']}, expected {expected}"


@pytest.mark.task("box-matching")
def test_matching_hand_case(impl):
    gt = frame([["a", 100, 100, "car", 0, 0, 10, 10], ["a", 100, 100, "person", 50, 50, 60, 70],
                ["b", 100, 100, "car", 0, 0, 10, 10]], columns=("image_id", "img_w", "img_h", "class", "xmin", "ymin", "xmax", "ymax"))
    gt.index = [10, 11, 12]
    preds = pd.DataFrame([
        ["a", "car", 0.8, 0, 0, 10, 10],       # listed first, but less confident: the duplicate, fp (iou_with_gt 1)
        ["a", "car", 0.9, 0, 0, 10, 10],       # tp on GT 10
        ["a", "bicycle", 0.7, 50, 50, 60, 60], # IoU exactly 0.5 with the person: a match, of the wrong class
        ["b", "car", 0.6, 0, 0, 10, 10],       # tied confidence: the earlier row takes GT 12
        ["b", "car", 0.6, 0, 0, 10, 10],       # ... the later one is the duplicate
        ["c", "car", 0.99, 0, 0, 10, 10],      # an image without ground truth
    ], columns=["image_id", "class", "confidence", "xmin", "ymin", "xmax", "ymax"])
    m = impl.match_predictions(preds, gt)
    assert m["outcome"].tolist() == ["fp", "tp", "wrong_class", "tp", "fp", "fp"], f"outcomes {m['outcome'].tolist()}"
    assert m["gt_index"].tolist() == [-1, 10, 11, 12, -1, -1], f"gt_index {m['gt_index'].tolist()}"
    assert m["true_class"].tolist()[2] == "person" and m["true_class"].tolist()[5] == "background"
    assert np.allclose(m["iou_with_gt"], [1, 1, 0.5, 1, 1, 0]), f"iou_with_gt {m['iou_with_gt'].tolist()}"
    assert impl.missed_classes(preds, gt) == ["person"], f"'person' was never predicted; got {impl.missed_classes(preds, gt)}"


@pytest.mark.task("box-matching")
def test_false_positive_report_boundaries(impl):
    m = pd.DataFrame({
        "image_id": list("abcdef"), "class": ["car"] * 6,
        "confidence": [0.9, 0.7, 0.95, 0.8, 0.8, 0.99],
        "iou_with_gt": [0.1, 0.0, 0.5, 0.49, 0.2, 0.0],
        "xmin": [0] * 6, "ymin": [0] * 6, "xmax": [10, 50, 50, 20, 20, 5], "ymax": [10] * 6,
    })
    out = impl.false_positive_report(m, k=3)
    # b: confidence exactly 0.7 (not above); c: IoU exactly 0.5 (not below); d and e tie on area 200: table order
    assert out["image_id"].tolist() == ["d", "e", "a"], f"expected d, e (area 200 each, table order) then a; got {out['image_id'].tolist()}"
    assert out["area"].tolist() == [200, 200, 100], f"areas {out['area'].tolist()}"


@pytest.mark.task("box-matching")
def test_top_confused_pairs_by_hand(impl):
    rows = [("person", "bicycle")] * 3 + [("car", "bus")] * 2 + [("bus", "car")] * 2 + [("car", "truck")] + [("car", "car")] * 5
    m = pd.DataFrame({"true_class": [t for t, _ in rows], "class": [p for _, p in rows]})
    m["outcome"] = np.where(m["true_class"] == m["class"], "tp", "wrong_class")
    out = impl.top_confused_pairs(m, k=3)
    assert list(out.columns) == ["true_class", "pred_class", "count"], f"columns {list(out.columns)}"
    assert out.values.tolist() == [["person", "bicycle", 3], ["bus", "car", 2], ["car", "bus", 2]], \
        f"expected person->bicycle 3, then the tie bus->car, car->bus (A to Z); got {out.values.tolist()}"


# ----------------------------------------------------------------------------- box-model

@pytest.mark.task("box-model")
def test_bbox_feature_extractor_by_hand(impl):
    ext = impl.BBoxFeatureExtractor()
    got = ext.fit_transform(np.array([[0, 0, 192, 108], [960, 540, 1000, 640]]))
    assert got.shape == (2, 5), f"expected (2, 5), got {got.shape}"
    assert np.allclose(got[0], [20736, 192 / 108, 0.05, 0.05, 0.01]), f"[0, 0, 192, 108]: got {got[0]}"
    assert np.allclose(got[1], [4000, 0.4, 980 / 1920, 590 / 1080, 4000 / (1920 * 1080)]), f"[960, 540, 1000, 640]: got {got[1]}"
    small = impl.BBoxFeatureExtractor(img_w=100, img_h=50).transform([[0, 0, 10, 5]])
    assert np.allclose(small, [[50, 2, 0.05, 0.05, 0.01]]), f"image size comes from the constructor: got {small}"


@pytest.mark.task("box-model")
def test_box_pipeline_features_match_hand_built(impl, gt):
    pipe = impl.box_pipeline()
    cols = impl.BOX_COLUMNS + impl.BOX_NUMERIC + impl.BOX_CATEGORICAL
    train, test = gt.iloc[:200].copy(), gt.iloc[200:].copy()
    test.loc[test.index[:3], "scene_type"] = "tunnel"  # a category never seen in training
    pipe.fit(train[cols], train["class"])
    got = pipe["preprocessor"].transform(test[cols])
    # by hand: box features (1920x1080 frame) standardised with training statistics; median-imputed, standardised
    # truncation; most-frequent-imputed one-hots in sorted category order
    def box_feats(d):
        w, h = d["xmax"] - d["xmin"], d["ymax"] - d["ymin"]
        return np.column_stack([w * h, w / h.clip(lower=1e-6), (d["xmin"] + d["xmax"]) / 2 / 1920,
                                (d["ymin"] + d["ymax"]) / 2 / 1080, w * h / (1920 * 1080)])
    box = StandardScaler().fit(box_feats(train)).transform(box_feats(test))
    median = train["truncated"].median()
    trunc = StandardScaler().fit(train[["truncated"]].fillna(median)).transform(test[["truncated"]].fillna(median))
    onehots = []
    for c in impl.BOX_CATEGORICAL:
        mode = sorted(train[c].dropna().value_counts().pipe(lambda s: s[s == s.max()]).index)[0]
        levels = sorted(train[c].fillna(mode).unique())
        onehots.append((test[c].fillna(mode).to_numpy()[:, None] == np.array(levels)[None, :]).astype(float))
    expected = np.hstack([box, trunc, *onehots])
    assert got.shape == expected.shape and np.allclose(got, expected), \
        f"preprocessor output {got.shape} differs from box features + imputed truncation + one-hots {expected.shape}"
    assert (got[:3, -4:] == 0).all(), "an unseen scene_type must one-hot to all zeros"
    assert len(pipe.predict(test[cols])) == len(test)
    params = pipe.get_params()
    assert params["preprocessor__num__imputer__strategy"] == "median" and params["classifier__n_estimators"] == 100, \
        "steps must be named preprocessor/classifier and num/imputer so the search grid addresses them"


@pytest.mark.task("box-model")
def test_image_folds_keep_images_whole(impl, gt):
    folds = impl.image_folds(gt, n_splits=4, seed=1)
    assert len(folds) == 4
    seen = np.zeros(len(gt), int)
    for train, test in folds:
        seen[test] += 1
        overlap = set(gt["image_id"].iloc[train]) & set(gt["image_id"].iloc[test])
        assert not overlap, f"images on both sides of a split: {sorted(overlap)[:3]}"
    assert (seen == 1).all(), "every box must be in exactly one test fold"
    test_images = [set(gt["image_id"].iloc[test]) for _, test in folds]
    assert sum(len(s) for s in test_images) == len(set().union(*test_images)) == gt["image_id"].nunique(), \
        "no image may appear in two test folds"
    ref = list(StratifiedGroupKFold(4, shuffle=True, random_state=1).split(gt, gt["class"], groups=gt["image_id"]))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, ref)), \
        "folds should be StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed) on class with image groups"


@pytest.mark.task("box-model")
def test_random_search_on_image_folds(impl, gt):
    search = impl.tune_box_model(gt, n_iter=3, n_splits=3, seed=1)  # not 0: tests start with the global seed at 0
    assert set(search.best_params_) == set(impl.BOX_PARAM_DIST), f"searched parameters {sorted(search.best_params_)}"
    drawn = list(ParameterSampler(impl.BOX_PARAM_DIST, n_iter=3, random_state=1))
    assert search.cv_results_["params"] == drawn, "the candidates must be the 3 draws ParameterSampler makes for seed 1"
    cols = impl.BOX_COLUMNS + impl.BOX_NUMERIC + impl.BOX_CATEGORICAL
    folds = list(StratifiedGroupKFold(3, shuffle=True, random_state=1).split(gt, gt["class"], groups=gt["image_id"]))
    best = impl.box_pipeline().set_params(**search.best_params_)
    ref = cross_val_score(best, gt[cols], gt["class"], cv=folds, scoring="f1_macro").mean()
    assert math.isclose(search.best_score_, ref, abs_tol=1e-12), \
        f"best_score_ {search.best_score_:.4f} should be the macro F1 over image folds, {ref:.4f}"
    # box shape tells the classes apart: macro F1 0.77-0.88 over data and search seeds 0-5 (60 images, 3 draws;
    # chance is about 0.25)
    assert search.best_score_ > 0.7, f"expected macro F1 well above chance, got {search.best_score_:.3f}"
