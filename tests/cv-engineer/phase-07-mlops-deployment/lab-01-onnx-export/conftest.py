"""Shared fixtures: the lab's trained DigitCNN (cached under outputs/ after the first run, ~10 s to train) and
reference ONNX files exported here with torch.onnx.export directly, so each task is checked on its own."""
import copy
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def normalise(images: np.ndarray) -> np.ndarray:
    """The model's input by hand: uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), (x/255 - mean) / std."""
    return ((images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD)[:, None]


def eager_logits(model, x: np.ndarray) -> np.ndarray:
    """PyTorch's answer, computed here: a copy of the model in eval mode, no autograd."""
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def torch_export(model, path, input_name="image", fold=True):
    """A reference export with torch's TorchScript-based exporter: dynamic batch, opset 17."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(model).eval(), (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False,
                          opset_version=17, input_names=[input_name], output_names=["logits"],
                          dynamic_axes={input_name: {0: "batch_size"}, "logits": {0: "batch_size"}},
                          do_constant_folding=fold)
    return path


@pytest.fixture(scope="module")
def h():
    """The helpers above, for the test modules (pytest's importlib mode cannot import conftest by name)."""
    return SimpleNamespace(normalise=normalise, eager_logits=eager_logits, torch_export=torch_export,
                           ort_logits=ort_logits)


@pytest.fixture(scope="module")
def model(impl):
    return impl.trained_model()


@pytest.fixture(scope="module")
def splits(impl):
    config = impl.TRAIN_CONFIG
    return impl.digit_splits(config["seed"], config["n_val"], config["n_test"])


@pytest.fixture(scope="module")
def test_x(splits):
    return normalise(splits["test"][0])


@pytest.fixture(scope="module")
def reference_onnx(model, tmp_path_factory):
    return torch_export(model, tmp_path_factory.mktemp("onnx") / "fp32.onnx")


def ort_logits(path, x: np.ndarray, input_name: str = "image") -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
