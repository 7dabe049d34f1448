"""Shared pieces of this lab's tests: an independent full-recount BPE trainer and a small trained tokenizer built
from its merges (so the encode/decode/save tests do not wait on the learner's trainer)."""
from collections import Counter

import pytest
import regex

from labkit import assets

GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def brute_force_merges(counts, num_merges):
    """Reference trainer: recount everything each round; highest count, then smallest (left bytes, right bytes),
    then smallest ids. Words are rewritten with str.replace (left to right, no overlaps)."""
    words = [(list(word), freq) for word, freq in counts.items()]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, 256 + num_merges):
        pairs = Counter()
        for word, freq in words:
            for pair in zip(word, word[1:]):
                pairs[pair] += freq
        if not pairs:
            break
        best = sorted(pairs, key=lambda q: (-pairs[q], vocab[q[0]], vocab[q[1]], q))[0]
        target = chr(best[0]) + chr(best[1])
        words = [([ord(c) for c in "".join(map(chr, word)).replace(target, chr(new_id))], freq)
                 for word, freq in words]
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merges.append(best)
    return merges


def shakespeare_word_counts(chars: int) -> Counter:
    """UTF-8 pre-token -> count over the first `chars` characters of Shakespeare."""
    return Counter(word.encode() for word in GPT2_SPLIT.findall(assets.shakespeare(chars)))


@pytest.fixture(scope="module")
def reference_merges():
    return brute_force_merges


@pytest.fixture(scope="module")
def shakespeare_counts():
    return shakespeare_word_counts


@pytest.fixture(scope="module")
def trained(impl):
    """A Tokenizer with 100 merges learned from Shakespeare by the reference trainer, plus two special tokens."""
    merges = brute_force_merges(shakespeare_word_counts(6_000), 100)
    return impl.Tokenizer({pair: 256 + i for i, pair in enumerate(merges)},
                          special_tokens={"<|endoftext|>": 356, "<|pad|>": 357})
