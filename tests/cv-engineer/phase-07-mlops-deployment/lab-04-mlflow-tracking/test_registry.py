"""The model registry on the test's server: registering, aliases, loading by alias, and the promotion rule.

Models are logged here directly with mlflow.pytorch.log_model (independent of the lab's log_model): lab 01's
DigitCNN trained on 1,500 digits (about 88% held out) and the same network untrained (about 10%). Their runs
log a val_accuracy that contradicts reality (the untrained one claims 0.99), so a promotion that trusts logged
numbers instead of re-scoring both on the same held-out digits picks the wrong model."""
import mlflow
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

HELD_OUT = 300   # held-out digits used to score champion and challenger


@pytest.fixture(scope="module")
def logged(h, server):
    """run ids of the logged good and bad models (logged once per pytest process, by conftest)."""
    mlflow.set_tracking_uri(server.uri)
    mlflow.set_registry_uri(server.uri)
    return h.reference_runs()


def register(name, run_id) -> str:
    return str(mlflow.register_model(f"runs:/{run_id}/model", name).version)


def registry_state(client, name):
    """(versions, aliases) of a registered model, or None if it does not exist."""
    models = client.search_registered_models(f"name = '{name}'")
    if not models:
        return None
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    return versions, {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


# ---------------------------------------------------------------------------------------------- register

@pytest.mark.task("register")
def test_register_run_model_creates_numbered_versions_of_that_run(h, impl, tracking, logged):
    name = h.unique("digits")
    v1 = impl.register_run_model(logged["good"], name)
    v2 = impl.register_run_model(logged["bad"], name)
    assert (str(v1), str(v2)) == ("1", "2")
    assert tracking.get_model_version(name, "1").run_id == logged["good"]
    assert tracking.get_model_version(name, "2").run_id == logged["bad"]


@pytest.mark.task("register")
def test_register_refuses_a_missing_run_or_model_and_changes_nothing(h, impl, tracking, logged):
    name = h.unique("digits")
    register(name, logged["good"])
    before = registry_state(tracking, name)
    with pytest.raises(ValueError) as err:
        impl.register_run_model("0" * 32, name)
    h.one_line(err)
    with mlflow.start_run() as empty:
        mlflow.log_param("nothing", "logged")
    with pytest.raises(ValueError) as err:
        impl.register_run_model(empty.info.run_id, name)
    h.one_line(err)
    assert registry_state(tracking, name) == before
    fresh = h.unique("never")
    with pytest.raises(ValueError):
        impl.register_run_model(empty.info.run_id, fresh)
    assert registry_state(tracking, fresh) is None, "a refused registration still created the model"


@pytest.mark.task("register")
def test_set_alias_points_at_the_version_and_refuses_a_missing_one(h, impl, tracking, logged):
    name = h.unique("digits")
    register(name, logged["good"])
    register(name, logged["bad"])
    impl.set_alias(tracking, name, "champion", 1)
    impl.set_alias(tracking, name, "challenger", "2")
    assert tracking.get_model_version_by_alias(name, "champion").run_id == logged["good"]
    assert tracking.get_model_version_by_alias(name, "challenger").run_id == logged["bad"]
    before = registry_state(tracking, name)
    for missing in (3, "0", "999"):
        with pytest.raises(ValueError) as err:
            impl.set_alias(tracking, name, "champion", missing)
        h.one_line(err)
    assert registry_state(tracking, name) == before, "a refused alias changed the registry"


# ---------------------------------------------------------------------------------------------- load and predict

@pytest.mark.task("load-predict")
def test_loaded_champion_predicts_like_the_model_in_memory_and_follows_the_alias(
        h, impl, tracking, logged, cnn, good_model, bad_model, splits):
    name = h.unique("digits")
    register(name, logged["good"])
    register(name, logged["bad"])
    images = splits["test"][0][:200]
    tracking.set_registered_model_alias(name, "champion", "1")
    got = impl.predict_digits(impl.load_registered(name), images)
    np.testing.assert_array_equal(got, h.logits_of(cnn, good_model, images).argmax(1))
    tracking.set_registered_model_alias(name, "champion", "2")     # the alias moves: the next load follows it
    got = impl.predict_digits(impl.load_registered(name, "champion"), images)
    np.testing.assert_array_equal(got, h.logits_of(cnn, bad_model, images).argmax(1))


@pytest.mark.task("load-predict")
def test_predict_refuses_bad_input_in_one_line(h, impl, tracking, logged, splits):
    name = h.unique("digits")
    register(name, logged["good"])
    tracking.set_registered_model_alias(name, "champion", "1")
    model = impl.load_registered(name)
    images = splits["test"][0][:4]
    bad_inputs = [images[:, :27], images[0], images[:, None], images.astype(np.float32) / 255.0,
                  images.astype(np.int64), images[:0]]
    for bad in bad_inputs:
        with pytest.raises(ValueError) as err:
            impl.predict_digits(model, bad)
        h.one_line(err)
    assert impl.predict_digits(model, images).shape == (4,)      # still serving


@pytest.mark.task("load-predict")
def test_loading_a_missing_alias_is_a_lookup_error(h, impl, tracking, logged):
    name = h.unique("digits")
    register(name, logged["good"])
    with pytest.raises(LookupError) as err:
        impl.load_registered(name, "champion")
    h.one_line(err)


# ---------------------------------------------------------------------------------------------- promotion

@pytest.mark.task("promote")
@pytest.mark.parametrize("champion, challenger, margin, expected", [
    (None, 0.10, 0.50, True),     # nothing serves yet
    (0.50, 0.75, 0.25, True),     # exactly the margin (all values exact in binary)
    (0.50, 0.625, 0.25, False),   # better, not by enough
    (0.75, 0.75, 0.0, True),      # margin 0: a tie may replace
    (0.75, 0.5, 0.0, False),
    (0.875, 0.90, 0.0, True),
    (0.936, 0.946, 0.01, True),   # 946/1000 vs 936/1000: exactly the margin, although 0.936 + 0.01 > 0.946 in floats
    (0.936, 0.945, 0.01, False),
])
def test_should_promote_rule(impl, champion, challenger, margin, expected):
    assert impl.should_promote(champion, challenger, margin) is expected


def fresh_registry(h, client, logged, champion, challenger):
    """A new registered model with good = v1, bad = v2, another copy of good = v3, and the two aliases set."""
    name = h.unique("digits")
    for run in ("good", "bad", "good"):
        register(name, logged[run])
    versions = {"good": "1", "bad": "2", "good-copy": "3"}
    if champion:
        client.set_registered_model_alias(name, "champion", versions[champion])
    client.set_registered_model_alias(name, "challenger", versions[challenger])
    return name


@pytest.mark.task("promote")
def test_a_better_challenger_replaces_the_champion(h, impl, tracking, logged, splits):
    name = fresh_registry(h, tracking, logged, champion="bad", challenger="good")
    images, labels = splits["test"][0][:HELD_OUT], splits["test"][1][:HELD_OUT]
    decision = impl.promote_challenger(tracking, name, images, labels, margin=0.05)
    assert decision.promoted
    assert registry_state(tracking, name) == (["1", "2", "3"], {"champion": "1"}), \
        f"after promotion the registry is {registry_state(tracking, name)}: @champion should be v1, no @challenger"
    assert decision.challenger_accuracy > 0.7 > 0.3 > decision.champion_accuracy


@pytest.mark.task("promote")
def test_a_worse_challenger_changes_nothing_whatever_its_run_logged(h, impl, tracking, logged, splits):
    name = fresh_registry(h, tracking, logged, champion="good", challenger="bad")
    before = registry_state(tracking, name)
    images, labels = splits["test"][0][:HELD_OUT], splits["test"][1][:HELD_OUT]
    decision = impl.promote_challenger(tracking, name, images, labels, margin=0.01)
    assert not decision.promoted, "the untrained challenger (its run claims 0.99) was promoted"
    assert registry_state(tracking, name) == before


@pytest.mark.task("promote")
def test_an_equal_challenger_needs_the_margin(h, impl, tracking, logged, splits):
    images, labels = splits["test"][0][:HELD_OUT], splits["test"][1][:HELD_OUT]
    name = fresh_registry(h, tracking, logged, champion="good", challenger="good-copy")
    before = registry_state(tracking, name)
    assert not impl.promote_challenger(tracking, name, images, labels, margin=0.01).promoted
    assert registry_state(tracking, name) == before
    decision = impl.promote_challenger(tracking, name, images, labels, margin=0.0)
    assert decision.promoted and decision.champion_accuracy == decision.challenger_accuracy
    assert registry_state(tracking, name) == (["1", "2", "3"], {"champion": "3"})


@pytest.mark.task("promote")
def test_first_challenger_becomes_champion(h, impl, tracking, logged, splits):
    name = fresh_registry(h, tracking, logged, champion=None, challenger="bad")
    images, labels = splits["test"][0][:50], splits["test"][1][:50]
    decision = impl.promote_challenger(tracking, name, images, labels, margin=0.5)
    assert decision.promoted and decision.champion_accuracy is None
    assert registry_state(tracking, name) == (["1", "2", "3"], {"champion": "2"})


def test_promote_without_challenger_or_with_a_bad_margin_changes_nothing(h, impl, tracking, logged, splits):
    name = fresh_registry(h, tracking, logged, champion="good", challenger="bad")
    tracking.delete_registered_model_alias(name, "challenger")
    before = registry_state(tracking, name)
    images, labels = splits["test"][0][:20], splits["test"][1][:20]
    with pytest.raises(LookupError) as err:
        impl.promote_challenger(tracking, name, images, labels)
    h.one_line(err)
    for margin in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ValueError) as err:
            impl.promote_challenger(tracking, name, images, labels, margin=margin)
        h.one_line(err)
    assert registry_state(tracking, name) == before
