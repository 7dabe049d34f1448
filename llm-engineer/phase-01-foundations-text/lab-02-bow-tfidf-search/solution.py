"""Lab 02: bag-of-words, TF-IDF and BM25 search from scratch, over Shakespeare's speeches.

What you build, one idea per function:
  tokenize -> vocabulary + sparse count matrix (CSR, built from its three arrays by hand)
  -> term-frequency weighting (raw or sublinear) -> smoothed IDF -> L2-normalised rows
  -> cosine top-k search, and BM25 scoring on the same counts.

The conventions follow scikit-learn's TfidfVectorizer exactly (token pattern, lower-casing, alphabetical
vocabulary, idf = ln((1+n)/(1+df)) + 1, norm="l2"), so the tests can demand equality within 1e-6.

Run it:  python solution.py "to be or not to be" --top 5        (cosine over TF-IDF)
         python solution.py "poison in the ear" --bm25          (BM25 ranking)
"""
from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import sparse

import labkit
from labkit import assets

# scikit-learn's default: words of two or more word characters (single letters such as "a", "I" are dropped).
TOKEN_PATTERN = r"(?u)\b\w\w+\b"


def tokenize(text: str, pattern: str = TOKEN_PATTERN) -> list[str]:
    """Lower-case the text, then return every match of `pattern`, in order."""
    if not isinstance(text, str):
        raise ValueError(f"tokenize expects a str, got {type(text).__name__}; pass the document's text")
    # BEGIN SOLUTION [tokenize] Lower-case first, then find every regex match, left to right.
    return re.findall(pattern, text.lower())
    # END SOLUTION


def build_vocabulary(token_lists: list[list[str]]) -> dict[str, int]:
    """term -> column index, columns in alphabetical order of the terms (scikit-learn's order)."""
    # BEGIN SOLUTION [count-matrix] Collect the distinct terms, sort them, number them 0, 1, 2, ...
    return {term: column for column, term in enumerate(sorted({t for tokens in token_lists for t in tokens}))}
    # END SOLUTION


def count_matrix(token_lists: list[list[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    """Documents x terms matrix of raw counts, in CSR form; terms missing from `vocab` are skipped.

    CSR stores row i's non-zeros in data[indptr[i]:indptr[i+1]], their columns in indices[same slice].
    Shape: (n_docs, n_terms); float64 so that the later weightings can work in place on `.data`.
    """
    # BEGIN SOLUTION [count-matrix] Per document: count known terms, append sorted columns and counts, then record the running length in indptr.
    indptr, indices, data = [0], [], []
    for tokens in token_lists:
        counts = Counter(vocab[t] for t in tokens if t in vocab)
        columns = sorted(counts)
        indices.extend(columns)
        data.extend(counts[c] for c in columns)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(token_lists), len(vocab)))
    # END SOLUTION


def tf_weight(counts: sparse.csr_matrix, sublinear: bool = False) -> sparse.csr_matrix:
    """Term-frequency weights: the raw count, or 1 + ln(count) when `sublinear` (a word said 10 times is not
    10 times as relevant). Only stored (non-zero) entries change, so the result stays sparse."""
    # BEGIN SOLUTION [tf-weighting] Copy the matrix; when sublinear, map its stored values through 1 + ln.
    weighted = counts.copy()
    if sublinear:
        weighted.data = 1.0 + np.log(weighted.data)
    return weighted
    # END SOLUTION


def document_frequency(counts: sparse.csr_matrix) -> np.ndarray:
    """df[t] = number of documents containing term t. Shape (n_terms,)."""
    # BEGIN SOLUTION [idf] Each stored column index in a CSR row is one (document, term) pair: count them per column.
    return np.bincount(counts.indices, minlength=counts.shape[1])
    # END SOLUTION


def idf_weights(counts: sparse.csr_matrix, smooth: bool = True) -> np.ndarray:
    """Inverse document frequency, scikit-learn's convention (note the +1: a term in every document keeps
    weight 1 instead of vanishing):
        smooth:   idf = ln((1 + n) / (1 + df)) + 1     (as if one extra document contained every term)
        unsmooth: idf = ln(n / df) + 1
    Shape (n_terms,)."""
    # BEGIN SOLUTION [idf] Number of documents and df per term; add one to both when smoothing, then ln(ratio) + 1.
    n, df = counts.shape[0], document_frequency(counts).astype(np.float64)
    if smooth:
        n, df = n + 1, df + 1
    return np.log(n / df) + 1.0
    # END SOLUTION


def l2_normalize_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Scale every row to unit Euclidean length (all-zero rows stay zero). Then a dot product is a cosine."""
    # BEGIN SOLUTION [l2-normalize] Row norms from the squared entries; multiply by a diagonal of 1/norm (0 for empty rows).
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())  # (n_rows,)
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sparse.csr_matrix(sparse.diags(inverse) @ matrix)
    # END SOLUTION


@dataclass
class TfidfIndex:
    vocab: dict[str, int]        # term -> column
    counts: sparse.csr_matrix    # (n_docs, n_terms) raw counts, for BM25
    idf: np.ndarray              # (n_terms,)
    matrix: sparse.csr_matrix    # (n_docs, n_terms) L2-normalised TF-IDF rows
    sublinear_tf: bool
    pattern: str

    @property
    def doc_lengths(self) -> np.ndarray:
        return np.asarray(self.counts.sum(axis=1)).ravel()


def build_index(docs: list[str], sublinear_tf: bool = False, smooth_idf: bool = True,
                pattern: str = TOKEN_PATTERN) -> TfidfIndex:
    """Fit the vocabulary and IDF on `docs` and store their TF-IDF rows."""
    if not docs:
        raise ValueError("build_index needs at least one document; pass a non-empty list of strings")
    token_lists = [tokenize(d, pattern) for d in docs]
    vocab = build_vocabulary(token_lists)
    if not vocab:
        raise ValueError("no document contains a token; check the texts or the token pattern")
    counts = count_matrix(token_lists, vocab)
    idf = idf_weights(counts, smooth=smooth_idf)
    tfidf = tf_weight(counts, sublinear_tf) @ sparse.diags(idf)  # scale column t by idf[t]
    return TfidfIndex(vocab, counts, idf, l2_normalize_rows(sparse.csr_matrix(tfidf)), sublinear_tf, pattern)


def vectorize(index: TfidfIndex, texts: list[str]) -> sparse.csr_matrix:
    """TF-IDF rows for new texts with the index's vocabulary and IDF (unknown words are ignored). (m, n_terms)"""
    counts = count_matrix([tokenize(t, index.pattern) for t in texts], index.vocab)
    return l2_normalize_rows(sparse.csr_matrix(tf_weight(counts, index.sublinear_tf) @ sparse.diags(index.idf)))


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(document, score) for the k best positive scores, best first; ties go to the lower document index."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    # BEGIN SOLUTION [search] Keep positive scores only, take the k largest (argpartition is O(n)), sort them by (-score, index).
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        # argpartition may cut through a tie at the k-th score: pull in every index tied with it, then trim
        kth = scores[candidates].min()
        candidates = np.union1d(candidates, np.flatnonzero(scores == kth))
    order = np.lexsort((candidates, -scores[candidates]))
    return [(int(candidates[i]), float(scores[candidates[i]])) for i in order[:k]]
    # END SOLUTION


def cosine_scores(index: TfidfIndex, query: str) -> np.ndarray:
    """Cosine similarity of the query with every document. Shape (n_docs,)."""
    if not query.strip():
        raise ValueError("the query is empty; pass some words to search for")
    # BEGIN SOLUTION [search] Vectorise the query like a document; rows are unit length, so a sparse matrix-vector product is the cosine.
    q = vectorize(index, [query])                     # (1, n_terms)
    return (index.matrix @ q.T).toarray().ravel()     # (n_docs, n_terms) @ (n_terms, 1) -> (n_docs,)
    # END SOLUTION


def bm25_idf(df: np.ndarray, n_docs: int, variant: str = "lucene") -> np.ndarray:
    """BM25's IDF. "robertson" is the classic ln((N - df + 0.5) / (df + 0.5)), negative for terms in more than
    half the documents; "lucene" adds 1 inside the log, ln(1 + (N - df + 0.5) / (df + 0.5)), which stays positive."""
    if variant not in ("lucene", "robertson"):
        raise ValueError(f"unknown BM25 idf variant {variant!r}; use 'lucene' or 'robertson'")
    # BEGIN SOLUTION [bm25] The odds that a document lacks the term versus has it (0.5 smoothing); add 1 inside the log for lucene.
    odds = (n_docs - df + 0.5) / (df + 0.5)
    return np.log1p(odds) if variant == "lucene" else np.log(odds)
    # END SOLUTION


def bm25_scores(index: TfidfIndex, query: str, k1: float = 1.2, b: float = 0.75, idf: str = "lucene") -> np.ndarray:
    """Okapi BM25 for every document. Shape (n_docs,). A query word repeated twice counts twice.

        score(d) = sum over query terms t of  idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

    k1 caps how much repeating a term helps (saturation); b in [0, 1] is how strongly long documents are
    penalised (|d| = the document's token count, avgdl = the mean over the corpus).
    """
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    if not query.strip():
        raise ValueError("the query is empty; pass some words to search for")
    # BEGIN SOLUTION [bm25] Count the query's known terms; slice their count columns; saturate with k1, normalise length with b; weight by idf and query count.
    q = count_matrix([tokenize(query, index.pattern)], index.vocab)            # (1, n_terms)
    terms, query_tf = q.indices, q.data                                        # (n_q,), (n_q,)
    n_docs = index.counts.shape[0]
    weights = bm25_idf(document_frequency(index.counts)[terms], n_docs, idf) * query_tf    # (n_q,)
    tf = index.counts[:, terms].toarray()                                      # (n_docs, n_q)
    lengths = index.doc_lengths
    norm = k1 * (1 - b + b * lengths / lengths.mean())                         # (n_docs,)
    return (tf * (k1 + 1) / (tf + norm[:, None])) @ weights                    # (n_docs,)
    # END SOLUTION


# ------------------------------------------------------------------ corpus and CLI

def shakespeare_speeches(min_tokens: int = 8, plays: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(doc ids, texts): every speech of the 38 plays with at least `min_tokens` tokens is one document."""
    all_plays = assets.shakespeare_plays()
    if plays:
        unknown = [p for p in plays if p not in all_plays]
        if unknown:
            raise ValueError(f"unknown play(s) {unknown}; choose from: {', '.join(all_plays)}")
    ids, texts = [], []
    for play, text in all_plays.items():
        if plays and play not in plays:
            continue
        for number, speech in enumerate(text.split("\n\n")):
            if len(tokenize(speech)) >= min_tokens:
                speaker = speech.split(":", 1)[0]
                ids.append(f"{play} #{number} {speaker}")
                texts.append(speech)
    return ids, texts


def snippet(text: str, width: int = 90) -> str:
    body = " ".join(text.split(":", 1)[-1].split())
    return body if len(body) <= width else body[:width - 1] + "…"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TF-IDF / BM25 search over Shakespeare's speeches")
    parser.add_argument("query", nargs="*", help="words to search for (default: a few demo queries)")
    parser.add_argument("--top", type=int, default=5, help="how many results to print")
    parser.add_argument("--bm25", action="store_true", help="rank with BM25 instead of TF-IDF cosine")
    parser.add_argument("--raw-tf", action="store_true", help="raw term counts instead of 1 + ln(tf)")
    parser.add_argument("--plays", default="", help="comma-separated play names (default: all 38)")
    parser.add_argument("--min-tokens", type=int, default=8, help="skip speeches shorter than this")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ids, texts = shakespeare_speeches(args.min_tokens, [p for p in args.plays.split(",") if p] or None)
    index = build_index(texts, sublinear_tf=not args.raw_tf)
    print(f"indexed {len(texts):,} speeches, {len(index.vocab):,} terms, {index.matrix.nnz:,} non-zeros "
          f"(density {index.matrix.nnz / np.prod(index.matrix.shape):.5f}) in {time.perf_counter() - start:.2f} s")

    queries = [" ".join(args.query)] if args.query else [
        "to be or not to be", "poison in the ear of a sleeping king", "a horse my kingdom for a horse",
        "out damned spot"]
    for query in queries:
        start = time.perf_counter()
        scores = bm25_scores(index, query) if args.bm25 else cosine_scores(index, query)
        hits = top_k(scores, args.top)
        took = (time.perf_counter() - start) * 1e3
        print(f"\n{'BM25' if args.bm25 else 'cosine'} top {args.top} for {query!r} ({took:.1f} ms)")
        if not hits:
            print("  no speech shares a word with the query")
        for rank, (doc, score) in enumerate(hits, 1):
            print(f"  {rank}. {score:6.3f}  {ids[doc]:<40} {snippet(texts[doc])}")


if __name__ == "__main__":
    labkit.run(main)
