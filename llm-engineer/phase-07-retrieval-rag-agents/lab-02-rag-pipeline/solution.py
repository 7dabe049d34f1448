"""A RAG pipeline end to end: chunk, ingest idempotently, retrieve, prompt with citations, generate, stream.

Retrieval-augmented generation answers a question from your documents instead of the model's memory: find the
passages most similar to the question, put them in the prompt with numbers, and ask the model to answer only
from them and cite the numbers. Everything here is a real part that runs offline on a laptop: the MiniLM
embedder, Qdrant (in-process by default, a server with QDRANT_URL), SmolLM2-135M-Instruct, and a FastAPI
service that streams tokens as server-sent events. What you build:

1. `chunk_windows` / `chunk_text`: token windows of `size` tokens, consecutive windows sharing `overlap` tokens,
   measured with the embedder's own tokenizer (the unit its context limit is counted in).
2. `point_id` / `ingest`: idempotent ingestion. A point's id is derived from (document id, chunk index), each
   document carries a content hash: unchanged files are skipped, changed files have their chunks replaced.
3. `retrieve`: embed the query (with the instruction prefix some embedders need) and search Qdrant.
4. `build_messages`: numbered context, citation rules, the "I don't know" rule; below the score threshold the
   model is not even called.
5. `SmolLM2Generator.stream`: tokens as they are generated (transformers' TextIteratorStreamer on a thread).
6. `sse` / `create_app`: `POST /ingest`, `POST /query` (SSE stream), `GET /health`, with 4xx answers for bad
   requests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
from pydantic import BaseModel, Field, field_validator

import labkit
from labkit import assets

DOCS = Path(__file__).resolve().parent / "docs"
NAMESPACE = uuid.UUID("5b0c3f5e-2f1a-4d7e-9a57-0c4c2f7c1a11")  # fixed, so ids are the same on every machine
IDK = "I don't know based on the provided documents."

# Some embedders were trained with different prefixes for queries and passages. MiniLM needs none; using the
# wrong (or no) prefix with a model that expects one silently costs retrieval quality.
PREFIXES = {
    "all-MiniLM-L6-v2": ("", ""),
    "BAAI/bge-small-en-v1.5": ("Represent this sentence for searching relevant passages: ", ""),
    "intfloat/e5-small-v2": ("query: ", "passage: "),
}

SYSTEM_PROMPT = (
    "Answer using ONLY the numbered context passages. Cite the passages you use like [1]. "
    f"If the context does not contain the answer, say: {IDK}"
)


# ---------------------------------------------------------------------------------------------- chunking

@dataclass
class Chunk:
    index: int           # position of the chunk in its document
    text: str            # the exact slice of the document it covers
    token_start: int     # first token (inclusive)
    token_end: int       # last token (exclusive)


def chunk_windows(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Half-open token windows [start, end) covering 0..n_tokens.

    The stride is size - overlap: every window but the last has exactly `size` tokens, each window starts
    `stride` after the previous one (so neighbours share exactly `overlap` tokens), and the last window ends at
    n_tokens. No tokens, no windows.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunking needs size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    # BEGIN SOLUTION [chunking] Step the start by size - overlap; each window ends at min(start + size, n); stop once a window reaches n.
    windows, start = [], 0
    while start < n_tokens:
        end = min(start + size, n_tokens)
        windows.append((start, end))
        if end == n_tokens:
            break
        start += size - overlap
    return windows
    # END SOLUTION


def chunk_text(text: str, tokenizer, size: int = 128, overlap: int = 32) -> list[Chunk]:
    """Chunks of `text` measured in the tokenizer's tokens; each chunk's text is the exact character span of its
    tokens in the original (via the tokenizer's offset mapping), so nothing is lower-cased or re-spaced."""
    if not isinstance(text, str):
        raise ValueError(f"chunk_text: text must be a str, got {type(text).__name__}")
    # BEGIN SOLUTION [chunking] Tokenize once with offsets (no special tokens); for each window, slice text from its first token's start char to its last token's end char.
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [Chunk(index=i, text=text[offsets[start][0]:offsets[end - 1][1]], token_start=start, token_end=end)
            for i, (start, end) in enumerate(chunk_windows(len(offsets), size, overlap))]
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- ingestion

def load_embedder(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the packaged copy (offline); SentenceTransformer("BAAI/bge-small-en-v1.5") online."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_path()), device=device)


def encode(embedder, texts: list[str], batch_size: int = 64):
    """(len(texts), d) float32 unit vectors."""
    return embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)


def connect(url: str | None = None):
    """QdrantClient for `url`, else $QDRANT_URL, else an in-process in-memory instance."""
    from qdrant_client import QdrantClient

    return QdrantClient(location=url or os.environ.get("QDRANT_URL") or ":memory:")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def point_id(doc_id: str, chunk_index: int) -> str:
    """A deterministic UUID for chunk `chunk_index` of document `doc_id` (Qdrant ids are ints or UUIDs).

    The same chunk always gets the same id, so upserting it twice overwrites instead of duplicating.
    """
    # BEGIN SOLUTION [ingest] uuid5 of NAMESPACE and a string that joins the doc id and chunk index unambiguously.
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}\x1f{chunk_index}"))
    # END SOLUTION


def ensure_collection(client, collection: str, dim: int) -> None:
    from qdrant_client import models

    if not client.collection_exists(collection):
        client.create_collection(collection, vectors_config=models.VectorParams(
            size=dim, distance=models.Distance.COSINE))


def doc_filter(doc_id: str):
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])


def stored_hash(client, collection: str, doc_id: str) -> str | None:
    """The content hash stored with a document's chunks, or None if the document is not in the collection."""
    points, _ = client.scroll(collection, scroll_filter=doc_filter(doc_id), limit=1, with_payload=["content_hash"])
    return points[0].payload["content_hash"] if points else None


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)       # documents seen for the first time
    replaced: list[str] = field(default_factory=list)    # documents whose content changed
    unchanged: list[str] = field(default_factory=list)   # skipped: same content hash as stored
    chunks_written: int = 0
    chunks_deleted: int = 0


def ingest(client, collection: str, embedder, docs: dict[str, str], size: int = 128, overlap: int = 32,
           passage_prefix: str = "") -> IngestReport:
    """Add or update documents {doc_id: text}; running it twice on the same input changes nothing.

    Each point's payload: doc_id, chunk (index), text, content_hash (of the whole document).
    """
    from qdrant_client import models

    if not isinstance(docs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in docs.items()):
        raise ValueError("ingest: docs must be a dict {doc_id: text} of strings")
    ensure_collection(client, collection, embedder.get_embedding_dimension())
    report = IngestReport()
    # BEGIN SOLUTION [ingest] Per doc: hash it; same stored hash -> unchanged; else count and delete its old points (doc_id filter), chunk, embed passage_prefix + text, upsert with point_id.
    for doc_id, text in docs.items():
        digest, previous = content_hash(text), stored_hash(client, collection, doc_id)
        if previous == digest:
            report.unchanged.append(doc_id)
            continue
        if previous is not None:
            report.chunks_deleted += client.count(collection, count_filter=doc_filter(doc_id), exact=True).count
            client.delete(collection, points_selector=models.FilterSelector(filter=doc_filter(doc_id)), wait=True)
        (report.replaced if previous is not None else report.added).append(doc_id)
        chunks = chunk_text(text, embedder.tokenizer, size, overlap)
        if not chunks:
            continue
        vectors = encode(embedder, [passage_prefix + c.text for c in chunks])
        client.upsert(collection, wait=True, points=[
            models.PointStruct(id=point_id(doc_id, c.index), vector=v.tolist(),
                               payload={"doc_id": doc_id, "chunk": c.index, "text": c.text, "content_hash": digest})
            for c, v in zip(chunks, vectors)])
        report.chunks_written += len(chunks)
    return report
    # END SOLUTION


def read_folder(folder: str | Path, pattern: str = "*.md") -> dict[str, str]:
    """{relative path: text} for the files under `folder` matching `pattern`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder that holds your documents")
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob(pattern))}


# ---------------------------------------------------------------------------------------------- retrieval

@dataclass
class Hit:
    score: float
    doc_id: str
    chunk: int
    text: str


Scorer = Callable[[str, list[str]], "np.ndarray | list[float]"]  # (query, texts) -> one relevance score per text


def retrieve(client, collection: str, embedder, query: str, k: int = 4, query_prefix: str = "",
             rerank: Scorer | None = None, candidates: int = 20) -> list[Hit]:
    """The k chunks most similar to `query`, best first. `query_prefix` is prepended to the query only (e.g. bge's
    "Represent this sentence for searching relevant passages: "); MiniLM needs none.

    With `rerank` (a scorer such as `load_reranker()`), the first `candidates` chunks by cosine are re-ordered by
    the re-ranker and the best k of them returned (two-stage retrieval: cheap recall, then precise ordering)."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("retrieve: the query is empty; ask a question")
    if k < 1:
        raise ValueError(f"retrieve: k must be >= 1, got {k}")
    if rerank is not None:
        pool = retrieve(client, collection, embedder, query, max(k, candidates), query_prefix)
        return rerank_hits(rerank, query, pool, k)
    # BEGIN SOLUTION [retrieve] Encode prefix + query (normalised), query_points with limit=k and payloads, map each point to a Hit.
    vector = encode(embedder, [query_prefix + query])[0]
    points = client.query_points(collection, query=vector.tolist(), limit=k, with_payload=True).points
    return [Hit(score=p.score, doc_id=p.payload["doc_id"], chunk=p.payload["chunk"], text=p.payload["text"])
            for p in points]
    # END SOLUTION


def rerank_hits(score_fn: Scorer, query: str, hits: list[Hit], k: int) -> list[Hit]:
    """The k hits the re-ranker scores highest, best first; equal scores keep their retrieval order.

    Each Hit keeps its cosine `score`: the IDK threshold in build_messages stays a statement about similarity,
    while the order (and so which k chunks reach the prompt, and their [n] numbers) is the re-ranker's.
    """
    if k < 1:
        raise ValueError(f"rerank_hits: k must be >= 1, got {k}")
    if not hits:
        return []
    # BEGIN SOLUTION [rerank] Score every hit's text in one call, stable descending order, keep the first k.
    scores = np.asarray(score_fn(query, [h.text for h in hits]), dtype=np.float64)
    if scores.shape != (len(hits),):
        raise ValueError(f"rerank_hits: the scorer returned {scores.shape[0] if scores.ndim else 0} scores for "
                         f"{len(hits)} hits; it must return one score per text")
    return [hits[i] for i in np.argsort(-scores, kind="stable")[:k]]
    # END SOLUTION


def load_reranker() -> Scorer:
    """Phase 7 lab 03's re-ranker as a scorer: late interaction (ColBERT-style maxsim) over MiniLM's token vectors,
    the stage that beat dense retrieval on that lab's held-out queries. Imported through labkit.reuse, not copied;
    it needs no training, so it loads in seconds."""
    lab03 = labkit.reuse("lab-03-hybrid-retrieval-reranking")
    return lab03.load_late_interaction()


# ---------------------------------------------------------------------------------------------- prompt

def build_messages(question: str, hits: list[Hit], min_score: float = 0.35) -> list[dict] | None:
    """Chat messages for the generator, or None when no hit scores at least `min_score` (answer: IDK).

    Hits below the threshold are left out. The kept ones are numbered [1], [2], ... best first (the numbers the
    `citations` event maps to sources) in one user message that ends with the question and the instruction
    (models attend best to what comes last). Sources are not put in the prompt: a 135M model copies them into
    its answer instead of answering.
    """
    # BEGIN SOLUTION [prompt] Keep hits >= min_score (None if none); "[n] text" blocks; user = "Context:\n...\n\nQuestion: q\n" + a one-line answer-and-cite instruction.
    kept = [h for h in hits if h.score >= min_score]
    if not kept:
        return None
    context = "\n\n".join(f"[{n}] {h.text}" for n, h in enumerate(kept, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}\n"
                                        "Answer in one sentence and cite the passage number."}]
    # END SOLUTION


def citations(hits: list[Hit], min_score: float) -> list[dict]:
    """What the client is told the answer's [n] markers point to (the same numbering as the prompt)."""
    kept = [h for h in hits if h.score >= min_score]
    return [{"n": n, "doc_id": h.doc_id, "chunk": h.chunk, "score": round(h.score, 4)} for n, h in enumerate(kept, 1)]


# ---------------------------------------------------------------------------------------------- generation

class Generator(Protocol):
    def stream(self, messages: list[dict], max_new_tokens: int = 128) -> Iterator[str]:
        """Yield the answer's text piece by piece as it is generated."""


class ScriptedGenerator:
    """Replays fixed pieces (optionally with a delay between them): deterministic, for tests and dry runs."""

    def __init__(self, pieces: list[str], delay: float = 0.0):
        self.pieces, self.delay, self.calls = list(pieces), delay, []

    def stream(self, messages, max_new_tokens=128):
        self.calls.append(messages)
        for piece in self.pieces[:max_new_tokens]:
            if self.delay:
                time.sleep(self.delay)
            yield piece


class SmolLM2Generator:
    """Greedy generation with a transformers chat model, streamed through TextIteratorStreamer.

    model.generate runs on a worker thread and pushes decoded text into the streamer; this generator yields it.
    If the consumer stops early (a client disconnects), a stopping criterion ends the worker at the next token.
    One model serves one request at a time (a lock): batching concurrent requests is phase 9's subject.
    """

    def __init__(self, model=None, tokenizer=None):
        if model is None:
            model, tokenizer = assets.smollm2()
        self.model, self.tokenizer = model, tokenizer
        self.lock = threading.Lock()

    def stream(self, messages: list[dict], max_new_tokens: int = 128) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class StopWhenSet(StoppingCriteria):
            def __init__(self, event):
                self.event = event

            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)

        with self.lock:
            # BEGIN SOLUTION [generate] Chat template -> ids; TextIteratorStreamer(skip_prompt, skip_special_tokens); generate greedily on a Thread; yield pieces; finally set the stop event and join.
            inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                        return_dict=True).to(self.model.device)
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)
            stop = threading.Event()
            worker = threading.Thread(target=self.model.generate, daemon=True, kwargs=dict(
                **inputs, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=False,
                stopping_criteria=StoppingCriteriaList([StopWhenSet(stop)]),
                pad_token_id=self.tokenizer.eos_token_id))
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                stop.set()          # no-op when generation already finished; ends it early otherwise
                worker.join()
            # END SOLUTION


# ---------------------------------------------------------------------------------------------- service

class Document(BaseModel):
    id: str = Field(min_length=1, max_length=512)
    text: str


class IngestRequest(BaseModel):
    collection: str = Field(default="docs", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    documents: list[Document] = Field(min_length=1)


class QueryRequest(BaseModel):
    query: str = Field(max_length=2000)
    collection: str = Field(default="docs", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    k: int | None = Field(default=None, ge=1, le=20)

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty; send a question")
        return value

def sse(data, event: str | None = None) -> str:
    """One server-sent event: optional `event: name` line, one `data:` line of JSON, then a blank line."""
    # BEGIN SOLUTION [service] "event: name\n" (if any) + "data: " + json.dumps(data) + "\n\n" (the blank line ends the event).
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"
    # END SOLUTION


def create_app(client, embedder, generator: Generator, k: int = 3, min_score: float = 0.35,
               max_new_tokens: int = 128, max_body_bytes: int = 1_000_000, query_prefix: str = "",
               passage_prefix: str = "", chunk_size: int = 128, chunk_overlap: int = 32, rerank: Scorer | None = None):
    """The FastAPI app. Routes:

    GET  /health -> {"status": "ok", "collections": [...]}
    POST /ingest {"collection": "docs", "documents": [{"id": ..., "text": ...}]} -> the IngestReport as JSON
    POST /query  {"query": ..., "collection": "docs", "k": 3} -> text/event-stream:
         event: citations  data: [{"n", "doc_id", "chunk", "score"}, ...]
         event: token      data: {"text": piece}            (one per generated piece)
         event: done       data: {"idk": bool, "pieces": n}
    Bad requests: empty query or malformed JSON -> 422, unknown collection -> 404, body over max_body_bytes -> 413,
    no Content-Length -> 411; each with {"detail": reason}.
    With `rerank`, /query re-orders the top 20 chunks by the re-ranker before keeping k (see `retrieve`).
    """
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    store_lock = threading.Lock()   # Qdrant's local mode and the tokenizer are not safe to share across threads
    # BEGIN SOLUTION [service] Middleware: 411 without Content-Length, 413 over the limit. /health; /ingest under the lock; /query: 404 for an unknown collection, retrieve, then a StreamingResponse of sse() events (citations, tokens or IDK, done).
    app = FastAPI(title="RAG service (phase 7, lab 02)")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "send a Content-Length header (chunked bodies are not accepted)"},
                                    status_code=411)
            if int(length) > max_body_bytes:
                return JSONResponse({"detail": f"request body is {int(length)} bytes; the limit is "
                                               f"{max_body_bytes}"}, status_code=413)
        return await call_next(request)

    @app.get("/health")
    def health():
        with store_lock:
            names = [c.name for c in client.get_collections().collections]
        return {"status": "ok", "collections": names}

    @app.post("/ingest")
    def ingest_route(body: IngestRequest):
        docs = {d.id: d.text for d in body.documents}
        with store_lock:
            report = ingest(client, body.collection, embedder, docs, chunk_size, chunk_overlap, passage_prefix)
        return asdict(report)

    @app.post("/query")
    def query_route(body: QueryRequest):
        with store_lock:
            if not client.collection_exists(body.collection):
                raise HTTPException(404, f"unknown collection '{body.collection}'; POST /ingest creates it")
            hits = retrieve(client, body.collection, embedder, body.query, body.k or k, query_prefix,
                            rerank=rerank)
        messages = build_messages(body.query, hits, min_score)

        def events():
            yield sse(citations(hits, min_score) if messages else [], "citations")
            pieces = [IDK] if messages is None else generator.stream(messages, max_new_tokens)
            count = 0
            for piece in pieces:
                count += 1
                yield sse({"text": piece}, "token")
            yield sse({"idk": messages is None, "pieces": count}, "done")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
    # END SOLUTION


class RunningServer:
    """uvicorn serving `app` on a thread, on a socket it already bound (so the port is known and free)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.url = f"http://{host}:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; see the log above")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def read_sse(lines: Iterator[str]) -> Iterator[tuple[str, object]]:
    """(event, data) pairs from the lines of an SSE stream (a client's side of `sse`)."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].strip())


# ---------------------------------------------------------------------------------------------- demo

def ask(url: str, question: str, collection: str = "docs", echo: bool = True) -> dict:
    """POST /query and read the stream: the answer, citations, time to first token and pieces per second."""
    import httpx

    start, first, pieces, cites, done = time.perf_counter(), None, [], [], {}
    with httpx.stream("POST", f"{url}/query", json={"query": question, "collection": collection},
                      timeout=300) as response:
        response.raise_for_status()
        for event, data in read_sse(response.iter_lines()):
            if event == "citations":
                cites = data
            elif event == "token":
                first = first or time.perf_counter()
                pieces.append(data["text"])
                if echo:
                    print(data["text"], end="", flush=True)
            elif event == "done":
                done = data
    end = time.perf_counter()
    if echo:
        print()
    return {"answer": "".join(pieces), "citations": cites, "idk": done.get("idk"),
            "ttft_s": (first or end) - start, "total_s": end - start, "pieces": len(pieces)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=str(DOCS), help="folder of .md files to ingest")
    parser.add_argument("--qdrant-url", default=None, help="Qdrant server (default: $QDRANT_URL, else in-memory)")
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--min-score", type=float, default=0.35)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--serve", action="store_true", help="keep serving on --port after the demo questions")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--scripted", action="store_true", help="skip SmolLM2 (a scripted generator)")
    parser.add_argument("--model", default=None, help="a local transformers chat model folder instead of SmolLM2")
    parser.add_argument("--question", action="append", help="ask your own question (repeatable)")
    parser.add_argument("--rerank", action="store_true",
                        help="re-order the top 20 chunks with phase 7 lab 03's late-interaction re-ranker first")
    args = parser.parse_args(argv)

    embedder, client = load_embedder(), connect(args.qdrant_url)
    docs = read_folder(args.docs)
    first = ingest(client, "docs", embedder, docs, args.chunk_size, args.overlap)
    print(f"ingested {len(docs)} files: {len(first.added)} added, {first.chunks_written} chunks "
          f"({args.chunk_size} tokens, overlap {args.overlap})")
    again = ingest(client, "docs", embedder, docs, args.chunk_size, args.overlap)
    print(f"re-ingest of the same files: {len(again.unchanged)} unchanged, {again.chunks_written} chunks written")
    edited = dict(docs)
    name = next(iter(edited))
    edited[name] = edited[name].split("\n\n")[0] + "\n"  # the file shrinks to its first paragraph
    change = ingest(client, "docs", embedder, edited, args.chunk_size, args.overlap)
    print(f"after shrinking {name}: replaced {change.replaced}, {change.chunks_deleted} chunks deleted, "
          f"{change.chunks_written} written")
    ingest(client, "docs", embedder, docs, args.chunk_size, args.overlap)  # restore it

    if args.scripted:
        generator = ScriptedGenerator(["(scripted answer) ", "see ", "[1]"])
    else:
        start = time.perf_counter()
        if args.model:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            generator = SmolLM2Generator(AutoModelForCausalLM.from_pretrained(args.model).eval(),
                                         AutoTokenizer.from_pretrained(args.model))
        else:
            generator = SmolLM2Generator()
        print(f"{args.model or 'SmolLM2-135M-Instruct'} loaded in {time.perf_counter() - start:.1f} s")
    rerank = None
    if args.rerank:
        start = time.perf_counter()
        rerank = load_reranker()
        print(f"re-ranker (phase 7 lab 03's late interaction) ready in {time.perf_counter() - start:.1f} s")
    app = create_app(client, embedder, generator, min_score=args.min_score, max_new_tokens=args.max_new_tokens,
                     chunk_size=args.chunk_size, chunk_overlap=args.overlap, rerank=rerank)
    questions = args.question or ["How many vacation days can I carry over into the next year?",
                                  "What is the daily meal allowance when travelling?",
                                  "What is the capital of Australia?"]
    port = args.port if args.serve else 0
    with RunningServer(app, port=port) as server:
        print(f"serving on {server.url} (GET /health, POST /ingest, POST /query)")
        for question in questions:
            print(f"\nQ: {question}\nA: ", end="")
            result = ask(server.url, question)
            sources = ", ".join(f"[{c['n']}] {c['doc_id']}#{c['chunk']} ({c['score']:.2f})"
                                for c in result["citations"]) or "none above the threshold"
            rate = (result["pieces"] - 1) / max(result["total_s"] - result["ttft_s"], 1e-9)
            print(f"   sources: {sources}\n   time to first token {result['ttft_s']:.2f} s, "
                  f"{result['total_s']:.2f} s total, {rate:.1f} pieces/s after the first")
        if args.serve:
            print(f"\ntry: curl -N -X POST {server.url}/query -H 'content-type: application/json' "
                  "-d '{\"query\": \"How long is parental leave?\"}'   (Ctrl-C stops)", file=sys.stderr)
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    labkit.run(main)
