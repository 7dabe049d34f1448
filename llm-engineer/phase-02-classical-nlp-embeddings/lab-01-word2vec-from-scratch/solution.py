"""Word2vec skip-gram with negative sampling (SGNS), from scratch: once in NumPy with hand-written gradients,
once in PyTorch.

What this lab teaches:
- the data pipeline of word2vec: a vocabulary with a minimum count, subsampling of frequent words, a dynamic
  context window, and a unigram^0.75 table to draw negative words from;
- the SGNS objective for one (centre c, context o) pair with K negatives n_1..n_K:
      loss = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)
  where v are the input ("centre") vectors and u the output ("context") vectors;
- its gradients, written by hand and checked against finite differences;
- a sanity value: with the output vectors initialised to zero every score is 0 and sigma(0) = 1/2, so the loss
  starts at exactly (1 + K) ln 2 per pair (2 ln 2 = 1.386 for one negative);
- that the trained vectors recover structure planted in a synthetic corpus (neighbours and analogies).

Evaluation (neighbours, analogies, Spearman) comes from lab-03's harness via labkit.reuse.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import labkit

# ------------------------------------------------------------------ a corpus with planted structure
# Every "entity" word is defined by two attributes, and each attribute value owns a few context words. A sentence
# puts the entity among context words of both its attributes, so its context distribution is a mixture of the two
# and the vector offsets line up: king - man + woman lands near queen, paris - france + italy near rome.

GENDER = {"male": ["he", "him", "his"], "female": ["she", "her", "hers"]}
ROLES = {  # role -> (male word, female word, role context words)
    "ruler": ("king", "queen", ["crown", "throne", "reign"]),
    "heir": ("prince", "princess", ["heir", "castle", "royal"]),
    "adult": ("man", "woman", ["adult", "grown", "job"]),
    "child": ("boy", "girl", ["school", "toy", "young"]),
    "parent": ("father", "mother", ["family", "raise", "home"]),
}
CAPITALS = {"france": "paris", "germany": "berlin", "italy": "rome", "spain": "madrid", "japan": "tokyo",
            "egypt": "cairo"}
NATION = {"france": ["french", "croissant"], "germany": ["german", "beer"], "italy": ["italian", "pasta"],
          "spain": ["spanish", "paella"], "japan": ["japanese", "sushi"], "egypt": ["egyptian", "pyramid"]}
PLACE_KIND = {"country": ["country", "nation", "border"], "capital": ["city", "capital", "streets"]}
STEMS = {"walk": ["path", "stroll"], "jump": ["rope", "hop"], "paint": ["brush", "canvas"], "cook": ["kitchen", "meal"],
         "climb": ["mountain", "rock"], "play": ["game", "piano"], "talk": ["speech", "voice"], "kick": ["ball", "leg"],
         "clean": ["soap", "mop"], "visit": ["museum", "guest"]}
FORMS = {"": ["to", "will", "can"], "s": ["often", "usually", "always"], "ed": ["yesterday", "earlier", "ago"],
         "ing": ["now", "currently", "busy"], "er": ["skilled", "famous", "professional"]}
FILLER = ["the", "a", "and", "of"]


@dataclass
class PlantedCorpus:
    tokens: list[str]
    analogies: list[tuple[str, str, str, str]]   # (a, b, c, d): a is to b as c is to d
    similarity: list[tuple[str, str, float]]     # (w1, w2, gold): gold = number of shared attributes (0, 1 or 2)
    entities: dict[str, tuple[str, str]]         # entity word -> its two attribute values


def planted_entities() -> dict[str, tuple[str, str, list[str], list[str]]]:
    """entity word -> (attribute 1, attribute 2, context pool 1, context pool 2)."""
    table = {}
    for role, (male, female, pool) in ROLES.items():
        table[male] = (role, "male", pool, GENDER["male"])
        table[female] = (role, "female", pool, GENDER["female"])
    for country, city in CAPITALS.items():
        table[country] = (country, "country", NATION[country], PLACE_KIND["country"])
        table[city] = (country, "capital", NATION[country], PLACE_KIND["capital"])
    for stem, pool in STEMS.items():
        for suffix, form_pool in FORMS.items():
            table[stem + suffix] = (stem, "form-" + suffix, pool, form_pool)
    return table


def planted_analogies(holdout: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """(a, b, c, d) questions, "a is to b as c is to d", over the planted relations (gender, capital, verb form);
    questions that use a word in `holdout` are left out."""
    analogies = []
    roles = list(ROLES.values())
    for (m1, f1, _), (m2, f2, _) in zip(roles, roles[1:] + roles[:1]):
        analogies += [(m1, f1, m2, f2), (f1, m1, f2, m2), (m1, m2, f1, f2)]
    countries = list(CAPITALS)
    for c1, c2 in zip(countries, countries[1:] + countries[:1]):
        analogies.append((c1, CAPITALS[c1], c2, CAPITALS[c2]))
    stems = list(STEMS)
    for s1, s2 in zip(stems, stems[1:] + stems[:1]):
        analogies += [(s1, s1 + "ed", s2, s2 + "ed"), (s1 + "s", s1 + "ing", s2 + "s", s2 + "ing")]
    return [q for q in analogies if not set(q) & set(holdout)]


def planted_corpus(n_sentences: int = 6000, seed: int = 0, holdout: tuple[str, ...] = ()) -> PlantedCorpus:
    """Sentences of 7 tokens: one entity, two context words of each attribute, two fillers, shuffled.
    Words in `holdout` never appear (used to test out-of-vocabulary words in lab-02)."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1, got {n_sentences}")
    rng = np.random.default_rng(seed)
    table = planted_entities()
    unknown = set(holdout) - set(table)
    if unknown:
        raise ValueError(f"holdout words {sorted(unknown)} are not entities of the planted corpus")
    entities = [w for w in table if w not in holdout]
    families = [[w for w in entities if table[w][1] in GENDER], [w for w in entities if table[w][1] in PLACE_KIND],
                [w for w in entities if table[w][1].startswith("form-")]]
    tokens: list[str] = []
    for _ in range(n_sentences):
        family = families[rng.integers(len(families))]  # each family gets a third of the sentences
        word = family[rng.integers(len(family))]
        _, _, pool1, pool2 = table[word]
        sentence = [word, *rng.choice(pool1, 2), *rng.choice(pool2, 2), *rng.choice(FILLER, 2)]
        rng.shuffle(sentence)
        tokens += [str(t) for t in sentence]

    analogies = planted_analogies(holdout)
    attrs = {w: table[w][:2] for w in entities}
    rng_pairs = np.random.default_rng(seed + 1)
    similarity = []
    for _ in range(150):
        a, b = rng_pairs.choice(entities, 2, replace=False)
        similarity.append((str(a), str(b), float(len(set(attrs[a]) & set(attrs[b])))))
    return PlantedCorpus(tokens, analogies, similarity, attrs)


def load_text8(data_dir: Path, online: bool) -> list[str]:
    """text8 (the first 10^8 bytes of a cleaned Wikipedia dump, ~17 M tokens). Downloaded only with online=True."""
    path = data_dir / "text8"
    if not path.exists():
        if not online:
            raise SystemExit(f"{path} is missing; pass --online to download text8 (31 MB zip) or use the planted corpus")
        fd, tmp = tempfile.mkstemp(dir=data_dir, suffix=".zip")
        os.close(fd)
        urllib.request.urlretrieve("http://mattmahoney.net/dc/text8.zip", tmp)
        with zipfile.ZipFile(tmp) as zf:
            zf.extract("text8", data_dir / "unzip.tmp")
        os.replace(data_dir / "unzip.tmp" / "text8", path)
        os.remove(tmp)
    return path.read_text().split()


# ------------------------------------------------------------------ vocabulary, noise table, subsampling

@dataclass
class Vocab:
    words: list[str]        # index -> word, most frequent first (ties alphabetical)
    counts: np.ndarray      # (V,) int64, corpus count of each word
    index: dict[str, int]

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Token ids; words below min_count are dropped, as word2vec does."""
        return np.array([self.index[t] for t in tokens if t in self.index], dtype=np.int64)


def build_vocab(tokens: list[str], min_count: int = 5) -> Vocab:
    """Count words, keep those seen at least `min_count` times, order by count (descending) then alphabetically."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    # BEGIN SOLUTION [build-vocab] Counter, filter by min_count, sort by (-count, word), then an index dict.
    counts = Counter(tokens)
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise ValueError(f"no word occurs {min_count} times; lower min_count or give more text")
    return Vocab(kept, np.array([counts[w] for w in kept], dtype=np.int64), {w: i for i, w in enumerate(kept)})
    # END SOLUTION


def noise_table(counts: np.ndarray, size: int = 1_000_000, power: float = 0.75) -> np.ndarray:
    """word2vec's negative-sampling table: word i fills about size * P(i) slots, P(i) = c_i^0.75 / sum_j c_j^0.75.
    Drawing a uniform slot then draws a word from the smoothed unigram distribution. Returns (size,) int64."""
    if size < len(counts):
        raise ValueError(f"table size {size} is smaller than the vocabulary ({len(counts)}); use a bigger table")
    # BEGIN SOLUTION [noise-table] Smoothed probabilities, cumulative sum scaled to size, rounded boundaries, np.repeat.
    p = np.asarray(counts, dtype=np.float64) ** power
    p /= p.sum()
    ends = np.round(np.cumsum(p) * size).astype(np.int64)
    ends[-1] = size  # guard against the cumulative sum ending at 0.9999999
    slots = np.diff(ends, prepend=0)
    return np.repeat(np.arange(len(counts), dtype=np.int64), slots)
    # END SOLUTION


def keep_probability(counts: np.ndarray, t: float = 1e-3) -> np.ndarray:
    """Subsampling of frequent words, the variant in word2vec.c (and gensim): with f = count / total,
        P(keep) = min(1, sqrt(t / f) + t / f).
    The paper writes P(discard) = 1 - sqrt(t / f); the code keeps slightly more. t = 1e-3 suits small corpora;
    text8-sized ones use 1e-4 or 1e-5."""
    if t <= 0:
        raise ValueError(f"t must be > 0, got {t}")
    # BEGIN SOLUTION [subsample] Relative frequency f, then the formula above, clipped at 1.
    f = np.asarray(counts, dtype=np.float64) / np.sum(counts)
    return np.minimum(1.0, np.sqrt(t / f) + t / f)
    # END SOLUTION


def subsample(ids: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Drop each token independently with probability 1 - keep[id] (fresh draws every epoch)."""
    return ids[rng.random(len(ids)) < keep[ids]]


def skipgram_pairs(ids: np.ndarray, window: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs with a dynamic window: each position draws its reach r uniformly from 1..window and
    pairs with every token at distance <= r. Near words are therefore used more: distance d is kept with
    probability (window - d + 1) / window. Returns two (P,) int64 arrays."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ids = np.asarray(ids, dtype=np.int64)
    # BEGIN SOLUTION [skipgram-pairs] Draw a reach per position; for each distance d and side, keep positions whose reach >= d and whose partner exists.
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)
    pos = np.arange(n)
    centres, contexts = [], []
    for d in range(1, window + 1):
        for other in (pos - d, pos + d):
            ok = (reach >= d) & (other >= 0) & (other < n)
            centres.append(ids[pos[ok]])
            contexts.append(ids[other[ok]])
    return np.concatenate(centres), np.concatenate(contexts)
    # END SOLUTION


def batches(pairs: tuple[np.ndarray, np.ndarray], table: np.ndarray, k: int, batch_size: int,
            rng: np.random.Generator):
    """Shuffle the pairs and yield (centre (B,), context (B,), negatives (B, K)) with negatives from the table."""
    centres, contexts = pairs
    order = rng.permutation(len(centres))
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        negatives = table[rng.integers(0, len(table), size=(len(sel), k))]
        yield centres[sel], contexts[sel], negatives


# ------------------------------------------------------------------ NumPy SGNS

def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)  # log sigma(x) = -log(1 + e^-x), stable for large |x|


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(log_sigmoid(x))


def sgns_loss_and_grads(w_in: np.ndarray, w_out: np.ndarray, centre: np.ndarray, context: np.ndarray,
                        negatives: np.ndarray):
    """Mean over the batch of  -log sigma(u_o . v_c) - sum_k log sigma(-u_k . v_c).

    w_in, w_out: (V, D); centre, context: (B,); negatives: (B, K).
    Returns (loss, g_centre (B, D), g_context (B, D), g_negatives (B, K, D)): the gradient of the loss with
    respect to each gathered row (scatter-add them into the matrices; a word may appear several times).
    """
    # BEGIN SOLUTION [sgns-numpy] Gather v, u_o, u_k; scores; d loss/d score is sigma(s) - 1 for the positive and sigma(s) for negatives; chain rule to the rows; divide by B.
    b = len(centre)
    v = w_in[centre]                                   # (B, D)
    u_pos = w_out[context]                             # (B, D)
    u_neg = w_out[negatives]                           # (B, K, D)
    s_pos = np.einsum("bd,bd->b", v, u_pos)            # (B,)
    s_neg = np.einsum("bkd,bd->bk", u_neg, v)          # (B, K)
    loss = -(log_sigmoid(s_pos).sum() + log_sigmoid(-s_neg).sum()) / b
    d_pos = (sigmoid(s_pos) - 1.0) / b                 # (B,)   dL/ds_pos
    d_neg = sigmoid(s_neg) / b                         # (B, K) dL/ds_neg
    g_centre = d_pos[:, None] * u_pos + np.einsum("bk,bkd->bd", d_neg, u_neg)
    g_context = d_pos[:, None] * v
    g_negatives = d_neg[:, :, None] * v[:, None, :]
    return float(loss), g_centre, g_context, g_negatives
    # END SOLUTION


def numpy_sgd_step(w_in, w_out, centre, context, negatives, lr: float) -> float:
    """One SGD step in place. The gradients are of the batch mean; scaling lr by B gives every pair the step size
    it would get in word2vec.c, which updates after each pair."""
    loss, g_c, g_o, g_n = sgns_loss_and_grads(w_in, w_out, centre, context, negatives)
    step = lr * len(centre)
    np.add.at(w_in, centre, -step * g_c)
    np.add.at(w_out, context, -step * g_o)
    np.add.at(w_out, negatives.reshape(-1), -step * g_n.reshape(-1, w_out.shape[1]))
    return loss


def init_numpy(vocab_size: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """word2vec.c's init: inputs uniform in [-0.5/D, 0.5/D], outputs zero."""
    return rng.uniform(-0.5 / dim, 0.5 / dim, size=(vocab_size, dim)), np.zeros((vocab_size, dim))


# ------------------------------------------------------------------ PyTorch SGNS

class SkipGramNS(nn.Module):
    """Two embedding tables; forward returns the mean SGNS loss of a batch."""

    def __init__(self, vocab_size: int, dim: int = 50, sparse: bool = True):
        super().__init__()
        # BEGIN SOLUTION [sgns-torch] Two nn.Embedding tables (sparse gradients); inputs uniform in +-0.5/dim, outputs zero.
        self.in_emb = nn.Embedding(vocab_size, dim, sparse=sparse)
        self.out_emb = nn.Embedding(vocab_size, dim, sparse=sparse)
        nn.init.uniform_(self.in_emb.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out_emb.weight)
        # END SOLUTION

    def forward(self, centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """centre, context: (B,) long; negatives: (B, K) long -> scalar loss."""
        # BEGIN SOLUTION [sgns-torch] Same formula as the NumPy version; use F.logsigmoid, bmm for the (B, K) negative scores.
        v = self.in_emb(centre)                                   # (B, D)
        u_pos = self.out_emb(context)                             # (B, D)
        u_neg = self.out_emb(negatives)                           # (B, K, D)
        s_pos = (v * u_pos).sum(-1)                               # (B,)
        s_neg = torch.bmm(u_neg, v.unsqueeze(2)).squeeze(2)       # (B, K)
        return -(F.logsigmoid(s_pos) + F.logsigmoid(-s_neg).sum(1)).mean()
        # END SOLUTION


def train_torch(ids: np.ndarray, vocab: Vocab, dim: int = 50, window: int = 4, k: int = 5, epochs: int = 3,
                batch_size: int = 512, lr: float = 0.02, t: float = 1e-3, seed: int = 0, device="cpu",
                progress: bool = False) -> tuple[SkipGramNS, list[float]]:
    """Train SGNS with SparseAdam and a linearly decaying learning rate. Each epoch: subsample, pair up, shuffle, batch. Returns (model, losses)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SkipGramNS(len(vocab.words), dim).to(device)
    table, keep = noise_table(vocab.counts), keep_probability(vocab.counts, t)
    optimiser = torch.optim.SparseAdam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        pairs = skipgram_pairs(subsample(ids, keep, rng), window, rng)
        n_steps = math.ceil(len(pairs[0]) / batch_size)
        for step, (centre, context, negatives) in enumerate(tqdm(
                batches(pairs, table, k, batch_size, rng), total=n_steps, desc=f"epoch {epoch}",
                disable=not progress, leave=False)):
            for group in optimiser.param_groups:  # linear decay to 0, as word2vec.c does
                group["lr"] = lr * max(1e-4, 1.0 - (epoch * n_steps + step) / (epochs * n_steps))
            # BEGIN SOLUTION [train-torch] Tensors on the device, zero the grads, loss, backward, step; record the loss.
            tensors = [torch.as_tensor(a, device=device) for a in (centre, context, negatives)]
            optimiser.zero_grad()
            loss = model(*tensors)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            # END SOLUTION
    return model, losses


def train_numpy(ids: np.ndarray, vocab: Vocab, dim: int = 50, window: int = 4, k: int = 5, epochs: int = 3,
                batch_size: int = 64, lr: float = 0.025, t: float = 1e-3, seed: int = 0,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Plain SGD with word2vec.c's linear learning-rate decay (to 1e-4 of the start). Returns (w_in, w_out, losses)."""
    rng = np.random.default_rng(seed)
    w_in, w_out = init_numpy(len(vocab.words), dim, rng)
    table, keep = noise_table(vocab.counts), keep_probability(vocab.counts, t)
    losses = []
    for epoch in range(epochs):
        pairs = skipgram_pairs(subsample(ids, keep, rng), window, rng)
        n_steps = math.ceil(len(pairs[0]) / batch_size)
        for step, batch in enumerate(tqdm(batches(pairs, table, k, batch_size, rng), total=n_steps,
                                          desc=f"epoch {epoch}", disable=not progress, leave=False)):
            done = (epoch * n_steps + step) / (epochs * n_steps)
            losses.append(numpy_sgd_step(w_in, w_out, *batch, lr=lr * max(1e-4, 1.0 - done)))
    return w_in, w_out, losses


def single_thread() -> None:
    """Embedding lookups this small run faster on one thread; on a busy 2-core machine two threads can be 20x
    slower (they wait on each other). The demos call this; import-time code never changes global state."""
    torch.set_num_threads(1)


def evaluator():
    """lab-03's evaluation harness (loaded lazily: lab-03 also loads this lab)."""
    return labkit.reuse("lab-03-embedding-evaluation")


def to_vectors(vocab: Vocab, matrix) -> "object":
    """Input vectors as lab-03's WordVectors."""
    if torch.is_tensor(matrix):
        matrix = matrix.detach().cpu().numpy()
    return evaluator().WordVectors(list(vocab.words), matrix)


def train_planted(corpus: PlantedCorpus, epochs: int = 3, seed: int = 0, dim: int = 50, min_count: int = 5):
    """Skip-gram (PyTorch) on a planted corpus; returns lab-03 WordVectors of the input embeddings."""
    vocab = build_vocab(corpus.tokens, min_count)
    model, _ = train_torch(vocab.encode(corpus.tokens), vocab, dim=dim, epochs=epochs, seed=seed)
    return to_vectors(vocab, model.in_emb.weight)


# ------------------------------------------------------------------ demo

def main(argv=None):
    parser = argparse.ArgumentParser(description="Train skip-gram with negative sampling (NumPy and PyTorch).")
    parser.add_argument("--sentences", type=int, default=6000, help="planted-corpus size (7 tokens a sentence)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--online", action="store_true", help="train on text8 instead (downloads 31 MB)")
    parser.add_argument("--min-count", type=int, default=5)
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)
    ev = evaluator()
    device = labkit.pick_device()
    if device.type == "cpu":
        single_thread()

    if args.online:
        tokens = load_text8(out, online=True)
        corpus = None
        probes = ["king", "paris", "computer"]
    else:
        corpus = planted_corpus(args.sentences, seed=0)
        tokens = corpus.tokens
        probes = ["king", "paris", "walking"]
    vocab = build_vocab(tokens, args.min_count)
    ids = vocab.encode(tokens)
    keep = keep_probability(vocab.counts)
    print(f"tokens={len(tokens):,}  vocab={len(vocab.words)}  most frequent: {vocab.words[:4]}  "
          f"P(keep) {vocab.words[0]}={keep[0]:.3f}, {vocab.words[-1]}={keep[-1]:.3f}")
    print(f"expected initial loss (1+K) ln 2 = {(1 + args.negatives) * math.log(2):.4f}")

    results = {}
    for name in ("torch",) if args.online else ("numpy", "torch"):  # NumPy on 17 M tokens would take hours
        start = time.perf_counter()
        if name == "numpy":
            w_in, _, losses = train_numpy(ids, vocab, args.dim, args.window, args.negatives, args.epochs, progress=True)
        else:
            model, losses = train_torch(ids, vocab, args.dim, args.window, args.negatives, args.epochs,
                                        device=device, progress=True)
            w_in = model.in_emb.weight
        seconds = time.perf_counter() - start
        vectors = to_vectors(vocab, w_in)
        results[name] = vectors
        print(f"[{name}] first loss {losses[0]:.4f}  last-100 mean {np.mean(losses[-100:]):.4f}  "
              f"({len(losses)} steps, {seconds:.1f} s)")

    vectors = results["torch"]
    for word in probes:
        if word in vectors:
            print(f"  {word:>8} -> " + ", ".join(f"{w} {s:.2f}" for w, s in ev.nearest(vectors, word, k=4)))
    for a, b, c in [("man", "king", "woman"), ("france", "paris", "italy"), ("walk", "walked", "jump")]:
        if all(w in vectors for w in (a, b, c)):
            word, score = ev.analogy(vectors, a, b, c)[0]
            print(f"  {a} : {b} :: {c} : {word} ({score:.2f})")
    if corpus is not None:
        rows = [ev.report(f"skip-gram ({n})", v, corpus.similarity, corpus.analogies) for n, v in results.items()]
        print(ev.format_table(rows))
    path = ev.save_word2vec_text(out / "vectors.txt", vectors)
    print(f"wrote {path}")


if __name__ == "__main__":
    labkit.run(main)
