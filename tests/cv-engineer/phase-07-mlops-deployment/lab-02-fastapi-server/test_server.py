"""The HTTP server: real uvicorn on 127.0.0.1 (a free port), httpx clients, always stopped. References: ONNX
Runtime called directly on each image alone (inputs normalised by hand here), Pillow-encoded images, and
Prometheus' own text parser for /metrics. Every client wait is bounded by a timeout."""
import asyncio
import base64
import gc
import io
import sys

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from labkit.labs import reuse

MEAN, STD = 0.1307, 0.3081
TIMEOUT = httpx.Timeout(60.0)


def encode(gray: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format=fmt)
    return buf.getvalue()


class OneLineErrors:
    """ASGI wrapper: a handler's exception becomes a 500 naming it and one stderr line (no traceback from
    uvicorn's thread). Lifespan passes straight through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            sys.stderr.write(f"test server: {type(exc).__name__}: {exc}\n")
            if not started:
                await send({"type": "http.response.start", "status": 500, "headers": []})
                await send({"type": "http.response.body", "body": f"{type(exc).__name__}: {exc}".encode()})


@pytest.fixture(scope="module")
def onnx_file(impl, tmp_path_factory):
    return impl.model_file(tmp_path_factory.mktemp("model") / "digit_cnn.onnx")


@pytest.fixture(scope="module")
def reference(onnx_file):
    """ORT on its own, batch of one at a time: the answer every served request must match."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

    def logits(gray: np.ndarray) -> np.ndarray:
        x = ((gray.astype(np.float32) / 255 - MEAN) / STD)[None, None]
        return session.run(None, {session.get_inputs()[0].name: x})[0][0]
    return logits


@pytest.fixture(scope="module")
def digits():
    images, labels = reuse("lab-01-onnx-export").digit_splits()["test"]
    return images[:64], labels[:64]


def preflight(impl, session):
    """Each piece once, in this process: on a scaffold its TODO raises here (in the server it would be a 500)."""
    data = encode(np.zeros((28, 28), np.uint8))
    impl.preprocess(impl.validate_image(data, "image/png"))

    async def once():
        batcher = impl.MicroBatcher(lambda x: impl.run_session(session, x), max_batch=2, max_wait_ms=1)
        await batcher.start()
        await asyncio.wait_for(batcher.submit(np.zeros((1, 28, 28), np.float32)), 10)
        await batcher.stop()
    try:
        asyncio.run(once())
    finally:
        gc.collect()          # flush asyncio's "never retrieved" logging before pytest formats a report


def start(impl, onnx_file, **options):
    session = impl.load_session(onnx_file)
    preflight(impl, session)
    app = impl.build_app(session, **options)
    return app, impl.RunningServer(OneLineErrors(app), host="127.0.0.1", port=0)


@pytest.fixture(scope="module")
def server(impl, onnx_file):
    app, running = start(impl, onnx_file, max_batch=16, max_wait_ms=20, max_bytes=64 * 1024)
    with running:
        yield running


def metrics(url) -> dict:
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def upload(client, url, data, kind="image/png"):
    return client.post(f"{url}/predict", files={"file": ("digit", data, kind)})


def b64(client, url, data):
    return client.post(f"{url}/predict/base64", json={"image_b64": base64.b64encode(data).decode()})


def check_error(response, status):
    assert response.status_code == status, f"want {status}, got {response.status_code}: {response.text[:200]}"
    message = response.json()["error"]["message"]
    assert "\n" not in message and len(message) > 10, f"want a one-line reason, got {message!r}"
    return message


@pytest.mark.task("endpoints")
def test_upload_and_base64_match_direct_ort(server, digits, reference):
    images, _ = digits
    with httpx.Client(timeout=TIMEOUT) as client:
        for i, send in [(0, upload), (1, b64), (2, upload), (3, b64)]:
            r = send(client, server.url, encode(images[i]))
            assert r.status_code == 200, f"want 200, got {r.status_code}: {r.text[:200]}"
            logits = reference(images[i])
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            body = r.json()
            assert body["label"] == int(np.argmax(logits)), f"image {i}: label {body['label']}, ORT says {np.argmax(logits)}"
            np.testing.assert_allclose(body["probabilities"], probs, atol=1e-4,
                                       err_msg=f"image {i}: probabilities must be the softmax of the logits")


@pytest.mark.task("endpoints")
def test_bad_input_gets_4xx_and_the_server_keeps_serving(server, digits):
    png = encode(digits[0][0])
    with httpx.Client(timeout=TIMEOUT) as client:
        check_error(upload(client, server.url, png, "text/plain"), 415)
        check_error(upload(client, server.url, png[:50]), 400)
        check_error(upload(client, server.url, encode(np.zeros((4, 4), np.uint8))), 422)
        big = encode(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8))
        assert len(big) > 64 * 1024
        check_error(upload(client, server.url, big), 413)
        check_error(b64(client, server.url, big), 413)
        check_error(client.post(f"{server.url}/predict/base64", content=b"{not json"), 400)
        message = check_error(client.post(f"{server.url}/predict/base64", json={"image_b64": "@@@@aGVsbG8="}), 400)
        assert "base64" in message, f"the reason should say the base64 is invalid, got {message!r}"
        check_error(client.post(f"{server.url}/predict/base64",
                                json={"image_b64": base64.b64encode(b"GIF89a....").decode()}), 415)
        assert upload(client, server.url, png).status_code == 200, "a good request after bad ones must succeed"


@pytest.mark.task("endpoints")
def test_health_ready_and_metrics(server, digits):
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(f"{server.url}/health").status_code == 200
        assert client.get(f"{server.url}/ready").status_code == 200
        before = metrics(server.url)
        upload(client, server.url, encode(digits[0][0]), "text/plain")
        upload(client, server.url, encode(digits[0][0]))
    after = metrics(server.url)

    def grew(name, labels=()):
        return after.get((name, labels), 0) - before.get((name, labels), 0)
    assert grew("inference_requests_total", (("status", "415"),)) == 1, "count a 415 under status=415"
    assert grew("inference_requests_total", (("status", "200"),)) == 1, "count a success under status=200"
    assert grew("inference_latency_seconds_count") == 1, "observe the latency of each successful prediction"


async def load(url, images):
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        async def one(i):
            data = encode(images[i])
            return await (upload(client, url, data) if i % 2 else b64(client, url, data))
        return await asyncio.gather(*(one(i) for i in range(len(images))))


@pytest.mark.task("endpoints")
def test_64_concurrent_clients_get_their_own_answers(server, digits, reference):
    images, _ = digits
    before = metrics(server.url)
    responses = asyncio.run(load(server.url, images))
    after = metrics(server.url)
    assert [r.status_code for r in responses] == [200] * 64, f"statuses {[r.status_code for r in responses]}"
    got = [r.json()["label"] for r in responses]
    want = [int(np.argmax(reference(img))) for img in images]
    wrong = [i for i in range(64) if got[i] != want[i]]
    assert not wrong, f"responses mixed up or wrong for requests {wrong[:8]}: got {[got[i] for i in wrong[:8]]}, want {[want[i] for i in wrong[:8]]}"
    for r, img in zip(responses, images):
        logits = reference(img)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(r.json()["probabilities"], probs, atol=1e-4)
    calls = after[("inference_batch_size_count", ())] - before.get(("inference_batch_size_count", ()), 0)
    rows = after[("inference_batch_size_sum", ())] - before.get(("inference_batch_size_sum", ()), 0)
    assert rows == 64, f"the batch-size histogram must count 64 requests, counted {rows}"
    assert calls < 64, f"64 concurrent requests took {calls:.0f} model calls: no batch larger than 1 formed"


@pytest.mark.task("endpoints")
def test_graceful_shutdown_finishes_in_flight_requests(impl, onnx_file, digits):
    images, _ = digits
    app, running = start(impl, onnx_file, max_batch=2, max_wait_ms=5, delay_s=0.3)   # 6 slow model calls
    value = app.state.metrics.registry.get_sample_value

    async def go():
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            tasks = [asyncio.create_task(upload(client, running.url, encode(images[i]))) for i in range(12)]
            in_flight = 0
            for _ in range(1000):                      # wait until the server has received all 12
                await asyncio.sleep(0.01)
                in_flight = value("inference_in_flight")
                if in_flight + (value("inference_requests_total", {"status": "200"}) or 0) >= 12:
                    break
            running.server.should_exit = True          # what SIGTERM does
            return in_flight, await asyncio.gather(*tasks)
    with running:
        in_flight, responses = asyncio.run(asyncio.wait_for(go(), 60))
        running.thread.join(timeout=30)
    assert in_flight > 0, "the test needs requests in flight when shutdown starts"
    assert [r.status_code for r in responses] == [200] * 12, \
        f"in-flight requests must finish with 200 during shutdown, got {[r.status_code for r in responses]}"
    assert not running.thread.is_alive(), "the server must exit after draining"
    assert not app.state.batcher.running, "the batcher must be stopped after shutdown"
