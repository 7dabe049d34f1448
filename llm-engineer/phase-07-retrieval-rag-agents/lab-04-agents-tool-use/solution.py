"""Lab 04: a tool-using agent by hand: a ReAct loop, JSON-schema tools, constrained decoding, a sandbox.

What you build, one idea per function:
  a safe calculator (an AST whitelist, never eval) and a sandboxed Python tool (a separate process with CPU,
  memory and file limits and no network)
  -> a tool registry: each tool declares a JSON schema; arguments are validated before the call, and every
     failure comes back to the model as an observation instead of a crash
  -> structured output that cannot fail: a character-level state machine for a subset of JSON Schema, turned
     into a mask over the model's next-token logits, so even a model with random weights emits valid JSON
  -> the ReAct loop (thought, action, observation) with an iteration cap, repeated-call detection and a
     JSON-lines trace of every step.

Document search runs over the lab's own 20 invented facts (data/docs.jsonl), indexed with lab 03's BM25
(labkit.reuse), so the facts cannot come from the model's memory.

Run it:  python solution.py                  (tools, constrained decoding, scripted and SmolLM2 agent runs)
         python solution.py --tasks 10       (all ten tasks for the real model: several minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import ast
import html.parser
import http.server
import json
import operator
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import jsonschema
import numpy as np
import torch
from tqdm import tqdm

import labkit
from labkit import assets

DATA = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------- tool 1: a safe calculator

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 100  # 9 ** 9 ** 9 would hang the process: cap exponents
MAX_LENGTH = 200


def calculator(expression: str) -> float | int:
    """Evaluate arithmetic (+ - * / // % ** and parentheses on int/float literals) without eval().

    The expression is parsed into a syntax tree and walked; any node outside the whitelist (names, calls,
    attributes, subscripts, strings, lambdas, comprehensions...) raises ValueError naming what was refused.
    """
    if not isinstance(expression, str) or not expression.strip() or len(expression) > MAX_LENGTH:
        raise ValueError(f"calculator takes a non-empty arithmetic string of at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {err.msg}") from None
    # BEGIN SOLUTION [calculator] Recurse over the tree: numeric Constants (not bool), whitelisted BinOp/UnaryOp operators, a cap on exponents; anything else is a ValueError.
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
                raise ValueError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
            return BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            return UNARY[type(node.op)](walk(node.operand))
        raise ValueError(f"'{type(node).__name__}' is not allowed in the calculator (numbers and + - * / // % ** only)")

    return walk(tree)
    # END SOLUTION


# ---------------------------------------------------------------- tool 2: sandboxed Python

# Runs before the user's code in the child process. It is a speed bump, not a jail: the OS limits below are the
# real protection for CPU and memory, and real network isolation needs a namespace or container (see README).
SANDBOX_PRELUDE = '''
import socket as _socket_module
def _no_network(*args, **kwargs):
    raise PermissionError("network is disabled in the sandbox")
for _name in ("connect", "connect_ex", "bind", "sendto", "listen"):
    setattr(_socket_module.socket, _name, _no_network)
_socket_module.getaddrinfo = _socket_module.create_connection = _no_network
del _socket_module, _no_network, _name
with open("main.py", encoding="utf-8") as _f:
    _source = _f.read()
del _f
exec(compile(_source, "main.py", "exec"), {"__name__": "__main__"})
'''


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    returncode: int | None  # None when the wall-clock timeout killed it; negative = killed by that signal
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def observation(self) -> str:
        if self.ok:
            return self.stdout.strip()[-1000:] or "(no output)"
        if self.timed_out:
            return "error: the code ran past the time limit and was killed"
        if self.returncode is not None and self.returncode < 0:
            return f"error: killed by signal {signal.Signals(-self.returncode).name} (a resource limit was hit)"
        tail = self.stderr.strip().splitlines()[-1:] or [""]
        return f"error: exit code {self.returncode}: {tail[0][:300]}"


def _limit_resources(memory_mb: int, cpu_seconds: int) -> Callable[[], None]:
    def apply():  # runs in the child between fork and exec
        # BEGIN SOLUTION [sandbox] setrlimit for address space (bytes), CPU seconds, file size and process count (soft = hard).
        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # files of at most 1 MiB
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))  # counted per user: stops fork bombs, not one fork
        # END SOLUTION
    return apply


def run_python(code: str, timeout: float = 5.0, memory_mb: int = 256, cpu_seconds: int = 2) -> SandboxResult:
    """Run `code` in a fresh `python -I -S` process in an empty temp folder, with an empty environment, OS resource
    limits, sockets disabled, and a wall-clock timeout that kills the whole process group."""
    if not isinstance(code, str) or not code.strip():
        raise ValueError("run_python needs non-empty Python source code")
    with tempfile.TemporaryDirectory(prefix="sandbox-") as work:
        Path(work, "main.py").write_text(code, encoding="utf-8")
        # BEGIN SOLUTION [sandbox] Popen [python, -I, -S, -c, prelude] in the temp folder, env={}, own session, preexec limits; communicate with a timeout, killpg on expiry.
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", SANDBOX_PRELUDE], cwd=work, env={},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=_limit_resources(memory_mb, cpu_seconds))
        try:
            out, err = proc.communicate(timeout=timeout)
            return SandboxResult(out, err, proc.returncode, timed_out=False)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children it spawned die too
            out, err = proc.communicate()
            return SandboxResult(out, err, None, timed_out=True)
        # END SOLUTION


# ---------------------------------------------------------------- tool 3: document search (lab 03's BM25)

@lru_cache(maxsize=1)
def _doc_index():
    retrieval = labkit.reuse("lab-03-hybrid-retrieval-reranking")
    docs = [json.loads(line) for line in (DATA / "docs.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return retrieval, docs, retrieval.BM25([retrieval.tokenize(d["text"]) for d in docs])


def search_docs(query: str, k: int = 2) -> str:
    """The k best-matching facts (BM25), one per line as '[id] text'."""
    retrieval, docs, bm25 = _doc_index()
    scores = bm25.scores(retrieval.tokenize(query))
    hits = [i for i in retrieval.top_k(scores, k) if scores[i] > 0]
    return "\n".join(f"[{docs[i]['id']}] {docs[i]['text']}" for i in hits) or "no document matches the query"


# ---------------------------------------------------------------- the tool registry

@dataclass
class Tool:
    name: str
    description: str
    parameters: dict  # a JSON schema for the keyword arguments
    fn: Callable[..., object]


class ToolRegistry:
    def __init__(self, tools: list[Tool]):
        for tool in tools:
            jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self.tools = {tool.name: tool for tool in tools}

    def describe(self) -> str:
        return "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
                         for t in self.tools.values())

    def call(self, name: str, args: dict) -> str:
        """Validate, run, and turn the result or any failure into observation text (never raises)."""
        # BEGIN SOLUTION [tool-registry] Unknown name, schema violation (jsonschema.validate) and exceptions from the tool each become an "error: ..." string; success is str(result).
        if name not in self.tools:
            return f"error: unknown tool {name!r}; the tools are {', '.join(self.tools)}"
        tool = self.tools[name]
        try:
            jsonschema.validate(args, tool.parameters)
        except jsonschema.ValidationError as err:
            return f"error: invalid arguments for {name}: {err.message}"
        try:
            return str(tool.fn(**args))
        except Exception as err:  # noqa: BLE001 - the model must see every tool failure
            return f"error: {name} failed: {type(err).__name__}: {err}"
        # END SOLUTION


def python_tool(code: str) -> str:
    return run_python(code).observation()


def default_tools() -> ToolRegistry:
    return ToolRegistry([
        Tool("search_docs", "Find facts about places and things in the knowledge base.",
             {"type": "object", "properties": {"query": {"type": "string", "minLength": 1},
                                               "k": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["query"], "additionalProperties": False}, search_docs),
        Tool("calculator", "Evaluate an arithmetic expression such as 12 * (3 + 4) / 2.",
             {"type": "object", "properties": {"expression": {"type": "string", "minLength": 1}},
              "required": ["expression"], "additionalProperties": False}, calculator),
        Tool("python", "Run a short Python program and return what it prints.",
             {"type": "object", "properties": {"code": {"type": "string", "minLength": 1}},
              "required": ["code"], "additionalProperties": False}, python_tool),
    ])


# ---------------------------------------------------------------- tool 4: fetch a web page (an allow-list of hosts)

# Offline, the only reachable pages are served on loopback (the tests and the demo start such a server). Online,
# widen the allow-list to the hosts the agent may read: letting a model pick any URL is server-side request
# forgery waiting to happen (cloud metadata at 169.254.169.254, internal admin pages).
FETCH_ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TEXT_TYPES = ("application/json", "application/xhtml+xml", "application/xml")


class FetchError(ValueError):
    """A URL the tool refuses or cannot read; the message says why, and the registry shows it to the model."""


class _VisibleText(html.parser.HTMLParser):
    """The text a reader of an HTML page sees: <script> and <style> contents skipped, whitespace collapsed."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # depth inside script/style

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_to_text(page: str) -> str:
    parser = _VisibleText()
    parser.feed(page)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def check_url(url: str, allowed_hosts=FETCH_ALLOWED_HOSTS) -> str:
    """`url` itself when the tool may fetch it; FetchError otherwise (http or https only, host on the allow-list)."""
    # BEGIN SOLUTION [fetch-url] urllib.parse.urlsplit; the scheme must be http/https and .hostname (lower case, no port, no user) must be on the list.
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs can be fetched, not {url!r}")
    host = (parts.hostname or "").lower()
    if host not in allowed_hosts:
        raise FetchError(f"host {host or '(none)'!r} is not on the allow-list ({', '.join(sorted(allowed_hosts))})")
    return url
    # END SOLUTION


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that passes check_url: an allowed page must not bounce the agent elsewhere."""

    def __init__(self, allowed_hosts):
        self.allowed_hosts = allowed_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # BEGIN SOLUTION [fetch-url] Check the new URL before handing over to the standard handler.
        check_url(newurl, self.allowed_hosts)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
        # END SOLUTION


def fetch_url(url: str, max_chars: int = 2000, timeout: float = 5.0, max_bytes: int = 200_000,
              allowed_hosts=FETCH_ALLOWED_HOSTS) -> str:
    """The visible text of a page (HTML stripped; JSON and plain text as they are), at most `max_chars`
    characters; a longer page ends with ' ... [truncated]'. FetchError for a refused URL, a non-2xx answer,
    a binary body, a timeout or a connection failure. At most `max_bytes + 1` bytes are ever read, so an endless
    or huge response cannot exhaust memory."""
    check_url(url, allowed_hosts)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedRedirects(allowed_hosts))
    request = urllib.request.Request(url, headers={"User-Agent": "ai-engineer-labs-agent/1.0"})
    # BEGIN SOLUTION [fetch-url] Open with the timeout; HTTPError / URLError / timeouts become FetchError; refuse non-text types; read(max_bytes + 1); decode with the declared charset (UTF-8 by default).
    try:
        with opener.open(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if not (kind.startswith("text/") or kind in TEXT_TYPES):
                raise FetchError(f"{url} returned {kind}, which is not text; fetch an HTML, text or JSON page")
            body = response.read(max_bytes + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as err:
        raise FetchError(f"{url} answered HTTP {err.code} ({err.reason})") from None
    except urllib.error.URLError as err:
        raise FetchError(f"could not fetch {url}: {err.reason}") from None
    except TimeoutError:
        raise FetchError(f"{url} did not answer within {timeout} s") from None
    truncated = len(body) > max_bytes
    text = body[:max_bytes].decode(charset, errors="replace")
    if kind in ("text/html", "application/xhtml+xml"):
        text = html_to_text(text)
    if truncated or len(text) > max_chars:
        return text[:max_chars] + " ... [truncated]"
    return text
    # END SOLUTION


def fetch_tool(allowed_hosts=FETCH_ALLOWED_HOSTS) -> Tool:
    """fetch_url as a registry tool, bound to an allow-list."""
    return Tool("fetch_url", "Read a web page and return its text.",
                {"type": "object", "properties": {"url": {"type": "string", "minLength": 1}},
                 "required": ["url"], "additionalProperties": False},
                lambda url: fetch_url(url, allowed_hosts=allowed_hosts))


# ---------------------------------------------------------------- constrained decoding: the grammar

INT_PREFIX = re.compile(r"-?(0|[1-9][0-9]*)?")
INT_FULL = re.compile(r"-?(0|[1-9][0-9]*)")


class JsonSchemaMachine:
    """A character-level recogniser for the JSON documents of a flat object schema, written without whitespace:
    {"a":"text","b":12,"c":"enum value","d":true}. Supported property types: string (minLength/maxLength, no
    escapes), integer (at most 9 digits), boolean, and enum of strings. Properties come in schema order, all present.

    The schema compiles to segments: literal text, or a slot (str / int / choice). A state is (segment, progress):
    literal -> characters matched; str -> -1 before the opening quote, else characters inside; choice -> the text
    typed so far of one of the quoted alternatives; int -> the digits so far. (len(segments), None) is the end.
    """

    def __init__(self, schema: dict, max_string: int = 64):
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
            raise ValueError("the schema must be {'type': 'object', 'properties': {...}} with at least one property")
        self.segments: list[tuple[str, object]] = []
        # BEGIN SOLUTION [json-machine] Literal text ('{', ',', '"name":') alternates with one slot per property; enum -> quoted choices, boolean -> true/false choices; refuse other types.
        pending = "{"
        for i, (name, prop) in enumerate(schema["properties"].items()):
            pending += ("," if i else "") + json.dumps(name) + ":"
            if "enum" in prop:
                if not all(isinstance(v, str) and '"' not in v and "\\" not in v for v in prop["enum"]):
                    raise ValueError(f"property {name!r}: only enums of plain strings are supported")
                slot = ("choice", tuple(f'"{v}"' for v in prop["enum"]))
            elif prop.get("type") == "string":
                slot = ("str", (prop.get("minLength", 0), min(prop.get("maxLength", max_string), max_string)))
            elif prop.get("type") == "integer":
                slot = ("int", 9)
            elif prop.get("type") == "boolean":
                slot = ("choice", ("true", "false"))
            else:
                raise ValueError(f"property {name!r} has an unsupported type {prop.get('type')!r}: "
                                 "use string, integer, boolean or a string enum")
            self.segments += [("lit", pending), slot]
            pending = ""
        self.segments.append(("lit", "}"))
        # END SOLUTION
        self.start = self._enter(0)

    def _enter(self, seg: int) -> tuple:
        if seg == len(self.segments):
            return (seg, None)
        return (seg, {"lit": 0, "str": -1, "choice": "", "int": ""}[self.segments[seg][0]])

    def done(self, state: tuple) -> bool:
        return state[0] == len(self.segments)

    def step(self, state: tuple, ch: str) -> tuple | None:
        """The state after reading one character, or None when no valid document continues that way."""
        seg, data = state
        if seg == len(self.segments):
            return None
        kind, spec = self.segments[seg]
        # BEGIN SOLUTION [json-machine] One branch per segment kind; a finished segment moves to _enter(seg + 1); an int that is complete may hand the character on to the next segment.
        if kind == "lit":
            if spec[data] != ch:
                return None
            return self._enter(seg + 1) if data + 1 == len(spec) else (seg, data + 1)
        if kind == "str":
            low, high = spec
            if data == -1:
                return (seg, 0) if ch == '"' else None
            if ch == '"':
                return self._enter(seg + 1) if data >= low else None
            if ch == "\\" or ch < " " or data >= high:  # no escapes, no control characters, bounded length
                return None
            return (seg, data + 1)
        if kind == "choice":
            grown = data + ch
            if grown in spec:  # quoted enums and true/false are never a prefix of one another
                return self._enter(seg + 1)
            return (seg, grown) if any(option.startswith(grown) for option in spec) else None
        grown = data + ch  # kind == "int"
        if INT_PREFIX.fullmatch(grown) and sum(c.isdigit() for c in grown) <= spec:
            return (seg, grown)
        if INT_FULL.fullmatch(data):
            return self.step(self._enter(seg + 1), ch)
        return None
        # END SOLUTION

    def walk(self, state: tuple | None, text: str) -> tuple | None:
        for ch in text:
            if state is None:
                return None
            state = self.step(state, ch)
        return state

    def string_room(self, state: tuple) -> int | None:
        """Characters still allowed when the state is inside a string, else None."""
        seg, data = state
        if seg < len(self.segments) and self.segments[seg][0] == "str" and data >= 0:
            return self.segments[seg][1][1] - data
        return None


# ---------------------------------------------------------------- constrained decoding: the token mask

class TokenVocab:
    """The text of every token, indexed for fast masking. `strings[i]` is None for tokens that must never be
    emitted (special tokens, partial UTF-8 bytes)."""

    def __init__(self, strings: list[str | None]):
        self.strings = strings
        self.size = len(strings)
        usable = [s is not None and s != "" for s in strings]
        self.length = np.array([len(s) if ok else 0 for s, ok in zip(strings, usable)])
        self.plain = np.array([ok and '"' not in s and "\\" not in s and all(c >= " " for c in s)
                               for s, ok in zip(strings, usable)])
        self.with_quote = [i for i, (s, ok) in enumerate(zip(strings, usable)) if ok and '"' in s]
        by_first: dict[str, list[int]] = {}
        for i, (s, ok) in enumerate(zip(strings, usable)):
            if ok:
                by_first.setdefault(s[0], []).append(i)
        self.by_first = by_first
        missing = [c for c in '{}:,"-0123456789abcdefghijklmnopqrstuvwxyz' if c not in strings]
        if missing:
            raise ValueError(f"the vocabulary lacks single-character tokens {missing}; constrained decoding needs "
                             "every character the grammar may require as its own token")
        self._cache: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenVocab":
        special = set(tokenizer.all_special_ids)
        strings = []
        for i in range(len(tokenizer)):
            text = tokenizer.decode([i]) if i not in special else None
            strings.append(None if text is None or "\ufffd" in text else text)
        return cls(strings)

    def allowed(self, machine: JsonSchemaMachine, state: tuple) -> np.ndarray:
        """Boolean mask over the vocabulary: token i is allowed iff machine.walk(state, strings[i]) is not None."""
        key = (id(machine), state)
        if key in self._cache:
            return self._cache[key]
        # BEGIN SOLUTION [constrained-decoding] Inside a string: plain tokens that fit the room, plus quote-containing tokens that walk; elsewhere: step the first character, then walk the rest of each token with that first character.
        room = machine.string_room(state)
        if room is not None:
            mask = self.plain & (self.length <= room)
            for i in self.with_quote:
                if machine.walk(state, self.strings[i]) is not None:
                    mask[i] = True
        else:
            mask = np.zeros(self.size, dtype=bool)
            for first, ids in self.by_first.items():
                after = machine.step(state, first)
                if after is None:
                    continue
                for i in ids:
                    if machine.walk(after, self.strings[i][1:]) is not None:
                        mask[i] = True
        # END SOLUTION
        self._cache[key] = mask
        return mask


@torch.no_grad()
def constrained_generate(model, vocab: TokenVocab, machine: JsonSchemaMachine, prompt_ids: list[int],
                         temperature: float = 0.0, generator: torch.Generator | None = None) -> str:
    """Decode until the machine accepts a whole document; every step masks the logits to the allowed tokens.

    It always ends: each token consumes at least one character, and a complete document has a bounded length.
    """
    state, text = machine.start, []
    inputs = torch.tensor([prompt_ids], device=model.device)
    past = None
    while not machine.done(state):
        # BEGIN SOLUTION [constrained-decoding] Forward with the KV cache, set disallowed logits to -inf, pick greedily (or sample at a temperature), advance the machine by the token's text.
        out = model(input_ids=inputs, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()  # (vocab,)
        mask = torch.from_numpy(vocab.allowed(machine, state)).to(logits.device)
        logits = logits[: vocab.size].masked_fill(~mask, float("-inf"))
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs.cpu(), 1, generator=generator))
        else:
            token = int(torch.argmax(logits))
        state = machine.walk(state, vocab.strings[token])
        text.append(vocab.strings[token])
        inputs = torch.tensor([[token]], device=model.device)
        # END SOLUTION
    return "".join(text)


# ---------------------------------------------------------------- the ReAct loop

class JsonlTrace:
    """One JSON object per line, each written with a single O_APPEND write: a reader never sees half a line and
    concurrent writers never interleave inside one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        # BEGIN SOLUTION [trace] Serialise with a timestamp and a trailing newline, then one os.write on a descriptor opened with O_WRONLY | O_CREAT | O_APPEND.
        line = (json.dumps({"time": round(time.time(), 3), **record}, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        # END SOLUTION

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()] \
            if self.path.exists() else []


@dataclass
class AgentResult:
    answer: str | None
    steps: int
    stop_reason: str  # "final_answer" | "max_steps" | "repeated_call"
    messages: list[dict] = field(default_factory=list)


def system_prompt(registry: ToolRegistry) -> str:
    return ("You answer questions using tools. Reply with one JSON object per turn, either\n"
            '{"thought": "...", "tool": "<tool name>", "args": {...}}  or  {"thought": "...", "final_answer": "..."}\n'
            "Tools:\n" + registry.describe())


def parse_action(reply: str) -> dict:
    """The model's reply as an action dict; ValueError (with a reason the model can read) when it is not one."""
    # BEGIN SOLUTION [react-loop] json.loads; it must be an object holding either final_answer, or a string tool plus an object args.
    try:
        action = json.loads(reply)
    except json.JSONDecodeError as err:
        raise ValueError(f"your reply is not valid JSON ({err.msg}); reply with one JSON object") from None
    if not isinstance(action, dict):
        raise ValueError("your reply must be a JSON object")
    if "final_answer" in action:
        return action
    if not isinstance(action.get("tool"), str) or not isinstance(action.get("args"), dict):
        raise ValueError('an action needs "tool" (a string) and "args" (an object), or "final_answer"')
    return action
    # END SOLUTION


def run_agent(model: Callable[[list[dict]], str], registry: ToolRegistry, question: str, max_steps: int = 6,
              max_repeats: int = 1, trace: JsonlTrace | None = None) -> AgentResult:
    """Thought -> action -> observation until a final answer, the step cap, or too many repeated calls.

    `model(messages)` returns the next reply text. A repeated identical call is not run again: the model is told,
    and after `max_repeats` such refusals the loop stops. Every step is appended to `trace` when given.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    messages = [{"role": "system", "content": system_prompt(registry)}, {"role": "user", "content": question}]
    log = trace.append if trace else (lambda record: None)
    # BEGIN SOLUTION [react-loop] Per step: reply, parse (errors become observations), stop on final_answer, refuse repeats (stop after max_repeats), else registry.call; log and append the observation.
    seen: dict[str, str] = {}
    repeats = 0
    for step in range(1, max_steps + 1):
        reply = model(messages)
        messages.append({"role": "assistant", "content": reply})
        try:
            action = parse_action(reply)
        except ValueError as err:
            observation = f"error: {err}"
            log({"step": step, "reply": reply, "observation": observation})
            messages.append({"role": "user", "content": f"Observation: {observation}"})
            continue
        if "final_answer" in action:
            log({"step": step, "thought": action.get("thought"), "final_answer": action["final_answer"]})
            return AgentResult(str(action["final_answer"]), step, "final_answer", messages)
        key = json.dumps([action["tool"], action["args"]], sort_keys=True)
        if key in seen:
            repeats += 1
            if repeats > max_repeats:
                log({"step": step, "tool": action["tool"], "args": action["args"], "stop": "repeated_call"})
                return AgentResult(None, step, "repeated_call", messages)
            observation = (f"error: you already called {action['tool']} with these arguments and got: "
                           f"{seen[key]}. Use that result or try something else.")
        else:
            observation = registry.call(action["tool"], action["args"])
            seen[key] = observation
        log({"step": step, "thought": action.get("thought"), "tool": action["tool"], "args": action["args"],
             "observation": observation})
        messages.append({"role": "user", "content": f"Observation: {observation}"})
    return AgentResult(None, max_steps, "max_steps", messages)
    # END SOLUTION


# ---------------------------------------------------------------- the same loop in OpenAI's function-calling format

# The Chat Completions API (and every server that copies it: vLLM, llama.cpp, Ollama, phase 9's lab 03) carries
# tool use in messages, not in free text:
#   request:  tools=[{"type": "function", "function": {"name", "description", "parameters": <JSON schema>}}]
#   reply:    {"role": "assistant", "content": null,
#              "tool_calls": [{"id": "call_1", "type": "function",
#                              "function": {"name": "calculator", "arguments": "{\"expression\": \"2+2\"}"}}]}
#   results:  one {"role": "tool", "tool_call_id": "call_1", "content": "4"} per call, right after that reply.
# `arguments` is a JSON *string* the model wrote: it can be broken, and that is the model's problem to fix.
OPENAI_SYSTEM = "You answer questions using the tools you are given. Call tools as needed, then answer briefly."


def openai_tools(registry: ToolRegistry) -> list[dict]:
    """The registry's tools as the `tools=` list of a Chat Completions request."""
    # BEGIN SOLUTION [openai-tools] One {"type": "function", "function": {name, description, parameters}} per tool, in registry order.
    return [{"type": "function", "function": {"name": tool.name, "description": tool.description,
                                              "parameters": tool.parameters}}
            for tool in registry.tools.values()]
    # END SOLUTION


def execute_tool_calls(registry: ToolRegistry, message: dict) -> list[dict]:
    """Run every tool call of one assistant message, in order: one tool message per call, with its id.

    A call whose arguments are not a JSON object gets an error observation; the other calls still run."""
    # BEGIN SOLUTION [openai-tools] json.loads(function.arguments) ('' counts as {}); registry.call for objects, an error string otherwise; {"role": "tool", "tool_call_id": call id, "content": ...}.
    results = []
    for call in message.get("tool_calls") or []:
        name = call["function"]["name"]
        try:
            args = json.loads(call["function"].get("arguments") or "{}")
        except json.JSONDecodeError as err:
            content = f"error: the arguments for {name} are not valid JSON ({err.msg}); send one JSON object"
        else:
            content = registry.call(name, args) if isinstance(args, dict) else \
                f"error: the arguments for {name} must be a JSON object, not {type(args).__name__}"
        results.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return results
    # END SOLUTION


def trim_messages(messages: list[dict], max_tokens: int, count_tokens: Callable[[str], int]) -> list[dict]:
    """Conversation memory for a fixed context budget: the leading system message always stays, then the newest
    turns that fit, oldest dropped first, contiguously (no gaps). An assistant message with tool_calls and the
    tool messages answering it form one unit, kept or dropped together: a tool message whose call was trimmed
    away is an invalid request. ValueError when even the newest unit does not fit."""
    def cost(message: dict) -> int:  # content plus the text of any tool calls
        calls = message.get("tool_calls") or []
        return count_tokens(message.get("content") or "") + sum(
            count_tokens(c["function"]["name"] + (c["function"].get("arguments") or "")) for c in calls)

    # BEGIN SOLUTION [memory] Keep messages[0] if it is the system message; group an assistant-with-tool_calls message with the tool messages after it; walk the groups newest first while they fit.
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    units: list[list[dict]] = []
    for message in messages[len(head):]:
        if message["role"] == "tool" and units and units[-1][0].get("tool_calls"):
            units[-1].append(message)
        else:
            units.append([message])
    budget = max_tokens - sum(cost(m) for m in head)
    kept: list[dict] = []
    for unit in reversed(units):
        need = sum(cost(m) for m in unit)
        if need > budget:
            if not kept:
                raise ValueError(f"the newest turn alone needs {need} tokens but only {budget} are left after the "
                                 "system message; raise max_tokens or shorten that turn")
            break
        kept[:0] = unit
        budget -= need
    return head + kept
    # END SOLUTION


def run_agent_openai(chat: Callable[[list[dict], list[dict]], dict], registry: ToolRegistry, question: str,
                     max_steps: int = 6, max_context_tokens: int | None = None,
                     count_tokens: Callable[[str], int] = lambda text: len(text.split())) -> AgentResult:
    """The agent loop over the Chat Completions format. `chat(messages, tools)` returns the assistant message as
    a dict. While it holds tool_calls, run them and append their results; the first reply without tool calls is
    the answer. With `max_context_tokens`, the model sees only trim_messages' window of the conversation."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    messages = [{"role": "system", "content": OPENAI_SYSTEM}, {"role": "user", "content": question}]
    tools = openai_tools(registry)
    # BEGIN SOLUTION [openai-loop] Per step: chat on the (trimmed) messages, append the reply; no tool_calls -> final answer; else append execute_tool_calls' messages.
    for step in range(1, max_steps + 1):
        window = messages if max_context_tokens is None else trim_messages(messages, max_context_tokens, count_tokens)
        reply = chat(window, tools)
        messages.append(reply)
        if not reply.get("tool_calls"):
            return AgentResult(reply.get("content"), step, "final_answer", messages)
        messages.extend(execute_tool_calls(registry, reply))
    return AgentResult(None, max_steps, "max_steps", messages)
    # END SOLUTION


def openai_chat(client, model: str, **options) -> Callable[[list[dict], list[dict]], dict]:
    """A `chat` for run_agent_openai over any OpenAI-compatible endpoint, e.g.
    openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="local") for a local server."""
    def chat(messages: list[dict], tools: list[dict]) -> dict:
        response = client.chat.completions.create(model=model, messages=messages, tools=tools, **options)
        return response.choices[0].message.model_dump(exclude_none=True, exclude={"refusal", "annotations"})
    return chat


class ScriptedChat:
    """Replays assistant messages in order, for the OpenAI-format loop; a dict {"tool": name, "args": {...}} or a
    list of them becomes tool_calls, a plain string becomes the final answer."""

    def __init__(self, turns: list):
        self.turns, self.calls = turns, 0

    def __call__(self, messages: list[dict], tools: list[dict]) -> dict:
        if self.calls >= len(self.turns):
            raise RuntimeError(f"the script has only {len(self.turns)} turns")
        turn = self.turns[self.calls]
        self.calls += 1
        if isinstance(turn, str):
            return {"role": "assistant", "content": turn}
        calls = turn if isinstance(turn, list) else [turn]
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{self.calls}_{i}", "type": "function",
             "function": {"name": c["tool"], "arguments": json.dumps(c["args"])}} for i, c in enumerate(calls)]}


# ---------------------------------------------------------------- models: scripted and real

class ScriptedModel:
    """Replays fixed replies in order; '{last}' in a reply becomes the latest observation text."""

    def __init__(self, replies: list[str | dict]):
        self.replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.calls = 0

    def __call__(self, messages: list[dict]) -> str:
        if self.calls >= len(self.replies):
            raise RuntimeError(f"the script has only {len(self.replies)} replies")
        reply = self.replies[self.calls]
        self.calls += 1
        observations = [m["content"].removeprefix("Observation: ") for m in messages if m["role"] == "user"]
        return reply.replace("{last}", json.dumps(observations[-1])[1:-1])


class ConstrainedLLM:
    """A real model as the agent's policy: each turn is decoded under a JSON schema of a flat action
    {"thought", "tool" (enum, final_answer included), "input"}, then mapped to the loop's action format (the input
    goes to the tool's first required argument)."""

    def __init__(self, model, tokenizer, registry: ToolRegistry, thought_chars: int = 60, input_chars: int = 48):
        self.model, self.tokenizer, self.registry = model, tokenizer, registry
        self.vocab = TokenVocab.from_tokenizer(tokenizer)
        self.machine = JsonSchemaMachine({"type": "object", "properties": {
            "thought": {"type": "string", "minLength": 1, "maxLength": thought_chars},
            "tool": {"enum": [*registry.tools, "final_answer"]},
            "input": {"type": "string", "minLength": 1, "maxLength": input_chars}}})
        self.tokens_in = self.tokens_out = 0

    def prompt(self, messages: list[dict]) -> list[int]:
        guide = ("You answer questions with tools. Each turn reply with JSON "
                 '{"thought": ..., "tool": ..., "input": ...}. Tools: search_docs (input: search words), '
                 "calculator (input: arithmetic like 184000 / 12), python (input: code that prints), final_answer "
                 "(input: the answer). Search first, then calculate, then answer with the number.")
        chat = [{"role": "system", "content": guide}] + messages[1:]
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def __call__(self, messages: list[dict]) -> str:
        ids = self.prompt(messages)
        text = constrained_generate(self.model, self.vocab, self.machine, ids)
        self.tokens_in += len(ids)
        self.tokens_out += len(self.tokenizer.encode(text, add_special_tokens=False))
        flat = json.loads(text)
        if flat["tool"] == "final_answer":
            return json.dumps({"thought": flat["thought"], "final_answer": flat["input"]})
        first = self.registry.tools[flat["tool"]].parameters["required"][0]
        return json.dumps({"thought": flat["thought"], "tool": flat["tool"], "args": {first: flat["input"]}})


def load_tasks(path: Path = DATA / "tasks.jsonl") -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def solved(answer: str | None, task: dict) -> bool:
    """True when the first number in the answer (thousands separators ignored) is within the task's tolerance."""
    found = NUMBER.search((answer or "").replace(",", ""))
    return bool(found) and abs(float(found.group()) - task["answer"]) <= task["tolerance"]


# ---------------------------------------------------------------- the demo

DEMO_SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "minLength": 1, "maxLength": 24}, "population": {"type": "integer"},
    "kind": {"enum": ["village", "town", "city"]}, "coastal": {"type": "boolean"}}}
DEMO_PROMPTS = ["Velmora is a river city of 184,000 people.", "Ostrand is a port town of 23,500 inhabitants.",
                "Kessel is an inland village where 800 people live.", "Brighthaven, a seaside city, has 2 million people."]


def structured_output_demo(model, tokenizer, vocab) -> tuple[int, int]:
    """Valid-JSON counts (constrained, free) over the demo prompts."""
    machine = JsonSchemaMachine(DEMO_SCHEMA)
    constrained_ok = free_ok = 0
    for text in DEMO_PROMPTS:
        chat = [{"role": "user", "content": f"Describe as JSON with keys city, population, kind, coastal: {text}"}]
        ids = list(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"])
        out = constrained_generate(model, vocab, machine, ids)
        constrained_ok += _valid(out)
        free = tokenizer.decode(model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False)[0, len(ids):],
                                skip_special_tokens=True)
        free_ok += _valid(free)
        print(f"  constrained: {out}\n  free:        {free.strip()[:90]!r}")
    return constrained_ok, free_ok


def _valid(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), DEMO_SCHEMA)
        return True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False


HARBOUR_PAGE = b"""<html><head><title>Ostrand harbour</title><style>p {color: grey}</style>
<script>var tracker = "not part of the text";</script></head>
<body><h1>Ostrand harbour notices</h1><p>Visiting yachts pay a berth fee of 38 crowns per day.</p>
<p>The fuel dock opens at 06:00.</p></body></html>"""


@contextmanager
def serve_pages(pages: dict[str, tuple[str, bytes]]):
    """A loopback HTTP server for {path: (content type, body)}; yields its base URL and always shuts it down."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in pages:
                self.send_error(404, "no such page")
                return
            kind, body = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep the demo output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def openai_format_demo(registry: ToolRegistry) -> None:
    print("\nOpenAI function calling: the calculator as a Chat Completions tool:")
    print("  " + json.dumps(openai_tools(registry)[1]))
    with serve_pages({"/harbour.html": ("text/html; charset=utf-8", HARBOUR_PAGE)}) as base:
        web = ToolRegistry([*registry.tools.values(), fetch_tool()])
        for url in [f"{base}/harbour.html", f"{base}/missing.html", "https://example.com/", "file:///etc/passwd"]:
            print(f"  fetch_url({url!r}) -> {web.call('fetch_url', {'url': url})[:110]!r}")
        script = ScriptedChat([{"tool": "fetch_url", "args": {"url": f"{base}/harbour.html"}},
                               [{"tool": "calculator", "args": {"expression": "38 * 12"}},
                                {"tool": "calculator", "args": {"expression": "38 * 12 * 1.1"}}],
                               "A 12-day berth costs 456 crowns (501.6 with 10% tax)."])
        result = run_agent_openai(script, web, "What does a 12-day berth in Ostrand cost, with and without 10% tax?")
    print(f"scripted OpenAI-format agent: {result.stop_reason} after {result.steps} turns; the conversation:")
    for message in result.messages[1:]:
        calls = [f"{c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls", [])]
        text = message.get("content") or "; ".join(calls)
        print(f"  {message['role']:9s} {message.get('tool_call_id', ''):9s} {text[:90]}")
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer: one token per word
    window = trim_messages(result.messages, 40, words)
    print(f"memory: a 40-word window keeps {len(window)} of {len(result.messages)} messages "
          f"({', '.join(m['role'] for m in window)}): the system prompt, then whole turns, newest first")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=3, help="how many tasks the real model attempts (10 = all)")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on a "
                        "shared machine; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    out = labkit.output_dir(__file__)
    registry = default_tools()

    print("tools:")
    for name, call in [("calculator", {"expression": "(184000 / 12) * 2"}), ("calculator", {"expression": "__import__('os')"}),
                       ("search_docs", {"query": "Ostrand lighthouse"}), ("python", {"code": "print(sum(range(10)))"}),
                       ("python", {"code": "import socket; socket.create_connection(('example.com', 80))"}),
                       ("python", {"code": "while True: pass"}), ("calculator", {"expr": "1+1"})]:
        print(f"  {name}({json.dumps(call)}) -> {registry.call(name, call)[:110]!r}")
    openai_format_demo(registry)

    tasks = load_tasks()
    trace = JsonlTrace(out / "trace.jsonl")
    if trace.path.exists():
        trace.path.unlink()
    scripted = [solved(run_agent(ScriptedModel(t["script"]), registry, t["question"], trace=trace).answer, t)
                for t in tasks]
    print(f"\nscripted agent: {sum(scripted)}/{len(tasks)} tasks solved (replayed reference tool calls)")

    model, tokenizer = assets.smollm2()
    t = time.perf_counter()
    vocab = TokenVocab.from_tokenizer(tokenizer)
    print(f"\nindexed SmolLM2's {vocab.size} token strings in {time.perf_counter() - t:.1f} s; structured output:")
    ok, free = structured_output_demo(model, tokenizer, vocab)
    print(f"schema-valid JSON: constrained {ok}/{len(DEMO_PROMPTS)}, unconstrained {free}/{len(DEMO_PROMPTS)}")

    policy = ConstrainedLLM(model, tokenizer, registry)
    policy.vocab = vocab
    wins, t = 0, time.perf_counter()
    for task in tqdm(tasks[: args.tasks], desc="SmolLM2 agent"):
        result = run_agent(policy, registry, task["question"], max_steps=args.max_steps, trace=trace)
        wins += solved(result.answer, task)
        tqdm.write(f"  {task['id']}: {result.stop_reason} after {result.steps} steps, answer {result.answer!r}"
                   f" (expected {task['answer']})")
    n = min(args.tasks, len(tasks))
    print(f"SmolLM2-135M agent: {wins}/{n} tasks solved in {time.perf_counter() - t:.0f} s "
          f"({policy.tokens_in} prompt tokens, {policy.tokens_out} generated); trace: {trace.path}")


if __name__ == "__main__":
    labkit.run(main)
