"""Near-duplicate detection throughput: this lab's MinHash + banded LSH against datasketch's, side by side.

Both sides get the same documents (Shakespeare pages plus planted near-duplicates), the same 5-word shingles,
128 permutations and the same (bands, rows); both sign every document, index it and collect candidate pairs.
The lab's signature is vectorized over shingles and permutations at once (one NumPy broadcast per document);
datasketch hashes with the same SHA-1 + fmix32 + affine scheme. The two must report the same candidate pairs
(same permutations, so the same signatures), which the bench checks before it prints any speed.

Reported: documents per second for signing and for LSH bucketing, each side, and the ratio lab / datasketch.
Also the per-stage docs/s of the whole pipeline on the demo corpus.
Run: .venv/bin/python llm-engineer/phase-10-distributed-production/lab-02-pretraining-data-pipeline/bench.py
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

import labkit
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-10-distributed-production/lab-02-pretraining-data-pipeline"


def corpus(impl, n_pages: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pages = impl.shakespeare_docs(n_pages, words_per_doc=200)
    return pages + [impl.edit_words(p, 2, rng) for p in pages[: n_pages // 5]]


def lab_sign(impl, sets, perms):
    return np.stack([impl.minhash_signature(s, perms) for s in sets])


def lab_candidates(impl, sigs, bands, rows):
    return impl.lsh_candidate_pairs(sigs, bands, rows)


def ds_sign(sets, perms):
    out = []
    for s in sets:
        m = MinHash(num_perm=perms.shape[1], permutations=(perms[0], perms[1]), scheme="affine32")
        m.update_batch([x.encode("utf-8") for x in s])
        out.append(m)
    return out


def ds_candidates(minhashes, bands, rows):
    lsh = MinHashLSH(num_perm=len(minhashes[0].hashvalues), params=(bands, rows))
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    return {(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if i != j}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    impl = labkit.load_impl(LAB, "solution")
    texts = corpus(impl, args.pages)
    sets = [impl.shingles(t) for t in texts]
    perms = impl.make_permutations(128, seed=1)
    bands, rows = impl.lsh_params(0.8, 128)
    n = len(texts)
    print(f"{n} documents, {sum(map(len, sets)):,} shingles, 128 permutations, LSH {bands} bands x {rows} rows")

    sigs = lab_sign(impl, sets, perms)
    mins = ds_sign(sets, perms)
    same_sigs = all(np.array_equal(sigs[i].astype(np.uint64), m.hashvalues.astype(np.uint64))
                    for i, m in enumerate(mins))
    ours, theirs = lab_candidates(impl, sigs, bands, rows), ds_candidates(mins, bands, rows)
    print(f"identical signatures: {same_sigs}; identical candidate pairs: {ours == theirs} ({len(ours)} pairs)")
    if not (same_sigs and ours == theirs):
        raise SystemExit("the two implementations disagree: fix that before comparing speed")

    t_sign_lab = best_seconds(lambda: lab_sign(impl, sets, perms), args.repeats)
    t_sign_ds = best_seconds(lambda: ds_sign(sets, perms), args.repeats)
    t_lsh_lab = best_seconds(lambda: lab_candidates(impl, sigs, bands, rows), args.repeats)
    t_lsh_ds = best_seconds(lambda: ds_candidates(mins, bands, rows), args.repeats)
    print(f"\n{'step':<22} {'lab docs/s':>12} {'datasketch docs/s':>18} {'lab / datasketch':>17}")
    for name, ours_s, theirs_s in (("sign (MinHash)", t_sign_lab, t_sign_ds), ("LSH candidates", t_lsh_lab, t_lsh_ds),
                                    ("sign + LSH", t_sign_lab + t_lsh_lab, t_sign_ds + t_lsh_ds)):
        print(f"{name:<22} {n / ours_s:>12,.0f} {n / theirs_s:>18,.0f} {theirs_s / ours_s:>16.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        docs = impl.build_corpus()
        paths = impl.write_warc(docs, Path(tmp) / "warc")
        start = time.perf_counter()
        _, reports, _ = impl.run_pipeline(paths, Path(tmp) / "shards")
        total = time.perf_counter() - start
    print(f"\nwhole pipeline on the demo corpus ({len(docs)} pages, {total:.2f} s):")
    print(impl.format_report(reports, len(docs)))


if __name__ == "__main__":
    labkit.run(main)
