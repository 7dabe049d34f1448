"""Checks for the sampling lab. References: transformers' logits processors and `generate` on a tiny random
Llama, brute-force search over every continuation, hand-computed cases and distribution properties."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (LlamaConfig, LlamaForCausalLM, LogitsProcessorList, MinPLogitsWarper,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

V = 97

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def random_logits(rows=4, vocab=50, seed=0, scale=3.0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def random_ids(rows=4, length=12, vocab=50, seed=1):
    return torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(seed))


def assert_same_logits(ours, theirs, what):
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs transformers' {tuple(theirs.shape)}"
    kept_ours, kept_theirs = torch.isfinite(ours), torch.isfinite(theirs)
    assert torch.equal(kept_ours, kept_theirs), (
        f"{what}: kept tokens per row {kept_ours.sum(-1).tolist()}, transformers keeps {kept_theirs.sum(-1).tolist()}")
    assert torch.allclose(ours[kept_ours], theirs[kept_theirs], atol=1e-6), f"{what}: kept logits differ"


# ---------------------------------------------------------------- greedy, temperature, sampling

@pytest.mark.task("temperature-greedy")
def test_greedy_is_argmax_and_temperature_matches_transformers(impl):
    logits = random_logits()
    assert torch.equal(impl.greedy(logits), torch.argmax(logits, dim=-1))
    for t in (0.3, 1.0, 2.5):
        assert_same_logits(impl.apply_temperature(logits, t), TemperatureLogitsWarper(t)(random_ids(), logits),
                           f"temperature {t}")


@pytest.mark.task("temperature-greedy")
def test_temperature_near_zero_samples_the_argmax(impl):
    logits = random_logits(rows=64)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        drawn = impl.sample(impl.apply_temperature(logits, 1e-4), g)
        assert torch.equal(drawn, logits.argmax(-1)), "with T -> 0 every draw should be the argmax"


@pytest.mark.task("temperature-greedy")
def test_sample_frequencies_follow_the_softmax(impl):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, float("-inf")])
    draws = impl.sample(logits.expand(20000, -1), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    expected = F.softmax(logits.double(), dim=-1)
    assert freq[4] == 0, "a token with logit -inf was drawn"
    assert torch.allclose(freq, expected, atol=0.015), f"frequencies {freq.tolist()} vs softmax {expected.tolist()}"


@pytest.mark.task("temperature-greedy")
def test_sample_repeats_with_the_same_seeded_generator(impl):
    logits = random_logits(rows=64, scale=0.5)  # flat rows: each draw has many likely outcomes
    first = impl.sample(logits, torch.Generator().manual_seed(11))
    torch.rand(3)  # move the global RNG: a draw from a seeded generator must not depend on it
    second = impl.sample(logits, torch.Generator().manual_seed(11))
    assert torch.equal(first, second), "two draws with generators seeded alike differ: use the generator argument"


@pytest.mark.task("temperature-greedy")
@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-8, 8), min_size=2, max_size=20), st.floats(0.1, 3.0), st.floats(1.01, 3.0))
def test_higher_temperature_never_lowers_entropy(impl, values, t_low, factor):
    logits = torch.tensor(values, dtype=torch.float64)
    entropy = lambda z: -(F.softmax(z, -1) * F.log_softmax(z, -1)).sum().item()
    low = entropy(impl.apply_temperature(logits, t_low))
    high = entropy(impl.apply_temperature(logits, t_low * factor))
    assert high >= low - 1e-9, f"entropy went down from {low} to {high} when T rose {t_low} -> {t_low * factor}"


def test_temperature_refuses_zero(impl):
    with pytest.raises(ValueError):
        impl.apply_temperature(random_logits(), 0.0)


# ---------------------------------------------------------------- top-k and min-p

@pytest.mark.task("top-k-min-p")
@pytest.mark.parametrize("k", [1, 5, 20, 80])
def test_top_k_keeps_exactly_k_and_matches_transformers(impl, k):
    logits = random_logits()
    out = impl.top_k_filter(logits, k)
    kept = torch.isfinite(out).sum(-1)
    assert kept.tolist() == [min(k, 50)] * 4, f"top-{k} should keep {min(k, 50)} tokens per row, kept {kept.tolist()}"
    assert_same_logits(out, TopKLogitsWarper(top_k=k)(random_ids(), logits.clone()), f"top-k {k}")


@pytest.mark.task("top-k-min-p")
def test_top_k_keeps_exactly_k_when_the_kth_logit_is_tied(impl):
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.0]])  # top-2: the 3.0 and one of the two 2.0s
    kept = torch.isfinite(impl.top_k_filter(logits, 2))[0]
    assert kept.sum() == 2, f"top-2 with a tie at the 2nd value should keep exactly 2 tokens, kept {kept.tolist()}"
    assert kept[1] and (kept[2] ^ kept[3]), f"expected the 3.0 and one of the tied 2.0s, kept {kept.tolist()}"


@pytest.mark.task("top-k-min-p")
def test_min_p_keeps_tokens_exactly_at_the_threshold(impl):
    # min_p = 1 keeps every token as likely as the top one: here two tied tokens sit exactly on the threshold
    logits = torch.tensor([[2.0, 0.5, 2.0, 1.0]])
    out = impl.min_p_filter(logits, 1.0)
    assert torch.isfinite(out)[0].tolist() == [True, False, True, False], \
        f"min-p 1.0 should keep both tokens tied for the top, kept {torch.isfinite(out)[0].tolist()}"
    assert_same_logits(out, MinPLogitsWarper(min_p=1.0)(random_ids(1), logits.clone()), "min-p 1.0 with a tie")


@pytest.mark.task("top-k-min-p")
@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.3, 0.9])
def test_min_p_threshold_is_relative_to_the_top_probability(impl, min_p):
    logits = random_logits()
    out = impl.min_p_filter(logits, min_p)
    probs = F.softmax(logits, dim=-1)
    should_keep = probs >= min_p * probs.max(-1, keepdim=True).values
    assert torch.equal(torch.isfinite(out), should_keep), f"min-p {min_p}: wrong set of tokens kept"
    assert_same_logits(out, MinPLogitsWarper(min_p=min_p)(random_ids(), logits.clone()), f"min-p {min_p}")


# ---------------------------------------------------------------- top-p

@pytest.mark.task("top-p")
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(impl, p):
    logits = random_logits(rows=8)
    assert_same_logits(impl.top_p_filter(logits, p), TopPLogitsWarper(top_p=p)(random_ids(8), logits.clone()),
                       f"top-p {p}")


@pytest.mark.task("top-p")
@pytest.mark.parametrize("p,n_kept", [(0.25, 1), (0.5, 2), (0.75, 3)])
def test_top_p_stops_when_the_mass_reaches_p_exactly(impl, p, n_kept):
    # four equal tokens of probability 0.25 (exact in binary): mass p is reached after exactly 4p tokens
    logits = torch.zeros(1, 4)
    out = impl.top_p_filter(logits, p)
    assert int(torch.isfinite(out).sum()) == n_kept, \
        f"top-p {p} over four tokens of 0.25 should keep {n_kept}, kept {int(torch.isfinite(out).sum())}"
    theirs = TopPLogitsWarper(top_p=p)(random_ids(1), logits.clone())
    assert int(torch.isfinite(theirs).sum()) == n_kept, "test setup: transformers keeps another count"


@pytest.mark.task("top-p")
@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=1, max_size=30), st.floats(0.05, 1.0))
def test_top_p_keeps_the_smallest_set_with_enough_mass(impl, values, p):
    logits = torch.tensor(values)
    kept = torch.isfinite(impl.top_p_filter(logits[None], p)[0])
    probs = F.softmax(logits.double(), dim=-1)
    mass = probs[kept].sum().item()
    assert kept.any(), "top-p must keep at least one token"
    assert mass >= p - 1e-5, f"kept mass {mass:.4f} is below p={p}"
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max() - 1e-7, "a dropped token is more likely than a kept one"
    if kept.sum() > 1:
        assert mass - probs[kept].min().item() < p + 1e-5, f"not minimal: the set still has mass >= p={p} " \
                                                           "without its least likely token"


@pytest.mark.task("top-p")
def test_top_p_of_one_is_plain_sampling(impl):
    logits = random_logits()
    assert torch.equal(impl.top_p_filter(logits, 1.0), logits), "top-p 1.0 should leave the logits unchanged"


# ---------------------------------------------------------------- repetition penalty

@pytest.mark.task("repetition-penalty")
@pytest.mark.parametrize("penalty", [0.8, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(impl, penalty):
    logits, ids = random_logits(), random_ids()
    ours = impl.repetition_penalty(logits.clone(), ids, penalty)
    theirs = RepetitionPenaltyLogitsProcessor(penalty=penalty)(ids, logits.clone())
    assert torch.allclose(ours, theirs, atol=1e-6), f"penalty {penalty}: max gap {(ours - theirs).abs().max():.2e}"


@pytest.mark.task("repetition-penalty")
def test_repetition_penalty_lowers_seen_tokens_only(impl):
    logits, ids = random_logits(rows=1), torch.tensor([[3, 7, 7, 11]])
    out = impl.repetition_penalty(logits.clone(), ids, 1.5)
    before, after = F.softmax(logits, -1)[0], F.softmax(out, -1)[0]
    assert all(after[t] < before[t] for t in (3, 7, 11)), "seen tokens should become less likely"
    unseen = [t for t in range(50) if t not in (3, 7, 11)]
    assert torch.equal(out[0, unseen], logits[0, unseen]), "unseen tokens' logits must not change"


# ---------------------------------------------------------------- generation loop vs transformers.generate

def transformers_processors(settings_):
    """The same processors from transformers, in the order its generate() applies them."""
    procs = []
    if settings_.get("rep_penalty"):
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=settings_["rep_penalty"]))
    if settings_.get("temperature"):
        procs.append(TemperatureLogitsWarper(settings_["temperature"]))
    if settings_.get("top_k"):
        procs.append(TopKLogitsWarper(top_k=settings_["top_k"]))
    if settings_.get("top_p"):
        procs.append(TopPLogitsWarper(top_p=settings_["top_p"]))
    if settings_.get("min_p"):
        procs.append(MinPLogitsWarper(min_p=settings_["min_p"]))
    return LogitsProcessorList(procs)


@pytest.mark.task("generate-loop")
@pytest.mark.parametrize("settings_", [dict(temperature=2.0, min_p=0.1), dict(temperature=0.5, top_p=0.8),
                                       dict(rep_penalty=1.3, temperature=0.7, top_k=12, top_p=0.9, min_p=0.05)])
def test_process_logits_chains_like_transformers(impl, settings_):
    logits, ids = random_logits(), random_ids()
    ours = impl.process_logits(logits.clone(), ids, **settings_)
    assert_same_logits(ours, transformers_processors(settings_)(ids, logits.clone()), f"process_logits {settings_}")


@pytest.mark.task("generate-loop")
def test_greedy_generation_matches_transformers(impl, tiny_llama):
    prompt = torch.randint(1, V, (2, 5), generator=torch.Generator().manual_seed(3))
    theirs = tiny_llama.generate(prompt, do_sample=False, max_new_tokens=10)
    ours = impl.generate(tiny_llama, prompt, 10)
    assert ours.shape == (2, 15), f"expected (2, 15) ids, got {tuple(ours.shape)}"
    assert torch.equal(ours, theirs), f"greedy tokens differ from transformers:\n{ours.tolist()}\n{theirs.tolist()}"
    theirs = tiny_llama.generate(prompt, do_sample=False, max_new_tokens=10, repetition_penalty=1.8)
    assert torch.equal(impl.generate(tiny_llama, prompt, 10, rep_penalty=1.8), theirs), \
        "greedy with a repetition penalty differs from transformers"


@pytest.mark.task("generate-loop")
@pytest.mark.parametrize("settings_", [dict(temperature=0.8, top_k=10), dict(top_p=0.8),
                                       dict(min_p=0.2, temperature=1.3), dict(rep_penalty=1.5, top_p=0.9)])
def test_seeded_sampling_matches_transformers(impl, tiny_llama, settings_):
    prompt = torch.randint(1, V, (2, 5), generator=torch.Generator().manual_seed(4))
    hf = {("repetition_penalty" if k == "rep_penalty" else k): v for k, v in settings_.items()}
    for seed in range(2):
        torch.manual_seed(seed)
        theirs = tiny_llama.generate(prompt, do_sample=True, max_new_tokens=8, **{"top_k": 0, **hf})
        torch.manual_seed(seed)
        ours = impl.generate(tiny_llama, prompt, 8, do_sample=True, **settings_)
        assert torch.equal(ours, theirs), f"{settings_}, seed {seed}: tokens differ from transformers " \
                                          f"(same processors, same RNG):\n{ours.tolist()}\n{theirs.tolist()}"


# ---------------------------------------------------------------- beam search

def bigram(vocab=4, seed=0):
    table = torch.log_softmax(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * 2, -1)
    return lambda seqs: table[seqs[:, -1]], table


@pytest.mark.task("beam-search")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_brute_force(impl, seed):
    fn, table = bigram(seed=seed)
    prompt, steps = torch.tensor([0]), 4
    best, best_score = None, -math.inf
    for cont in itertools.product(range(4), repeat=steps):
        seq = (0,) + cont
        score = sum(table[a, b].item() for a, b in zip(seq, seq[1:]))
        if score > best_score:
            best, best_score = seq, score
    tokens, score = impl.beam_search(fn, prompt, num_beams=4 ** (steps - 1), max_new_tokens=steps)
    assert tuple(tokens.tolist()) == best, f"beam search found {tokens.tolist()}, the best sequence is {list(best)}"
    assert score == pytest.approx(best_score, abs=1e-5)


@pytest.mark.task("beam-search")
def test_beam_of_one_is_greedy(impl):
    fn, table = bigram(vocab=6, seed=5)
    seq = [2]
    for _ in range(5):
        seq.append(int(table[seq[-1]].argmax()))
    tokens, _ = impl.beam_search(fn, torch.tensor([2]), num_beams=1, max_new_tokens=5)
    assert tokens.tolist() == seq, f"beam 1 gave {tokens.tolist()}, greedy gives {seq}"


@pytest.mark.task("beam-search")
@pytest.mark.parametrize("num_beams", [2, 4])
def test_beam_search_matches_transformers(impl, tiny_llama, num_beams):
    prompt = torch.randint(1, V, (1, 5), generator=torch.Generator().manual_seed(6))
    theirs = tiny_llama.generate(prompt, do_sample=False, num_beams=num_beams, max_new_tokens=6)
    log_probs = lambda seqs: F.log_softmax(tiny_llama(input_ids=seqs).logits[:, -1].float(), dim=-1)
    with torch.no_grad():
        ours, _ = impl.beam_search(log_probs, prompt[0], num_beams, 6)
    assert ours.tolist() == theirs[0].tolist(), f"beam {num_beams}: {ours.tolist()} vs transformers " \
                                                f"{theirs[0].tolist()}"


# ---------------------------------------------------------------- contrastive search

@pytest.mark.task("contrastive-search")
def test_contrastive_scores_by_hand(impl):
    probs = torch.tensor([0.6, 0.3])
    cand = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # cosine ignores the length of a vector
    ctx = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    got = impl.contrastive_scores(probs, cand, ctx, alpha=0.5)
    expected = torch.tensor([0.5 * 0.6 - 0.5 * 1.0, 0.5 * 0.3 - 0.5 / math.sqrt(2)])
    assert torch.allclose(got, expected, atol=1e-6), f"expected {expected.tolist()}, got {got.tolist()}"


@torch.no_grad()
def reference_contrastive_search(model, ids, steps, k, alpha):
    """Su et al.'s rule one candidate at a time in float64: run the context plus that candidate through the model,
    compare the candidate's last-layer state with every context state by cosine. Returns (ids, smallest gap
    between the best and second-best score, which tells how safe the comparison is)."""
    gaps = []
    for _ in range(steps):
        out = model(input_ids=ids, output_hidden_states=True)
        probs = F.softmax(out.logits[0, -1].double(), dim=-1)
        context = out.hidden_states[-1][0].double()  # (T, d)
        top_probs, top_ids = probs.topk(k)
        scores = []
        for prob, token in zip(top_probs, top_ids):
            extended = torch.cat([ids, token.view(1, 1)], dim=-1)
            state = model(input_ids=extended, output_hidden_states=True).hidden_states[-1][0, -1].double()
            similarity = F.cosine_similarity(state[None], context, dim=-1).max()
            scores.append(((1 - alpha) * prob - alpha * similarity).item())
        ranked = sorted(range(k), key=lambda i: -scores[i])
        gaps.append(scores[ranked[0]] - scores[ranked[1]])
        ids = torch.cat([ids, top_ids[ranked[0]].view(1, 1)], dim=-1)
    return ids, min(gaps)


@pytest.mark.task("contrastive-search")
def test_contrastive_search_matches_a_one_candidate_at_a_time_reference(impl, tiny_llama):
    prompt = torch.randint(1, V, (1, 5), generator=torch.Generator().manual_seed(9))
    expected, gap = reference_contrastive_search(tiny_llama, prompt, 6, k=4, alpha=0.6)
    assert gap > 1e-4, f"test setup: two candidates score within {gap:.1e}, too close to compare"
    ours = impl.contrastive_search(tiny_llama, prompt, 6, top_k=4, alpha=0.6)
    assert torch.equal(ours, expected), f"contrastive search gave {ours.tolist()}, expected {expected.tolist()}"


@pytest.mark.task("contrastive-search")
def test_contrastive_with_alpha_zero_is_greedy(impl, tiny_llama):
    prompt = torch.randint(1, V, (1, 5), generator=torch.Generator().manual_seed(7))
    theirs = tiny_llama.generate(prompt, do_sample=False, max_new_tokens=6)
    ours = impl.contrastive_search(tiny_llama, prompt, 6, top_k=4, alpha=0.0)
    assert torch.equal(ours, theirs), f"alpha=0 gave {ours.tolist()}, greedy gives {theirs.tolist()}"


@pytest.mark.task("contrastive-search")
def test_contrastive_picks_among_the_top_k(impl, tiny_llama):
    prompt = torch.randint(1, V, (1, 5), generator=torch.Generator().manual_seed(8))
    ids = impl.contrastive_search(tiny_llama, prompt, 5, top_k=3, alpha=0.9)
    assert ids.shape == (1, 10) and torch.equal(ids[:, :5], prompt)
    with torch.no_grad():
        for t in range(5, 10):
            top = tiny_llama(input_ids=ids[:, :t]).logits[0, -1].topk(3).indices.tolist()
            assert int(ids[0, t]) in top, f"token at {t} is not one of the 3 most likely ({top})"


# ---------------------------------------------------------------- given code

def test_distinct_n_by_hand(impl):
    assert impl.distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)
    assert impl.distinct_n(["abab", "abc"], 1) == pytest.approx(3 / 7)
