"""labkit.checks.assert_tokenizer_matches must pass for an identical tokenizer and fail, saying where and how, for
one that is off by a single merge or that does not round-trip."""
import pytest
import tiktoken

from labkit import assets
from labkit.checks import CheckFailed, assert_tokenizer_matches

TEXTS = ["", "Hello world", "the cat sat on the mat, then the dog", "emoji 🤖 and 中文", "x = 12345678  # code\n"]


@pytest.fixture(scope="module")
def gpt2():
    return assets.tiktoken_encoding("gpt2")


def without_merge(encoding, token: bytes) -> tiktoken.Encoding:
    """The same encoding with one merge (the one that creates `token`) removed: off by one merge."""
    ranks = {t: r for t, r in encoding._mergeable_ranks.items() if t != token}
    assert len(ranks) == len(encoding._mergeable_ranks) - 1, f"{token!r} is not a token of {encoding.name}"
    return tiktoken.Encoding(f"{encoding.name}-without-{token!r}", pat_str=encoding._pat_str,
                             mergeable_ranks=ranks, special_tokens=encoding._special_tokens)


def test_identical_tokenizer_passes(gpt2):
    assert_tokenizer_matches(gpt2.encode, gpt2.encode, TEXTS + [assets.shakespeare(20_000)], decode=gpt2.decode)


def test_tokenizer_off_by_one_merge_fails(gpt2):
    broken = without_merge(gpt2, b" the")
    assert broken.encode(" the") != gpt2.encode(" the"), "removing the merge for ' the' should change its tokens"
    with pytest.raises(CheckFailed) as err:
        assert_tokenizer_matches(broken.encode, gpt2.encode, TEXTS)
    message = str(err.value)
    # "the cat sat on the mat": 'the', ' cat', ' sat', ' on' agree; ' the' (id 262) is token 4
    assert "text #2" in message and "first difference at token 4" in message, \
        f"the message should name the text and the first differing token; got {message!r}"
    assert "reference gives [262," in message, f"the message should show the reference ids; got {message!r}"


def test_rare_merge_is_caught_by_real_text(gpt2):
    # A merge that only a longer text exercises: the check must run every text, not stop at the first ones.
    broken = without_merge(gpt2, b" thou")
    texts = TEXTS + [assets.shakespeare(200_000)]
    assert_tokenizer_matches(broken.encode, gpt2.encode, TEXTS)  # the short texts never use it
    with pytest.raises(CheckFailed, match=r"text #5"):
        assert_tokenizer_matches(broken.encode, gpt2.encode, texts)


def test_broken_decode_fails(gpt2):
    def lossy_decode(ids):
        return gpt2.decode(ids).replace("🤖", "?")

    with pytest.raises(CheckFailed, match=r"text #3: decode\(encode\(text\)\) does not give the text back"):
        assert_tokenizer_matches(gpt2.encode, gpt2.encode, TEXTS, decode=lossy_decode)
