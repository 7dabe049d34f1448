"""Checks for co-occurrence counts, GloVe and FastText subword vectors."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


# ------------------------------------------------------------------ co-occurrence

@pytest.mark.task("cooccurrence")
def test_cooccurrence_hand_example(impl):
    # "a b c a" with window 2 (a=0, b=1, c=2):
    #   distance 1: a-b, b-c, c-a  (+1 each way);  distance 2: a-c, b-a  (+1/2 each way)
    x = impl.cooccurrence(np.array([0, 1, 2, 0]), vocab_size=3, window=2).toarray()
    expected = np.array([[0.0, 1.5, 1.5],
                         [1.5, 0.0, 1.0],
                         [1.5, 1.0, 0.0]])
    assert np.allclose(x, expected), f"expected\n{expected}\ngot\n{x}"


@pytest.mark.task("cooccurrence")
def test_cooccurrence_matches_brute_force(impl):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, 60)
    window = 3
    expected = np.zeros((6, 6))
    for i in range(len(ids)):
        for j in range(len(ids)):
            if 0 < abs(i - j) <= window:
                expected[ids[i], ids[j]] += 1.0 / abs(i - j)
    got = impl.cooccurrence(ids, vocab_size=6, window=window).toarray()
    assert np.allclose(got, expected), f"largest gap to the pair-by-pair count: {np.abs(got - expected).max():.3f}"


# ------------------------------------------------------------------ GloVe

@pytest.mark.task("glove-weight")
def test_glove_weight_values(impl):
    got = impl.glove_weight(np.array([1.0, 50.0, 100.0, 250.0]))
    expected = [0.01 ** 0.75, 0.5 ** 0.75, 1.0, 1.0]
    assert np.allclose(got, expected), f"f(x) = min(1, (x/100)^0.75): expected {expected}, got {list(got)}"
    assert impl.glove_weight(np.array([5.0]), x_max=10, alpha=1.0)[0] == pytest.approx(0.5)


@pytest.mark.task("glove-loss")
def test_glove_loss_and_gradients_match_autograd(impl):
    rng = np.random.default_rng(1)
    v, d = 6, 4
    w, w_ctx, b, b_ctx = rng.normal(size=(v, d)), rng.normal(size=(v, d)), rng.normal(size=v), rng.normal(size=v)
    rows, cols = np.array([0, 1, 1, 5, 2]), np.array([3, 3, 0, 5, 1])
    x = np.array([3.0, 120.0, 0.5, 40.0, 7.0])
    loss, g_w, g_ctx, g_b, g_bctx = impl.glove_loss_and_grads(w, w_ctx, b, b_ctx, rows, cols, x)

    tw, tc, tb, tbc = (torch.tensor(a, requires_grad=True) for a in (w, w_ctx, b, b_ctx))
    fx = torch.clamp(torch.tensor(x / 100.0) ** 0.75, max=1.0)
    pred = (tw[rows] * tc[cols]).sum(1) + tb[rows] + tbc[cols]
    reference = (fx * (pred - torch.log(torch.tensor(x))) ** 2).sum()
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-10), f"J: expected {reference.item():.6f}, got {loss:.6f}"

    def scatter(shape, index, rows_grad):
        full = np.zeros(shape)
        np.add.at(full, index, rows_grad)
        return full

    for name, got, want in [("w", scatter(w.shape, rows, g_w), tw.grad), ("w~", scatter(w.shape, cols, g_ctx), tc.grad),
                            ("b", scatter(b.shape, rows, g_b), tb.grad), ("b~", scatter(b.shape, cols, g_bctx), tbc.grad)]:
        assert np.allclose(got, want.numpy(), atol=1e-10), f"gradient for {name} differs from autograd's"


@pytest.fixture(scope="module")
def small_corpus(impl):
    corpus = impl.w2v.planted_corpus(3000, seed=0, holdout=impl.HOLDOUT)
    vocab = impl.w2v.build_vocab(corpus.tokens, min_count=5)
    return corpus, vocab, vocab.encode(corpus.tokens)


@pytest.mark.task("adagrad-step")
def test_adagrad_step_by_hand(impl):
    # lr = 0.5. Row 0 appears twice: g_0 = (1, 2) + (2, 0) = (3, 2); sq_0 = (7, 12) + (9, 4) = (16, 16), sqrt = 4;
    # step 0.5 * (3, 2) / 4 = (0.375, 0.25), so row 0 goes (1, 1) -> (0.625, 0.75).
    # Row 1 appears once: g_1 = (0, -4); sq_1 = (1, 0) + (0, 16) = (1, 16); step (0, -0.5): (2, 2) -> (2, 2.5).
    # Row 2 is not in the batch and keeps its values and its squared sums. Every number is a binary fraction,
    # so the comparison is exact.
    param = np.array([[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    sq = np.array([[7.0, 12.0], [1.0, 0.0], [3.0, 3.0]])
    impl.adagrad_rows(param, sq, np.array([0, 1, 0]), np.array([[1.0, 2.0], [0.0, -4.0], [2.0, 0.0]]), lr=0.5)
    want_param = np.array([[0.625, 0.75], [2.0, 2.5], [5.0, 5.0]])
    want_sq = np.array([[16.0, 16.0], [1.0, 16.0], [3.0, 3.0]])
    assert np.array_equal(sq, want_sq), f"squared sums: expected {want_sq.tolist()}, got {sq.tolist()}"
    assert np.array_equal(param, want_param), f"parameters: expected {want_param.tolist()}, got {param.tolist()}"


def _adagrad_index_add(param, sq, index, grad, lr):
    """The reference: torch's index_add_ sums repeated rows; the AdaGrad rule on the full table."""
    g = torch.zeros(param.shape, dtype=torch.float64).index_add_(0, torch.as_tensor(index), torch.as_tensor(grad))
    g = g.numpy()
    sq += g**2
    param -= lr * g / np.sqrt(sq)


def _adagrad_loop(param, sq, index, grad, lr):
    """The other reference: a Python loop over the entries, then one step per distinct row."""
    summed = {}
    for i, g in zip(index.tolist(), grad):
        summed[i] = summed.get(i, 0.0) + g
    for i, g in summed.items():
        sq[i] += g**2
        param[i] -= lr * g / np.sqrt(sq[i])


@pytest.mark.task("adagrad-step")
@pytest.mark.parametrize("shape", [(6, 3), (6,)], ids=["vectors", "biases"])
def test_adagrad_step_matches_index_add_and_a_loop_over_two_batches(impl, shape):
    rng = np.random.default_rng(11)
    param0, sq0 = rng.normal(size=shape), 1.0 + rng.uniform(size=shape)
    got = [param0.copy(), sq0.copy()]
    ref_torch = [param0.copy(), sq0.copy()]
    ref_loop = [param0.copy(), sq0.copy()]
    for step in range(2):  # the second batch must see the squared sums the first one left
        index = rng.integers(0, 5, size=9)  # 9 cells over rows 0..4: repeats, and row 5 never touched
        grad = rng.normal(size=(9,) + shape[1:])
        impl.adagrad_rows(*got, index, grad, 0.1)
        _adagrad_index_add(*ref_torch, index, grad, 0.1)
        _adagrad_loop(*ref_loop, index, grad, 0.1)
        for name, ref in (("index_add_", ref_torch), ("a loop over entries", ref_loop)):
            assert np.allclose(got[1], ref[1], rtol=0, atol=1e-12), \
                f"step {step + 1}: squared sums differ from {name} by {np.abs(got[1] - ref[1]).max():.2e}"
            assert np.allclose(got[0], ref[0], rtol=0, atol=1e-12), \
                f"step {step + 1}: parameters differ from {name} by {np.abs(got[0] - ref[0]).max():.2e}"
    assert np.array_equal(got[0][5], param0[5]) and np.array_equal(got[1][5], sq0[5]), "row 5 was never in a batch"


@pytest.mark.task("glove-train")
def test_glove_adagrad_steps_replayed_with_autograd(impl):
    # Two epochs of small batches on a 5-word matrix, replayed with torch gradients of J on the full tables and
    # the AdaGrad rule (squared sums start at 1, accumulate g^2, then step lr * g / sqrt(sum)). Words repeat
    # within a batch, so their row gradients must add up.
    ids = np.array([0, 1, 2, 0, 3, 1, 0, 4, 2, 0, 1, 3])
    x = impl.cooccurrence(ids, vocab_size=5, window=2)
    dim, lr, batch_size, epochs, seed = 3, 0.05, 6, 2, 0
    got, history = impl.train_glove(x, dim=dim, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)

    rng = np.random.default_rng(seed)
    coo = x.tocoo()
    rows, cols, vals = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    params = [rng.uniform(-0.5, 0.5, (5, dim)) / dim, rng.uniform(-0.5, 0.5, (5, dim)) / dim, np.zeros(5), np.zeros(5)]
    sq_sums = [np.ones_like(p) for p in params]
    for _ in range(epochs):
        order = rng.permutation(len(vals))
        for start in range(0, len(order), batch_size):
            sel = order[start:start + batch_size]
            w, wc, b, bc = (torch.tensor(p, requires_grad=True) for p in params)
            r, c, xs = rows[sel], cols[sel], torch.tensor(vals[sel])
            fx = torch.clamp(xs / 100.0, max=1.0) ** 0.75
            J = (fx * ((w[r] * wc[c]).sum(1) + b[r] + bc[c] - torch.log(xs)) ** 2).sum()
            grads = torch.autograd.grad(J, (w, wc, b, bc))
            for param, sq, grad in zip(params, sq_sums, grads):
                sq += grad.numpy() ** 2
                param -= lr * grad.numpy() / np.sqrt(sq)
    want = params[0] + params[1]
    assert len(history) == epochs, f"expected one loss per epoch ({epochs}), got {len(history)}"
    assert np.allclose(got, want, atol=1e-12), f"vectors after {epochs} epochs differ from the replayed AdaGrad " \
                                               f"steps by {np.abs(got - want).max():.2e}"


@pytest.mark.task("glove-train")
def test_glove_fits_and_recovers_structure(impl, small_corpus):
    corpus, vocab, ids = small_corpus
    x = impl.cooccurrence(ids, len(vocab.words), window=4)
    vectors, history = impl.train_glove(x, dim=30, epochs=15, seed=0)
    assert history[-1] < 0.2 * history[0], f"weighted loss per cell should fall by 80%: {history[0]:.3f} -> {history[-1]:.3f}"
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    model = [float(unit[vocab.index[a]] @ unit[vocab.index[b]]) for a, b, _ in corpus.similarity]
    rho = spearmanr(model, [g for _, _, g in corpus.similarity]).statistic
    assert rho > 0.3, f"cosines should rank the planted pairs (shared attributes) with Spearman > 0.3, got {rho:.3f}"
    pairs = [("king", "queen"), ("man", "woman"), ("paris", "berlin"), ("france", "paris")]
    unrelated = [("king", "paris"), ("woman", "germany"), ("berlin", "queen"), ("italy", "boy")]
    close = np.mean([unit[vocab.index[a]] @ unit[vocab.index[b]] for a, b in pairs])
    far = np.mean([unit[vocab.index[a]] @ unit[vocab.index[b]] for a, b in unrelated])
    assert close > far + 0.2, f"pairs sharing an attribute should be closer ({close:.2f}) than unrelated ones ({far:.2f})"


# ------------------------------------------------------------------ FastText subwords

@pytest.mark.task("subword-ngrams")
def test_char_ngrams_of_where(impl):
    assert impl.char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    grams = impl.char_ngrams("where", 3, 6)
    # "<where>" has 7 characters: 5 trigrams + 4 four-grams + 3 five-grams + 2 six-grams
    assert len(grams) == 14, f"expected 14 n-grams of '<where>' for n = 3..6, got {len(grams)}: {grams}"
    assert {"<where", "where>", "<whe", "ere>"} <= set(grams) and "<where>" not in grams, \
        f"n-grams should include '<where' and 'where>' but not the 7-character '<where>': {grams}"


@pytest.mark.task("ngram-hash")
def test_fnv1a_known_values(impl):
    # published FNV-1a 32-bit test vectors
    for text, expected in [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)]:
        got = impl.fnv1a_32(text)
        assert got == expected, f"FNV-1a({text!r}) should be {expected:#010x}, got {got:#x}"
    # non-ASCII text hashes its UTF-8 bytes: "é" is C3 A9. Worked step by step:
    #   (0x811C9DC5 ^ 0xC3) * 16777619 mod 2^32 = 0x460B3072;  (0x460B3072 ^ 0xA9) * 16777619 mod 2^32 = 0x1E9DE8C1
    got = impl.fnv1a_32("é")
    assert got == 0x1E9DE8C1, f"FNV-1a('é') hashes its UTF-8 bytes C3 A9: expected 0x1e9de8c1, got {got:#x}"


@pytest.mark.task("ngram-hash")
def test_subword_ids_layout(impl):
    index = {"where": 0, "here": 1}
    known = impl.subword_ids("where", index, buckets=100)
    unknown = impl.subword_ids("wherever", index, buckets=100)
    assert known[0] == 0 and len(known) == 15, f"a known word: its own row, then 14 n-gram rows; got {known}"
    assert all(2 <= i < 102 for i in known[1:] + unknown), "n-gram rows live in [V, V + buckets)"
    assert len(unknown) == len(impl.char_ngrams("wherever")), "an unknown word has n-gram rows only"
    assert known[1] == 2 + 0x3E79C4E4 % 100, "the first n-gram '<wh' goes to row V + FNV-1a('<wh') mod buckets"


@pytest.fixture(scope="module")
def fasttext(impl, small_corpus):
    corpus, vocab, ids = small_corpus
    model, losses = impl.train_fasttext(ids, vocab, dim=40, buckets=20_000, epochs=2, batch_size=1024, lr=0.03, seed=0)
    return model, losses, vocab, corpus


@pytest.mark.task("fasttext-model")
def test_fasttext_initial_loss_and_bags(impl, small_corpus):
    _, vocab, _ = small_corpus
    model = impl.FastTextSG(vocab, buckets=500, dim=8)
    centre, context = torch.tensor([0, 5, 9]), torch.tensor([1, 2, 3])
    negatives = torch.tensor([[4, 5, 6], [7, 8, 9], [1, 1, 1]])
    loss = model(centre, context, negatives).item()
    assert abs(loss - 4 * math.log(2)) < 1e-6, f"zero output vectors: expected 4 ln 2 = {4 * math.log(2):.4f}, got {loss:.4f}"
    word = vocab.words[9]
    rows = [vocab.index[word]] + [len(vocab.words) + impl.fnv1a_32(g) % 500 for g in impl.char_ngrams(word)]
    expected = model.inputs.weight.detach()[rows].mean(0)
    got = model.centre_vectors(torch.tensor([9]))[0].detach()
    assert torch.allclose(got, expected, atol=1e-6), f"the centre vector of {word!r} should be the mean of its word " \
                                                     "row and its n-gram rows"


@pytest.mark.task("fasttext-model")
def test_fasttext_loss_falls(fasttext):
    _, losses, _, _ = fasttext
    assert np.mean(losses[-10:]) < 0.7 * losses[0], f"loss should fall: {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}"


@pytest.mark.task("fasttext-model")
def test_oov_words_land_next_to_their_morphology(impl, fasttext):
    model, _, vocab, corpus = fasttext
    words = [w for w in vocab.words if w in corpus.entities]  # the planted words: verb forms, people, places
    matrix = np.vstack([model.word_vector(w) for w in words])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    for oov, stem in [("painting", "paint"), ("cooked", "cook"), ("visits", "visit"), ("jumper", "jump")]:
        assert oov not in vocab.index, f"{oov!r} must be out of vocabulary for this test"
        q = model.word_vector(oov)
        assert np.linalg.norm(q) > 0, f"an OOV word should get a non-zero vector from its n-grams ({oov!r})"
        top = [words[i] for i in np.argsort(-(unit @ (q / np.linalg.norm(q))))[:2]]
        assert all(w.startswith(stem) for w in top), \
            f"among the planted words, the 2 nearest to OOV {oov!r} should be forms of {stem!r}, got {top}"


@pytest.mark.task("fasttext-model")
def test_comparison_table_covers_three_models(impl):
    rows, models, _ = impl.compare(n_sentences=600, epochs=1, dim=16, glove_epochs=5)
    names = [r["model"] for r in rows]
    assert len(rows) == 3 and names[0] == "skip-gram", f"expected rows for skip-gram, GloVe and FastText, got {names}"
    covered = [int(r["analogies"].split("/")[0]) for r in rows]
    assert covered[2] > covered[0] == covered[1], \
        f"only FastText can answer questions about held-out words: covered {covered} ({[r['analogies'] for r in rows]})"
