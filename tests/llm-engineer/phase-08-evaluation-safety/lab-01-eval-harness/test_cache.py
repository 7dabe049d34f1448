"""The prediction cache: keys that tell models and requests apart, values that survive a new process-like
instance, writes that are atomic (a crash before or during the rename leaves the old entry and no debris), and
the harness that asks the cache before the model and writes its results file only when the run is complete."""
import json
import os
from pathlib import Path

import pytest


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.task("cache")
def test_keys_separate_models_kinds_and_requests(impl, tmp_path):
    a, b = impl.PredictionCache(tmp_path, "model-a"), impl.PredictionCache(tmp_path, "model-b")
    request = ["Question: 2+2?\nAnswer:", " 4"]
    keys = {a.key("loglikelihood", request), b.key("loglikelihood", request), a.key("generate", request),
            a.key("loglikelihood", ["Question: 2+2?\nAnswer:", " 5"]),
            a.key("loglikelihood", ["Question: 2+3?\nAnswer:", " 4"])}
    assert len(keys) == 5, "model id, kind, context and continuation must each change the key"
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys), "a hex SHA-256 digest"
    again = impl.PredictionCache(tmp_path / "elsewhere", "model-a")
    assert again.key("loglikelihood", request) == a.key("loglikelihood", request), "keys must be stable"


@pytest.mark.task("cache")
def test_values_persist_across_instances(impl, tmp_path):
    first = impl.PredictionCache(tmp_path, "m")
    assert first.get("generate", ["p", ["Q:"], 8]) is None
    first.put("generate", ["p", ["Q:"], 8], "a completion")
    first.put("loglikelihood", ["ctx", " A"], [-1.25, True])
    second = impl.PredictionCache(tmp_path, "m")
    assert second.get("generate", ["p", ["Q:"], 8]) == "a completion"
    assert second.get("loglikelihood", ["ctx", " A"]) == [-1.25, True]
    assert impl.PredictionCache(tmp_path, "other").get("generate", ["p", ["Q:"], 8]) is None


@pytest.mark.task("cache")
def test_write_renames_a_finished_temporary_file_into_place(impl, tmp_path, monkeypatch):
    target = tmp_path / "sub" / "entry.json"
    impl.atomic_write_json(target, {"v": 1})
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst), json.loads(Path(src).read_text()), json.loads(Path(dst).read_text())))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    impl.atomic_write_json(target, {"v": 2})
    assert len(seen) == 1, "write a temporary file, then os.replace it onto the target"
    src, dst, new, old = seen[0]
    assert dst == target and src.parent == target.parent, "the temporary file must be in the target's folder"
    assert new == {"v": 2} and old == {"v": 1}, "at the rename the new file is complete and the old one intact"
    assert json.loads(target.read_text()) == {"v": 2} and files_in(tmp_path) == ["sub/entry.json"]


@pytest.mark.task("cache")
def test_a_failed_rename_keeps_the_old_entry_and_leaves_no_debris(impl, tmp_path, monkeypatch):
    cache = impl.PredictionCache(tmp_path, "m")
    cache.put("generate", ["p"], "old")
    before = files_in(tmp_path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cache.put("generate", ["p"], "new")
    monkeypatch.undo()
    assert cache.get("generate", ["p"]) == "old"
    assert files_in(tmp_path) == before, "the temporary file must be removed when the write fails"


@pytest.mark.task("cache")
def test_a_crash_while_serialising_keeps_the_old_entry(impl, tmp_path):
    target = tmp_path / "results.json"
    impl.atomic_write_json(target, {"complete": True, "acc": 0.5})
    with pytest.raises(TypeError):
        impl.atomic_write_json(target, {"complete": True, "acc": 0.6, "oops": object()})  # fails mid-dump
    assert json.loads(target.read_text()) == {"complete": True, "acc": 0.5}
    assert files_in(tmp_path) == ["results.json"]


@pytest.mark.task("cache")
def test_the_harness_asks_the_cache_before_the_model(impl, tmp_path):
    calls = []

    def compute(requests):
        calls.append(list(requests))
        return [f"out:{r[0]}" for r in requests]

    cache = impl.PredictionCache(tmp_path, "m")
    assert impl.cached(cache, "generate", [["a"], ["b"]], compute) == ["out:a", "out:b"]
    assert impl.cached(impl.PredictionCache(tmp_path, "m"), "generate", [["b"], ["c"], ["a"]], compute) == \
        ["out:b", "out:c", "out:a"]
    assert calls == [[["a"], ["b"]], [["c"]]], "only the misses reach the model, in one call"
    impl.cached(impl.PredictionCache(tmp_path, "another-model"), "generate", [["a"]], compute)
    assert calls[-1] == [["a"]], "another model must not reuse these predictions"


def fake_result(task, n=4):
    items = [{"doc_id": i, "acc": i % 2, "acc_norm": 1, "loglikelihoods": [-1.0, -2.0]} for i in range(n)]
    return {"task": task, "n": n, "num_fewshot": 0, "items": items, "seconds": 0.0,
            "metrics": {"acc": 0.5, "acc_wilson95": (0.15, 0.85), "acc_bootstrap95": (0.0, 1.0),
                        "acc_norm": 1.0, "acc_norm_wilson95": (0.5, 1.0), "acc_norm_bootstrap95": (1.0, 1.0)}}


class FakeLM:
    model_id = "fake"

    class model:  # noqa: N801  (stands in for a torch module: only its device is read)
        @staticmethod
        def parameters():
            import torch

            yield torch.zeros(1)


@pytest.mark.task("cache")
def test_results_are_written_once_and_marked_complete(impl, tmp_path, monkeypatch):
    monkeypatch.setattr(impl, "load_model", lambda name: FakeLM())
    monkeypatch.setattr(impl, "evaluate_task", lambda lm, task, *a, **k: fake_result(task))
    monkeypatch.setattr(impl, "mcnemar", lambda a, b, exact=True: (0.0, 1.0))  # another task's TODO, not this one's
    out = tmp_path / "results.json"
    impl.main(["--tasks", "mmlu,hellaswag", "--no-cache", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["complete"] is True and [r["task"] for r in saved["results"]] == ["mmlu", "hellaswag"]


def test_an_interrupted_run_writes_no_results(impl, tmp_path, monkeypatch):
    # Not graded: this is the given main(); it must not write a results file when a task fails midway.
    def evaluate(lm, task, *args, **kwargs):
        if task == "mmlu":
            raise KeyboardInterrupt
        return {"task": task, "n": 1, "num_fewshot": 0, "seconds": 0.0,
                "metrics": {"exact_match": 1.0, "exact_match_wilson95": (0.2, 1.0), "exact_match_bootstrap95": (1, 1)},
                "items": [{"doc_id": 0, "target": "7", "extracted": "7", "exact_match": 1, "completion": "#### 7"}]}

    monkeypatch.setattr(impl, "load_model", lambda name: FakeLM())
    monkeypatch.setattr(impl, "evaluate_task", evaluate)
    out = tmp_path / "results.json"
    with pytest.raises(KeyboardInterrupt):
        impl.main(["--tasks", "gsm8k,mmlu", "--no-cache", "--output", str(out)])
    assert not out.exists(), "a run that did not finish must not leave a results file"
