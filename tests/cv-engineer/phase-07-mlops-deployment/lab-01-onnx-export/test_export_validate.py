"""Export and validation checks. Exported files are read back with onnx and run with onnxruntime here, and
compared with the model's own PyTorch output; validate_onnx is checked on a hand-built graph whose shapes are
worked out by hand, and on broken graphs the ONNX checker must reject."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = dict(rtol=1e-3, atol=1e-4)  # float32 on two runtimes: measured max |diff| ~3e-6 on logits of size ~10


def dims(value):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def io_of(path):
    proto = onnx.load(str(path))
    weights = {init.name for init in proto.graph.initializer}
    inputs = {v.name: dims(v) for v in proto.graph.input if v.name not in weights}
    outputs = {v.name: dims(v) for v in proto.graph.output}
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return inputs, outputs, opset


def check_signature(path):
    inputs, outputs, opset = io_of(path)
    assert list(inputs) == ["image"], f"expected one graph input named 'image', got {list(inputs)}"
    assert list(outputs) == ["logits"], f"expected one graph output named 'logits', got {list(outputs)}"
    image, logits = inputs["image"], outputs["logits"]
    assert isinstance(image[0], str) and image[0], \
        f"the batch axis of 'image' must be symbolic (a named dim), got dims {image}: a fixed batch only serves one size"
    assert image[1:] == [1, 28, 28], f"expected 'image' dims [batch, 1, 28, 28], got {image}"
    assert isinstance(logits[0], str) and logits[0] and logits[1:] == [10], \
        f"expected 'logits' dims [batch, 10] with a symbolic batch, got {logits}"
    assert opset == 17, f"expected opset 17, got {opset}"


def check_runs_any_batch(h, model, path, test_x, batches=(1, 3, 32)):
    for b in batches:
        got = h.ort_logits(path, test_x[:b])
        want = h.eager_logits(model, test_x[:b])
        assert got.shape == (b, 10), f"batch {b}: expected logits (b, 10), got {got.shape}"
        gap = np.abs(got - want).max()
        assert np.allclose(got, want, **TOL), f"batch {b}: ONNX Runtime differs from PyTorch by up to {gap:.3g}"


@pytest.mark.task("export-onnx")
def test_torchscript_exporter_names_and_dynamic_batch(impl, model, tmp_path):
    path = impl.export_onnx(model, tmp_path / "m.onnx", torch.zeros(2, 1, 28, 28), "torchscript")
    assert path.is_file(), f"expected the ONNX file at {path}"
    check_signature(path)


@pytest.mark.task("export-onnx")
def test_torchscript_export_serves_several_batch_sizes(impl, h, model, tmp_path, test_x):
    path = impl.export_onnx(model, tmp_path / "m.onnx", torch.zeros(2, 1, 28, 28), "torchscript")
    check_runs_any_batch(h, model, path, test_x)


@pytest.mark.task("export-onnx")
def test_dynamo_exporter_self_contained_dynamic_batch(impl, h, model, tmp_path, test_x):
    path = impl.export_onnx(model, tmp_path / "d.onnx", torch.zeros(2, 1, 28, 28), "dynamo")
    check_signature(path)
    extra = [p.name for p in tmp_path.iterdir() if p.name != "d.onnx"]
    assert not extra, f"expected one self-contained file, found side files {extra} (weights stored outside the model)"
    # 409k float32 weights = 1.64 MB: they must be inside the file
    assert path.stat().st_size > 1_500_000, f"expected the weights inside the file (> 1.5 MB), got {path.stat().st_size} bytes"
    check_runs_any_batch(h, model, path, test_x, batches=(1, 5))


# ------------------------------------------------------------------------------------------- validate

def hand_model(declared_logits=("N", 3), extra_input=True):
    """image (N,1,4,4) -> Conv 2x3x3 pad 1 -> c (N,2,4,4) -> Relu r -> Flatten f (N,32) -> MatMul (32,3) -> logits.
    W is also listed as a graph input (allowed: an overridable weight), which a report must not count."""
    weight = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "W")
    proj = numpy_helper.from_array(np.full((32, 3), 0.01, np.float32), "P")
    nodes = [helper.make_node("Conv", ["image", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "P"], ["logits"])]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 4, 4])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 1, 3, 3]))
    graph = helper.make_graph(nodes, "hand", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(declared_logits))],
                              [weight, proj])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.task("validate-onnx")
def test_validate_reports_hand_built_graph(impl, tmp_path):
    path = tmp_path / "hand.onnx"
    onnx.save(hand_model(), str(path))
    report = impl.validate_onnx(path)
    assert report["opset"] == 17, f"expected opset 17, got {report['opset']}"
    assert report["inputs"] == {"image": ["N", 1, 4, 4]}, \
        f"expected inputs {{'image': ['N', 1, 4, 4]}} (symbolic dims by name, weights left out), got {report['inputs']}"
    assert report["outputs"] == {"logits": ["N", 3]}, f"expected outputs {{'logits': ['N', 3]}}, got {report['outputs']}"
    assert report["ops"] == {"Conv": 1, "Relu": 1, "Flatten": 1, "MatMul": 1}, f"op counts: got {report['ops']}"


@pytest.mark.task("validate-onnx")
def test_validate_infers_intermediate_shapes(impl, tmp_path):
    path = tmp_path / "hand.onnx"
    onnx.save(hand_model(), str(path))
    values = impl.validate_onnx(path)["values"]
    # by hand: a 3x3 conv with padding 1 keeps 4x4; Flatten(axis=1) gives 2*4*4 = 32 features
    want = {"c": ["N", 2, 4, 4], "r": ["N", 2, 4, 4], "f": ["N", 32]}
    assert values == want, f"expected shape inference to give {want}, got {values}"


@pytest.mark.task("validate-onnx")
def test_validate_rejects_dangling_input_in_one_line(impl, tmp_path):
    proto = hand_model()
    proto.graph.node[1].input[0] = "nowhere"  # Relu reads a value no node produces
    path = tmp_path / "broken.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ValueError) as err:
        impl.validate_onnx(path)
    assert "\n" not in str(err.value).strip(), f"expected a one-line message, got:\n{err.value}"


@pytest.mark.task("validate-onnx")
def test_validate_rejects_declared_shape_that_contradicts_inference(impl, tmp_path):
    path = tmp_path / "wrong_dims.onnx"
    onnx.save(hand_model(declared_logits=("N", 4)), str(path))  # MatMul (N,32)x(32,3) gives 3 columns, not 4
    with pytest.raises(ValueError):
        impl.validate_onnx(path)


@pytest.mark.task("validate-onnx")
def test_validate_on_exported_cnn(impl, reference_onnx):
    report = impl.validate_onnx(reference_onnx)
    assert report["inputs"] == {"image": ["batch_size", 1, 28, 28]}, f"got inputs {report['inputs']}"
    assert report["outputs"] == {"logits": ["batch_size", 10]}, f"got outputs {report['outputs']}"
    proto = onnx.load(str(reference_onnx))
    want_ops = {}
    for node in proto.graph.node:
        want_ops[node.op_type] = want_ops.get(node.op_type, 0) + 1
    assert report["ops"] == want_ops, f"expected op counts {want_ops}, got {report['ops']}"
