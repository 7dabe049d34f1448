"""Checks for skip-gram with negative sampling: data pipeline, loss, gradients, training, planted structure."""
import math

import numpy as np
import pytest
import torch

from labkit import checks


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


# ------------------------------------------------------------------ vocabulary

@pytest.mark.task("build-vocab")
def test_vocab_counts_order_and_min_count(impl):
    tokens = "b a c a b d a e e".split()
    vocab = impl.build_vocab(tokens, min_count=2)
    # hand count: a 3, b 2, e 2, c 1, d 1 -> keep a, b, e (b before e: same count, alphabetical)
    assert vocab.words == ["a", "b", "e"], f"expected ['a', 'b', 'e'], got {vocab.words}"
    assert list(vocab.counts) == [3, 2, 2], f"expected counts [3, 2, 2], got {list(vocab.counts)}"
    assert vocab.index == {"a": 0, "b": 1, "e": 2}, f"index should map each word to its row, got {vocab.index}"
    ids = vocab.encode(tokens)
    assert list(ids) == [1, 0, 0, 1, 0, 2, 2], f"encode should drop c and d, got {list(ids)}"


@pytest.mark.task("build-vocab")
def test_vocab_ties_are_alphabetical_not_first_seen(impl):
    vocab = impl.build_vocab("z y y z x".split(), min_count=1)
    # z and y both occur twice; z is seen first, but ties go alphabetically: y, z, then x (once)
    assert vocab.words == ["y", "z", "x"], f"expected ['y', 'z', 'x'], got {vocab.words}"


@pytest.mark.task("build-vocab")
def test_vocab_refuses_bad_min_count(impl):
    with pytest.raises(ValueError):
        impl.build_vocab(["a", "b"], min_count=5)  # nothing survives


# ------------------------------------------------------------------ noise table

@pytest.mark.task("noise-table")
def test_noise_table_follows_unigram_to_the_075(impl):
    counts = np.array([1000, 100, 10, 1, 1])
    size = 100_000
    table = impl.noise_table(counts, size=size)
    assert table.shape == (size,), f"table should have {size} slots, got shape {table.shape}"
    expected = counts ** 0.75 / (counts ** 0.75).sum() * size
    got = np.bincount(table, minlength=len(counts))
    assert np.all(np.abs(got - expected) <= 1.0), f"slots per word {got.tolist()}, expected about " \
                                                  f"{np.round(expected, 1).tolist()} (counts^0.75, normalised)"
    assert np.all(np.diff(table) >= 0), "the table should list word 0's slots first, then word 1's, ..."


@pytest.mark.task("noise-table")
@pytest.mark.parametrize("power, slots", [(1.0, [6, 2]), (0.0, [4, 4])])
def test_noise_table_uses_the_power_given(impl, power, slots):
    # counts 3 and 1 in 8 slots: power 1 keeps the raw shares 3/4, 1/4; power 0 makes them uniform
    table = impl.noise_table(np.array([3, 1]), size=8, power=power)
    got = np.bincount(table, minlength=2).tolist()
    assert got == slots, f"power={power}: expected {slots} slots for counts [3, 1], got {got}"


@pytest.mark.task("noise-table")
def test_noise_table_flattens_the_distribution(impl):
    counts = np.array([10_000, 1])
    table = impl.noise_table(counts, size=10_000)
    share = np.mean(table == 1)
    raw = 1 / 10_001
    assert share > 10 * raw, f"the rare word should get far more than its raw share {raw:.5f}, got {share:.5f}"


# ------------------------------------------------------------------ subsampling

@pytest.mark.task("subsample")
def test_keep_probability_hand_values(impl):
    counts = np.array([900, 90, 9, 1])  # f = 0.9, 0.09, 0.009, 0.001
    keep = impl.keep_probability(counts, t=1e-3)
    expected = [math.sqrt(1 / 900) + 1 / 900, math.sqrt(1 / 90) + 1 / 90, math.sqrt(1 / 9) + 1 / 9, 1.0]
    np.testing.assert_allclose(keep, expected, rtol=1e-9,
                               err_msg="P(keep) = min(1, sqrt(t/f) + t/f) with f = count / total")


@pytest.mark.task("subsample")
def test_subsampling_thins_frequent_words(impl):
    rng = np.random.default_rng(0)
    counts = np.array([9000, 500, 500])
    ids = np.repeat(np.arange(3), counts)
    kept = impl.subsample(ids, impl.keep_probability(counts, t=1e-3), rng)
    share = np.bincount(kept, minlength=3) / len(kept)
    # P(keep) is about 0.034 for word 0 and 0.16 for the others, so word 0 falls from 90% to about 66%
    assert share[0] < 0.75, f"word 0 was 90% of the text; after subsampling it should be about 66%, got {share[0]:.2f}"
    assert abs(share[1] - share[2]) < 0.05, f"words of equal count should keep equal shares, got {share[1:]}"


# ------------------------------------------------------------------ pairs

@pytest.mark.task("skipgram-pairs")
def test_window_one_gives_exact_neighbours(impl):
    centres, contexts = impl.skipgram_pairs(np.array([5, 6, 7]), window=1, rng=np.random.default_rng(0))
    got = sorted(zip(centres.tolist(), contexts.tolist()))
    assert got == [(5, 6), (6, 5), (6, 7), (7, 6)], f"window 1 over [5, 6, 7]: expected the 4 neighbour pairs, got {got}"


@pytest.mark.task("skipgram-pairs")
def test_dynamic_window_shape(impl):
    window, n = 4, 20_000
    centres, contexts = impl.skipgram_pairs(np.arange(n), window=window, rng=np.random.default_rng(0))
    distance = np.abs(centres - contexts)
    assert distance.min() >= 1 and distance.max() <= window, \
        f"distances should lie in 1..{window}, got {distance.min()}..{distance.max()}"
    # each centre uses a contiguous reach r on both sides
    offsets = {}
    for c, o in zip(centres.tolist(), contexts.tolist()):
        offsets.setdefault(c, set()).add(o - c)
    for c in (100, 5000, 12345):
        r = max(abs(x) for x in offsets[c])
        assert offsets[c] == set(range(-r, 0)) | set(range(1, r + 1)), \
            f"centre {c}: offsets {sorted(offsets[c])} are not a full window of reach {r}"
    # reach uniform in 1..w  =>  distance d appears with probability (w - d + 1) / w
    per_d = np.bincount(distance, minlength=window + 1)[1:] / (2 * n)
    expected = np.array([(window - d + 1) / window for d in range(1, window + 1)])
    assert np.allclose(per_d, expected, atol=0.02), \
        f"share of positions using distance d: got {np.round(per_d, 3).tolist()}, expected {expected.tolist()}"


# ------------------------------------------------------------------ NumPy loss and gradients

def _batch(rng, vocab=7, batch=5, k=3):
    return rng.integers(0, vocab, batch), rng.integers(0, vocab, batch), rng.integers(0, vocab, (batch, k))


@pytest.mark.task("sgns-numpy")
@pytest.mark.parametrize("k", [1, 5])
def test_numpy_initial_loss_is_exactly_1_plus_k_ln2(impl, k):
    rng = np.random.default_rng(0)
    centre, context, negatives = _batch(rng, k=k)
    w_in, w_out = rng.normal(size=(7, 4)), np.zeros((7, 4))
    loss = impl.sgns_loss_and_grads(w_in, w_out, centre, context, negatives)[0]
    assert abs(loss - (1 + k) * math.log(2)) < 1e-12, \
        f"zero output vectors: expected (1+{k}) ln 2 = {(1 + k) * math.log(2):.6f}, got {loss:.6f}"


@pytest.mark.task("sgns-numpy")
def test_numpy_gradients_match_finite_differences(impl):
    rng = np.random.default_rng(1)
    centre = np.array([0, 2, 2, 5])                 # a repeated centre
    context = np.array([1, 1, 3, 0])
    negatives = np.array([[4, 6], [0, 1], [6, 6], [2, 3]])  # negatives repeat and overlap contexts

    class NumpySGNS(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w_in, w_out):
            a, b = w_in.detach().numpy(), w_out.detach().numpy()
            loss, g_c, g_o, g_n = impl.sgns_loss_and_grads(a.copy(), b.copy(), centre, context, negatives)
            d_in, d_out = np.zeros_like(a), np.zeros_like(b)
            np.add.at(d_in, centre, g_c)
            np.add.at(d_out, context, g_o)
            np.add.at(d_out, negatives.reshape(-1), g_n.reshape(-1, b.shape[1]))
            ctx.save_for_backward(torch.from_numpy(d_in), torch.from_numpy(d_out))
            return torch.tensor(loss, dtype=torch.float64)

        @staticmethod
        def backward(ctx, grad):
            d_in, d_out = ctx.saved_tensors
            return grad * d_in, grad * d_out

    w_in = torch.tensor(rng.normal(scale=0.7, size=(7, 3)), requires_grad=True)
    w_out = torch.tensor(rng.normal(scale=0.7, size=(7, 3)), requires_grad=True)
    NumpySGNS.apply(w_in, w_out)  # run once outside gradcheck, which turns any RuntimeError into a mismatch
    checks.assert_gradients_match(NumpySGNS.apply, (w_in, w_out))


# ------------------------------------------------------------------ PyTorch model

def _reference_loss(w_in, w_out, centre, context, negatives):
    """Brute force, one pair at a time, float64."""
    total = 0.0
    for c, o, negs in zip(centre, context, negatives):
        total -= math.log(1 / (1 + math.exp(-float(w_in[c] @ w_out[o]))))
        for n in negs:
            total -= math.log(1 / (1 + math.exp(float(w_in[c] @ w_out[n]))))
    return total / len(centre)


@pytest.mark.task("sgns-torch")
@pytest.mark.parametrize("k", [1, 5])
def test_torch_initial_loss_is_exactly_1_plus_k_ln2(impl, k):
    model = impl.SkipGramNS(50, dim=16)
    assert torch.count_nonzero(model.out_emb.weight) == 0, "output vectors should start at zero"
    bound = model.in_emb.weight.abs().max().item()
    assert 0 < bound <= 0.5 / 16, f"input vectors should be uniform in +-0.5/dim = 0.03125, max |w| is {bound:.4f}"
    centre, context, negatives = (torch.as_tensor(a) for a in _batch(np.random.default_rng(0), 50, 32, k))
    loss = model(centre, context, negatives).item()
    assert abs(loss - (1 + k) * math.log(2)) < 1e-6, \
        f"expected (1+{k}) ln 2 = {(1 + k) * math.log(2):.6f} at init (2 ln 2 = 1.3863 for one negative), got {loss:.6f}"


@pytest.mark.task("sgns-torch")
def test_torch_loss_matches_brute_force(impl):
    model = impl.SkipGramNS(9, dim=4, sparse=False).double()
    with torch.no_grad():
        model.in_emb.weight.normal_()
        model.out_emb.weight.normal_()
    centre, context, negatives = _batch(np.random.default_rng(3), 9, 6, 4)
    got = model(*(torch.as_tensor(a) for a in (centre, context, negatives))).item()
    expected = _reference_loss(model.in_emb.weight.detach().numpy(), model.out_emb.weight.detach().numpy(),
                               centre, context, negatives)
    assert abs(got - expected) < 1e-9, f"loss {got:.9f} differs from the pair-by-pair reference {expected:.9f}"


# ------------------------------------------------------------------ training on the planted corpus

@pytest.fixture(scope="module")
def trained(impl):
    corpus = impl.planted_corpus(4000, seed=0)
    vocab = impl.build_vocab(corpus.tokens, min_count=5)
    model, losses = impl.train_torch(vocab.encode(corpus.tokens), vocab, dim=50, window=4, k=5, epochs=3,
                                     batch_size=1024, lr=0.03, seed=0)
    matrix = model.in_emb.weight.detach().double().numpy()
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return corpus, vocab, unit, losses


def _top(vocab, unit, target, exclude, k):
    sims = unit @ (target / np.linalg.norm(target))
    for w in exclude:
        sims[vocab.index[w]] = -np.inf
    order = np.argsort(-sims)
    return [vocab.words[i] for i in order[:k]], sims[order[:k + 1]]


@pytest.mark.task("train-torch")
def test_training_replays_the_canonical_loop(impl):
    # A tiny run replayed step by step with the same seeds and pipeline: zero_grad, loss, backward, step, record.
    tokens = impl.planted_corpus(150, seed=1).tokens
    vocab = impl.build_vocab(tokens, min_count=3)
    ids = vocab.encode(tokens)
    dim, window, k, epochs, batch_size, lr = 8, 2, 3, 2, 256, 0.05
    model, losses = impl.train_torch(ids, vocab, dim=dim, window=window, k=k, epochs=epochs,
                                     batch_size=batch_size, lr=lr, seed=0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    reference = impl.SkipGramNS(len(vocab.words), dim)
    table, keep = impl.noise_table(vocab.counts), impl.keep_probability(vocab.counts, 1e-3)
    optimiser = torch.optim.SparseAdam(reference.parameters(), lr=lr)
    want = []
    for epoch in range(epochs):
        pairs = impl.skipgram_pairs(impl.subsample(ids, keep, rng), window, rng)
        n_steps = math.ceil(len(pairs[0]) / batch_size)
        for step, batch in enumerate(impl.batches(pairs, table, k, batch_size, rng)):
            for group in optimiser.param_groups:
                group["lr"] = lr * max(1e-4, 1.0 - (epoch * n_steps + step) / (epochs * n_steps))
            optimiser.zero_grad()
            loss = reference(*(torch.as_tensor(a) for a in batch))
            loss.backward()
            optimiser.step()
            want.append(loss.item())
    assert len(losses) == len(want), f"expected one loss per step ({len(want)}), got {len(losses)}"
    np.testing.assert_allclose(losses, want, rtol=1e-5, err_msg="per-step losses differ from a plain "
                               "zero_grad / loss / backward / step loop")
    gap = (model.in_emb.weight - reference.in_emb.weight).abs().max().item()
    assert gap < 1e-5, f"trained input vectors differ from the replayed loop's by {gap:.2e}"


@pytest.mark.task("train-torch")
def test_loss_falls(trained):
    _, _, _, losses = trained
    start, end = losses[0], float(np.mean(losses[-20:]))
    assert abs(start - 6 * math.log(2)) < 1e-4, f"first batch loss should be 6 ln 2 = 4.1589 (K=5), got {start:.4f}"
    assert end < 0.65 * start, f"loss should fall well below the start: {start:.3f} -> {end:.3f}"


@pytest.mark.task("train-torch")
def test_planted_neighbours(trained):
    _, vocab, unit, _ = trained
    for word, partner in [("king", "queen"), ("paris", "france"), ("walked", "walk")]:
        top, _ = _top(vocab, unit, unit[vocab.index[word]], [word], k=6)
        assert partner in top, f"{partner!r} should be among the 6 nearest neighbours of {word!r}, got {top}"


@pytest.mark.task("train-torch")
def test_planted_analogies(trained):
    corpus, vocab, unit, _ = trained
    correct = 0
    for a, b, c, d in corpus.analogies:
        ua, ub, uc = (unit[vocab.index[w]] for w in (a, b, c))
        top, _ = _top(vocab, unit, ub - ua + uc, [a, b, c], k=1)
        correct += top[0] == d
    accuracy = correct / len(corpus.analogies)
    assert accuracy >= 0.8, f"3CosAdd accuracy on the planted analogies should be >= 0.80, got {accuracy:.2f}"
    for a, b, c, d in [("man", "king", "woman", "queen"), ("france", "paris", "italy", "rome")]:
        ua, ub, uc = (unit[vocab.index[w]] for w in (a, b, c))
        top, sims = _top(vocab, unit, ub - ua + uc, [a, b, c], k=1)
        assert top[0] == d, f"{a} : {b} :: {c} : ? should give {d!r}, got {top[0]!r}"


@pytest.mark.task("sgns-numpy")
def test_numpy_training_loss_falls(impl):
    corpus = impl.planted_corpus(1500, seed=0)
    vocab = impl.build_vocab(corpus.tokens, min_count=5)
    _, _, losses = impl.train_numpy(vocab.encode(corpus.tokens), vocab, dim=30, epochs=2, batch_size=128, seed=0)
    start, end = losses[0], float(np.mean(losses[-20:]))
    assert abs(start - 6 * math.log(2)) < 1e-9, f"first NumPy loss should be 6 ln 2 = 4.1589, got {start:.4f}"
    assert end < 0.75 * start, f"NumPy SGD loss should fall: {start:.3f} -> {end:.3f}"
