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
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import labkit
from labkit import assets

OUT = labkit.output_dir(__file__)

# ----------------------------------------------------------------------------------------- data

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual MNIST pixel statistics (pixels scaled to 0-1 first)


def digit_splits(seed: int = 0, n_val: int = 500, n_test: int = 1000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 5,000 packaged MNIST digits, shuffled with `seed`, cut into train / val / test.

    Returns {"train": (images, labels), "val": ..., "test": ...} with images uint8 (N, 28, 28) and labels int64 (N,).
    val is for choosing things (and for calibrating a quantiser); test is only ever for the final number.
    """
    images, labels = assets.mnist_digits(seed)
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


# ----------------------------------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    t0 = time.perf_counter()
    model = trained_model(progress=True)
    splits = digit_splits(TRAIN_CONFIG["seed"], TRAIN_CONFIG["n_val"], TRAIN_CONFIG["n_test"])
    print(f"DigitCNN ready in {time.perf_counter() - t0:.1f} s: history {model.history}")
    print(f"test accuracy (PyTorch eager): {accuracy(model, *splits['test']):.4f}")


if __name__ == "__main__":
    labkit.run(main)
