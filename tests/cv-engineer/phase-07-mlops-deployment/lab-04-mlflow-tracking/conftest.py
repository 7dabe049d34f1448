"""One real `mlflow server` for this lab's tests: 127.0.0.1, a free port, a temporary SQLite store and artifact
folder, started once per test session (starting one takes 10-40 s on a loaded 2-core machine) and stopped as a
process group at the end, with a check that nothing of it is left. Every test works under names of its own
(experiments, registered models), so tests never see each other's runs.

The reference models (one trained DigitCNN, one untrained) come from lab 01 directly, not from this lab's code."""
import os
import socket
import uuid
from types import SimpleNamespace
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from labkit import ROOT
from labkit.device import torch_threads
from labkit.labs import load_impl, reuse

LAB = ROOT / "cv-engineer/phase-07-mlops-deployment/lab-04-mlflow-tracking"

# Small and quick: 1,500 training digits, 500 validation, the rest held out; a narrow CNN, two epochs.
TINY = {"seed": 0, "epochs": 2, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "channels": [4, 8],
        "hidden": 32, "dropout": 0.25, "n_val": 500, "n_test": 3000}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert text and "\n" not in text.strip(), f"expected a one-line error message, got {text!r}"
    return text


@pytest.fixture(scope="session")
def server(request, tmp_path_factory):
    lab = load_impl(LAB, request.config.getoption("--impl"))   # TrackingServer is shared code, no TODO inside
    running = lab.TrackingServer(tmp_path_factory.mktemp("mlflow-server"), start_timeout=240)
    running.start()
    try:
        yield running
    finally:
        pgid = running.process.pid
        running.stop()
        alive = [p.name for p in Path("/proc").iterdir()
                 if p.name.isdigit() and _in_group(p, pgid)]
        assert not alive, f"mlflow server processes {alive} outlived stop()"
        with socket.socket() as s:   # nothing listens on the port any more (TIME_WAIT leftovers are fine)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", running.port))


def _in_group(proc, pgid: int) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"


@pytest.fixture
def tracking(server):
    """MLflow pointed at the test server directly (not through the lab's connect); a client on it."""
    mlflow.set_tracking_uri(server.uri)
    mlflow.set_registry_uri(server.uri)
    yield MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    while mlflow.active_run() is not None:
        mlflow.end_run("FAILED")


@pytest.fixture(scope="session")
def cnn():
    return reuse("lab-01-onnx-export")


@pytest.fixture(scope="session")
def splits(cnn):
    return cnn.digit_splits(TINY["seed"], TINY["n_val"], TINY["n_test"])


@pytest.fixture(scope="session")
def good_model(cnn):
    """lab 01's DigitCNN trained on TINY (about 88% on held-out digits)."""
    with torch_threads(1):
        return cnn.train(TINY)


@pytest.fixture(scope="session")
def bad_model(cnn):
    """The same architecture, untrained (about 10%)."""
    torch.manual_seed(1)
    return cnn.build_model(TINY).eval()


def logits_of(cnn, model, images) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(cnn.to_model_input(images))).numpy()


@pytest.fixture(scope="session")
def h():
    """The helpers above, for the test modules (a conftest cannot be imported by name here)."""
    return SimpleNamespace(TINY=TINY, unique=unique, one_line=one_line, logits_of=logits_of)
