"""MinHash against datasketch (same permutations -> the same signature, bit for bit), LSH bucketing against brute
force and datasketch's MinHashLSH, near-duplicate clusters against all-pairs exact Jaccard, and the whole
pipeline against the corpus's known ground truth."""
import itertools
import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
        "it was the season of Darkness, it was the spring of hope, it was the winter of despair.")


def test_permutations(num_perm=128, seed=7):
    """Our own odd multipliers and offsets (uint32), independent of the lab's generator."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 31, num_perm, dtype=np.uint64).astype(np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return np.stack([a, b])


test_permutations.__test__ = False


def datasketch_signature(items, perms):
    m = MinHash(num_perm=perms.shape[1], permutations=(perms[0], perms[1]), scheme="affine32")
    m.update_batch([s.encode("utf-8") for s in items])
    return m.hashvalues


def brute_shingles(text, k=5):
    words = text.lower().split()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)} if len(words) >= k else \
        ({" ".join(words)} if words else set())


# --------------------------------------------------------------------------- minhash

@pytest.mark.task("minhash")
def test_shingles_by_hand(impl):
    assert impl.shingles("A b c d e F") == {"a b c d e", "b c d e f"}, "two 5-word windows, lower-cased"
    assert impl.shingles("one\ntwo  three", k=2) == {"one two", "two three"}, "any whitespace separates words"
    assert impl.shingles("only two") == {"only two"}, "fewer than k words make one shingle"
    assert impl.shingles("   ") == set()
    assert impl.shingles(TEXT, k=3) == brute_shingles(TEXT, k=3)


@pytest.mark.task("minhash")
def test_signature_equals_datasketch_with_the_same_permutations(impl):
    perms = test_permutations()
    for text in (TEXT, TEXT.upper(), "a b c d e", "Σήμερα είναι μια καλή μέρα για περίπατο στην πόλη"):
        items = impl.shingles(text)
        ours = impl.minhash_signature(items, perms)
        theirs = datasketch_signature(items, perms)
        assert ours.shape == (128,), f"expected shape (128,), got {ours.shape}"
        assert np.array_equal(ours.astype(np.uint64), theirs.astype(np.uint64)), \
            f"signature differs from datasketch's MinHash(scheme='affine32') in " \
            f"{int(np.sum(ours.astype(np.uint64) != theirs.astype(np.uint64)))} of 128 positions for {text[:25]!r}"


@pytest.mark.task("minhash")
def test_empty_set_signature_is_all_max(impl):
    perms = test_permutations(16)
    sig = impl.minhash_signature(set(), perms)
    assert np.array_equal(sig.astype(np.uint64), datasketch_signature(set(), perms).astype(np.uint64)), \
        f"an empty set's signature should be all 2^32 - 1 (as datasketch's), got {sig[:4]}..."


@pytest.mark.task("minhash")
def test_estimated_jaccard_tracks_the_exact_one(impl):
    rng = random.Random(0)
    perms = test_permutations(128, seed=3)
    words = TEXT.split() * 4
    for edits in (2, 8, 20, 40):
        other = list(words)
        for i in rng.sample(range(len(other)), edits):
            other[i] = f"w{i}"
        a, b = impl.shingles(" ".join(words)), impl.shingles(" ".join(other))
        exact = len(a & b) / len(a | b)
        est = float(np.mean(impl.minhash_signature(a, perms) == impl.minhash_signature(b, perms)))
        # standard error sqrt(J(1-J)/128) <= 0.045: 0.15 is more than three of them
        assert abs(est - exact) < 0.15, f"{edits} edits: exact Jaccard {exact:.3f}, MinHash estimate {est:.3f}"


# --------------------------------------------------------------------------- lsh

@pytest.mark.task("lsh")
def test_s_curve_by_hand(impl):
    assert impl.s_curve(0.8, 20, 5) == pytest.approx(1 - (1 - 0.8 ** 5) ** 20)
    assert impl.s_curve(0.8, 20, 5) == pytest.approx(0.99964, abs=1e-5)
    assert impl.s_curve(0.3, 1, 1) == pytest.approx(0.3), "one band of one row: the Jaccard itself"
    assert impl.s_curve(0.5, 2, 3) == pytest.approx(1 - (1 - 0.125) ** 2)
    b, r = 9, 13
    knee = (1 / b) ** (1 / r)
    assert impl.s_curve(knee, b, r) == pytest.approx(1 - (1 - 1 / b) ** b), "at s = (1/b)^(1/r), s^r = 1/b"
    grid = np.linspace(0, 1, 101)
    values = np.asarray(impl.s_curve(grid, b, r))
    assert values.shape == (101,) and np.all(np.diff(values) >= 0), "the S-curve is vectorized and monotone"
    assert values[0] == 0 and values[-1] == pytest.approx(1)


@pytest.mark.task("lsh")
def test_bands_and_rows_match_datasketch(impl):
    for threshold in (0.5, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        assert impl.lsh_params(threshold, 128) == (lsh.b, lsh.r), \
            f"threshold {threshold}: datasketch picks (b, r) = {(lsh.b, lsh.r)}, got {impl.lsh_params(threshold, 128)}"


def brute_candidates(sigs, bands, rows):
    return {(i, j) for i, j in itertools.combinations(range(len(sigs)), 2)
            if any(np.array_equal(sigs[i, t * rows:(t + 1) * rows], sigs[j, t * rows:(t + 1) * rows])
                   for t in range(bands))}


@pytest.mark.task("lsh")
def test_candidates_equal_brute_force_on_colliding_signatures(impl):
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2, size=(30, 12)).astype(np.uint32)     # tiny alphabet: many band collisions
    for bands, rows in ((4, 3), (6, 2), (3, 3)):
        want = brute_candidates(sigs, bands, rows)
        got = impl.lsh_candidate_pairs(sigs, bands, rows)
        assert got == want, f"bands={bands} rows={rows}: {len(want)} pairs expected, got {len(got)}; " \
                            f"missing {sorted(want - got)[:3]}, extra {sorted(got - want)[:3]}"


@pytest.mark.task("lsh")
def test_candidates_equal_datasketch_lsh_queries(impl):
    rng = random.Random(0)
    perms = test_permutations()
    words = TEXT.split() * 3
    texts = []
    for _ in range(12):
        other = list(words)
        for i in rng.sample(range(len(other)), rng.choice([1, 3, 10, 30])):
            other[i] = f"x{rng.randrange(99)}"
        texts.append(" ".join(other))
    sigs = np.stack([datasketch_signature(brute_shingles(t), perms) for t in texts]).astype(np.uint32)
    lsh = MinHashLSH(num_perm=128, params=(9, 13))
    mins = []
    for i, s in enumerate(sigs):
        m = MinHash(num_perm=128, hashvalues=s, scheme="affine32")
        lsh.insert(i, m)
        mins.append(m)
    want = {(min(i, j), max(i, j)) for i, m in enumerate(mins) for j in lsh.query(m) if i != j}
    got = impl.lsh_candidate_pairs(sigs, 9, 13)
    assert got == want, f"datasketch's MinHashLSH finds {len(want)} candidate pairs, got {len(got)}"
    assert 0 < len(want) < 66, "test data check: some pairs collide, not all"


# --------------------------------------------------------------------------- dedup

@pytest.mark.task("dedup")
def test_exact_duplicates_after_normalization(impl):
    texts = ["a b", "A  b\n", "c", "a b", "a  c", "C"]
    got = impl.exact_duplicates(texts)
    assert got == [1, 3, 5], f"later copies (case and whitespace ignored) are duplicates, the first is kept: got {got}"
    assert impl.exact_duplicates([]) == []


def sets_with_jaccard(n_common, n_only_a, n_only_b, tag):
    common = {f"c{i}" for i in range(n_common)}
    return common | {f"{tag}a{i}" for i in range(n_only_a)}, common | {f"{tag}b{i}" for i in range(n_only_b)}


@pytest.mark.task("dedup")
def test_verification_threshold_is_inclusive(impl):
    a, b = sets_with_jaccard(8, 1, 1, "p")       # 8 / 10 = 0.8 exactly
    c, d = sets_with_jaccard(79, 11, 10, "q")    # 79 / 100 = 0.79
    sets = [a, b, c, d]
    clusters = impl.near_duplicate_clusters(sets, {(0, 1), (2, 3)}, 0.8)
    assert clusters == [[0, 1]], f"Jaccard exactly 0.8 links (>=), 0.79 does not: got {clusters}"


@pytest.mark.task("dedup")
def test_candidates_are_verified_and_links_are_transitive(impl):
    base = {f"w{i}" for i in range(100)}
    b = (base - {"w0", "w1", "w2", "w3", "w4", "w5"}) | {"n0", "n1", "n2", "n3", "n4", "n5"}   # J(a,b) = 94/106
    c = (b - {f"w{i}" for i in range(6, 12)}) | {f"m{i}" for i in range(6)}                   # J(b,c) = 94/106
    far = {f"z{i}" for i in range(50)}
    sets = [base, far, b, c]
    assert len(base & c) / len(base | c) < 0.8, "test data check: the chain's ends are not near-duplicates"
    clusters = impl.near_duplicate_clusters(sets, {(0, 2), (2, 3), (0, 1), (1, 3)}, 0.8)
    assert clusters == [[0, 2, 3]], \
        f"a~b and b~c make one cluster; the false candidates with the unrelated doc are rejected: got {clusters}"
    # a star: two variants both linked to the original at index 2 (merge roots, not the documents themselves)
    star = [b, (base - {f"w{i}" for i in range(50, 56)}) | {f"k{i}" for i in range(6)}, base]
    clusters = impl.near_duplicate_clusters(star, {(0, 2), (1, 2)}, 0.8)
    assert clusters == [[0, 1, 2]], f"0~2 and 1~2 put all three in one cluster, got {clusters}"


@pytest.mark.task("dedup")
def test_corpus_clusters_equal_all_pairs_jaccard(impl):
    texts = [d["text"] for d in impl.build_corpus() if d["expect"] in ("keep", "near_dup")]
    sets = [brute_shingles(t) for t in texts]
    parent = list(range(len(texts)))

    def root(x):
        return x if parent[x] == x else root(parent[x])

    for i, j in itertools.combinations(range(len(texts)), 2):
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.8:
            parent[root(j)] = root(i)
    groups = {}
    for i in range(len(texts)):
        groups.setdefault(root(i), []).append(i)
    want = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    dupes, clusters = impl.Deduper(0.8).near_duplicates(texts)
    assert clusters == want, f"all-pairs Jaccard >= 0.8 gives clusters {want}, MinHash-LSH gave {clusters}"
    assert len(want) == 3 and dupes == sorted(g[1] for g in want)


@pytest.mark.task("dedup")
def test_pipeline_drops_exactly_the_planted_documents(impl, tmp_path):
    corpus = impl.build_corpus()
    paths = impl.write_warc(corpus, tmp_path / "warc")
    kept, reports, index = impl.run_pipeline(paths, tmp_path / "shards", shard_tokens=2048)
    kept_urls = {d["url"] for d in kept}
    for d in corpus:
        should_keep = d["expect"] == "keep"
        assert (d["url"] in kept_urls) == should_keep, f"{d['url']} ({d['expect']}) was " \
            f"{'kept' if d['url'] in kept_urls else 'dropped'}"
    by_stage = {r.name: r for r in reports}
    stage_of = {"language": "language", "gopher": "gopher", "c4": "c4", "exact_dup": "exact_dup",
                "near_dup": "near_dup"}
    for name in stage_of:
        want = sum(d["expect"].split(":")[0] == name for d in corpus)
        got = by_stage[name].docs_in - by_stage[name].docs_out
        assert got == want, f"stage {name} should drop {want} documents, dropped {got}"
    assert sum(by_stage["pii"].reasons.values()) == 5, f"5 PII items planted, {by_stage['pii'].reasons} found"
    assert all("@" not in d["text"] for d in kept)
