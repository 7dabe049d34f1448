"""Bytes of optimizer state per tensor: the arithmetic against what torch.optim.Adam and bitsandbytes' Adam8bit
actually allocate (tensor nbytes), including the float32 fallback for small tensors and partial last blocks."""
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [7, 4095, 4096, 5000, 65536, 100_003]


def stepped(opt_cls, numel, **kw):
    p = torch.nn.Parameter(torch.randn(numel))
    opt = opt_cls([p], lr=1e-3, **kw)
    p.grad = torch.randn(numel)
    opt.step()
    return opt.state[p]


@pytest.mark.task("memory")
@pytest.mark.parametrize("numel", SIZES)
def test_fp32_state_bytes_match_torch_adam(impl, numel):
    state = stepped(torch.optim.Adam, numel)
    measured = state["exp_avg"].nbytes + state["exp_avg_sq"].nbytes
    ours = impl.expected_state_bytes(numel, "fp32")
    assert ours == measured, f"{numel} parameters: torch.optim.Adam holds {measured} bytes of moments, arithmetic says {ours}"


@pytest.mark.task("memory")
@pytest.mark.parametrize("numel", SIZES)
def test_8bit_state_bytes_match_bitsandbytes(impl, numel):
    state = stepped(bnb.optim.Adam8bit, numel)
    measured = sum(state[k].nbytes for k in ("state1", "state2", "absmax1", "absmax2") if k in state)
    ours = impl.expected_state_bytes(numel, "8bit")
    assert ours == measured, f"{numel} parameters: bitsandbytes' Adam8bit holds {measured} bytes (moments + absmax), arithmetic says {ours}"


@pytest.mark.task("memory")
def test_per_parameter_figures(impl):
    n = 1 << 20
    assert impl.expected_state_bytes(n, "fp32") / n == 8.0, "fp32 Adam: 8 bytes of state per parameter"
    per = impl.expected_state_bytes(n, "8bit") / n
    assert per == 2 + 8 / 256, f"8-bit Adam: 2 bytes + 2 absmax floats per 256 values = 2.03125 per parameter, got {per}"
    assert impl.expected_state_bytes(n, "8bit", blocksize=2048) / n == 2 + 8 / 2048, "the block size must be honoured"
    with pytest.raises(ValueError):
        impl.expected_state_bytes(n, "int4")
