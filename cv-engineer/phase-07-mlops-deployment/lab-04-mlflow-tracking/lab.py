"""MLflow experiment tracking: every training run recorded, compared by query, and promoted through a registry.

A notebook full of "run 7 looked better" is not a process. MLflow gives each training run a record on a tracking
server: its parameters (fixed once, like the learning rate), its metrics (a time series, one value per step),
its artifacts (plots, the config file) and the model itself, saved with a signature that says what input it
takes. Runs are compared with a query instead of by eye, and the model registry keeps named versions of a model
with movable aliases (@champion serves traffic, @challenger waits for its turn), so a deployment loads
`models:/digits@champion` and never a file path.

The model is lab 01's DigitCNN trained on 5,000 real MNIST digits (`labkit.reuse("lab-01-onnx-export")`).

What you build:

1. `connect`: point MLflow at a tracking server explicitly (the default is a SQLite file in the current folder),
   registry included, telemetry off.
2. `log_config` / `log_epoch`: parameters once (a changed value is refused, not overwritten), metrics per epoch
   with their step, and nothing non-finite ever reaches the store.
3. `log_model`: the trained model with its signature and an input example.
4. `best_run`: the best finished run of an experiment, found by a search query.
5. `register_run_model` / `set_alias`: a run's model becomes a numbered version; aliases only ever point at
   versions that exist.
6. `load_registered` / `predict_digits`: load `models:/<name>@<alias>` and predict digits, refusing bad input.
7. `should_promote` / `promote_challenger`: the challenger replaces the champion only when it beats it by a margin
   on the same held-out digits; otherwise the registry stays as it was.

The tracking server (`TrackingServer`), the training loop (lab 01's `train`), the confusion-matrix plot and the
demo are written for you.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow is imported: no usage pings home

import argparse
import functools
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import labkit

cnn = labkit.reuse("lab-01-onnx-export")  # DigitCNN, TRAIN_CONFIG, digit_splits, to_model_input, train, accuracy

OUT = labkit.output_dir(__file__)
MODEL_DIR = "model"                                   # where log_model puts the model inside a run
PIP_REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}"]  # stated, so MLflow does not guess them


# ---------------------------------------------------------------------------------------------- the server

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TrackingServer:
    """A real `mlflow server` on 127.0.0.1: a SQLite file for runs and the registry, a folder for artifacts.

    Started in its own process group (the server forks a uvicorn worker) and stopped as a group, so nothing
    outlives it. `start` polls GET /health until it answers or `start_timeout` seconds pass; a server that dies
    or never answers raises one line with the last line of its log.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None, start_timeout: float = 180.0):
        self.root = Path(root)
        self.host, self.port = host, port or free_port(host)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.root / "artifacts"),
                "--host", self.host, "--port", str(self.port), "--workers", "1"]

    def start(self) -> "TrackingServer":
        self.root.mkdir(parents=True, exist_ok=True)
        # No job runner: it forks seven huey consumers that spin on the CPU and are not needed for tracking.
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                   PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mlflow server exited with code {self.process.returncode}: "
                                       f"{self._last_log_line()}")
                if self.healthy():
                    return self
                time.sleep(0.25)
        except BaseException:   # an error, Ctrl-C or a test timeout while waiting: leave nothing running
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"mlflow server did not answer {self.uri}/health within {self.start_timeout:.0f} s: "
                           f"{self._last_log_line()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole group, SIGKILL if it is still there after `timeout` seconds."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.process.pid):
                self.process.poll()
                time.sleep(0.1)
            if not _group_alive(self.process.pid):
                break
        self.process.wait(timeout=5)

    def _last_log_line(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path.exists() else []
        return lines[-1] if lines else "(empty log)"

    def __enter__(self) -> "TrackingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts for killpg: alive only if some member is not a zombie.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


# ---------------------------------------------------------------------------------------------- connecting

def connect(tracking_uri: str) -> MlflowClient:
    """Point MLflow (runs and the model registry) at `tracking_uri`, turn telemetry off, return a client.

    Accepted: an http(s):// server or an absolute sqlite:////path/to.db. Anything else (a bare file name, an
    empty string) raises ValueError, because MLflow would otherwise keep writing to ./mlflow.db wherever the
    script happens to run.
    """
    if not isinstance(tracking_uri, str) or not tracking_uri.startswith(("http://", "https://", "sqlite:////")):
        raise ValueError(f"tracking_uri must be http(s)://host:port or sqlite:////absolute/path.db, "
                         f"got {tracking_uri!r}")
    # TODO [connect]: Set telemetry off in the environment, then both the tracking and the registry URI; return a client bound to the same URI.
    raise NotImplementedError('TODO [connect]: Set telemetry off in the environment, then both the tracking and the registry URI; return a client bound to the same URI.')


# ---------------------------------------------------------------------------------------------- logging a run

def as_params(config: dict) -> dict[str, str]:
    """MLflow stores parameters as strings: lists and dicts as JSON, everything else with str()."""
    return {key: json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            for key, value in config.items()}


def _active_run_id(what: str) -> str:
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(f"{what} needs an active run: call it inside `with mlflow.start_run():`")
    return run.info.run_id


def log_config(config: dict) -> None:
    """Log every config entry as a parameter of the active run.

    A parameter is a fact about the run, fixed once: logging the same value again is fine (a resumed run
    re-logs its config), a different value raises ValueError naming the key, before anything is written.
    """
    run_id = _active_run_id("log_config")
    params = as_params(config)
    # TODO [log-config]: Read the run's current params from the server; refuse keys whose stored value differs, then log them all in one call.
    raise NotImplementedError("TODO [log-config]: Read the run's current params from the server; refuse keys whose stored value differs, then log them all in one call.")


def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    """Log one epoch's metrics on the active run at step `epoch` (1, 2, ...), all or nothing.

    A metric that is not a finite number (NaN, inf, a string, a bool) raises ValueError and nothing of this epoch
    is logged: a NaN loss is a training bug to fix, not a point to plot.
    """
    _active_run_id("log_epoch")
    # TODO [log-metrics]: Check the epoch (an int >= 1) and every value (a real, finite number; bool is not one) first, then one log_metrics call with step=epoch.
    raise NotImplementedError('TODO [log-metrics]: Check the epoch (an int >= 1) and every value (a real, finite number; bool is not one) first, then one log_metrics call with step=epoch.')


def log_model(model: torch.nn.Module, example_images: np.ndarray):
    """Log `model` (eval mode) under the active run as `model/`, with its signature and an input example.

    The signature is what the model really takes and returns: the float32 input (N, 1, 28, 28) made by
    `to_model_input`, and logits (N, 10); the batch size is free (-1). Returns MLflow's ModelInfo.
    """
    _active_run_id("log_model")
    x = cnn.to_model_input(example_images)        # (n, 1, 28, 28) float32, normalised
    # TODO [log-model]: Run the model in eval mode on x (no grad) and infer the signature from that input and its logits; log with name=, the signature and x as the example.
    raise NotImplementedError('TODO [log-model]: Run the model in eval mode on x (no grad) and infer the signature from that input and its logits; log with name=, the signature and x as the example.')


@functools.lru_cache(maxsize=4)
def splits_for(seed: int, n_val: int, n_test: int) -> dict:
    """lab 01's train / val / test digits (cached: reading the packaged digits takes seconds)."""
    return cnn.digit_splits(seed, n_val, n_test)


def check_config(config: dict) -> None:
    missing = sorted(set(cnn.TRAIN_CONFIG) - set(config))
    if missing:
        raise ValueError(f"config lacks {missing}; start from lab 01's TRAIN_CONFIG and change what you sweep")
    for key in ("lr", "weight_decay", "dropout"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"config[{key!r}] must be a finite number >= 0, got {value!r}")
    for key in ("epochs", "batch_size", "hidden"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
            raise ValueError(f"config[{key!r}] must be an integer >= 1, got {config[key]!r}")


def confusion_figure(labels: np.ndarray, predicted: np.ndarray, title: str):
    """A 10 x 10 confusion matrix (rows: true digit, columns: predicted) as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(labels, predicted, labels=range(10))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > counts.max() / 2 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true digit", title=title)
    fig.tight_layout()
    return fig


def train_and_log(config: dict, experiment: str, run_name: str | None = None, progress: bool = False) -> str:
    """Train lab 01's DigitCNN with `config` inside one MLflow run and log everything; returns the run id.

    Params (the config), per-epoch metrics (train_loss, val_accuracy), artifacts (config.json, the validation
    confusion matrix) and the model with its signature. An exception inside marks the run FAILED.
    """
    import matplotlib.pyplot as plt

    check_config(config)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        log_config(config)
        model = cnn.train(config, progress=progress, on_epoch=log_epoch)
        images, labels = splits_for(config["seed"], config["n_val"], config["n_test"])["val"]
        with torch.inference_mode():
            predicted = model(torch.from_numpy(cnn.to_model_input(images))).argmax(1).numpy()
        mlflow.log_dict(config, "config.json")
        fig = confusion_figure(labels, predicted, f"val accuracy {np.mean(predicted == labels):.3f}")
        mlflow.log_figure(fig, "plots/confusion_matrix.png")
        plt.close(fig)
        log_model(model, images[:4])
    return run.info.run_id


# ---------------------------------------------------------------------------------------------- comparing runs

def best_run(experiment: str, metric: str = "val_accuracy", where: str = ""):
    """The FINISHED run of `experiment` with the highest `metric` (its last logged value), as an mlflow Run.

    `where` adds conditions in MLflow's search syntax, e.g. "params.hidden = '64'". Failed or still-running runs
    never count; a run in another experiment never counts. No match raises LookupError.
    """
    # TODO [best-run]: One search_runs over this experiment only: finished runs (and `where`), ordered by the metric descending, first result.
    raise NotImplementedError('TODO [best-run]: One search_runs over this experiment only: finished runs (and `where`), ordered by the metric descending, first result.')


def compare_runs(experiment: str, metric: str = "val_accuracy", params: tuple[str, ...] = ("lr", "hidden")):
    """A table (pandas) of the experiment's finished runs: the swept params and the metric, best first."""
    table = mlflow.search_runs(experiment_names=[experiment], filter_string="attributes.status = 'FINISHED'",
                               order_by=[f"metrics.{metric} DESC"])
    columns = ["run_id", "tags.mlflow.runName"] + [f"params.{p}" for p in params] + [f"metrics.{metric}"]
    return table[[c for c in columns if c in table.columns]]


# ---------------------------------------------------------------------------------------------- the registry

def register_run_model(run_id: str, name: str) -> str:
    """Register the model logged by run `run_id` (under `model/`) as a new version of `name`; returns the version.

    A run that does not exist, or has no logged model, raises ValueError and registers nothing.
    """
    client = MlflowClient()
    # TODO [register]: Check the run exists and logged a model first (search the logged models of that run), then register "runs:/<id>/model".
    raise NotImplementedError('TODO [register]: Check the run exists and logged a model first (search the logged models of that run), then register "runs:/<id>/model".')


def set_alias(client: MlflowClient, name: str, alias: str, version: str | int) -> None:
    """Point `name@alias` at `version`. A version that does not exist raises ValueError; nothing changes."""
    # TODO [register]: Look the version up first and turn "not found" into a one-line ValueError; only then set the alias.
    raise NotImplementedError('TODO [register]: Look the version up first and turn "not found" into a one-line ValueError; only then set the alias.')


def version_numbers(client: MlflowClient, name: str) -> list[str]:
    return sorted((v.version for v in client.search_model_versions(f"name = '{name}'")), key=int)


def version_by_alias(client: MlflowClient, name: str, alias: str):
    """The ModelVersion behind `name@alias`, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


# ---------------------------------------------------------------------------------------------- inference

def load_registered(name: str, alias: str = "champion"):
    """`models:/<name>@<alias>` as an MLflow pyfunc model. A missing alias raises LookupError."""
    # TODO [load-predict]: Load through the alias URI with mlflow.pyfunc (not a version number, not a file path); a missing alias is a one-line LookupError.
    raise NotImplementedError('TODO [load-predict]: Load through the alias URI with mlflow.pyfunc (not a version number, not a file path); a missing alias is a one-line LookupError.')


def predict_digits(model, images: np.ndarray) -> np.ndarray:
    """Digit labels (N,) int64 for uint8 digits (N, 28, 28), through a loaded pyfunc model.

    The images go through the same `to_model_input` as in training. Wrong shape or dtype raises a one-line
    ValueError (a float image already in 0-1 would otherwise be divided by 255 again, silently).
    """
    images = np.asarray(images)
    # TODO [load-predict]: Check shape (N, 28, 28) and dtype uint8 first, then predict on to_model_input(images) and take the argmax of the logits.
    raise NotImplementedError('TODO [load-predict]: Check shape (N, 28, 28) and dtype uint8 first, then predict on to_model_input(images) and take the argmax of the logits.')


def held_out_accuracy(name: str, version: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of version `version` of `name` on the given digits (loaded from the registry by number)."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return float(np.mean(predict_digits(model, images) == labels))


# ---------------------------------------------------------------------------------------------- promotion

@dataclass
class Decision:
    promoted: bool
    champion: str                    # the version @champion points at after the decision
    challenger: str
    champion_accuracy: float | None  # None when there was no champion yet
    challenger_accuracy: float
    reason: str


def should_promote(champion_accuracy: float | None, challenger_accuracy: float, margin: float) -> bool:
    """The rule: no champion yet -> promote; else promote only if challenger >= champion + margin.

    Accuracies are fractions k/n, so "exactly the margin" happens, and in floats 0.936 + 0.01 > 0.946: compare
    with a tolerance far below 1/n.
    """
    # TODO [promote]: No champion: yes. Otherwise compare against the champion's accuracy plus the margin; reaching it exactly counts, so allow a tiny float tolerance.
    raise NotImplementedError("TODO [promote]: No champion: yes. Otherwise compare against the champion's accuracy plus the margin; reaching it exactly counts, so allow a tiny float tolerance.")


def promote_challenger(client: MlflowClient, name: str, images: np.ndarray, labels: np.ndarray,
                       margin: float = 0.01) -> Decision:
    """Score @challenger and @champion on the same held-out digits and move @champion if the rule says so.

    On promotion @champion points at the challenger's version and @challenger is removed; otherwise both aliases
    stay as they were. Missing @challenger raises LookupError; a margin outside [0, 1) raises ValueError.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    challenger = version_by_alias(client, name, "challenger")
    if challenger is None:
        raise LookupError(f"model {name!r} has no @challenger; register a version and set_alias it first")
    champion = version_by_alias(client, name, "champion")
    # TODO [promote]: Re-score both versions on these same digits (not the metrics their runs logged), apply should_promote, then move @champion to the challenger's version and drop @challenger.
    raise NotImplementedError("TODO [promote]: Re-score both versions on these same digits (not the metrics their runs logged), apply should_promote, then move @champion to the challenger's version and drop @challenger.")
    client.set_model_version_tag(name, challenger.version, "held_out_accuracy", f"{challenger_acc:.4f}")
    reason = ("no champion yet" if champion is None else
              f"v{challenger.version} {challenger_acc:.4f} >= v{champion.version} {champion_acc:.4f} + {margin}")
    return Decision(True, challenger.version, challenger.version, champion_acc, challenger_acc, reason)


# ---------------------------------------------------------------------------------------------- autolog

def autolog_plain_loop_metric_count(config: dict, experiment: str) -> int:
    """Train with `mlflow.pytorch.autolog()` on and no manual logging; return how many metrics the run got.

    Autolog patches Lightning's Trainer.fit and torch's TensorBoard SummaryWriter; a plain training loop calls
    neither, so nothing is captured (0 here, where neither Lightning nor TensorBoard is installed).
    """
    mlflow.set_experiment(experiment)
    mlflow.pytorch.autolog(log_models=False, checkpoint=False, silent=True)
    try:
        with mlflow.start_run(run_name="autolog-plain-loop") as run:
            cnn.train(config)
    finally:
        mlflow.pytorch.autolog(disable=True)
    return len(MlflowClient().get_run(run.info.run_id).data.metrics)


# ---------------------------------------------------------------------------------------------- demo

GRID = [{"lr": lr, "hidden": hidden} for lr in (3e-4, 2e-3) for hidden in (32, 128)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--margin", type=float, default=0.01)
    args = parser.parse_args(argv)
    root = OUT / "mlflow"
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    with labkit.device.torch_threads(1), TrackingServer(root) as server:
        print(f"mlflow server up at {server.uri} in {time.perf_counter() - t0:.1f} s (store: {root})")
        client = connect(server.uri)
        experiment = "digit-cnn"
        run_ids = {}
        for change in GRID:
            config = dict(cnn.TRAIN_CONFIG, epochs=args.epochs, **change)
            name = f"lr{change['lr']:g}-h{change['hidden']}"
            t = time.perf_counter()
            run_ids[name] = train_and_log(config, experiment, run_name=name, progress=True)
            print(f"  run {name}: {time.perf_counter() - t:.1f} s")
        print(compare_runs(experiment).to_string(index=False))
        best = best_run(experiment)
        print(f"best run: {best.info.run_name} val_accuracy {best.data.metrics['val_accuracy']:.4f}")

        images, labels = splits_for(0, cnn.TRAIN_CONFIG["n_val"], cnn.TRAIN_CONFIG["n_test"])["test"]
        ranked = compare_runs(experiment)["tags.mlflow.runName"].tolist()   # best first
        model_name = "digit-cnn"
        for run_name in (ranked[-1], ranked[0], ranked[1]):  # the weakest first, as if it were last month's model
            version = register_run_model(run_ids[run_name], model_name)
            set_alias(client, model_name, "challenger", version)
            decision = promote_challenger(client, model_name, images, labels, margin=args.margin)
            print(f"v{version} ({run_name}) as challenger: {'PROMOTED' if decision.promoted else 'kept out'}: "
                  f"{decision.reason}")
        champion = load_registered(model_name)
        predicted = predict_digits(champion, images)
        print(f"{model_name}@champion = v{version_by_alias(client, model_name, 'champion').version}: "
              f"test accuracy {np.mean(predicted == labels):.4f} on {len(labels)} held-out digits")
        count = autolog_plain_loop_metric_count(dict(cnn.TRAIN_CONFIG, epochs=1), "autolog-demo")
        print(f"mlflow.pytorch.autolog() around a plain training loop logged {count} metrics")
    print(f"done in {time.perf_counter() - t0:.1f} s; browse the runs with "
          f"`mlflow ui --backend-store-uri sqlite:///{root / 'mlflow.db'}` (the store is kept until the next demo)")


if __name__ == "__main__":
    labkit.run(main)
