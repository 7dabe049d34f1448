"""GloVe and FastText from scratch, compared with skip-gram on one corpus and one evaluation suite.

What this lab teaches:
- GloVe starts from counts, not from a stream of pairs: X_ij = sum over co-occurrences of i and j within the
  window of 1 / distance. It then fits  w_i . w~_j + b_i + b~_j ~ log X_ij  by weighted least squares,
      J = sum_{X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,   f(x) = min(1, (x / x_max)^alpha),
  with x_max = 100 and alpha = 0.75 as in the paper, optimised with AdaGrad (one step per minibatch; a word
  that occurs in several cells of the batch gets the sum of their gradients). The word vector is w + w~.
- FastText keeps skip-gram's objective but builds the centre vector from pieces: the word itself plus its
  character n-grams (n = 3..6) of "<word>", each n-gram hashed (FNV-1a) into one of a fixed number of buckets.
  A word never seen in training still has n-grams, so it still gets a vector, close to words that share them.
- A fair comparison: the same planted corpus, the same evaluation harness (lab-03), skip-gram from lab-01.
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit

w2v = labkit.reuse("lab-01-word2vec-from-scratch")   # vocab, subsampling, pairs, noise table, planted corpus
ev = labkit.reuse("lab-03-embedding-evaluation")     # Spearman, 3CosAdd analogies, neighbours, table


# ------------------------------------------------------------------ co-occurrence counts

def cooccurrence(ids: np.ndarray, vocab_size: int, window: int = 4) -> sp.csr_matrix:
    """Symmetric, distance-weighted counts: every two tokens d <= window apart add 1/d to X[a, b] and to X[b, a].
    ids: (N,) token ids. Returns a (V, V) float64 CSR matrix."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ids = np.asarray(ids, dtype=np.int64)
    # TODO [cooccurrence]: For each distance d, pair ids[:-d] with ids[d:] (both directions, weight 1/d); let a COO matrix sum the duplicates.
    raise NotImplementedError('TODO [cooccurrence]: For each distance d, pair ids[:-d] with ids[d:] (both directions, weight 1/d); let a COO matrix sum the duplicates.')


# ------------------------------------------------------------------ GloVe

def glove_weight(x: np.ndarray, x_max: float = 100.0, alpha: float = 0.75) -> np.ndarray:
    """f(x) = (x / x_max)^alpha below x_max, 1 above: rare pairs count less, frequent ones are capped."""
    # TODO [glove-weight]: One line: the power law, clipped at 1.
    raise NotImplementedError('TODO [glove-weight]: One line: the power law, clipped at 1.')


def glove_loss_and_grads(w: np.ndarray, w_ctx: np.ndarray, b: np.ndarray, b_ctx: np.ndarray,
                         rows: np.ndarray, cols: np.ndarray, x: np.ndarray, x_max: float = 100.0,
                         alpha: float = 0.75):
    """J = sum_n f(x_n) (w_{r_n} . w~_{c_n} + b_{r_n} + b~_{c_n} - log x_n)^2 over N nonzero cells.

    w, w_ctx: (V, D); b, b_ctx: (V,); rows, cols, x: (N,). Returns (J, g_w (N, D), g_ctx (N, D), g_b (N,),
    g_bctx (N,)): gradients with respect to the gathered rows (scatter-add them, rows repeat)."""
    # TODO [glove-loss]: diff = prediction - log x; J = sum f diff^2; dJ/dprediction = 2 f diff; chain to each factor.
    raise NotImplementedError('TODO [glove-loss]: diff = prediction - log x; J = sum f diff^2; dJ/dprediction = 2 f diff; chain to each factor.')


def adagrad_rows(param: np.ndarray, sq_sum: np.ndarray, index: np.ndarray, grad_rows: np.ndarray,
                 lr: float) -> None:
    """One AdaGrad step, in place, on the rows of `param` that a minibatch touched.

    param, sq_sum: (V, D) or (V,), the table and its running sum of squared gradients. index: (N,) the row of
    each gathered gradient; grad_rows: (N, D) or (N,). A row that occurs k times in `index` (a word in k cells
    of the batch) gets the sum of its k gradients, g_i = sum_{n: index_n = i} grad_n, and then one update:
        sq_i += g_i^2;   param_i -= lr * g_i / sqrt(sq_i)
    Rows outside `index` stay untouched. This is what np.add.at / torch's index_add_ compute; plain fancy-index
    assignment (a[index] += g) keeps only one of the repeated gradients."""
    index = np.asarray(index, dtype=np.int64)
    grad_rows = np.asarray(grad_rows, dtype=np.float64)
    if grad_rows.shape[0] != len(index) or grad_rows.shape[1:] != param.shape[1:] or sq_sum.shape != param.shape:
        raise ValueError(f"need index (N,), grad_rows (N, *{param.shape[1:]}) and sq_sum {param.shape}; got "
                         f"{index.shape}, {grad_rows.shape} and {sq_sum.shape}")
    # TODO [adagrad-step]: Sum the gradients per distinct row (np.unique's inverse + np.add.at), then accumulate the squares and step those rows only.
    raise NotImplementedError("TODO [adagrad-step]: Sum the gradients per distinct row (np.unique's inverse + np.add.at), then accumulate the squares and step those rows only.")


def train_glove(x: sp.csr_matrix, dim: int = 50, epochs: int = 50, lr: float = 0.05, batch_size: int = 512,
                x_max: float = 100.0, alpha: float = 0.75, seed: int = 0, progress: bool = False):
    """AdaGrad over the nonzero cells in shuffled minibatches (glove.c starts every squared-gradient sum at 1).
    Returns (vectors w + w~ (V, D), per-epoch mean loss per cell)."""
    rng = np.random.default_rng(seed)
    coo = x.tocoo()
    rows, cols, vals = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    v = x.shape[0]
    params = [rng.uniform(-0.5, 0.5, (v, dim)) / dim, rng.uniform(-0.5, 0.5, (v, dim)) / dim, np.zeros(v), np.zeros(v)]
    # TODO [glove-train]: One squared-gradient table per parameter table, every entry starting at 1 (as in glove.c).
    raise NotImplementedError('TODO [glove-train]: One squared-gradient table per parameter table, every entry starting at 1 (as in glove.c).')
    history = []
    for _ in tqdm(range(epochs), desc="glove", disable=not progress, leave=False):
        order, total = rng.permutation(len(vals)), 0.0
        for start in range(0, len(order), batch_size):
            sel = order[start:start + batch_size]
            loss, *grads = glove_loss_and_grads(*params, rows[sel], cols[sel], vals[sel], x_max, alpha)
            total += loss
            # TODO [glove-train]: One adagrad_rows call per table: w and b are indexed by the cells' rows, w~ and b~ by their columns.
            raise NotImplementedError("TODO [glove-train]: One adagrad_rows call per table: w and b are indexed by the cells' rows, w~ and b~ by their columns.")
        history.append(total / len(vals))
    return params[0] + params[1], history


# ------------------------------------------------------------------ FastText subwords

def char_ngrams(word: str, n_min: int = 3, n_max: int = 6) -> list[str]:
    """Character n-grams of "<word>" for n = n_min..n_max, in order of start position, then length.
    "where", n = 3 -> <wh, whe, her, ere, re>."""
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    # TODO [subword-ngrams]: Pad with < and >; every start position, every length that fits.
    raise NotImplementedError('TODO [subword-ngrams]: Pad with < and >; every start position, every length that fits.')


def fnv1a_32(text: str) -> int:
    """The 32-bit FNV-1a hash fastText uses for n-grams: h = 2166136261; per byte h = (h XOR byte) * 16777619 mod 2^32."""
    # TODO [ngram-hash]: Walk the UTF-8 bytes; xor, multiply by the FNV prime, keep 32 bits.
    raise NotImplementedError('TODO [ngram-hash]: Walk the UTF-8 bytes; xor, multiply by the FNV prime, keep 32 bits.')


def subword_ids(word: str, index: dict[str, int], buckets: int, n_min: int = 3, n_max: int = 6) -> list[int]:
    """Rows of the input table for a word: its own row (if it is in the vocabulary), then one row per n-gram,
    V + hash(n-gram) mod buckets. An unknown word is its n-grams only."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    # TODO [ngram-hash]: Own id first when known, then each n-gram's bucket offset by the vocabulary size.
    raise NotImplementedError("TODO [ngram-hash]: Own id first when known, then each n-gram's bucket offset by the vocabulary size.")


class FastTextSG(nn.Module):
    """Skip-gram whose centre vector is the mean of the word's subword rows (an EmbeddingBag)."""

    def __init__(self, vocab: "w2v.Vocab", buckets: int = 20_000, dim: int = 50, n_min: int = 3, n_max: int = 6):
        super().__init__()
        self.index, self.buckets, self.n_min, self.n_max = vocab.index, buckets, n_min, n_max
        v = len(vocab.words)
        self.pad = v + buckets  # an extra row the bags ignore, for padding
        # TODO [fasttext-model]: Input EmbeddingBag (mean, sparse, padding row) over V + buckets + 1 rows, uniform +-1/dim; output Embedding zero; a padded (V, L) table of each word's subword ids.
        raise NotImplementedError("TODO [fasttext-model]: Input EmbeddingBag (mean, sparse, padding row) over V + buckets + 1 rows, uniform +-1/dim; output Embedding zero; a padded (V, L) table of each word's subword ids.")

    def centre_vectors(self, centre: torch.Tensor) -> torch.Tensor:
        """(B,) word ids -> (B, D) mean of each word's subword rows."""
        # TODO [fasttext-model]: Look up the padded subword rows of the batch and bag them.
        raise NotImplementedError('TODO [fasttext-model]: Look up the padded subword rows of the batch and bag them.')

    def forward(self, centre, context, negatives) -> torch.Tensor:
        """The SGNS loss of lab-01, with subword centre vectors. centre, context: (B,); negatives: (B, K)."""
        v = self.centre_vectors(centre)                                 # (B, D)
        s_pos = (v * self.out_emb(context)).sum(-1)                     # (B,)
        s_neg = torch.bmm(self.out_emb(negatives), v.unsqueeze(2)).squeeze(2)  # (B, K)
        return -(F.logsigmoid(s_pos) + F.logsigmoid(-s_neg).sum(1)).mean()

    @torch.no_grad()
    def word_vector(self, word: str) -> np.ndarray:
        """Vector of any word, known or not: the mean of its subword rows."""
        ids = subword_ids(word, self.index, self.buckets, self.n_min, self.n_max)
        return self.inputs(torch.tensor([ids], device=self.inputs.weight.device)).squeeze(0).cpu().numpy()


def train_fasttext(ids: np.ndarray, vocab, dim: int = 50, buckets: int = 20_000, window: int = 4, k: int = 5,
                   epochs: int = 3, batch_size: int = 512, lr: float = 0.02, t: float = 1e-3, seed: int = 0,
                   progress: bool = False) -> tuple[FastTextSG, list[float]]:
    """lab-01's training loop (subsample, dynamic window, unigram^0.75 negatives, SparseAdam, linear decay)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FastTextSG(vocab, buckets, dim)
    table, keep = w2v.noise_table(vocab.counts), w2v.keep_probability(vocab.counts, t)
    optimiser = torch.optim.SparseAdam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        pairs = w2v.skipgram_pairs(w2v.subsample(ids, keep, rng), window, rng)
        n_steps = math.ceil(len(pairs[0]) / batch_size)
        for step, batch in enumerate(tqdm(w2v.batches(pairs, table, k, batch_size, rng), total=n_steps,
                                          desc=f"fasttext {epoch}", disable=not progress, leave=False)):
            for group in optimiser.param_groups:
                group["lr"] = lr * max(1e-4, 1.0 - (epoch * n_steps + step) / (epochs * n_steps))
            optimiser.zero_grad()
            loss = model(*(torch.as_tensor(a) for a in batch))
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    return model, losses


def fasttext_vectors(model: FastTextSG, words: list[str]):
    """lab-03 WordVectors for any list of words (out-of-vocabulary ones included)."""
    return ev.WordVectors(list(words), np.vstack([model.word_vector(w) for w in words]))


# ------------------------------------------------------------------ the comparison

HOLDOUT = ("painting", "cooked", "visits", "jumper")  # never in the corpus: only FastText can place them


def compare(n_sentences: int = 6000, epochs: int = 3, dim: int = 50, glove_epochs: int = 50, seed: int = 0,
            progress: bool = False):
    """Train skip-gram, GloVe and FastText on one planted corpus; score all three with lab-03.
    Returns (rows for the table, {name: WordVectors}, corpus)."""
    corpus = w2v.planted_corpus(n_sentences, seed=seed, holdout=HOLDOUT)
    vocab = w2v.build_vocab(corpus.tokens, min_count=5)
    ids = vocab.encode(corpus.tokens)
    every_question = w2v.planted_analogies()  # includes questions about the held-out words
    rows, models = [], {}

    def add(name, vectors, seconds):
        row = ev.report(name, vectors, corpus.similarity, every_question)
        row["train_s"] = f"{seconds:.1f}"
        rows.append(row)
        models[name] = vectors

    start = time.perf_counter()
    sg, _ = w2v.train_torch(ids, vocab, dim=dim, epochs=epochs, seed=seed, progress=progress)
    add("skip-gram", w2v.to_vectors(vocab, sg.in_emb.weight), time.perf_counter() - start)

    start = time.perf_counter()
    glove, _ = train_glove(cooccurrence(ids, len(vocab.words), window=4), dim=dim, epochs=glove_epochs, seed=seed,
                           progress=progress)
    add("glove", ev.WordVectors(list(vocab.words), glove), time.perf_counter() - start)

    start = time.perf_counter()
    ft, _ = train_fasttext(ids, vocab, dim=dim, epochs=epochs, seed=seed, progress=progress)
    add("fasttext (+OOV)", fasttext_vectors(ft, list(vocab.words) + list(HOLDOUT)), time.perf_counter() - start)
    return rows, models, corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description="GloVe and FastText from scratch vs skip-gram on a planted corpus.")
    parser.add_argument("--sentences", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3, help="skip-gram / FastText epochs (GloVe runs 50)")
    parser.add_argument("--dim", type=int, default=50)
    args = parser.parse_args(argv)
    w2v.single_thread()
    out = labkit.output_dir(__file__)

    print("char n-grams of 'where' (n=3):", char_ngrams("where", 3, 3))
    index, grads = np.array([0, 1, 0]), np.array([[1.0, 2.0], [0.0, -4.0], [2.0, 0.0]])  # row 0 twice in a batch
    param, sq = np.zeros((2, 2)), np.ones((2, 2))
    adagrad_rows(param, sq, index, grads, lr=0.5)
    lossy = np.zeros((2, 2))
    lossy[index] += grads  # fancy-index +=: the second gradient of row 0 overwrites the first
    print(f"AdaGrad, row 0 twice in one batch: g_0 = {grads[index == 0].sum(0)} (np.add.at), a[index] += g keeps "
          f"{lossy[0]}; after one step (lr 0.5, sums from 1) row 0 = {np.round(param[0], 3)}")
    rows, models, _ = compare(args.sentences, args.epochs, args.dim, progress=True)
    print(ev.format_table(rows))
    ft = models["fasttext (+OOV)"]
    for word in HOLDOUT:
        print(f"  OOV {word:>9} -> " + ", ".join(f"{w} {s:.2f}" for w, s in ev.nearest(ft, word, k=4)))
    glove = models["glove"]
    print("  glove king ->", ", ".join(f"{w} {s:.2f}" for w, s in ev.nearest(glove, "king", k=4)))
    png = ev.plot_projection(ft, [w for w in ft.words if w.startswith(("paint", "cook", "visit", "jump"))],
                             out / "fasttext_verbs_pca.png", title="FastText verb forms (OOV included)")
    print(f"wrote {png}")


if __name__ == "__main__":
    labkit.run(main)
