"""Lab 03's trained cross-encoder cache: the key (settings and data, not key order) and the atomic on-disk cache
(a save that fails leaves nothing behind; an unfinished folder is never loaded)."""
import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[4] / "llm-engineer/phase-07-retrieval-rag-agents/lab-03-hybrid-retrieval-reranking/data"
CONFIG = {"epochs": 4, "negatives_per_query": 6, "seed": 0, "lr": 5e-5}


# --------------------------------------------------------------------------- the key

@pytest.mark.task("reranker-cache")
def test_key_ignores_key_order_but_not_settings(impl):
    key = impl.reranker_key(CONFIG, DATA)
    assert isinstance(key, str) and len(key) == 16 and all(c in "0123456789abcdef" for c in key), \
        f"expected 16 hex digits, got {key!r}"
    shuffled = dict(reversed(list(CONFIG.items())))
    assert impl.reranker_key(shuffled, DATA) == key, "the same settings in another key order must give the same key"
    for name, value in [("seed", 1), ("epochs", 5), ("lr", 1e-4)]:
        assert impl.reranker_key({**CONFIG, name: value}, DATA) != key, f"changing {name} must change the key"


@pytest.mark.task("reranker-cache")
@pytest.mark.parametrize("changed", ["corpus.jsonl", "train_queries.jsonl"])
def test_key_changes_with_the_training_data(impl, tmp_path, changed):
    for name in ("corpus.jsonl", "train_queries.jsonl"):
        shutil.copy(DATA / name, tmp_path / name)
    assert impl.reranker_key(CONFIG, tmp_path) == impl.reranker_key(CONFIG, DATA), "same files, same key"
    with open(tmp_path / changed, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "extra", "title": "t", "text": "x"}) + "\n")
    assert impl.reranker_key(CONFIG, tmp_path) != impl.reranker_key(CONFIG, DATA), \
        f"editing {changed} must change the key, or a stale model is loaded after the data changes"


# --------------------------------------------------------------------------- the atomic cache

class Recorder:
    """A stand-in model store: build returns a dict, save writes it as two files (so a crash can fall between
    them), load reads it back. Counts the builds."""

    def __init__(self, fail_after_first_file=False):
        self.builds, self.fail = 0, fail_after_first_file

    def build(self):
        self.builds += 1
        return {"weights": [1.0, 2.0], "build": self.builds}

    def save(self, model, path):
        path = Path(path)
        path.mkdir(parents=True)
        (path / "weights.json").write_text(json.dumps(model["weights"]))
        if self.fail:
            raise OSError("disk full")
        (path / "meta.json").write_text(json.dumps({"build": model["build"]}))

    @staticmethod
    def load(path):
        path = Path(path)
        return {"weights": json.loads((path / "weights.json").read_text()),
                "build": json.loads((path / "meta.json").read_text())["build"], "loaded": True}


@pytest.mark.task("reranker-cache")
def test_second_call_loads_instead_of_training(impl, tmp_path):
    store, folder = Recorder(), tmp_path / "cache" / "model"
    first = impl.cached_model(folder, store.build, store.save, store.load)
    assert first == {"weights": [1.0, 2.0], "build": 1}, f"the first call returns the built model, got {first}"
    assert (folder / "meta.json").is_file() and (folder / impl.COMPLETE).is_file(), \
        f"expected the saved files and the {impl.COMPLETE} marker in {folder}, found {sorted(p.name for p in folder.iterdir())}"
    second = impl.cached_model(folder, store.build, store.save, store.load)
    assert store.builds == 1, f"the second call must load the cached model, but build ran {store.builds} times"
    assert second.get("loaded") and second["build"] == 1, f"expected the loaded copy of build 1, got {second}"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"], \
        f"only the model folder should remain, found {sorted(p.name for p in folder.parent.iterdir())}"


@pytest.mark.task("reranker-cache")
def test_a_failed_save_leaves_nothing_behind(impl, tmp_path):
    folder = tmp_path / "model"
    with pytest.raises(OSError, match="disk full"):
        impl.cached_model(folder, Recorder(True).build, Recorder(True).save, Recorder.load)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [], f"a save that failed must leave neither the model folder nor a temporary one, found {left}"
    store = Recorder()
    again = impl.cached_model(folder, store.build, store.save, store.load)
    assert store.builds == 1 and again["build"] == 1, "after a failed save the next call must build again"


@pytest.mark.task("reranker-cache")
def test_an_unfinished_folder_is_rebuilt_not_loaded(impl, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.json").write_text("[0.0]")  # what a writer that crashed half-way leaves: no marker
    store = Recorder()
    got = impl.cached_model(folder, store.build, store.save, store.load)
    assert store.builds == 1 and got == {"weights": [1.0, 2.0], "build": 1}, \
        f"a folder without the {impl.COMPLETE} marker is not a finished model; expected a fresh build, got {got}"
    assert Recorder.load(folder)["weights"] == [1.0, 2.0], "the unfinished folder must be replaced by the new model"
