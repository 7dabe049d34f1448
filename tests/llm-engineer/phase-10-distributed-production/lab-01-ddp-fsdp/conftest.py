"""Fixtures of this lab's tests: one two-rank gloo run per test module (launched and torn down by ranks.py) and
the single-process reference every data-parallel run must reproduce."""
import importlib.util
from pathlib import Path

import pytest
import torch

from labkit.labs import reuse

_spec = importlib.util.spec_from_file_location("ddp_fsdp_ranks", Path(__file__).with_name("ranks.py"))
ranks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ranks)


@pytest.fixture(scope="module")
def two_ranks(request, impl, tmp_path_factory):
    """{rank: {scenario: results}} from two gloo ranks running the implementation under test."""
    return ranks.launch(request.config.getoption("--impl"), tmp_path_factory.mktemp("ranks"))


def scenario(results: dict, name: str, rank: int) -> dict:
    """One scenario's results on one rank; a TODO raised there is raised here, any other error fails the test."""
    found = results[rank].get(name)
    if found is None:
        raise AssertionError(f"rank {rank} never ran scenario '{name}' (an earlier scenario failed and the ranks "
                             "stopped; see the first failing test)")
    if "error" in found:
        kind, message, trace = found["error"]
        if kind == "NotImplementedError":
            raise NotImplementedError(message)
        raise AssertionError(f"rank {rank} raised {kind} in scenario '{name}': {message}\n{trace}")
    return found


@pytest.fixture(scope="module")
def reference():
    """Phase 5's GPT trained in one process on the whole batch (AdamW, the same seed, steps and batches):
    {"grads": [per step: [per parameter]], "losses": [...], "params": [after the last step]}."""
    nano = reuse("lab-02-nano-gpt")
    torch.manual_seed(0)
    model = nano.GPT(ranks.config(nano))
    optimizer = torch.optim.AdamW(model.parameters(), lr=ranks.LR, weight_decay=0.0)
    out = {"grads": [], "losses": []}
    for step in range(ranks.STEPS):
        x, y = ranks.batch(step)
        optimizer.zero_grad(set_to_none=True)
        loss = model(x, y)[1]
        loss.backward()
        out["grads"].append([p.grad.clone() for p in model.parameters()])
        out["losses"].append(loss.item())
        optimizer.step()
    out["params"] = [p.detach().clone() for p in model.parameters()]
    out["names"] = [n for n, _ in model.named_parameters()]
    out["sizes"] = [p.numel() * p.element_size() for p in model.parameters()]
    return out


@pytest.fixture(scope="module")
def run(two_ranks):
    """run(scenario_name, rank) -> that scenario's results (or the rank's error, raised here)."""
    return lambda name, rank: scenario(two_ranks, name, rank)


@pytest.fixture(scope="session")
def setup():
    """The constants and batches the ranks use (ranks.py)."""
    return ranks
