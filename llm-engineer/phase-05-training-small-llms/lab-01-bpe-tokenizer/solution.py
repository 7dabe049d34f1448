"""Byte-level BPE from scratch, trained fast and checked against GPT-2 token for token.

What this lab teaches:
- byte-level pre-tokenization: a regex cuts text into pre-tokens (words, numbers, punctuation, spaces) and BPE
  never merges across their borders; every pre-token is a sequence of UTF-8 bytes, so nothing is out of vocabulary;
- BPE training: repeatedly merge the most frequent adjacent pair into a new token. The naive trainer recounts
  every pair after every merge; the incremental one keeps the counts and an index pair -> words, and after a merge
  touches only the words that contained the pair;
- a deterministic tie-break, so the same corpus always gives the same merges (see `pair_priority`);
- encoding with a rank-based merge loop (lowest-rank pair first, as GPT-2 and tiktoken do), cached per pre-token;
- decoding, special tokens allowed or refused (tiktoken's `allowed_special` / `disallowed_special`), save/load;
- loading GPT-2's real merges (encoder.json + vocab.bpe) and recovering cl100k_base's merges from tiktoken's
  ranks, then matching tiktoken on hard text.

Ids: a tokenizer maps each of the 256 byte values to an id (`byte_ids`), and each merge (left id, right id) to the
id it creates. A merge's priority is the id it creates: earlier merges make smaller ids (true for GPT-2, for
cl100k_base and for what `train` produces), so "lowest rank first" is "smallest new id first".
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import regex
from tqdm import tqdm

import labkit
from labkit import assets

# GPT-2's pre-tokenizer (openai/gpt-2 encoder.py): English contractions, an optional space + a run of letters,
# of digits, or of other symbols; whitespace runs leave their last space to the word that follows.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
FORMAT = "labkit-bpe/1"  # the "format" field of a saved tokenizer file


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """The pre-tokens of `text` in order; joined back together they give `text` exactly."""
    return regex.findall(pattern, text)


def word_counts(text: str, pattern: str = GPT2_PATTERN, special_tokens=()) -> Counter:
    """UTF-8 bytes of each distinct pre-token -> how often it occurs. Special tokens are cut out first, so no
    merge is ever learned across one."""
    pieces = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
    return Counter(chunk.encode("utf-8") for piece in pieces for chunk in pretokenize(piece, pattern))


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right without overlaps, by `new_id`.

    merge([5, 5, 5], (5, 5), 9) == [9, 5]
    """
    # BEGIN SOLUTION [merge] Walk with an index; when ids[i], ids[i+1] is the pair emit new_id and jump two.
    out, i, n = [], 0, len(ids)
    left, right = pair
    while i < n:
        if i + 1 < n and ids[i] == left and ids[i + 1] == right:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    # END SOLUTION


# ------------------------------------------------------------------ training

def pair_priority(pair: tuple[int, int], count: int, vocab: dict[int, bytes]) -> tuple:
    """Sort key of a candidate merge: the smallest key wins.

    Tie-break rule: the highest count first; among equal counts the lexicographically smallest pair of byte
    strings (vocab[left], vocab[right]); then the smallest ids (two tokens can share the same bytes).
    """
    # BEGIN SOLUTION [train-naive] Negate the count so a min-ordering puts the most frequent pair first.
    left, right = pair
    return -count, vocab[left], vocab[right], left, right
    # END SOLUTION


def train_naive(counts: dict[bytes, int], num_merges: int) -> list[tuple[int, int]]:
    """Baseline trainer: recount every adjacent pair of every word before each merge. O(merges x corpus).

    Word bytes start as byte ids 0-255; merge number k creates id 256 + k. Returns the merges in order; stops
    early when no pair is left.
    """
    # BEGIN SOLUTION [train-naive] Each round: count pairs weighted by word frequency, take the min pair_priority, merge it everywhere.
    words, freqs = [list(word) for word in counts], list(counts.values())
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, 256 + num_merges):
        pairs = Counter()
        for word, freq in zip(words, freqs):
            for pair in zip(word, word[1:]):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: pair_priority(p, pairs[p], vocab))
        words = [merge(word, best, new_id) for word in words]
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merges.append(best)
    return merges
    # END SOLUTION


def train_incremental(counts: dict[bytes, int], num_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """The same merges as `train_naive`, without recounting.

    State: `pair_counts[pair]` (weighted by word frequency), `where[pair]` = indices of the words holding it, and a
    heap of pair_priority keys. A heap entry is stale when its count no longer equals pair_counts[pair]; stale
    entries are skipped when popped (lazy deletion), and every count change pushes a fresh entry. A merge rewrites
    only the words in where[pair]: take their old pairs out of the counts, put the merged word's pairs in.
    """
    # BEGIN SOLUTION [train-incremental] Count pairs once and index pair -> word ids; per merge, update only the words in where[pair]; a heap with lazy deletion finds the best pair.
    words, freqs = [list(word) for word in counts], list(counts.values())
    vocab = {i: bytes([i]) for i in range(256)}
    pair_counts: Counter = Counter()
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(index)
    heap = [pair_priority(pair, count, vocab) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    bar = tqdm(total=num_merges, desc="merges", disable=not progress, leave=False)
    while len(merges) < num_merges and heap:
        key = heapq.heappop(heap)
        pair, count = key[-2:], -key[0]
        if pair_counts.get(pair) != count:
            continue  # stale: this pair's count changed after the entry was pushed
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append(pair)
        touched = set()
        for index in where.pop(pair):
            old, freq = words[index], freqs[index]
            new = merge(old, pair, new_id)
            for p in zip(old, old[1:]):
                pair_counts[p] -= freq
                touched.add(p)
            for p in zip(new, new[1:]):
                pair_counts[p] += freq
                where[p].add(index)
                touched.add(p)
            words[index] = new
        for p in touched:
            if pair_counts[p] > 0:
                heapq.heappush(heap, pair_priority(p, pair_counts[p], vocab))
            else:
                del pair_counts[p]
                where.pop(p, None)
        bar.update()
    bar.close()
    return merges
    # END SOLUTION


def train(text: str, vocab_size: int, *, pattern: str = GPT2_PATTERN, special_tokens=(),
          incremental: bool = True, progress: bool = False) -> "Tokenizer":
    """Train a byte-level BPE tokenizer of `vocab_size` ids: 256 bytes + merges + special tokens (last ids)."""
    special_tokens = list(special_tokens)
    num_merges = vocab_size - 256 - len(special_tokens)
    if num_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least 256 (one id per byte) + "
                         f"{len(special_tokens)} special tokens")
    counts = word_counts(text, pattern, special_tokens)
    merges = train_incremental(counts, num_merges, progress) if incremental else train_naive(counts, num_merges)
    specials = {token: 256 + len(merges) + i for i, token in enumerate(special_tokens)}
    return Tokenizer({pair: 256 + i for i, pair in enumerate(merges)}, pattern=pattern, special_tokens=specials)


# ------------------------------------------------------------------ the tokenizer

def _check_text(text) -> None:
    if not isinstance(text, str):
        raise ValueError(f"encode takes a str, got {type(text).__name__}; decode bytes to text first")


class Tokenizer:
    """Byte-level BPE: merges {(left id, right id): new id}, byte_ids[b] = id of byte b, a pre-token pattern,
    special tokens {text: id}."""

    def __init__(self, merges: dict[tuple[int, int], int], *, byte_ids=None, pattern: str = GPT2_PATTERN,
                 special_tokens: dict[str, int] | None = None):
        self.byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if len(self.byte_ids) != 256 or len(set(self.byte_ids)) != 256:
            raise ValueError(f"byte_ids must give 256 distinct ids, one per byte value; got {len(self.byte_ids)} "
                             f"ids, {len(set(self.byte_ids))} distinct")
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self.merges: dict[tuple[int, int], int] = {}
        for (left, right), new in sorted(merges.items(), key=lambda item: item[1]):
            if left not in self.vocab or right not in self.vocab or new in self.vocab:
                raise ValueError(f"merge ({left}, {right}) -> {new} is invalid: both parts must be ids created "
                                 f"before {new}, and {new} must be a new id")
            self.merges[(int(left), int(right))] = int(new)
            self.vocab[int(new)] = self.vocab[left] + self.vocab[right]
        self.special_tokens = dict(special_tokens or {})
        clash = set(self.special_tokens.values()) & set(self.vocab)
        if clash:
            raise ValueError(f"special token ids {sorted(clash)[:5]} are already used by bytes or merges")
        self.pattern_text = pattern
        self.pattern = regex.compile(pattern)
        self.decoder = {**self.vocab, **{i: t.encode("utf-8") for t, i in self.special_tokens.items()}}
        self.cache: dict[str, list[int]] = {}  # pre-token -> its ids (text repeats its words a lot)

    @property
    def n_vocab(self) -> int:
        return len(self.decoder)

    def encode_chunk(self, chunk: str) -> list[int]:
        """Ids of one pre-token: start from its bytes, merge the lowest-rank adjacent pair until none is a merge."""
        # BEGIN SOLUTION [encode] Look in self.cache first; otherwise bytes -> byte_ids, then loop: pick the adjacent pair with the smallest merges[pair], merge it, stop when no pair is a merge.
        cached = self.cache.get(chunk)
        if cached is not None:
            return cached
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        merges, never = self.merges, float("inf")
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, never))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        if len(self.cache) < 200_000:
            self.cache[chunk] = ids
        return ids
        # END SOLUTION

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text`, treating special-token text as ordinary text."""
        _check_text(text)
        ids = []
        for chunk in self.pattern.findall(text):
            ids.extend(self.encode_chunk(chunk))
        return ids

    def encode(self, text: str, *, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Like tiktoken: special tokens in `allowed_special` ("all" or a set) become their ids; a special token in
        `disallowed_special` ("all" = every special not allowed) found in the text raises ValueError; any other
        special-token text is encoded as ordinary text."""
        _check_text(text)
        # BEGIN SOLUTION [special-tokens] Resolve the allowed and disallowed sets, refuse disallowed ones present, then split the text on allowed specials and encode the pieces between them.
        known = set(self.special_tokens)
        allowed = known if allowed_special == "all" else set(allowed_special)
        disallowed = known - allowed if disallowed_special == "all" else set(disallowed_special)
        if allowed - known:
            raise ValueError(f"allowed_special names unknown special tokens {sorted(allowed - known)}; this "
                             f"tokenizer has {sorted(known)}")
        for token in disallowed:
            if token in text:
                raise ValueError(f"the text contains the special token {token!r}, which is disallowed: pass "
                                 "allowed_special={...} to encode it as a special token, or disallowed_special=() "
                                 "to encode it as ordinary text")
        if not allowed:
            return self.encode_ordinary(text)
        # Longest first, so a special token that contains another one wins; the capture group keeps the matches.
        splitter = "(" + "|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)) + ")"
        ids = []
        for i, piece in enumerate(regex.split(splitter, text)):
            if i % 2:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids
        # END SOLUTION

    def decode_bytes(self, ids) -> bytes:
        """The bytes the ids stand for (a token may hold part of a UTF-8 character)."""
        # BEGIN SOLUTION [decode] Concatenate the bytes of each id (merges and specials); refuse unknown ids.
        try:
            return b"".join(self.decoder[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"token id {err.args[0]} is not in this tokenizer's vocabulary "
                             f"(ids go up to {max(self.decoder)})") from None
        # END SOLUTION

    def decode(self, ids) -> str:
        """Text of the ids; bytes that do not form valid UTF-8 become U+FFFD, as in tiktoken."""
        # BEGIN SOLUTION [decode] Decode the joined bytes as UTF-8 with errors="replace".
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
        # END SOLUTION

    # -------------------------------------------------------------- save / load

    def save(self, path) -> Path:
        """Write the tokenizer as JSON, atomically: a temp file in the same folder, then os.replace."""
        # BEGIN SOLUTION [save-load] Dump format, pattern, byte_ids, merges as [left, right, new] and special tokens; write a temp file in the target folder, then os.replace it.
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "pattern": self.pattern_text, "byte_ids": self.byte_ids,
                "merges": [[left, right, new] for (left, right), new in self.merges.items()],
                "special_tokens": self.special_tokens}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path
        # END SOLUTION

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a file written by `save`; anything else raises ValueError naming the file and the problem."""
        # BEGIN SOLUTION [save-load] Parse the JSON, check the format field, rebuild with cls(...); turn every parsing or validation error into one ValueError naming the file.
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"the 'format' field is not {FORMAT!r}")
            merges = {(int(left), int(right)): int(new) for left, right, new in data["merges"]}
            return cls(merges, byte_ids=data["byte_ids"], pattern=data["pattern"],
                       special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()})
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, regex.error) as err:
            reason = f"missing field {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
            raise ValueError(f"{path} is not a tokenizer file written by Tokenizer.save: {reason}") from None
        # END SOLUTION


# ------------------------------------------------------------------ pretrained merges

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (encoder.json and vocab.bpe store tokens as these characters).

    The 188 bytes that are visible Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the
    other 68 (controls, space, soft hyphen...) get chr(256), chr(257), ... in byte order. So space is 'Ġ' (U+0120).
    """
    # BEGIN SOLUTION [pretrained] Keep the three printable Latin-1 ranges as themselves; number the remaining bytes from chr(256) upward, in byte order.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table
    # END SOLUTION


def load_gpt2(encoder_path, vocab_path) -> Tokenizer:
    """A Tokenizer from OpenAI's GPT-2 files: encoder.json (token string -> id) and vocab.bpe (one merge per line,
    "left right", best first, after a '#version' line). Tokens of encoder.json that are neither bytes nor merge
    results (<|endoftext|>) become special tokens."""
    # BEGIN SOLUTION [pretrained] Map each byte through bytes_to_unicode to its encoder id; each vocab.bpe line "a b" is the merge (encoder[a], encoder[b]) -> encoder[a + b].
    encoder = json.loads(Path(encoder_path).read_text(encoding="utf-8"))
    table = bytes_to_unicode()
    byte_ids = [encoder[table[b]] for b in range(256)]
    merges = {}
    for line in Path(vocab_path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges[(encoder[left], encoder[right])] = encoder[left + right]
    made = set(byte_ids) | set(merges.values())
    specials = {token: i for token, i in encoder.items() if i not in made}
    return Tokenizer(merges, byte_ids=byte_ids, pattern=GPT2_PATTERN, special_tokens=specials)
    # END SOLUTION


def recover_merges(ranks: dict[bytes, int]) -> dict[tuple[int, int], int]:
    """tiktoken stores only token bytes -> rank. The merge that made a token of rank r is found by running BPE on
    its bytes with the tokens of rank < r only: that stops at exactly two parts, the merge's left and right."""
    # BEGIN SOLUTION [pretrained] For each multi-byte token, merge its bytes greedily (lowest rank below the token's own) until no pair is left; the two parts that remain are the merge.
    merges = {}
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, at = rank, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1], rank)
                if r < best:
                    best, at = r, i
            if at < 0:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not one merge of two earlier tokens")
        merges[(ranks[parts[0]], ranks[parts[1]])] = rank
    return merges
    # END SOLUTION


def gpt2_tokenizer() -> Tokenizer:
    """This lab's Tokenizer with GPT-2's merges, from the packaged encoder.json and vocab.bpe."""
    return load_gpt2(*assets.gpt2_bpe_files())


def tiktoken_tokenizer(name: str = "cl100k_base") -> Tokenizer:
    """This lab's Tokenizer with the merges recovered from a tiktoken encoding's ranks (and its own pattern)."""
    encoding = assets.tiktoken_encoding(name)
    ranks = encoding._mergeable_ranks  # token bytes -> rank; no merges list is published
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    return Tokenizer(recover_merges(ranks), byte_ids=byte_ids, pattern=encoding._pat_str,
                     special_tokens=dict(encoding._special_tokens))


# ------------------------------------------------------------------ demo

def compression_curve(text: str, merges: list[tuple[int, int]], sizes: list[int]) -> list[float]:
    """Bytes per token of `text` when only the first k merges are kept, for each k in `sizes`."""
    size = len(text.encode("utf-8"))
    return [size / max(1, len(Tokenizer({p: 256 + i for i, p in enumerate(merges[:k])}).encode_ordinary(text)))
            for k in sizes]


def training_text(source: str, chars: int) -> str:
    """`chars` characters of Shakespeare (offline, packaged) or of TinyStories (online, through `datasets`)."""
    if source == "shakespeare":
        return assets.shakespeare(chars)
    from datasets import load_dataset

    try:
        stories = load_dataset("roneneldan/TinyStories", split="train", streaming=True)
        parts, total = [], 0
        for row in stories:
            parts.append(row["text"])
            total += len(row["text"]) + len("<|endoftext|>")
            if total >= chars:
                break
    except Exception as err:  # offline: HF_HUB_OFFLINE, no route to the Hub
        raise SystemExit(f"could not stream TinyStories ({type(err).__name__}); it needs the network and "
                         "HF_HUB_OFFLINE=0 / HF_DATASETS_OFFLINE=0. The default --source shakespeare runs offline.")
    return "<|endoftext|>".join(parts)[:chars]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["shakespeare", "tinystories"], default="shakespeare",
                        help="training text: packaged Shakespeare (offline) or TinyStories (needs the network)")
    parser.add_argument("--chars", type=int, default=300_000, help="characters of training text")
    parser.add_argument("--vocab-size", type=int, default=1024)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = labkit.output_dir(__file__)
    text = training_text(args.source, args.chars)
    print(f"training on {len(text):,} characters of {args.source}, vocab_size={args.vocab_size}")
    start = time.perf_counter()
    tok = train(text, args.vocab_size, special_tokens=["<|endoftext|>"], progress=True)
    print(f"trained {len(tok.merges)} merges in {time.perf_counter() - start:.2f} s (incremental pair counts)")
    firsts = [tok.decode([new]) for new in sorted(tok.merges.values())[:12]]
    print("first merges:", ", ".join(repr(t) for t in firsts))
    print("last merges: ", ", ".join(repr(tok.decode([n])) for n in sorted(tok.merges.values())[-6:]))

    sample = "ROMEO:\nBut, soft! what light through yonder window breaks?<|endoftext|>"
    ids = tok.encode(sample, allowed_special={"<|endoftext|>"})
    print(f"\n{sample!r}\n-> {len(ids)} tokens: {' | '.join(tok.decode([i]) for i in ids)!r}")
    assert tok.decode(ids) == sample

    path = tok.save(out / "shakespeare-bpe.json")
    again = Tokenizer.load(path)
    print(f"saved to {path.relative_to(labkit.ROOT)}; reloaded tokenizer encodes the same: "
          f"{again.encode(sample, allowed_special='all') == ids}")

    merges = [pair for pair, _ in sorted(tok.merges.items(), key=lambda item: item[1])]
    held_out = assets.shakespeare(args.chars + 50_000)[args.chars:]
    sizes = sorted({0, *range(0, len(merges) + 1, max(1, len(merges) // 8)), len(merges)})
    curve = compression_curve(held_out, merges, sizes)
    print("\nheld-out bytes per token:", ", ".join(f"{256 + k}: {c:.2f}" for k, c in zip(sizes, curve)))
    plt.figure(figsize=(6, 4))
    plt.plot([256 + k for k in sizes], curve, marker="o")
    plt.xlabel("vocabulary size (256 bytes + merges)")
    plt.ylabel("bytes per token (held-out text)")
    plt.title("BPE compression vs vocabulary size")
    plt.grid(alpha=0.3)
    plt.tight_layout()
    plt.savefig(out / "compression.png", dpi=120)
    plt.close()
    print(f"plot: {(out / 'compression.png').relative_to(labkit.ROOT)}")

    gpt2 = gpt2_tokenizer()
    reference = assets.tiktoken_encoding("gpt2")
    probe = "Hello world! 你好 🤖 x = 12345678; it's   spaced\n\n<|endoftext|>"
    ours, theirs = gpt2.encode(probe, allowed_special="all"), reference.encode(probe, allowed_special="all")
    print(f"\nGPT-2 merges loaded from vocab.bpe: {len(gpt2.merges):,}; {probe!r}\n  ours:     {ours}\n"
          f"  tiktoken: {theirs}\n  identical: {ours == theirs}")
    shakespeare_ids = gpt2.encode_ordinary(held_out)
    print(f"held-out Shakespeare ({len(held_out):,} chars): {len(shakespeare_ids):,} GPT-2 tokens, identical to "
          f"tiktoken: {shakespeare_ids == reference.encode_ordinary(held_out)}")


if __name__ == "__main__":
    labkit.run(main)
