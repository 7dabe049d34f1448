"""ONNX export and optimisation: a trained digit CNN leaves PyTorch and runs in ONNX Runtime, smaller and faster.

A trained model in PyTorch is Python code plus weights. To serve it from C++, a phone, a browser or a GPU engine
(TensorRT), you export it to ONNX: a graph of standard operators (Conv, Relu, Gemm...) with the weights inside,
described by a protobuf file any runtime can load. This lab takes a small CNN trained here on 5,000 real MNIST
digits (phase 3's CNN will replace it) through the whole path a deployment engineer walks:

1. `export_onnx`: torch.onnx.export with both exporters (the TorchScript tracer and the dynamo/onnxscript one),
   opset 17, named input/output and a dynamic batch axis.
2. `validate_onnx`: the ONNX checker, shape inference, and what the graph's input and output really are.
3. `run_onnxruntime` / `compare_outputs`: ONNX Runtime's outputs equal PyTorch's within a stated tolerance,
   for several batch sizes.
4. `optimize_onnx`: ONNX Runtime's graph optimisation levels and what each does to the node count.
5. `quantize_dynamic_int8` / `DigitCalibrationReader` / `quantize_static_int8`: INT8 weights (dynamic) and INT8
   weights and activations (static, calibrated on held-out digits, never the test set).
6. `convert_fp16`: half-precision weights with float32 input and output kept.
7. `export_torchscript`: TorchScript as the lightweight PyTorch-only alternative.
8. `benchmark` / `throughput_fps`: latency percentiles and throughput, used by bench.py.

The CNN, the data splits and the training loop (with an on-disk cache) are written for you; other labs reuse
them: `labkit.reuse("lab-01-onnx-export")` gives `DigitCNN`, `TRAIN_CONFIG`, `digit_splits`, `to_model_input`,
`train`, `trained_model` and `accuracy`.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.transformers.float16 import convert_float_to_float16

import labkit
from labkit import assets

OUT = labkit.output_dir(__file__)
ort.set_default_logger_severity(3)  # ORT's C++ log: errors only (it warns when a CPU-specific "all" graph is saved)

# ----------------------------------------------------------------------------------------- data

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual MNIST pixel statistics (pixels scaled to 0-1 first)


@functools.lru_cache(maxsize=4)
def _shuffled_digits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoding the packaged digits takes a few CPU seconds: once per process and seed."""
    return assets.mnist_digits(seed)


def digit_splits(seed: int = 0, n_val: int = 500, n_test: int = 1000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 5,000 packaged MNIST digits, shuffled with `seed`, cut into train / val / test.

    Returns {"train": (images, labels), "val": ..., "test": ...} with images uint8 (N, 28, 28) and labels int64 (N,).
    val is for choosing things (and for calibrating a quantiser); test is only ever for the final number.
    """
    images, labels = (a.copy() for a in _shuffled_digits(seed))  # copies: callers may modify theirs
    if n_val + n_test >= len(labels):
        raise ValueError(f"n_val + n_test = {n_val + n_test} leaves no training digits out of {len(labels)}")
    cut_test, cut_val = len(labels) - n_test, len(labels) - n_test - n_val
    return {"train": (images[:cut_val], labels[:cut_val]),
            "val": (images[cut_val:cut_test], labels[cut_val:cut_test]),
            "test": (images[cut_test:], labels[cut_test:])}


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 digits (N, 28, 28) -> the model's float32 input (N, 1, 28, 28), normalised: (x/255 - mean) / std."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected digits shaped (N, 28, 28), got {images.shape}")
    x = (images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return np.ascontiguousarray(x[:, None, :, :])


# ----------------------------------------------------------------------------------------- the CNN

class DigitCNN(nn.Module):
    """Two conv blocks (Conv -> BatchNorm -> ReLU -> MaxPool) and a two-layer classifier with dropout.

    Input: float32 (B, 1, 28, 28) from `to_model_input`. Output: logits (B, 10).
    BatchNorm and Dropout behave differently in train and eval mode, which is exactly what an export must get
    right. The classifier's first Linear (32*7*7 -> 256, 401k weights) holds most of the ~420k parameters, so
    INT8 really shrinks the file (a toy model with a few thousand weights grows under quantisation: the scales,
    zero points and extra nodes cost more than the bytes saved).
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 256, dropout: float = 0.25,
                 num_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),   # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),  # (B, c2, 7, 7)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, 1, 28, 28) -> (B, 10)


# ----------------------------------------------------------------------------------------- training

# The settings the README's numbers were measured with. A few seconds on one CPU thread.
TRAIN_CONFIG = {"seed": 0, "epochs": 3, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4,
                "channels": [16, 32], "hidden": 256, "dropout": 0.25, "n_val": 500, "n_test": 1000}


def build_model(config: dict = TRAIN_CONFIG) -> DigitCNN:
    """A fresh DigitCNN shaped by the config's channels / hidden / dropout."""
    return DigitCNN(tuple(config["channels"]), config["hidden"], config["dropout"])


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on uint8 digits."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            x = torch.from_numpy(to_model_input(images[i:i + batch_size]))
            correct += int((model(x).argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(labels)


def train(config: dict = TRAIN_CONFIG, progress: bool = False, on_epoch=None) -> DigitCNN:
    """A fresh DigitCNN trained with AdamW on the train split; returned in eval mode.

    `on_epoch(epoch, metrics)` (optional) is called after each epoch with epoch = 1, 2, ... and
    metrics = {"train_loss": mean loss over the epoch, "val_accuracy": accuracy on the val split}; an experiment
    tracker can log them. The model also carries `model.history` (that list of metrics dicts) and
    `model.config`. Not cached: see `trained_model` for the cached copy.
    """
    from tqdm.auto import tqdm

    labkit.seed_everything(config["seed"])
    splits = digit_splits(config["seed"], config["n_val"], config["n_test"])
    images, labels = splits["train"]
    x_all, y_all = torch.from_numpy(to_model_input(images)), torch.from_numpy(labels)
    model = build_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    gen = torch.Generator().manual_seed(config["seed"])
    model.history = []
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        order = torch.randperm(len(y_all), generator=gen)
        batches = range(0, len(order), config["batch_size"])
        losses = []
        for i in tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False):
            idx = order[i:i + config["batch_size"]]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])  # logits (b, 10) vs labels (b,)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        metrics = {"train_loss": float(np.mean(losses)), "val_accuracy": accuracy(model, *splits["val"])}
        model.history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    model.eval()
    model.config = dict(config)
    return model


def config_key(config: dict) -> str:
    """16 hex digits naming a config (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def trained_model(config: dict = TRAIN_CONFIG, cache_dir: Path | None = None, progress: bool = False) -> DigitCNN:
    """The DigitCNN trained with `config`, in eval mode: loaded from `cache_dir` (default: this lab's outputs/)
    when a copy trained with the same config is there, else trained and saved atomically.

    The cache file is `digit_cnn-<config_key>.safetensors` (weights only, no pickle), with the config and the
    per-epoch history in its metadata; it is written to a temporary file and moved into place with os.replace,
    so a crash never leaves half a file and two processes training at once both end with a whole one.
    """
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir or OUT) / f"digit_cnn-{config_key(config)}.safetensors"
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        model = build_model(config)
        model.load_state_dict(load_file(str(path)))
        model.history, model.config = json.loads(meta["history"]), json.loads(meta["config"])
        return model.eval()
    model = train(config, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"config": json.dumps(config), "history": json.dumps(model.history)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return model


# ----------------------------------------------------------------------------------------- files

@contextmanager
def atomic_file(path: Path):
    """Yield a temporary sibling of `path` (same suffix) to write to; on success it replaces `path` in one
    os.replace, on error it is removed. Readers never see half an ONNX file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def quiet_logs(*names: str):
    """Raise the named loggers (default: the root logger) to ERROR inside the block, then restore them.
    ORT's quantiser and torch's dynamo exporter log advice on every call that a learner need not read twice."""
    loggers = [logging.getLogger(name) for name in (names or ("",))]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, before):
            logger.setLevel(level)


def file_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


# ----------------------------------------------------------------------------------------- 1. export

INPUT_NAME, OUTPUT_NAME = "image", "logits"  # what a serving client will send and read
OPSET = 17


def export_onnx(model: nn.Module, path: Path, example: torch.Tensor, exporter: str = "torchscript",
                opset: int = OPSET) -> Path:
    """Export `model` to a single self-contained ONNX file at `path` and return the path.

    Input "image" (batch, 1, 28, 28) and output "logits" (batch, 10), with the batch axis dynamic (a symbolic
    dimension named "batch_size"), opset `opset`. `example` is one input batch (use a batch > 1: the dynamo
    exporter specialises sizes 0 and 1). Two exporters:
      "torchscript": the classic tracer (torch.onnx.export(..., dynamo=False), dynamic_axes=, constant folding);
      "dynamo":      torch.export + onnxscript (dynamo=True, dynamic_shapes=), weights kept inside the file.
    """
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', not {exporter!r}")
    path = Path(path)
    with atomic_file(path) as tmp, warnings.catch_warnings(), quiet_logs("torch.onnx", "onnxscript"):
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and opset-18 upgrade notes
        # TODO [export-onnx]: eval() first; name input/output; batch axis 0 dynamic (dynamic_axes for the tracer, dynamic_shapes with a torch.export.Dim for dynamo); weights inside the file.
        raise NotImplementedError('TODO [export-onnx]: eval() first; name input/output; batch axis 0 dynamic (dynamic_axes for the tracer, dynamic_shapes with a torch.export.Dim for dynamo); weights inside the file.')
    return path


# ----------------------------------------------------------------------------------------- 2. validate

def validate_onnx(path: Path) -> dict:
    """Check an ONNX file and describe it; raise ValueError (one line) when the checker rejects it.

    Returns {"opset": the default domain's opset version,
             "inputs": {name: dims}, "outputs": {name: dims}   (graph inputs that are not weights),
             "ops": {op_type: count},
             "values": {name: dims} for every intermediate value, from shape inference}.
    dims is a list with an int for a fixed size and the dimension's name (a str) for a symbolic one.
    """
    model = onnx.load(str(path))
    # TODO [validate-onnx]: onnx.checker.check_model(full_check=True) (ValidationError/InferenceError -> one-line ValueError); infer_shapes; a dim is dim_param when it has one, else dim_value.
    raise NotImplementedError('TODO [validate-onnx]: onnx.checker.check_model(full_check=True) (ValidationError/InferenceError -> one-line ValueError); infer_shapes; a dim is dim_param when it has one, else dim_value.')


# ----------------------------------------------------------------------------------------- 3. parity

def available_providers(preferred=("CUDAExecutionProvider", "CPUExecutionProvider")) -> list[str]:
    """The preferred execution providers this onnxruntime build has, in order (CPU always last). The CUDA
    provider needs the separate onnxruntime-gpu package; asking for it on the CPU build only logs a warning."""
    have = set(ort.get_available_providers())
    return [p for p in preferred if p in have and p != "CPUExecutionProvider"] + ["CPUExecutionProvider"]


def make_session(path: Path, providers=None, level: str | None = None, threads: int | None = None):
    """An ort.InferenceSession on `path`; `level` is a key of OPT_LEVELS (ORT's default is "all")."""
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = OPT_LEVELS[level]
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers or available_providers())


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """PyTorch's reference logits (N, 10) for float input x (N, 1, 28, 28): what ONNX Runtime must reproduce."""
    # TODO [ort-parity]: Inference behaviour for BatchNorm and Dropout, no autograd; float32 in, numpy out.
    raise NotImplementedError('TODO [ort-parity]: Inference behaviour for BatchNorm and Dropout, no autograd; float32 in, numpy out.')


def run_onnxruntime(session, x: np.ndarray) -> np.ndarray:
    """Run an ORT session on x (N, 1, 28, 28) of any float dtype -> logits (N, 10) float32."""
    # TODO [ort-parity]: Feed {the session's own input name: x as contiguous float32}; session.run(None, feed) returns a list of outputs.
    raise NotImplementedError("TODO [ort-parity]: Feed {the session's own input name: x as contiguous float32}; session.run(None, feed) returns a list of outputs.")


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, rtol: float = 1e-3, atol: float = 1e-4) -> dict:
    """How far `candidate` is from `reference` (same shape), elementwise.

    Returns {"max_abs": max |c - r|, "max_rel": max |c - r| / max(|r|, 1e-12),
             "ok": every element has |c - r| <= atol + rtol * |r| (numpy.allclose's rule, relative to the reference),
             "top1_agreement": share of rows whose argmax matches}.
    The defaults fit float32 inference of one model on two runtimes: kernels sum in different orders, so expect
    ~1e-6 relative error, not zero; a gap above 1e-3 means a different computation, not rounding.
    """
    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape} vs candidate {candidate.shape}")
    # TODO [ort-parity]: Elementwise |c - r|; the worst element decides; tolerance atol + rtol*|reference|.
    raise NotImplementedError('TODO [ort-parity]: Elementwise |c - r|; the worst element decides; tolerance atol + rtol*|reference|.')


# ----------------------------------------------------------------------------------------- 4. graph optimisation

# ORT's levels: basic = constant folding, redundant-node removal and fusions that hold on any hardware (e.g.
# Conv+BatchNorm); extended = fusions into ORT's own kernels (Conv+Relu -> FusedConv, Gemm+Relu -> FusedGemm);
# all = extended + layout changes for this CPU (NCHWc blocks), so a saved "all" model only suits this machine.
OPT_LEVELS = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def optimize_onnx(src: Path, dst: Path, level: str) -> Path:
    """Let ONNX Runtime optimise `src` at `level` (a key of OPT_LEVELS) and save the optimised graph to `dst`."""
    if level not in OPT_LEVELS:
        raise ValueError(f"unknown optimisation level {level!r}; use one of {', '.join(OPT_LEVELS)}")
    dst = Path(dst)
    with atomic_file(dst) as tmp:
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        # TODO [optimize-graph]: SessionOptions: graph_optimization_level from OPT_LEVELS and optimized_model_filepath; creating the session writes the file.
        raise NotImplementedError('TODO [optimize-graph]: SessionOptions: graph_optimization_level from OPT_LEVELS and optimized_model_filepath; creating the session writes the file.')
    return dst


def count_nodes(path: Path) -> int:
    return len(onnx.load(str(path)).graph.node)


# ----------------------------------------------------------------------------------------- 5. INT8

def quantize_dynamic_int8(src: Path, dst: Path) -> float:
    """Dynamic INT8: weights stored as int8 (per tensor), activations quantised on the fly at run time; no
    calibration. Returns the size ratio dst / src (e.g. 0.26 means the file is about 4x smaller)."""
    dst = Path(dst)
    with atomic_file(dst) as tmp, quiet_logs():
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        # TODO [quantize-dynamic]: onnxruntime.quantization.quantize_dynamic with signed int8 weights, every quantisable op (Conv and the Gemm/MatMul layers); the ratio is new bytes over old bytes.
        raise NotImplementedError('TODO [quantize-dynamic]: onnxruntime.quantization.quantize_dynamic with signed int8 weights, every quantisable op (Conv and the Gemm/MatMul layers); the ratio is new bytes over old bytes.')


def calibration_digits(splits: dict, n: int = 500) -> np.ndarray:
    """The uint8 digits (n, 28, 28) that static quantisation calibrates activation ranges on."""
    # TODO [quantize-static]: Held-out digits that are not the final exam: the test split must stay unseen.
    raise NotImplementedError('TODO [quantize-static]: Held-out digits that are not the final exam: the test split must stay unseen.')


class DigitCalibrationReader(CalibrationDataReader):
    """Feeds calibration batches to quantize_static: each get_next() returns {input_name: float32 (b, 1, 28, 28)}
    prepared exactly as at inference (to_model_input), each digit once, then None; rewind() starts again."""

    def __init__(self, images: np.ndarray, input_name: str = INPUT_NAME, batch_size: int = 50):
        # TODO [quantize-static]: Pre-build the feeds: slices of batch_size digits through the same preprocessing as inference; keep a position.
        raise NotImplementedError('TODO [quantize-static]: Pre-build the feeds: slices of batch_size digits through the same preprocessing as inference; keep a position.')

    def get_next(self) -> dict | None:
        # TODO [quantize-static]: The next feed and advance, or None once all were given.
        raise NotImplementedError('TODO [quantize-static]: The next feed and advance, or None once all were given.')

    def rewind(self) -> None:
        self.position = 0


def quantize_static_int8(src: Path, dst: Path, reader: CalibrationDataReader) -> float:
    """Static INT8 (QDQ format): int8 weights, and activation ranges measured once (MinMax) by running the
    calibration batches through the model. Returns the size ratio dst / src."""
    dst = Path(dst)
    with atomic_file(dst) as tmp, quiet_logs():
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        # TODO [quantize-static]: quantize_static with the reader, QDQ format, int8 activations and weights, MinMax calibration.
        raise NotImplementedError('TODO [quantize-static]: quantize_static with the reader, QDQ format, int8 activations and weights, MinMax calibration.')
    return dst.stat().st_size / Path(src).stat().st_size


# ----------------------------------------------------------------------------------------- 6. FP16

def convert_fp16(src: Path, dst: Path) -> Path:
    """Half-precision weights and activations, with float32 input and output kept (Cast nodes at the edges), so
    clients still send float32. Uses onnxruntime.transformers.float16 (ships with onnxruntime)."""
    dst = Path(dst)
    with atomic_file(dst) as tmp:
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        # TODO [convert-fp16]: convert_float_to_float16 on the loaded model, keeping the graph's input/output types; save the converted model.
        raise NotImplementedError("TODO [convert-fp16]: convert_float_to_float16 on the loaded model, keeping the graph's input/output types; save the converted model.")
    return dst


# ----------------------------------------------------------------------------------------- 7. TorchScript

def export_torchscript(model: nn.Module, path: Path, example: torch.Tensor, method: str = "trace"):
    """Save `model` as TorchScript at `path` ("trace": record one run on `example`; "script": compile the
    Python) and return the module loaded back with torch.jit.load (what a LibTorch C++ program would do)."""
    if method not in ("trace", "script"):
        raise ValueError(f"method must be 'trace' or 'script', not {method!r}")
    path = Path(path)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        # write to `tmp`: atomic_file moves it to its final path when the block ends without error
        warnings.simplefilter("ignore")  # torch 2.9+ marks torch.jit as deprecated in favour of torch.export
        # TODO [torchscript]: eval() first, then torch.jit.trace or torch.jit.script as asked, saved with torch.jit.save.
        raise NotImplementedError('TODO [torchscript]: eval() first, then torch.jit.trace or torch.jit.script as asked, saved with torch.jit.save.')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))


# ----------------------------------------------------------------------------------------- 8. latency

def benchmark(fn, warmup: int = 5, iters: int = 50, clock=time.perf_counter) -> dict:
    """Latency of fn() in milliseconds: {"p50_ms", "p95_ms", "mean_ms"} over `iters` timed calls that follow
    `warmup` untimed ones (first calls pay for allocation, caches and kernel selection)."""
    # TODO [latency]: Untimed warm-up calls first; time each call alone with clock(); seconds -> ms; numpy percentiles.
    raise NotImplementedError('TODO [latency]: Untimed warm-up calls first; time each call alone with clock(); seconds -> ms; numpy percentiles.')


def throughput_fps(latency_ms: float, batch: int) -> float:
    """Images per second when one batch of `batch` images takes `latency_ms` milliseconds."""
    # TODO [latency]: batch / latency, with the latency in seconds.
    raise NotImplementedError('TODO [latency]: batch / latency, with the latency in seconds.')


# ----------------------------------------------------------------------------------------- TensorRT (GPU only)

def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def build_tensorrt_engine(onnx_path: Path, engine_path: Path, fp16: bool = True, max_batch: int = 64) -> Path:
    """Compile the ONNX file into a TensorRT engine (NVIDIA GPUs only; TensorRT 10 API).

    Not run in this project's environment: TensorRT needs an NVIDIA GPU and the tensorrt package, which the
    lock does not hold. The code is the path you would run on such a machine."""
    if not tensorrt_available():
        raise RuntimeError("TensorRT is not available here: it needs an NVIDIA GPU and `pip install tensorrt`; "
                           "use ONNX Runtime (this lab) on CPU")
    trt = importlib.import_module("tensorrt")  # optional, GPU machines only: not in this project's lock

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {parser.get_error(0)}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()  # the dynamic batch axis needs a min / usual / max shape
    profile.set_shape(INPUT_NAME, (1, 1, 28, 28), (8, 1, 28, 28), (max_batch, 1, 28, 28))
    config.add_optimization_profile(profile)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    with atomic_file(Path(engine_path)) as tmp:
        tmp.write_bytes(bytes(engine))
    return Path(engine_path)


# ----------------------------------------------------------------------------------------- demo

def export_all(model: nn.Module, folder: Path, splits: dict, progress: bool = False) -> dict[str, Path]:
    """Every artifact of the lab under `folder`: fp32 ONNX (both exporters), ORT-optimised, INT8 dynamic and
    static, FP16 and TorchScript. Returns {name: path}."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    example = torch.from_numpy(to_model_input(np.zeros((2, 28, 28), np.uint8)))
    steps = [("fp32", lambda p: export_onnx(model, p, example, "torchscript")),
             ("fp32_dynamo", lambda p: export_onnx(model, p, example, "dynamo")),
             ("fp32_ort_optimized", lambda p: optimize_onnx(folder / "fp32.onnx", p, "extended")),
             ("int8_dynamic", lambda p: quantize_dynamic_int8(folder / "fp32.onnx", p)),
             ("int8_static", lambda p: quantize_static_int8(folder / "fp32.onnx", p,
                                                             DigitCalibrationReader(calibration_digits(splits)))),
             ("fp16", lambda p: convert_fp16(folder / "fp32.onnx", p))]
    paths = {}
    for name, make in tqdm(steps, desc="export", disable=not progress):
        paths[name] = folder / f"digit_cnn_{name}.onnx" if name != "fp32" else folder / "fp32.onnx"
        make(paths[name])
    paths["torchscript"] = folder / "digit_cnn_torchscript.pt"
    export_torchscript(model, paths["torchscript"], example)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = trained_model(progress=True)
    splits = digit_splits(TRAIN_CONFIG["seed"], TRAIN_CONFIG["n_val"], TRAIN_CONFIG["n_test"])
    print(f"DigitCNN ready in {time.perf_counter() - t0:.1f} s; val accuracy by epoch "
          f"{[round(h['val_accuracy'], 3) for h in model.history]}")
    paths = export_all(model, OUT, splits, progress=True)

    report = validate_onnx(paths["fp32"])
    print(f"\nvalid ONNX, opset {report['opset']}: inputs {report['inputs']} -> outputs {report['outputs']}")
    print(f"ops {report['ops']}")

    test_x, test_y = to_model_input(splits["test"][0]), splits["test"][1]
    print("\nparity with PyTorch (max |diff| of logits):")
    for name in ("fp32", "fp32_dynamo"):
        session = make_session(paths[name], threads=1)
        for batch in (1, 4, 32):
            diff = compare_outputs(torch_logits(model, test_x[:batch]), run_onnxruntime(session, test_x[:batch]))
            print(f"  {name:12s} batch {batch:3d}: max_abs {diff['max_abs']:.2e}  ok={diff['ok']}")

    print("\nORT graph optimisation levels (node count):")
    for level in OPT_LEVELS:
        optimized = optimize_onnx(paths["fp32"], OUT / f"opt_{level}.onnx", level)
        print(f"  {level:9s} {count_nodes(optimized):3d} nodes")

    eager = torch_logits(model, test_x)
    print(f"\n{'model':20s} {'MB':>7s} {'test acc':>9s} {'top-1 = fp32':>13s}")
    print(f"{'pytorch eager':20s} {'':7s} {(eager.argmax(1) == test_y).mean():9.4f}")
    for name in ("fp32", "int8_dynamic", "int8_static", "fp16"):
        logits = run_onnxruntime(make_session(paths[name], threads=1), test_x)
        print(f"{'ort ' + name:20s} {file_mb(paths[name]):7.3f} {(logits.argmax(1) == test_y).mean():9.4f} "
              f"{(logits.argmax(1) == eager.argmax(1)).mean():13.4f}")
    scripted = export_torchscript(model, paths["torchscript"], torch.from_numpy(test_x[:2]))
    with torch.inference_mode():
        ts_gap = compare_outputs(eager, scripted(torch.from_numpy(test_x)).numpy())["max_abs"]
    print(f"TorchScript (traced) max |diff| vs eager: {ts_gap:.2e}")
    print(f"TensorRT: {'available' if tensorrt_available() else 'not available here (needs an NVIDIA GPU and tensorrt)'}")
    print(f"\nartifacts in {OUT}; latency table: make bench LAB=cv-engineer/phase-07-mlops-deployment/lab-01-onnx-export")


if __name__ == "__main__":
    labkit.run(main)
