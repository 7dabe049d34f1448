"""Checks for the LSTM/GRU lab: cells equal to torch's with copied weights, the unrolled LM equal to nn.LSTM /
nn.GRU, gradient norms through time against a brute-force restart (and the LSTM advantage on a seeded case),
parameter counts against numel, the budget search against brute force, and perplexity on known cases."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from labkit.checks import assert_close_to_reference


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def _copy_cell(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(dst, name).copy_(getattr(src, name))


# ----------------------------------------------------------------------------- cells

@pytest.mark.task("lstm-cell")
def test_lstm_cell_matches_torch_lstmcell(impl):
    ours = impl.LSTMCell(6, 5)
    ref = nn.LSTMCell(6, 5)
    _copy_cell(ours, ref)
    x, h, c = torch.randn(4, 6), torch.randn(4, 5), torch.randn(4, 5)
    h1, c1 = ours(x, (h, c))
    rh, rc = ref(x, (h, c))
    assert_close_to_reference(h1, rh, atol=1e-6, what="LSTM h'")
    assert_close_to_reference(c1, rc, atol=1e-6, what="LSTM c'")


@pytest.mark.task("lstm-cell")
def test_lstm_cell_hand_case(impl):
    # All weights zero and biases zero: every sigmoid gate is 0.5 and g = 0, so c' = 0.5 c and h' = 0.5 tanh(c').
    cell = impl.LSTMCell(2, 3, forget_bias=0.0)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
    c = torch.tensor([[1.0, -2.0, 0.5]])
    h1, c1 = cell(torch.ones(1, 2), (torch.ones(1, 3), c))
    assert torch.allclose(c1, 0.5 * c), f"expected c' = 0.5 c = {0.5 * c}, got {c1}"
    assert torch.allclose(h1, 0.5 * torch.tanh(0.5 * c)), f"expected h' = 0.5 tanh(c'), got {h1}"


@pytest.mark.task("gru-cell")
def test_gru_cell_matches_torch_grucell(impl):
    ours = impl.GRUCell(6, 5)
    ref = nn.GRUCell(6, 5)
    _copy_cell(ours, ref)
    x, h = torch.randn(4, 6), torch.randn(4, 5)
    assert_close_to_reference(ours(x, h), ref(x, h), atol=1e-6, what="GRU h'")


@pytest.mark.task("gru-cell")
def test_gru_reset_gate_multiplies_the_hidden_bias_too(impl):
    """torch's GRU applies r to (W_hn h + b_hn); moving b_hn outside r changes the output. Only b_hn is set."""
    ours = impl.GRUCell(3, 2)
    ref = nn.GRUCell(3, 2)
    with torch.no_grad():
        for p in ours.parameters():
            p.zero_()
        ours.bias_hh[4:6] = torch.tensor([2.0, -1.0])
        ours.weight_hh[0:2] = torch.eye(2) * 3.0                     # push r away from 0.5 so the bias matters
    _copy_cell(ours, ref)
    x, h = torch.randn(2, 3), torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    assert_close_to_reference(ours(x, h), ref(x, h), atol=1e-6, what="GRU h' with only b_hn and W_hr set")


# ----------------------------------------------------------------------------- unroll

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.task("unroll")
def test_unrolled_lm_matches_torch_sequence_modules(impl, kind):
    model = impl.RecurrentLM(kind, vocab_size=10, hidden_size=7, embed_size=5)
    ref = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](5, 7, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name + "_l0").copy_(getattr(model.cell, name))
    x = torch.randint(0, 10, (3, 8))
    logits = model(x)
    assert logits.shape == (3, 8, 10), f"expected logits (3, 8, 10), got {tuple(logits.shape)}"
    hs, _ = ref(model.embed(x))
    assert_close_to_reference(logits, model.head(hs), atol=1e-5, what=f"{kind} LM logits vs nn.{type(ref).__name__}")


@pytest.mark.task("unroll")
def test_unroll_continues_from_a_given_state(impl):
    cell = nn.LSTMCell(4, 3)
    xs = torch.randn(2, 6, 4)
    full, (h, c) = impl.unroll(cell, xs)
    first, state = impl.unroll(cell, xs[:, :2])
    rest, (h2, c2) = impl.unroll(cell, xs[:, 2:], state)
    assert_close_to_reference(torch.cat([first, rest], 1), full, atol=1e-6, what="hidden states in two pieces")
    assert_close_to_reference(c2, c, atol=1e-6, what="final cell state in two pieces")


@pytest.mark.task("unroll")
def test_unroll_keeps_the_input_dtype(impl):
    cell = nn.GRUCell(3, 4).double()
    xs = torch.randn(2, 5, 3, dtype=torch.float64)
    hs, h = impl.unroll(cell, xs)
    assert hs.shape == (2, 5, 4) and hs.dtype == torch.float64, \
        f"a float64 cell over float64 inputs should give float64 states (2, 5, 4), got {hs.dtype} {tuple(hs.shape)}"


# ----------------------------------------------------------------------------- gradient norms

def _brute_force_grad_norm(cell, xs, t):
    """||dL/dh_t||: run to step t without grad, restart from a leaf h_t (c_t held fixed), differentiate sum(h_T)."""
    lstm = isinstance(cell, nn.LSTMCell)
    h = torch.zeros(xs.size(0), cell.hidden_size, dtype=xs.dtype)
    c = torch.zeros_like(h)
    with torch.no_grad():
        for s in range(t):
            h, c = cell(xs[:, s], (h, c)) if lstm else (cell(xs[:, s], h), c)
    leaf = h.clone().requires_grad_(True)
    h = leaf
    for s in range(t, xs.size(1)):
        h, c = cell(xs[:, s], (h, c)) if lstm else (cell(xs[:, s], h), c)
    (grad,) = torch.autograd.grad(h.sum(), leaf)
    return grad.norm().item()


@pytest.mark.parametrize("cell_class", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
@pytest.mark.task("grad-norms")
def test_grad_norms_match_brute_force(impl, cell_class):
    cell = cell_class(3, 4).double()
    xs = torch.randn(2, 9, 3, dtype=torch.float64)
    norms = np.asarray(impl.grad_norms_through_time(cell, xs))
    assert norms.shape == (10,), f"expected T + 1 = 10 norms (h_0 .. h_T), got shape {norms.shape}"
    assert abs(norms[-1] - math.sqrt(2 * 4)) < 1e-9, f"||dL/dh_T|| for L = sum(h_T) is sqrt(B*H) = " \
                                                     f"{math.sqrt(8):.6f}, got {norms[-1]}"
    for t in (0, 3, 8):
        expected = _brute_force_grad_norm(cell, xs, t)
        assert abs(norms[t] - expected) <= 1e-9 + 1e-7 * expected, f"t={t}: expected {expected:.6e}, got {norms[t]:.6e}"


@pytest.mark.task("grad-norms")
def test_lstm_keeps_gradient_alive_over_long_sequences(impl):
    """Seeded case: T = 150, H = 32, torch's default init with the forget-gate bias raised by 1 (the usual LSTM
    init). The vanilla RNN's gradient at h_0 is many orders of magnitude smaller than the LSTM's."""
    torch.manual_seed(0)
    rnn = nn.RNNCell(16, 32).double()
    lstm = nn.LSTMCell(16, 32).double()
    with torch.no_grad():
        lstm.bias_ih[32:64] += 1.0
    xs = torch.randn(1, 150, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g_rnn = np.asarray(impl.grad_norms_through_time(rnn, xs))
    g_lstm = np.asarray(impl.grad_norms_through_time(lstm, xs))
    assert g_rnn[0] < 1e-20, f"expected the RNN's ||dL/dh_0|| to vanish (< 1e-20), got {g_rnn[0]:.2e}"
    assert g_lstm[0] > 1e6 * g_rnn[0], f"expected the LSTM's gradient at h_0 to exceed the RNN's by > 1e6x, got " \
                                       f"{g_lstm[0]:.2e} vs {g_rnn[0]:.2e}"
    assert g_lstm[50] > 1e3 * g_rnn[50], f"expected the LSTM ahead at t=50 too, got {g_lstm[50]:.2e} vs {g_rnn[50]:.2e}"


# ----------------------------------------------------------------------------- equal compute

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.task("param-budget")
def test_count_params_equals_numel_of_torch_modules(impl, kind):
    for V, H, E in ((65, 1, 32), (65, 100, 32), (17, 23, 8)):
        cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](E, H)
        modules = [nn.Embedding(V, E), cell, nn.Linear(H, V)]
        expected = sum(p.numel() for m in modules for p in m.parameters())
        got = impl.count_params(kind, V, H, E)
        assert got == expected, f"{kind} V={V} H={H} E={E}: expected {expected} parameters, got {got}"


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.task("param-budget")
def test_hidden_for_budget_is_the_largest_that_fits(impl, kind):
    def numel(H):
        cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](32, H)
        return 65 * 32 + sum(p.numel() for p in cell.parameters()) + H * 65 + 65

    for budget in (10_000, 40_000, 123_457):
        H = impl.hidden_for_budget(kind, 65, budget)
        assert numel(H) <= budget < numel(H + 1), \
            f"{kind}, budget {budget}: H={H} gives {numel(H)} params and H+1 gives {numel(H + 1)}"


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.task("param-budget")
def test_hidden_for_budget_accepts_a_budget_met_exactly(impl, kind):
    cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](32, 50)
    exact = 65 * 32 + sum(p.numel() for p in cell.parameters()) + 50 * 65 + 65   # the numel of H = 50, to the unit
    H = impl.hidden_for_budget(kind, 65, exact)
    assert H == 50, f"{kind}: a budget of exactly {exact} parameters fits H = 50 (at most the budget), got H={H}"


@pytest.mark.task("perplexity")
def test_perplexity_of_a_uniform_model_is_the_vocab_size(impl):
    uniform = lambda x: torch.zeros(*x.shape, 13)                   # noqa: E731
    data = torch.randint(0, 13, (500,))
    got = impl.perplexity(uniform, data, seq_len=16)
    assert abs(got - 13) < 1e-4, f"a uniform model over 13 symbols has perplexity 13, got {got}"


@pytest.mark.task("perplexity")
def test_perplexity_is_exp_of_mean_cross_entropy_over_full_windows(impl):
    torch.manual_seed(0)
    table = torch.randn(7, 7)                                        # a bigram model: logits depend on x_t only
    model = lambda x: table[x]                                       # noqa: E731
    data = torch.randint(0, 7, (103,))
    # windows of 10: 10 full windows cover x = data[0:100], y = data[1:101]
    nll = [-torch.log_softmax(table[data[i]], 0)[data[i + 1]].item() for i in range(100)]
    expected = math.exp(sum(nll) / len(nll))
    got = impl.perplexity(model, data, seq_len=10)
    assert abs(got - expected) < 1e-4 * expected, f"expected exp(mean NLL) = {expected:.5f}, got {got:.5f}"
