"""BPE training: the merge helper, the naive trainer and its tie-break, the incremental trainer.

Expected merges come from hand counting (the corpus below) and from a brute-force full-recount trainer in conftest.py,
independent of the lab's code.
"""
import pytest
from hypothesis import given, settings, strategies as st

from labkit import assets

# Word counts of a corpus small enough to count by hand.
#   pairs at the start: u g = 10+5+5 = 20, p u = 5+12 = 17, u n = 12+4 = 16, h u = 10+5 = 15, g s = 5, b u = 4
#   1. (u, g) 20 -> 'ug'     2. (u, n) 16 -> 'un'     3. (h, ug) 15 -> 'hug'     4. (p, un) 12 -> 'pun'
#   5. tie at 5 between (hug, s) and (p, ug): b'hug' < b'p', so (hug, s) first   6. (p, ug) 5   7. (b, un) 4
#   then every word is a single token: training stops after 7 merges even when asked for more.
HAND_CORPUS = {b"hug": 10, b"pug": 5, b"pun": 12, b"bun": 4, b"hugs": 5}
u, g, h, p, n, b, s = (ord(c) for c in "ughpnbs")
HAND_MERGES = [(u, g), (u, n), (h, 256), (p, 257), (258, s), (p, 256), (b, 257)]


def replace_pair(ids, pair, new_id):
    """Reference for merge: Python's str.replace also scans left to right without overlaps."""
    return [ord(c) for c in "".join(map(chr, ids)).replace(chr(pair[0]) + chr(pair[1]), chr(new_id))]


corpora = st.dictionaries(st.binary(min_size=1, max_size=6).map(lambda x: bytes(97 + v % 3 for v in x)),
                          st.integers(1, 5), min_size=1, max_size=8)


# ---------------------------------------------------------------- merge

@pytest.mark.task("merge")
def test_merge_hand_examples(impl):
    cases = [(([5, 5, 5], (5, 5), 9), [9, 5]), (([1, 2, 3, 1, 2], (1, 2), 7), [7, 3, 7]),
             (([5, 5, 5, 5], (5, 5), 9), [9, 9]), (([1, 2], (2, 1), 7), [1, 2]), (([], (1, 2), 7), []),
             (([3, 1, 2], (1, 2), 7), [3, 7])]
    for (ids, pair, new_id), expected in cases:
        got = impl.merge(list(ids), pair, new_id)
        assert got == expected, f"merge({ids}, {pair}, {new_id}): expected {expected}, got {got}"


@pytest.mark.task("merge")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=30), st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_merge_matches_left_to_right_replacement(impl, ids, pair):
    expected = replace_pair(ids, pair, 300)
    got = impl.merge(list(ids), pair, 300)
    assert got == expected, f"merge({ids}, {pair}, 300): expected {expected}, got {got}"


# ---------------------------------------------------------------- naive trainer and tie-break

@pytest.mark.task("train-naive")
def test_naive_merges_on_hand_counted_corpus(impl):
    got = impl.train_naive(HAND_CORPUS, 10)
    assert got == HAND_MERGES, f"expected the hand-counted merges {HAND_MERGES}, got {got}"


@pytest.mark.task("train-naive")
def test_tie_break_prefers_count_then_smallest_bytes(impl):
    vocab = {i: bytes([i]) for i in range(256)}
    a, b_, c, d = (ord(x) for x in "abcd")
    frequent = impl.pair_priority((c, d), 4, vocab)
    rarer = impl.pair_priority((a, b_), 3, vocab)
    assert frequent < rarer, "a pair seen 4 times must come before one seen 3 times (smaller key wins)"
    assert impl.pair_priority((a, d), 3, vocab) < impl.pair_priority((b_, a), 3, vocab), \
        "at equal counts (b'a', b'd') must come before (b'b', b'a')"
    # (b'a', b'z') vs (b'ab', b'c'): the left bytes decide (b'a' < b'ab'), although b'abc' < b'az' when joined
    vocab_ab = {**vocab, 256: b"ab"}
    assert impl.pair_priority((a, ord("z")), 3, vocab_ab) < impl.pair_priority((256, c), 3, vocab_ab), \
        "at equal counts (b'a', b'z') must come before (b'ab', b'c'): compare the left bytes first, then the right"
    got = impl.train_naive({b"cd": 3, b"ab": 3, b"zz": 4}, 3)
    expected = [(ord("z"), ord("z")), (a, b_), (c, d)]
    assert got == expected, f"expected {expected} (count first, then smallest bytes), got {got}"


@pytest.mark.task("train-naive")
@settings(max_examples=25, deadline=None)
@given(corpora)
def test_naive_matches_brute_force_and_ignores_insertion_order(impl, reference_merges, counts):
    expected = reference_merges(counts, 8)
    got = impl.train_naive(counts, 8)
    assert got == expected, f"on {counts}: expected merges {expected}, got {got}"
    reversed_counts = dict(reversed(list(counts.items())))
    assert impl.train_naive(reversed_counts, 8) == got, "the same counts in another order gave other merges"


# ---------------------------------------------------------------- incremental trainer

@pytest.mark.task("train-incremental")
def test_incremental_merges_on_hand_counted_corpus(impl):
    got = impl.train_incremental(HAND_CORPUS, 10)
    assert got == HAND_MERGES, f"expected the hand-counted merges {HAND_MERGES}, got {got}"


@pytest.mark.task("train-incremental")
@settings(max_examples=40, deadline=None)
@given(corpora)
def test_incremental_equals_full_recount_on_random_corpora(impl, reference_merges, counts):
    expected = reference_merges(counts, 10)
    got = impl.train_incremental(counts, 10)
    assert got == expected, f"on {counts}: expected merges {expected}, got {got}"
    reversed_counts = dict(reversed(list(counts.items())))
    assert impl.train_incremental(reversed_counts, 10) == got, "the same counts in another order gave other merges"


@pytest.mark.task("train-incremental")
def test_incremental_equals_full_recount_on_shakespeare(impl, reference_merges, shakespeare_counts):
    counts = shakespeare_counts(6_000)
    expected = reference_merges(counts, 120)
    got = impl.train_incremental(counts, 120)
    at = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), None)
    assert got == expected, (f"merges differ from a full-recount trainer at merge {at}: got "
                             f"{got[at:at + 2] if at is not None else got[len(expected):][:2]}, expected "
                             f"{expected[at:at + 2] if at is not None else expected[len(got):][:2]} "
                             f"({len(got)} vs {len(expected)} merges)")


@pytest.mark.task("train-incremental")
def test_train_builds_a_tokenizer_with_specials_last(impl, reference_merges, shakespeare_counts):
    text = assets.shakespeare(4_000)
    tok = impl.train(text + "<|endoftext|>" + text, 300, special_tokens=["<|endoftext|>"])
    assert len(tok.merges) == 300 - 256 - 1, f"expected 43 merges for vocab_size 300 with one special token, " \
                                              f"got {len(tok.merges)}"
    assert tok.special_tokens == {"<|endoftext|>": 299}, f"expected the special token at id 299, got " \
                                                          f"{tok.special_tokens}"
    words = {word: 2 * count for word, count in shakespeare_counts(4_000).items()}
    expected = {pair: 256 + i for i, pair in enumerate(reference_merges(words, 43))}
    assert tok.merges == expected, "the tokenizer's merges differ from a full-recount trainer on the same text " \
                                   "with the special token cut out"
