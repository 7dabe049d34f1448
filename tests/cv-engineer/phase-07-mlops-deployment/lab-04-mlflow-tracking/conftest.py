"""One real `mlflow server` for this lab's tests: 127.0.0.1, a free port, a temporary SQLite store and artifact
folder, started once per test session (starting one takes 10-40 s on a loaded 2-core machine) and stopped as a
process group at the end, with a check that nothing of it is left. Every test works under names of its own
(experiments, registered models), so tests never see each other's runs.

The reference models (one trained DigitCNN, one untrained) come from lab 01 directly, not from this lab's code."""
import atexit
import os
import shutil
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
TESTS = ROOT / "tests/cv-engineer/phase-07-mlops-deployment/lab-04-mlflow-tracking"

# Small and quick: 1,500 training digits, 500 validation, the rest held out; a narrow CNN, two epochs.
TINY = {"seed": 0, "epochs": 2, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "channels": [4, 8],
        "hidden": 32, "dropout": 0.25, "n_val": 500, "n_test": 3000}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert text and "\n" not in text.strip(), f"expected a one-line error message, got {text!r}"
    return text


_SHARED: dict = {}   # things built once per pytest process (see `server`)


def _start_server(config):
    if "server" not in _SHARED:
        import tempfile

        lab = load_impl(LAB, config.getoption("--impl"))   # TrackingServer is shared code, no TODO inside
        root = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
        running = lab.TrackingServer(root, start_timeout=240)
        running.start()          # on failure or interruption it stops what it started, then raises
        _SHARED["server"] = running
        atexit.register(running.stop)   # a second line of defence if pytest dies before unconfigure
    return _SHARED["server"]


def pytest_collection_finish(session):
    """Start the server and build the reference models once, before any test runs: outside every test's time
    limit (`make mistakes` gives each test 60 s, and a server start alone can take that on a loaded machine)."""
    if session.config.option.collectonly or not any(str(item.path).startswith(str(TESTS)) for item in session.items):
        return
    _start_server(session.config)
    cnn = reuse("lab-01-onnx-export")
    shared("splits", lambda: cnn.digit_splits(TINY["seed"], TINY["n_val"], TINY["n_test"]))
    shared("good_model", lambda: _train_good(cnn))
    shared("bad_model", lambda: _untrained(cnn))
    reference_runs()


def reference_runs() -> dict:
    """run ids of the good and the bad model logged straight through mlflow.pytorch.log_model (not the lab's
    code), each with a val_accuracy that contradicts reality: the good one claims 0.50, the bad one 0.99."""
    def build():
        from mlflow.models import infer_signature

        cnn, splits = reuse("lab-01-onnx-export"), _SHARED["splits"]
        mlflow.set_tracking_uri(_SHARED["server"].uri)
        mlflow.set_registry_uri(_SHARED["server"].uri)
        mlflow.set_experiment(unique("registry"))
        images = splits["val"][0][:2]
        x = cnn.to_model_input(images)
        ids = {}
        for label, model, claimed in (("good", _SHARED["good_model"], 0.50), ("bad", _SHARED["bad_model"], 0.99)):
            with mlflow.start_run() as run:
                mlflow.log_metric("val_accuracy", claimed, step=1)
                signature = infer_signature(x, logits_of(cnn, model, images))
                mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=x,
                                         pip_requirements=["torch"])
            ids[label] = run.info.run_id
        return ids

    return shared("registry-runs", build)


@pytest.fixture(scope="session")
def server(request):
    """The test server, kept for the whole pytest process. `make mistakes` tears every fixture down after each
    caught mistake; the server does not depend on the code under test, so it is not restarted for each one
    (a start takes 10-90 s here). It is stopped, and checked gone, when pytest ends."""
    return _start_server(request.config)


def pytest_unconfigure(config):
    running = _SHARED.pop("server", None)
    if running is None:
        return
    pgid = running.process.pid
    running.stop()
    alive = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _in_group(p, pgid)]
    assert not alive, f"mlflow server processes {alive} outlived stop()"
    with socket.socket() as s:   # nothing listens on the port any more (TIME_WAIT leftovers are fine)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", running.port))
    shutil.rmtree(running.root, ignore_errors=True)


def _in_group(proc, pgid: int) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"


def shared(key, build):
    """build() once per pytest process: for reference objects that do not depend on the code under test."""
    if key not in _SHARED:
        _SHARED[key] = build()
    return _SHARED[key]


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
    return shared("splits", lambda: cnn.digit_splits(TINY["seed"], TINY["n_val"], TINY["n_test"]))


@pytest.fixture(scope="session")
def good_model(cnn):
    """lab 01's DigitCNN trained on TINY (about 88% on held-out digits)."""
    return shared("good_model", lambda: _train_good(cnn))


@pytest.fixture(scope="session")
def bad_model(cnn):
    """The same architecture, untrained (about 10%)."""
    return shared("bad_model", lambda: _untrained(cnn))


def _train_good(cnn):
    with torch_threads(1):
        return cnn.train(TINY)


def _untrained(cnn):
    torch.manual_seed(1)
    return cnn.build_model(TINY).eval()


def logits_of(cnn, model, images) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(cnn.to_model_input(images))).numpy()


@pytest.fixture(scope="session")
def h():
    """The helpers above, for the test modules (a conftest cannot be imported by name here)."""
    return SimpleNamespace(TINY=TINY, unique=unique, one_line=one_line, logits_of=logits_of, shared=shared,
                           reference_runs=reference_runs)
