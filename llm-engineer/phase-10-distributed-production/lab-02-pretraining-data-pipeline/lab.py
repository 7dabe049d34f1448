"""A pretraining data pipeline: web archive -> language ID -> quality filters -> dedup -> PII scrub -> token shards.

Web-scale corpora (C4, RefinedWeb, FineWeb, RedPajama) are built by the same chain of cheap, per-document
stages followed by one global stage (deduplication) and a tokenizer that packs everything into flat binary
files a training loop can memory-map. Every stage throws documents away, and the per-stage retention report is
the pipeline's main deliverable: it says where the data went.

The input is a WET-style web archive (WARC `conversion` records: the plain text extracted from crawled pages),
generated here from local text (Shakespeare, a small company handbook) with planted noise whose fate is known
in advance: non-English pages, stubs, symbol spam, boilerplate lines, placeholder pages, code, near-duplicates
(a few words edited), exact duplicates and personal data.

What you build:

1. `iter_wet_records`: stream the archive with warcio, keep only `conversion` records, decode robustly.
2. `detect_language`: py3langid's per-language log-scores -> a probability for the best language (softmax).
3. `gopher_reason`: the Gopher quality rules (Rae et al. 2021), with `top_ngram_char_fraction` for repetition.
4. `c4_clean`: the C4 line and page rules (Raffel et al. 2020): keep sentence-like lines, drop code/placeholder.
5. `scrub_pii`: emails, phone numbers and IPv4 addresses replaced by placeholders.
6. `shingles` / `minhash_signature`: k-word shingles and a MinHash signature equal to datasketch's.
7. `s_curve` / `lsh_candidate_pairs`: banded LSH and its collision probability 1 - (1 - s^r)^b.
8. `exact_duplicates` / `near_duplicate_clusters`: exact hashing, then LSH candidates verified by Jaccard.
9. `token_dtype` / `write_shards`: uint16/uint32 shards with an index, written atomically and resumable.
10. `LanguageBlock` / `GopherBlock` / `C4Block` / `PIIBlock`: the same stages as datatrove pipeline blocks,
    run by its LocalPipelineExecutor over several tasks (the same pipeline runs on Slurm or Ray executors).

The archive writer, the run loop with its report, the datatrove wiring and the demo are written for you.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import re
import struct
import sys
import time
from collections import Counter, defaultdict
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import py3langid
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.base import BaseDiskReader
from tqdm import tqdm
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

import labkit
import labkit.assets
from labkit.labs import ROOT

HANDBOOK = ROOT / "llm-engineer/phase-07-retrieval-rag-agents/lab-02-rag-pipeline/docs"


# ------------------------------------------------------------------------------------------ 1. parse the archive

def iter_wet_records(path: str | Path):
    """Yield {"id", "url", "text"} for every `conversion` record of a WARC/WET file (.gz or plain).

    A WET file is a WARC file whose records hold the text extracted from each crawled page. It starts with a
    `warcinfo` record (about the crawl, not a page); WARC files also hold `request`/`response` records (raw
    HTTP). Stream: a real shard is about 1 GB compressed, so never read the whole file."""
    # TODO [parse-warc]: warcio's ArchiveIterator un-gzips by itself; keep one record type; bad bytes must not crash.
    raise NotImplementedError("TODO [parse-warc]: warcio's ArchiveIterator un-gzips by itself; keep one record type; bad bytes must not crash.")


# ------------------------------------------------------------------------------------------ 2. language ID

LANG_SAMPLE_CHARS = 1000   # classify a flat sample, not the first menu line
LANG_THRESHOLD = 0.65      # FineWeb keeps English at probability >= 0.65


def detect_language(text: str) -> tuple[str, float]:
    """(language code, probability) of the most likely language, from py3langid's model (shipped in the wheel).

    Classify a sample: the first 1000 characters with newlines replaced by spaces, as UTF-8 bytes.
    `py3langid.rank(sample)` returns (language, score) for every language it knows, best first: naive-Bayes
    log-likelihoods, sums over the byte n-grams of the sample, so they grow with its length (hundreds below
    zero). A plain softmax over them is 1.0 for almost any text: useless as a confidence. Divide the scores by
    a temperature T = sqrt(number of bytes of the sample) first, as py3langid's own normalized mode does."""
    # TODO [language-id]: Flatten and cut the sample; scale the ranked scores by 1/sqrt(bytes); softmax with the max subtracted.
    raise NotImplementedError('TODO [language-id]: Flatten and cut the sample; scale the ranked scores by 1/sqrt(bytes); softmax with the max subtracted.')


def is_english(text: str, threshold: float = LANG_THRESHOLD) -> bool:
    """True when the most likely language is English with probability at least `threshold`."""
    # TODO [language-id]: Both conditions; a probability exactly at the threshold is kept.
    raise NotImplementedError('TODO [language-id]: Both conditions; a probability exactly at the threshold is kept.')


# ------------------------------------------------------------------------------------------ 3. Gopher rules

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "*", "‣", "●")
ELLIPSES = ("...", "…")
TOP_NGRAM_LIMITS = {2: 0.20, 3: 0.18, 4: 0.16}   # Gopher: max share of characters in the most common n-gram


def top_ngram_char_fraction(words: list[str], n: int) -> float:
    """Share of all word characters covered by the occurrences of the most frequent word n-gram.

    chars(top) * count(top) / sum(len(w) for w in words), where chars(top) sums the lengths of its n words.
    0.0 when there are fewer than n words."""
    # TODO [gopher]: Count overlapping n-gram tuples; the most common one's characters times its count, over all characters.
    raise NotImplementedError("TODO [gopher]: Count overlapping n-gram tuples; the most common one's characters times its count, over all characters.")


def gopher_reason(text: str) -> str | None:
    """None when the document passes every Gopher rule, else the name of the first rule it fails, in this order:

    word_count         fewer than 50 or more than 100,000 words (whitespace-split)
    mean_word_length   mean word length below 3 or above 10 characters
    symbol_ratio       (number of '#' plus ellipses '...'/'…') / words above 0.1
    bullet_lines       more than 90% of non-empty lines start with a bullet (after leading spaces)
    ellipsis_lines     more than 30% of non-empty lines end with an ellipsis (before trailing spaces)
    alpha_words        fewer than 80% of words contain an alphabetic character
    stop_words         fewer than 2 of the 8 stop words appear (lower-cased, surrounding punctuation stripped)
    top_2gram / top_3gram / top_4gram   top_ngram_char_fraction above 0.20 / 0.18 / 0.16
    Boundaries pass: exactly 50 words, a mean of exactly 3, a ratio of exactly 0.1 are kept."""
    # TODO [gopher]: Check the rules in the documented order; every limit is strict, so values exactly at a bound pass.
    raise NotImplementedError('TODO [gopher]: Check the rules in the documented order; every limit is strict, so values exactly at a bound pass.')


# ------------------------------------------------------------------------------------------ 4. C4 rules

TERMINAL_PUNCT = (".", "!", "?", '"', "”", "'")
POLICY_PHRASES = ("cookie policy", "uses cookies", "use of cookies", "terms of use", "privacy policy")
C4_MIN_WORDS_PER_LINE = 3
C4_MIN_SENTENCES = 5
SENTENCE_END = re.compile(r"[.!?]+[\"'”]?(?=\s|$)")


def c4_clean(text: str) -> tuple[str | None, str]:
    """(cleaned text, "ok") or (None, reason). Page rules first, on the raw text:

    lorem_ipsum      the page contains "lorem ipsum" (any case): placeholder text
    curly_bracket    the page contains "{": code
    Then line rules, each line stripped: keep a line only if it ends with terminal punctuation (TERMINAL_PUNCT),
    has at least 3 words, does not mention "javascript" (any case) and contains none of POLICY_PHRASES.
    too_few_sentences  fewer than 5 sentence ends (SENTENCE_END matches) in the kept lines
    The cleaned text is the kept lines joined by newlines."""
    # TODO [c4-filter]: Page checks on the lower-cased text first, then keep only sentence-like lines, then count sentences.
    raise NotImplementedError('TODO [c4-filter]: Page checks on the lower-cased text first, then keep only sentence-like lines, then count sentences.')


# ------------------------------------------------------------------------------------------ 5. PII

def scrub_pii(text: str) -> tuple[str, Counter]:
    """Replace emails by <EMAIL>, IPv4 addresses by <IP> and phone numbers by <PHONE>; return the new text and
    how many of each were replaced (Counter keys "email", "ip", "phone").

    Emails first (their domains can hold digits), then IPs, then phones. What each must catch:
    email   local part of letters, digits and . _ % + -, then @, a domain with at least one dot, a 2+ letter TLD
    ip      four dot-separated octets 0-255 (so 999.1.1.1 and version strings such as 1.2.3 are not IPs)
    phone   an optional +country code, then a 3-digit area code (bare or in parentheses), 3 digits, 4 digits,
            separated by a space, dot or dash: (555) 013-2468, 555-013-2468, +1 555 013 2468
    None of them may start or end inside a longer run of digits or letters."""
    # TODO [pii-scrub]: One regex per kind with word/digit boundaries; an octet is an alternation of ranges; re.subn counts.
    raise NotImplementedError('TODO [pii-scrub]: One regex per kind with word/digit boundaries; an octet is an alternation of ranges; re.subn counts.')


# ------------------------------------------------------------------------------------------ 6. MinHash

SHINGLE_WORDS = 5
NUM_PERM = 128
MASK32 = np.uint64(0xFFFFFFFF)


def make_permutations(num_perm: int = NUM_PERM, seed: int = 1) -> np.ndarray:
    """(2, num_perm) uint32: row 0 the odd multipliers a, row 1 the offsets b of h -> a*h + b mod 2^32.

    An odd multiplier makes the map a bijection of the 32-bit integers (2^32 shares no factor with it), so
    each (a, b) is a random-looking reordering of all hash values: a "permutation" in MinHash's sense."""
    rng = np.random.RandomState(seed)
    a = rng.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.randint(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return np.stack([a, b])


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: a fixed bijection that spreads every input bit over the output
    (uint32 in, uint32 out; the multiplications wrap mod 2^32 on purpose). datasketch applies it before the
    affine permutations so that weakly mixed inputs still give independent-looking minima."""
    h = h.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def shingles(text: str, k: int = SHINGLE_WORDS) -> set[str]:
    """The set of k-word shingles of the lower-cased, whitespace-split text, each joined by single spaces.
    A text with fewer than k words (but at least one) is one shingle of all its words; no words: empty set."""
    # TODO [minhash]: Overlapping windows of k words: there are n - k + 1 of them; short texts make a single shingle.
    raise NotImplementedError('TODO [minhash]: Overlapping windows of k words: there are n - k + 1 of them; short texts make a single shingle.')


def minhash_signature(items: set[str], permutations: np.ndarray) -> np.ndarray:
    """(num_perm,) uint32 MinHash signature, equal to datasketch's MinHash(scheme="affine32") with the same
    permutations: h = fmix32(first 4 bytes of SHA-1(item as UTF-8), little-endian), then for every
    permutation i, sig[i] = min over items of (a_i * h + b_i) mod 2^32. The empty set gives all 2^32 - 1.

    Why it works: under a random permutation every item is equally likely to be the minimum, so two sets share
    the minimum with probability |A & B| / |A | B| = Jaccard(A, B); the fraction of equal entries estimates it."""
    # TODO [minhash]: Hash the UTF-8 bytes with SHA-1 (first 4 bytes, little-endian), mix, apply all permutations at once, min over items.
    raise NotImplementedError('TODO [minhash]: Hash the UTF-8 bytes with SHA-1 (first 4 bytes, little-endian), mix, apply all permutations at once, min over items.')


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


def jaccard(a: set, b: set) -> float:
    """|A & B| / |A | B|; two empty sets count as identical (1.0)."""
    return len(a & b) / len(a | b) if (a or b) else 1.0


# ------------------------------------------------------------------------------------------ 7. LSH

def s_curve(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents of Jaccard similarity s share at least one LSH band:
    one band of r rows matches with probability s^r, so P = 1 - (1 - s^r)^b."""
    # TODO [lsh]: One band matches when all its rows match; the pair is a candidate unless every band misses.
    raise NotImplementedError('TODO [lsh]: One band matches when all its rows match; the pair is a candidate unless every band misses.')


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int = NUM_PERM, fp_weight: float = 0.5,
               fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm that minimise the weighted area of false positives (S-curve
    above 0 below the threshold) plus false negatives (below 1 above it): datasketch's criterion."""
    def area(f, lo, hi):
        xs = np.linspace(lo, hi, 201)
        ys = f(xs)
        return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2)   # trapezoid rule

    best, best_err = (1, 1), math.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = area(lambda s: s_curve(s, bands, rows), 0.0, threshold)
            fn = area(lambda s: 1 - s_curve(s, bands, rows), threshold, 1.0)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err - 1e-12:
                best, best_err = (bands, rows), err
    return best


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """All pairs (i, j), i < j, whose signatures agree on every row of at least one band.

    signatures: (n_docs, num_perm) with bands * rows <= num_perm; band t covers columns t*rows .. (t+1)*rows - 1.
    Bucket each band's slice (its bytes are a good dict key): documents in one bucket are candidates. The
    cost is linear in documents plus the candidates found, not quadratic like comparing all pairs."""
    # TODO [lsh]: One dict of buckets per band (never shared across bands); pairs from every bucket with 2+ docs.
    raise NotImplementedError('TODO [lsh]: One dict of buckets per band (never shared across bands); pairs from every bucket with 2+ docs.')


# ------------------------------------------------------------------------------------------ 8. dedup

def normalize_for_exact(text: str) -> str:
    return " ".join(text.lower().split())


def exact_duplicates(texts: list[str]) -> list[int]:
    """Indices of documents whose normalized text (lower case, runs of whitespace -> one space) was already
    seen earlier in the list; the first occurrence is kept. Compare SHA-1 digests, not the texts themselves."""
    # TODO [dedup]: One pass with a set of digests of the normalized text; only later copies are duplicates.
    raise NotImplementedError('TODO [dedup]: One pass with a set of digests of the normalized text; only later copies are duplicates.')


def near_duplicate_clusters(shingle_sets: list[set[str]], candidates: set[tuple[int, int]],
                            threshold: float) -> list[list[int]]:
    """Clusters (sorted lists of 2+ indices, sorted by first index) of documents linked by verified pairs: a
    candidate pair is a true near-duplicate when the exact Jaccard of its shingle sets is >= threshold. Links
    are transitive (union-find): if a~b and b~c, then a, b, c form one cluster even if a and c differ more."""
    # TODO [dedup]: Verify every candidate with the exact Jaccard; union-find with path compression; group by root.
    raise NotImplementedError('TODO [dedup]: Verify every candidate with the exact Jaccard; union-find with path compression; group by root.')


@dataclass
class Deduper:
    """Exact, then near-duplicate removal over a list of texts; keeps the first document of every cluster."""
    threshold: float = 0.8
    num_perm: int = NUM_PERM
    k: int = SHINGLE_WORDS
    seed: int = 1

    def __post_init__(self):
        self.permutations = make_permutations(self.num_perm, self.seed)
        self.bands, self.rows = lsh_params(self.threshold, self.num_perm)

    def near_duplicates(self, texts: list[str]) -> tuple[list[int], list[list[int]]]:
        sets = [shingles(t, self.k) for t in texts]
        sigs = np.stack([minhash_signature(s, self.permutations) for s in sets]) if sets else \
            np.zeros((0, self.num_perm), np.uint32)
        clusters = near_duplicate_clusters(sets, lsh_candidate_pairs(sigs, self.bands, self.rows), self.threshold)
        return sorted(i for c in clusters for i in c[1:]), clusters


# ------------------------------------------------------------------------------------------ 9. shards

def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id 0 .. vocab_size - 1: uint16 or uint32."""
    # TODO [shards]: The largest id is vocab_size - 1; uint16 holds ids up to 65535.
    raise NotImplementedError('TODO [shards]: The largest id is vocab_size - 1; uint16 holds ids up to 65535.')


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)   # readers see the old file or the whole new one, never a half-written one


INDEX = "index.json"


def read_index(out_dir: Path) -> dict | None:
    path = Path(out_dir) / INDEX
    return json.loads(path.read_text()) if path.exists() else None


def write_shards(texts: list[str], out_dir: str | Path, encode, eot: int, vocab_size: int,
                 shard_tokens: int, on_shard=None) -> dict:
    """Tokenize `texts` in order (each document's ids then `eot`) into one flat stream, cut into files of exactly
    `shard_tokens` tokens (the last one shorter) named train_00000.bin, train_00001.bin, ... in out_dir, in
    `token_dtype(vocab_size)`, little-endian. Returns the index, also saved to out_dir/index.json:

    {"dtype": "uint16", "vocab_size", "eot", "shard_tokens", "docs": len(texts), "complete": bool,
     "total_tokens", "shards": [{"file", "offset" (first token's position in the stream), "tokens",
                                 "end_doc", "end_token"}]}

    A shard's (end_doc, end_token) says where the stream stands after it: the next token is token `end_token`
    of document `end_doc`'s ids-plus-eot. Every shard is written atomically, then the index (atomically too),
    so a killed run leaves whole shards and an index that lists only shards that exist. Calling again with the
    same arguments resumes after the last indexed shard (a finished run is returned as is), and writes bytes
    identical to an uninterrupted run. `on_shard(i)` is called after shard i is indexed (progress, tests)."""
    # TODO [shards]: Resume from the last indexed shard's (end_doc, end_token); write each shard, then the index, both atomically.
    raise NotImplementedError("TODO [shards]: Resume from the last indexed shard's (end_doc, end_token); write each shard, then the index, both atomically.")


def load_tokens(out_dir: str | Path) -> np.ndarray:
    """Every shard of a finished run, memory-mapped and concatenated (small runs only)."""
    index = read_index(Path(out_dir))
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    parts = [np.memmap(Path(out_dir) / s["file"], dtype=dtype, mode="r") for s in index["shards"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


# ------------------------------------------------------------------------------------------ 10. datatrove blocks

class LanguageBlock(BaseFilter):
    """Keeps documents detected as `language` with probability >= threshold; stores both in doc.metadata."""
    name = "🌐 py3langid"

    def __init__(self, language: str = "en", threshold: float = LANG_THRESHOLD):
        super().__init__()
        self.language, self.threshold = language, threshold

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        # TODO [datatrove-blocks]: datatrove keeps a doc when filter() returns True; drop with the tuple (False, reason).
        raise NotImplementedError('TODO [datatrove-blocks]: datatrove keeps a doc when filter() returns True; drop with the tuple (False, reason).')


class GopherBlock(BaseFilter):
    name = "🥇 Gopher rules"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        # TODO [datatrove-blocks]: A reason string alone is truthy: what does datatrove do with it?
        raise NotImplementedError('TODO [datatrove-blocks]: A reason string alone is truthy: what does datatrove do with it?')


class C4Block(BaseFilter):
    name = "⛰ C4 rules"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        # TODO [datatrove-blocks]: This filter also edits the document: the kept lines replace its text.
        raise NotImplementedError('TODO [datatrove-blocks]: This filter also edits the document: the kept lines replace its text.')


class PIIBlock(PipelineStep):
    """A formatter: every document passes, with its personal data replaced; counts go to datatrove's stats."""
    name = "🔒 PII scrub"
    type = "✂️ - FORMAT"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            with self.track_time():
                # TODO [datatrove-blocks]: Scrub the text in place and record each kind's count with self.stat_update.
                raise NotImplementedError("TODO [datatrove-blocks]: Scrub the text in place and record each kind's count with self.stat_update.")
            self.stat_update("total")
            yield doc


class WetReader(BaseDiskReader):
    """Reads the archive's .warc.gz files with `iter_wet_records`; datatrove spreads the files over tasks."""
    name = "🕷 WET (warcio)"

    def read_file(self, filepath: str):
        local = self.data_folder.resolve_paths(filepath)
        for i, record in enumerate(iter_wet_records(local)):
            with self.track_time():
                document = self.get_document_from_dict(dict(record), filepath, i)
            if document:
                yield document


class DedupAndShard(PipelineStep):
    """The global stage (run with tasks=1, so it sees every surviving document): order by record id, exact and
    near dedup, PII scrub, token shards. On a cluster this becomes datatrove's multi-stage MinHash dedup."""
    name = "🫂 dedup + shards"
    type = "🫂 - DEDUP"

    def __init__(self, out_dir: str, shard_tokens: int, threshold: float = 0.8):
        super().__init__()
        self.out_dir, self.shard_tokens, self.threshold = out_dir, shard_tokens, threshold

    def run(self, data, rank: int = 0, world_size: int = 1):
        docs = sorted(data, key=lambda d: d.id)
        texts = [d.text for d in docs]
        dropped = set(exact_duplicates(texts))
        rest = [i for i in range(len(docs)) if i not in dropped]
        near, _ = Deduper(self.threshold).near_duplicates([texts[i] for i in rest])
        dropped |= {rest[i] for i in near}
        kept = [d for i, d in enumerate(docs) if i not in dropped]
        self.stat_update("dropped_duplicates", value=len(dropped))
        enc = labkit.assets.tiktoken_encoding("gpt2")
        write_shards([scrub_pii(d.text)[0] for d in kept], self.out_dir, enc.encode_ordinary, enc.eot_token,
                     enc.n_vocab, self.shard_tokens)
        for d in kept:
            self.stat_update("kept")
            yield d


def run_datatrove(warc_dir: str | Path, work_dir: str | Path, tasks: int = 2, workers: int = 1,
                  shard_tokens: int = 4096, quiet: bool = True) -> dict:
    """Stage 1 (`tasks` tasks, `workers` processes at a time): read -> language -> Gopher -> C4 -> JSONL. Stage 2 (one task): dedup, PII,
    shards. Returns {"kept_ids", "stats" (datatrove's merged per-step stats), "shards_dir"}. Logs, stats and
    completion markers go under work_dir/logs: a rerun skips finished tasks (datatrove's own resumability)."""
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    work = Path(work_dir)
    filter_stage = LocalPipelineExecutor(
        pipeline=[WetReader(str(warc_dir), glob_pattern="*.warc.gz"), LanguageBlock(), GopherBlock(), C4Block(),
                  JsonlWriter(str(work / "filtered"), compression=None)],
        tasks=tasks, workers=workers, logging_dir=str(work / "logs/filter"),
        start_method="fork")   # workers inherit this module (it is loaded by path, so a fresh process could not import it)
    dedup_stage = LocalPipelineExecutor(
        pipeline=[JsonlReader(str(work / "filtered"), compression=None), DedupAndShard(str(work / "shards"),
                                                                                        shard_tokens),
                  PIIBlock(), JsonlWriter(str(work / "final"), compression=None)],
        tasks=1, workers=1, logging_dir=str(work / "logs/dedup"), depends=filter_stage)
    detect_language("warm up")      # load py3langid's model once; forked workers inherit it
    sink = io.StringIO() if quiet else sys.stderr
    logger.remove()                 # loguru's default handler holds the real stderr
    logger.add(sink, level="INFO")
    try:
        with redirect_stderr(sink):     # datatrove adds a task logger on (the current) sys.stderr per task
            dedup_stage.run()
    finally:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    kept = [json.loads(line)["id"] for f in sorted((work / "final").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    stats = {"filter": json.loads((work / "logs/filter/stats.json").read_text()),
             "dedup": json.loads((work / "logs/dedup/stats.json").read_text())}
    return {"kept_ids": kept, "stats": stats, "shards_dir": work / "shards"}


# ------------------------------------------------------------------------------------------ the corpus

FRENCH = ("La bibliothèque municipale ouvre ses portes tous les jours à neuf heures, sauf le dimanche. Les "
          "lecteurs peuvent emprunter jusqu'à cinq livres pendant trois semaines, et les enfants trouvent au "
          "premier étage une salle remplie d'albums, de bandes dessinées et de jeux. Chaque mercredi après-midi, "
          "une conteuse lit des histoires aux plus petits, tandis que les adolescents se retrouvent dans "
          "l'atelier d'écriture. Pour s'inscrire, il suffit de présenter une pièce d'identité et un justificatif "
          "de domicile à l'accueil. L'inscription est gratuite pour les habitants de la commune.")
GERMAN = ("Der Wochenmarkt findet jeden Samstag auf dem Platz vor dem Rathaus statt. Die Bauern aus der Umgebung "
          "verkaufen dort frisches Gemüse, Obst, Käse und Brot, und im Herbst gibt es außerdem Kürbisse und "
          "neuen Wein. Wer früh kommt, findet die größte Auswahl, denn gegen Mittag sind viele Stände bereits "
          "leer. Die Stadt bittet alle Besucher, mit dem Fahrrad oder mit dem Bus zu kommen, weil es in der "
          "Innenstadt nur wenige Parkplätze gibt. Bei schlechtem Wetter zieht der Markt in die alte Halle am "
          "Fluss um, die seit dem letzten Jahr renoviert worden ist.")
SPANISH = ("El museo de la ciudad presenta este mes una exposición dedicada a los pintores del siglo diecinueve. "
           "Las salas del primer piso reúnen paisajes del norte del país, mientras que en la planta baja se pueden "
           "ver retratos de familias de comerciantes y de sus casas. Las visitas guiadas salen cada hora desde la "
           "entrada principal y duran unos cuarenta y cinco minutos. Los estudiantes y los mayores de sesenta y "
           "cinco años pagan la mitad del precio, y la entrada es gratuita el primer domingo de cada mes. La "
           "cafetería del patio ofrece bocadillos, zumos naturales y pasteles hechos en la casa.")
BOILERPLATE = ["Home | About | Contact | Blog",
               "Please enable JavaScript to view the comments on this page.",
               "This site uses cookies to improve your experience. Read our cookie policy.",
               "Share this:"]


def shakespeare_docs(n: int, words_per_doc: int = 220) -> list[str]:
    """Consecutive speeches of the plays, one paragraph per line (as a text extractor gives them), about
    `words_per_doc` words each."""
    paragraphs = []
    for speech in labkit.assets.shakespeare(400_000).split("\n\n"):
        lines = speech.splitlines()[1:]                 # drop the "NAME:" line
        text = " ".join(line.strip() for line in lines if line.strip())
        if len(text.split()) >= 8 and text.endswith((".", "!", "?")):
            paragraphs.append(text)
    docs, current = [], []
    for para in paragraphs:
        current.append(para)
        if sum(len(p.split()) for p in current) >= words_per_doc:
            docs.append("\n".join(current))
            current = []
            if len(docs) == n:
                break
    return docs


def handbook_docs() -> list[str]:
    """The company handbook pages, paragraphs unwrapped to one line each (headings stay short lines)."""
    docs = []
    for path in sorted(HANDBOOK.glob("*.md")):
        blocks = [" ".join(b.split()) for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        docs.append("\n".join(b.lstrip("# ") for b in blocks))
    return docs


def listing_page(text: str, words_per_line: int = 8) -> str:
    """A navigation-like page: the words of `text` cut into short lines with no closing punctuation."""
    words = text.split()
    lines = [" ".join(words[i:i + words_per_line]).rstrip(".,;:!?'\"-") for i in range(0, len(words), words_per_line)]
    return "\n".join(["Menu", "Sign in"] + lines)


def edit_words(text: str, n_edits: int, rng: random.Random) -> str:
    """A near-duplicate: n_edits words replaced at random positions (never a line's last word, so every line
    keeps its closing punctuation)."""
    lines = [line.split(" ") for line in text.split("\n")]
    spots = [(i, j) for i, line in enumerate(lines) for j in range(len(line) - 1)]
    for i, j in rng.sample(spots, n_edits):
        lines[i][j] = rng.choice(["truly", "indeed", "surely", "often", "quite"])
    return "\n".join(" ".join(line) for line in lines)


def build_corpus(seed: int = 0, n_shakespeare: int = 24) -> list[dict]:
    """Documents with a known fate: {"url", "text", "expect"}, where expect is "keep" or "<stage>:<reason>"
    for the stage that must drop it (language, gopher, c4, exact_dup, near_dup). PII-bearing documents are kept
    (scrubbed). Order matters: originals come before their copies."""
    rng = random.Random(seed)
    plays = shakespeare_docs(n_shakespeare)
    handbook = handbook_docs()
    docs = [{"text": t, "expect": "keep", "source": "shakespeare"} for t in plays]
    docs += [{"text": t, "expect": "keep", "source": "handbook"} for t in handbook]
    # boilerplate around a good page: C4 strips the lines, the page is kept
    docs[1]["text"] = "\n".join([BOILERPLATE[0], docs[1]["text"], BOILERPLATE[1], BOILERPLATE[2]])
    docs[len(plays)]["text"] = BOILERPLATE[3] + "\n" + docs[len(plays)]["text"] + "\n" + BOILERPLATE[2]
    # personal data inside kept pages
    docs[2]["text"] += "\nWrite to ada.lovelace@example.org or call (555) 013-2468 before Friday."
    docs[len(plays) + 1]["text"] += ("\nThe build server lives at 10.20.30.40 and the on-call phone is "
                                     "+1 555 010 7788; email ops-team+alerts@corp.example.com if both fail.")
    noise = [
        ({"text": FRENCH}, "language:fr"), ({"text": GERMAN}, "language:de"), ({"text": SPANISH}, "language:es"),
        ({"text": "Page not found. The page you are looking for has moved. Return to the home page."},
         "gopher:word_count"),
        ({"text": "Get the best of these offers and save with the coupon today, and tell the whole family about "
                  "them. " + " ".join(["#deals #sale #cheap #buy #now #free #shipping"] * 7)},
         "gopher:symbol_ratio"),
        ({"text": "\n".join(f"Read the full story about the {w} and the results of the match..."
                            for w in ["game", "team", "coach", "league", "final", "season", "fans", "stadium"])},
         "gopher:ellipsis_lines"),
        ({"text": " ".join(["buy cheap watches and buy cheap phones with free delivery"] * 12)},
         "gopher:top_2gram"),
        ({"text": "\n".join(["Lorem ipsum dolor sit amet is the placeholder our designer left here."] +
                            plays[5].split("\n"))}, "c4:lorem_ipsum"),
        ({"text": "The configuration below sets the retry policy for the service and the team that owns it. "
                  "Copy it into the settings file with care, and ask the platform team to review it.\n"
                  "{ \"retries\": 3, \"backoff\": \"exponential\", \"owner\": \"platform\" }\n" + handbook[2]},
         "c4:curly_bracket"),
        ({"text": listing_page(plays[8])}, "c4:too_few_sentences"),
    ]
    for extra, expect in noise:
        docs.append({**extra, "expect": expect, "source": "noise"})
    # duplicates of kept pages come last, so the original is always the first occurrence
    for i in (0, 3, len(plays) + 2):
        docs.append({"text": docs[i]["text"], "expect": "exact_dup", "source": "copy"})
    docs.append({"text": "  " + docs[4]["text"].upper().replace(" ", "   ") + "\n", "expect": "exact_dup",
                 "source": "copy"})
    for i, edits in ((6, 2), (7, 3), (len(plays) + 3, 1)):   # Jaccard of 5-word shingles 0.92-0.95
        docs.append({"text": edit_words(docs[i]["text"], edits, rng), "expect": "near_dup", "source": "edit"})
    for i, d in enumerate(docs):
        d["url"] = f"https://example.org/{d['source']}/{i:04d}"
    return docs


def write_warc(docs: list[dict], out_dir: str | Path, n_files: int = 4, bad_byte_doc: int | None = 9) -> list[Path]:
    """Documents as WET `conversion` records, dealt round-robin into n_files gzipped WARC files, each opening
    with a `warcinfo` record and holding one HTTP `response` record too (neither is a page's text). Record ids
    are <urn:uuid:...> made from the document's position, so sorting by id restores the corpus order. Document
    number `bad_byte_doc` carries one invalid UTF-8 byte, as crawled pages sometimes do."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"crawl-{k:03d}.warc.gz" for k in range(n_files)]
    handles = [open(p, "wb") for p in paths]
    writers = [WARCWriter(h, gzip=True) for h in handles]
    for k, w in enumerate(writers):
        w.write_record(w.create_warcinfo_record(paths[k].name, {"software": "lab-02 corpus builder",
                                                                 "format": "WARC File Format 1.0"}))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.0")
        w.write_record(w.create_warc_record(f"https://example.org/raw/{k}", "response",
                                            payload=io.BytesIO(b"<html><body>raw page</body></html>"),
                                            http_headers=http))
    for i, doc in enumerate(docs):
        payload = doc["text"].encode("utf-8")
        if i == bad_byte_doc:
            payload = payload.replace(b" ", b" \xff", 1)
        w = writers[i % n_files]
        headers = {"WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-8000-{i:012d}>",
                   "WARC-Identified-Content-Language": "", "Content-Type": "text/plain"}
        w.write_record(w.create_warc_record(doc["url"], "conversion", payload=io.BytesIO(payload),
                                            warc_headers_dict=headers))
    for h in handles:
        h.close()
    return paths


# ------------------------------------------------------------------------------------------ the plain pipeline

@dataclass
class StageReport:
    name: str
    docs_in: int = 0
    docs_out: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    @property
    def retention(self) -> float:
        return self.docs_out / self.docs_in if self.docs_in else 1.0

    @property
    def docs_per_second(self) -> float:
        return self.docs_in / self.seconds if self.seconds else float("inf")


def run_pipeline(warc_paths: list[Path], out_dir: str | Path, shard_tokens: int = 4096, threshold: float = 0.8,
                 progress: bool = False) -> tuple[list[dict], list[StageReport], dict]:
    """Parse every archive, then language -> Gopher -> C4 -> exact dedup -> near dedup -> PII -> shards.
    Filter before dedup: dedup is the expensive global step, so it only sees survivors. Documents are ordered
    by record id first, so the result does not depend on how records were spread over files.
    Returns (kept documents with their drop reasons recorded, per-stage reports, the shard index)."""
    reports = []

    def stage(name, docs, keep_fn):
        rep = StageReport(name, docs_in=len(docs))
        start, kept = time.perf_counter(), []
        for d in tqdm(docs, desc=name, disable=not progress, leave=False):
            reason = keep_fn(d)
            if reason is None:
                kept.append(d)
            else:
                rep.reasons[reason] += 1
                d["dropped"] = f"{name}:{reason}"
        rep.seconds, rep.docs_out = time.perf_counter() - start, len(kept)
        reports.append(rep)
        return kept

    start = time.perf_counter()
    docs = sorted((r for p in warc_paths for r in iter_wet_records(p)), key=lambda r: r["id"])
    reports.append(StageReport("parse", len(docs), len(docs), time.perf_counter() - start))
    detect_language("warm up")     # loads py3langid's model once, outside the timed stage
    docs = stage("language", docs, lambda d: None if is_english(d["text"]) else detect_language(d["text"])[0])
    docs = stage("gopher", docs, lambda d: gopher_reason(d["text"]))

    def c4(d):
        cleaned, reason = c4_clean(d["text"])
        if cleaned is not None:
            d["text"] = cleaned
        return None if cleaned is not None else reason
    docs = stage("c4", docs, c4)

    exact_ids = {id(docs[i]) for i in exact_duplicates([d["text"] for d in docs])}
    docs = stage("exact_dup", docs, lambda d: "exact" if id(d) in exact_ids else None)
    start = time.perf_counter()
    near, _ = Deduper(threshold).near_duplicates([d["text"] for d in docs])
    near_ids, seconds = {id(docs[i]) for i in near}, time.perf_counter() - start
    docs = stage("near_dup", docs, lambda d: "near" if id(d) in near_ids else None)
    reports[-1].seconds += seconds

    pii_counts = Counter()

    def pii(d):
        d["text"], counts = scrub_pii(d["text"])
        pii_counts.update(counts)
        return None
    docs = stage("pii", docs, pii)
    reports[-1].reasons = pii_counts           # replacements made, not drops

    enc = labkit.assets.tiktoken_encoding("gpt2")
    start = time.perf_counter()
    index = write_shards([d["text"] for d in docs], out_dir, enc.encode_ordinary, enc.eot_token, enc.n_vocab,
                         shard_tokens)
    reports.append(StageReport("tokenize", len(docs), len(docs), time.perf_counter() - start))
    return docs, reports, index


def format_report(reports: list[StageReport], total_in: int) -> str:
    rows = [f"{'stage':<10} {'in':>5} {'out':>5} {'kept':>7} {'of input':>9} {'docs/s':>9}  reasons"]
    for r in reports:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(r.reasons.items()))
        rows.append(f"{r.name:<10} {r.docs_in:>5} {r.docs_out:>5} {r.retention:>7.1%} "
                    f"{r.docs_out / max(total_in, 1):>9.1%} {r.docs_per_second:>9.0f}  {reasons}")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ demo

def shard_command(args) -> None:
    """`python solution.py shard --docs docs.json --out DIR`: tokenize a JSON list of texts into shards
    (resumes a killed run). --throttle sleeps after each shard, so a test can kill it half-way."""
    texts = json.loads(Path(args.docs).read_text())
    enc = labkit.assets.tiktoken_encoding("gpt2")
    index = write_shards(texts, args.out, enc.encode_ordinary, enc.eot_token, enc.n_vocab, args.shard_tokens,
                         on_shard=lambda i: (print(f"shard {i}", flush=True), time.sleep(args.throttle)))
    print(f"done: {len(index['shards'])} shards, {index['total_tokens']} tokens")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="demo", choices=["demo", "shard"])
    parser.add_argument("--docs", help="shard: a JSON list of texts")
    parser.add_argument("--out", help="output directory (default: the lab's outputs/)")
    parser.add_argument("--shard-tokens", type=int, default=4096)
    parser.add_argument("--throttle", type=float, default=0.0)
    parser.add_argument("--tasks", type=int, default=4, help="datatrove tasks (the archive has 4 files)")
    parser.add_argument("--workers", type=int, default=2, help="datatrove worker processes")
    args = parser.parse_args(argv)
    if args.command == "shard":
        return shard_command(args)

    out = Path(args.out) if args.out else labkit.output_dir(__file__)
    import shutil
    for sub in ("warc", "shards", "datatrove"):
        shutil.rmtree(out / sub, ignore_errors=True)
    corpus = build_corpus()
    paths = write_warc(corpus, out / "warc")
    print(f"archive: {len(corpus)} pages in {len(paths)} files ({sum(p.stat().st_size for p in paths):,} bytes "
          f"gzipped) under {out / 'warc'}")
    kept, reports, index = run_pipeline(paths, out / "shards", args.shard_tokens, progress=True)
    print(format_report(reports, len(corpus)))
    print(f"\nshards: {len(index['shards'])} x <= {index['shard_tokens']} tokens, {index['total_tokens']:,} "
          f"tokens ({index['dtype']}), {len(kept)} documents, "
          f"{index['total_tokens'] / max(1, sum(len(d['text'].encode()) for d in kept)):.3f} tokens/byte")
    tokens = load_tokens(out / "shards")
    enc = labkit.assets.tiktoken_encoding("gpt2")
    print("first 40 tokens decoded:", repr(enc.decode(tokens[:40].tolist())))

    start = time.perf_counter()
    result = run_datatrove(out / "warc", out / "datatrove", tasks=args.tasks, workers=args.workers,
                           shard_tokens=args.shard_tokens)
    same = sorted(result["kept_ids"]) == sorted(d["id"] for d in kept)
    dt_tokens = load_tokens(result["shards_dir"])
    print(f"\ndatatrove: {args.tasks} tasks on {args.workers} workers, {len(result['kept_ids'])} documents kept in "
          f"{time.perf_counter() - start:.1f} s; same documents as the plain run: {same}; "
          f"identical token stream: {np.array_equal(dt_tokens, tokens)}")
    for step in result["stats"]["filter"]:
        dropped = {k: v for k, v in step.get("stats", {}).items() if k.startswith("dropped")}
        if dropped:
            print(f"  {step['name']:<16} {dropped}")


if __name__ == "__main__":
    labkit.run(main)
