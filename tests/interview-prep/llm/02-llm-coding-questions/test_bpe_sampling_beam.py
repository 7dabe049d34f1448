"""BPE (hand-worked merges, the definition of a merge step replayed, Hugging Face tokenizers' BPE model as the
encoder reference), sampling filters (transformers' logit warpers) and beam search (brute force over every
continuation of a tiny model)."""
import itertools
import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.checks import assert_close_to_reference

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)

CORPUS = ("The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs off into the woods.\n"
          "Über naïve café façades, ünïcödé bytes: 東京 and 🙂 split into several tokens. " * 3)
HELD_OUT = ["the fox and the dog", "Café über alles 🙂🙂", "zebra quartz 12345", "", "a", "東京東京 the the the"]


# ------------------------------------------------------------------ BPE

@pytest.mark.task("bpe")
def test_merge_pair_by_hand(impl):
    assert impl.merge_pair([97, 97, 97], (97, 97), 256) == [256, 97], "'aaa' merges left to right into [aa, a]"
    assert impl.merge_pair([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3], "every occurrence is replaced"
    assert impl.merge_pair([2, 1], (1, 2), 9) == [2, 1], "order inside the pair matters"
    assert impl.merge_pair([], (1, 2), 9) == [], "empty in, empty out"


@pytest.mark.task("bpe")
def test_train_by_hand_with_a_tie(impl):
    # "aaabdaaabac": (a,a) x4 -> 256. Then (256,a) and (a,b) both occur twice; (256,a) occurs first -> 257.
    # Then [257 b d 257 b a c]: (257,b) x2 -> 258.
    got = impl.train_bpe("aaabdaaabac", 259)
    assert got == [(97, 97), (256, 97), (257, 98)], f"expected [(97, 97), (256, 97), (257, 98)], got {got}"
    assert impl.train_bpe("xyzw", 257) == [(120, 121)], "all pairs tie at 1: the first pair in the text wins"
    assert impl.train_bpe("anything", 256) == [], "vocab_size 256 leaves room for no merge"
    assert impl.train_bpe("a", 300) == [], "one byte has no pair to merge"


@pytest.mark.task("bpe")
def test_every_merge_is_the_most_frequent_first_seen_pair(impl):
    merges = impl.train_bpe(CORPUS, 256 + 40)
    assert len(merges) == 40, f"expected 40 merges for vocab_size 296, got {len(merges)}"
    ids = list(CORPUS.encode("utf-8"))
    for step, pair in enumerate(merges):
        counts = Counter(zip(ids, ids[1:]))
        top = max(counts.values())
        first_best = next(p for p in zip(ids, ids[1:]) if counts[p] == top)
        assert tuple(pair) == first_best, (f"merge {step}: expected the most frequent, first-seen pair {first_best} "
                                           f"(count {top}), got {tuple(pair)} (count {counts[tuple(pair)]})")
        out, i = [], 0
        while i < len(ids):  # replay the merge by the definition: left to right, no overlaps
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == first_best:
                out.append(256 + step)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out


def hf_bpe_encoder(merges):
    """Hugging Face tokenizers' BPE model holding the same merges. Each byte b is spelt as the character
    chr(256 + b), so no pre-tokenizer or byte-to-unicode table is involved."""
    from tokenizers import Tokenizer, models

    spell = {i: chr(256 + i) for i in range(256)}
    for i, (a, b) in enumerate(merges):
        spell[256 + i] = spell[a] + spell[b]
    vocab = {text: i for i, text in spell.items()}
    assert len(vocab) == len(spell), "two merges spell the same bytes; the HF vocabulary cannot hold both"
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[(spell[a], spell[b]) for a, b in merges]))
    return lambda text: tokenizer.encode("".join(chr(256 + b) for b in text.encode("utf-8"))).ids if text else []


@pytest.mark.task("bpe")
def test_encode_matches_huggingface_bpe(impl):
    merges = impl.train_bpe(CORPUS, 256 + 60)
    reference = hf_bpe_encoder(merges)
    for text in HELD_OUT + [CORPUS[:200]]:
        ours, theirs = impl.bpe_encode(text, merges), reference(text)
        assert ours == theirs, f"{text!r}: got {ours[:12]}..., tokenizers' BPE gives {theirs[:12]}..."
    assert len(impl.bpe_encode(CORPUS, merges)) < len(CORPUS.encode("utf-8")) * 0.7, \
        "60 merges learned on this corpus should shorten it by more than 30 %"


@pytest.mark.task("bpe")
def test_decode_joins_bytes_before_decoding(impl):
    merges = impl.train_bpe(CORPUS, 256 + 60)
    assert impl.bpe_decode([0xC3, 0xA9], merges) == "é", "two byte tokens that form one character decode to it"
    assert impl.bpe_decode([0xC3], merges) == "\ufffd", "half a character decodes to U+FFFD, not an exception"


@pytest.mark.task("bpe")
def test_round_trip_on_any_text(impl):
    merges = impl.train_bpe(CORPUS, 256 + 60)
    impl.bpe_encode("x", merges)

    @FAST
    @given(st.text(max_size=40))
    def check(text):
        assert impl.bpe_decode(impl.bpe_encode(text, merges), merges) == text, f"round trip failed for {text!r}"
    check()


# ------------------------------------------------------------------ sampling filters

def warp(processor, logits):
    return processor(torch.zeros(logits.size(0), 1, dtype=torch.long), logits.clone())


@pytest.mark.task("sampling")
def test_temperature_matches_transformers(impl):
    from transformers.generation.logits_process import TemperatureLogitsWarper

    logits = torch.randn(3, 20)
    for t in (0.3, 0.7, 1.0, 2.5):
        assert_close_to_reference(impl.apply_temperature(logits, t), warp(TemperatureLogitsWarper(t), logits),
                                  atol=1e-6, what=f"temperature {t}")


@pytest.mark.task("sampling")
def test_top_k_keeps_ties_by_hand(impl):
    inf = float("-inf")
    got = impl.top_k_filter(torch.tensor([[1.0, 3.0, 3.0, 2.0]]), 2).tolist()
    assert got == [[inf, 3.0, 3.0, inf]], f"k=2 keeps the two 3s, got {got}"
    got = impl.top_k_filter(torch.tensor([[3.0, 2.0, 3.0, 2.0, 1.0]]), 3).tolist()
    assert got == [[3.0, 2.0, 3.0, 2.0, inf]], f"k=3 keeps both 2s tied with the 3rd largest, got {got}"


@pytest.mark.task("sampling")
def test_top_k_matches_transformers(impl):
    from transformers.generation.logits_process import TopKLogitsWarper

    logits = torch.randn(4, 50)
    logits[0, :10] = 1.5  # a row with a block of ties
    for k in (1, 5, 12, 50):
        assert torch.equal(impl.top_k_filter(logits, k), warp(TopKLogitsWarper(k), logits)), \
            f"top-k={k} differs from transformers' TopKLogitsWarper"


@pytest.mark.task("sampling")
def test_top_p_by_hand(impl):
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]], dtype=torch.float64)
    kept = lambda p: torch.isfinite(impl.top_p_filter(logits, p)).sum().item()  # noqa: E731
    assert kept(0.4) == 1, f"p=0.4: the top token (0.5) alone reaches it, kept {kept(0.4)}"
    assert kept(0.6) == 2, f"p=0.6: 0.5 falls short, 0.5 + 0.3 reaches it, kept {kept(0.6)}"
    assert kept(0.95) == 3, f"p=0.95 needs all three, kept {kept(0.95)}"
    assert kept(1e-9) == 1, "a tiny p still keeps the most probable token"
    shuffled = torch.tensor([[math.log(0.2), math.log(0.5), math.log(0.3)]], dtype=torch.float64)
    got = torch.isfinite(impl.top_p_filter(shuffled, 0.6)).tolist()
    assert got == [[False, True, True]], f"the kept set follows the tokens, not the sorted order: got {got}"


@pytest.mark.task("sampling")
def test_top_p_matches_transformers(impl):
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = 2 * torch.randn(5, 40, dtype=torch.float64)
    for p in (0.1, 0.5, 0.8, 0.95):
        assert torch.equal(torch.isfinite(impl.top_p_filter(logits, p)),
                           torch.isfinite(warp(TopPLogitsWarper(p), logits))), \
            f"top-p={p} keeps a different set of tokens than transformers' TopPLogitsWarper"


@pytest.mark.task("sampling")
def test_composition_order_and_greedy(impl):
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)

    logits = 2 * torch.randn(3, 30, dtype=torch.float64)
    for t, k, p in ((0.5, 10, 0.7), (1.8, 20, 0.6), (1.0, 5, 0.99)):
        chain = LogitsProcessorList([TemperatureLogitsWarper(t), TopKLogitsWarper(k), TopPLogitsWarper(p)])
        expected = warp(chain, logits).softmax(-1)
        assert_close_to_reference(impl.next_token_probs(logits, t, k, p), expected, atol=1e-10,
                                  what=f"probabilities for T={t}, top-k={k}, top-p={p}")
    greedy = impl.next_token_probs(torch.tensor([[0.1, 2.0, 2.0, -1.0]]), temperature=0)
    assert greedy.tolist() == [[0.0, 1.0, 0.0, 0.0]], f"T=0: all mass on the first argmax, got {greedy.tolist()}"


# ------------------------------------------------------------------ beam search

def tiny_lm(impl, vocab=5, seed=0):
    torch.manual_seed(seed)
    model = impl.TinyDecoder(vocab_size=vocab, d_model=16, n_heads=2, n_layers=1).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)

    def next_log_probs(seqs):
        with torch.no_grad():
            return model(torch.tensor(seqs))[:, -1].log_softmax(-1)
    return next_log_probs


def all_continuations(next_log_probs, prompt, steps, vocab):
    """Every continuation with its total log-probability, best first (the exhaustive reference)."""
    memo = {}

    def log_probs_after(prefix):  # one model call per distinct prefix (1 + V + ... + V^(steps-1) calls)
        if prefix not in memo:
            memo[prefix] = next_log_probs([prompt + list(prefix)])[0]
        return memo[prefix]

    scored = [(list(cont), sum(float(log_probs_after(cont[:i])[cont[i]]) for i in range(steps)))
              for cont in itertools.product(range(vocab), repeat=steps)]
    return sorted(scored, key=lambda item: -item[1])


def bigram(table):
    """next_log_probs from a bigram table {previous token: [p_0, ..., p_V-1]}."""
    return lambda seqs: torch.log(torch.tensor([table[s[-1]] for s in seqs], dtype=torch.float64))


@pytest.mark.task("beam-search")
def test_beam_beats_greedy_on_a_garden_path(impl):
    # from 0: token 1 (0.6) or 2 (0.4); after 1 the best is token 3 (0.4); after 2, token 3 has 0.9.
    # greedy: 1 then 3 = 0.24; best: 2 then 3 = 0.36.
    table = {0: [0.0, 0.6, 0.4, 0.0], 1: [0.2, 0.2, 0.2, 0.4], 2: [0.05, 0.0, 0.05, 0.9], 3: [0.25] * 4}
    greedy = impl.beam_search(bigram(table), [0], 2, 1)
    beam = impl.beam_search(bigram(table), [0], 2, 2)
    assert greedy[0][0] == [1, 3], f"width 1 is greedy: expected [1, 3], got {greedy[0][0]}"
    assert beam[0][0] == [2, 3], f"width 2 should find [2, 3] (p 0.36 > 0.24), got {beam[0][0]}"
    assert math.isclose(beam[0][1], math.log(0.36), rel_tol=1e-9), f"score log 0.36, got {beam[0][1]}"
    assert [c for c, _ in beam] == [[2, 3], [1, 3]], f"the two beams, best first: got {[c for c, _ in beam]}"


@pytest.mark.task("beam-search")
def test_wide_beam_equals_brute_force_on_a_tiny_model(impl):
    next_log_probs, vocab, steps = tiny_lm(impl), 5, 4
    exact = all_continuations(next_log_probs, [0], steps, vocab)
    width = vocab ** (steps - 1)  # every prefix survives until the last step: beam search is exhaustive
    beams = impl.beam_search(next_log_probs, [0], steps, width)
    assert len(beams) == width, f"expected {width} beams, got {len(beams)}"
    for rank, ((seq, score), (best_seq, best_score)) in enumerate(zip(beams[:20], exact[:20])):
        assert seq == best_seq and math.isclose(score, best_score, abs_tol=1e-9), \
            f"rank {rank}: beam gives {seq} ({score:.6f}), brute force {best_seq} ({best_score:.6f})"


@pytest.mark.task("beam-search")
def test_narrow_beams_are_consistent_with_brute_force(impl):
    next_log_probs, vocab, steps = tiny_lm(impl, seed=3), 5, 4
    exact = dict((tuple(s), v) for s, v in all_continuations(next_log_probs, [1, 2], steps, vocab))
    best = max(exact.values())
    for width in (1, 2, 3):
        beams = impl.beam_search(next_log_probs, [1, 2], steps, width)
        scores = [s for _, s in beams]
        assert len(beams) == width, f"width {width}: expected {width} beams, got {len(beams)}"
        assert scores == sorted(scores, reverse=True), f"width {width}: beams must come best first, got {scores}"
        for seq, score in beams:
            assert math.isclose(score, exact[tuple(seq)], abs_tol=1e-9), \
                f"width {width}: {seq} scored {score:.6f}, its true log-probability is {exact[tuple(seq)]:.6f}"
            assert score <= best + 1e-12, "no beam can beat the exhaustive optimum"
    greedy, tokens = [], [1, 2]
    for _ in range(steps):
        greedy.append(int(next_log_probs([tokens + greedy])[0].argmax()))
    assert impl.beam_search(next_log_probs, [1, 2], steps, 1)[0][0] == greedy, "width 1 must equal greedy decoding"


@pytest.mark.task("beam-search")
def test_ties_keep_the_earlier_candidate(impl):
    uniform = lambda seqs: torch.full((len(seqs), 4), math.log(0.25), dtype=torch.float64)  # noqa: E731
    got = [c for c, _ in impl.beam_search(uniform, [0], 2, 3)]
    assert got == [[0, 0], [0, 1], [0, 2]], f"all scores tie: keep lower beam, then lower token; got {got}"
