"""The client against a scripted OpenAI-style streaming server (real uvicorn on 127.0.0.1), and server processes
started, health-checked and stopped as whole process groups."""
import asyncio
import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse


class Script:
    """What the fake server does for a prompt of `key=value` words, e.g. `head=0.2 pieces=a,b usage=4`:
    head  seconds before the response starts       role  1: an empty-text role chunk first
    first seconds before the first text chunk      gap   seconds between text chunks
    pieces comma-separated texts, one per chunk   usage completion_tokens in a final usage chunk
    status HTTP status to answer                   boom  1: an error object in the middle of the stream"""

    def __init__(self, prompt: str):
        fields = dict(word.split("=", 1) for word in prompt.split() if "=" in word)
        self.head, self.first = float(fields.get("head", 0)), float(fields.get("first", 0))
        self.gap, self.role = float(fields.get("gap", 0.01)), fields.get("role") == "1"
        self.pieces = fields.get("pieces", "a,b,c").split(",")
        self.usage = int(fields["usage"]) if "usage" in fields else None
        self.status, self.boom = int(fields.get("status", 200)), fields.get("boom") == "1"


def fake_openai_app(log: dict):
    app = FastAPI()
    lock = threading.Lock()
    log.update(in_flight=0, max_in_flight=0, received=[])

    def enter(prompt):
        with lock:
            log["in_flight"] += 1
            log["max_in_flight"] = max(log["max_in_flight"], log["in_flight"])
            log["received"].append((time.perf_counter(), prompt))

    def leave():
        with lock:
            log["in_flight"] -= 1

    @app.post("/v1/completions")
    async def completions(body: dict):
        script = Script(body["prompt"])
        enter(body["prompt"])
        await asyncio.sleep(script.head)
        if script.status != 200:
            leave()
            return JSONResponse({"error": {"message": "server is busy", "code": script.status}}, script.status)

        async def events():
            try:
                yield ": keep-alive\n\n"
                if script.role:
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'text': ''}]})}\n\n"
                await asyncio.sleep(script.first)
                for i, piece in enumerate(script.pieces):
                    if i:
                        await asyncio.sleep(script.gap)
                    if script.boom and i == 1:
                        yield f"data: {json.dumps({'error': {'message': 'engine died'}})}\n\n"
                        return
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'text': piece}], 'usage': None})}\n\n"
                if script.usage is not None:
                    usage = {"prompt_tokens": 3, "completion_tokens": script.usage}
                    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                leave()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def fake(impl):
    log = {}
    with impl.ThreadServer(fake_openai_app(log)) as server:
        yield server.url, log


def one(impl, url, prompt, max_tokens=8):
    async def go():
        async with httpx.AsyncClient(timeout=10) as client:
            return await impl.stream_completion(client, url, "m", impl.Request(prompt, max_tokens))
    return asyncio.run(go())


# ---------------------------------------------------------------- one streamed request

@pytest.mark.task("stream-request")
def test_stream_reassembles_text_and_times_chunks(impl, fake):
    url, _ = fake
    rec = one(impl, url, "pieces=Hello,_wor,ld! gap=0.05")
    assert rec.error is None and rec.text == "Hello_world!", f"expected 'Hello_world!' and no error, got {rec}"
    assert len(rec.chunk_times) == 3 and rec.output_tokens == 3, "3 text chunks and no usage block: 3 tokens"
    assert rec.sent <= rec.chunk_times[0] <= rec.chunk_times[1] <= rec.chunk_times[2] <= rec.done
    # the server sent the last chunk 0.1 s after the first (the client can only see it later, never earlier)
    assert rec.chunk_times[2] - rec.sent >= 0.1, f"the last chunk was timed {rec.chunk_times[2] - rec.sent:.3f} s in"


@pytest.mark.task("stream-request")
def test_ttft_counts_from_before_the_request_and_skips_empty_chunks(impl, fake):
    url, _ = fake
    rec = one(impl, url, "head=0.3 role=1 first=0.2 pieces=x")
    ttft = rec.chunk_times[0] - rec.sent
    assert rec.error is None and rec.text == "x"
    assert ttft >= 0.45, (f"TTFT should include the 0.3 s before the response started and the 0.2 s after the "
                          f"empty role chunk; got {ttft:.3f} s")


@pytest.mark.task("stream-request")
def test_usage_block_gives_the_token_count(impl, fake):
    url, _ = fake
    rec = one(impl, url, "pieces=ab,cd,ef usage=6")
    assert rec.output_tokens == 6 and rec.prompt_tokens == 3 and rec.text == "abcdef", \
        f"3 chunks of 2 tokens each: the usage block says 6 completion tokens; got {rec.output_tokens}"


@pytest.mark.task("stream-request")
def test_failures_become_records_not_exceptions(impl, fake):
    url, _ = fake
    busy = one(impl, url, "status=429")
    assert busy.error and "429" in busy.error and "busy" in busy.error, f"HTTP 429 and its message, got {busy.error}"
    broken = one(impl, url, "pieces=a,b,c boom=1")
    assert broken.error and "engine died" in broken.error, f"a mid-stream error object, got {broken.error}"
    refused = one(impl, "http://127.0.0.1:9", "pieces=a")
    assert refused.error and not refused.chunk_times, f"connection refused should be a failed record, got {refused}"


# ---------------------------------------------------------------- a benchmark run

def run(impl, url, prompts, **kwargs):
    workload = [impl.Request(p, 4) for p in prompts]
    return asyncio.run(impl.run_benchmark(url, "m", workload, **kwargs))


@pytest.mark.task("run-benchmark")
def test_concurrency_limit_is_reached_and_never_exceeded(impl, fake):
    url, log = fake
    log["max_in_flight"] = 0
    records, duration = run(impl, url, ["head=0.15 pieces=a"] * 9, max_concurrency=3)
    assert all(r.error is None for r in records) and len(records) == 9
    assert log["max_in_flight"] == 3, f"9 slow requests, at most 3 in flight: saw {log['max_in_flight']} at once"
    assert duration >= 0.45, f"3 waves of 0.15 s cannot finish in {duration:.2f} s"


@pytest.mark.task("run-benchmark")
def test_records_come_back_in_workload_order(impl, fake):
    url, _ = fake
    prompts = [f"first={0.3 - 0.1 * i:.1f} pieces=r{i}" for i in range(4)]       # later ones finish first
    records, _ = run(impl, url, prompts)
    assert [r.text for r in records] == ["r0", "r1", "r2", "r3"], \
        f"records must follow the workload, not completion order: {[r.text for r in records]}"


@pytest.mark.task("run-benchmark")
def test_requests_wait_for_their_poisson_arrival_times(impl, fake):
    url, _ = fake
    rate, n = 5.0, 6
    offsets = impl.arrival_times(n, rate, seed=5)
    before = time.perf_counter()                 # the run starts after this, so each send is >= before + offset
    records, duration = run(impl, url, [f"pieces=t{i}" for i in range(n)], rate=rate, seed=5)
    for i, (rec, offset) in enumerate(zip(records, offsets)):
        assert rec.sent - before >= offset - 0.005, \
            f"request {i} was sent {rec.sent - before:.3f} s in, before its arrival time {offset:.3f} s"
    assert duration >= offsets[-1] and all(r.error is None for r in records)


@pytest.mark.task("run-benchmark")
def test_a_failed_request_does_not_stop_the_run(impl, fake):
    url, _ = fake
    records, duration = run(impl, url, ["pieces=a", "status=503", "pieces=b"], max_concurrency=1)
    assert [r.error is None for r in records] == [True, False, True] and "503" in records[1].error
    summary = impl.summarize(records, duration)
    assert (summary.completed, summary.failed) == (2, 1)
    with pytest.raises(ValueError):
        run(impl, url, ["pieces=a"], max_concurrency=0)


# ---------------------------------------------------------------- server processes

FAKE_SERVER = textwrap.dedent('''
    import http.server, signal, subprocess, sys, time
    port, mode, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])   # like vLLM's engine core
    open(pidfile, "w").write(f"{child.pid}")
    if mode == "crash":
        print("boom: no weights at /nowhere", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503 if mode == "sick" else 200)
            self.end_headers()
        def log_message(self, *args):
            pass
    time.sleep(0.5)
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
''')


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def fake_server(impl, tmp_path, mode, **kwargs):
    script = tmp_path / "server.py"
    script.write_text(FAKE_SERVER)
    port = impl.free_port()
    pidfile = tmp_path / "child.pid"
    server = impl.ServerProcess([sys.executable, str(script), str(port), mode, str(pidfile)], port,
                                tmp_path / "server.log", **kwargs)
    return server, pidfile


def kill_leftovers(server, pidfile):
    """Test hygiene only: whatever the code under test left running is killed here."""
    for pid in [server.process.pid if server.process else None,
                int(pidfile.read_text()) if pidfile.exists() and pidfile.read_text() else None]:
        if pid and alive(pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)


@pytest.mark.task("server-process")
def test_start_waits_for_health_and_stop_ends_the_whole_group(impl, tmp_path):
    server, pidfile = fake_server(impl, tmp_path, "ok")
    try:
        with server:
            assert httpx.get(server.url + "/health").status_code == 200
            leader, child = server.process.pid, int(pidfile.read_text())
            assert alive(child) and server.startup_seconds >= 0.4, "healthy only after the 0.5 s start-up"
        assert gone(leader), "the server process is still running after stop()"
        assert gone(child), "its child (an engine process) survived: kill the process group, not just the leader"
        server.stop()                                                   # a second stop is harmless
    finally:
        kill_leftovers(server, pidfile)


@pytest.mark.task("server-process")
def test_a_server_that_ignores_sigterm_is_killed_after_the_grace(impl, tmp_path):
    server, pidfile = fake_server(impl, tmp_path, "stubborn", grace=1.0)
    try:
        server.start()
        leader, child = server.process.pid, int(pidfile.read_text())
        server.stop()
        assert gone(leader) and gone(child), "SIGTERM was ignored: after the grace period SIGKILL the group"
    finally:
        kill_leftovers(server, pidfile)


@pytest.mark.task("server-process")
def test_early_exit_is_reported_with_the_log_and_nothing_is_left(impl, tmp_path):
    server, pidfile = fake_server(impl, tmp_path, "crash", startup_timeout=20)
    try:
        started = time.monotonic()
        with pytest.raises(impl.ServerFailed) as failure:
            server.start()
        message = str(failure.value)
        assert "code 3" in message and "boom: no weights" in message, f"name the exit code and show the log: {message}"
        assert time.monotonic() - started < 15, "a dead server should be noticed at once, not at the deadline"
        assert gone(int(pidfile.read_text())), "the crashed server's child is still running"
    finally:
        kill_leftovers(server, pidfile)


@pytest.mark.task("server-process")
def test_never_healthy_times_out_and_is_stopped(impl, tmp_path):
    server, pidfile = fake_server(impl, tmp_path, "sick", startup_timeout=2.0)
    try:
        with pytest.raises(impl.ServerFailed, match="not healthy"):
            server.start()
        assert gone(server.process.pid) and gone(int(pidfile.read_text())), "a server that timed out kept running"
    finally:
        kill_leftovers(server, pidfile)
