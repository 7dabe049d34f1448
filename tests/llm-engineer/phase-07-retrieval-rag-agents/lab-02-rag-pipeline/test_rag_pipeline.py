"""RAG pipeline checks. References: the MiniLM tokenizer's own tokens and offsets, uuid.uuid5, Qdrant's stored
points, transformers' plain greedy generate (no streamer), the SSE wire format written out by hand, and a real
uvicorn server on 127.0.0.1 driven with httpx."""
import functools
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import assets
from labkit.labs import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")  # small models, small batches: one torch thread (labkit plugin)

TEXT = ("Retrieval-augmented generation looks up passages before answering. " * 3 +
        "The embedder's tokenizer decides where chunks begin and end; unusual words like tokenization, "
        "Qdrant and SmolLM2 split into several word pieces. " * 4)


@functools.lru_cache(maxsize=1)
def load_minilm():
    """The packaged MiniLM, loaded once per process (the classic-mistakes run rebuilds module fixtures for every
    mistake; the model does not depend on the code under test, so it is shared)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_path()), device="cpu")


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


class RecordingEmbedder:
    """Wraps MiniLM and records every text it is asked to encode (to see which prefixes reach it)."""

    def __init__(self, model):
        self.model, self.seen = model, []
        self.tokenizer = model.tokenizer

    def encode(self, texts, **kwargs):
        self.seen += list(texts)
        return self.model.encode(texts, **kwargs)

    def get_embedding_dimension(self):
        return self.model.get_embedding_dimension()


class Scripted:
    """A generator that replays fixed pieces and counts its calls. With `gate` set (an Event), after the first
    piece it waits up to 5 s for the client to open the gate, and records in `confirmed` whether it did: a client
    can only do so if the first piece reached it while generation was still running."""

    def __init__(self, pieces, delay=0.0):
        self.pieces, self.delay, self.calls = pieces, delay, 0
        self.lock = threading.Lock()
        self.gate, self.confirmed = None, None

    def stream(self, messages, max_new_tokens=128):
        with self.lock:
            self.calls += 1
        for i, piece in enumerate(self.pieces):
            time.sleep(self.delay)
            yield piece
            if i == 0 and self.gate is not None:
                self.confirmed = self.gate.wait(5.0)


class OneLineErrors:
    """ASGI wrapper for the test servers: an exception from the app becomes a 500 whose body names it, and one line
    on stderr. Without it uvicorn logs the full traceback from the server thread, and CPython 3.11 can crash
    ("SystemError: AST constructor recursion depth mismatch", python/cpython#106905) when that thread and the test
    thread format tracebacks at the same moment."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:                         # the app's own error middleware has answered 500 already
            sys.stderr.write(f"test server: {type(exc).__name__}: {exc}\n")
            if not started:
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": f"{type(exc).__name__}: {exc}".encode()})


def serve(impl, app):
    """A RunningServer for `app` on 127.0.0.1 that reports the app's exceptions in one line."""
    return impl.RunningServer(OneLineErrors(app), host="127.0.0.1", port=0)


def all_points(client, collection):
    points, _ = client.scroll(collection, limit=10_000, with_payload=True)
    return points


# --------------------------------------------------------------------------- chunking

@pytest.mark.task("chunking")
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), size=st.integers(1, 40), data=st.data())
def test_windows_cover_every_token_and_overlap_exactly(impl, n, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    windows = impl.chunk_windows(n, size, overlap)
    covered = set()
    for start, end in windows:
        covered |= set(range(start, end))
    assert covered == set(range(n)), f"n={n}, size={size}, overlap={overlap}: windows {windows} miss tokens"
    assert all(0 < end - start <= size for start, end in windows), f"every window needs 1..{size} tokens: {windows}"
    assert all(end - start == size for start, end in windows[:-1]), f"all but the last should be full: {windows}"
    for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
        assert e1 - s2 == overlap, f"neighbours should share exactly {overlap} tokens, got {e1 - s2} in {windows}"
    if n:
        assert windows[0][0] == 0 and windows[-1][1] == n, f"windows should span 0..{n}: {windows}"


@pytest.mark.task("chunking")
def test_chunk_windows_hand_case_and_bad_arguments(impl):
    assert impl.chunk_windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert impl.chunk_windows(3, 4, 2) == [(0, 3)], "a text shorter than one chunk is one chunk"
    assert impl.chunk_windows(0, 4, 2) == []
    with pytest.raises(ValueError):
        impl.chunk_windows(10, 4, 4)


@pytest.mark.task("chunking")
def test_chunks_use_the_embedder_tokens_and_keep_the_original_text(impl, minilm):
    tok = minilm.tokenizer
    enc = tok(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    chunks = impl.chunk_text(TEXT, tok, size=32, overlap=8)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].token_start == 0 and chunks[-1].token_end == n, \
        f"chunks should span all {n} MiniLM tokens, got {chunks[0].token_start}..{chunks[-1].token_end}"
    for a, b in zip(chunks, chunks[1:]):
        assert a.token_end - b.token_start == 8, f"consecutive chunks should share 8 tokens, got {a.token_end - b.token_start}"
    for c in chunks:
        offsets = enc["offset_mapping"][c.token_start:c.token_end]
        want = TEXT[offsets[0][0]:offsets[-1][1]]
        assert c.text == want, f"chunk {c.index} text should be the original span of its tokens: {want!r}, got {c.text!r}"
        assert c.token_end - c.token_start <= 32
    assert impl.chunk_text("", tok) == []


# --------------------------------------------------------------------------- ingest

DOCS = {
    "leave.md": "Every employee gets 25 days of paid vacation. Up to five unused days carry over until March.",
    "travel.md": "The daily meal allowance while travelling is 60 euros. Economy class is the rule for flights.",
    "long.md": " ".join(f"Paragraph {i} talks about the office coffee machine and its weekly cleaning." for i in range(8)),
}


@pytest.mark.task("ingest")
def test_point_ids_are_deterministic_uuids(impl):
    a, b = impl.point_id("docs/a.md", 0), impl.point_id("docs/a.md", 0)
    assert a == b and uuid.UUID(a).version == 5, f"expected the same uuid5 twice, got {a} and {b}"
    ids = {impl.point_id(d, i) for d in ("a", "a1", "b") for i in (0, 1, 11)}
    assert len(ids) == 9, "different (doc, chunk) pairs must give different ids (watch 'a'+'11' vs 'a1'+'1')"


@pytest.mark.task("ingest")
def test_ingest_embeds_passages_with_their_prefix_and_stores_the_plain_text(impl, minilm):
    spy = RecordingEmbedder(minilm)
    client = impl.connect(":memory:")
    impl.ingest(client, "pp", spy, {"a.md": DOCS["travel.md"]}, size=16, overlap=4, passage_prefix="passage: ")
    chunks = impl.chunk_text(DOCS["travel.md"], minilm.tokenizer, 16, 4)
    assert spy.seen == ["passage: " + c.text for c in chunks], \
        f"each chunk should be embedded once, as 'passage: ' + its text; the embedder saw {spy.seen}"
    stored = sorted(p.payload["text"] for p in all_points(client, "pp"))
    assert stored == sorted(c.text for c in chunks), "the payload keeps the chunk text without the prefix"


@pytest.fixture(scope="module")
def store(impl, minilm):
    client = impl.connect(":memory:")
    first = impl.ingest(client, "docs", minilm, dict(DOCS), size=16, overlap=4)
    return client, first


@pytest.mark.task("ingest")
def test_first_ingest_writes_every_chunk_with_its_id(impl, minilm, store):
    client, report = store
    assert sorted(report.added) == sorted(DOCS) and report.chunks_written > len(DOCS), \
        f"expected all 3 documents added in several chunks, got {report}"
    points = all_points(client, "docs")
    assert len(points) == report.chunks_written, f"{report.chunks_written} chunks reported, {len(points)} stored"
    for p in points:
        assert str(p.id) == str(uuid.UUID(impl.point_id(p.payload["doc_id"], p.payload["chunk"]))), \
            "each point's id should be point_id(doc_id, chunk)"
    want = {d: len(impl.chunk_windows(len(minilm.tokenizer(t, add_special_tokens=False)["input_ids"]), 16, 4))
            for d, t in DOCS.items()}
    got = {d: sum(p.payload["doc_id"] == d for p in points) for d in DOCS}
    assert got == want, f"chunks per document should follow the tokenizer: expected {want}, got {got}"


@pytest.mark.task("ingest")
def test_reingesting_the_same_files_adds_nothing(impl, minilm, store):
    client, _ = store
    before = sorted(str(p.id) for p in all_points(client, "docs"))
    report = impl.ingest(client, "docs", minilm, dict(DOCS), size=16, overlap=4)
    assert sorted(report.unchanged) == sorted(DOCS) and report.chunks_written == 0, \
        f"same content should be skipped, got {report}"
    assert sorted(str(p.id) for p in all_points(client, "docs")) == before, "the stored points should not change"


@pytest.mark.task("ingest")
def test_a_changed_file_replaces_its_chunks_and_a_shorter_one_shrinks(impl, minilm):
    client = impl.connect(":memory:")
    impl.ingest(client, "c", minilm, dict(DOCS), size=16, overlap=4)
    old_long = [p for p in all_points(client, "c") if p.payload["doc_id"] == "long.md"]
    old_travel = [p for p in all_points(client, "c") if p.payload["doc_id"] == "travel.md"]
    changed = dict(DOCS, **{"long.md": "Now a short note about tea.", "travel.md": DOCS["travel.md"] + " Trains win."})
    report = impl.ingest(client, "c", minilm, changed, size=16, overlap=4)
    assert sorted(report.replaced) == ["long.md", "travel.md"] and report.unchanged == ["leave.md"], \
        f"expected long.md and travel.md replaced, leave.md unchanged, got {report}"
    points = all_points(client, "c")
    long_now = [p for p in points if p.payload["doc_id"] == "long.md"]
    assert len(long_now) == 1 < len(old_long), f"long.md shrank to one chunk, {len(long_now)} stored"
    assert long_now[0].payload["text"] == "Now a short note about tea."
    travel = sorted((p.payload["chunk"], p.payload["text"]) for p in points if p.payload["doc_id"] == "travel.md")
    want = [(c.index, c.text) for c in impl.chunk_text(changed["travel.md"], minilm.tokenizer, 16, 4)]
    assert travel == want, "travel.md's stored chunks should be exactly the chunks of its new text"
    assert report.chunks_deleted == len(old_long) + len(old_travel), \
        f"expected {len(old_long) + len(old_travel)} old chunks deleted, got {report.chunks_deleted}"


@pytest.mark.task("ingest")
def test_point_ids_survive_a_restart(impl, request):
    # Python's hash() of a str is salted per process: ids built from it change on every restart, and re-ingesting
    # then duplicates every chunk. Compute the id in two fresh interpreters with different hash seeds.
    here = impl.point_id("docs/a.md", 3)
    lab = "llm-engineer/phase-07-retrieval-rag-agents/lab-02-rag-pipeline"
    code = (f"from labkit.labs import load_impl; "
            f"print(load_impl({lab!r}, {request.config.getoption('--impl')!r}).point_id('docs/a.md', 3))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.returncode == 0, f"computing point_id in a fresh process failed: {out.stderr[-500:]}"
        assert out.stdout.strip() == here, \
            f"point_id('docs/a.md', 3) is {here} here but {out.stdout.strip()} in a new process (PYTHONHASHSEED={seed})"


# --------------------------------------------------------------------------- retrieve

@pytest.mark.task("retrieve")
def test_retrieve_finds_the_planted_document(impl, store, minilm):
    client, _ = store
    hits = impl.retrieve(client, "docs", minilm, "How much can I spend on food per day on a business trip?", k=3)
    assert len(hits) == 3, f"expected 3 hits, got {len(hits)}"
    assert hits[0].doc_id == "travel.md", f"the meal-allowance chunk should rank first, got {hits[0]}"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), "hits should be best first"
    assert hits[0].text in DOCS["travel.md"]


@pytest.mark.task("retrieve")
def test_prefixes_go_to_queries_and_passages_only(impl, minilm):
    spy = RecordingEmbedder(minilm)
    client = impl.connect(":memory:")
    impl.ingest(client, "p", spy, {"a.md": DOCS["leave.md"]}, size=16, overlap=4, passage_prefix="passage: ")
    passages = list(spy.seen)
    assert passages and all(t.startswith("passage: ") for t in passages), f"passages should carry the prefix: {passages}"
    spy.seen.clear()
    impl.retrieve(client, "p", spy, "how many vacation days?", k=1, query_prefix="query: ")
    assert spy.seen == ["query: how many vacation days?"], f"the query should be embedded with its prefix, got {spy.seen}"


# --------------------------------------------------------------------------- prompt

def hit(impl, score, doc, text):
    return impl.Hit(score=score, doc_id=doc, chunk=0, text=text)


@pytest.mark.task("prompt")
def test_prompt_numbers_the_context_and_ends_with_the_question(impl):
    hits = [hit(impl, 0.8, "a.md", "Alpha fact."), hit(impl, 0.5, "b.md", "Beta fact."),
            hit(impl, 0.1, "c.md", "Gamma noise.")]
    messages = impl.build_messages("What is alpha?", hits, min_score=0.3)
    assert [m["role"] for m in messages] == ["system", "user"], "expected a system and a user message"
    system, user = messages[0]["content"], messages[1]["content"]
    assert impl.IDK in system and "ONLY" in system, "the system prompt should hold the only-context and IDK rules"
    assert "[1] Alpha fact." in user and "[2] Beta fact." in user, f"context should be numbered best first: {user!r}"
    assert "Gamma" not in user, "a hit below min_score must not reach the prompt"
    assert user.index("What is alpha?") > user.index("Beta fact."), "the question should come after the context"


@pytest.mark.task("prompt")
def test_a_hit_exactly_at_the_threshold_is_kept(impl):
    # "no hit scores at least min_score" means IDK: a score equal to the threshold passes it
    messages = impl.build_messages("What is alpha?", [hit(impl, 0.5, "a.md", "Alpha fact."),
                                                       hit(impl, 0.25, "b.md", "Beta noise.")], min_score=0.5)
    assert messages is not None, "a hit scoring exactly min_score should be used, not answered with IDK"
    assert "[1] Alpha fact." in messages[1]["content"] and "Beta" not in messages[1]["content"]


@pytest.mark.task("prompt")
def test_low_scores_mean_i_dont_know(impl):
    assert impl.build_messages("Capital of Australia?", [hit(impl, 0.2, "a.md", "x")], min_score=0.35) is None
    assert impl.build_messages("Anything?", [], min_score=0.35) is None


# --------------------------------------------------------------------------- generate (stand-in model, fast)

@functools.lru_cache(maxsize=1)
def load_smol_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.smollm2_path())


@pytest.fixture(scope="module")
def smol_tokenizer():
    return load_smol_tokenizer()


class StandInLM:
    """Follows model.generate's streamer protocol without a network: put(prompt ids), then put(one token) per
    step, checking the stopping criteria after each, then end(). It replies with `answer` followed by the end
    token. After `gate_after` tokens it waits (up to `patience` s) for the consumer to open `gate`: a consumer
    that received text while generation was still running can open it; one that waits for the end cannot."""

    def __init__(self, tokenizer, answer, gate_after=None, patience=5.0, delay=0.0):
        import torch

        self.device = torch.device("cpu")
        self.reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        self.eos, self.gate_after, self.patience, self.delay = tokenizer.eos_token_id, gate_after, patience, delay
        self.gate, self.opened_in_time, self.steps, self.prompt = threading.Event(), None, 0, None

    def generate(self, input_ids, streamer=None, max_new_tokens=20, stopping_criteria=None, **kwargs):
        import torch

        self.prompt = input_ids[0].tolist()
        streamer.put(input_ids.cpu())
        ids = input_ids
        for token in self.reply[:max_new_tokens]:
            time.sleep(self.delay)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            self.steps += 1
            streamer.put(torch.tensor([token]))
            if self.steps == self.gate_after:
                self.opened_in_time = self.gate.wait(self.patience)
            if token == self.eos or (stopping_criteria is not None and bool(stopping_criteria(ids, None).all())):
                break
        streamer.end()
        return ids


MESSAGES = [{"role": "user", "content": "Where is the Eiffel Tower?"}]


@pytest.mark.task("generate")
def test_stream_yields_only_the_answer_text(impl, smol_tokenizer):
    model = StandInLM(smol_tokenizer, "It stands in Paris, France.")
    text = "".join(impl.SmolLM2Generator(model, smol_tokenizer).stream(MESSAGES, max_new_tokens=50))
    assert text == "It stands in Paris, France.", \
        f"the stream should carry the answer only (no prompt echo, no {smol_tokenizer.eos_token}), got {text!r}"
    want = smol_tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert model.prompt == list(want), \
        "generate should get the chat template's ids with the assistant header (add_generation_prompt=True)"


@pytest.mark.task("generate")
def test_first_piece_arrives_while_generation_is_still_running(impl, smol_tokenizer):
    model = StandInLM(smol_tokenizer, "The tower is in Paris and it is very tall indeed.", gate_after=4)
    stream = impl.SmolLM2Generator(model, smol_tokenizer).stream(MESSAGES, max_new_tokens=50)
    first = next(stream)
    model.gate.set()                  # only possible before generation ends if pieces are passed on as they come
    rest = "".join(stream)
    assert first and (first + rest).startswith("The tower"), f"unexpected stream {first!r} + {rest!r}"
    assert model.opened_in_time, "the first piece should reach the caller while the model is still generating " \
                                 "(it arrived only after generation had finished: the stream was buffered)"


@pytest.mark.task("generate")
def test_closing_the_stream_stops_the_model_within_a_few_tokens(impl, smol_tokenizer):
    model = StandInLM(smol_tokenizer, " ".join(["word"] * 150), gate_after=3, delay=0.002)
    gen = impl.SmolLM2Generator(model, smol_tokenizer)
    stream = gen.stream(MESSAGES, max_new_tokens=200)
    next(stream)
    model.gate.set()
    stream.close()                    # what Starlette does when the client disconnects
    assert model.steps < 60, f"generation should stop soon after the stream is closed, it ran {model.steps} of 151 steps"
    assert gen.lock.acquire(timeout=5), "the model lock should be free again after the stream is closed"
    gen.lock.release()


# --------------------------------------------------------------------------- generate (real SmolLM2)

@functools.lru_cache(maxsize=1)
def load_smollm2():
    return assets.smollm2()


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2()


@pytest.mark.slow
@pytest.mark.task("generate")
def test_streamed_text_equals_plain_greedy_generate(impl, smollm2):
    import torch

    model, tok = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    streamed = "".join(impl.SmolLM2Generator(model, tok).stream(messages, max_new_tokens=12))
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    want = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert streamed.strip() == want.strip(), f"streamed text should equal greedy generate: {want!r}, got {streamed!r}"
    assert "Paris" in streamed, f"SmolLM2 should answer Paris, got {streamed!r}"


@pytest.mark.slow
@pytest.mark.task("generate")
def test_stopping_the_stream_early_ends_generation(impl, smollm2):
    model, tok = smollm2
    gen = impl.SmolLM2Generator(model, tok)
    stream = gen.stream([{"role": "user", "content": "Count from one to one hundred in words."}], max_new_tokens=200)
    first = next(stream)
    assert first, "the stream should yield text"
    stream.close()          # what Starlette does when a client disconnects
    assert not any(t.name != "MainThread" and t.is_alive() and "generate" in repr(t) for t in threading.enumerate()), \
        "the generation thread should have stopped"
    assert gen.lock.acquire(timeout=5), "the model lock should be free again after the stream is closed"
    gen.lock.release()


# --------------------------------------------------------------------------- service

def test_read_sse_parses_events(impl):
    lines = ["event: token", 'data: {"text": "hi"}', "", 'data: [1]', ""]
    assert list(impl.read_sse(iter(lines))) == [("token", {"text": "hi"}), ("message", [1])]


@pytest.mark.task("service")
def test_sse_wire_format(impl):
    assert impl.sse({"text": "Hi"}, "token") == 'event: token\ndata: {"text": "Hi"}\n\n'
    assert impl.sse([1, 2]) == "data: [1, 2]\n\n"


@pytest.fixture(scope="module")
def server(impl, minilm):
    client = impl.connect(":memory:")
    impl.ingest(client, "docs", minilm, dict(DOCS), size=16, overlap=4)
    generator = Scripted(["The ", "allowance ", "is ", "60 ", "euros ", "[1]."], delay=0.01)
    app = impl.create_app(client, minilm, generator, k=2, min_score=0.35, max_body_bytes=20_000,
                          chunk_size=16, chunk_overlap=4)
    with serve(impl, app) as running:
        yield running, generator


def stream_query(impl, url, payload):
    with httpx.stream("POST", f"{url}/query", json=payload, timeout=60) as response:
        assert response.status_code == 200, f"expected 200, got {response.status_code}: {response.read()!r}"
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(impl.read_sse(response.iter_lines()))


@pytest.mark.task("service")
def test_health_and_a_streamed_answer_with_citations(impl, server):
    running, _ = server
    health = httpx.get(f"{running.url}/health", timeout=10)
    assert health.status_code == 200 and "docs" in health.json()["collections"], f"got {health.text}"
    events = stream_query(impl, running.url, {"query": "What is the daily meal allowance when travelling?"})
    names = [e for e, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and set(names[1:-1]) == {"token"}, \
        f"expected citations, tokens, done; got {names}"
    assert events[0][1][0]["doc_id"] == "travel.md" and events[0][1][0]["n"] == 1, f"citations: {events[0][1]}"
    assert "".join(d["text"] for e, d in events if e == "token") == "The allowance is 60 euros [1]."
    assert events[-1][1] == {"idk": False, "pieces": 6}


@pytest.mark.task("service")
def test_tokens_reach_the_client_before_the_answer_is_finished(impl, server):
    running, generator = server
    generator.gate, generator.confirmed = threading.Event(), None
    try:
        with httpx.stream("POST", f"{running.url}/query", json={"query": "What is the daily meal allowance?"},
                          timeout=60) as response:
            assert response.status_code == 200, f"expected 200, got {response.status_code}"
            tokens = []
            for event, data in impl.read_sse(response.iter_lines()):
                if event == "token":
                    tokens.append(data["text"])
                    generator.gate.set()
    finally:
        generator.gate = None
    assert "".join(tokens) == "The allowance is 60 euros [1].", f"got {tokens}"
    assert generator.confirmed, "the first token event should reach the client while the generator is still " \
                                "running; it came only after the whole answer was produced (a buffered response)"


@pytest.mark.task("service")
def test_out_of_corpus_question_gets_i_dont_know_without_the_model(impl, server):
    running, generator = server
    calls = generator.calls
    events = stream_query(impl, running.url, {"query": "Which planet has the most moons?"})
    assert events[0] == ("citations", []), f"no citation should be offered, got {events[0]}"
    assert [d["text"] for e, d in events if e == "token"] == [impl.IDK]
    assert events[-1][1]["idk"] is True and generator.calls == calls, "the generator should not be called"


@pytest.mark.task("service")
def test_k_in_the_request_overrides_the_default(impl, server):
    running, _ = server                # the app's default is k=2; both leave.md chunks score above 0.6
    question = "How many vacation days carry over?"
    default = stream_query(impl, running.url, {"query": question})
    one = stream_query(impl, running.url, {"query": question, "k": 1})
    assert len(default[0][1]) == 2 and len(one[0][1]) == 1, \
        f"k=1 in the request should retrieve one passage (default two), got {default[0][1]} and {one[0][1]}"


@pytest.mark.task("service")
def test_body_size_limit_is_inclusive_and_chunked_bodies_get_411(impl, server):
    running, _ = server                # max_body_bytes=20_000: a body of exactly 20_000 bytes is allowed
    head = b'{"query": "What is the daily meal allowance when travelling?"'
    for size, status in ((20_000, 200), (20_001, 413)):
        body = head + b" " * (size - len(head) - 1) + b"}"            # JSON padded with whitespace
        response = httpx.post(f"{running.url}/query", content=body, timeout=30,
                              headers={"content-type": "application/json"})
        assert response.status_code == status, f"a {size}-byte body should get {status}, got {response.status_code}"
    chunked = httpx.post(f"{running.url}/query", content=iter([head, b"}"]), timeout=30,
                         headers={"content-type": "application/json"})
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"], \
        f"a body without Content-Length should get 411 naming the header, got {chunked.status_code} {chunked.text}"


@pytest.mark.task("service")
def test_ingest_over_http_is_idempotent(impl, server):
    running, _ = server
    body = {"collection": "notes", "documents": [{"id": "n1", "text": "Bikes are leased over 36 months."}]}
    first = httpx.post(f"{running.url}/ingest", json=body, timeout=60).json()
    second = httpx.post(f"{running.url}/ingest", json=body, timeout=60).json()
    assert first["added"] == ["n1"] and second["unchanged"] == ["n1"] and second["chunks_written"] == 0, \
        f"first {first}, second {second}"


@pytest.mark.task("service")
@pytest.mark.parametrize("payload, status, reason", [
    ({"query": ""}, 422, "query"),
    ({"query": "   "}, 422, "query"),
    ({"query": "hi", "collection": "nope"}, 404, "unknown collection"),
    ({"query": "x" * 30_000}, 413, "limit"),
    ({"collection": "docs"}, 422, "query"),
])
def test_bad_requests_get_4xx_with_a_reason(impl, server, payload, status, reason):
    running, _ = server
    response = httpx.post(f"{running.url}/query", json=payload, timeout=30)
    assert response.status_code == status, f"{payload!r:.60}: expected {status}, got {response.status_code}"
    assert reason in json.dumps(response.json()["detail"]), f"the reason should mention {reason!r}: {response.text[:200]}"


@pytest.mark.task("service")
def test_concurrent_streams_all_complete(impl, server):
    import asyncio

    running, _ = server

    async def one(client, i):
        async with client.stream("POST", f"{running.url}/query",
                                 json={"query": "What is the daily meal allowance when travelling?"}) as response:
            lines = [line async for line in response.aiter_lines()]
        return response.status_code, list(impl.read_sse(iter(lines)))

    async def many():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(6)))

    results = asyncio.run(many())
    for status, events in results:
        assert status == 200, f"every stream should succeed, got {status}"
        tokens = "".join(d["text"] for e, d in events if e == "token")
        assert tokens == "The allowance is 60 euros [1]." and events[-1][0] == "done", \
            f"every stream should deliver all 6 pieces and a done event, got {tokens!r}, last {events[-1]}"


# --------------------------------------------------------------------------- re-rank stage

@pytest.mark.task("rerank")
def test_rerank_hits_orders_by_the_scorer_keeps_cosines_and_ties(impl):
    hits = [hit(impl, 0.9, "a.md", "x"), hit(impl, 0.8, "b.md", "xxx"), hit(impl, 0.7, "c.md", "xx"),
            hit(impl, 0.6, "d.md", "xxx")]
    by_length = lambda query, texts: [float(len(t)) for t in texts]  # noqa: E731
    got = impl.rerank_hits(by_length, "q", hits, k=3)
    # lengths 1, 3, 2, 3: b and d tie at 3 and keep their retrieval order (b first), then c
    assert [h.doc_id for h in got] == ["b.md", "d.md", "c.md"], f"expected b, d, c, got {[h.doc_id for h in got]}"
    assert [h.score for h in got] == [0.8, 0.6, 0.7], \
        f"each hit keeps its cosine score (the IDK threshold reads it), got {[h.score for h in got]}"
    ids = [f"d{i:02d}" for i in range(30)]  # many ties: an unstable sort shuffles equal keys in longer lists
    many = [hit(impl, 1 - i / 100, d, "y" if i % 3 else "yy") for i, d in enumerate(ids)]
    got = impl.rerank_hits(by_length, "q", many, k=30)
    want = sorted(many, key=lambda h: -len(h.text))  # Python's sort is stable
    assert [h.doc_id for h in got] == [h.doc_id for h in want], "equal scores must keep their retrieval order"


@pytest.mark.task("rerank")
def test_retrieve_with_rerank_scores_the_candidate_pool_once(impl, store, minilm):
    client, _ = store
    calls = []

    def scorer(query, texts):
        calls.append((query, list(texts)))
        return [-float(i) for i in range(len(texts))][::-1]  # the reverse of the cosine order

    plain = impl.retrieve(client, "docs", minilm, "meal allowance on trips", k=6)
    got = impl.retrieve(client, "docs", minilm, "meal allowance on trips", k=2, rerank=scorer, candidates=6)
    assert len(calls) == 1 and calls[0][0] == "meal allowance on trips", \
        f"the scorer should be called once with the query, got {len(calls)} calls"
    assert calls[0][1] == [h.text for h in plain], "the scorer should see the top `candidates` chunks by cosine"
    assert [h.text for h in got] == [plain[-1].text, plain[-2].text], \
        "with a scorer that reverses the order, the last two cosine hits should come back first"


@pytest.mark.slow
@pytest.mark.task("rerank")
def test_the_app_reranks_with_lab_03s_cross_encoder(impl, minilm, tmp_path, monkeypatch):
    """The real re-ranker, imported from lab 03 (loaded from its cache under outputs/, or trained there once,
    a few CPU minutes): it must rank the passage that answers a help-centre question above distractors, and the
    app must put its order into the citations."""
    scorer = impl.load_reranker()
    question = "how do I descale my kettle"
    texts = ["Gift cards are valid for three years, online or in store.",
             "To descale the kettle, fill it with water and citric acid, boil, then rinse twice.",
             "The router supports Wi-Fi 7 on three bands."]
    scores = np.asarray(scorer(question, texts))
    assert scores.shape == (3,) and scores.argmax() == 1, f"expected the descaling passage to score highest: {scores}"
    client = impl.connect(":memory:")
    impl.ingest(client, "docs", minilm, dict(DOCS), size=16, overlap=4)
    reversed_scorer = lambda q, t: -np.asarray(scorer(q, t))  # noqa: E731  the re-ranker's order, upside down
    app = impl.create_app(client, minilm, impl.ScriptedGenerator(["ok"]), k=1, min_score=0.0, rerank=reversed_scorer)
    from fastapi.testclient import TestClient

    body = json.dumps({"query": "meal allowance while travelling"})
    with TestClient(app) as http:
        stream = http.post("/query", content=body, headers={"content-type": "application/json"}).text
    cited = json.loads(stream.split("event: citations\ndata: ")[1].split("\n")[0])
    pool = impl.retrieve(client, "docs", minilm, "meal allowance while travelling", k=20)
    want = pool[int(np.argmin(scorer("meal allowance while travelling", [h.text for h in pool])))]
    assert [(c["doc_id"], c["chunk"]) for c in cited] == [(want.doc_id, want.chunk)], \
        f"the app should cite the chunk the upside-down re-ranker puts first, {want.doc_id}#{want.chunk}, got {cited}"
