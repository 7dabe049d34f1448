"""Lab 03: hybrid retrieval and re-ranking: BM25 + dense embeddings, fused with RRF, re-ranked by a cross-encoder.

What you build, one idea per function:
  BM25 from scratch (exactly rank_bm25's BM25Okapi, Robertson IDF with its epsilon floor)
  -> dense retrieval with the packaged MiniLM sentence embedder (cosine = dot product of unit vectors)
  -> reciprocal rank fusion of the two rankings (score = sum over rankings of 1 / (k + rank), k = 60)
  -> a cross-encoder re-ranker made from the same MiniLM weights plus a fresh 1-logit head, trained in seconds
     on the lab's own training queries, and an LLM re-ranker (SmolLM2 asked "relevant? Yes/No")
  -> nDCG@10, MRR@10 and recall@10 for every stage, with the latency each stage adds.

Data: an invented appliance help centre (data/corpus.jsonl, 154 short documents) with 38 labelled test queries
and 60 training queries (see DATASETS.md). Error-code questions favour BM25, paraphrased how-to questions favour
embeddings; the fusion is meant to keep the best of both.

Run it:  python solution.py                    (BM25, dense, hybrid, hybrid + cross-encoder)
         python solution.py --llm-rerank       (adds the SmolLM2 re-ranker, about 30 s more on 2 cores)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import labkit
from labkit import assets

DATA = Path(__file__).resolve().parent / "data"
TOKEN = re.compile(r"\w+(?:-\w+)*")  # keeps codes such as "e-417" and words such as "wi-fi" whole


# ---------------------------------------------------------------- data

def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_data(folder: Path = DATA) -> tuple[list[dict], list[dict], list[dict]]:
    """(corpus, test queries, training queries). Each query has `relevant`: {doc id: grade (1 or 2)}."""
    return (load_jsonl(folder / "corpus.jsonl"), load_jsonl(folder / "queries.jsonl"),
            load_jsonl(folder / "train_queries.jsonl"))


def doc_text(doc: dict) -> str:
    return f"{doc['title']}. {doc['text']}"


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; hyphenated runs stay one token."""
    return TOKEN.findall(text.lower())


# ---------------------------------------------------------------- BM25

class BM25:
    """Okapi BM25 over pre-tokenised documents, with rank_bm25.BM25Okapi's exact conventions.

    score(q, d) = sum over query tokens t of  idf(t) * f(t,d) * (k1 + 1) / (f(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(N - n_t + 0.5) - ln(n_t + 0.5)       (Robertson; negative when t is in more than half the docs)
    negative idfs are replaced by epsilon * (mean idf over the whole vocabulary), so common words still count a bit.
    A query token repeated twice counts twice; an unknown token adds nothing.
    """

    def __init__(self, corpus_tokens: list[list[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        if not corpus_tokens:
            raise ValueError("BM25 needs at least one document; got an empty corpus")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        # BEGIN SOLUTION [bm25] Per document: a Counter and its length; df counts each term once per document; then Robertson IDF with the epsilon floor for negative values.
        self.term_freqs = [Counter(tokens) for tokens in corpus_tokens]
        self.doc_len = np.array([len(tokens) for tokens in corpus_tokens], dtype=np.float64)
        self.avgdl = self.doc_len.mean()
        n_docs = len(corpus_tokens)
        df = Counter(term for counts in self.term_freqs for term in counts)
        self.idf = {term: math.log(n_docs - n + 0.5) - math.log(n + 0.5) for term, n in df.items()}
        floor = self.epsilon * sum(self.idf.values()) / len(self.idf)
        for term, value in self.idf.items():
            if value < 0:
                self.idf[term] = floor
        # END SOLUTION

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every document for the query. Shape (n_docs,)."""
        # BEGIN SOLUTION [bm25] Loop over query tokens; the saturated term frequency times the idf, vectorised over documents.
        total = np.zeros(len(self.term_freqs))
        norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)
        for term in query_tokens:
            if term not in self.idf:
                continue
            tf = np.array([counts.get(term, 0) for counts in self.term_freqs], dtype=np.float64)
            total += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return total
        # END SOLUTION


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, best first; ties go to the lower index (a stable sort)."""
    return [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[:k]]


# ---------------------------------------------------------------- dense retrieval

class DenseIndex:
    """Unit-length MiniLM embeddings of every document; a query's cosine scores are one matrix-vector product."""

    def __init__(self, embedder, texts: list[str], batch_size: int = 64):
        self.embedder = embedder
        # BEGIN SOLUTION [dense] Encode the documents once, normalised, as float32 numpy; shape (n_docs, 384).
        self.vectors = embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        # END SOLUTION

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query with every document. Shape (n_docs,)."""
        # BEGIN SOLUTION [dense] Encode the query the same way; unit vectors make the dot product the cosine.
        q = self.embedder.encode([query], normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)[0].astype(np.float32)
        return self.vectors @ q  # (n_docs, 384) @ (384,) -> (n_docs,)
        # END SOLUTION


# ---------------------------------------------------------------- fusion

def rrf(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings containing d of 1 / (k + rank), rank starting at 1.

    Only ranks matter, never the raw scores, so BM25's unbounded scores and cosines in [-1, 1] mix without any
    calibration. Returns (doc id, score) best first; equal scores keep the order in which ids were first seen.
    """
    if k < 0:
        raise ValueError(f"rrf's k must be >= 0 (60 is the usual value), got {k}")
    # BEGIN SOLUTION [rrf] Accumulate 1/(k + rank) per id across rankings (rank 1 = first), then sort by score, stable.
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])
    # END SOLUTION


# ---------------------------------------------------------------- metrics

def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (scikit-learn's ndcg_score convention): DCG = sum_i rel_i / log2(i + 1), i from 1,
    divided by the DCG of the ideal ordering of all the query's relevant documents."""
    # BEGIN SOLUTION [metrics] DCG of the first k ids; the ideal DCG from the grades sorted high to low; 0 when there is nothing relevant.
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 1) for i, doc in enumerate(ranked[:k], start=1))
    ideal = sum(g / math.log2(i + 1) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:k], start=1))
    return dcg / ideal if ideal > 0 else 0.0
    # END SOLUTION


def mrr_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document in the top k, or 0."""
    # BEGIN SOLUTION [metrics] Walk the first k ids; return 1/rank at the first one with a positive grade.
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0
    # END SOLUTION


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    # BEGIN SOLUTION [metrics] Count relevant ids among the first k, divide by the number of relevant ids.
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0
    # END SOLUTION


def evaluate(runs: dict[str, list[str]], queries: list[dict], k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, MRR@k and recall@k over the queries; `runs` maps a query id to its ranked doc ids."""
    rows = [(ndcg_at_k(runs[q["qid"]], q["relevant"], k), mrr_at_k(runs[q["qid"]], q["relevant"], k),
             recall_at_k(runs[q["qid"]], q["relevant"], k)) for q in queries]
    ndcg, mrr, recall = np.mean(rows, axis=0)
    return {f"ndcg@{k}": float(ndcg), f"mrr@{k}": float(mrr), f"recall@{k}": float(recall)}


# ---------------------------------------------------------------- cross-encoder re-ranker

def make_cross_encoder(device: str = "cpu", max_length: int = 64):
    """MiniLM's pretrained encoder with a fresh, untrained 1-logit classification head (no re-ranker ships
    offline, so the lab trains the head and fine-tunes the encoder itself)."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(assets.minilm_path()), num_labels=1, max_length=max_length, device=device)


def cross_encoder_logits(ce, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """One relevance logit per (query, document) pair, with gradients. Shape (n_pairs,).

    Query and document go through the encoder together ([CLS] q [SEP] d [SEP]), so every query token attends to
    every document token: that full cross-attention is why it ranks better and costs more than a bi-encoder.
    """
    # BEGIN SOLUTION [cross-encoder] Tokenise the pairs as two segments (padding, truncation, max_length), run ce.model, take logits[:, 0].
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    batch = ce.tokenizer(queries, docs, padding=True, truncation=True, max_length=ce.max_seq_length,
                         return_tensors="pt").to(ce.model.device)
    return ce.model(**batch).logits[:, 0]  # (n_pairs, 1) -> (n_pairs,)
    # END SOLUTION


def training_pairs(queries: list[dict], corpus: list[dict], candidates: dict[str, list[str]],
                   negatives_per_query: int = 3) -> list[tuple[str, str, float]]:
    """(query, document text, label) triples: every relevant doc with label grade / 2, plus the highest-ranked
    non-relevant candidates as hard negatives (label 0). Hard negatives teach more than random ones."""
    by_id = {d["id"]: d for d in corpus}
    pairs = []
    for q in queries:
        pairs += [(q["query"], doc_text(by_id[doc]), grade / 2) for doc, grade in q["relevant"].items()]
        hard = [doc for doc in candidates[q["qid"]] if doc not in q["relevant"]][:negatives_per_query]
        pairs += [(q["query"], doc_text(by_id[doc]), 0.0) for doc in hard]
    return pairs


def train_cross_encoder(ce, pairs: list[tuple[str, str, float]], epochs: int = 2, batch_size: int = 16,
                        lr: float = 1e-4, head_lr: float = 2e-3, trainable_layers: int = 2, seed: int = 0,
                        progress: bool = False) -> list[float]:
    """Fine-tune the cross-encoder with binary cross-entropy on its logit; returns the loss of every step.

    Few labels and a CPU budget: the embeddings and lower layers stay frozen, the top `trainable_layers` encoder
    layers learn at `lr`, and the fresh head at the much larger `head_lr` (it starts from random weights).
    """
    if not pairs:
        raise ValueError("train_cross_encoder needs at least one (query, doc, label) pair")
    generator = torch.Generator().manual_seed(seed)
    bert, head = ce.model.base_model, ce.model.classifier
    for p in bert.parameters():
        p.requires_grad_(False)
    top = [*bert.encoder.layer[-trainable_layers:]] if trainable_layers > 0 else []
    body = [p for module in top + [bert.pooler] if module is not None for p in module.parameters()]
    for p in body:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head.parameters(), "lr": head_lr}])
    losses = []
    ce.model.train()
    steps = [(epoch, start) for epoch in range(epochs) for start in range(0, len(pairs), batch_size)]
    order = None
    for epoch, start in tqdm(steps, desc="train cross-encoder", disable=not progress):
        if start == 0:
            order = torch.randperm(len(pairs), generator=generator).tolist()
        batch = [pairs[i] for i in order[start:start + batch_size]]
        # BEGIN SOLUTION [cross-encoder] Logits for the batch's (query, doc) pairs, BCE-with-logits against the labels, then the usual zero_grad/backward/step.
        logits = cross_encoder_logits(ce, [(q, d) for q, d, _ in batch])
        labels = torch.tensor([label for _, _, label in batch], dtype=logits.dtype, device=logits.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # END SOLUTION
        losses.append(loss.item())
    ce.model.eval()
    return losses


@torch.no_grad()
def rerank(score_fn, query: str, candidates: list[str], texts: dict[str, str], top_n: int = 20) -> list[str]:
    """Re-order the first `top_n` candidates by score_fn(query, [texts]) (higher = more relevant); the rest keep
    their order behind them. Re-rankers are slow, so they only ever see a short list."""
    # BEGIN SOLUTION [rerank] Score the head of the list, sort it by descending score (stable), append the tail unchanged.
    head, tail = candidates[:top_n], candidates[top_n:]
    scores = np.asarray(score_fn(query, [texts[doc] for doc in head]), dtype=np.float64)
    return [head[i] for i in np.argsort(-scores, kind="stable")] + tail
    # END SOLUTION


def cross_encoder_scorer(ce):
    ce.model.eval()
    return lambda query, docs: cross_encoder_logits(ce, [(query, d) for d in docs]).float().cpu().numpy()


# ---------------------------------------------------------------- late-interaction re-ranker

def maxsim(query_vectors: torch.Tensor, doc_vectors: torch.Tensor) -> float:
    """Late-interaction score: every query token finds its most similar document token, the maxima are summed.

    score(q, d) = sum_i max_j <q_i, d_j>   with unit rows, so each term is a cosine in [-1, 1].
    query_vectors (n_q, dim), doc_vectors (n_d, dim) -> a float. Summing (not averaging) over query tokens keeps
    the score comparable across documents for one query, which is all a re-ranker needs.
    """
    # BEGIN SOLUTION [late-interaction] (n_q, dim) @ (dim, n_d) similarity matrix; max over the document axis; sum over query tokens.
    return float((query_vectors @ doc_vectors.T).max(dim=1).values.sum())
    # END SOLUTION


class LateInteraction:
    """A re-ranker from MiniLM's token vectors (ColBERT-style), no training needed.

    The bi-encoder squeezes a text into one mean-pooled vector, so "E-714" and "E-741" end up almost equal. Keep
    every token's contextual vector instead and let each query token look for its best match in the document:
    an exact code or model name then matches its own word pieces (cosine near 1), and a paraphrase still matches
    through the contextual vectors. Cost: one forward pass per candidate, like a cross-encoder, but the
    document's vectors do not depend on the query and could be precomputed.
    """

    def __init__(self, embedder, max_length: int = 128):
        self.tokenizer, self.model = embedder.tokenizer, embedder[0].auto_model
        self.max_length = max_length
        self.special = torch.tensor(sorted(self.tokenizer.all_special_ids))

    @torch.no_grad()
    def token_vectors(self, texts: list[str]) -> list[torch.Tensor]:
        """One (n_tokens, dim) tensor of unit-length token vectors per text: the encoder's last hidden states,
        with padding and the special tokens ([CLS], [SEP]) left out."""
        # BEGIN SOLUTION [late-interaction] Tokenise the batch (padding, truncation, max_length); last_hidden_state; L2-normalise each token; keep the positions the attention mask marks that are not special ids.
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = batch.to(self.model.device)
        hidden = self.model(**batch).last_hidden_state  # (n_texts, seq, dim)
        hidden = torch.nn.functional.normalize(hidden, dim=-1)
        keep = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], self.special.to(hidden.device))
        return [hidden[i][keep[i]] for i in range(len(texts))]
        # END SOLUTION

    def __call__(self, query: str, docs: list[str]) -> np.ndarray:
        """The scorer interface of `rerank`: one maxsim score per document. Shape (n_docs,)."""
        q = self.token_vectors([query])[0]
        return np.array([maxsim(q, d) for d in self.token_vectors(docs)], dtype=np.float64)


def load_late_interaction(max_length: int = 128) -> LateInteraction:
    """The late-interaction re-ranker on the packaged MiniLM (other labs call this through labkit.reuse)."""
    return LateInteraction(assets.sentence_embedder(), max_length)


# ---------------------------------------------------------------- a trained re-ranker, cached on disk

# The settings the shipped numbers were measured with (README). The whole encoder learns: with only the top
# layers and the head trainable, a few dozen CPU steps barely move the loss and the re-ranker shuffles the list.
RERANKER = {"epochs": 3, "negatives_per_query": 6, "batch_size": 16, "lr": 5e-5, "head_lr": 1e-3,
            "trainable_layers": 6, "max_length": 64, "seed": 0}
COMPLETE = "complete.json"  # written last inside the cache folder: a folder without it is not a finished model


def reranker_key(config: dict, data_folder: Path = DATA) -> str:
    """16 hex digits that change whenever a training setting or a training data file changes (and only then:
    the order of the config's keys does not matter)."""
    # BEGIN SOLUTION [reranker-cache] sha256 over the config as JSON with sorted keys, then the bytes of corpus.jsonl and train_queries.jsonl.
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in ("corpus.jsonl", "train_queries.jsonl"):
        digest.update((Path(data_folder) / name).read_bytes())
    return digest.hexdigest()[:16]
    # END SOLUTION


def cached_model(folder: Path, build, save, load):
    """`load(folder)` when a finished copy is there; else `model = build()`, saved atomically, and returned.

    Atomic: `save(model, tmp)` writes into a temporary sibling folder (same file system), the COMPLETE marker goes
    in last, and one `os.replace` renames it to `folder`. A crash or an error mid-save leaves no `folder` and no
    temporary folder behind, so the next run trains again instead of loading half a model.
    """
    folder = Path(folder)
    # BEGIN SOLUTION [reranker-cache] Load if folder/COMPLETE exists; else build, save into a temp sibling, write the marker, os.replace; on any error remove the temp folder and re-raise.
    if (folder / COMPLETE).is_file():
        return load(folder)
    model = build()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save(model, tmp)
        (tmp / COMPLETE).write_text(json.dumps({"saved": time.time()}))
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished folder left by some older writer
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model
    # END SOLUTION


def train_reranker(corpus, train, bm25, dense, config: dict = RERANKER, progress: bool = False):
    """A fresh cross-encoder trained on the training queries, with hard negatives from the hybrid pipeline."""
    labkit.seed_everything(config["seed"])
    train_runs, _ = run_stages(corpus, train, bm25, dense, progress=False)
    pairs = training_pairs(train, corpus, train_runs["hybrid (RRF)"], config["negatives_per_query"])
    ce = make_cross_encoder(max_length=config["max_length"])
    ce.losses = train_cross_encoder(ce, pairs, epochs=config["epochs"], batch_size=config["batch_size"],
                                    lr=config["lr"], head_lr=config["head_lr"],
                                    trainable_layers=config["trainable_layers"], seed=config["seed"],
                                    progress=progress)
    ce.n_pairs = len(pairs)
    return ce


def load_reranker(config: dict = RERANKER, cache_root: Path | None = None, progress: bool = False):
    """The trained cross-encoder for this lab's data: from the cache under outputs/ when it is there, else
    trained (a few CPU minutes) and cached. Other labs (phase 7 lab 02's `rerank=` option) call this."""
    from sentence_transformers import CrossEncoder

    root = Path(cache_root) if cache_root is not None else labkit.output_dir(__file__)
    folder = root / f"cross-encoder-{reranker_key(config)}"

    def build():
        corpus, _, train = load_data()
        bm25 = BM25([tokenize(doc_text(d)) for d in corpus])
        dense = DenseIndex(assets.sentence_embedder(), [doc_text(d) for d in corpus])
        return train_reranker(corpus, train, bm25, dense, config, progress)

    def save(ce, path):
        ce.save(str(path), create_model_card=False)

    def load(path):
        return CrossEncoder(str(path), num_labels=1, max_length=config["max_length"], device="cpu")

    ce = cached_model(folder, build, save, load)
    ce.model.eval()
    return ce


# ---------------------------------------------------------------- LLM re-ranker

def judge_prompt(tokenizer, query: str, document: str) -> str:
    """The chat-formatted question whose next token the LLM re-ranker reads (document first, question last)."""
    user = f"Document: {document}\n\nIs this document relevant to the question \"{query}\"? Answer Yes or No."
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def llm_relevance_scores(model, tokenizer, query: str, documents: list[str]) -> np.ndarray:
    """logit("Yes") - logit("No") for the first answer token, one per document. Shape (n_docs,).

    The difference of the two logits is the log-odds of Yes against No (the other 49k tokens cancel out of that
    ratio), a graded score from a model that was only ever asked a yes/no question.
    """
    # BEGIN SOLUTION [llm-rerank] Left-pad the judge prompts into one batch; read the last position's logits at the ids of "Yes" and "No".
    yes = tokenizer.encode("Yes", add_special_tokens=False)[0]
    no = tokenizer.encode("No", add_special_tokens=False)[0]
    tokenizer.padding_side = "left"  # the last column is then every prompt's final token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = [judge_prompt(tokenizer, query, d) for d in documents]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    logits = model(**batch).logits[:, -1, :]  # (n_docs, seq, vocab) -> (n_docs, vocab)
    return (logits[:, yes] - logits[:, no]).float().cpu().numpy()
    # END SOLUTION


# ---------------------------------------------------------------- the demo

def run_stages(corpus, queries, bm25, dense, score_fn=None, llm=None, depth: int = 100, top_n: int = 20,
               progress: bool = True, late=None):
    """Rankings for each stage and the milliseconds each stage adds per query (mean)."""
    ids = [d["id"] for d in corpus]
    texts = {d["id"]: doc_text(d) for d in corpus}
    runs = {"BM25": {}, "dense": {}, "hybrid (RRF)": {}}
    if score_fn:
        runs["hybrid + cross-encoder"] = {}
    if late:
        runs["hybrid + late interaction"] = {}
    if llm:
        runs["hybrid + LLM judge"] = {}
    times = {name: [] for name in runs}
    for q in tqdm(queries, desc="queries", disable=not progress):
        t0 = time.perf_counter()
        lexical = [ids[i] for i in top_k(bm25.scores(tokenize(q["query"])), depth)]
        t1 = time.perf_counter()
        semantic = [ids[i] for i in top_k(dense.scores(q["query"]), depth)]
        t2 = time.perf_counter()
        fused = [doc for doc, _ in rrf([lexical, semantic])]
        t3 = time.perf_counter()
        runs["BM25"][q["qid"]], runs["dense"][q["qid"]], runs["hybrid (RRF)"][q["qid"]] = lexical, semantic, fused
        times["BM25"].append(t1 - t0)
        times["dense"].append(t2 - t1)
        times["hybrid (RRF)"].append(t3 - t2)
        if score_fn:
            runs["hybrid + cross-encoder"][q["qid"]] = rerank(score_fn, q["query"], fused, texts, top_n)
            times["hybrid + cross-encoder"].append(time.perf_counter() - t3)
        if late:
            t4 = time.perf_counter()
            runs["hybrid + late interaction"][q["qid"]] = rerank(late, q["query"], fused, texts, top_n)
            times["hybrid + late interaction"].append(time.perf_counter() - t4)
        if llm:
            t4 = time.perf_counter()
            judge = lambda query, docs: llm_relevance_scores(llm[0], llm[1], query, docs)  # noqa: E731
            runs["hybrid + LLM judge"][q["qid"]] = rerank(judge, q["query"], fused, texts, min(top_n, 10))
            times["hybrid + LLM judge"].append(time.perf_counter() - t4)
    return runs, {name: 1000 * float(np.mean(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=RERANKER["epochs"], help="cross-encoder training epochs")
    parser.add_argument("--seed", type=int, default=RERANKER["seed"], help="cross-encoder training seed")
    parser.add_argument("--retrain", action="store_true", help="train the cross-encoder even if a cached one exists")
    parser.add_argument("--top-n", type=int, default=20, help="how many fused candidates the re-ranker sees")
    parser.add_argument("--llm-rerank", action="store_true", help="also re-rank the top 10 with SmolLM2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids oversubscription on a shared machine; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    labkit.seed_everything(args.seed)
    corpus, test, train = load_data()
    print(f"{len(corpus)} documents, {len(test)} test queries, {len(train)} training queries")

    bm25 = BM25([tokenize(doc_text(d)) for d in corpus])
    t = time.perf_counter()
    dense = DenseIndex(assets.sentence_embedder(), [doc_text(d) for d in corpus])
    print(f"embedded the corpus with MiniLM in {time.perf_counter() - t:.2f} s")

    # Hard negatives for training come from the same hybrid pipeline the re-ranker will sit behind; the trained
    # model is cached under outputs/ (keyed by its settings and the data), so a second run loads it in seconds.
    config = {**RERANKER, "epochs": args.epochs, "seed": args.seed}
    t = time.perf_counter()
    if args.retrain:
        ce = train_reranker(corpus, train, bm25, dense, config, progress=True)
    else:
        ce = load_reranker(config, progress=True)
    if hasattr(ce, "losses"):
        print(f"cross-encoder: {ce.n_pairs} training pairs, {len(ce.losses)} steps, loss {ce.losses[0]:.3f} -> "
              f"{np.mean(ce.losses[-5:]):.3f} in {time.perf_counter() - t:.1f} s")
    else:
        print(f"cross-encoder: loaded the cached model in {time.perf_counter() - t:.1f} s")

    llm = assets.smollm2() if args.llm_rerank else None
    runs, latency = run_stages(corpus, test, bm25, dense, cross_encoder_scorer(ce), llm, top_n=args.top_n,
                               late=LateInteraction(dense.embedder))
    print(f"\n{'stage':<26}{'nDCG@10':>9}{'MRR@10':>9}{'R@10':>8}{'ms/query':>10}")
    for name, run in runs.items():
        m = evaluate(run, test)
        print(f"{name:<26}{m['ndcg@10']:>9.3f}{m['mrr@10']:>9.3f}{m['recall@10']:>8.3f}{latency[name]:>10.2f}")
    print("(ms/query is what the stage itself adds: the hybrid row is the fusion only, the re-rank rows the "
          "re-ranker only)")
    kinds = {"error codes": [q for q in test if any(d.startswith("err-") for d in q["relevant"])],
             "paraphrased how-to": [q for q in test if any(d.startswith("howto-") for d in q["relevant"])]}
    for kind, subset in kinds.items():
        row = "  ".join(f"{name} {evaluate(runs[name], subset)['ndcg@10']:.3f}" for name in runs
                       if name in ("BM25", "dense", "hybrid (RRF)", "hybrid + late interaction"))
        print(f"nDCG@10 on {kind} ({len(subset)} queries): {row}")
    out = labkit.output_dir(__file__) / "quality.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({name: {**evaluate(run, test), "ms_per_query": latency[name]}
                               for name, run in runs.items()}, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    labkit.run(main)
