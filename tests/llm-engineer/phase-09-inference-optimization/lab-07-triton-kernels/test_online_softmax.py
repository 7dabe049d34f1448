"""online-softmax: the streamed (max, normaliser) statistics in plain PyTorch. References: torch.max, torch's
logsumexp-style sum computed in one piece, torch.softmax, and a hand-worked row whose max arrives last."""
import math

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.task("online-softmax")
def test_max_arriving_in_the_last_tile_rescales_the_sum(impl):
    # tiles [0, 1], [2, 3], [10]: the max jumps twice, so the earlier terms must be rescaled twice.
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0]], dtype=torch.float64)
    m, l = impl.online_softmax_stats(x, block=2)
    expected = sum(math.exp(v - 10.0) for v in (0.0, 1.0, 2.0, 3.0, 10.0))  # by hand: 1.0012...
    assert m.tolist() == [10.0], f"running max should end at 10, got {m.tolist()}"
    assert abs(l.item() - expected) < 1e-12, f"normaliser should be sum exp(x - 10) = {expected:.12f}, got {l.item():.12f}"


@pytest.mark.task("online-softmax")
@pytest.mark.parametrize("block", [1, 3, 16, 37, 64])
def test_stats_equal_the_whole_row_computation(impl, block):
    x = torch.randn(5, 37, dtype=torch.float64) * 3
    m, l = impl.online_softmax_stats(x, block=block)
    assert m.shape == (5,) and l.shape == (5,), f"expected (rows,) statistics, got {tuple(m.shape)}, {tuple(l.shape)}"
    assert torch.equal(m, x.max(dim=1).values), "m should be exactly each row's max (a max never rounds)"
    reference = torch.exp(x - x.max(dim=1, keepdim=True).values).sum(dim=1)
    # float64: streamed and one-piece sums differ only by rounding, ~1e-15 relative
    assert torch.allclose(l, reference, rtol=1e-12, atol=0), f"l differs by {(l - reference).abs().max():.2e}"


@pytest.mark.task("online-softmax")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_matches_torch(impl, seed):
    torch.manual_seed(seed)
    x = torch.randn(4, 29) * 4
    got = impl.online_softmax(x, block=8)
    # float32: each output is one exp and one divide off torch's, a few ulps (1e-7 relative); 1e-6 leaves room
    torch.testing.assert_close(got, torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.task("online-softmax")
def test_rows_on_very_different_scales_stay_independent(impl):
    # one row near -1000, one near +1000: a max shared across rows underflows one row to 0/0 and overflows the other
    x = torch.stack([torch.linspace(-1005, -1000, 11), torch.linspace(1000, 1003, 11)])
    got = impl.online_softmax(x, block=4)
    assert torch.isfinite(got).all(), "softmax of large-magnitude rows produced inf/nan: subtract each row's max"
    torch.testing.assert_close(got, torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)
    m, _ = impl.online_softmax_stats(x, block=4)
    torch.testing.assert_close(m, torch.tensor([-1000.0, 1003.0]))
