"""Comparing runs by query. The runs are written here straight through MlflowClient with known metric
histories (no training), including the traps: a failed run and a still-running one with the best numbers, a run
without the metric, and a better run in another experiment. The expected answer is a brute-force max over what
was logged."""
import mlflow
import pytest
from mlflow.entities import Metric, Param

# (status, params, val_accuracy history by step: the last value is the one that counts, as in MLflow's search)
RUNS = [
    ("FINISHED", {"lr": "0.002", "hidden": "32"}, [0.70, 0.81, 0.86]),
    ("FINISHED", {"lr": "0.0003", "hidden": "32"}, [0.60, 0.95, 0.83]),   # best step early, last value lower
    ("FINISHED", {"lr": "0.002", "hidden": "128"}, [0.75, 0.84, 0.91]),
    ("FINISHED", {"lr": "0.0003", "hidden": "128"}, [0.65, 0.79, 0.88]),
    ("FAILED", {"lr": "0.01", "hidden": "128"}, [0.97]),                  # crashed after a lucky epoch
    ("RUNNING", {"lr": "0.005", "hidden": "32"}, [0.96]),                 # not done yet
    ("FINISHED", {"lr": "0.1", "hidden": "32"}, []),                      # diverged: never logged the metric
]


def log_runs(client, experiment_id, runs):
    ids = []
    for status, params, values in runs:
        run = client.create_run(experiment_id)
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric("val_accuracy", v, 0, step) for step, v in enumerate(values, start=1)])
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status=status)
        ids.append(run.info.run_id)
    return ids


@pytest.fixture(scope="module")
def experiments(h, server):
    mlflow.set_tracking_uri(server.uri)
    client = mlflow.MlflowClient(server.uri)
    main, other = h.unique("sweep"), h.unique("other-sweep")
    ids = log_runs(client, client.create_experiment(main), RUNS)
    log_runs(client, client.create_experiment(other), [("FINISHED", {"lr": "0.002", "hidden": "32"}, [0.99])])
    return main, dict(zip(ids, RUNS))


def brute_force_best(runs, keep=lambda params: True):
    """(best last value, the run ids that reach it) over finished runs that logged the metric."""
    last = {rid: values[-1] for rid, (status, params, values) in runs.items()
            if status == "FINISHED" and values and keep(params)}
    best = max(last.values())
    return best, {rid for rid, v in last.items() if v == best}


@pytest.mark.task("best-run")
def test_best_run_is_the_brute_force_max_over_finished_runs(impl, tracking, experiments):
    name, runs = experiments
    best, winners = brute_force_best(runs)
    run = impl.best_run(name)
    assert run.info.run_id in winners, \
        f"best_run returned a run with val_accuracy {run.data.metrics.get('val_accuracy')}, expected {best}"
    assert run.data.metrics["val_accuracy"] == best


@pytest.mark.task("best-run")
@pytest.mark.parametrize("where, keep", [
    ("params.hidden = '32'", lambda p: p["hidden"] == "32"),
    ("params.lr = '0.0003'", lambda p: p["lr"] == "0.0003"),
])
def test_best_run_honours_a_condition(impl, tracking, experiments, where, keep):
    name, runs = experiments
    best, winners = brute_force_best(runs, keep)
    run = impl.best_run(name, where=where)
    assert run.info.run_id in winners, f"best_run(where={where!r}) gave {run.data.metrics}, expected {best}"


@pytest.mark.task("best-run")
def test_best_run_with_no_match_is_a_one_line_lookup_error(h, impl, tracking, experiments):
    name, _ = experiments
    with pytest.raises(LookupError) as err:
        impl.best_run(name, where="params.hidden = '4096'")
    h.one_line(err)
    with pytest.raises(LookupError):
        impl.best_run(name, metric="val_auc")
