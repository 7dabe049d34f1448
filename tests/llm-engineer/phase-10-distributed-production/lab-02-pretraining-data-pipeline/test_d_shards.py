"""Token shards: dtype bounds, the flat stream against tiktoken run here, the index, crashes at every point
(simulated inside the writer and by killing a real process) and resuming to bytes identical to a clean run."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labkit.assets import tiktoken_encoding
from labkit.labs import ROOT

LAB = "llm-engineer/phase-10-distributed-production/lab-02-pretraining-data-pipeline"


@pytest.fixture(scope="module")
def enc():
    return tiktoken_encoding("gpt2")


@pytest.fixture(scope="module")
def texts(impl):
    return impl.shakespeare_docs(12, words_per_doc=60) + ["", "Short one."]


def reference_stream(enc, texts):
    return [t for text in texts for t in enc.encode_ordinary(text) + [enc.eot_token]]


def write(impl, enc, texts, out, shard_tokens, **kw):
    return impl.write_shards(texts, out, enc.encode_ordinary, enc.eot_token, enc.n_vocab, shard_tokens, **kw)


def files_of(out):
    return {p.name: p.read_bytes() for p in sorted(Path(out).iterdir())}


@pytest.mark.task("shards")
def test_dtype_is_the_smallest_that_holds_every_id(impl):
    assert impl.token_dtype(50257) == np.uint16, "GPT-2's 50,257 ids fit in uint16"
    assert impl.token_dtype(65536) == np.uint16, "ids 0..65535 (a vocabulary of exactly 65,536) fit in uint16"
    assert impl.token_dtype(65537) == np.uint32, "id 65536 needs uint32"
    assert impl.token_dtype(100277) == np.uint32, "cl100k_base needs uint32"
    with pytest.raises(ValueError):
        impl.token_dtype(0)


@pytest.mark.task("shards")
def test_stream_shards_and_index(impl, enc, texts, tmp_path):
    index = write(impl, enc, texts, tmp_path, shard_tokens=300)
    want = reference_stream(enc, texts)
    files = sorted(tmp_path.glob("train_*.bin"))
    sizes = [f.stat().st_size // 2 for f in files]
    assert sum(sizes) == len(want), f"expected {len(want)} tokens in all shards, found {sum(sizes)}"
    assert sizes[:-1] == [300] * (len(sizes) - 1) and 0 < sizes[-1] <= 300, \
        f"every shard but the last holds exactly 300 tokens and the last partial one is written: {sizes}"
    stream = np.concatenate([np.fromfile(f, dtype="<u2") for f in files])
    assert stream.tolist() == want, "the shards, read as little-endian uint16, differ from tiktoken's ids + EOT"
    assert int(np.sum(stream == enc.eot_token)) == len(texts), "one EOT per document (empty ones too)"
    on_disk = json.loads((tmp_path / "index.json").read_text())
    assert on_disk == index and on_disk["dtype"] == "uint16" and on_disk["complete"] is True
    assert on_disk["total_tokens"] == len(want)
    assert [s["file"] for s in on_disk["shards"]] == [f.name for f in files]
    assert [s["tokens"] for s in on_disk["shards"]] == sizes
    assert [s["offset"] for s in on_disk["shards"]] == list(np.cumsum([0] + sizes[:-1])), "offsets are cumulative"
    assert enc.decode(stream[:40].tolist()) == enc.decode(want[:40])


@pytest.mark.task("shards")
def test_uint32_shards_round_trip(impl, tmp_path):
    enc = tiktoken_encoding("cl100k_base")
    texts = ["Zürich – 東京 – naïve café ☕", "Tokens above 65,535 need four bytes each."]
    index = impl.write_shards(texts, tmp_path, enc.encode_ordinary, enc.eot_token, enc.n_vocab, 8)
    stream = np.concatenate([np.fromfile(tmp_path / s["file"], dtype="<u4") for s in index["shards"]])
    want = reference_stream(enc, texts)
    assert index["dtype"] == "uint32" and stream.tolist() == want
    assert max(want) > 65535, "test data check: some ids need more than 16 bits"


class Crash(Exception):
    pass


def crash_after_shard(k):
    def hook(i):
        if i == k:
            raise Crash(f"simulated crash after shard {i}")
    return hook


@pytest.mark.task("shards")
@pytest.mark.parametrize("crash_at", [0, 2, 5])
def test_resume_after_a_crash_between_shards(impl, enc, texts, tmp_path, crash_at):
    clean = write(impl, enc, texts, tmp_path / "clean", 97)
    with pytest.raises(Crash):
        write(impl, enc, texts, tmp_path / "run", 97, on_shard=crash_after_shard(crash_at))
    partial = json.loads((tmp_path / "run" / "index.json").read_text())
    assert len(partial["shards"]) == crash_at + 1 and not partial["complete"], \
        f"after a crash following shard {crash_at} the index lists {len(partial['shards'])} shards"
    seen = []
    resumed = write(impl, enc, texts, tmp_path / "run", 97, on_shard=seen.append)
    assert seen == list(range(crash_at + 1, len(clean["shards"]))), \
        f"resuming should write only shards {crash_at + 1}.. (no rewrite, none missing), wrote {seen}"
    assert resumed == clean
    assert files_of(tmp_path / "run") == files_of(tmp_path / "clean"), "resumed files differ from a clean run"


@pytest.mark.task("shards")
def test_a_crash_while_writing_a_shard_leaves_a_consistent_index(impl, enc, texts, tmp_path, monkeypatch):
    clean = write(impl, enc, texts, tmp_path / "clean", 97)
    real_write = impl.atomic_write_bytes

    def dying_write(path, data):
        if Path(path).name == "train_00003.bin":
            Path(str(path) + ".tmp").write_bytes(data[: len(data) // 2])   # half a temp file, then the crash
            raise Crash("killed while writing shard 3")
        real_write(path, data)

    monkeypatch.setattr(impl, "atomic_write_bytes", dying_write)
    with pytest.raises(Crash):
        write(impl, enc, texts, tmp_path / "run", 97)
    index = json.loads((tmp_path / "run" / "index.json").read_text())
    for shard in index["shards"]:
        path = tmp_path / "run" / shard["file"]
        assert path.exists() and path.stat().st_size == 2 * shard["tokens"], \
            f"the index lists {shard['file']} but the file is missing or short: write the shard before the index"
    monkeypatch.setattr(impl, "atomic_write_bytes", real_write)
    write(impl, enc, texts, tmp_path / "run", 97)
    assert files_of(tmp_path / "run") == files_of(tmp_path / "clean"), \
        "after resuming, the files (no leftover .tmp, no duplicate shard) should equal a clean run's"


@pytest.mark.task("shards")
def test_a_killed_process_resumes_to_identical_bytes(impl, enc, texts, tmp_path, request):
    docs = tmp_path / "docs.json"
    docs.write_text(json.dumps(texts))
    clean = write(impl, enc, texts, tmp_path / "clean", 60)
    assert len(clean["shards"]) >= 8, "test data check: enough shards to kill the run half-way"
    which = request.config.getoption("--impl")
    code = (f"from labkit.labs import load_impl; load_impl({LAB!r}, {which!r}).main(['shard', '--docs', "
            f"{str(docs)!r}, '--out', {str(tmp_path / 'run')!r}, '--shard-tokens', '60', '--throttle', '0.4'])")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, "")] + [lines.put("")],
                     daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        line = None
        while line is None or not line.startswith("shard 2"):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the shard command did not report shard 2 within 90 s")
            if line == "":
                proc.wait(timeout=30)
                pytest.fail(f"the shard command exited early: {proc.stderr.read()[-800:]}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    partial = json.loads((tmp_path / "run" / "index.json").read_text())
    assert not partial["complete"] and 3 <= len(partial["shards"]) < len(clean["shards"])
    seen = []
    write(impl, enc, texts, tmp_path / "run", 60, on_shard=seen.append)
    assert seen and seen[0] == len(partial["shards"]), \
        f"the resumed run should start at shard {len(partial['shards'])}, started at {seen[:1]}"
    assert files_of(tmp_path / "run") == files_of(tmp_path / "clean"), "killed + resumed differs from a clean run"


@pytest.mark.task("shards")
def test_other_settings_refuse_to_resume(impl, enc, texts, tmp_path):
    write(impl, enc, texts[:3], tmp_path, 97)
    with pytest.raises(ValueError, match="settings"):
        write(impl, enc, texts[:3], tmp_path, 50)
