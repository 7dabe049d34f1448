"""Embedding evaluation: a small, reusable harness for word vectors.

What this lab teaches:
- intrinsic evaluation: does the cosine between two word vectors rank word pairs the way people (or a planted
  ground truth) do? Scored with Spearman's rank correlation, ties handled with average ranks;
- analogies with 3CosAdd: b - a + c should land on d ("man : king :: woman : ?"), never counting a, b or c;
- nearest-neighbour queries by cosine similarity;
- a 2-D picture of the space with PCA computed from the SVD, saved as a PNG.

The earlier labs of this phase (word2vec, GloVe/FastText) import these functions through
`labkit.reuse("lab-03-embedding-evaluation")`, so every model is scored by the same code.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import labkit  # noqa: E402


# ------------------------------------------------------------------ the vectors

@dataclass
class WordVectors:
    """A vocabulary and its (V, D) matrix; row i is the vector of words[i]."""

    words: list[str]
    matrix: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise ValueError(f"matrix must be (len(words), D) = ({len(self.words)}, D), got {self.matrix.shape}; "
                             "give one row per word")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words contains duplicates; give each word once")

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise KeyError(f"'{word}' is not in the vocabulary ({len(self.words)} words)")
        return self.matrix[self.index[word]]

    def unit(self) -> np.ndarray:
        """Rows scaled to length 1 (zero rows stay zero), so a dot product is a cosine."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        return self.matrix / np.where(norms == 0, 1.0, norms)


def save_word2vec_text(path: str | Path, vectors: WordVectors) -> Path:
    """Write the classic word2vec text format ("V D" header, then "word x1 x2 ..."), atomically."""
    path = Path(path)
    lines = [f"{len(vectors.words)} {vectors.matrix.shape[1]}"]
    lines += [w + " " + " ".join(f"{x:.6f}" for x in row) for w, row in zip(vectors.words, vectors.matrix)]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def load_word2vec_text(path: str | Path, limit: int | None = None) -> WordVectors:
    """Read the word2vec text format (also reads GloVe files, which simply have no header line)."""
    words, rows = [], []
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle):
            parts = line.rstrip().split(" ")
            if n == 0 and len(parts) == 2:
                continue  # the "V D" header
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float64))
            if limit is not None and len(words) >= limit:
                break
    return WordVectors(words, np.vstack(rows))


# ------------------------------------------------------------------ similarity

def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`; tied values share the average of the ranks they span."""
    # TODO [spearman]: Sort once; walk the runs of equal values and give each run the mean of its positions.
    raise NotImplementedError('TODO [spearman]: Sort once; walk the runs of equal values and give each run the mean of its positions.')


def spearman(x, y) -> float:
    """Spearman's rho: the Pearson correlation of the two rank vectors (average ranks for ties)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"spearman needs two 1-D sequences of the same length >= 2, got shapes {x.shape}, {y.shape}")
    # TODO [spearman]: Rank both sides, centre the ranks, then cosine of the centred rank vectors.
    raise NotImplementedError('TODO [spearman]: Rank both sides, centre the ranks, then cosine of the centred rank vectors.')


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


@dataclass
class SimilarityResult:
    rho: float        # Spearman between model cosines and gold scores, over the covered pairs
    covered: int      # pairs whose two words are both in the vocabulary
    total: int


def evaluate_similarity(vectors: WordVectors, pairs: list[tuple[str, str, float]]) -> SimilarityResult:
    """WordSim-style score: Spearman(cosine(w1, w2), gold) over the pairs the vocabulary covers."""
    if not pairs:
        raise ValueError("pairs is empty; give (word1, word2, gold score) triples")
    # TODO [similarity-eval]: Keep pairs with both words known; cosine each; Spearman against the gold scores.
    raise NotImplementedError('TODO [similarity-eval]: Keep pairs with both words known; cosine each; Spearman against the gold scores.')


# ------------------------------------------------------------------ neighbours and analogies

def nearest(vectors: WordVectors, query, k: int = 5, exclude: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """The k words with the highest cosine to `query` (a word or a vector), leaving out `exclude` and the query
    word itself. Returns (word, cosine) pairs, best first."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if isinstance(query, str):
        exclude = (*exclude, query)
        query = vectors[query]
    # TODO [nearest-neighbours]: Unit rows times the unit query; mask excluded words with -inf; take the top k.
    raise NotImplementedError('TODO [nearest-neighbours]: Unit rows times the unit query; mask excluded words with -inf; take the top k.')


def analogy(vectors: WordVectors, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
    """3CosAdd: the words d maximising cos(d, b - a + c) over unit vectors, a, b and c excluded.
    Read it as "a is to b as c is to d" (man : king :: woman : queen)."""
    # TODO [analogy]: Add and subtract the unit vectors of the three words, then reuse nearest() with them excluded.
    raise NotImplementedError('TODO [analogy]: Add and subtract the unit vectors of the three words, then reuse nearest() with them excluded.')


@dataclass
class AnalogyResult:
    accuracy: float   # correct / covered
    correct: int
    covered: int      # questions whose four words are all in the vocabulary
    total: int


def analogy_accuracy(vectors: WordVectors, questions: list[tuple[str, str, str, str]]) -> AnalogyResult:
    """Share of covered questions (a, b, c, d) whose top 3CosAdd answer is exactly d."""
    if not questions:
        raise ValueError("questions is empty; give (a, b, c, d) quadruples")
    # TODO [analogy]: Skip questions with an unknown word; count top-1 answers equal to d.
    raise NotImplementedError('TODO [analogy]: Skip questions with an unknown word; count top-1 answers equal to d.')


# ------------------------------------------------------------------ 2-D projection

def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto the top two principal components. Returns (coords (N, 2), explained variance ratio (2,))."""
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"pca_2d needs an (N, D) matrix with N >= 2 and D >= 2, got shape {x.shape}")
    # TODO [pca-2d]: Centre the columns; the SVD's right singular vectors are the principal axes; S^2 gives the variances.
    raise NotImplementedError("TODO [pca-2d]: Centre the columns; the SVD's right singular vectors are the principal axes; S^2 gives the variances.")


def plot_projection(vectors: WordVectors, words: list[str], path: str | Path,
                    pairs: list[tuple[str, str]] = (), title: str = "PCA of word vectors") -> Path:
    """Scatter the words in the PCA plane, draw an arrow for each highlighted pair, save a PNG atomically."""
    words = [w for w in words if w in vectors]
    if len(words) < 3:
        raise ValueError(f"need at least 3 known words to plot, got {len(words)}")
    coords, ratio = pca_2d(np.vstack([vectors[w] for w in words]))
    where = dict(zip(words, coords))
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(coords[:, 0], coords[:, 1], s=12, color="tab:blue")
    for w, (x, y) in where.items():
        ax.annotate(w, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    for a, b in pairs:
        if a in where and b in where:
            ax.annotate("", xy=where[b], xytext=where[a], arrowprops=dict(arrowstyle="->", color="tab:red", lw=1))
    ax.set_title(f"{title} (PC1 {ratio[0]:.0%}, PC2 {ratio[1]:.0%} of variance)")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def report(name: str, vectors: WordVectors, pairs, questions) -> dict:
    """One row of a comparison table: Spearman, analogy accuracy and coverage."""
    sim = evaluate_similarity(vectors, pairs)
    ana = analogy_accuracy(vectors, questions)
    return {"model": name, "spearman": sim.rho, "sim_pairs": f"{sim.covered}/{sim.total}",
            "analogy_acc": ana.accuracy, "analogies": f"{ana.covered}/{ana.total}"}


def format_table(rows: list[dict]) -> str:
    """Plain-text table for the report rows (floats with 3 decimals)."""
    cols = list(rows[0])
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda items: "  ".join(s.ljust(w) for s, w in zip(items, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])


# ------------------------------------------------------------------ demo

def main(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate word vectors: similarity, analogies, neighbours, PCA plot.")
    parser.add_argument("--vectors", help="a word2vec/GloVe text file to evaluate (default: train skip-gram on the "
                                          "planted corpus of lab-01 first)")
    parser.add_argument("--limit", type=int, default=50000, help="read at most this many vectors from --vectors")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    w2v = labkit.reuse("lab-01-word2vec-from-scratch")  # loaded here, not at import: lab-01 imports this lab too
    corpus = w2v.planted_corpus(seed=0)
    if args.vectors:
        vectors = load_word2vec_text(args.vectors, limit=args.limit)
        print(f"loaded {len(vectors.words)} vectors of dimension {vectors.matrix.shape[1]} from {args.vectors}")
    else:
        print("training skip-gram on the planted corpus (lab-01) ...")
        w2v.single_thread()
        vectors = w2v.train_planted(corpus, epochs=args.epochs, seed=0)

    print(format_table([report("vectors", vectors, corpus.similarity, corpus.analogies)]))
    for word in ("king", "paris", "walking"):
        if word in vectors:
            print(f"{word:>8} -> " + ", ".join(f"{w} {s:.2f}" for w, s in nearest(vectors, word, k=4)))
    for a, b, c, d in corpus.analogies[:4]:
        if all(w in vectors for w in (a, b, c)):
            got = analogy(vectors, a, b, c)[0]
            print(f"{a} : {b} :: {c} : {got[0]} ({got[1]:.2f}; expected {d})")
    capitals = [(country, city) for country, city in w2v.CAPITALS.items()]
    png = plot_projection(vectors, [w for pair in capitals for w in pair], out / "countries_capitals_pca.png",
                          pairs=capitals, title="country -> capital")
    print(f"wrote {png}")


if __name__ == "__main__":
    labkit.run(main)
