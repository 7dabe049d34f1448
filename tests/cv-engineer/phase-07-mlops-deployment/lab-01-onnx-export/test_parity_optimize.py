"""ONNX Runtime parity and graph optimisation. The ONNX files are exported here with torch.onnx.export; the
references are PyTorch's own eval-mode output, numpy.allclose, hand-worked tolerance cases, and node counts
worked out by hand from what each ORT level is documented to do."""
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = dict(rtol=1e-3, atol=1e-4)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------- parity

@pytest.mark.task("ort-parity")
def test_torch_logits_uses_inference_behaviour(impl, h, model, test_x):
    training = copy.deepcopy(model).train()  # straight out of a training loop: Dropout on, BatchNorm on batch stats
    got = impl.torch_logits(training, test_x[:16])
    want = h.eager_logits(model, test_x[:16])
    assert got.shape == (16, 10), f"expected (16, 10) logits, got {got.shape}"
    gap = np.abs(got - want).max()
    assert np.allclose(got, want, rtol=0, atol=1e-6), \
        f"PyTorch reference differs from eval-mode output by {gap:.3g}: Dropout/BatchNorm still in training mode?"


@pytest.mark.task("ort-parity")
def test_run_onnxruntime_matches_pytorch_for_several_batch_sizes(impl, h, model, test_x, tmp_path):
    # exported with the input named "pixels": the runner must ask the session for its input name
    path = h.torch_export(model, tmp_path / "pixels.onnx", input_name="pixels")
    sess = session(path)
    for b in (1, 4, 32):
        x64 = test_x[:b].astype(np.float64)  # callers hand over float64 arrays: ORT wants float32
        got = impl.run_onnxruntime(sess, x64)
        want = h.eager_logits(model, test_x[:b])
        assert got.shape == (b, 10), f"batch {b}: expected (b, 10), got {got.shape}"
        assert np.allclose(got, want, **TOL), f"batch {b}: differs from PyTorch by {np.abs(got - want).max():.3g}"


@pytest.mark.task("ort-parity")
def test_compare_outputs_hand_cases(impl):
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    far = ref + np.array([[0.0, 0.0], [0.0, 1e-2]])
    out = impl.compare_outputs(ref, far)
    assert out["max_abs"] == pytest.approx(1e-2), f"max_abs: expected 0.01, got {out['max_abs']}"
    assert out["max_rel"] == pytest.approx(1e-2 / 4), f"max_rel: expected 0.0025 (0.01 / 4), got {out['max_rel']}"
    # default tolerance at the worst element: 1e-4 + 1e-3 * 4 = 4.1e-3 < 1e-2
    assert out["ok"] is False, "a 0.01 gap on a logit of 4 is a different computation: expected ok=False"
    assert out["top1_agreement"] == 1.0, f"argmax unchanged: expected agreement 1.0, got {out['top1_agreement']}"
    near = ref + np.array([[0.0, 0.0], [0.0, 3e-4]])  # 3e-4 <= 4.1e-3
    assert impl.compare_outputs(ref, near)["ok"] is True, "a 3e-4 gap on 4.0 is within rtol 1e-3 + atol 1e-4"
    flipped = np.array([[2.5, 2.0], [3.0, 4.0]])  # row 0's argmax moves
    assert impl.compare_outputs(ref, flipped)["top1_agreement"] == 0.5


@pytest.mark.task("ort-parity")
def test_compare_outputs_worst_element_decides(impl):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(64, 10))
    cand = ref.copy()
    cand[17, 3] += 0.05  # one bad logit among 640: a mean would hide it
    out = impl.compare_outputs(ref, cand)
    assert out["max_abs"] == pytest.approx(0.05), f"expected max_abs 0.05 (the worst element), got {out['max_abs']}"
    assert out["ok"] is False, "one element 0.05 off must fail the comparison"


@pytest.mark.task("ort-parity")
def test_compare_outputs_agrees_with_numpy_allclose(impl):
    rng = np.random.default_rng(1)
    for trial in range(30):
        ref = rng.normal(scale=5, size=(8, 10))
        cand = ref + rng.normal(scale=10 ** rng.uniform(-6, -2), size=ref.shape)
        rtol, atol = 10 ** rng.uniform(-5, -2), 10 ** rng.uniform(-6, -3)
        want = bool(np.allclose(cand, ref, rtol=rtol, atol=atol))
        got = impl.compare_outputs(ref, cand, rtol=rtol, atol=atol)["ok"]
        assert got == want, f"trial {trial}: numpy.allclose(candidate, reference) says {want}, got ok={got}"


# ------------------------------------------------------------------------------------------- optimisation levels

@pytest.fixture(scope="module")
def unfolded(h, model, tmp_path_factory):
    """Exported without constant folding, so the BatchNorm nodes are still there: 12 nodes
    (Conv, BatchNormalization, Relu, MaxPool twice; Flatten; Gemm, Relu, Gemm)."""
    path = h.torch_export(model, tmp_path_factory.mktemp("unfolded") / "unfolded.onnx", fold=False)
    assert len(onnx.load(str(path)).graph.node) == 12
    return path


def ops(path):
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.task("optimize-graph")
def test_disabled_level_keeps_the_graph(impl, unfolded, tmp_path):
    out = impl.optimize_onnx(unfolded, tmp_path / "off.onnx", "disabled")
    assert ops(out) == ops(unfolded), f"level 'disabled' must not change the graph: {ops(unfolded)} -> {ops(out)}"


@pytest.mark.task("optimize-graph")
def test_basic_level_folds_batchnorm_into_conv(impl, unfolded, tmp_path):
    out = impl.optimize_onnx(unfolded, tmp_path / "basic.onnx", "basic")
    counts = ops(out)
    # basic folds each BatchNorm into the Conv before it (new weights, no new kernel): 12 - 2 = 10 nodes
    assert "BatchNormalization" not in counts and sum(counts.values()) == 10, \
        f"expected 10 nodes with no BatchNormalization at level 'basic', got {counts}"
    assert not any(op.startswith("Fused") for op in counts), f"basic must not use ORT's fused kernels, got {counts}"


@pytest.mark.task("optimize-graph")
def test_extended_level_fuses_activations(impl, unfolded, tmp_path):
    counts = ops(impl.optimize_onnx(unfolded, tmp_path / "ext.onnx", "extended"))
    # extended also merges Conv+Relu (x2) into FusedConv and Gemm+Relu into FusedGemm: 10 - 3 = 7 nodes
    assert counts.get("FusedConv") == 2 and counts.get("FusedGemm") == 1 and sum(counts.values()) == 7, \
        f"expected 7 nodes (2 FusedConv, 1 FusedGemm) at level 'extended', got {counts}"


@pytest.mark.task("optimize-graph")
def test_every_level_computes_the_same_logits(impl, unfolded, tmp_path, test_x):
    want = session(unfolded).run(None, {"image": test_x[:8]})[0]
    for level in ("disabled", "basic", "extended", "all"):
        out = impl.optimize_onnx(unfolded, tmp_path / f"{level}.onnx", level)
        got = session(out).run(None, {"image": test_x[:8]})[0]
        assert np.allclose(got, want, **TOL), f"level {level}: logits moved by {np.abs(got - want).max():.3g}"
