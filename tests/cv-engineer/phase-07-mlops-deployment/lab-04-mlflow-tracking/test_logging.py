"""Connecting, parameters, per-epoch metrics and the logged model, checked through an independent MlflowClient
on the test's own server (what the server stored, not what the lab's code returns)."""
import json
import threading

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient


pytestmark = pytest.mark.usefixtures("one_thread")


def history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


# ---------------------------------------------------------------------------------------------- connect

@pytest.mark.task("connect")
def test_connect_sends_runs_and_registry_to_the_server_not_the_cwd(h, impl, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    decoy = f"sqlite:///{tmp_path / 'decoy.db'}"
    mlflow.set_tracking_uri(decoy)
    mlflow.set_registry_uri(decoy)
    client = impl.connect(server.uri)
    assert mlflow.get_tracking_uri() == server.uri, f"tracking URI is {mlflow.get_tracking_uri()!r}, expected the server"
    assert mlflow.get_registry_uri() == server.uri, f"registry URI is {mlflow.get_registry_uri()!r}, expected the server"
    assert client.tracking_uri == server.uri
    experiment = h.unique("connect")
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("where", "server")
    seen = MlflowClient(server.uri).get_run(run.info.run_id)
    assert seen.data.params == {"where": "server"}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists(), \
        "a local store appeared in the working folder"


@pytest.mark.task("connect")
def test_connect_turns_telemetry_off(h, impl, server, monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    impl.connect(server.uri)
    assert __import__("os").environ.get("MLFLOW_DISABLE_TELEMETRY") == "true", \
        "MLFLOW_DISABLE_TELEMETRY should be 'true' after connect"


@pytest.mark.parametrize("uri", ["", "mlflow.db", "sqlite:///mlflow.db", "ftp://127.0.0.1", None])
def test_connect_refuses_a_vague_uri(h, impl, uri):
    with pytest.raises(ValueError) as err:
        impl.connect(uri)
    h.one_line(err)


# ---------------------------------------------------------------------------------------------- params

CONFIG = {"lr": 0.002, "channels": [16, 32], "hidden": 256, "optimizer": "AdamW"}
EXPECTED_PARAMS = {"lr": "0.002", "channels": "[16, 32]", "hidden": "256", "optimizer": "AdamW"}


@pytest.mark.task("log-config")
def test_log_config_stores_every_entry_and_accepts_the_same_again(h, impl, tracking):
    mlflow.set_experiment(h.unique("params"))
    with mlflow.start_run() as run:
        impl.log_config(CONFIG)
        impl.log_config(dict(CONFIG))           # a resumed run logs the same config again: fine
    assert tracking.get_run(run.info.run_id).data.params == EXPECTED_PARAMS


@pytest.mark.task("log-config")
def test_log_config_refuses_a_changed_value_and_writes_nothing(h, impl, tracking):
    mlflow.set_experiment(h.unique("params"))
    with mlflow.start_run() as run:
        impl.log_config(CONFIG)
        with pytest.raises(ValueError) as err:
            impl.log_config({**CONFIG, "lr": 0.01, "batch_size": 32})
        assert "lr" in h.one_line(err)
    params = tracking.get_run(run.info.run_id).data.params
    assert params == EXPECTED_PARAMS, f"the store changed after a refused config: {params}"


# ---------------------------------------------------------------------------------------------- metrics

@pytest.mark.task("log-metrics")
def test_log_epoch_records_each_epoch_at_its_step(h, impl, tracking):
    mlflow.set_experiment(h.unique("metrics"))
    with mlflow.start_run() as run:
        impl.log_epoch(1, {"train_loss": 1.5, "val_accuracy": 0.5})
        impl.log_epoch(2, {"train_loss": 0.75, "val_accuracy": 0.625})
        impl.log_epoch(3, {"train_loss": 0.5, "val_accuracy": 0.75})
    rid = run.info.run_id
    assert history(tracking, rid, "train_loss") == [(1, 1.5), (2, 0.75), (3, 0.5)]
    assert history(tracking, rid, "val_accuracy") == [(1, 0.5), (2, 0.625), (3, 0.75)]


@pytest.mark.task("log-metrics")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.9", True, None])
def test_log_epoch_refuses_a_non_finite_metric_and_logs_nothing_of_that_epoch(h, impl, tracking, bad):
    mlflow.set_experiment(h.unique("metrics"))
    with mlflow.start_run() as run:
        impl.log_epoch(1, {"train_loss": 1.0, "val_accuracy": 0.5})
        with pytest.raises(ValueError) as err:
            impl.log_epoch(2, {"train_loss": 0.5, "val_accuracy": bad})
        h.one_line(err)
        impl.log_epoch(2, {"train_loss": 0.5, "val_accuracy": 0.75})   # the server still takes the next one
    rid = run.info.run_id
    assert history(tracking, rid, "train_loss") == [(1, 1.0), (2, 0.5)]
    assert history(tracking, rid, "val_accuracy") == [(1, 0.5), (2, 0.75)]


@pytest.mark.task("log-metrics")
@pytest.mark.parametrize("epoch", [0, -1, 1.0, True])
def test_log_epoch_refuses_a_bad_epoch(h, impl, tracking, epoch):
    mlflow.set_experiment(h.unique("metrics"))
    with mlflow.start_run() as run:
        with pytest.raises(ValueError) as err:
            impl.log_epoch(epoch, {"train_loss": 1.0})
        h.one_line(err)
    assert tracking.get_metric_history(run.info.run_id, "train_loss") == []


# ---------------------------------------------------------------------------------------------- the model

@pytest.mark.task("log-model")
def test_log_model_saves_signature_and_input_example(h, impl, tracking, cnn, bad_model, splits):
    images = splits["val"][0][:3]
    mlflow.set_experiment(h.unique("model"))
    with mlflow.start_run() as run:
        impl.log_model(bad_model, images)
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert info.signature is not None, "the model was logged without a signature"
    (inputs,), (outputs,) = info.signature.inputs.inputs, info.signature.outputs.inputs
    assert (str(inputs.type), tuple(inputs.shape)) == ("float32", (-1, 1, 28, 28)), \
        f"signature input is {inputs.type} {inputs.shape}, expected float32 (-1, 1, 28, 28)"
    assert (str(outputs.type), tuple(outputs.shape)) == ("float32", (-1, 10)), \
        f"signature output is {outputs.type} {outputs.shape}, expected float32 (-1, 10)"
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert example is not None, "no input example was logged"
    np.testing.assert_allclose(np.asarray(example), cnn.to_model_input(images), rtol=0, atol=1e-6)


@pytest.mark.task("log-model")
def test_logged_model_predicts_like_the_model_in_memory(h, impl, tracking, cnn, good_model, splits):
    images = splits["test"][0][:64]
    good_model.train()                                 # logged as it should be served: in eval mode
    mlflow.set_experiment(h.unique("model"))
    with mlflow.start_run() as run:
        impl.log_model(good_model, images[:2])
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    got = np.asarray(loaded.predict(cnn.to_model_input(images)))
    np.testing.assert_allclose(got, h.logits_of(cnn, good_model, images), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- a whole run

@pytest.fixture(scope="module")
def logged_run(h, impl, server):
    mlflow.set_tracking_uri(server.uri)
    mlflow.set_registry_uri(server.uri)
    from labkit.device import torch_threads

    with torch_threads(1):
        return impl.train_and_log(h.TINY, h.unique("train"), run_name="tiny")


@pytest.mark.task("log-metrics")
def test_train_and_log_records_a_whole_run(h, impl, tracking, cnn, logged_run, splits):
    run = tracking.get_run(logged_run)
    assert run.info.status == "FINISHED"
    expected = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in h.TINY.items()}
    assert run.data.params == expected, run.data.params
    steps = [step for step, _ in history(tracking, logged_run, "val_accuracy")]
    assert steps == list(range(1, h.TINY["epochs"] + 1)), f"val_accuracy logged at steps {steps}"
    assert [s for s, _ in history(tracking, logged_run, "train_loss")] == steps
    # The last val_accuracy is the logged model's accuracy on the validation digits, recomputed here.
    model = mlflow.pyfunc.load_model(f"runs:/{logged_run}/model")
    images, labels = splits["val"]
    accuracy = float(np.mean(np.asarray(model.predict(cnn.to_model_input(images))).argmax(1) == labels))
    assert run.data.metrics["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    files = {a.path for a in tracking.list_artifacts(logged_run)} | \
        {a.path for a in tracking.list_artifacts(logged_run, "plots")}
    assert {"config.json", "plots/confusion_matrix.png"} <= files, files
    png = tracking.download_artifacts(logged_run, "plots/confusion_matrix.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- the server itself

def test_64_concurrent_clients_lose_and_reorder_nothing(h, tracking, server):
    """MLflow's server under 64 clients logging at once into one run (SQLite store): every point arrives."""
    mlflow.set_experiment(h.unique("load"))
    with mlflow.start_run() as run:
        pass
    errors = []

    def client_logs(i):
        try:
            MlflowClient(server.uri).log_metric(run.info.run_id, "concurrent", value=i * 0.5, step=i)
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(f"{i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client_logs, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client was still waiting after 120 s"
    assert not errors, errors[:3]
    assert history(tracking, run.info.run_id, "concurrent") == [(i, i * 0.5) for i in range(64)]


def test_autolog_captures_nothing_from_a_plain_training_loop(h, impl, tracking):
    """mlflow.pytorch.autolog patches Lightning's Trainer.fit and TensorBoard's SummaryWriter; a plain loop
    calls neither, so the run ends with no metrics (which is why this lab logs by hand)."""
    from labkit.device import torch_threads

    with torch_threads(1):
        count = impl.autolog_plain_loop_metric_count({**h.TINY, "epochs": 1}, h.unique("autolog"))
    assert count == 0
