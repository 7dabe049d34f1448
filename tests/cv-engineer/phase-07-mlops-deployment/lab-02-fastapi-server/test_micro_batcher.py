"""The micro-batcher on its own, with fake models whose every output row names the input it came from, so a
mixed-up row, an oversized batch, a missed deadline or a lost request shows at once. Every wait is bounded."""
import asyncio
import gc
import threading

import numpy as np
import pytest


def tagged(i: int) -> np.ndarray:
    return np.full((1, 28, 28), float(i), np.float32)


class Recorder:
    """A fake model: output row = [tag of the input, batch size], records sizes and the calling thread."""

    def __init__(self):
        self.sizes, self.threads = [], []

    def __call__(self, x):
        assert x.shape[1:] == (1, 28, 28), f"the batch must be stacked to (B, 1, 28, 28), got {x.shape}"
        self.sizes.append(len(x))
        self.threads.append(threading.get_ident())
        return np.stack([[row[0, 0, 0], len(x)] for row in x])


def run(coro, timeout=10):
    """asyncio.run with a time bound. The gc.collect() flushes asyncio's "exception never retrieved" logging now,
    not later in the middle of pytest formatting a report (re-entrant ast.parse crashes CPython 3.11)."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    try:
        return asyncio.run(bounded())
    finally:
        gc.collect()


async def burst(impl, model, n, **kw):
    batcher = impl.MicroBatcher(model, **kw)
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(tagged(i)) for i in range(n)))
    finally:
        await batcher.stop()


@pytest.mark.task("micro-batcher")
def test_each_request_gets_its_own_row(impl):
    model = Recorder()
    out = run(burst(impl, model, 20, max_batch=8, max_wait_ms=50))
    tags = [int(row[0]) for row in out]
    assert tags == list(range(20)), f"request i must get row i back, got tags {tags}"
    assert sum(model.sizes) == 20, f"every request runs exactly once, batch sizes were {model.sizes}"
    assert max(model.sizes) > 1, f"concurrent requests must share a model call, batch sizes {model.sizes}"


@pytest.mark.task("micro-batcher")
def test_batches_never_exceed_max_batch(impl):
    model = Recorder()
    run(burst(impl, model, 21, max_batch=7, max_wait_ms=50))
    assert max(model.sizes) == 7 and sum(model.sizes) == 21, f"want full batches of 7, got {model.sizes}"


@pytest.mark.task("micro-batcher")
def test_deadline_flushes_a_partial_batch(impl):
    model = Recorder()
    out = run(burst(impl, model, 3, max_batch=64, max_wait_ms=20), timeout=5)
    assert [int(r[0]) for r in out] == [0, 1, 2], "3 requests with room for 64 must still be answered"


@pytest.mark.task("micro-batcher")
def test_max_batch_one_means_no_batching(impl):
    model = Recorder()
    run(burst(impl, model, 10, max_batch=1, max_wait_ms=20))
    assert model.sizes == [1] * 10, f"max_batch=1: every call holds one request, got {model.sizes}"


@pytest.mark.task("micro-batcher")
def test_model_runs_off_the_event_loop_thread(impl):
    model = Recorder()
    loop_thread = []

    async def go():
        loop_thread.append(threading.get_ident())
        return await burst(impl, model, 4, max_batch=4, max_wait_ms=10)
    run(go())
    assert loop_thread[0] not in model.threads, "session.run must run in a worker thread, not on the event loop"


@pytest.mark.task("micro-batcher")
def test_stop_finishes_queued_requests(impl):
    model = Recorder()

    async def go():
        batcher = impl.MicroBatcher(model, max_batch=4, max_wait_ms=5)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit(tagged(i))) for i in range(10)]
        await asyncio.sleep(0)                      # all ten are queued
        try:
            await batcher.stop()
        finally:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results
    out = run(go())
    assert [int(r[0]) for r in out] == list(range(10)), "stop() must finish everything already queued"


@pytest.mark.task("micro-batcher")
def test_a_failing_model_fails_its_requests_not_the_batcher(impl):
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.stack([[row[0, 0, 0], len(x)] for row in x])

    async def go():
        batcher = impl.MicroBatcher(flaky, max_batch=4, max_wait_ms=5)
        await batcher.start()
        first = await asyncio.gather(*(batcher.submit(tagged(i)) for i in range(2)), return_exceptions=True)
        second = await batcher.submit(tagged(7))
        await batcher.stop()
        return first, second
    first, second = run(go())
    assert all(isinstance(r, RuntimeError) for r in first), f"a failed call must fail its requests, got {first}"
    assert int(second[0]) == 7, "the batcher must keep serving after a failed call"
