"""Lab 04 checks: broadcasting puzzles against hand-computed tensors, autograd against analytic derivatives,
regression against numpy's least squares, the manual MLP backward against autograd and finite differences."""
import math
import time

import numpy as np
import pytest
import torch

from labkit.checks import assert_close_to_reference, assert_gradients_match


def same(got, want, what):
    want = torch.as_tensor(want)
    assert tuple(got.shape) == tuple(want.shape), f"{what}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    assert torch.allclose(got.double(), want.double(), atol=1e-6), f"{what}: expected {want.tolist()}, got {got.tolist()}"


# ------------------------------------------------------------------ broadcasting (expected values worked out by hand)

@pytest.mark.task("broadcasting")
def test_outer_sum_and_centering(impl):
    same(impl.outer_sum(torch.tensor([1., 2., 3.]), torch.tensor([10., 20.])),
         [[11., 21.], [12., 22.], [13., 23.]], "outer_sum")
    same(impl.center_columns(torch.tensor([[1., 10.], [3., 30.]])), [[-1., -10.], [1., 10.]], "center_columns")


@pytest.mark.task("broadcasting")
def test_row_operations(impl):
    same(impl.normalize_rows(torch.tensor([[3., 4.], [0., 2.]])), [[0.6, 0.8], [0., 1.]], "normalize_rows")
    # square input: the classic bug (X * w) scales columns instead of rows
    same(impl.scale_rows(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([10., 100.])),
         [[10., 20.], [300., 400.]], "scale_rows")


@pytest.mark.task("broadcasting")
def test_pairwise_sq_dists(impl):
    X = torch.tensor([[0., 0.], [1., 1.]])
    Y = torch.tensor([[1., 0.], [3., 4.], [0., 0.]])
    same(impl.pairwise_sq_dists(X, Y), [[1., 25., 0.], [1., 13., 2.]], "pairwise_sq_dists")


@pytest.mark.task("broadcasting")
def test_channel_bias(impl):
    images = torch.zeros(2, 3, 2, 2)
    got = impl.add_channel_bias(images, torch.tensor([1., 2., 3.]))
    want = torch.tensor([1., 2., 3.]).repeat_interleave(4).reshape(3, 2, 2).expand(2, 3, 2, 2)
    same(got, want, "add_channel_bias")


@pytest.mark.task("broadcasting")
def test_one_hot_and_causal_mask(impl):
    same(impl.one_hot(torch.tensor([2, 0, 1, 2]), 3), [[0., 0., 1.], [1., 0., 0.], [0., 1., 0.], [0., 0., 1.]], "one_hot")
    got = impl.causal_mask(3)
    assert got.dtype == torch.bool, f"causal_mask should be boolean, got {got.dtype}"
    same(got, [[True, False, False], [True, True, False], [True, True, True]], "causal_mask(3)")


@pytest.mark.task("broadcasting")
def test_batch_matvec_and_softmax(impl):
    A = torch.tensor([[[1., 2.], [3., 4.]], [[0., 1.], [1., 0.]]])
    x = torch.tensor([[1., 1.], [5., 7.]])
    same(impl.batch_matvec(A, x), [[3., 7.], [7., 5.]], "batch_matvec")
    got = impl.softmax_rows(torch.tensor([[0., math.log(3.)], [1000., 1000.]]))
    same(got, [[0.25, 0.75], [0.5, 0.5]], "softmax_rows (the second row overflows without the max shift)")


# ------------------------------------------------------------------ autograd against known derivatives

@pytest.mark.task("autograd")
def test_derivative_of_the_guides_example(impl):
    got = impl.derivative(lambda x: torch.sin(x ** 3 + 2 * x), torch.tensor(2.0, dtype=torch.float64))
    want = math.cos(12) * 14  # chain rule: cos(x^3 + 2x) * (3x^2 + 2) at x = 2
    assert math.isclose(got.item(), want, rel_tol=1e-12), f"expected cos(12)*14 = {want:.6f}, got {got.item():.6f}"


@pytest.mark.task("autograd")
def test_elementwise_derivatives(impl):
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    cases = [(lambda t: t * torch.exp(t), (1 + x) * torch.exp(x), "x e^x"),
             (torch.sigmoid, torch.sigmoid(x) * (1 - torch.sigmoid(x)), "sigmoid"),
             (lambda t: t ** 3, 3 * x ** 2, "x^3")]
    for f, want, name in cases:
        got = impl.derivative(f, x)
        assert torch.allclose(got, want, atol=1e-12), f"d/dx {name}: expected {want.tolist()}, got {got.tolist()}"
    assert not x.requires_grad, "derivative must not turn the caller's tensor into a graph leaf"


@pytest.mark.task("autograd")
def test_second_derivative_and_accumulation(impl):
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    got = impl.second_derivative(torch.sin, x)
    assert torch.allclose(got, -torch.sin(x), atol=1e-12), f"(sin)'' = -sin: got {got.tolist()}"
    got = impl.second_derivative(lambda t: t ** 3, x)
    assert torch.allclose(got, 6 * x, atol=1e-12), f"(x^3)'' = 6x: got {got.tolist()}"
    acc = impl.accumulated_grad(lambda t: t ** 2, 3.0, 3)
    assert acc == 18.0, f"three backward() calls of x^2 at x=3 accumulate 3 * 6 = 18 in .grad, got {acc}"


# ------------------------------------------------------------------ linear regression

@pytest.fixture(scope="module")
def regression(impl):
    X, y, w_true, b_true = impl.make_regression_data(n=400, d=4, noise=0.1, seed=0)
    design = np.hstack([X.numpy().astype(np.float64), np.ones((len(X), 1))])
    theta = np.linalg.lstsq(design, y.numpy().astype(np.float64), rcond=None)[0]  # the independent reference
    return X, y, theta[:-1], theta[-1]


@pytest.mark.task("linear-regression")
def test_closed_form_matches_numpy_lstsq(impl, regression):
    X, y, w_ref, b_ref = regression
    w, b = impl.closed_form(X, y)
    assert_close_to_reference(w, w_ref, atol=1e-4, what="closed-form weights vs numpy.linalg.lstsq")
    assert abs(float(b) - b_ref) < 1e-4, f"closed-form bias: expected {b_ref:.5f}, got {float(b):.5f}"


@pytest.mark.task("linear-regression")
def test_autograd_descent_matches_closed_form(impl, regression):
    X, y, w_ref, b_ref = regression
    w, b, losses = impl.fit_by_autograd(X, y, steps=300, lr=0.1)
    assert_close_to_reference(w, w_ref, atol=1e-3, rtol=0, what="autograd weights vs least squares")
    assert abs(float(b) - b_ref) < 1e-3, f"autograd bias: expected {b_ref:.5f} (within 1e-3), got {float(b):.5f}"
    assert len(losses) == 300, f"expected one loss per step (300), got {len(losses)}"
    first = float((y ** 2).mean())  # w = b = 0 at the start, so the first loss is mean(y^2)
    assert math.isclose(losses[0], first, rel_tol=1e-5), f"first loss should be mean(y^2) = {first:.4f}, got {losses[0]:.4f}"
    assert losses[-1] < 0.02, f"final loss should reach the noise floor 0.1^2 = 0.01, got {losses[-1]:.4f}"


@pytest.mark.task("module-training")
def test_module_shape_and_parameters(impl):
    model = impl.LinearModel(4)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 5, f"4 weights + 1 bias = 5 parameters expected, got {n_params}"
    out = model(torch.randn(7, 4))
    assert out.shape == (7,), f"forward should return shape (n,) = (7,), got {tuple(out.shape)}"
    out = model(torch.randn(1, 4))
    assert out.shape == (1,), f"a batch of one row should give shape (1,), got {tuple(out.shape)}"


@pytest.mark.task("module-training")
def test_epoch_loss_is_the_mean_over_all_rows(impl, regression):
    # With lr=0 nothing moves, so every epoch's mean loss is the untouched model's MSE on the whole data set.
    X, y, _, _ = regression
    torch.manual_seed(0)
    model = impl.LinearModel(X.shape[1])
    with torch.no_grad():
        w, b = model.linear.weight.ravel(), model.linear.bias[0]
        want = float(((X @ w + b - y) ** 2).mean())
    history = impl.train_model(model, X, y, epochs=2, lr=0.0, batch_size=40, optimizer="sgd")
    assert len(history) == 2, f"expected one loss per epoch (2), got {len(history)}"
    assert np.allclose(history, want, rtol=1e-5), \
        f"each epoch's loss should be the mean over all 400 rows, {want:.5f}, got {history}"


@pytest.mark.task("module-training")
def test_full_batch_sgd_matches_closed_form(impl, regression, device):
    X, y, w_ref, b_ref = regression
    model = impl.LinearModel(X.shape[1]).to(device)
    history = impl.train_model(model, X, y, epochs=300, lr=0.1, batch_size=len(X), optimizer="sgd")
    w = model.linear.weight.detach().cpu().ravel()
    b = float(model.linear.bias.detach().cpu()[0])
    assert_close_to_reference(w, w_ref, atol=1e-3, rtol=0, what=f"nn.Module weights on {device} vs least squares")
    assert abs(b - b_ref) < 1e-3, f"nn.Module bias: expected {b_ref:.5f} (within 1e-3), got {b:.5f}"
    assert len(history) == 300 and history[-1] < history[0], f"loss should fall over 300 epochs: {history[0]:.3f} -> {history[-1]:.3f}"


@pytest.mark.task("module-training")
def test_minibatch_adamw_reaches_noise_floor(impl, regression, device):
    X, y, w_ref, _ = regression
    model = impl.LinearModel(X.shape[1]).to(device)
    history = impl.train_model(model, X, y, epochs=15, lr=0.05, batch_size=32, optimizer="adamw")
    assert history[-1] < 0.02, f"AdamW on mini-batches should reach MSE < 0.02 (noise 0.01), got {history[-1]:.4f}"
    w = model.linear.weight.detach().cpu().ravel().numpy()
    assert np.abs(w - w_ref).max() < 0.05, f"weights should be near least squares (0.05), off by {np.abs(w - w_ref).max():.3f}"


# ------------------------------------------------------------------ manual MLP backward

def mlp_inputs(seed=0, N=6, D=3, H=5, O=2):
    g = torch.Generator().manual_seed(seed)
    shapes = [(N, D), (D, H), (H,), (H, O), (O,)]
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]


@pytest.mark.task("mlp-backward")
def test_manual_backward_equals_autograd(impl):
    leaves = [t.clone().requires_grad_(True) for t in mlp_inputs()]
    x, W1, b1, W2, b2 = leaves
    out = torch.tanh(x @ W1 + b1) @ W2 + b2          # the network written out independently
    upstream = torch.randn(out.shape, dtype=torch.float64)
    want = torch.autograd.grad(out, leaves, grad_outputs=upstream)
    _, cache = impl.mlp_forward(*[t.detach() for t in leaves])
    got = impl.mlp_backward(upstream, cache)
    names = ["dx", "dW1", "db1", "dW2", "db2"]
    assert len(got) == 5, f"expected 5 gradients (dx, dW1, db1, dW2, db2), got {len(got)}"
    for name, g, w in zip(names, got, want):
        assert_close_to_reference(g, w, atol=1e-10, rtol=1e-10, what=f"{name} vs autograd (float64)")


@pytest.mark.task("mlp-backward")
def test_manual_backward_passes_gradcheck(impl):
    inputs = [t.requires_grad_(True) for t in mlp_inputs(seed=1)]
    # call the backward once directly: assert_gradients_match reports any RuntimeError (NotImplementedError is
    # one) as a gradient mismatch, which would hide an unfinished TODO
    impl.mlp_backward(torch.ones(6, 2, dtype=torch.float64), impl.mlp_forward(*[t.detach() for t in inputs])[1])
    assert_gradients_match(impl.MLPFunction.apply, inputs)


@pytest.mark.task("mlp-backward")
def test_mse_gradient_and_manual_training(impl):
    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    loss, grad = impl.mse_and_grad(pred.detach(), target)
    ref = torch.nn.functional.mse_loss(pred, target)
    (ref_grad,) = torch.autograd.grad(ref, pred)
    assert math.isclose(float(loss), 1.25, rel_tol=1e-12), f"MSE of errors (1, 0, 0, 2) is 5/4 = 1.25, got {float(loss)}"
    assert torch.allclose(grad, ref_grad), f"dMSE/dpred: expected {ref_grad.tolist()}, got {grad.tolist()}"
    x = torch.linspace(-2, 2, 64, dtype=torch.float64)[:, None]
    _, losses = impl.train_mlp_manual(x, torch.sin(2 * x), hidden=16, steps=300)
    assert losses[-1] < 0.5 * losses[0], f"manual-gradient training should halve the loss: {losses[0]:.3f} -> {losses[-1]:.3f}"


# ------------------------------------------------------------------ timing

@pytest.mark.task("matmul-timing")
def test_matmul_timing_on_cpu(impl):
    assert impl.matmul_gflops(1000, 1.0) == 2.0, "1000^3 multiply-adds = 2e9 FLOPs: 2.0 GFLOP/s in one second"
    seconds = impl.time_matmul(64, "cpu", repeats=3)
    assert isinstance(seconds, float) and 0 < seconds < 10, f"seconds per 64x64 matmul should be positive, got {seconds}"


@pytest.mark.task("matmul-timing")
def test_time_matmul_warms_up_then_averages_the_repeats(impl, monkeypatch):
    # A fake clock that advances exactly one second per matmul: the answer is then exactly 1.0 s per call, and
    # the first clock reading must come after at least one (warm-up) matmul.
    clock = {"now": 0.0, "reads": []}

    def ticking(original):
        def wrapped(*args, **kwargs):
            clock["now"] += 1.0
            return original(*args, **kwargs)
        return wrapped

    def read():
        clock["reads"].append(clock["now"])
        return clock["now"]

    with monkeypatch.context() as patch:
        for owner, name in [(torch.Tensor, "__matmul__"), (torch.Tensor, "matmul"), (torch.Tensor, "mm"),
                            (torch, "matmul"), (torch, "mm")]:
            patch.setattr(owner, name, ticking(getattr(owner, name)))
        for name in ("perf_counter", "monotonic", "time"):
            patch.setattr(time, name, read)
        for name in ("perf_counter_ns", "monotonic_ns", "time_ns"):
            patch.setattr(time, name, lambda: int(read() * 1e9))
        seconds = impl.time_matmul(8, "cpu", repeats=4)
    assert clock["reads"] and clock["reads"][0] >= 1.0, \
        f"warm up with one matmul before starting the clock (matmuls done at the first reading: {clock['reads'][:1]})"
    assert seconds == pytest.approx(1.0), \
        f"4 timed matmuls of 1 s each (fake clock) is 1.0 s per matmul; got {seconds} (total instead of mean? warm-up timed?)"


@pytest.mark.gpu
@pytest.mark.task("matmul-timing")
def test_matmul_timing_on_cuda_synchronizes(impl):
    n = 4096
    seconds = impl.time_matmul(n, "cuda", repeats=10)
    gflops = impl.matmul_gflops(n, seconds)
    # 1 PFLOP/s of float32 is beyond any current GPU: a higher figure means the clock stopped before the work did
    assert 0 < gflops < 1e6, f"{gflops:.0f} GFLOP/s is impossible; time the work, not the asynchronous launch"


@pytest.mark.gpu
@pytest.mark.task("module-training")
def test_cuda_training_matches_cpu(impl, regression):
    X, y, w_ref, _ = regression
    model = impl.LinearModel(X.shape[1]).to("cuda")
    impl.train_model(model, X, y, epochs=300, lr=0.1, batch_size=len(X), optimizer="sgd")
    assert model.linear.weight.device.type == "cuda", "the model should stay on the GPU"
    assert_close_to_reference(model.linear.weight.detach().cpu().ravel(), w_ref, atol=1e-3, rtol=0,
                              what="weights trained on CUDA vs least squares")


def test_bad_inputs_raise_clear_errors(impl):
    with pytest.raises(ValueError, match="optimizer"):
        impl.train_model(torch.nn.Linear(2, 1), torch.zeros(4, 2), torch.zeros(4), optimizer="adam")
    with pytest.raises(ValueError, match="seconds"):
        impl.matmul_gflops(10, 0.0)
    with pytest.raises(ValueError, match="steps"):
        impl.fit_by_autograd(torch.zeros(4, 2), torch.zeros(4), steps=0)
