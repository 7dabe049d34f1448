"""Checks for the training-loop lab. References: torch's own cross-entropy on the whole batch, torch's
clip_grad_norm_, transformers' cosine-with-min-lr schedule, hand-computed values, and uninterrupted runs."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from labkit.checks import assert_close_to_reference

V = 11


def tiny_model(impl, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return impl.TinyLM(V, d_model=8, d_hidden=16, dropout=dropout)


def batch(n_rows=8, t=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (n_rows, t), generator=g), torch.randint(0, V, (n_rows, t), generator=g)


def reference_grads(model, x, y):
    """Gradient of the mean token loss of the whole batch, computed in one go by torch."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def grads_of(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def tokens(n=4000, seed=0):
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- accumulation

@pytest.mark.task("accumulate-gradients")
def test_accumulation_equals_one_large_batch(impl):
    model = tiny_model(impl)
    x, y = batch()
    big_loss, expected = reference_grads(model, x, y)
    micro = [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)]
    loss = impl.accumulate_gradients(model, micro)
    assert loss == pytest.approx(big_loss, abs=1e-5), f"returned loss {loss}, the big batch's mean loss is {big_loss}"
    for name, grad in grads_of(model).items():
        assert_close_to_reference(grad, expected[name], atol=1e-6, rtol=1e-5, what=f"accumulated grad of {name}")


@pytest.mark.task("accumulate-gradients")
def test_accumulation_with_ragged_padding_is_a_mean_over_all_tokens(impl):
    model = tiny_model(impl)
    x, y = batch()
    y = y.clone()
    y[0:2, 1:] = -100  # first micro-batch: 2 real targets; the others keep all 10
    y[4, :3] = -100
    _, expected = reference_grads(model, x, y)
    micro = [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)]
    # sanity of the test itself: "mean per micro-batch / accum" really differs here
    model.zero_grad(set_to_none=True)
    for xm, ym in micro:
        (F.cross_entropy(model(xm).flatten(0, 1), ym.flatten(), ignore_index=-100) / 4).backward()
    naive = grads_of(model)
    assert (naive["mlp.3.bias"] - expected["mlp.3.bias"]).abs().max() > 1e-4
    model.zero_grad(set_to_none=True)
    impl.accumulate_gradients(model, micro)
    for name, grad in grads_of(model).items():
        assert_close_to_reference(grad, expected[name], atol=1e-6, rtol=1e-5,
                                  what=f"grad of {name} with padded targets (mean over the 62 real tokens)")


@pytest.mark.task("accumulate-gradients")
def test_accumulation_refuses_a_batch_with_no_targets(impl):
    model = tiny_model(impl)
    x, y = batch(2)
    with pytest.raises(ValueError):
        impl.accumulate_gradients(model, [(x, torch.full_like(y, -100))])


# ---------------------------------------------------------------- schedule

@pytest.mark.task("lr-schedule")
def test_schedule_hand_values(impl):
    kw = dict(peak_lr=1.0, warmup_steps=4, total_steps=12, min_lr=0.1)
    expected = {0: 0.0, 1: 0.25, 2: 0.5, 4: 1.0, 6: 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 8: 0.55,
                10: 0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)), 12: 0.1, 30: 0.1}
    got = {s: impl.lr_at(s, **kw) for s in expected}
    for s, want in expected.items():
        assert got[s] == pytest.approx(want, abs=1e-12), f"lr at step {s}: expected {want:.6f}, got {got[s]:.6f}"


@pytest.mark.task("lr-schedule")
def test_schedule_matches_transformers_point_by_point(impl):
    peak, warmup, total = 3e-3, 10, 100
    ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    hf_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    ours = impl.make_scheduler(ours_opt, peak_lr=peak, warmup_steps=warmup, total_steps=total, min_lr=0.1 * peak)
    hf = get_cosine_with_min_lr_schedule_with_warmup(hf_opt, warmup, total, min_lr_rate=0.1)
    for step in range(total + 1):
        a, b = ours_opt.param_groups[0]["lr"], hf_opt.param_groups[0]["lr"]
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), f"step {step}: transformers gives {b:.6e}, got {a:.6e}"
        ours_opt.step(), hf_opt.step(), ours.step(), hf.step()


def test_schedule_rejects_bad_settings(impl):
    for bad in (dict(warmup_steps=20, total_steps=10), dict(warmup_steps=1, total_steps=10, min_lr=2.0)):
        with pytest.raises(ValueError):
            impl.lr_at(0, **{"peak_lr": 1.0, **bad})


# ---------------------------------------------------------------- clipping

@pytest.mark.task("clip-gradients")
@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_clipping_matches_torch(impl, max_norm):
    ours, theirs = tiny_model(impl), tiny_model(impl)
    x, y = batch()
    for m in (ours, theirs):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
    want = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    got = impl.clip_gradients(list(ours.parameters()), max_norm)
    assert float(got) == pytest.approx(float(want), rel=1e-6), f"norm before clipping: torch {want}, got {got}"
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close_to_reference(p.grad, q.grad, atol=1e-7, rtol=1e-5, what=f"clipped grad of {name}")


# ---------------------------------------------------------------- one step

def manual_step(model, micro, lr, max_norm):
    x = torch.cat([m[0] for m in micro])
    y = torch.cat([m[1] for m in micro])
    loss, grads = reference_grads(model, x, y)
    for n, p in model.named_parameters():
        p.grad = grads[n]
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return loss


@pytest.mark.task("train-step")
@pytest.mark.parametrize("with_scaler", [False, True])
def test_train_step_is_accumulate_clip_update(impl, with_scaler):
    ours, ref = tiny_model(impl), tiny_model(impl)
    x, y = batch()
    micro = [(x[:4], y[:4]), (x[4:], y[4:])]
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12) if with_scaler else None
    loss, norm = impl.train_step(ours, opt, sched, micro, max_norm=0.05, scaler=scaler)
    want_loss = manual_step(ref, micro, 0.5, 0.05)
    assert loss == pytest.approx(want_loss, abs=1e-5)
    assert sched.last_epoch == 1, f"the scheduler should advance once per step, it is at {sched.last_epoch}"
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert_close_to_reference(p, q, atol=1e-6, rtol=1e-5,
                                  what=f"{name} after one step (accumulate, unscale, clip at 0.05, SGD)")


@pytest.mark.task("train-step")
def test_two_steps_start_from_clean_gradients_and_follow_the_schedule(impl):
    # two steps on two different batches, lr 0.5 then 0.1: the second step must use only its own gradients,
    # and the scheduler must move the lr after the first update, not before it
    ours, ref = tiny_model(impl), tiny_model(impl)
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s == 0 else 0.2)
    for step, lr in enumerate((0.5, 0.1)):
        x, y = batch(seed=10 + step)
        micro = [(x[:4], y[:4]), (x[4:], y[4:])]
        impl.train_step(ours, opt, sched, micro, max_norm=0.05)
        manual_step(ref, micro, lr, 0.05)
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert_close_to_reference(p, q, atol=1e-6, rtol=1e-5,
                                      what=f"{name} after step {step + 1} (SGD at lr {lr}, clip at 0.05)")


@pytest.mark.task("train-step")
def test_train_step_skips_an_overflowing_step_and_shrinks_the_scale(impl):
    model = tiny_model(impl)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.mlp[3].bias.register_hook(lambda g: g * float("inf"))  # an fp16-style overflow in one gradient
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    x, y = batch(4)
    impl.train_step(model, opt, sched, [(x, y)], max_norm=1.0, scaler=scaler)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert not changed, f"a step with inf gradients must be skipped, but {changed} changed"
    assert scaler.get_scale() < 2.0 ** 12, f"the loss scale should shrink after an overflow, it is {scaler.get_scale()}"


@pytest.mark.task("train-step")
@pytest.mark.gpu
def test_bf16_autocast_step_on_cuda(impl):
    torch.manual_seed(0)
    model = impl.TinyLM(V, dropout=0.0).cuda()
    ref = impl.TinyLM(V, dropout=0.0).cuda()
    ref.load_state_dict(model.state_dict())
    x, y = (t.cuda() for t in batch(16, 32))
    fp32 = F.cross_entropy(ref(x).flatten(0, 1), y.flatten()).item()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loss, norm = impl.train_step(model, opt, sched, [(x, y)], amp_dtype=torch.bfloat16)
    assert abs(loss - fp32) < 0.02 * fp32, f"bf16 loss {loss} too far from the fp32 loss {fp32}"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "master weights must stay float32"
    assert math.isfinite(norm)


@pytest.mark.task("train-step")
@pytest.mark.gpu
def test_fp16_with_grad_scaler_trains_on_cuda(impl):
    model, opt, sched, stream = impl.build_run(tokens(20000), V, seq_len=16, micro_batch=16, total_steps=60,
                                               warmup_steps=2)
    model.cuda()
    scaler = torch.amp.GradScaler("cuda")
    losses = impl.run_steps(model, opt, sched, stream, 60, accum=2, amp_dtype=torch.float16, scaler=scaler)
    assert all(math.isfinite(x) for x in losses), "fp16 losses became non-finite"
    assert all(torch.isfinite(p).all() for p in model.parameters()), "fp16 training left non-finite weights"
    assert np.mean(losses[-10:]) < losses[0] - 0.05, f"fp16 loss did not go down: {losses[0]:.3f} -> {losses[-1]:.3f}"


# ---------------------------------------------------------------- atomic save

@pytest.mark.task("atomic-save")
def test_save_round_trip_and_overwrite(impl, tmp_path):
    path = tmp_path / "ckpt.pt"
    impl.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    impl.save_checkpoint({"step": 2, "w": torch.arange(5.0)}, path)
    back = torch.load(path, weights_only=True)
    assert back["step"] == 2 and torch.equal(back["w"], torch.arange(5.0)), "the second save should replace the first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"], "temporary files were left behind"


@pytest.mark.task("atomic-save")
def test_crash_during_write_leaves_the_old_checkpoint_intact(impl, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    impl.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        # write the first bytes of a real checkpoint, then die as a killed process would
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04 half a zip")
        else:
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        impl.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    back = torch.load(path, weights_only=True)
    assert back["step"] == 1 and torch.equal(back["w"], torch.ones(3)), "the old checkpoint was damaged by the crash"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"], "the half-written temp file was not cleaned up"


@pytest.mark.task("atomic-save")
def test_bytes_are_fsynced_before_the_rename(impl, tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    impl.save_checkpoint({"step": 1}, tmp_path / "ckpt.pt")
    assert "replace" in calls, f"os.replace was never called (calls: {calls})"
    assert "fsync" in calls[:calls.index("replace")], f"no fsync before the rename (calls in order: {calls})"


@pytest.mark.task("atomic-save")
def test_temp_file_is_renamed_from_the_checkpoint_folder(impl, tmp_path, monkeypatch):
    # os.replace is an atomic rename only within one filesystem, so the temp file must sit beside the target
    renames, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b))[1])
    path = tmp_path / "run" / "ckpt.pt"
    impl.save_checkpoint({"step": 1}, path)
    assert len(renames) == 1, f"expected one os.replace onto the checkpoint, got {renames}"
    src, dst = (os.path.abspath(x) for x in renames[0])
    assert dst == str(path), f"os.replace should land on {path}, it wrote {dst}"
    assert os.path.dirname(src) == str(path.parent), f"the temp file {src} is not in the target's folder {path.parent}"


# ---------------------------------------------------------------- loading

def valid_checkpoint(impl, **override):
    state = {"format": impl.CHECKPOINT_FORMAT, "version": impl.CHECKPOINT_VERSION, "step": 3, "model": {},
             "optimizer": {}, "scheduler": {}, "data": {}, "rng": {}}
    state.update(override)
    return state


def assert_one_line_error(impl, path):
    with pytest.raises(ValueError) as info:
        impl.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message, f"expected a one-line error naming the file, got {message!r}"
    return message


@pytest.mark.task("load-checkpoint")
def test_load_accepts_a_valid_checkpoint(impl, tmp_path):
    torch.save(valid_checkpoint(impl), tmp_path / "ok.pt")
    assert impl.load_checkpoint(tmp_path / "ok.pt")["step"] == 3


@pytest.mark.task("load-checkpoint")
def test_load_gives_one_line_errors_for_broken_files(impl, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(300))
    assert_one_line_error(impl, garbage)
    good = tmp_path / "good.pt"
    torch.save(valid_checkpoint(impl, model={"w": torch.randn(100, 100)}), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_one_line_error(impl, truncated)
    assert_one_line_error(impl, tmp_path / "missing.pt")


class _RunsCodeWhenUnpickled:
    """What a malicious checkpoint hides: unpickling it calls exec. weights_only=True refuses such objects."""

    def __reduce__(self):
        return exec, ("import builtins; builtins.labkit_checkpoint_ran_code = True",)


@pytest.mark.task("load-checkpoint")
def test_load_never_runs_code_from_the_file(impl, tmp_path):
    import builtins

    path = tmp_path / "evil.pt"
    torch.save(valid_checkpoint(impl, data=_RunsCodeWhenUnpickled()), path)
    try:
        assert_one_line_error(impl, path)
        ran = getattr(builtins, "labkit_checkpoint_ran_code", False)
    finally:
        builtins.__dict__.pop("labkit_checkpoint_ran_code", None)
    assert not ran, "loading the checkpoint executed code hidden in its pickle (load with weights_only=True)"


@pytest.mark.task("load-checkpoint")
def test_load_refuses_other_formats_versions_and_missing_keys(impl, tmp_path):
    cases = {"foreign.pt": {"state_dict": {}},
             "future.pt": valid_checkpoint(impl, version=impl.CHECKPOINT_VERSION + 1),
             "partial.pt": {k: v for k, v in valid_checkpoint(impl).items() if k != "optimizer"}}
    for name, state in cases.items():
        torch.save(state, tmp_path / name)
        assert_one_line_error(impl, tmp_path / name)
    assert "version" in assert_one_line_error(impl, tmp_path / "future.pt")


# ---------------------------------------------------------------- resume

SETTINGS = dict(seq_len=8, micro_batch=4, total_steps=8, warmup_steps=2)


def fresh_run(impl, seed):
    return impl.build_run(tokens(), V, **SETTINGS, seed=seed)


@pytest.mark.task("resume")
def test_resume_continues_bit_for_bit(impl, tmp_path):
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model, opt, sched, stream = fresh_run(impl, 0)
    straight = impl.run_steps(model, opt, sched, stream, 8)
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model, opt, sched, stream = fresh_run(impl, 0)
    first = impl.run_steps(model, opt, sched, stream, 3)
    torch.save(impl.capture_state(3, model, opt, sched, stream), tmp_path / "c.pt")  # plain torch.save
    del model, opt, sched, stream
    random.random(), np.random.rand(), torch.rand(5)  # a restarted process is elsewhere in every RNG
    model, opt, sched, stream = fresh_run(impl, 7)
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # the state must be safe to load
    step = impl.restore_state(state, model, opt, sched, stream)
    assert step == 3
    second = impl.run_steps(model, opt, sched, stream, 5)
    assert first + second == straight, f"losses differ after resuming:\n{straight}\n{first + second}"
    different = [n for n, p in model.named_parameters() if not torch.equal(p, expected[n])]
    assert not different, f"parameters are not bit-identical to the uninterrupted run: {different}"


@pytest.mark.task("resume")
def test_every_rng_is_restored(impl):
    model, opt, sched, stream = fresh_run(impl, 0)
    state = impl.capture_state(0, model, opt, sched, stream)
    before = (random.random(), np.random.rand(), torch.rand(1).item())
    impl.restore_state(state, model, opt, sched, stream)
    after = (random.random(), np.random.rand(), torch.rand(1).item())
    assert before == after, f"draws after restoring differ (python, numpy, torch): {before} vs {after}"


@pytest.mark.task("resume")
def test_restoring_into_a_different_model_is_one_clear_error(impl):
    model, opt, sched, stream = fresh_run(impl, 0)
    state = impl.capture_state(0, model, opt, sched, stream)
    other, other_opt, other_sched, other_stream = impl.build_run(tokens(), V + 3, **SETTINGS)
    with pytest.raises(ValueError) as info:
        impl.restore_state(state, other, other_opt, other_sched, other_stream)
    assert "\n" not in str(info.value), f"expected a one-line error, got {str(info.value)!r}"
