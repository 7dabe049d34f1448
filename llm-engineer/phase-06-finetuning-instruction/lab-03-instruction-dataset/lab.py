"""Building an instruction dataset: generate with a model, then curate until what is left is worth training on.

You build the curation pipeline that every synthetic-data project needs, with each filter written from scratch:
- self-instruct: a model sees a few seed tasks and invents a new one, then answers it (here SmolLM2-135M-Instruct,
  offline, behind a one-method `Generator` interface so an API model can take its place);
- MinHash: k random hash functions turn a set of shingles into k numbers whose agreement rate estimates the
  Jaccard similarity of the sets (checked bit for bit against datasketch);
- LSH banding: split the k numbers into b bands of r rows; two documents become candidates when any band matches,
  which finds near-duplicates without comparing every pair;
- length, language and quality heuristics, a JSON schema, and an n-gram contamination check against an eval set;
- a quality report (how many records each stage removed), a JSONL file written atomically, and the same file
  loaded back with `datasets.load_dataset("json", ...)`.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import struct
import tempfile
import time
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
from jsonschema import Draft202012Validator

import labkit

HERE = Path(__file__).resolve().parent
SEED_FILE = HERE / "data" / "seed_tasks.jsonl"
EVAL_FILE = HERE / "data" / "eval_set.jsonl"

MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # the modulus of the classic universal hash family
MAX_HASH = np.uint64((1 << 32) - 1)  # hash values are kept to 32 bits

RECORD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["instruction", "input", "output"],
    "properties": {
        "instruction": {"type": "string", "minLength": 1},
        "input": {"type": "string"},
        "output": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}

# A small set of very frequent English function words: English prose is roughly 40-50% these words, while
# French, German or code use almost none of them. Used by the language filter.
ENGLISH_STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there here i you he she we they me him her us them my your his our their what which who whom "
    "how why when where not no do does did have has had can could will would should may might must so than then "
    "too very just about into over after before up down out all any each some more most other such only own same "
    "also".split())
REFUSAL_PHRASES = ("as an ai", "i'm sorry", "i am sorry", "i cannot", "i can't help", "as a language model")


# ---------------------------------------------------------------- generators (given)

class Generator(Protocol):
    """Anything that turns prompts into completions, one completion per prompt, in order."""

    def generate(self, prompts: list[str]) -> list[str]: ...


class ScriptedGenerator:
    """Deterministic stand-in for a model: hands out the given responses in order, cycling. Tests use it."""

    def __init__(self, responses: Sequence[str]):
        if not responses:
            raise ValueError("ScriptedGenerator needs at least one response")
        self.responses, self.calls = list(responses), 0

    def generate(self, prompts: list[str]) -> list[str]:
        out = [self.responses[(self.calls + i) % len(self.responses)] for i in range(len(prompts))]
        self.calls += len(prompts)
        return out


class LocalModelGenerator:
    """A transformers causal LM (SmolLM2-135M-Instruct by default). `chat=True` wraps each prompt in the model's
    chat template (for answers); `chat=False` continues the raw text (for list-continuation prompts)."""

    def __init__(self, model, tokenizer, *, chat: bool, max_new_tokens: int = 48, temperature: float = 0.7,
                 top_p: float = 0.9, batch_size: int = 8, seed: int = 0):
        self.model, self.tokenizer, self.chat = model, tokenizer, chat
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.batch_size, self.seed = batch_size, seed
        self.tokenizer.padding_side = "left"  # decoder-only models must be padded on the left to generate
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: list[str]) -> list[str]:
        import torch

        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True) if self.chat else p
                 for p in prompts]
        torch.manual_seed(self.seed)
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True)
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=True,
                                          temperature=self.temperature, top_p=self.top_p,
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]  # (B, new tokens): drop the prompt
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out


class OpenAIChatGenerator:
    """Optional: an OpenAI-compatible chat endpoint (the role a stronger teacher model plays in self-instruct).
    Never used by the tests or the default demo. Needs OPENAI_API_KEY (and network access)."""

    def __init__(self, model: str = "gpt-4o-mini", base_url: str = "https://api.openai.com/v1",
                 temperature: float = 0.7, timeout: float = 60.0):
        self.api_key = os.environ.get("OPENAI_API_KEY")
        if not self.api_key:
            raise ValueError("OpenAIChatGenerator needs the OPENAI_API_KEY environment variable; "
                             "use LocalModelGenerator to stay offline")
        self.model, self.base_url, self.temperature, self.timeout = model, base_url.rstrip("/"), temperature, timeout

    def generate(self, prompts: list[str]) -> list[str]:
        import httpx

        out = []
        for prompt in prompts:
            reply = httpx.post(f"{self.base_url}/chat/completions", timeout=self.timeout,
                               headers={"Authorization": f"Bearer {self.api_key}"},
                               json={"model": self.model, "temperature": self.temperature,
                                     "messages": [{"role": "user", "content": prompt}]})
            reply.raise_for_status()
            out.append(reply.json()["choices"][0]["message"]["content"])
        return out


# ---------------------------------------------------------------- self-instruct

def build_instruction_prompt(examples: Sequence[str]) -> str:
    """A list-continuation prompt: numbered example tasks, then the next number left open for the model."""
    if not examples:
        raise ValueError("build_instruction_prompt needs at least one example instruction")
    lines = "".join(f"Task {i + 1}: {text}\n" for i, text in enumerate(examples))
    return f"Come up with a list of diverse tasks.\n{lines}Task {len(examples) + 1}:"


def parse_instruction(completion: str, min_words: int = 3) -> str | None:
    """The new task the model wrote: the first non-empty line of its continuation, without a 'Task N:' or
    '3.' prefix or surrounding quotes. None when nothing of at least `min_words` words is left."""
    # TODO [self-instruct]: Take the first non-empty line; strip a leading "Task N:"/"N."/"-" and quotes.
    raise NotImplementedError('TODO [self-instruct]: Take the first non-empty line; strip a leading "Task N:"/"N."/"-" and quotes.')


def self_instruct(instruction_gen: Generator, answer_gen: Generator, seed_instructions: Sequence[str], n: int,
                  examples_per_prompt: int = 4, seed: int = 0) -> list[dict]:
    """Self-instruct in two stages: (1) `n` prompts, each showing `examples_per_prompt` seed instructions drawn
    at random (rng = random.Random(seed), rng.sample), ask for a new one; (2) each parsed instruction is sent to
    `answer_gen`, whose reply becomes the output. Returns {"instruction", "input": "", "output"} records, in order,
    for the completions that parse (the others are dropped)."""
    if n < 1 or len(seed_instructions) < examples_per_prompt:
        raise ValueError(f"need n >= 1 and at least {examples_per_prompt} seed instructions, got n={n} and "
                         f"{len(seed_instructions)}")
    # TODO [self-instruct]: Build n prompts from rng.sample, generate, parse, then answer the parsed ones.
    raise NotImplementedError('TODO [self-instruct]: Build n prompts from rng.sample, generate, parse, then answer the parsed ones.')


# ---------------------------------------------------------------- shingles and MinHash

def normalize(text: str) -> list[str]:
    """Lower-case words (letters and digits), punctuation dropped: the token stream every filter works on."""
    return re.findall(r"[a-z0-9]+", text.lower())


def shingles(text: str, k: int = 3, unit: str = "word") -> set[str]:
    """The set of k-shingles of a text: every run of k consecutive words (unit="word", words joined by one
    space) or characters (unit="char", over the lower-cased text with whitespace runs collapsed to one space).
    A text shorter than k gives one shingle, the whole (normalized) text; an empty text gives the empty set."""
    if k < 1 or unit not in ("word", "char"):
        raise ValueError(f"need k >= 1 and unit 'word' or 'char', got k={k}, unit={unit!r}")
    # TODO [shingles]: Normalize to a sequence (words, or characters), then slide a window of k over it.
    raise NotImplementedError('TODO [shingles]: Normalize to a sequence (words, or characters), then slide a window of k over it.')


def exact_jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets count as identical (1.0)."""
    # TODO [shingles]: Intersection over union, with the empty-empty case handled.
    raise NotImplementedError('TODO [shingles]: Intersection over union, with the empty-empty case handled.')


def sha1_hash32(shingle: str) -> int:
    """A stable 32-bit hash of a string: the first 4 bytes of its SHA-1, little-endian (datasketch's default)."""
    return struct.unpack("<I", hashlib.sha1(shingle.encode("utf-8")).digest()[:4])[0]


def make_permutations(num_perm: int, seed: int = 1) -> np.ndarray:
    """(2, num_perm) uint64 array of (a, b) for the hash family h_i(x) = ((a_i x + b_i) mod p) & (2^32 - 1),
    drawn exactly as datasketch's legacy scheme draws them (so both sketches can share them)."""
    gen = np.random.RandomState(seed)
    pairs = [(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
             for _ in range(num_perm)]
    return np.array(pairs, dtype=np.uint64).T


def minhash_signature(shingle_set: Iterable[str], permutations: np.ndarray) -> np.ndarray:
    """(num_perm,) uint64: for each hash function i, the minimum of h_i over the set's shingles.

    h_i(x) = ((a_i * sha1_hash32(x) + b_i) mod p) & (2^32 - 1), computed in numpy uint64, where the product
    wraps modulo 2^64 before the mod p (the same arithmetic as datasketch's legacy scheme). An empty set gives
    2^32 - 1 everywhere."""
    a, b = permutations
    # TODO [minhash]: Hash every shingle once, broadcast (n, 1) against (num_perm,), take the min over n.
    raise NotImplementedError('TODO [minhash]: Hash every shingle once, broadcast (n, 1) against (num_perm,), take the min over n.')


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """P[min h(A) = min h(B)] = J(A, B) for a random hash, so the share of equal slots estimates J
    (standard error sqrt(J(1-J)/num_perm))."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in length: {sig_a.shape} vs {sig_b.shape}; use the same permutations")
    # TODO [minhash]: The fraction of positions where the two signatures agree.
    raise NotImplementedError('TODO [minhash]: The fraction of positions where the two signatures agree.')


# ---------------------------------------------------------------- LSH banding and near-duplicate removal

def lsh_candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents of Jaccard s share at least one of b bands of r rows: 1 - (1 - s^r)^b.
    This S-curve is steepest near the threshold (1/b)^(1/r)."""
    # TODO [lsh]: One band matches with probability s^r; no band of b matches with (1 - s^r)^b.
    raise NotImplementedError('TODO [lsh]: One band matches with probability s^r; no band of b matches with (1 - s^r)^b.')


def lsh_candidate_pairs(signatures: Sequence[np.ndarray], bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures are identical on at least one band. Band t covers slots
    [t*rows, (t+1)*rows); each band's rows are hashed as a bucket key (a tuple), and every pair inside one bucket
    is a candidate. Needs bands * rows == signature length."""
    if signatures and bands * rows != len(signatures[0]):
        raise ValueError(f"bands * rows must equal the signature length: {bands} * {rows} != "
                         f"{len(signatures[0])}")
    # TODO [lsh]: For each band: bucket documents by the tuple of their band's values; pair up each bucket.
    raise NotImplementedError("TODO [lsh]: For each band: bucket documents by the tuple of their band's values; pair up each bucket.")


def near_duplicates(texts: Sequence[str], threshold: float = 0.6, num_perm: int = 128, bands: int = 32,
                    rows: int = 4, k: int = 3, unit: str = "word",
                    seed: int = 1) -> tuple[list[int], list[tuple[int, int]]]:
    """(indices to drop, confirmed pairs). MinHash every text's k-shingles (shingles(text, k, unit)), take LSH candidates, confirm a
    candidate when its *estimated* Jaccard is >= threshold, and drop the later member of each confirmed pair
    (greedy, in order: a text already dropped does not cause further drops). Pairs are sorted."""
    perms = make_permutations(num_perm, seed)
    # TODO [near-dedup]: Signatures -> LSH candidates -> confirm with the estimate -> keep the first of each.
    raise NotImplementedError('TODO [near-dedup]: Signatures -> LSH candidates -> confirm with the estimate -> keep the first of each.')


# ---------------------------------------------------------------- filters

def length_reason(record: dict, min_instruction_words: int = 3, max_instruction_words: int = 100,
                  min_output_words: int = 1, max_output_words: int = 300) -> str | None:
    """'instruction too short' / 'instruction too long' / 'output too short' / 'output too long', or None.
    Words are whitespace-separated pieces; a too-short instruction is reported before anything else."""
    # TODO [filters]: Count whitespace words of instruction and output and compare with each bound.
    raise NotImplementedError('TODO [filters]: Count whitespace words of instruction and output and compare with each bound.')


def english_scores(text: str) -> tuple[float, float]:
    """(latin share, stopword share): the fraction of letters that are ASCII a-z/A-Z (a script check), and the
    fraction of alphabetic words (normalize(), numbers left out) that are in ENGLISH_STOPWORDS. A text with no
    letters gives (0.0, 0.0)."""
    # TODO [filters]: Letters via str.isalpha; latin = ascii letters / letters; stopwords / words.
    raise NotImplementedError('TODO [filters]: Letters via str.isalpha; latin = ascii letters / letters; stopwords / words.')


def is_english(text: str, min_latin: float = 0.9, min_stopwords: float = 0.1, short_words: int = 6) -> bool:
    """English when at least `min_latin` of the letters are ASCII and, for texts of `short_words` words or more,
    at least `min_stopwords` of the alphabetic words are English stopwords (short texts such as "Ottawa." carry too few
    words to judge, so only the script test applies to them)."""
    # TODO [filters]: Script test always; stopword test only from short_words words upward.
    raise NotImplementedError('TODO [filters]: Script test always; stopword test only from short_words words upward.')


def repeated_trigram_share(text: str) -> float:
    """Share of word 3-grams that repeat an earlier 3-gram (0 for texts under 4 words): degenerate loops such as
    'the cat the cat the cat' score high."""
    # TODO [filters]: (number of 3-grams - number of distinct 3-grams) / number of 3-grams.
    raise NotImplementedError('TODO [filters]: (number of 3-grams - number of distinct 3-grams) / number of 3-grams.')


def quality_reason(record: dict, max_repeat: float = 0.3) -> str | None:
    """'refusal' (a REFUSAL_PHRASES phrase in the output), 'repetitive' (repeated_trigram_share > max_repeat),
    'echo' (the normalized output equals the normalized instruction), in that order; None when it passes."""
    # TODO [filters]: Check the three rules in order on the lower-cased / normalized output.
    raise NotImplementedError('TODO [filters]: Check the three rules in order on the lower-cased / normalized output.')


# ---------------------------------------------------------------- contamination

def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of the normalized text; a text shorter than n words gives one n-gram, the whole text."""
    words = normalize(text)
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contamination_index(eval_texts: Iterable[str], n: int = 8) -> set[tuple[str, ...]]:
    """Every word n-gram of every eval text, in one set (GPT-3 used 13-grams on long documents; 8 suits
    one-sentence instructions)."""
    # TODO [contamination]: The union of ngrams(text, n) over the eval texts.
    raise NotImplementedError('TODO [contamination]: The union of ngrams(text, n) over the eval texts.')


def is_contaminated(record: dict, index: set[tuple[str, ...]], n: int = 8) -> bool:
    """True when the instruction, input or output shares any word n-gram with the eval index."""
    # TODO [contamination]: n-grams of the three fields joined by newlines; any overlap with the index.
    raise NotImplementedError('TODO [contamination]: n-grams of the three fields joined by newlines; any overlap with the index.')


# ---------------------------------------------------------------- the pipeline, the report and the files

def schema_errors(record) -> list[str]:
    """Every violation of RECORD_SCHEMA as 'path: message' strings (empty when the record is valid)."""
    # TODO [curate]: Draft202012Validator(RECORD_SCHEMA).iter_errors, formatted, in a stable order.
    raise NotImplementedError('TODO [curate]: Draft202012Validator(RECORD_SCHEMA).iter_errors, formatted, in a stable order.')


STAGES = ("schema", "length", "language", "quality", "contamination", "near_duplicate")


def curate(records: Sequence[dict], eval_texts: Sequence[str], *, ngram: int = 8, dedup_threshold: float = 0.6,
           num_perm: int = 128, bands: int = 32, rows: int = 4) -> tuple[list[dict], dict]:
    """Run the stages in STAGES order; a record leaves at the first stage it fails. Language is judged on the
    instruction and output joined by a newline. Near-duplicates are judged on instruction + "\n" + input (what
    the model is asked) with character 5-shingles, which suit one-sentence instructions better than word
    3-shingles (one changed word breaks three word shingles out of a handful). Returns (kept records in input order, report) where the report maps "input", every stage
    name and "kept" to counts."""
    # TODO [curate]: Per-record stages first (count each removal), then near_duplicates on the survivors.
    raise NotImplementedError('TODO [curate]: Per-record stages first (count each removal), then near_duplicates on the survivors.')


def atomic_write_text(path: Path, text: str) -> Path:
    """Write to a temporary file in the same folder, fsync, then os.replace: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(records: Iterable[dict], path: Path) -> Path:
    """One JSON object per line, UTF-8, written atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; pass the path of a JSONL file")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg}); fix or remove that line") from None
    return rows


def load_as_dataset(path: Path):
    """The JSONL file as a datasets.Dataset, through the same loader you would use for a Hub dataset."""
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")


def format_report(report: dict) -> str:
    lines = [f"  {'input records':<22}{report['input']:>5}"]
    lines += [f"  - {name.replace('_', ' '):<20}{report[name]:>5}" for name in STAGES]
    lines.append(f"  {'kept':<22}{report['kept']:>5}")
    return "\n".join(lines)


def planted_duplicates(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """Near-copies of some texts (one word dropped or swapped, or a short suffix), for measuring dedup."""
    rng = random.Random(seed)
    out = []
    for text in rng.sample(list(texts), n):
        words = text.split()
        edit = rng.randrange(3)
        if edit == 0 and len(words) > 4:
            del words[rng.randrange(len(words))]
        elif edit == 1 and len(words) > 3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            words.append(rng.choice(["please", "briefly", "now", "for me"]))
        out.append(" ".join(words))
    return out


# ---------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="instruction prompts sent to the generator")
    parser.add_argument("--generator", choices=["smollm2", "scripted", "openai"], default="smollm2")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="answer length cap (tokens)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy box)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out_dir = labkit.output_dir(__file__)
    seeds, evals = read_jsonl(SEED_FILE), [r["question"] for r in read_jsonl(EVAL_FILE)]
    print(f"seed tasks: {len(seeds)}   eval questions: {len(evals)}")

    # 1. MinHash against the exact Jaccard on seed instructions plus planted near-copies.
    base = [r["instruction"] + " " + r["output"] for r in seeds]
    copies = planted_duplicates(base, 10, seed=args.seed)
    texts = base + copies
    perms = make_permutations(128)
    sets = [shingles(t, 3) for t in texts]
    sigs = [minhash_signature(s, perms) for s in sets]
    errs = [abs(estimate_jaccard(sigs[i], sigs[j]) - exact_jaccard(sets[i], sets[j]))
            for i, j in combinations(range(len(texts)), 2)]
    dropped, pairs = near_duplicates(texts, threshold=0.6)
    truth = {i for i in range(len(base), len(texts))}
    n_pairs = len(texts) * (len(texts) - 1) // 2
    candidates = lsh_candidate_pairs(sigs, 32, 4)
    print(f"\nMinHash (128 perms) vs exact Jaccard over {n_pairs} pairs: mean |error| {np.mean(errs):.3f}, "
          f"max {np.max(errs):.3f}")
    print(f"LSH 32 bands x 4 rows: {len(candidates)} candidate pairs instead of {n_pairs}; threshold ≈ "
          f"{(1 / 32) ** (1 / 4):.2f}; P(candidate) at s=0.8: {lsh_candidate_probability(0.8, 32, 4):.3f}, "
          f"s=0.3: {lsh_candidate_probability(0.3, 32, 4):.3f}")
    above = sum(exact_jaccard(sets[i], sets[j]) >= 0.6 for i, j in combinations(range(len(texts)), 2))
    print(f"near-dedup (word 3-shingles, threshold 0.6) on {len(texts)} texts with {len(copies)} planted copies: "
          f"dropped {len(dropped)}, of them planted {len(truth & set(dropped))}, false drops "
          f"{len(set(dropped) - truth)}; pairs with exact Jaccard >= 0.6: {above}")

    # 2. Self-instruct with the chosen generator.
    t0 = time.time()
    if args.generator == "smollm2":
        import torch
        from labkit import assets

        if args.threads:
            torch.set_num_threads(args.threads)
        model, tokenizer = assets.smollm2()
        inst_gen = LocalModelGenerator(model, tokenizer, chat=False, max_new_tokens=24, seed=args.seed)
        ans_gen = LocalModelGenerator(model, tokenizer, chat=True, max_new_tokens=args.max_new_tokens,
                                      seed=args.seed)
    elif args.generator == "openai":
        inst_gen = ans_gen = OpenAIChatGenerator()
    else:
        inst_gen = ScriptedGenerator([" Describe a quiet place you like to visit.\n", " Name two uses of salt."])
        ans_gen = ScriptedGenerator(["The library on a weekday morning, when only the clock makes a sound.",
                                     "Salt seasons food and melts ice on winter roads."])
    generated = self_instruct(inst_gen, ans_gen, [r["instruction"] for r in seeds], args.n, seed=args.seed)
    print(f"\nself-instruct with {args.generator}: {len(generated)} records from {args.n} prompts "
          f"in {time.time() - t0:.1f} s")
    for rec in generated[:3]:
        print(f"  instruction: {rec['instruction']}\n  output:      {rec['output'][:110]!r}")

    # 3. Curate everything: seeds + generated + two planted problems (a leaked eval question, a near-copy).
    leaked = {"instruction": evals[0], "input": "", "output": "It boils at 100 degrees Celsius."}
    near_copy = dict(seeds[1], instruction="Please c" + seeds[1]["instruction"][1:])
    pool = seeds + generated + [leaked, near_copy, {"instruction": "Say hi", "output": 3}]
    kept, report = curate(pool, evals)
    print("\nquality report:\n" + format_report(report))
    path = write_jsonl(kept, out_dir / "instructions.jsonl")
    ds = load_as_dataset(path)
    print(f"\nwrote {path.relative_to(labkit.ROOT)}; datasets.load_dataset('json') -> {ds.num_rows} rows, "
          f"columns {ds.column_names}")
    atomic_write_text(out_dir / "quality_report.json", json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    labkit.run(main)
