"""Atomic writes, what a checkpoint holds, verified loading, resume and retention. References: the bytes on disk
(hashlib, safetensors.torch.load_file, torch.load(weights_only=True)), the objects' own state_dicts, the OS (a
write that fails part way, os.replace and os.fsync observed), an uninterrupted run of the same training (bit for
bit), and hand-worked retention cases."""
import hashlib
import io
import json
import os
import random
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_thread")


def temp_leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def small_objects(impl, width=64, steps=3):
    model = impl.tiny_model(width, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(steps):
        model(torch.randn(4, 16)).pow(2).mean().backward()
        optimizer.step(), optimizer.zero_grad(), scheduler.step()
    return model, optimizer, scheduler


# --------------------------------------------------------------------------- atomic-write

@pytest.mark.task("atomic-write")
def test_writes_the_bytes_and_replaces_the_old_file(impl, tmp_path):
    target = tmp_path / "blob.bin"
    target.write_bytes(b"old" * 10)
    data = bytes(range(256)) * 1000
    impl.atomic_write_bytes(target, data, chunk_size=4096)
    assert target.read_bytes() == data, "the file does not hold exactly the bytes given"
    impl.atomic_write_bytes(target, b"", chunk_size=4096)
    assert target.read_bytes() == b"", "an empty payload must give an empty file"
    assert temp_leftovers(tmp_path) == [], f"temp files left behind: {temp_leftovers(tmp_path)}"


@pytest.mark.task("atomic-write")
def test_a_write_that_fails_part_way_leaves_the_old_file_whole(impl, tmp_path):
    target = tmp_path / "blob.bin"
    target.write_bytes(b"old content")

    def crash(written):
        if written >= 2048:
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError):
        impl.atomic_write_bytes(target, b"x" * 10_000, chunk_size=1024, on_chunk=crash)
    assert target.read_bytes() == b"old content", "a failed write damaged the previous file (written in place?)"
    assert temp_leftovers(tmp_path) == [], f"a failed write must remove its temp file, found {temp_leftovers(tmp_path)}"


@pytest.mark.task("atomic-write")
def test_the_temp_file_sits_beside_the_target_and_is_renamed_with_os_replace(impl, tmp_path, monkeypatch):
    calls, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append((str(src), str(dst))), real_replace(src, dst)))
    target = tmp_path / "sub" / "blob.bin"
    target.parent.mkdir()
    impl.atomic_write_bytes(target, b"abc")
    assert len(calls) == 1, f"expected one os.replace, got {calls}"
    src, dst = calls[0]
    assert os.path.dirname(src) == str(target.parent) and dst == str(target), \
        (f"the temp file must be in the target's folder (same filesystem, so the rename is atomic), got {src} -> "
         f"{dst}")
    assert ".tmp" in os.path.basename(src), f"temp names must contain '.tmp' so nobody takes them for done: {src}"


@pytest.mark.task("atomic-write")
def test_the_file_and_its_folder_are_fsynced(impl, tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    impl.atomic_write_bytes(tmp_path / "blob.bin", b"abc" * 100)
    assert "file" in synced, "the data was never fsynced before the rename (a power cut could leave a 0-byte file)"
    assert synced.index("file") < len(synced) - 1 and synced[-1] == "dir", \
        f"fsync the file, then (after os.replace) its folder so the rename is durable; saw {synced}"


@pytest.mark.task("atomic-write")
def test_kill_9_mid_write_leaves_the_old_file_whole(impl, tmp_path, workers):
    target = tmp_path / "blob.bin"
    target.write_bytes(b"O" * 1000)
    proc = workers.start("atomic", target)
    workers.wait_for_line(proc, "WRITING", timeout=120)
    proc.kill()                                              # SIGKILL: no finally, no atexit, no cleanup
    proc.wait(timeout=30)
    assert target.read_bytes() == b"O" * 1000, "after kill -9 mid-write the old file is gone or damaged"
    partial = [p for p in tmp_path.iterdir() if p.name != "blob.bin"]
    assert partial and all(".tmp" in p.name for p in partial), \
        f"the half-written data must sit under a temp name, found {[p.name for p in partial]}"


# --------------------------------------------------------------------------- save-checkpoint

@pytest.mark.task("save-checkpoint")
def test_the_layout_and_manifest_match_the_files(impl, tmp_path):
    model, optimizer, scheduler = small_objects(impl)
    folder = impl.save_checkpoint(tmp_path, 20, model, optimizer, scheduler, {"epoch": 1, "batch": 3, "seed": 0})
    assert folder == tmp_path / "step-00000020", f"expected step-00000020, got {folder}"
    assert (tmp_path / "latest").read_text().strip() == "step-00000020", "latest must name the new checkpoint"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("model.safetensors", "train_state.pt"):
        data = (folder / name).read_bytes()
        entry = manifest["files"][name]
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest(), \
            f"manifest entry of {name} does not match the file ({entry['bytes']} vs {len(data)} bytes)"
    weights = load_file(folder / "model.safetensors")
    expected = model.state_dict()
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected), \
        "model.safetensors does not hold exactly the model's state_dict"
    assert temp_leftovers(tmp_path) == [], f"temp files left behind: {temp_leftovers(tmp_path)}"


@pytest.mark.task("save-checkpoint")
def test_the_training_state_holds_optimizer_scheduler_rng_and_position(impl, tmp_path):
    model, optimizer, scheduler = small_objects(impl)
    random.seed(4), np.random.seed(4), torch.manual_seed(4)
    folder = impl.save_checkpoint(tmp_path, 7, model, optimizer, scheduler, {"epoch": 2, "batch": 5, "seed": 0})
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())
    state = torch.load(folder / "train_state.pt", weights_only=True)
    assert state["step"] == 7 and state["loader"] == {"epoch": 2, "batch": 5, "seed": 0}, \
        f"step/loader position not saved as given: {state.get('step')}, {state.get('loader')}"
    assert state["scheduler"] == scheduler.state_dict(), \
        f"the scheduler's state_dict is missing or different: {state.get('scheduler')}"
    saved, live = state["optimizer"], optimizer.state_dict()
    assert saved["param_groups"] == live["param_groups"], "the optimizer's param_groups (lr!) were not saved"
    for key, moments in live["state"].items():
        assert all(torch.equal(saved["state"][key][m], moments[m]) for m in ("step", "exp_avg", "exp_avg_sq")), \
            f"AdamW moments of parameter {key} are missing or different"
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    impl.restore_rng(state["rng"])
    got = (random.random(), np.random.rand(), torch.rand(1).item())
    assert got == expected_draws, "the saved RNG state does not give back the generators at save time"


@pytest.mark.task("save-checkpoint")
def test_manifest_then_latest_are_written_last(impl, tmp_path, monkeypatch):
    order, real = [], impl.atomic_write_bytes
    monkeypatch.setattr(impl, "atomic_write_bytes",
                        lambda path, data, **kw: (order.append(os.path.basename(path)), real(path, data, **kw))[1])
    model, optimizer, scheduler = small_objects(impl, steps=1)
    impl.save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"epoch": 0, "batch": 1, "seed": 0})
    assert sorted(order[:2]) == ["model.safetensors", "train_state.pt"] and order[2:] == ["manifest.json", "latest"], \
        f"write the data files first, then manifest.json, then latest (each atomically); the order was {order}"


@pytest.mark.task("save-checkpoint")
def test_kill_9_mid_save_leaves_the_previous_checkpoint_loadable(impl, tmp_path, workers):
    run_dir = tmp_path / "run"
    proc = workers.start("save", run_dir)
    workers.wait_for_line(proc, "WRITING", timeout=120)      # checkpoint 2 is half written
    proc.kill()
    proc.wait(timeout=30)
    assert (run_dir / "latest").read_text().strip() == "step-00000001", "latest must still name checkpoint 1"
    assert impl.complete_steps(run_dir) == [1], \
        f"only checkpoint 1 is complete, but {impl.complete_steps(run_dir)} look complete (manifest too early?)"
    for path in (run_dir / "step-00000002").iterdir():      # nothing half-written under a final name
        if ".tmp" not in path.name:
            data = path.read_bytes()
            assert path.suffix != ".safetensors" or load_file(path) is not None, f"{path.name} is damaged"
            assert path.suffix != ".pt" or torch.load(io.BytesIO(data), weights_only=True) is not None
    model = impl.tiny_model(64, seed=123)
    state = impl.load_checkpoint(run_dir, model)
    reference = impl.tiny_model(64, seed=0)                # checkpoint 1 held the seed-0 initialisation
    assert state["step"] == 1 and all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters())), \
        "after kill -9 during save 2, loading must give checkpoint 1's weights"


# --------------------------------------------------------------------------- load-checkpoint

def saved_run(impl, tmp_path, width=64):
    model, optimizer, scheduler = small_objects(impl, width)
    impl.save_checkpoint(tmp_path, 3, model, optimizer, scheduler, {"epoch": 0, "batch": 3, "seed": 0})
    return model, optimizer, scheduler


def assert_one_line(err, *words):
    text = str(err)
    assert "\n" not in text and all(w in text for w in words), f"expected one line mentioning {words}, got {text!r}"


@pytest.mark.task("load-checkpoint")
def test_load_restores_model_optimizer_and_scheduler(impl, tmp_path):
    model, optimizer, scheduler = saved_run(impl, tmp_path)
    fresh, fresh_opt, fresh_sched = small_objects(impl, steps=0)
    state = impl.load_checkpoint(tmp_path, fresh, fresh_opt, fresh_sched)
    assert state["step"] == 3 and state["loader"]["batch"] == 3, f"wrong step/position: {state['step']}"
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters())), "weights differ"
    assert fresh_sched.state_dict() == scheduler.state_dict(), "the scheduler was not restored"
    for p_new, p_old in zip(fresh.parameters(), model.parameters()):
        a, b = fresh_opt.state[p_new], optimizer.state[p_old]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]), \
            "the optimizer's moments were not restored"


@pytest.mark.task("load-checkpoint")
def test_a_flipped_byte_in_the_weights_is_refused(impl, tmp_path):
    saved_run(impl, tmp_path)
    path = tmp_path / "step-00000003" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF                                        # inside a tensor: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_checkpoint(tmp_path, impl.tiny_model(64))
    assert_one_line(info.value, "model.safetensors")


@pytest.mark.task("load-checkpoint")
def test_a_truncated_state_file_is_refused(impl, tmp_path):
    saved_run(impl, tmp_path)
    path = tmp_path / "step-00000003" / "train_state.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_checkpoint(tmp_path, impl.tiny_model(64), None, None)
    assert_one_line(info.value, "train_state.pt")


@pytest.mark.task("load-checkpoint")
@pytest.mark.parametrize("width", [32, 96])
def test_a_model_of_another_shape_is_refused_with_one_line(impl, tmp_path, width):
    saved_run(impl, tmp_path, width=64)
    model = impl.tiny_model(width)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_checkpoint(tmp_path, model)
    assert_one_line(info.value, "shape")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "a refused load changed the model"


@pytest.mark.task("load-checkpoint")
def test_missing_and_unexpected_keys_are_refused(impl, tmp_path):
    saved_run(impl, tmp_path)
    bigger = torch.nn.Sequential(*impl.tiny_model(64), torch.nn.Linear(4, 4))
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_checkpoint(tmp_path, bigger)
    assert_one_line(info.value, "missing")
    smaller = torch.nn.Sequential(*list(impl.tiny_model(64))[:-1])
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_checkpoint(tmp_path, smaller)
    assert_one_line(info.value, "unexpected")


class RunsCode:
    """A pickle that calls `exec` when loaded, the classic poisoned-checkpoint payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.mark.task("load-checkpoint")
def test_a_pickle_that_runs_code_is_refused_and_does_not_run(impl, tmp_path):
    marker = tmp_path / "pwned.txt"
    buffer = io.BytesIO()
    torch.save({"step": 1, "optimizer": RunsCode(marker)}, buffer)
    payload = buffer.getvalue()
    with pytest.raises(impl.CheckpointError) as info:
        impl.load_training_state(payload, source="evil.pt")
    assert not marker.exists(), "loading the state ran code from the file: use torch.load(weights_only=True)"
    assert_one_line(info.value, "evil.pt")
    saved_run(impl, tmp_path / "run")                        # the same payload inside a checkpoint whose manifest
    folder = tmp_path / "run" / "step-00000003"              # agrees: checksums prove integrity, not trust
    (folder / "train_state.pt").write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["train_state.pt"] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(impl.CheckpointError):
        impl.load_checkpoint(tmp_path / "run", impl.tiny_model(64))
    assert not marker.exists(), "loading the checkpoint ran code from train_state.pt"


# --------------------------------------------------------------------------- resume

CFG = dict(total_steps=45, batch_size=16, num_examples=200, width=32, lr=3e-3, warmup=5, seed=0)


def straight_run(impl):
    run = impl.build_run(impl.RunConfig(**CFG))
    losses = impl.train(run, CFG["total_steps"])
    return losses, [p.detach().clone() for p in run.model.parameters()]


@pytest.fixture(scope="module")
def reference(impl):
    return straight_run(impl)


@pytest.mark.task("resume")
@pytest.mark.parametrize("save_every, crash_at", [(10, 33), (13, 27)])   # mid-epoch; exactly at an epoch's end
def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(impl, tmp_path, reference, save_every, crash_at):
    straight_losses, straight_params = reference
    cfg = impl.RunConfig(**CFG)
    first = impl.build_run(cfg)
    partial = impl.train(first, crash_at, run_dir=tmp_path, save_every=save_every)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)    # a new process starts from other RNG states
    second = impl.resume_run(impl.build_run(cfg), tmp_path)
    saved = crash_at // save_every * save_every
    assert second.step == saved, f"expected to resume at step {saved}, got {second.step}"
    rest = impl.train(second, cfg.total_steps)
    losses = partial[:saved] + rest
    first_diff = next((i for i, (a, b) in enumerate(zip(losses, straight_losses)) if a != b), None)
    assert len(losses) == len(straight_losses) and first_diff is None, \
        (f"the resumed run's loss differs from the uninterrupted run from step {first_diff} on "
         f"({losses[first_diff] if first_diff is not None else '?'} vs "
         f"{straight_losses[first_diff] if first_diff is not None else '?'}); something was not restored")
    assert all(torch.equal(a, b) for a, b in zip(second.model.parameters(), straight_params)), \
        "final weights differ from the uninterrupted run"


@pytest.mark.task("resume")
def test_resume_restores_position_counters_and_learning_rate(impl, tmp_path):
    cfg = impl.RunConfig(**CFG)
    first = impl.build_run(cfg)
    impl.train(first, 20, run_dir=tmp_path, save_every=20)
    second = impl.resume_run(impl.build_run(cfg), tmp_path)
    assert (second.step, second.epoch, second.batch) == (first.step, first.epoch, first.batch) == (20, 1, 7), \
        f"expected step 20 = epoch 1, batch 7 (13 batches per epoch), got {(second.step, second.epoch, second.batch)}"
    assert second.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"], \
        "the learning rate after resume differs: the scheduler's position was not restored"


# --------------------------------------------------------------------------- retention

@pytest.mark.task("retention")
@pytest.mark.parametrize("steps, latest, keep_last, keep_every, expected", [
    (list(range(10, 101, 10)), 100, 2, 50, [10, 20, 30, 40, 60, 70, 80]),
    (list(range(10, 101, 10)), 100, 3, 0, [10, 20, 30, 40, 50, 60, 70]),
    ([5, 10, 15, 20], 20, 1, 0, [5, 10, 15]),
    ([20, 5, 15, 10], 20, 1, 10, [5, 15]),                 # any order in; multiples of the step, not of the index
    ([10, 20, 30, 40], 20, 1, 0, [10, 30]),                # rolled back: latest names 20, which must survive
    ([30, 10, 20], None, 1, 0, [10, 20]),                # newest by step, not by position in the list
    ([10], 10, 3, 0, []),
    ([], None, 2, 5, []),
])
def test_steps_to_delete(impl, steps, latest, keep_last, keep_every, expected):
    got = impl.steps_to_delete(steps, latest, keep_last, keep_every)
    assert list(got) == expected, \
        f"steps {steps}, latest {latest}, keep_last {keep_last}, keep_every {keep_every}: expected to delete {expected}, got {got}"


@pytest.mark.task("retention")
def test_prune_on_disk_keeps_the_pointed_checkpoint(impl, tmp_path):
    model, optimizer, scheduler = small_objects(impl, steps=1)
    for step in (10, 20, 30, 40, 50):
        impl.save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"epoch": 0, "batch": 0, "seed": 0})
    (tmp_path / "latest").write_text("step-00000030\n")     # an operator rolled back to 30
    deleted = impl.prune(tmp_path, keep_last=1, keep_every=20)
    assert sorted(deleted) == [10], f"keep_last=1 keeps 50, keep_every=20 keeps 20 and 40, latest keeps 30: expected to delete [10], got {deleted}"
    assert impl.complete_steps(tmp_path) == [20, 30, 40, 50], f"left on disk: {impl.complete_steps(tmp_path)}"
    impl.load_checkpoint(tmp_path, impl.tiny_model(64))       # the pointed checkpoint still loads
