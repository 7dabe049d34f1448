"""Lab 02 checks, second half: detection tables with pandas and SVD compression.

References: brute-force Python loops over the rows (class and image summaries, top-k), torchvision.ops.box_iou
(IoU matrix), pycocotools' COCOeval matching (true/false positives), hand-worked boxes with exact IoUs, and for
SVD scikit-learn's TruncatedSVD, scipy.linalg.svdvals and the Eckart-Young property on random matrices.
"""
import contextlib
import io
import math

import cv2
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import skimage.data
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.decomposition import TruncatedSVD
from threadpoolctl import threadpool_limits

BOX = ["x1", "y1", "x2", "y2"]
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Small SVDs run 5-10x slower with several BLAS threads fighting over a busy 2-core machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def tables(impl):
    """Generated tables for four seeds; predictions shuffled, so row order says nothing about det_id."""
    out = []
    for seed in SEEDS:
        images, truth, preds = impl.make_detection_tables(12, seed)
        out.append((images, truth, preds.sample(frac=1.0, random_state=seed)))
    return out


def pred_table(rows):
    """rows: (det_id, image_id, class, x1, y1, x2, y2, score)."""
    return pd.DataFrame(rows, columns=["det_id", "image_id", "class", *BOX, "score"])


def truth_table(rows):
    """rows: (gt_id, image_id, class, x1, y1, x2, y2)."""
    return pd.DataFrame(rows, columns=["gt_id", "image_id", "class", *BOX])


# ------------------------------------------------------------------ class summary

@pytest.mark.task("class-summary")
def test_class_summary_equals_a_loop_over_rows(impl, tables):
    for images, truth, preds in tables:
        got = impl.class_summary(preds)
        groups = {}
        for row in preds.itertuples(index=False):
            groups.setdefault(row[2], []).append(((row.x2 - row.x1) * (row.y2 - row.y1), row.score))
        classes = sorted(groups)
        assert list(got.index) == classes, \
            f"expected one row per class in alphabetical order {classes}, got {list(got.index)}"
        for cls in classes:
            areas, scores = zip(*groups[cls])
            assert got.loc[cls, "count"] == len(areas), f"{cls}: expected count {len(areas)}, got {got.loc[cls, 'count']}"
            assert math.isclose(got.loc[cls, "mean_area"], sum(areas) / len(areas), rel_tol=1e-12), \
                f"{cls}: expected mean area {sum(areas) / len(areas):.3f}, got {got.loc[cls, 'mean_area']:.3f}"
            assert math.isclose(got.loc[cls, "mean_score"], sum(scores) / len(scores), rel_tol=1e-12), \
                f"{cls}: expected mean score {sum(scores) / len(scores):.4f}, got {got.loc[cls, 'mean_score']:.4f}"


@pytest.mark.task("class-summary")
def test_class_summary_hand_case(impl):
    # zebra first in the rows; cat boxes 10 x 10 and 20 x 40: mean area (100 + 800) / 2 = 450,
    # while mean(w) * mean(h) = 15 * 25 = 375
    preds = pred_table([(1, 1, "zebra", 0, 0, 4, 5, 0.5), (2, 1, "cat", 0, 0, 10, 10, 0.9),
                        (3, 2, "cat", 5, 5, 25, 45, 0.3)])
    got = impl.class_summary(preds)
    assert list(got.index) == ["cat", "zebra"], f"expected classes ['cat', 'zebra'], got {list(got.index)}"
    want = {"count": [2, 1], "mean_area": [450.0, 20.0], "mean_score": [0.6, 0.5]}
    for column, values in want.items():
        assert np.allclose(got[column].to_numpy(float), values), f"{column}: expected {values}, got {got[column].tolist()}"


# ------------------------------------------------------------------ merge with the images table

@pytest.mark.task("merge-images")
def test_attach_images_keeps_rows_and_adds_image_columns(impl, tables):
    for images, truth, preds in tables:
        got = impl.attach_images(preds, images)
        assert got["det_id"].tolist() == preds["det_id"].tolist(), "attach_images must keep the predictions' rows and order"
        size = {r.image_id: (r.file_name, r.width, r.height) for r in images.itertuples()}
        for row in got.itertuples():
            name, w, h = size[row.image_id]
            assert (row.file_name, row.width, row.height) == (name, w, h), \
                f"det {row.det_id} (image {row.image_id}): expected {name} {w}x{h}, got {row.file_name} {row.width}x{row.height}"
            want = (row.x2 - row.x1) * (row.y2 - row.y1) / (w * h)
            assert math.isclose(row.rel_area, want, rel_tol=1e-12), f"det {row.det_id}: rel_area {row.rel_area} != {want}"


@pytest.mark.task("merge-images")
def test_attach_images_refuses_unknown_or_doubled_images(impl):
    images = pd.DataFrame({"image_id": [1, 2], "file_name": ["a.jpg", "b.jpg"], "width": [100, 200],
                           "height": [50, 100]})
    preds = pred_table([(1, 1, "cat", 0, 0, 10, 10, 0.9), (2, 7, "cat", 0, 0, 10, 10, 0.8)])
    with pytest.raises(ValueError, match="7"):
        impl.attach_images(preds, images)                      # image 7 is not in the images table
    doubled = pd.concat([images, images.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError):
        impl.attach_images(preds.iloc[[0]], doubled)            # image 1 listed twice would double det 1


@pytest.mark.task("merge-images")
def test_image_summary_lists_every_image(impl, tables):
    for images, truth, preds in tables:
        got = impl.image_summary(preds, images)
        assert got["image_id"].tolist() == images["image_id"].tolist(), \
            "expected one row per image of the images table, in its order (images without detections included)"
        for row in got.itertuples():
            mine = preds[preds["image_id"] == row.image_id]
            want = (len(mine), mine["class"].nunique())
            assert (row.n_detections, row.n_classes) == want, \
                f"image {row.image_id}: expected (n_detections, n_classes) {want}, got {(row.n_detections, row.n_classes)}"
            if len(mine):
                assert row.max_score == mine["score"].max(), f"image {row.image_id}: max_score {row.max_score}"
            else:
                assert math.isnan(row.max_score), f"image {row.image_id} has no detections: max_score should be NaN"
        assert pd.api.types.is_integer_dtype(got["n_detections"]), "n_detections should be an integer column"
    assert any((impl.image_summary(p, i)["n_detections"] == 0).any() for i, _, p in tables), \
        "the generated tables should contain images without detections"


# ------------------------------------------------------------------ top-k per class

def brute_top_k(preds, k):
    rows = sorted(preds.itertuples(index=False), key=lambda r: (r[2], -r.score, r.det_id))
    out, seen = [], {}
    for r in rows:
        seen[r[2]] = seen.get(r[2], 0) + 1
        if seen[r[2]] <= k:
            out.append((r[2], r.det_id, seen[r[2]]))
    return out


@pytest.mark.task("top-k")
def test_top_k_ties_at_the_cut_go_to_the_smaller_det_id(impl):
    # rows arrive with det_ids descending; cat has three scores tied at 0.7 across the cut at k = 2
    preds = pred_table([(9, 1, "cat", 0, 0, 5, 5, 0.7), (8, 2, "dog", 0, 0, 5, 5, 0.4),
                        (7, 1, "cat", 0, 0, 5, 5, 0.7), (6, 1, "dog", 0, 0, 5, 5, 0.4),
                        (5, 3, "cat", 0, 0, 5, 5, 0.7), (4, 3, "dog", 0, 0, 5, 5, 0.9),
                        (3, 2, "cat", 0, 0, 5, 5, 0.2)])
    got = impl.top_k_per_class(preds, 2)
    want = [("cat", 5, 1), ("cat", 7, 2), ("dog", 4, 1), ("dog", 6, 2)]
    have = list(zip(got["class"], got["det_id"], got["rank"]))
    assert have == want, f"expected (class, det_id, rank) {want}, got {have}"


@pytest.mark.task("top-k")
def test_top_k_equals_sorting_by_hand(impl, tables):
    for images, truth, preds in tables:
        for k in (1, 2, 3, 50):
            got = impl.top_k_per_class(preds, k)
            want = brute_top_k(preds, k)
            have = list(zip(got["class"], got["det_id"], got["rank"]))
            assert have == want, f"k={k}: expected (class, det_id, rank) {want[:6]}..., got {have[:6]}..."
    with pytest.raises(ValueError):
        impl.top_k_per_class(tables[0][2], 0)


# ------------------------------------------------------------------ IoU matrix

def torch_iou(a, b):
    return torchvision.ops.box_iou(torch.tensor(np.array(a, np.float64)),
                                   torch.tensor(np.array(b, np.float64))).numpy()


@pytest.mark.task("iou-matrix")
def test_box_iou_equals_torchvision(impl):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (2, 40, 2))
    sides = rng.uniform(1, 40, (2, 40, 2))
    a, b = np.concatenate([corners, corners + sides], axis=2)       # many pairs disjoint in x and y
    b[:5] = a[:5]                                                   # identical boxes: IoU 1
    got = np.asarray(impl.box_iou(a, b[:30]))
    want = torch_iou(a, b[:30])
    assert got.shape == (40, 30), f"expected an (N, M) = (40, 30) matrix, got {got.shape}"
    assert np.abs(got - want).max() < 1e-12, f"differs from torchvision.ops.box_iou by {np.abs(got - want).max():.2e}"


@pytest.mark.task("iou-matrix")
def test_box_iou_hand_cases(impl):
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 5],        # half of a: IoU 50 / 100 = 0.5
         [5, 0, 15, 10],       # shifted by half: 50 / 150 = 1/3
         [20, 20, 30, 30],     # disjoint in x and y: 0 (sides -10 and -10 must not multiply to +100)
         [12, 0, 20, 10]]      # disjoint in x only: 0
    got = np.asarray(impl.box_iou(a, b))[0]
    assert np.allclose(got, [0.5, 1 / 3, 0, 0], atol=1e-15), f"expected [0.5, 0.333, 0, 0], got {got.tolist()}"


@pytest.mark.task("iou-matrix")
def test_iou_frame_per_image_equals_torchvision(impl, tables):
    for images, truth, preds in tables:
        for image_id in images["image_id"]:
            p, g = preds[preds["image_id"] == image_id], truth[truth["image_id"] == image_id]
            got = impl.iou_frame(preds, truth, image_id)
            assert isinstance(got, pd.DataFrame), f"expected a DataFrame, got {type(got).__name__}"
            assert list(got.index) == p["det_id"].tolist() and list(got.columns) == g["gt_id"].tolist(), \
                f"image {image_id}: rows should be det_ids {p['det_id'].tolist()} and columns gt_ids " \
                f"{g['gt_id'].tolist()}, got {list(got.index)} x {list(got.columns)}"
            if len(p) and len(g):
                err = np.abs(got.to_numpy() - torch_iou(p[BOX], g[BOX])).max()
                assert err < 1e-12, f"image {image_id}: differs from torchvision.ops.box_iou by {err:.2e}"


# ------------------------------------------------------------------ matching and hard negatives

def coco_matches(images, truth, preds, threshold):
    """{det_id: gt_id or -1} from pycocotools' COCOeval at one IoU threshold (areas unrestricted)."""
    cats = {c: i + 1 for i, c in enumerate(sorted(set(truth["class"]) | set(preds["class"])))}
    xywh = lambda r: [float(r.x1), float(r.y1), float(r.x2 - r.x1), float(r.y2 - r.y1)]  # noqa: E731
    gt = COCO()
    gt.dataset = {
        "images": [{"id": int(r.image_id)} for r in images.itertuples()],
        "categories": [{"id": i, "name": c} for c, i in cats.items()],
        "annotations": [{"id": int(r.gt_id), "image_id": int(r.image_id), "category_id": cats[r[2]],
                         "bbox": xywh(r), "area": float((r.x2 - r.x1) * (r.y2 - r.y1)), "iscrowd": 0}
                        for r in truth.itertuples(index=False)]}
    ordered = preds.sort_values("det_id")            # COCO numbers results 1, 2, ... in this order
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": int(r.image_id), "category_id": cats[r[2]], "bbox": xywh(r),
                          "score": float(r.score)} for r in ordered.itertuples(index=False)])
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array([threshold])
        ev.params.maxDets = [10_000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e12]], ["all"]
        ev.evaluate()
    det_of = dict(zip(range(1, len(ordered) + 1), ordered["det_id"]))
    out = {}
    for e in ev.evalImgs:
        if e is not None:
            for coco_id, gt_id in zip(e["dtIds"], e["dtMatches"][0]):
                out[det_of[coco_id]] = int(gt_id) if gt_id else -1
    return out


@pytest.mark.task("hard-negatives")
@pytest.mark.parametrize("threshold", [0.5, 0.75])
def test_matching_equals_pycocotools(impl, tables, threshold):
    for images, truth, preds in tables:
        got = impl.match_detections(preds, truth, threshold)
        assert got["det_id"].tolist() == preds["det_id"].tolist(), "match_detections must keep rows and order"
        want = coco_matches(images, truth, preds, threshold)
        have = dict(zip(got["det_id"], got["matched_gt"]))
        wrong = {d: (have[d], g) for d, g in want.items() if have[d] != g}
        assert not wrong, f"IoU >= {threshold}: det_id -> (got, COCOeval's) matched gt differ for {wrong}"
        assert (got["is_tp"] == (got["matched_gt"] >= 0)).all(), "is_tp should be True exactly for matched rows"
        for row in got[got["is_tp"]].itertuples():
            g = truth[truth["gt_id"] == row.matched_gt]
            assert math.isclose(row.iou, torch_iou([[row.x1, row.y1, row.x2, row.y2]], g[BOX])[0, 0], rel_tol=1e-12)


@pytest.mark.task("hard-negatives")
def test_matching_hand_case(impl):
    truth = truth_table([(1, 1, "cat", 0, 0, 10, 10), (2, 1, "dog", 50, 50, 60, 60), (3, 2, "cat", 0, 0, 10, 10)])
    preds = pred_table([
        (1, 1, "cat", 0, 0, 10, 10, 0.60),    # a duplicate of det 2, listed first but scored lower: FP
        (2, 1, "cat", 1, 0, 11, 10, 0.80),    # IoU 90/110 with gt 1: TP
        (3, 1, "cat", 50, 50, 60, 60, 0.90),  # on the dog, wrong class: FP
        (4, 2, "cat", 0, 0, 10, 5, 0.30),     # IoU exactly 0.5 with gt 3 (image 2): TP
        (5, 2, "cat", 0, 0, 10, 10, 0.30),    # same score as det 4, higher det_id: comes second, FP
    ])
    got = impl.match_detections(preds, truth, 0.5)
    have = dict(zip(got["det_id"], got["matched_gt"]))
    assert have == {1: -1, 2: 1, 3: -1, 4: 3, 5: -1}, \
        f"expected det -> gt {{1: -1, 2: 1, 3: -1, 4: 3, 5: -1}}, got {have}"
    assert np.allclose(got["iou"], [0, 90 / 110, 0, 0.5, 0]), f"iou column: {got['iou'].tolist()}"


@pytest.mark.task("hard-negatives")
def test_hard_negatives_threshold_order_and_content(impl):
    truth = truth_table([(1, 1, "cat", 0, 0, 10, 10)])
    preds = pred_table([(1, 1, "cat", 0, 0, 10, 10, 0.95),      # TP, never a hard negative
                        (2, 1, "cat", 40, 40, 50, 50, 0.50),    # FP exactly at min_score: kept
                        (3, 1, "dog", 0, 0, 10, 10, 0.80),      # FP (wrong class)
                        (4, 1, "cat", 60, 60, 70, 70, 0.49),    # FP below min_score: dropped
                        (5, 1, "cat", 20, 20, 30, 30, 0.80)])   # FP tied with det 3
    got = impl.hard_negatives(preds.iloc[::-1], truth, min_score=0.5)
    assert got["det_id"].tolist() == [3, 5, 2], \
        f"expected false positives with score >= 0.5, by score then det_id: [3, 5, 2], got {got['det_id'].tolist()}"
    assert not got["is_tp"].any()


@pytest.mark.task("hard-negatives")
def test_hard_negatives_on_generated_tables(impl, tables):
    for images, truth, preds in tables:
        matches = coco_matches(images, truth, preds, 0.5)
        want = sorted((d for d, g in matches.items() if g < 0 and preds.set_index("det_id").loc[d, "score"] >= 0.6),
                      key=lambda d: (-preds.set_index("det_id").loc[d, "score"], d))
        got = impl.hard_negatives(preds, truth, min_score=0.6)["det_id"].tolist()
        assert got == want, f"expected hard negatives {want}, got {got}"


# ------------------------------------------------------------------ SVD compression

@pytest.fixture(scope="module")
def camera():
    return cv2.resize(skimage.data.camera(), (96, 128), interpolation=cv2.INTER_AREA)   # (128, 96): not square


@pytest.mark.task("svd-compress")
def test_rank_k_equals_truncated_svd(impl, camera):
    m = camera.astype(np.float64)
    for k in (1, 5, 20):
        got = np.asarray(impl.svd_compress(camera, k))
        ref = TruncatedSVD(n_components=k, algorithm="arpack", random_state=0).fit(m)
        want = m @ ref.components_.T @ ref.components_                # projection onto the top-k right vectors
        err = np.abs(got - want).max()
        assert got.shape == camera.shape and err < 1e-6, \
            f"k={k}: expected the {camera.shape} rank-k reconstruction of sklearn's TruncatedSVD, max |diff| {err:.2e}"
        assert np.linalg.matrix_rank(got) == k, f"k={k}: reconstruction has rank {np.linalg.matrix_rank(got)}"


@pytest.mark.task("svd-compress")
def test_error_is_the_tail_energy_on_the_photo(impl, camera):
    s = scipy.linalg.svdvals(camera.astype(np.float64))
    for k in (1, 10, 50, 95, 96):
        tail = math.sqrt(float(np.sum(s[k:] ** 2)))
        residual = float(np.linalg.norm(camera - np.asarray(impl.svd_compress(camera, k))))
        got = impl.svd_error(camera, k)
        assert math.isclose(got, tail, rel_tol=1e-9, abs_tol=1e-6), \
            f"k={k}: svd_error should be sqrt(sum of s_i^2 for i >= k) = {tail:.4f}, got {got:.4f}"
        assert math.isclose(residual, tail, rel_tol=1e-6, abs_tol=1e-6), \
            f"k={k}: ||M - svd_compress(M, k)||_F = {residual:.4f}, the tail energy is {tail:.4f}"


@pytest.mark.task("svd-compress")
@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 9), st.integers(2, 9)), elements=st.floats(-100, 100, width=32)),
       st.integers(1, 9), st.integers(0, 2 ** 16))
def test_eckart_young_on_random_matrices(impl, m, k, seed):
    k = min(k, min(m.shape))
    s = scipy.linalg.svdvals(m)
    tail = math.sqrt(float(np.sum(s[k:] ** 2)))
    approx = np.asarray(impl.svd_compress(m, k))
    residual = float(np.linalg.norm(m - approx))
    assert math.isclose(residual, tail, rel_tol=1e-7, abs_tol=1e-7), \
        f"{m.shape}, k={k}: ||M - M_k||_F = {residual}, expected the tail energy {tail}"
    assert math.isclose(impl.svd_error(m, k), tail, rel_tol=1e-7, abs_tol=1e-7)
    # no other rank-k matrix does better: a random one, and M projected on k random directions
    rng = np.random.default_rng(seed)
    other = rng.standard_normal((m.shape[0], k)) @ rng.standard_normal((k, m.shape[1]))
    q, _ = np.linalg.qr(rng.standard_normal((m.shape[1], k)))
    for rival in (other, m @ q @ q.T):
        assert residual <= np.linalg.norm(m - rival) + 1e-7, "a rank-k rival came closer than the SVD truncation"


@pytest.mark.task("svd-compress")
def test_storage_counts(impl):
    assert tuple(impl.svd_storage((256, 256), 10)) == (5130, 65536), \
        f"256 x 256 at k=10 stores 10 (256 + 256 + 1) = 5130 of 65536, got {impl.svd_storage((256, 256), 10)}"
    assert tuple(impl.svd_storage((100, 300), 7)) == (2807, 30000), \
        f"100 x 300 at k=7 stores 7 (100 + 300 + 1) = 2807 of 30000, got {impl.svd_storage((100, 300), 7)}"
    assert tuple(impl.svd_storage((4, 6), 4)) == (44, 24), "full rank stores more than the image: 4 (4 + 6 + 1) = 44"


@pytest.mark.task("svd-compress")
def test_svd_figure_png(impl, camera, tmp_path):
    impl.save_svd_figure(camera, (2, 8), tmp_path / "svd.png")
    png = cv2.imread(str(tmp_path / "svd.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 300, "expected a readable PNG figure"
    with pytest.raises(ValueError):
        impl.svd_compress(camera, 97)
