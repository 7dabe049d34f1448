"""RNG state and the resumable sampler. References: the generators themselves (draws after a restore must repeat
the draws after the capture), torch.load(weights_only=True) for what a checkpoint may hold, and the
permutation property of an epoch."""
import io
import random

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def draws():
    return (random.random(), random.randrange(10**9), np.random.rand(3).tolist(), np.random.normal(size=2).tolist(),
            torch.rand(3).tolist(), torch.randn(2).tolist())


# --------------------------------------------------------------------------- rng-state

@pytest.mark.task("rng-state")
def test_restore_repeats_the_draws_of_every_generator(impl):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()                                  # leaves a cached Gaussian inside NumPy's legacy state
    state = impl.capture_rng()
    expected = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)   # move every generator elsewhere
    impl.restore_rng(state)
    got = draws()
    names = ["python random()", "python randrange()", "numpy rand()", "numpy normal()", "torch rand()",
             "torch randn()"]
    for name, e, g in zip(names, expected, got):
        assert e == g, f"{name}: after restore_rng expected the same draws as after capture_rng, got {g} vs {e}"


@pytest.mark.task("rng-state")
def test_the_state_survives_a_weights_only_round_trip(impl):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    buffer = io.BytesIO()
    torch.save(impl.capture_rng(), buffer)
    try:
        state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    except Exception as err:
        pytest.fail(f"the RNG state must load with torch.load(weights_only=True) (tensors and plain Python values "
                    f"only); it refused: {str(err).splitlines()[0]}")
    expected = draws()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    impl.restore_rng(state)
    assert draws() == expected, "a state saved with torch.save and loaded back did not restore the same draws"


@pytest.mark.task("rng-state")
def test_capture_does_not_move_the_generators(impl):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    impl.capture_rng()
    assert draws() == expected, "capture_rng changed a generator's position (it must only read the state)"


# --------------------------------------------------------------------------- resumable-sampler

@pytest.mark.task("resumable-sampler")
def test_an_epoch_is_a_permutation_in_batches(impl):
    sampler = impl.ResumableBatchSampler(num_examples=23, batch_size=5, seed=0)
    batches = list(sampler)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3], f"expected batches of 5,5,5,5,3, got {[len(b) for b in batches]}"
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(23)), "an epoch must visit every example exactly once"
    assert flat != list(range(23)), "the order is not shuffled"


@pytest.mark.task("resumable-sampler")
def test_each_epoch_has_its_own_order_and_the_order_is_reproducible(impl):
    a = impl.ResumableBatchSampler(50, 8, seed=3)
    b = impl.ResumableBatchSampler(50, 8, seed=3)
    orders = []
    for epoch in range(3):
        a.set_position(epoch, 0), b.set_position(epoch, 0)
        first, second = list(a), list(b)
        assert first == second, f"epoch {epoch}: two samplers with the same seed gave different orders"
        orders.append(first)
    assert orders[0] != orders[1] and orders[1] != orders[2], "every epoch must be shuffled differently"
    c = impl.ResumableBatchSampler(50, 8, seed=4)
    assert list(c) != orders[0], "a different seed must give a different order"


@pytest.mark.task("resumable-sampler")
def test_the_order_ignores_the_global_generator(impl):
    sampler = impl.ResumableBatchSampler(40, 6, seed=0)
    torch.manual_seed(1)
    first = list(sampler)
    torch.manual_seed(2)
    torch.rand(5)
    assert list(sampler) == first, ("the order changed with torch's global generator; a resumed run could not "
                                    "repeat it")


@pytest.mark.task("resumable-sampler")
@pytest.mark.parametrize("start", [0, 1, 4, 6, 7])
def test_starting_mid_epoch_yields_exactly_the_remaining_batches(impl, start):
    sampler = impl.ResumableBatchSampler(40, 6, seed=0)              # 7 batches: 6 full, one of 4
    sampler.set_position(2, 0)
    full = list(sampler)
    sampler.set_position(2, start)
    rest = list(sampler)
    assert rest == full[start:], (f"set_position(2, {start}) should yield batches {start}..6 of epoch 2 "
                                  f"({len(full) - start} batches), got {len(rest)} batches that differ")
