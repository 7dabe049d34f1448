"""TorchScript round trip (the file is loaded back here with torch.jit.load and compared with eval-mode PyTorch)
and the latency helpers, timed with a fake clock whose durations are known, against numpy's percentiles."""
import copy

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.task("torchscript")
def test_trace_round_trip_from_a_training_mode_model(impl, h, model, tmp_path, test_x):
    training = copy.deepcopy(model).train()  # straight out of a training loop
    loaded = impl.export_torchscript(training, tmp_path / "m.pt", torch.from_numpy(test_x[:2]), "trace")
    reread = torch.jit.load(str(tmp_path / "m.pt"))
    want = h.eager_logits(model, test_x[:7])  # another batch size than the traced one
    for name, module in (("returned", loaded), ("file", reread)):
        with torch.no_grad():
            got = module(torch.from_numpy(test_x[:7])).numpy()
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), \
            f"{name} TorchScript module differs from eval-mode PyTorch by {np.abs(got - want).max():.3g}"


@pytest.mark.task("torchscript")
def test_script_round_trip(impl, h, model, tmp_path, test_x):
    impl.export_torchscript(copy.deepcopy(model), tmp_path / "s.pt", torch.from_numpy(test_x[:2]), "script")
    reread = torch.jit.load(str(tmp_path / "s.pt"))
    with torch.no_grad():
        got = reread(torch.from_numpy(test_x[:5])).numpy()
    want = h.eager_logits(model, test_x[:5])
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5), f"scripted module differs by {np.abs(got - want).max():.3g}"


class FakeClock:
    """clock() returns the fake time; each fn() call advances it by the next duration (seconds)."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 100.0, list(durations), 0

    def clock(self):
        return self.now

    def fn(self):
        self.now += self.durations[self.calls]
        self.calls += 1


@pytest.mark.task("latency")
def test_benchmark_percentiles_exclude_warmup(impl):
    timed = [0.010, 0.012, 0.011, 0.030, 0.009, 0.010, 0.013, 0.050, 0.011, 0.010]  # seconds
    fake = FakeClock([5.0, 5.0, 5.0] + timed)  # three slow first calls
    out = impl.benchmark(fake.fn, warmup=3, iters=10, clock=fake.clock)
    assert fake.calls == 13, f"expected 3 warm-up + 10 timed calls, fn ran {fake.calls} times"
    ms = np.array(timed) * 1e3
    want = {"p50_ms": np.percentile(ms, 50), "p95_ms": np.percentile(ms, 95), "mean_ms": ms.mean()}
    for key, value in want.items():
        assert out[key] == pytest.approx(value, rel=1e-6), f"{key}: expected {value:.4f} ms, got {out[key]}"


@pytest.mark.task("latency")
def test_throughput_from_latency(impl):
    cases = [((10, 1), 100.0), ((3, 1), 1000 / 3), ((2, 1), 500.0), ((5, 32), 6400.0), ((250, 8), 32.0)]
    for (latency_ms, batch), want in cases:
        got = impl.throughput_fps(latency_ms, batch)
        assert got == pytest.approx(want), f"throughput_fps({latency_ms} ms, batch {batch}): expected {want:.2f}, got {got}"
