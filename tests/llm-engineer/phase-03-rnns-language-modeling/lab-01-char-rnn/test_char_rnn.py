"""Checks for the char-RNN lab: vocabulary, hand-written BPTT (float64 gradient check), the PyTorch cell against
nn.RNN with copied weights, initial loss ~ ln V, learning, temperature sampling, bpc and perplexity."""
import ast
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from labkit import assets
from labkit.checks import assert_close_to_reference, assert_gradients_match, assert_initial_loss, \
    assert_overfits_batch

PARAM_KEYS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


# ----------------------------------------------------------------------------- vocabulary

@pytest.mark.task("char-vocab")
def test_vocab_is_sorted_characters_and_round_trips(impl):
    text = "to be, or not to be"
    stoi, itos = impl.build_vocab(text)
    assert itos == [" ", ",", "b", "e", "n", "o", "r", "t"], f"expected the sorted distinct characters, got {itos}"
    assert stoi == {ch: i for i, ch in enumerate(itos)}, f"stoi should invert itos, got {stoi}"
    ids = impl.encode("be not", stoi)
    assert ids == [2, 3, 0, 4, 5, 7], f"expected [2, 3, 0, 4, 5, 7] for 'be not', got {ids}"
    assert impl.decode(ids, itos) == "be not"
    assert impl.decode(torch.tensor(ids), itos) == "be not", "decode should accept a 1-D tensor of ids"


@pytest.mark.task("char-vocab")
def test_encode_rejects_unknown_characters(impl):
    stoi, _ = impl.build_vocab("abc")
    with pytest.raises(ValueError):
        impl.encode("abz", stoi)


@pytest.mark.task("char-vocab")
def test_shakespeare_vocab_size(impl):
    text = assets.shakespeare(max_chars=100_000)
    stoi, itos = impl.build_vocab(text)
    assert len(itos) == len(set(text)) and len(stoi) == len(itos), \
        f"expected {len(set(text))} characters, got {len(itos)}"


# ----------------------------------------------------------------------------- NumPy forward and BPTT

def _numpy_case(vocab=6, hidden=5, T=7, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "W_xh": rng.normal(0, 0.5, (hidden, vocab)), "W_hh": rng.normal(0, 0.5, (hidden, hidden)),
        "b_h": rng.normal(0, 0.1, hidden), "W_hy": rng.normal(0, 0.5, (vocab, hidden)),
        "b_y": rng.normal(0, 0.1, vocab),
    }
    xs = rng.integers(0, vocab, T)
    ys = rng.integers(0, vocab, T)
    h0 = rng.normal(0, 0.5, hidden)
    return params, xs, ys, h0


def _torch_reference_loss(params, xs, ys, h0):
    """The same recurrence written with torch ops (float64), for autograd to differentiate."""
    h = h0
    total = 0.0
    for x, y in zip(xs, ys):
        h = torch.tanh(params["W_xh"][:, int(x)] + params["W_hh"] @ h + params["b_h"])
        logits = params["W_hy"] @ h + params["b_y"]
        total = total - torch.log_softmax(logits, dim=0)[int(y)]
    return total / len(xs)


@pytest.mark.task("numpy-forward")
def test_numpy_forward_matches_torch_ops(impl):
    params, xs, ys, h0 = _numpy_case()
    loss, cache = impl.rnn_forward_numpy(params, xs, ys, h0)
    ref = _torch_reference_loss({k: torch.tensor(v) for k, v in params.items()}, xs, ys, torch.tensor(h0))
    assert abs(loss - ref.item()) < 1e-10, f"expected loss {ref.item():.10f}, got {loss:.10f}"
    np.testing.assert_allclose(cache["probs"].sum(axis=1), 1.0, atol=1e-12,
                               err_msg="each row of cache['probs'] should be a distribution")


@pytest.mark.task("numpy-forward")
def test_numpy_forward_hand_case(impl):
    # Zero weights: h stays 0, logits are b_y = 0, so the loss is exactly ln V.
    V, H = 4, 3
    params = {"W_xh": np.zeros((H, V)), "W_hh": np.zeros((H, H)), "b_h": np.zeros(H),
              "W_hy": np.zeros((V, H)), "b_y": np.zeros(V)}
    loss, _ = impl.rnn_forward_numpy(params, [0, 1, 2], [1, 2, 3])
    assert abs(loss - math.log(V)) < 1e-12, f"expected ln 4 = {math.log(V):.6f} with zero weights, got {loss}"


def _reference_cache(params, xs, ys, h0):
    """The forward cache documented in rnn_forward_numpy, computed here so the backward is graded on its own."""
    h = [h0]
    probs = []
    for x in xs:
        h.append(np.tanh(params["W_xh"][:, x] + params["W_hh"] @ h[-1] + params["b_h"]))
        z = params["W_hy"] @ h[-1] + params["b_y"]
        probs.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
    return {"h": np.array(h), "probs": np.array(probs), "inputs": np.asarray(xs), "targets": np.asarray(ys)}


@pytest.mark.task("numpy-backward")
def test_numpy_bptt_matches_autograd(impl):
    params, xs, ys, h0 = _numpy_case(seed=2)
    cache = _reference_cache(params, xs, ys, h0)
    grads = impl.rnn_backward_numpy(params, cache)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    th0 = torch.tensor(h0, requires_grad=True)
    _torch_reference_loss(tparams, xs, ys, th0).backward()
    for key in PARAM_KEYS:
        assert_close_to_reference(grads[key], tparams[key].grad, atol=1e-10, what=f"dL/d{key}")
    assert_close_to_reference(grads["h0"], th0.grad, atol=1e-10, what="dL/dh0")


@pytest.mark.task("numpy-backward")
def test_numpy_bptt_passes_float64_gradcheck(impl):
    """The hand-written backward, wrapped as an autograd Function, against finite differences in float64."""
    _, xs, ys, _ = _numpy_case(vocab=5, hidden=4, T=6, seed=1)

    class HandRNN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            params = {k: t.detach().numpy() for k, t in zip(PARAM_KEYS, tensors[:5])}
            loss, cache = impl.rnn_forward_numpy(params, xs, ys, tensors[5].detach().numpy())
            ctx.grads = impl.rnn_backward_numpy(params, cache)
            return torch.tensor(loss, dtype=torch.float64)

        @staticmethod
        def backward(ctx, grad_out):
            return tuple(grad_out * torch.from_numpy(np.asarray(ctx.grads[k])) for k in (*PARAM_KEYS, "h0"))

    params, _, _, h0 = _numpy_case(vocab=5, hidden=4, T=6, seed=1)
    # run once outside gradcheck so an unfinished function reports itself plainly
    impl.rnn_backward_numpy(params, impl.rnn_forward_numpy(params, xs, ys, h0)[1])
    inputs = [torch.tensor(params[k], requires_grad=True) for k in PARAM_KEYS]
    inputs.append(torch.tensor(h0, requires_grad=True))
    assert_gradients_match(HandRNN.apply, inputs)


# ----------------------------------------------------------------------------- PyTorch cell and model

@pytest.mark.task("rnn-cell")
def test_rnn_cell_matches_torch_rnncell(impl):
    cell = impl.RNNCell(7, 5)
    ref = nn.RNNCell(7, 5)
    ref.load_state_dict(cell.state_dict())
    x, h = torch.randn(3, 7), torch.randn(3, 5)
    assert_close_to_reference(cell(x, h), ref(x, h), atol=1e-6, what="RNNCell output")


@pytest.mark.task("rnn-cell")
def test_solution_does_not_use_torch_rnn_modules(impl):
    out = impl.RNNCell(3, 2)(torch.zeros(1, 3), torch.zeros(1, 2))
    assert out.shape == (1, 2), f"expected a (1, 2) state, got {tuple(out.shape)}"
    tree = ast.parse(Path(impl.__file__).read_text())
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    banned = used & {"RNN", "RNNCell", "LSTM", "GRU"}
    assert not banned, f"the lab builds the recurrence from primitives; found nn.{sorted(banned)} in the file"


@pytest.mark.task("char-rnn")
def test_char_rnn_forward_matches_nn_rnn_with_copied_weights(impl):
    model = impl.CharRNN(vocab_size=11, hidden_size=8, embed_size=6)
    ref = nn.RNN(6, 8, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(model.cell.weight_ih)
        ref.weight_hh_l0.copy_(model.cell.weight_hh)
        ref.bias_ih_l0.copy_(model.cell.bias_ih)
        ref.bias_hh_l0.copy_(model.cell.bias_hh)
    x = torch.randint(0, 11, (4, 9))
    logits, h_last = model(x)
    assert logits.shape == (4, 9, 11), f"expected logits of shape (4, 9, 11), got {tuple(logits.shape)}"
    hs, h_ref = ref(model.embed(x))
    assert_close_to_reference(logits, model.head(hs), atol=1e-5, what="logits vs nn.RNN")
    assert_close_to_reference(h_last, h_ref[0], atol=1e-5, what="last hidden state vs nn.RNN")


@pytest.mark.task("char-rnn")
def test_char_rnn_carries_state_and_is_causal(impl):
    model = impl.CharRNN(vocab_size=11, hidden_size=8, embed_size=6)
    x = torch.randint(0, 11, (2, 10))
    full, _ = model(x)
    first, h = model(x[:, :4])
    rest, _ = model(x[:, 4:], h)
    assert_close_to_reference(torch.cat([first, rest], 1), full, atol=1e-5,
                              what="logits when the sequence is fed in two pieces carrying h")
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 11
    assert_close_to_reference(model(changed)[0][:, :7], full[:, :7], atol=1e-6,
                              what="logits before a change to later characters")


@pytest.mark.task("char-rnn")
def test_initial_loss_is_close_to_ln_vocab(impl):
    text = assets.shakespeare(max_chars=20_000)
    stoi, itos = impl.build_vocab(text)
    data = torch.tensor(impl.encode(text, stoi))
    model = impl.CharRNN(len(itos), hidden_size=64)
    x, y = impl.get_batch(data, 8, 32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(x)
    assert_initial_loss(impl.lm_loss(logits, y).item(), len(itos), tolerance=0.05)


# ----------------------------------------------------------------------------- training

@pytest.mark.task("train-step")
def test_two_train_steps_replayed_by_hand(impl):
    # Two SGD steps with an active clip, replayed on a copy: autograd gradients, the global norm scaled down to
    # `clip` (torch's rule: factor clip / (norm + 1e-6), at most 1), then p -= lr * g. Each step starts from
    # fresh gradients and returns the loss it was taken on.
    torch.manual_seed(0)
    model = impl.CharRNN(vocab_size=10, hidden_size=12, embed_size=6)
    reference = copy.deepcopy(model)
    lr, clip = 0.5, 0.01
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(2):
        x = torch.randint(0, 10, (3, 8))
        y = torch.roll(x, -1, dims=1)
        logits, _ = reference(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        assert norm > clip, "test setup: the clip should be active"
        scale = min(1.0, clip / (norm.item() + 1e-6))
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads):
                p -= lr * scale * g
        got = impl.train_step(model, opt, x, y, clip=clip)
        assert abs(got - loss.item()) < 1e-5, f"step {step}: expected the loss before the update {loss.item():.6f}, got {got:.6f}"
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert_close_to_reference(p, q, atol=1e-6, what=f"{name} after step {step} (zero_grad, clip, then step)")


@pytest.mark.task("train-step")
def test_train_step_overfits_one_batch(impl):
    model = impl.CharRNN(vocab_size=12, hidden_size=32, embed_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    x = torch.randint(0, 12, (4, 12))
    y = torch.roll(x, -1, dims=1)
    assert_overfits_batch(lambda: impl.train_step(model, opt, x, y, clip=1.0), steps=60, target=0.3)


@pytest.mark.task("train-step")
def test_train_step_clips_the_gradient_norm(impl):
    model = impl.CharRNN(vocab_size=12, hidden_size=16, embed_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)   # lr 0: the weights stay, the clipped grads remain
    x = torch.randint(0, 12, (4, 12))
    impl.train_step(model, opt, x, torch.roll(x, -1, 1), clip=1e-3)
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()
    assert norm <= 1e-3 * 1.01, f"expected the global gradient norm clipped to 1e-3, got {norm:.4g}"


@pytest.mark.task("train-step")
def test_loss_falls_on_shakespeare_in_a_small_budget(impl):
    text = assets.shakespeare(max_chars=50_000)
    stoi, itos = impl.build_vocab(text)
    data = torch.tensor(impl.encode(text, stoi))
    model = impl.CharRNN(len(itos), hidden_size=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = [impl.train_step(model, opt, *impl.get_batch(data, 16, 32, gen)) for _ in range(80)]
    start, end = np.mean(losses[:5]), np.mean(losses[-10:])
    assert end < start - 1.0, f"expected the loss to fall by more than 1 nat in 80 steps, got {start:.3f} -> {end:.3f}"


# ----------------------------------------------------------------------------- sampling and metrics

@pytest.mark.task("sampling")
def test_temperature_zero_and_near_zero_are_greedy(impl):
    logits = torch.randn(6, 10)
    expected = logits.argmax(-1)
    assert torch.equal(impl.sample_next(logits, 0.0), expected), "temperature 0 should return the argmax"
    got = impl.sample_next(logits, 1e-4, torch.Generator().manual_seed(0))
    assert torch.equal(got, expected), f"temperature 1e-4 should be (almost surely) greedy: {got} vs {expected}"


@pytest.mark.task("sampling")
def test_sampling_uses_the_generator_given(impl):
    logits = torch.zeros(50, 8)  # uniform: every draw is pure chance
    torch.manual_seed(1)
    first = impl.sample_next(logits, 1.0, torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    second = impl.sample_next(logits, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(first, second), "two generators with the same seed must give the same draws, whatever the " \
                                       "global seed"


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.task("sampling")
def test_sample_frequencies_follow_softmax_over_temperature(impl, temperature):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 20_000
    ids = impl.sample_next(logits.expand(n, -1), temperature, torch.Generator().manual_seed(0))
    assert ids.shape == (n,), f"expected one id per row, shape ({n},), got {tuple(ids.shape)}"
    freq = torch.bincount(ids, minlength=5).double() / n
    expected = torch.softmax(logits.double() / temperature, 0)
    gap = (freq - expected).abs().max().item()
    assert gap < 0.015, f"T={temperature}: frequencies {freq.numpy().round(3)} vs softmax {expected.numpy().round(3)}"


@pytest.mark.task("sampling")
def test_generate_returns_prompt_plus_n_known_characters(impl):
    stoi, itos = impl.build_vocab("abcdef\n")
    model = impl.CharRNN(len(itos), hidden_size=8)
    text = impl.generate(model, "ab", stoi, itos, 20, 0.8, torch.Generator().manual_seed(0))
    assert text.startswith("ab") and len(text) == 22, f"expected the prompt then 20 characters, got {text!r}"
    assert set(text) <= set(itos), f"generated characters outside the vocabulary: {set(text) - set(itos)}"
    greedy = [impl.generate(model, "ab", stoi, itos, 20, 0.0) for _ in range(2)]
    assert greedy[0] == greedy[1], "greedy generation should be deterministic"


@pytest.mark.task("metrics")
def test_bits_per_char_and_perplexity_known_values(impl):
    cases = [(math.log(2), 1.0, 2.0), (math.log(65), math.log2(65), 65.0), (0.0, 0.0, 1.0),
             (1.5897, 1.5897 / math.log(2), math.exp(1.5897))]
    for loss, bpc, ppl in cases:
        assert abs(impl.bits_per_char(loss) - bpc) < 1e-9, f"bpc({loss}) should be {bpc}, got {impl.bits_per_char(loss)}"
        assert abs(impl.perplexity(loss) - ppl) < 1e-9 * ppl, f"ppl({loss}) should be {ppl}, got {impl.perplexity(loss)}"
