"""Lab 03: evaluating a RAG pipeline piece by piece: faithfulness, answer relevance, context precision and recall.

A RAG answer can go wrong in two places: retrieval brings the wrong passages, or generation says things the
passages do not. Each metric looks at one of them:
  claims      an answer (or a reference answer) split into sentences, each one claim, citation markers dropped
  support     how well a claim is backed by a text: the fraction of the claim's content words found in it
              (a token-overlap proxy for entailment; it needs no model and gives the same number everywhere)
  faithfulness       generation: the fraction of the answer's claims supported by the retrieved context
  answer relevance   generation: cosine similarity between embeddings of the question and the answer (MiniLM)
  context precision  retrieval: mean of precision@k over the ranks k that hold a relevant chunk (ragas' definition)
  context recall     retrieval: the fraction of the reference answer's claims supported by the retrieved context

The pipeline under test is phase 7 lab 02's, imported with labkit.reuse (chunking, Qdrant, MiniLM, the prompt);
the demo evaluates it on a golden set of 18 questions about its handbook (data/golden.jsonl), sweeps chunk size
and k, and samples SmolLM2 at rising temperatures to see faithfulness fall.

Run it:  python solution.py                    (ablation on 18 questions, then SmolLM2 on 6 questions x 3 temperatures)
         python solution.py --questions 18      (the temperature sweep on every question; about 2 s per answer)
"""
from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import labkit

GOLDEN = Path(__file__).resolve().parent / "data" / "golden.jsonl"
# Words that carry no claim on their own; a claim's content words are its other lower-cased word tokens.
STOPWORDS = frozenset("""a an the and or but of to in on at for by with from as is are was were be been it its this
that these those there than then so such can may must will would should do does did not no only any all each per
into over under about after before within up you your their they he she we our i""".split())
Embed = Callable[[list[str]], np.ndarray]  # texts -> (len(texts), d) embeddings


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens of `text` that are not stopwords ("1,500" -> "1", "500")."""
    return [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]


# ---------------------------------------------------------------- claims and support

def split_claims(text: str) -> list[str]:
    """Sentences of `text`, each one claim: split after . ! or ? followed by whitespace, citation markers such
    as [1] or [2, 3] removed, whitespace collapsed, sentences without a content word dropped."""
    # BEGIN SOLUTION [claims] Drop [n] markers, split after sentence punctuation followed by whitespace, collapse spaces, keep sentences with a content word.
    text = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", "", text)
    sentences = (" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text))
    return [s for s in sentences if content_words(s)]
    # END SOLUTION


def overlap_support(claim: str, context: str) -> float:
    """Fraction of the claim's distinct content words that occur in `context` (0.0 for a claim without any).

    A cheap stand-in for an entailment model: "Parental leave is 20 weeks" against a context saying "20 weeks
    at full pay" scores 1.0; swap 20 for 12 and one of its three content words is missing, 2/3."""
    # BEGIN SOLUTION [claims] Distinct content words of the claim; count those present among the context's content words.
    words = set(content_words(claim))
    if not words:
        return 0.0
    return len(words & set(content_words(context))) / len(words)
    # END SOLUTION


# ---------------------------------------------------------------- generation metrics

def faithfulness(answer: str, contexts: Sequence[str], threshold: float = 0.7) -> float:
    """Fraction of the answer's claims whose overlap_support against all retrieved contexts together is at least
    `threshold`. An answer without any claim is a ValueError (nothing to judge)."""
    # BEGIN SOLUTION [faithfulness] Claims of the answer; join the contexts into one text; count claims with support >= threshold.
    claims = split_claims(answer)
    if not claims:
        raise ValueError(f"faithfulness: the answer {answer[:40]!r} has no claim to check; pass a non-empty answer")
    joined = " ".join(contexts)
    return sum(overlap_support(c, joined) >= threshold for c in claims) / len(claims)
    # END SOLUTION


def answer_relevance(question: str, answer: str, embed: Embed) -> float:
    """Cosine similarity between the embeddings of the question and the answer (embed need not normalise)."""
    # BEGIN SOLUTION [relevance] Embed both in one call; divide the dot product by both norms.
    q, a = np.asarray(embed([question, answer]), dtype=np.float64)
    return float(q @ a / (np.linalg.norm(q) * np.linalg.norm(a)))
    # END SOLUTION


# ---------------------------------------------------------------- retrieval metrics

def relevance_flags(retrieved: Sequence[str], reference_contexts: Sequence[str], threshold: float = 0.5) -> list[bool]:
    """For each retrieved chunk (in rank order): does it hold at least `threshold` of some reference context's
    content words (overlap_support(reference, chunk) >= threshold)?"""
    # BEGIN SOLUTION [context-precision] One flag per retrieved chunk, in order: the best support over the reference contexts, compared with >=.
    return [max(overlap_support(ref, chunk) for ref in reference_contexts) >= threshold for chunk in retrieved]
    # END SOLUTION


def context_precision(relevant: Sequence[bool]) -> float:
    """Average precision of a ranking: the mean of precision@k over the ranks k that hold a relevant chunk.

    precision@k = (relevant chunks among the first k) / k; no relevant chunk at all gives 0.0.
    [True, False, True] -> (1/1 + 2/3) / 2 = 0.8333; [False, True] -> (1/2) / 1 = 0.5."""
    # BEGIN SOLUTION [context-precision] Walk the ranks with a running count of hits; add hits/k at each relevant rank; divide by the number of hits.
    hits, total = 0, 0.0
    for k, is_relevant in enumerate(relevant, start=1):
        if is_relevant:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0
    # END SOLUTION


def context_recall(reference_answer: str, contexts: Sequence[str], threshold: float = 0.7) -> float:
    """Fraction of the reference answer's claims supported (overlap_support >= threshold) by the retrieved
    contexts together: did retrieval bring everything the right answer needs? A reference without claims is a
    ValueError."""
    # BEGIN SOLUTION [context-recall] Claims of the reference answer (not the generated one); join the contexts; count claims with support >= threshold.
    claims = split_claims(reference_answer)
    if not claims:
        raise ValueError("context_recall: the reference answer has no claim; give each golden item a reference answer")
    context = " ".join(contexts)
    return sum(overlap_support(c, context) >= threshold for c in claims) / len(claims)
    # END SOLUTION


# ---------------------------------------------------------------- the pipeline (phase 7 lab 02, imported)

def load_golden(path: str | Path = GOLDEN) -> list[dict]:
    """The golden set: one JSON object per line with question, reference_answer, reference_context, doc_id."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"golden set {path} not found; pass --golden with a .jsonl file of question/reference items")
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, item in enumerate(items, 1):
        missing = {"question", "reference_answer", "reference_context"} - item.keys()
        if missing:
            raise ValueError(f"{path.name} line {n}: missing {sorted(missing)}")
    return items


def retrieval_table(rag, embedder, golden: list[dict], chunk_sizes=(64, 128), ks=(1, 3, 5),
                    overlap: int = 16, rerankers: dict | None = None) -> list[dict]:
    """Mean context precision and recall over the golden set for every (chunk size, re-ranker, k): one row each.

    `rerankers` maps a label to a scorer for phase 7 lab 02's `retrieve(..., rerank=)` option, None meaning plain
    cosine order; the default is {"off": None}. With a scorer, the top 20 chunks by cosine are re-ordered before
    the k best are kept, so only the order (and which k chunks survive) can change, never the candidate pool.
    """
    docs = rag.read_folder(rag.DOCS)
    rerankers = rerankers or {"off": None}
    rows = []
    for size in chunk_sizes:
        client = rag.connect(":memory:")
        rag.ingest(client, "docs", embedder, docs, size=size, overlap=min(overlap, size // 4))
        for label, scorer in rerankers.items():
            for k in ks:
                precision, recall = [], []
                for item in golden:
                    hits = rag.retrieve(client, "docs", embedder, item["question"], k=k, rerank=scorer)
                    texts = [h.text for h in hits]
                    precision.append(context_precision(relevance_flags(texts, [item["reference_context"]])))
                    recall.append(context_recall(item["reference_answer"], texts))
                rows.append({"chunk": size, "rerank": label, "k": k, "precision": float(np.mean(precision)),
                             "recall": float(np.mean(recall))})
    return rows


def sample_answer(model, tokenizer, messages: list[dict], temperature: float, seed: int,
                  max_new_tokens: int = 48) -> str:
    """One answer from a chat model: greedy at temperature 0, else sampled (top_k off) with a fixed seed."""
    import torch

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else \
        dict(do_sample=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id,
                             **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", default=str(GOLDEN), help="a .jsonl golden set for phase 7 lab 02's handbook")
    parser.add_argument("--questions", type=int, default=6, help="questions for the SmolLM2 temperature sweep")
    parser.add_argument("--temperatures", default="0,1.0,1.5", help="comma-separated sampling temperatures")
    parser.add_argument("--samples", type=int, default=2, help="sampled answers per question and temperature > 0")
    parser.add_argument("--no-rerank", action="store_true", help="leave the re-ranker axis out of the ablation")
    parser.add_argument("--no-sweep", action="store_true", help="the retrieval ablation only (no SmolLM2)")
    parser.add_argument("--no-ablation", action="store_true", help="the temperature sweep only")
    args = parser.parse_args(argv)

    from labkit.device import torch_threads

    golden = load_golden(args.golden)
    rag = labkit.reuse("lab-02-rag-pipeline")
    embedder = rag.load_embedder()
    if not args.no_ablation:
        rerankers = {"off": None}
        with torch_threads(1):
            if not args.no_rerank:
                start = time.perf_counter()
                rerankers["on"] = rag.load_reranker()  # phase 7 lab 03's late-interaction re-ranker, via lab 02
                print(f"re-ranker (phase 7 lab 03's late interaction) ready in {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            rows = retrieval_table(rag, embedder, golden, rerankers=rerankers)
        print(f"retrieval ablation on {len(golden)} golden questions ({time.perf_counter() - start:.1f} s)")
        print("| chunk | re-rank | k | context precision | context recall |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['chunk']} | {r['rerank']} | {r['k']} | {r['precision']:.3f} | {r['recall']:.3f} |")

    if args.no_sweep:
        return
    from labkit import assets

    model, tokenizer = assets.smollm2()
    client = rag.connect(":memory:")
    rag.ingest(client, "docs", embedder, rag.read_folder(rag.DOCS), size=128, overlap=32)
    embed = lambda texts: rag.encode(embedder, texts)  # noqa: E731  MiniLM, unit vectors
    temperatures = [float(t) for t in args.temperatures.split(",")]
    print(f"\nSmolLM2-135M-Instruct on {args.questions} questions (chunk 128, k 3), faithfulness and answer "
          "relevance by temperature:")
    for temperature in temperatures:
        faith, rel, start = [], [], time.perf_counter()
        for n, item in enumerate(golden[:args.questions]):
            hits = rag.retrieve(client, "docs", embedder, item["question"], k=3)
            messages = rag.build_messages(item["question"], hits, min_score=0.0)
            for s in range(1 if temperature == 0 else args.samples):
                answer = sample_answer(model, tokenizer, messages, temperature, seed=1000 * n + s)
                try:
                    faith.append(faithfulness(answer, [h.text for h in hits]))
                except ValueError:
                    faith.append(0.0)  # an empty answer supports nothing
                rel.append(answer_relevance(item["question"], answer or ".", embed))
        print(f"  T={temperature:<4} faithfulness {np.mean(faith):.3f}  answer relevance {np.mean(rel):.3f}  "
              f"({len(faith)} answers, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    labkit.run(main)
