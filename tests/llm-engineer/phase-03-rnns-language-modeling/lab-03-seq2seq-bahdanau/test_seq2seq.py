"""Checks for the seq2seq lab: padding masks, a pad-blind encoder (against nn.GRU on each sequence alone),
additive attention (a hand formula, sums to 1, zero on padding), the decoder step, teacher forcing (initial loss
~ ln V, learning on a quick setup), greedy decoding, and beam search (width 1 = greedy, wide = brute force)."""
import datetime as dt
import itertools
import math

import pytest
import torch
import torch.nn as nn

from labkit.checks import assert_close_to_reference, assert_initial_loss


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


def _src_batch(impl, texts):
    """Padded ids and mask built here (not with the learner's pad_batch, so other tasks are graded on their own)."""
    S = max(len(t) for t in texts)
    src = torch.zeros(len(texts), S, dtype=torch.long)
    for row, text in enumerate(texts):
        src[row, :len(text)] = torch.tensor([impl.SRC_STOI[ch] for ch in text])
    return src, src != impl.PAD


def _batch(impl, pairs):
    src, mask = _src_batch(impl, [s for s, _ in pairs])
    tgt = torch.tensor([[impl.TGT_STOI[ch] for ch in iso] + [impl.EOS] for _, iso in pairs])
    tgt_in = torch.cat([torch.full((len(pairs), 1), impl.BOS), tgt[:, :-1]], dim=1)
    return src, mask, tgt_in, tgt


# ----------------------------------------------------------------------------- data and padding

def test_generated_pairs_are_valid_dates(impl):
    """Not graded (the generator is given): seeded, every target an ISO date, weekdays consistent."""
    pairs = impl.random_dates(300, seed=7)
    assert pairs == impl.random_dates(300, seed=7), "the generator should be deterministic for a seed"
    for source, iso in pairs:
        day = dt.date.fromisoformat(iso)
        for name in impl.WEEKDAYS:
            if name[:3] in source:
                assert day.strftime("%A").startswith(name[:3]), f"{source!r} names the wrong weekday for {iso}"
    assert impl.ordinal(1) == "1st" and impl.ordinal(12) == "12th" and impl.ordinal(23) == "23rd"


@pytest.mark.task("padding")
def test_pad_batch_hand_case(impl):
    ids, mask = impl.pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]], f"unexpected padded ids {ids.tolist()}"
    assert mask.dtype == torch.bool, f"the mask should be bool, got {mask.dtype}"
    assert mask.tolist() == [[True] * 3, [True, False, False], [True, True, False]], f"unexpected mask {mask.tolist()}"
    ids, mask = impl.pad_batch([[4], [5, 6, 7]], pad_id=0)             # the longest sequence is not the first
    assert ids.tolist() == [[4, 0, 0], [5, 6, 7]], f"pad to the longest sequence, got {ids.tolist()}"
    assert mask.tolist() == [[True, False, False], [True] * 3], f"unexpected mask {mask.tolist()}"


@pytest.mark.task("padding")
def test_make_batch_on_generated_dates(impl):
    pairs = impl.random_dates(50, seed=3)
    for source, iso in pairs:
        day = dt.date.fromisoformat(iso)
        assert str(day.year) in source or f"{day.year % 100:02d}" in source, f"{source!r} lost the year of {iso}"
    src, mask, tgt_in, tgt_out = impl.make_batch(pairs)
    assert torch.equal(mask.sum(1), torch.tensor([len(s) for s, _ in pairs])), "mask rows should count characters"
    assert (src[~mask] == impl.PAD).all(), "padding positions should hold PAD"
    assert tgt_in[:, 0].eq(impl.BOS).all() and torch.equal(tgt_in[:, 1:], tgt_out[:, :-1]), \
        "tgt_in should be <s> followed by tgt_out shifted right"


# ----------------------------------------------------------------------------- encoder

@pytest.mark.task("encoder")
def test_encoder_ignores_padding_and_matches_gru_on_each_sequence(impl):
    torch.manual_seed(0)
    model = impl.Seq2Seq(hidden=8, embed=6)
    texts = ["3 March 2021", "03/03/21", "Wednesday, the 3rd of March 2021"]
    src, mask = _src_batch(impl, texts)
    outputs, summary, s0 = model.encode(src, mask)
    assert outputs.shape == (3, src.size(1), 16), f"expected outputs (3, S, 2H) = (3, {src.size(1)}, 16), got " \
                                                  f"{tuple(outputs.shape)}"
    assert summary.shape == (3, 16) and s0.shape == (3, 8), f"summary {tuple(summary.shape)}, s0 {tuple(s0.shape)}"
    assert_close_to_reference(s0, torch.tanh(model.bridge(summary)), atol=1e-6, what="s0 = tanh(bridge(summary))")
    for row, text in enumerate(texts):
        alone = src[row:row + 1, :len(text)]
        ref_out, ref_h = model.encoder(model.src_embed(alone))      # the GRU on the sequence with no padding
        assert_close_to_reference(outputs[row, :len(text)], ref_out[0], atol=1e-5, what=f"outputs for {text!r}")
        assert_close_to_reference(summary[row], torch.cat([ref_h[0, 0], ref_h[1, 0]]), atol=1e-5,
                                  what=f"summary for {text!r}")
        if len(text) < src.size(1):
            assert outputs[row, len(text):].abs().max().item() == 0, f"outputs at padding should be zero for {text!r}"


# ----------------------------------------------------------------------------- attention

@pytest.mark.task("additive-attention")
def test_attention_matches_the_additive_formula(impl):
    torch.manual_seed(0)
    attn = impl.AdditiveAttention(query_size=4, key_size=6, attn_size=5)
    q, keys = torch.randn(2, 4), torch.randn(2, 3, 6)
    mask = torch.ones(2, 3, dtype=torch.bool)
    context, weights = attn(q, keys, mask)
    W_q, W_k, b_k, v = attn.W_q.weight, attn.W_k.weight, attn.W_k.bias, attn.v.weight[0]
    for b in range(2):
        scores = torch.stack([v @ torch.tanh(W_q @ q[b] + W_k @ keys[b, j] + b_k) for j in range(3)])
        expected = torch.softmax(scores, 0)
        assert_close_to_reference(weights[b], expected, atol=1e-6, what=f"weights of row {b}")
        assert_close_to_reference(context[b], expected @ keys[b], atol=1e-6, what=f"context of row {b}")


@pytest.mark.task("additive-attention")
def test_attention_sums_to_one_and_ignores_padding(impl):
    torch.manual_seed(0)
    attn = impl.AdditiveAttention(query_size=4, key_size=6, attn_size=5)
    q, keys = torch.randn(3, 4), torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    context, weights = attn(q, keys, mask)
    assert weights.shape == (3, 5) and context.shape == (3, 6), f"shapes {tuple(weights.shape)}, {tuple(context.shape)}"
    assert torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-6), f"weights should sum to 1, got {weights.sum(-1)}"
    assert (weights[~mask] == 0).all(), f"padding positions should get exactly 0 weight, got {weights[~mask]}"
    assert torch.allclose(weights[2, 0], torch.tensor(1.0)), "a single real position should get all the weight"
    changed = keys.clone()
    changed[~mask] = 100.0                                           # garbage in the padding must not leak in
    context2, _ = attn(q, changed, mask)
    assert_close_to_reference(context2, context, atol=1e-6, what="context after changing padded keys")


# ----------------------------------------------------------------------------- decoder step and teacher forcing

@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.task("decoder-step")
def test_decoder_step_follows_the_documented_wiring(impl, attention):
    torch.manual_seed(0)
    model = impl.Seq2Seq(hidden=8, embed=6, attention=attention)
    src, mask = _src_batch(impl, ["3 March 2021", "Mar 3, 2021 and more"])
    enc_out, summary, s0 = model.encode(src, mask)
    prev = torch.tensor([impl.BOS, impl.BOS])
    logits, state, weights = model.decode_step(prev, s0, enc_out, summary, mask)
    emb = model.tgt_embed(prev)
    if attention:
        context, expected_w = model.attn(s0, enc_out, mask)
        assert_close_to_reference(weights, expected_w, atol=1e-6, what="attention weights (from the previous state)")
    else:
        context = summary
        assert weights is None, "without attention the step should return weights=None"
    expected_state = model.decoder(torch.cat([emb, context], -1), s0)
    assert_close_to_reference(state, expected_state, atol=1e-6, what="new decoder state")
    assert_close_to_reference(logits, model.out(torch.cat([expected_state, context, emb], -1)), atol=1e-6,
                              what="logits")


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.task("teacher-forcing")
def test_teacher_forced_shapes_and_initial_loss(impl, attention):
    torch.manual_seed(0)
    model = impl.Seq2Seq(hidden=16, embed=8, attention=attention)
    with torch.no_grad():
        model.out.weight.mul_(0.01)                                  # near-uniform outputs at init
        model.out.bias.zero_()
    src, mask, tgt_in, tgt_out = _batch(impl, impl.random_dates(16, seed=1))
    logits, weights = model(src, mask, tgt_in)
    assert logits.shape == (16, 11, len(impl.TGT_ITOS)), f"expected logits (16, 11, V), got {tuple(logits.shape)}"
    if attention:
        assert weights.shape == (16, 11, src.size(1)), f"expected weights (B, T, S), got {tuple(weights.shape)}"
        assert torch.allclose(weights.sum(-1), torch.ones(16, 11), atol=1e-5), "every step's weights should sum to 1"
        assert (weights.masked_select(~mask.unsqueeze(1)) == 0).all(), "no weight on source padding"
    else:
        assert weights is None, "without attention forward should return weights=None"
    assert_initial_loss(impl.seq_loss(logits, tgt_out).item(), len(impl.TGT_ITOS), tolerance=0.05)


@pytest.mark.task("teacher-forcing")
def test_forward_feeds_the_true_previous_tokens_and_carries_the_state(impl):
    # The teacher-forced logits at step t are those of decode_step fed tgt_in[:, t] and the state left by step t-1.
    torch.manual_seed(0)
    model = impl.Seq2Seq(hidden=8, embed=6, attention=True)
    src, mask, tgt_in, _ = _batch(impl, impl.random_dates(3, seed=4))
    logits, weights = model(src, mask, tgt_in)
    enc_out, summary, state = model.encode(src, mask)
    for t in range(tgt_in.size(1)):
        step_logits, state, step_weights = model.decode_step(tgt_in[:, t], state, enc_out, summary, mask)
        assert_close_to_reference(logits[:, t], step_logits, atol=1e-6, what=f"logits at step {t}")
        assert_close_to_reference(weights[:, t], step_weights, atol=1e-6, what=f"attention weights at step {t}")


@pytest.mark.task("teacher-forcing")
def test_seq_loss_ignores_padding(impl):
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[3, 4, 0], [1, 0, 0]])                   # 0 is <pad>
    keep = targets != 0
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)[keep].mean()
    got = impl.seq_loss(logits, targets)
    assert abs(got.item() - expected.item()) < 1e-6, f"expected the mean over the 3 real tokens {expected:.6f}, got {got}"


@pytest.mark.task("teacher-forcing")
def test_quick_training_lowers_the_loss(impl):
    torch.manual_seed(0)
    model = impl.Seq2Seq(hidden=16, embed=8, attention=True)
    losses = impl.train(model, steps=20, batch=16, lr=1e-2)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.4, f"expected the loss to fall by > 0.4 nats in 20 steps, got {first:.3f} -> {last:.3f}"


# ----------------------------------------------------------------------------- decoding

@pytest.fixture(scope="module")
def small_model(impl):
    torch.manual_seed(0)
    return impl.Seq2Seq(hidden=12, embed=8, attention=True).eval()


@pytest.mark.task("greedy-decode")
def test_greedy_output_is_its_own_teacher_forced_argmax(impl, small_model):
    src, mask, _, _ = _batch(impl, impl.random_dates(6, seed=2))
    tokens, weights = impl.greedy_decode(small_model, src, mask, max_len=11)
    assert tokens.shape == (6, 11), f"expected tokens (6, 11), got {tuple(tokens.shape)}"
    assert weights.shape == (6, 11, src.size(1)), f"expected weights (6, 11, S), got {tuple(weights.shape)}"
    tgt_in = torch.cat([torch.full((6, 1), impl.BOS), tokens[:, :-1]], dim=1)
    with torch.no_grad():
        logits, _ = small_model(src, mask, tgt_in)
    assert torch.equal(logits.argmax(-1), tokens), "feeding the greedy output back with teacher forcing should " \
                                                   "reproduce it as the argmax at every step"


def _toy_step(vocab=4, hidden=3, seed=0):
    """A tiny random recurrent scorer whose next-token distribution depends on the whole history."""
    g = torch.Generator().manual_seed(seed)
    E, W, U = (torch.randn(vocab + 1, hidden, generator=g, dtype=torch.float64),
               torch.randn(hidden, hidden, generator=g, dtype=torch.float64),
               2 * torch.randn(hidden, vocab, generator=g, dtype=torch.float64))

    def step(prev, state):
        new = torch.tanh(state @ W + E[prev])
        return torch.log_softmax(new @ U, dim=-1), new
    return step, torch.zeros(1, hidden, dtype=torch.float64)


def _brute_force(step, state, bos, eos, vocab, max_len):
    best = (None, -math.inf)
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if eos in seq[:-1] or (length < max_len and seq[-1] != eos):
                continue                                             # eos only at the end; short ones must end in eos
            s, prev, total = state, torch.tensor([bos]), 0.0
            for token in seq:
                log_probs, s = step(prev, s)
                total += log_probs[0, token].item()
                prev = torch.tensor([token])
            if total > best[1]:
                best = (list(seq), total)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.task("beam-search")
def test_wide_beam_equals_brute_force(impl, seed):
    step, state = _toy_step(seed=seed)
    bos, eos, vocab, max_len = 4, 0, 4, 4
    expected, expected_score = _brute_force(step, state, bos, eos, vocab, max_len)
    tokens, score = impl.beam_search(step, state, bos, eos, max_len, width=vocab ** max_len)
    assert list(tokens) == expected, f"expected the exhaustive best {expected} ({expected_score:.5f}), got " \
                                     f"{list(tokens)} ({score:.5f})"
    assert abs(score - expected_score) < 1e-9, f"expected score {expected_score:.8f}, got {score:.8f}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.task("beam-search")
def test_width_one_is_greedy_and_wider_is_no_worse_than_exhaustive(impl, seed):
    step, state = _toy_step(seed=seed)
    bos, eos, max_len = 4, 0, 5
    greedy, s, prev = [], state, torch.tensor([bos])
    for _ in range(max_len):
        log_probs, s = step(prev, s)
        token = int(log_probs[0].argmax())
        greedy.append(token)
        if token == eos:
            break
        prev = torch.tensor([token])
    tokens, _ = impl.beam_search(step, state, bos, eos, max_len, width=1)
    assert list(tokens) == greedy, f"width 1 should be greedy: expected {greedy}, got {list(tokens)}"
    _, best = _brute_force(step, state, bos, eos, 4, max_len)
    _, score3 = impl.beam_search(step, state, bos, eos, max_len, width=3)
    assert score3 <= best + 1e-9, f"no beam can beat the exhaustive optimum {best:.5f}, got {score3:.5f}"


@pytest.mark.task("beam-search")
def test_beam_width_one_matches_greedy_decode_on_the_model(impl, small_model):
    for source, _ in impl.random_dates(3, seed=5):
        src, mask = _src_batch(impl, [source])
        tokens, _ = impl.greedy_decode(small_model, src, mask, max_len=11)
        text, _ = impl.beam_decode(small_model, source, width=1)
        assert text == impl.decode_target(tokens[0]), f"{source!r}: beam(1) gave {text!r}, greedy " \
                                                      f"{impl.decode_target(tokens[0])!r}"
