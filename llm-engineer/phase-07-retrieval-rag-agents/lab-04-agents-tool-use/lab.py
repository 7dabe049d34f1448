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
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
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
    # TODO [calculator]: Recurse over the tree: numeric Constants (not bool), whitelisted BinOp/UnaryOp operators, a cap on exponents; anything else is a ValueError.
    raise NotImplementedError('TODO [calculator]: Recurse over the tree: numeric Constants (not bool), whitelisted BinOp/UnaryOp operators, a cap on exponents; anything else is a ValueError.')


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
        # TODO [sandbox]: setrlimit for address space (bytes), CPU seconds, file size and process count (soft = hard).
        raise NotImplementedError('TODO [sandbox]: setrlimit for address space (bytes), CPU seconds, file size and process count (soft = hard).')
    return apply


def run_python(code: str, timeout: float = 5.0, memory_mb: int = 256, cpu_seconds: int = 2) -> SandboxResult:
    """Run `code` in a fresh `python -I -S` process in an empty temp folder, with an empty environment, OS resource
    limits, sockets disabled, and a wall-clock timeout that kills the whole process group."""
    if not isinstance(code, str) or not code.strip():
        raise ValueError("run_python needs non-empty Python source code")
    with tempfile.TemporaryDirectory(prefix="sandbox-") as work:
        Path(work, "main.py").write_text(code, encoding="utf-8")
        # TODO [sandbox]: Popen [python, -I, -S, -c, prelude] in the temp folder, env={}, own session, preexec limits; communicate with a timeout, killpg on expiry.
        raise NotImplementedError('TODO [sandbox]: Popen [python, -I, -S, -c, prelude] in the temp folder, env={}, own session, preexec limits; communicate with a timeout, killpg on expiry.')


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
        # TODO [tool-registry]: Unknown name, schema violation (jsonschema.validate) and exceptions from the tool each become an "error: ..." string; success is str(result).
        raise NotImplementedError('TODO [tool-registry]: Unknown name, schema violation (jsonschema.validate) and exceptions from the tool each become an "error: ..." string; success is str(result).')


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
    # TODO [fetch-url]: urllib.parse.urlsplit; the scheme must be http/https and .hostname (lower case, no port, no user) must be on the list.
    raise NotImplementedError('TODO [fetch-url]: urllib.parse.urlsplit; the scheme must be http/https and .hostname (lower case, no port, no user) must be on the list.')


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that passes check_url: an allowed page must not bounce the agent elsewhere."""

    def __init__(self, allowed_hosts):
        self.allowed_hosts = allowed_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # TODO [fetch-url]: Check the new URL before handing over to the standard handler.
        raise NotImplementedError('TODO [fetch-url]: Check the new URL before handing over to the standard handler.')


def fetch_url(url: str, max_chars: int = 2000, timeout: float = 5.0, max_bytes: int = 200_000,
              allowed_hosts=FETCH_ALLOWED_HOSTS) -> str:
    """The visible text of a page (HTML stripped; JSON and plain text as they are), at most `max_chars`
    characters; a longer page ends with ' ... [truncated]'. FetchError for a refused URL, a non-2xx answer,
    a binary body, a timeout or a connection failure. At most `max_bytes + 1` bytes are ever read, so an endless
    or huge response cannot exhaust memory."""
    check_url(url, allowed_hosts)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedRedirects(allowed_hosts))
    request = urllib.request.Request(url, headers={"User-Agent": "ai-engineer-labs-agent/1.0"})
    # TODO [fetch-url]: Open with the timeout; HTTPError / URLError / timeouts become FetchError; refuse non-text types; read(max_bytes + 1); decode with the declared charset (UTF-8 by default).
    raise NotImplementedError('TODO [fetch-url]: Open with the timeout; HTTPError / URLError / timeouts become FetchError; refuse non-text types; read(max_bytes + 1); decode with the declared charset (UTF-8 by default).')


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
        # TODO [json-machine]: Literal text ('{', ',', '"name":') alternates with one slot per property; enum -> quoted choices, boolean -> true/false choices; refuse other types.
        raise NotImplementedError('TODO [json-machine]: Literal text (\'{\', \',\', \'"name":\') alternates with one slot per property; enum -> quoted choices, boolean -> true/false choices; refuse other types.')
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
        # TODO [json-machine]: One branch per segment kind; a finished segment moves to _enter(seg + 1); an int that is complete may hand the character on to the next segment.
        raise NotImplementedError('TODO [json-machine]: One branch per segment kind; a finished segment moves to _enter(seg + 1); an int that is complete may hand the character on to the next segment.')

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
        # TODO [constrained-decoding]: Inside a string: plain tokens that fit the room, plus quote-containing tokens that walk; elsewhere: step the first character, then walk the rest of each token with that first character.
        raise NotImplementedError('TODO [constrained-decoding]: Inside a string: plain tokens that fit the room, plus quote-containing tokens that walk; elsewhere: step the first character, then walk the rest of each token with that first character.')
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
        # TODO [constrained-decoding]: Forward with the KV cache, set disallowed logits to -inf, pick greedily (or sample at a temperature), advance the machine by the token's text.
        raise NotImplementedError("TODO [constrained-decoding]: Forward with the KV cache, set disallowed logits to -inf, pick greedily (or sample at a temperature), advance the machine by the token's text.")
    return "".join(text)


# ---------------------------------------------------------------- the ReAct loop

class JsonlTrace:
    """One JSON object per line, each written with a single O_APPEND write: a reader never sees half a line and
    concurrent writers never interleave inside one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        # TODO [trace]: Serialise with a timestamp and a trailing newline, then one os.write on a descriptor opened with O_WRONLY | O_CREAT | O_APPEND.
        raise NotImplementedError('TODO [trace]: Serialise with a timestamp and a trailing newline, then one os.write on a descriptor opened with O_WRONLY | O_CREAT | O_APPEND.')

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
    # TODO [react-loop]: json.loads; it must be an object holding either final_answer, or a string tool plus an object args.
    raise NotImplementedError('TODO [react-loop]: json.loads; it must be an object holding either final_answer, or a string tool plus an object args.')


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
    # TODO [react-loop]: Per step: reply, parse (errors become observations), stop on final_answer, refuse repeats (stop after max_repeats), else registry.call; log and append the observation.
    raise NotImplementedError('TODO [react-loop]: Per step: reply, parse (errors become observations), stop on final_answer, refuse repeats (stop after max_repeats), else registry.call; log and append the observation.')


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
    # TODO [openai-tools]: One {"type": "function", "function": {name, description, parameters}} per tool, in registry order.
    raise NotImplementedError('TODO [openai-tools]: One {"type": "function", "function": {name, description, parameters}} per tool, in registry order.')


def execute_tool_calls(registry: ToolRegistry, message: dict) -> list[dict]:
    """Run every tool call of one assistant message, in order: one tool message per call, with its id.

    A call whose arguments are not a JSON object gets an error observation; the other calls still run."""
    # TODO [openai-tools]: json.loads(function.arguments) ('' counts as {}); registry.call for objects, an error string otherwise; {"role": "tool", "tool_call_id": call id, "content": ...}.
    raise NotImplementedError('TODO [openai-tools]: json.loads(function.arguments) (\'\' counts as {}); registry.call for objects, an error string otherwise; {"role": "tool", "tool_call_id": call id, "content": ...}.')


def trim_messages(messages: list[dict], max_tokens: int, count_tokens: Callable[[str], int]) -> list[dict]:
    """Conversation memory for a fixed context budget: the leading system message always stays, then the newest
    turns that fit, oldest dropped first, contiguously (no gaps). An assistant message with tool_calls and the
    tool messages answering it form one unit, kept or dropped together: a tool message whose call was trimmed
    away is an invalid request. ValueError when even the newest unit does not fit."""
    def cost(message: dict) -> int:  # content plus the text of any tool calls
        calls = message.get("tool_calls") or []
        return count_tokens(message.get("content") or "") + sum(
            count_tokens(c["function"]["name"] + (c["function"].get("arguments") or "")) for c in calls)

    # TODO [memory]: Keep messages[0] if it is the system message; group an assistant-with-tool_calls message with the tool messages after it; walk the groups newest first while they fit.
    raise NotImplementedError('TODO [memory]: Keep messages[0] if it is the system message; group an assistant-with-tool_calls message with the tool messages after it; walk the groups newest first while they fit.')


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
    # TODO [openai-loop]: Per step: chat on the (trimmed) messages, append the reply; no tool_calls -> final answer; else append execute_tool_calls' messages.
    raise NotImplementedError("TODO [openai-loop]: Per step: chat on the (trimmed) messages, append the reply; no tool_calls -> final answer; else append execute_tool_calls' messages.")


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
