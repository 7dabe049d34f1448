"""Embedding evaluation: a small, reusable harness for word vectors.

What this lab teaches:
- reading the standard benchmark files: WordSim-353 and SimLex-999 (tab-separated word pairs with a human
  score, SimLex with a header row and ten columns) and the Google analogy set (": section" lines, then
  four words a line);
- intrinsic evaluation: does the cosine between two word vectors rank word pairs the way people (or a planted
  ground truth) do? Scored with Spearman's rank correlation, ties handled with average ranks;
- analogies with 3CosAdd: b - a + c should land on d ("man : king :: woman : ?"), never counting a, b or c;
- nearest-neighbour queries by cosine similarity;
- 2-D pictures of the space: PCA computed from the SVD, and t-SNE (scikit-learn) for the most frequent words
  and for two embeddings side by side, saved as PNGs.

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
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

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


def _write_atomically(path: str | Path, text: str) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ benchmark files

def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_similarity(path: str | Path, score_column: int | str | None = None,
                    lowercase: bool = True) -> list[tuple[str, str, float]]:
    """Word pairs with a human score from a tab-separated file: (word1, word2, score) triples in file order.

    WordSim-353 files hold "word1<TAB>word2<TAB>score", with or without a header row ("Word 1  Word 2
    Human (mean)"). SimLex-999.txt has a header and ten columns: word1, word2, POS, SimLex999, then
    concreteness and association columns. A first line whose score cell is not a number is a header.
    score_column: a 0-based index or a header name; by default the "SimLex999" column when the header has
    one, otherwise the third column. Blank lines and lines starting with "#" are skipped. Words are
    lowercased by default, as in the vocabularies of GloVe and word2vec releases.
    """
    # TODO [load-benchmarks]: Tab-split the non-blank, non-# lines; pick the score column from the first row (a name is looked up there); drop that row when its score cell is not a number; float the scores; name file:line in every error.
    raise NotImplementedError('TODO [load-benchmarks]: Tab-split the non-blank, non-# lines; pick the score column from the first row (a name is looked up there); drop that row when its score cell is not a number; float the scores; name file:line in every error.')


def load_analogies(path: str | Path, lowercase: bool = True) -> dict[str, list[tuple[str, str, str, str]]]:
    """The Google analogy format: a line ": section-name" opens a section, then one question a line,
    "a b c d" (a is to b as c is to d). Returns {section: [(a, b, c, d), ...]}, sections in file order.
    Sections whose name starts with "gram" are the syntactic ones, the others semantic."""
    # TODO [load-benchmarks]: A ": name" line opens a section; every other non-blank line is four whitespace-separated words of the current section; name file:line in every error.
    raise NotImplementedError('TODO [load-benchmarks]: A ": name" line opens a section; every other non-blank line is four whitespace-separated words of the current section; name file:line in every error.')


def save_similarity(path: str | Path, pairs: list[tuple[str, str, float]]) -> Path:
    """Write pairs in the WordSim-353 tab format, with its header row (atomically)."""
    lines = ["Word 1\tWord 2\tHuman (mean)"] + [f"{a}\t{b}\t{g:.2f}" for a, b, g in pairs]
    return _write_atomically(path, "\n".join(lines) + "\n")


def save_analogies(path: str | Path, sections: dict[str, list[tuple[str, str, str, str]]]) -> Path:
    """Write questions in the Google analogy format (atomically)."""
    lines = []
    for name, questions in sections.items():
        lines += [f": {name}"] + [" ".join(q) for q in questions]
    return _write_atomically(path, "\n".join(lines) + "\n")


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
    return _save_figure(fig, path)


def _save_figure(fig, path: str | Path) -> Path:
    """Save a figure as a PNG atomically (a temporary file, then a rename) and close it."""
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ t-SNE maps

def tsne_2d(matrix: np.ndarray, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """t-SNE map of the rows of an (N, D) matrix with scikit-learn. Returns (N, 2) coordinates.

    Rows are scaled to unit length first, so distances follow the cosine: |u - v|^2 = 2 - 2 cos(u, v).
    The perplexity (roughly how many neighbours each point weighs) is capped at (N - 1) / 3, because
    scikit-learn reads the 3 * perplexity nearest neighbours of each point and needs perplexity < N.
    PCA initialisation and a fixed random_state make the map reproducible.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"tsne_2d needs an (N, D) matrix with N >= 4 rows, got shape {x.shape}")
    if perplexity <= 0 or max_iter < 250:
        raise ValueError(f"need perplexity > 0 and max_iter >= 250 (scikit-learn's minimum), got "
                         f"perplexity={perplexity}, max_iter={max_iter}")
    # TODO [tsne]: Unit rows (zero rows stay zero); cap the perplexity; sklearn's TSNE with 2 components, init="pca", random_state=seed.
    raise NotImplementedError('TODO [tsne]: Unit rows (zero rows stay zero); cap the perplexity; sklearn\'s TSNE with 2 components, init="pca", random_state=seed.')


def _tsne_panel(ax, vectors: WordVectors, words: list[str], pairs, title: str, perplexity: float, seed: int):
    """Draw one t-SNE map on `ax`: grey dots, highlighted pair words in red with a line from a to b."""
    coords = tsne_2d(np.vstack([vectors[w] for w in words]), perplexity, seed)
    where = dict(zip(words, coords))
    marked = {w for pair in pairs for w in pair if w in where}
    ax.scatter(coords[:, 0], coords[:, 1], s=6, color="0.6")
    for w in words if len(words) <= 200 else marked:  # label everything only when it stays readable
        ax.annotate(w, where[w], fontsize=6 if w not in marked else 8, xytext=(2, 2), textcoords="offset points",
                    color="tab:red" if w in marked else "0.3")
    for a, b in pairs:
        if a in where and b in where:
            ax.annotate("", xy=where[b], xytext=where[a], arrowprops=dict(arrowstyle="->", color="tab:red", lw=0.8))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def frequent_words(vectors: WordVectors, n_words: int, pairs=()) -> list[str]:
    """The first n_words rows (word2vec and GloVe files, like lab-01's vocabulary, are sorted by frequency),
    plus every known word of `pairs` that is not among them."""
    words = vectors.words[:n_words]
    extra = [w for pair in pairs for w in pair if w in vectors and w not in set(words)]
    return words + list(dict.fromkeys(extra))


def plot_tsne(vectors: WordVectors, path: str | Path, n_words: int = 5000, pairs: list[tuple[str, str]] = (),
              title: str = "t-SNE of the most frequent words", perplexity: float = 30.0, seed: int = 0) -> Path:
    """t-SNE map of the n_words most frequent words, with the highlighted pairs drawn as arrows. Saves a PNG."""
    words = frequent_words(vectors, n_words, pairs)
    fig, ax = plt.subplots(figsize=(8, 7))
    _tsne_panel(ax, vectors, words, pairs, f"{title} ({len(words)} words, perplexity "
                f"{min(perplexity, (len(words) - 1) / 3):.0f})", perplexity, seed)
    return _save_figure(fig, path)


def plot_side_by_side(embeddings: dict[str, WordVectors], path: str | Path, n_words: int = 5000,
                      pairs: list[tuple[str, str]] = (), perplexity: float = 30.0, seed: int = 0) -> Path:
    """One t-SNE panel per embedding (two, usually), over the same words: the most frequent words of the first
    embedding that every embedding knows, plus the highlighted pairs. Saves a PNG."""
    names = list(embeddings)
    first = embeddings[names[0]]
    words = [w for w in frequent_words(first, n_words, pairs) if all(w in e for e in embeddings.values())]
    if len(words) < 4:
        raise ValueError(f"the embeddings share only {len(words)} of the chosen words; t-SNE needs at least 4")
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 6.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        _tsne_panel(ax, embeddings[name], words, pairs, f"{name} ({len(words)} words)", perplexity, seed)
    return _save_figure(fig, path)


def report(name: str, vectors: WordVectors, pairs, questions) -> dict:
    """One row of a comparison table: Spearman, analogy accuracy and coverage."""
    sim = evaluate_similarity(vectors, pairs)
    ana = analogy_accuracy(vectors, questions)
    return {"model": name, "spearman": sim.rho, "sim_pairs": f"{sim.covered}/{sim.total}",
            "analogy_acc": ana.accuracy, "analogies": f"{ana.covered}/{ana.total}"}


def benchmark_report(name: str, vectors: WordVectors, similarity: dict[str, list[tuple[str, str, float]]],
                     analogies: dict[str, list[tuple[str, str, str, str]]]) -> dict:
    """One table row over loaded benchmark files: Spearman (with coverage) per similarity set, then analogy
    accuracy over all sections, the semantic ones and the syntactic ("gram...") ones."""
    row = {"model": name}
    for set_name, pairs in similarity.items():
        sim = evaluate_similarity(vectors, pairs)
        row[set_name] = sim.rho
        row[f"{set_name} pairs"] = f"{sim.covered}/{sim.total}"
    groups = {"analogy": [q for qs in analogies.values() for q in qs],
              "semantic": [q for s, qs in analogies.items() if not s.startswith("gram") for q in qs],
              "syntactic": [q for s, qs in analogies.items() if s.startswith("gram") for q in qs]}
    for group, questions in groups.items():
        if questions:
            result = analogy_accuracy(vectors, questions)
            row[group] = result.accuracy
            row[f"{group} n"] = f"{result.covered}/{result.total}"
    return row


def format_table(rows: list[dict]) -> str:
    """Plain-text table for the report rows (floats with 3 decimals)."""
    cols = list(rows[0])
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda items: "  ".join(s.ljust(w) for s, w in zip(items, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])


# ------------------------------------------------------------------ demo

def planted_benchmarks(w2v, corpus, out: Path) -> tuple[Path, Path]:
    """Write lab-01's planted similarity pairs and analogies in the WordSim and Google formats, so the demo reads
    them through the same loaders as the real files."""
    sections: dict[str, list] = {"family": [], "capital-common-countries": [], "gram-verb-forms": []}
    royals = {w for male, female, _ in w2v.ROLES.values() for w in (male, female)}
    for q in corpus.analogies:
        key = "family" if q[0] in royals else "capital-common-countries" if q[0] in w2v.CAPITALS else "gram-verb-forms"
        sections[key].append(q)
    return (save_similarity(out / "planted_wordsim.tab", corpus.similarity),
            save_analogies(out / "planted_analogies.txt", sections))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate word vectors: benchmark files, similarity, analogies, "
                                                 "neighbours, PCA and t-SNE plots.")
    parser.add_argument("--vectors", action="append", help="a word2vec/GloVe text file to evaluate; give it twice "
                        "for the side-by-side plot (default: skip-gram and GloVe trained on lab-01's planted corpus)")
    parser.add_argument("--limit", type=int, default=50000, help="read at most this many vectors from --vectors")
    parser.add_argument("--wordsim", help="a WordSim-353 tab file (default: the planted pairs, written in that format)")
    parser.add_argument("--simlex", help="SimLex-999.txt (optional)")
    parser.add_argument("--analogies", help="questions-words.txt, the Google analogy set (default: the planted ones)")
    parser.add_argument("--tsne-words", type=int, default=5000, help="how many of the most frequent words to map")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    w2v = labkit.reuse("lab-01-word2vec-from-scratch")  # loaded here, not at import: lab-01 imports this lab too
    corpus = w2v.planted_corpus(seed=0)
    wordsim_path, analogy_path = planted_benchmarks(w2v, corpus, out)
    similarity = {"wordsim": load_similarity(args.wordsim or wordsim_path)}
    if args.simlex:
        similarity["simlex"] = load_similarity(args.simlex)
    analogies = load_analogies(args.analogies or analogy_path)
    print(f"read {len(similarity['wordsim'])} similarity pairs from {args.wordsim or wordsim_path.name} and "
          f"{sum(map(len, analogies.values()))} analogies in {len(analogies)} sections from "
          f"{args.analogies or analogy_path.name}")

    if args.vectors:
        models = {Path(f).stem: load_word2vec_text(f, limit=args.limit) for f in args.vectors[:2]}
        for name, v in models.items():
            print(f"loaded {len(v.words)} vectors of dimension {v.matrix.shape[1]} as '{name}'")
    else:
        print("training skip-gram (lab-01) and GloVe (lab-02) on the planted corpus ...")
        w2v.single_thread()
        glove_lab = labkit.reuse("lab-02-glove-fasttext")
        vocab = w2v.build_vocab(corpus.tokens, min_count=5)
        counts = glove_lab.cooccurrence(vocab.encode(corpus.tokens), len(vocab.words), window=4)
        glove, _ = glove_lab.train_glove(counts, dim=50, epochs=50, seed=0)
        models = {"skip-gram": w2v.train_planted(corpus, epochs=args.epochs, seed=0),
                  "glove": WordVectors(list(vocab.words), glove)}
    print(format_table([benchmark_report(name, v, similarity, analogies) for name, v in models.items()]))

    name, vectors = next(iter(models.items()))
    for word in ("king", "paris", "walking"):
        if word in vectors:
            print(f"{word:>8} -> " + ", ".join(f"{w} {s:.2f}" for w, s in nearest(vectors, word, k=4)))
    for a, b, c, d in [q for qs in analogies.values() for q in qs[:2]]:
        if all(w in vectors for w in (a, b, c)):
            got = analogy(vectors, a, b, c)[0]
            print(f"{a} : {b} :: {c} : {got[0]} ({got[1]:.2f}; expected {d})")

    capitals = list(w2v.CAPITALS.items())
    pngs = [plot_projection(vectors, [w for pair in capitals for w in pair], out / "countries_capitals_pca.png",
                            pairs=capitals, title=f"{name}: country -> capital")]
    with threadpool_limits(limits=1):  # scikit-learn's OpenMP threads mostly wait on each other on a busy machine
        pngs.append(plot_tsne(vectors, out / "tsne_frequent_words.png", args.tsne_words, capitals,
                              title=f"{name}: t-SNE of the most frequent words", perplexity=args.perplexity))
        if len(models) > 1:
            pngs.append(plot_side_by_side(models, out / "tsne_side_by_side.png", args.tsne_words, capitals,
                                          perplexity=args.perplexity))
    print("wrote " + ", ".join(str(p) for p in pngs))


if __name__ == "__main__":
    labkit.run(main)
