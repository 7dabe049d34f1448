"""Sharded checkpoints with torch.distributed.checkpoint. References: torch's own gather of the FSDP2 state
(get_state_dict with full_state_dict=True, written by the given worker code on rank 0), and the model and
optimizer the checkpoint was taken from. The 2-rank test starts two real processes (gloo over a file store: no
ports), each bounded by a timeout and killed at teardown."""
import pytest
import torch
from torch.distributed.checkpoint.state_dict import get_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(impl, steps=2, seed=0):
    model = impl.tiny_model(64, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        model(torch.randn(4, 16)).pow(2).mean().backward()
        optimizer.step(), optimizer.zero_grad()
    return model, optimizer


def assert_same_state(model, optimizer, ref_model_state, ref_optim_state, what):
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ref_model_state[name]), f"{what}: weight {name} differs after load_sharded"
    _, optim_state = get_state_dict(model, optimizer)                      # FQN-keyed, as torch sees it
    for fqn, moments in ref_optim_state["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(optim_state["state"][fqn][key].float(), moments[key].float()), \
                f"{what}: optimizer {key} of {fqn} differs after load_sharded"


@pytest.mark.task("dcp")
def test_single_process_round_trip(impl, tmp_path):
    model, optimizer = trained(impl)
    impl.save_sharded(tmp_path / "ckpt", model, optimizer, step=2)
    names = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert ".metadata" in names and any(n.endswith(".distcp") for n in names), f"not a DCP checkpoint: {names}"
    ref_model, ref_optim = get_state_dict(model, optimizer)
    fresh, fresh_opt = trained(impl, steps=0, seed=5)
    step = impl.load_sharded(tmp_path / "ckpt", fresh, fresh_opt)
    assert step == 2, f"load_sharded should return the saved step 2, got {step}"
    assert_same_state(fresh, fresh_opt, ref_model, ref_optim, "1 rank -> 1 rank")
    fresh(torch.randn(2, 16)).sum().backward()
    fresh_opt.step()                                                       # the optimizer is usable after loading


@pytest.mark.slow                                # two fresh Python processes importing torch: ~30 s under load
@pytest.mark.task("dcp")
def test_two_ranks_save_one_process_loads(impl, tmp_path, workers):
    procs = [workers.start("dcp", tmp_path, rank, 2) for rank in range(2)]
    for rank, proc in enumerate(procs):
        workers.wait_for_line(proc, "DONE", timeout=240)
        assert proc.wait(timeout=60) == 0, f"rank {rank} exited with code {proc.returncode}"
    shards = sorted(p.name for p in (tmp_path / "dcp").iterdir() if p.suffix == ".distcp")
    assert shards == ["__0_0.distcp", "__1_0.distcp"], f"expected one shard file per rank, got {shards}"
    full = torch.load(tmp_path / "full.pt", weights_only=True)             # torch's own gather of both shards
    model, optimizer = trained(impl, steps=0, seed=7)                      # another init: the load must overwrite
    step = impl.load_sharded(tmp_path / "dcp", model, optimizer)
    assert step == 3, f"expected the saved step 3, got {step}"
    assert_same_state(model, optimizer, full["model"], full["optim"], "2 ranks -> 1 process")
