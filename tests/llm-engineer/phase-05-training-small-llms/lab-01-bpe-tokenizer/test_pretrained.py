"""GPT-2 (from encoder.json + vocab.bpe) and cl100k_base (merges recovered from tiktoken's ranks) must equal
tiktoken token for token on a hard corpus, through labkit.checks.assert_tokenizer_matches."""
import json

import pytest

from labkit import assets
from labkit.checks import assert_tokenizer_matches

HARD_CORPUS = [
    "",
    " ",
    "Hello, world!",
    "héllo wörld, naïve café, Ünïcödé ∑∫≈≠∞ — “quoted” ‘single’ …",
    "emoji 🤖🎉 skin tone 👍🏽 flag 🇫🇷 family 👨‍👩‍👧‍👦 keycap 1️⃣",
    "中文分词测试，日本語のテキスト、한국어 텍스트 and Ελληνικά, русский, עברית, العربية",
    "def add(a, b):\n    return a + b  # sum\n\nclass Foo(Bar):\n\tx: int = 0x1F\n    y = {'k': [1, 2]}\n",
    "if (x != y && z >= 10) { printf(\"%d\\n\", x); } // C-ish",
    "1234567890" * 12,
    "pi = 3.14159265358979, e = 2.718281828, 1e-10, -42, 1,000,000",
    "     leading spaces",
    "trailing spaces     ",
    "many      inner     spaces and\ttabs\t\t and\n\n\n\nnewlines \r\n windows\r\n",
    " \n \t \u00a0 \u3000 mixed whitespace \u2009end",
    "I'm sure you're right, he's gone, we've won, they'll come, I'd go, it's 'quoted'.",
    "DON'T SHOUT, IT'S RUDE; Y'ALL'D'VE SEEN",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 4,
    "!!!???...,,,;;;:::---___+++===***&&&^^^%%%$$$###@@@",
    "https://example.com/path?query=1&x=%20y#frag user@mail.org",
]


def shakespeare_slice():
    return assets.shakespeare(260_000)[160_000:]


@pytest.fixture(scope="module")
def gpt2(impl):
    return impl.gpt2_tokenizer()


@pytest.fixture(scope="module")
def reference():
    return assets.tiktoken_encoding("gpt2")


@pytest.mark.task("pretrained")
def test_bytes_to_unicode_matches_gpt2_files(impl):
    table = impl.bytes_to_unicode()
    encoder_path, _ = assets.gpt2_bpe_files()
    encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
    byte_tokens = {token for token, i in encoder.items() if i < 256}
    assert sorted(table) == list(range(256)), "bytes_to_unicode should have one entry per byte value 0..255"
    assert set(table.values()) == byte_tokens, "the 256 characters should be exactly GPT-2's single-byte tokens"
    assert table[ord(" ")] == "\u0120" and table[ord("A")] == "A" and table[ord("\n")] == "\u010a", \
        f"space, 'A' and newline should map to 'Ġ', 'A', 'Ċ'; got {table[32]!r}, {table[65]!r}, {table[10]!r}"


@pytest.mark.task("pretrained")
def test_recover_merges_by_hand(impl):
    # bytes a, b, c = ranks 0-2; "bc" (3) was learned before "ab" (4). "abc" (5) is then a + bc: rebuilding it with
    # the lowest rank first joins b, c before a, b. "abab" (6) is ab + ab.
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"bc": 3, b"ab": 4, b"abc": 5, b"abab": 6}
    got = impl.recover_merges(ranks)
    expected = {(1, 2): 3, (0, 1): 4, (0, 3): 5, (4, 4): 6}
    assert got == expected, f"expected the merges {expected}, got {got}"


@pytest.mark.task("pretrained")
def test_gpt2_vocabulary_matches_tiktoken(gpt2, reference):
    assert len(gpt2.merges) == 50_000, f"expected GPT-2's 50,000 merges, got {len(gpt2.merges)}"
    assert gpt2.n_vocab == reference.n_vocab, f"expected {reference.n_vocab} ids, got {gpt2.n_vocab}"
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}, f"expected <|endoftext|> = 50256, got {gpt2.special_tokens}"
    for token_id in (0, 198, 220, 262, 1169, 30924, 50255):
        want = reference.decode_single_token_bytes(token_id)
        got = gpt2.decode_bytes([token_id])
        assert got == want, f"id {token_id}: expected bytes {want!r}, got {got!r}"


@pytest.mark.task("pretrained")
def test_gpt2_matches_tiktoken_on_hard_corpus(gpt2, reference):
    assert_tokenizer_matches(gpt2.encode, reference.encode, HARD_CORPUS, decode=gpt2.decode)


@pytest.mark.task("pretrained")
def test_gpt2_matches_tiktoken_on_long_real_text(gpt2, reference):
    assert_tokenizer_matches(gpt2.encode, reference.encode, [shakespeare_slice()], decode=gpt2.decode)


@pytest.mark.task("pretrained")
def test_gpt2_special_tokens_like_tiktoken(gpt2, reference):
    texts = ["<|endoftext|>", "The end.<|endoftext|>A new story", "a<|endoftext|><|endoftext|>b", "<|endoftext"]
    for kwargs in ({"allowed_special": {"<|endoftext|>"}}, {"allowed_special": "all"}, {"disallowed_special": ()}):
        assert_tokenizer_matches(lambda t: gpt2.encode(t, **kwargs), lambda t: reference.encode(t, **kwargs), texts,
                                 decode=gpt2.decode)
    for text in texts[:3]:
        with pytest.raises(ValueError):
            reference.encode(text)  # tiktoken refuses special-token text by default...
        with pytest.raises(ValueError):
            gpt2.encode(text)  # ...and so must we
    assert gpt2.encode(texts[3]) == reference.encode(texts[3]), "an incomplete special token is ordinary text"


@pytest.mark.task("pretrained")
@pytest.mark.slow
def test_cl100k_from_recovered_merges_matches_tiktoken(impl):
    reference = assets.tiktoken_encoding("cl100k_base")
    tok = impl.tiktoken_tokenizer("cl100k_base")
    assert len(tok.merges) == len(reference._mergeable_ranks) - 256, \
        f"expected one merge per multi-byte token ({len(reference._mergeable_ranks) - 256}), got {len(tok.merges)}"
    allowed = lambda encode: lambda t: encode(t, allowed_special="all")  # noqa: E731
    texts = HARD_CORPUS + ["<|endoftext|> and <|fim_prefix|>x<|fim_suffix|>", shakespeare_slice()[:40_000]]
    assert_tokenizer_matches(allowed(tok.encode), allowed(reference.encode), texts, decode=tok.decode)
