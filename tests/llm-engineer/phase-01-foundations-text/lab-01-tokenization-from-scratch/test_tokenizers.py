"""Checks for lab 01: each tokenizer against hand-counted cases, tiktoken's own GPT-2 pattern and encoder, and
round-trip properties."""
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import assets

SAMPLE = "Hello, world! Don't tokenize naively — GPT-2's regex is smart."
# Hard cases for the pre-tokenizer: contractions, unicode letters and digits, emoji, CJK, code, whitespace runs.
HARD_TEXTS = [
    "",
    " ",
    "Hello world",
    "I'm sure they'll say we've done what you'd've done, isn't it?",
    "DON'T SHOUT, it's 'quoted' text",
    "naïve café résumé — Ελληνικά, русский, עברית",
    "日本語のテキストと中文混合 with English",
    "emoji 🙂🚀 and flags 🇫🇷 and ZWJ 👩‍💻!",
    "def f(x):\n    return x**2  # square\n\n\tprint(f(3))",
    "1234567890 3.14159 1,000,000 x=42y",
    "spaces   between  words   and trailing   ",
    "\n\n\nnewlines\r\n\r\nand tabs\t\tend",
    "   leading spaces",
    "a\u00a0non-breaking\u2003em-space\u3000ideographic",
    "<|endoftext|> looks special but is plain text here",
]


@pytest.fixture(scope="module")
def gpt2():
    return assets.tiktoken_encoding("gpt2")


# ------------------------------------------------------------------ vocab

@pytest.mark.task("vocab")
def test_vocab_puts_specials_first_then_frequency(impl):
    counts = Counter("b a b c b a d".split())
    vocab = impl.build_vocab(counts, min_freq=1, special_tokens=["<pad>", "<eos>"])
    assert vocab == {"<unk>": 0, "<pad>": 1, "<eos>": 2, "b": 3, "a": 4, "c": 5, "d": 6}, \
        f"expected <unk>=0, then specials in order, then tokens by frequency; got {vocab}"


@pytest.mark.task("vocab")
def test_vocab_min_freq_and_duplicate_specials(impl):
    counts = Counter("b a b c b a d".split())
    vocab = impl.build_vocab(counts, min_freq=2, special_tokens=["<unk>", "<pad>", "<pad>"])
    assert vocab == {"<unk>": 0, "<pad>": 1, "b": 2, "a": 3}, \
        f"min_freq=2 keeps only 'b' (3×) and 'a' (2×); specials appear once each; got {vocab}"


@pytest.mark.task("vocab")
def test_vocab_special_token_seen_in_text_keeps_one_id(impl):
    # '<pad>' occurs in the text as well: it keeps its special id and does not come back as an ordinary token.
    counts = Counter("<pad> x <pad> y <pad> x".split())
    vocab = impl.build_vocab(counts, special_tokens=["<pad>"])
    assert vocab == {"<unk>": 0, "<pad>": 1, "x": 2, "y": 3}, f"expected one id per token, dense; got {vocab}"


@pytest.mark.task("vocab")
def test_vocab_ids_are_dense(impl):
    counts = Counter(list("the quick brown fox jumps over the lazy dog"))
    vocab = impl.build_vocab(counts)
    assert sorted(vocab.values()) == list(range(len(vocab))), "ids must be 0..V-1 with no gaps"
    assert vocab["<unk>"] == 0


# ------------------------------------------------------------------ whitespace

@pytest.mark.task("whitespace")
def test_whitespace_counts_the_sample(impl):
    tok = impl.WhitespaceTokenizer().train([SAMPLE])
    ids = tok.encode(SAMPLE)
    assert len(ids) == 10, f"the sample has 10 whitespace-separated words, got {len(ids)} ids"
    assert tok.decode(ids) == SAMPLE


@pytest.mark.task("whitespace")
def test_whitespace_handles_tabs_newlines_and_unknown_words(impl):
    tok = impl.WhitespaceTokenizer().train(["to be or not to be"])
    ids = tok.encode("to\tbe\n\n or  question")
    assert len(ids) == 4, f"tabs, newlines and repeated spaces all separate words: expected 4 ids, got {len(ids)}"
    assert ids[-1] == 0, "an unseen word must map to <unk> (id 0)"
    assert tok.decode(ids) == "to be or <unk>", "decoding joins words with single spaces"


# ------------------------------------------------------------------ regex split

@pytest.mark.task("regex-split")
def test_regex_counts_the_sample(impl):
    pieces = impl.pretokenize(SAMPLE)
    assert len(pieces) == 17, f"GPT-2's pattern splits the sample into 17 pre-tokens, got {len(pieces)}: {pieces}"
    assert pieces[:4] == ["Hello", ",", " world", "!"], f"got {pieces[:4]}"
    assert " Don" in pieces and "'t" in pieces, "contractions split off: ' Don' then \"'t\""


@pytest.mark.task("regex-split")
@pytest.mark.parametrize("text", HARD_TEXTS, ids=range(len(HARD_TEXTS)))
def test_regex_matches_tiktoken_gpt2_pattern(impl, gpt2, text):
    reference = regex.findall(gpt2._pat_str, text)
    ours = impl.pretokenize(text)
    assert ours == reference, f"pre-tokens differ from tiktoken gpt2's pattern on {text!r}:\n ours {ours}\n " \
                              f"tiktoken {reference}"


@pytest.mark.task("regex-split")
@pytest.mark.parametrize("text", HARD_TEXTS, ids=range(len(HARD_TEXTS)))
def test_regex_boundaries_are_tiktoken_token_boundaries(impl, gpt2, text):
    # BPE never merges across a pre-token, so encoding the pieces one by one must give tiktoken's exact tokens.
    piecewise = [t for piece in impl.pretokenize(text) for t in gpt2.encode_ordinary(piece)]
    assert piecewise == gpt2.encode_ordinary(text), f"a pre-token boundary falls inside a GPT-2 token on {text!r}"


@pytest.mark.task("regex-split")
@settings(max_examples=150, deadline=None)
@given(st.text())
def test_regex_pieces_concatenate_to_the_text(impl, text):
    assert "".join(impl.pretokenize(text)) == text, "pre-tokens must cover every character exactly once"


# ------------------------------------------------------------------ regex tokenizer

@pytest.mark.task("regex-split")
def test_regex_tokenizer_round_trips_and_marks_unknowns(impl):
    tok = impl.RegexTokenizer().train([SAMPLE])
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE, "pre-tokens carry their spaces: decoding is concatenation"
    ids = tok.encode("Hello, moon!")
    assert ids.count(0) == 1, f"' moon' was never seen, so exactly one <unk> is expected; got ids {ids}"


# ------------------------------------------------------------------ bytes

@pytest.mark.task("byte-level")
@pytest.mark.parametrize("text, expected", [("A", [65]), ("é", [195, 169]), ("€", [226, 130, 172]),
                                            ("😀", [240, 159, 152, 128]), ("", [])])
def test_byte_ids_are_utf8(impl, text, expected):
    assert impl.ByteLevelTokenizer().encode(text) == expected, f"UTF-8 bytes of {text!r} are {expected}"


@pytest.mark.task("byte-level")
def test_byte_sample_and_broken_sequences(impl):
    tok = impl.ByteLevelTokenizer()
    assert len(tok.encode(SAMPLE)) == 64, "the sample is 64 UTF-8 bytes (the em dash takes 3)"
    assert tok.decode([240, 159, 152]) == "\ufffd", "a cut-off emoji must decode to U+FFFD, not raise"
    with pytest.raises(ValueError):
        tok.decode([256])


@pytest.mark.task("byte-level")
@settings(max_examples=150, deadline=None)
@given(st.text())
def test_byte_round_trip_any_text(impl, text):
    tok = impl.ByteLevelTokenizer()
    assert tok.decode(tok.encode(text)) == text


# ------------------------------------------------------------------ compression

@pytest.mark.task("compression")
def test_compression_counts_a_hand_example(impl):
    stats = impl.compression(impl.ByteLevelTokenizer(), "héllo")
    assert (stats.n_chars, stats.n_bytes, stats.n_tokens) == (5, 6, 6), \
        f"'héllo' is 5 characters, 6 bytes and 6 byte tokens; got {stats}"
    assert stats.bytes_per_token == 1.0


@pytest.mark.task("compression")
def test_compression_counts_unknowns(impl):
    tok = impl.WhitespaceTokenizer().train(["a b"])
    stats = impl.compression(tok, "a b zz b", unk_id=0)
    assert (stats.n_tokens, stats.n_unk) == (4, 1), f"4 words, one of them unseen; got {stats}"
    assert stats.chars_per_token == pytest.approx(8 / 4)


@pytest.mark.task("compression")
def test_compression_without_unk_id_counts_no_unknowns(impl, gpt2):
    # Id 0 is a real token for these tokenizers: GPT-2's "!" and the NUL byte. Without an unk id nothing is unknown.
    assert gpt2.encode("Wow!") == [22017, 0], "tiktoken's GPT-2 ids changed; this hand example needs updating"
    stats = impl.compression(gpt2, "Wow!")
    assert (stats.n_tokens, stats.n_unk) == (2, 0), f"'!' is GPT-2 token 0, not an unknown; got {stats}"
    stats = impl.compression(impl.ByteLevelTokenizer(), "a\x00b")
    assert (stats.n_tokens, stats.n_unk) == (3, 0), f"byte 0 is the NUL character, not an unknown; got {stats}"


@pytest.mark.task("compression")
def test_compression_on_shakespeare_orders_the_tokenizers(impl, gpt2):
    text = assets.shakespeare(max_chars=60_000)
    train, held = text[:50_000], text[50_000:]
    regex_tok = impl.RegexTokenizer().train(train.splitlines())
    byte = impl.compression(impl.ByteLevelTokenizer(), held)
    pieces = impl.compression(regex_tok, held, unk_id=0)
    bpe = impl.compression(gpt2, held)
    assert byte.bytes_per_token == 1.0
    assert bpe.n_tokens >= pieces.n_tokens, "BPE works inside pre-tokens, so it never uses fewer tokens"
    assert 3.0 < bpe.chars_per_token < 4.5, f"GPT-2 BPE gives ~3.5 chars/token on English, got {bpe.chars_per_token}"
    assert pieces.n_unk > 0, "a vocabulary trained on 50k chars cannot know every word of the held-out text"
