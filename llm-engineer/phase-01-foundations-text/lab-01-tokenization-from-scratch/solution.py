"""Lab 01 · Tokenization from scratch: whitespace, regex (GPT-2's pre-tokenizer) and byte-level tokenizers.

A tokenizer turns text into integer ids and back. Three designs, from naive to production:

| tokenizer  | vocabulary                   | unseen text            | round trip                       |
|------------|------------------------------|------------------------|----------------------------------|
| whitespace | words seen in training       | becomes <unk>          | loses spacing, punctuation stuck |
| regex      | GPT-2 pre-tokens seen        | becomes <unk>          | exact when every piece is known  |
| byte-level | the 256 byte values, fixed   | always representable   | exact for any UTF-8 text         |

GPT-2 combines the last two: the regex splits text into pre-tokens, then BPE merges bytes inside each pre-token
(phase 5, lab 01). Run `python solution.py` to compare the three on Shakespeare against tiktoken.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Protocol

import regex

import labkit
from labkit import assets

UNK = "<unk>"
SAMPLE = "Hello, world! Don't tokenize naively — GPT-2's regex is smart."


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


# ----------------------------------------------------------------------------- vocabulary

def build_vocab(counts: Counter, min_freq: int = 1, special_tokens: Iterable[str] = ()) -> dict[str, int]:
    """token -> id. <unk> is id 0, then the other special tokens in the order given, then every token seen at
    least `min_freq` times, most frequent first (ties keep first-seen order, as Counter.most_common does).

    Frequent tokens get small ids, and special tokens sit at fixed, low ids that code can rely on.
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be at least 1, got {min_freq}")
    # BEGIN SOLUTION [vocab] Specials first (<unk> at 0, no duplicates), then most_common() filtered by min_freq.
    specials = list(dict.fromkeys([UNK, *special_tokens]))
    ordinary = [tok for tok, n in counts.most_common() if n >= min_freq and tok not in specials]
    return {tok: i for i, tok in enumerate(specials + ordinary)}
    # END SOLUTION


class VocabTokenizer:
    """Shared machinery of the whitespace and regex tokenizers: a learned vocabulary with an <unk> fallback.
    Subclasses say how text is split into pieces (`split`) and how pieces are joined back (`joiner`)."""

    joiner = ""

    def __init__(self) -> None:
        self.token_to_id: dict[str, int] = {}
        self.id_to_token: dict[int, str] = {}

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def train(self, corpus: Iterable[str], min_freq: int = 1, special_tokens: Iterable[str] = ()):
        if isinstance(corpus, str):
            raise ValueError("train() takes an iterable of lines or documents, not one string; wrap it: [text]")
        counts = Counter(piece for line in corpus for piece in self.split(line))
        self.token_to_id = build_vocab(counts, min_freq, special_tokens)
        self.id_to_token = {i: tok for tok, i in self.token_to_id.items()}
        return self

    @property
    def vocab_size(self) -> int:
        return len(self.token_to_id)

    def encode(self, text: str) -> list[int]:
        if not self.token_to_id:
            raise ValueError("this tokenizer has no vocabulary yet: call train(corpus) first")
        unk = self.token_to_id[UNK]
        return [self.token_to_id.get(piece, unk) for piece in self.split(text)]

    def decode(self, ids: list[int]) -> str:
        return self.joiner.join(self.id_to_token.get(i, UNK) for i in ids)


# ----------------------------------------------------------------------------- whitespace

class WhitespaceTokenizer(VocabTokenizer):
    """Words are whatever lies between whitespace. Decoding puts single spaces back, so tabs, newlines and
    repeated spaces are lost, and "world!" and "world" are unrelated tokens."""

    joiner = " "

    def split(self, text: str) -> list[str]:
        # BEGIN SOLUTION [whitespace] Split on any run of whitespace (mind the difference between split() and split(" ")).
        return text.split()
        # END SOLUTION


# ----------------------------------------------------------------------------- regex (GPT-2)

def gpt2_pattern() -> regex.Pattern:
    r"""GPT-2's pre-tokenization pattern. Alternatives, tried left to right at each position:

    1. contractions 's 't 're 've 'm 'll 'd           ("Don't" -> "Don", "'t")
    2. an optional space + a run of letters (\p{L})   (" hello": the space belongs to the word)
    3. an optional space + a run of digits (\p{N})
    4. an optional space + a run of other symbols     (punctuation, emoji)
    5. whitespace not followed by a non-space          (so the last space of a run joins the next word)
    6. any remaining whitespace

    Unicode classes need the `regex` package; the standard `re` module has no \p{L}.
    """
    # BEGIN SOLUTION [regex-split] Six alternatives in this order; \p{L} letters, \p{N} digits, (?!\S) lookahead.
    return regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    # END SOLUTION


def pretokenize(text: str) -> list[str]:
    """GPT-2 pre-tokens; they always concatenate back to `text` exactly."""
    return gpt2_pattern().findall(text)


class RegexTokenizer(VocabTokenizer):
    """Pieces are GPT-2 pre-tokens, spaces included, so decoding is a plain concatenation."""

    joiner = ""

    def split(self, text: str) -> list[str]:
        return pretokenize(text)


# ----------------------------------------------------------------------------- bytes

class ByteLevelTokenizer:
    """Ids are the UTF-8 bytes of the text: a fixed vocabulary of 256 that never needs training and has no
    unknown tokens. The price: sequences are long (an emoji is 4 ids, a CJK character 3)."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        # BEGIN SOLUTION [byte-level] The ids are the text's UTF-8 bytes.
        return list(text.encode("utf-8"))
        # END SOLUTION

    def decode(self, ids: list[int]) -> str:
        """Invalid byte sequences (e.g. a sequence cut inside a character) become U+FFFD instead of raising."""
        if any(not 0 <= i < 256 for i in ids):
            raise ValueError("byte-level ids must lie in 0..255")
        # BEGIN SOLUTION [byte-level] Rebuild the bytes and decode them, replacing what is not valid UTF-8.
        return bytes(ids).decode("utf-8", errors="replace")
        # END SOLUTION


# ----------------------------------------------------------------------------- measuring

@dataclass
class Compression:
    n_chars: int
    n_bytes: int
    n_tokens: int
    n_unk: int

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / max(self.n_tokens, 1)

    @property
    def bytes_per_token(self) -> float:
        """Compression relative to raw bytes: the byte-level tokenizer scores exactly 1.0."""
        return self.n_bytes / max(self.n_tokens, 1)


def compression(tokenizer: Tokenizer, text: str, unk_id: int | None = None) -> Compression:
    """How many tokens `text` costs, and how many of them are <unk> (when the tokenizer has one)."""
    # BEGIN SOLUTION [compression] Encode once; count characters, UTF-8 bytes, tokens and unk ids.
    ids = tokenizer.encode(text)
    unknown = sum(i == unk_id for i in ids) if unk_id is not None else 0
    return Compression(len(text), len(text.encode("utf-8")), len(ids), unknown)
    # END SOLUTION


def round_trips(tokenizer: Tokenizer, text: str) -> bool:
    return tokenizer.decode(tokenizer.encode(text)) == text


# ----------------------------------------------------------------------------- demo

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="characters of Shakespeare to use")
    parser.add_argument("--min-freq", type=int, default=2)
    args = parser.parse_args()

    print(f"sample: {SAMPLE!r}")
    whitespace = WhitespaceTokenizer().train([SAMPLE])
    regexer = RegexTokenizer().train([SAMPLE])
    byte = ByteLevelTokenizer()
    gpt2 = assets.tiktoken_encoding("gpt2")
    for name, tok in [("whitespace", whitespace), ("regex", regexer), ("byte", byte)]:
        print(f"[{name:<10}] n_tokens={len(tok.encode(SAMPLE)):>3}  round_trip_ok={round_trips(tok, SAMPLE)}")
    print(f"[{'tiktoken':<10}] n_tokens={len(gpt2.encode(SAMPLE)):>3}  (BPE inside each pre-token: never fewer "
          "tokens than the regex's pieces)")

    text = assets.shakespeare(max_chars=args.chars)
    cut = int(len(text) * 0.9)
    train_text, held_out = text[:cut], text[cut:]
    print(f"\nShakespeare: {len(train_text):,} chars to train the vocabularies, {len(held_out):,} held out "
          f"(min_freq={args.min_freq})")
    whitespace = WhitespaceTokenizer().train(train_text.splitlines(), min_freq=args.min_freq)
    regexer = RegexTokenizer().train(train_text.splitlines(), min_freq=args.min_freq)
    rows = [("whitespace", whitespace, 0), ("regex", regexer, 0), ("byte", byte, None),
            ("tiktoken gpt2", gpt2, None), ("tiktoken cl100k", assets.tiktoken_encoding("cl100k_base"), None)]
    print(f"{'tokenizer':<16}{'vocab':>8}{'tokens':>10}{'chars/tok':>11}{'bytes/tok':>11}{'<unk>':>8}  round trip")
    for name, tok, unk in rows:
        stats = compression(tok, held_out, unk)
        vocab = getattr(tok, "vocab_size", None) or tok.n_vocab
        ok = round_trips(tok, held_out)
        print(f"{name:<16}{vocab:>8,}{stats.n_tokens:>10,}{stats.chars_per_token:>11.2f}{stats.bytes_per_token:>11.2f}"
              f"{stats.n_unk:>8,}  {ok}")
    print("\nThe regex tokenizer's <unk> count is the price of a closed vocabulary; bytes never fail but cost "
          "the most tokens; BPE (tiktoken) gets both: no <unk> and ~4 chars per token.")


if __name__ == "__main__":
    labkit.run(main)
