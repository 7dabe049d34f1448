"""Checks for the instruction-dataset lab. References: datasketch (MinHash signatures and MinHashLSH buckets on the
same shingles and permutations), the exact Jaccard of Python sets, brute-force band comparison, the closed-form LSH
curve, jsonschema, datasets.load_dataset, and hand-made records. The real SmolLM2 path runs end to end once."""
import json
import math
import random
from itertools import combinations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

WORDS = ("red blue green cat dog bird runs jumps sleeps under over near the a quick slow big small river hill "
         "tree house").split()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def datasketch_minhash(shingle_set, num_perm=64, seed=1):
    m = MinHash(num_perm=num_perm, seed=seed, scheme="legacy")  # the classic (a*h + b) mod p family
    for s in shingle_set:
        m.update(s.encode("utf-8"))
    return m


# ------------------------------------------------------------------------------------------ shingles

@pytest.mark.task("shingles")
def test_word_and_char_shingles_by_hand(impl):
    assert impl.shingles("The cat sat, on the mat!", k=3) == {"the cat sat", "cat sat on", "sat on the",
                                                              "on the mat"}
    assert impl.shingles("Hi  there", k=4, unit="char") == {"hi t", "i th", " the", "ther", "here"}
    assert impl.shingles("Two words", k=5) == {"two words"}, "a text shorter than k is one shingle"
    assert impl.shingles("  ", k=3) == set()


@pytest.mark.task("shingles")
@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 20)), st.sets(st.integers(0, 20)))
def test_exact_jaccard_matches_definition(impl, a, b):
    expected = 1.0 if not a and not b else len(a & b) / len(a | b)
    got = impl.exact_jaccard(a, b)
    assert got == pytest.approx(expected), f"J({sorted(a)}, {sorted(b)}): expected {expected}, got {got}"


# ------------------------------------------------------------------------------------------ MinHash

@pytest.mark.task("minhash")
def test_signature_equals_datasketch_bit_for_bit(impl):
    rng = random.Random(0)
    for n_words in (1, 5, 30):
        sh = impl.shingles(sentence(rng, n_words), k=2) if n_words > 1 else {"solo"}
        ref = datasketch_minhash(sh)
        got = impl.minhash_signature(sh, ref.permutations)
        assert np.array_equal(np.asarray(got, dtype=np.uint64), ref.hashvalues), (
            f"signature of a {len(sh)}-shingle set differs from datasketch's in "
            f"{int((np.asarray(got, dtype=np.uint64) != ref.hashvalues).sum())} of 64 slots")


@pytest.mark.task("minhash")
def test_permutations_and_empty_set(impl):
    ref = MinHash(num_perm=16, seed=3, scheme="legacy")
    assert np.array_equal(impl.make_permutations(16, seed=3), ref.permutations)
    got = impl.minhash_signature(set(), ref.permutations)
    assert np.array_equal(np.asarray(got, dtype=np.uint64), ref.hashvalues), "an empty set keeps 2^32-1 everywhere"


@pytest.mark.task("minhash")
def test_estimate_compares_slot_by_slot(impl):
    """Hand cases: the same values in other slots do not count, and repeated values count once per slot."""
    sig = lambda *v: np.array(v, dtype=np.uint64)  # noqa: E731
    assert impl.estimate_jaccard(sig(1, 2, 3, 4), sig(2, 1, 3, 4)) == 0.5, "two of four slots agree"
    assert impl.estimate_jaccard(sig(5, 5, 5, 5), sig(5, 5, 5, 5)) == 1.0, "identical signatures agree everywhere"
    perms = impl.make_permutations(16)
    empty = impl.minhash_signature(set(), perms)
    assert impl.estimate_jaccard(empty, empty) == 1.0, "two empty texts should look identical, like exact_jaccard"


@pytest.mark.task("minhash")
def test_estimate_equals_datasketch_and_tracks_exact_jaccard(impl):
    rng = random.Random(1)
    perms = impl.make_permutations(256)
    z_scores = []
    for _ in range(12):
        base = sentence(rng, 30)
        words = base.split()
        other = " ".join(w if rng.random() > 0.3 else rng.choice(WORDS) for w in words)
        a, b = impl.shingles(base, 2), impl.shingles(other, 2)
        sa, sb = impl.minhash_signature(a, perms), impl.minhash_signature(b, perms)
        est = impl.estimate_jaccard(sa, sb)
        ds = datasketch_minhash(a, 256).jaccard(datasketch_minhash(b, 256))
        assert est == pytest.approx(ds), f"estimate {est} differs from datasketch's {ds} on the same signatures"
        j = len(a & b) / len(a | b)
        z_scores.append((est - j) / math.sqrt(max(j * (1 - j), 1e-3) / 256))
    assert max(abs(z) for z in z_scores) < 4, f"estimates stray more than 4 standard errors: {z_scores}"
    assert abs(np.mean(z_scores)) < 1.5, f"estimates look biased: mean z {np.mean(z_scores):.2f}"


def test_estimate_rejects_mismatched_lengths(impl):
    with pytest.raises(ValueError):
        impl.estimate_jaccard(np.zeros(8, dtype=np.uint64), np.zeros(16, dtype=np.uint64))


# ------------------------------------------------------------------------------------------ LSH

@pytest.mark.task("lsh")
@pytest.mark.parametrize("s,b,r", [(0.5, 20, 5), (0.8, 32, 4), (0.3, 1, 1), (0.0, 4, 2)])
def test_candidate_probability_closed_form(impl, s, b, r):
    expected = 1 - (1 - s ** r) ** b  # e.g. 1 - (1 - 1/32)^20 = 0.4700 for the first case
    assert impl.lsh_candidate_probability(s, b, r) == pytest.approx(expected)


@pytest.mark.task("lsh")
def test_candidate_pairs_by_hand(impl):
    """2 bands of 2 rows: band 0 is slots 0-1, band 1 is slots 2-3 (disjoint)."""
    sigs = [np.array(v, dtype=np.uint64) for v in ([1, 2, 3, 4], [9, 9, 3, 4], [9, 2, 3, 9], [1, 2, 7, 7])]
    got = impl.lsh_candidate_pairs(sigs, bands=2, rows=2)
    # 0-1 share band 1; 0-3 share band 0; 2 shares no whole band with anyone (its 2, 3 straddle the two bands)
    assert set(got) == {(0, 1), (0, 3)}, f"expected candidates {{(0, 1), (0, 3)}}, got {sorted(got)}"


@pytest.mark.task("lsh")
def test_candidate_pairs_brute_force_and_datasketch(impl):
    rng = random.Random(2)
    texts = [sentence(rng, 12) for _ in range(12)]
    texts += [t.replace(t.split()[0], "hill", 1) for t in texts[:4]]  # near-copies
    texts += [texts[0]]  # an exact copy
    perms = impl.make_permutations(32)
    sigs = [impl.minhash_signature(impl.shingles(t, 2), perms) for t in texts]
    bands, rows = 8, 4
    got = impl.lsh_candidate_pairs(sigs, bands, rows)
    brute = {(i, j) for i, j in combinations(range(len(texts)), 2)
             if any(np.array_equal(sigs[i][t * rows:(t + 1) * rows], sigs[j][t * rows:(t + 1) * rows])
                    for t in range(bands))}
    assert set(got) == brute, f"expected {sorted(brute)}, got {sorted(got)}"
    lsh = MinHashLSH(num_perm=32, params=(bands, rows))
    minhashes = []
    for i, t in enumerate(texts):
        m = datasketch_minhash(impl.shingles(t, 2), 32)
        minhashes.append(m)
        lsh.insert(i, m)
    ds_pairs = {tuple(sorted((i, j))) for i, m in enumerate(minhashes) for j in lsh.query(m) if i != j}
    assert set(got) == ds_pairs, f"datasketch's MinHashLSH finds {sorted(ds_pairs)}, got {sorted(got)}"
    with pytest.raises(ValueError):
        impl.lsh_candidate_pairs(sigs, 5, 5)


# ------------------------------------------------------------------------------------------ near-dedup

@pytest.mark.task("near-dedup")
def test_near_duplicates_drop_planted_copies_only(impl):
    rng = random.Random(3)
    originals = [f"{sentence(rng, 15)} number {i}" for i in range(20)]
    copies = [o + " please" for o in originals[:5]]
    texts = originals + copies
    dropped, pairs = impl.near_duplicates(texts, threshold=0.5, num_perm=128, bands=32, rows=4)
    sets = [impl.shingles(t, 3) for t in texts]
    truth = {j for i, j in combinations(range(len(texts)), 2) if impl.exact_jaccard(sets[i], sets[j]) >= 0.7}
    assert truth == set(range(20, 25)), "fixture check: the planted copies are the only similar pairs"
    assert set(dropped) == truth, f"expected to drop the planted copies {sorted(truth)}, dropped {dropped}"
    assert all(i < j for i, j in pairs) and pairs == sorted(pairs), f"pairs should be sorted (i, j), i < j: {pairs}"


@pytest.mark.task("near-dedup")
def test_near_duplicates_keep_the_first_of_a_chain(impl):
    texts = ["alpha beta gamma delta epsilon zeta eta theta"] * 3 + ["one two three four five six seven"]
    dropped, pairs = impl.near_duplicates(texts, threshold=0.9, num_perm=64, bands=16, rows=4)
    assert dropped == [1, 2], f"three identical texts: keep index 0, drop [1, 2]; got {dropped}"
    assert pairs == [(0, 1), (0, 2), (1, 2)], f"expected all three pairs confirmed, got {pairs}"


def datasketch_estimate(impl, a, b, num_perm, k, unit="word"):
    first, second = (datasketch_minhash(impl.shingles(t, k, unit), num_perm) for t in (a, b))
    return first.jaccard(second)


@pytest.mark.task("near-dedup")
def test_near_duplicates_threshold_is_inclusive(impl):
    """An estimate exactly at the threshold confirms the pair (bands of one row: any equal slot is a candidate)."""
    texts = ["the cat sat on the mat", "the cat sat on a mat"]
    at = datasketch_estimate(impl, *texts, num_perm=64, k=1)
    assert 0.5 < at < 1.0, f"fixture check: expected an estimate strictly between 0.5 and 1, got {at}"
    dropped, pairs = impl.near_duplicates(texts, threshold=at, num_perm=64, bands=64, rows=1, k=1)
    assert pairs == [(0, 1)] and dropped == [1], (
        f"estimate {at} equals the threshold, so the pair counts as a duplicate; got pairs {pairs}, dropped {dropped}")


@pytest.mark.task("near-dedup")
def test_near_duplicates_chain_and_unconfirmed_candidate(impl):
    """A ~ B and B ~ C but not A ~ C (word 1-shingles, J = 2/3, 2/3, 3/7): B goes, C stays because its only
    partner was already dropped; A-C is an LSH candidate whose estimate is below the threshold."""
    a, b, c = (" ".join(f"w{i}" for i in range(start, start + 20)) for start in (0, 4, 8))
    estimates = [datasketch_estimate(impl, x, y, 128, k=1) for x, y in ((a, b), (b, c), (a, c))]
    assert estimates[0] >= 0.6 and estimates[1] >= 0.6 and 0 < estimates[2] < 0.5, f"fixture check: {estimates}"
    dropped, pairs = impl.near_duplicates([a, b, c], threshold=0.55, num_perm=128, bands=128, rows=1, k=1)
    assert pairs == [(0, 1), (1, 2)], f"expected confirmed pairs [(0, 1), (1, 2)], got {pairs}"
    assert dropped == [1], f"greedy in order: drop 1 (copy of 0); 2 pairs only with the dropped 1, so it stays; got {dropped}"


@pytest.mark.task("near-dedup")
def test_near_duplicates_use_the_given_shingles(impl):
    """Word 1-shingles see one changed word as a small change (J = 5/6); word 3-shingles would not (J = 1/3)."""
    texts = ["the cat sat on the mat", "the cat sat on a mat"]
    assert datasketch_estimate(impl, *texts, num_perm=128, k=3) < 0.45, "fixture check: 3-shingles differ a lot"
    dropped, _ = impl.near_duplicates(texts, threshold=0.7, k=1)
    assert dropped == [1], f"with k=1 word shingles the second text is a near-duplicate; got dropped {dropped}"
    chars = ["How does an octopus change colour?", "How does an octopus change color?"]
    dropped, _ = impl.near_duplicates(chars, threshold=0.5, k=4, unit="char")
    assert dropped == [1], f"character 4-shingles see a respelled word as a near-duplicate; got dropped {dropped}"


# ------------------------------------------------------------------------------------------ filters

def rec(instruction, output, input=""):
    return {"instruction": instruction, "input": input, "output": output}


@pytest.mark.task("filters")
@pytest.mark.parametrize("record,expected", [
    (rec("Hi", "Hello there."), "instruction too short"),
    (rec("word " * 101, "Fine."), "instruction too long"),
    (rec("Name a colour please.", ""), "output too short"),
    (rec("Name a colour please.", "red " * 301), "output too long"),
    (rec("Name a colour please.", "Red."), None),
    (rec("Name a colour.", "Red."), None),                     # exactly the 3-word minimum
    (rec("word " * 100, "Fine."), None),                       # exactly 100 words (500 characters)
    (rec("Name a colour please.", "red " * 300), None),        # exactly 300 words
    (rec("Hi", ""), "instruction too short"),                  # the instruction is reported first
])
def test_length_reason(impl, record, expected):
    assert impl.length_reason(record) == expected


@pytest.mark.task("filters")
def test_language_scores_and_decision(impl):
    latin, stop = impl.english_scores("The cat is on the mat 42")
    assert latin == pytest.approx(1.0) and stop == pytest.approx(4 / 6), (latin, stop)
    assert impl.english_scores("123 !!") == (0.0, 0.0)
    assert impl.is_english("Explain why the sky is blue during the day.")
    assert not impl.is_english("Le chat dort sur le canapé pendant que nous mangeons ensemble."), "French prose"
    assert not impl.is_english("Объясни, почему небо голубое."), "Cyrillic script"
    assert not impl.is_english("空はなぜ青いのですか"), "Japanese script"
    assert impl.is_english("Ottawa."), "short texts are judged by script only"
    assert not impl.is_english("Le chat dort sur le canapé"), \
        "six words already get the stopword test (short means fewer than 6): no English stopword here"
    assert impl.is_english("The zebra quokka wombat koala emu dingo possum platypus echidna."), \
        "1 stopword in 10 words is exactly the 0.1 minimum, which passes"


@pytest.mark.task("filters")
def test_quality_reason(impl):
    assert impl.repeated_trigram_share("the cat sat the cat sat the cat sat") == pytest.approx(4 / 7)
    assert impl.repeated_trigram_share("one two") == 0.0
    at_limit = "alpha beta gamma delta one two three one two three one two"  # 10 trigrams, 3 repeats
    assert impl.repeated_trigram_share(at_limit) == pytest.approx(0.3)
    assert impl.quality_reason(rec("Count to three a few times.", at_limit)) is None, \
        "a repeat share exactly at max_repeat (0.3) is still allowed"
    assert impl.quality_reason(rec("Tell a joke.", "I'm sorry, I cannot do that.")) == "refusal"
    assert impl.quality_reason(rec("Tell a joke.", "ha ha ha ha ha ha ha ha")) == "repetitive"
    assert impl.quality_reason(rec("Tell a joke!", "tell a JOKE")) == "echo"
    assert impl.quality_reason(rec("Tell a joke.", "Why did the scarecrow win? He was outstanding in his field.")) \
        is None


# ------------------------------------------------------------------------------------------ contamination

@pytest.mark.task("contamination")
def test_contamination_flags_overlap_only(impl):
    evals = ["What is the boiling point of water at sea level in degrees Celsius?", "Define entropy."]
    index = impl.contamination_index(evals, n=8)
    words = "what is the boiling point of water at sea level in degrees celsius".split()
    expected = {tuple(words[i:i + 8]) for i in range(len(words) - 7)} | {("define", "entropy")}
    assert index == expected, f"expected {len(expected)} n-grams, got {len(index)}"
    leaked = rec("Quick quiz: what is the BOILING point of water at sea level?", "100 C")
    assert impl.is_contaminated(leaked, index, n=8), "8 consecutive words of an eval item are inside"
    in_output = rec("Answer this.", "Sure. Define entropy.")
    assert not impl.is_contaminated(in_output, index, n=8), "a 2-word eval item is one 2-gram, not inside 8-grams"
    paraphrase = rec("At sea level, water boils at what temperature in Celsius?", "100")
    assert not impl.is_contaminated(paraphrase, index, n=8), "a paraphrase shares no 8-gram"
    assert impl.is_contaminated(rec("Define", "", input="entropy!"), index, n=8), \
        "a record whose whole text is a short eval item shares its only n-gram"


# ------------------------------------------------------------------------------------------ self-instruct

@pytest.mark.task("self-instruct")
@pytest.mark.parametrize("completion,expected", [
    (" Describe the beauty of a sunset.\nTask 6: Tell a story.", "Describe the beauty of a sunset."),
    ("\n\nTask 5: \"Plan a picnic for four people.\"", "Plan a picnic for four people."),
    ("3. List two fruits that are red.", "List two fruits that are red."),
    ("- Hi there", None),
    ("Task 7: Name three rivers.", "Name three rivers."),             # exactly min_words
    ("Hi.\nTask 6: Write a poem about rain.", None),                  # the first line decides
    ("   \n  ", None),
])
def test_parse_instruction(impl, completion, expected):
    assert impl.parse_instruction(completion) == expected


@pytest.mark.task("self-instruct")
def test_self_instruct_with_scripted_generators(impl):
    seeds = [f"Seed task number {i} here." for i in range(10)]
    inst = impl.ScriptedGenerator([" Write a limerick about tea.\nTask 6: x", "??", " Name three rivers in Europe."])
    ans = impl.ScriptedGenerator([" There once was a pot...\n", "Rhine, Danube, Seine.\n\n"])
    got = impl.self_instruct(inst, ans, seeds, n=3, examples_per_prompt=4, seed=7)
    assert got == [rec("Write a limerick about tea.", "There once was a pot..."),
                   rec("Name three rivers in Europe.", "Rhine, Danube, Seine.")], got
    rng = random.Random(7)
    samples = [rng.sample(seeds, 4) for _ in range(3)]
    prompts = [impl.build_instruction_prompt(s) for s in samples]
    seen = []

    class Recorder:
        def generate(self, ps):
            seen.extend(ps)
            return ["Invent a new board game." for _ in ps]

    impl.self_instruct(Recorder(), impl.ScriptedGenerator(["ok"]), seeds, n=3, examples_per_prompt=4, seed=7)
    assert seen[:3] == prompts, "prompts should show rng.sample(seeds, 4) drawn with random.Random(seed)"


# ------------------------------------------------------------------------------------------ curate

@pytest.mark.task("curate")
def test_schema_errors(impl):
    assert impl.schema_errors(rec("Do it.", "Done.")) == []
    errors = impl.schema_errors({"instruction": "", "output": 3, "extra": 1})
    assert len(errors) == 4, f"expected 4 violations (missing input, empty instruction, int output, extra key), " \
                             f"got {errors}"


@pytest.mark.task("curate")
def test_curate_language_and_respelled_duplicate(impl):
    """The language test reads the output too; near-duplicates are judged on the question alone, with character
    shingles, so one respelled word and a different answer do not hide a copy."""
    castle = rec("Describe daily life inside a medieval castle during a long winter.",
                 "Cold halls, smoky fires and salted meat.")
    foreign = rec("Write one sentence about the sea.", "Море тёплое и синее, и волны тихо шумят у берега.")
    respelled = rec("Describe daily life inside a mediaeval castle during a long winter.",
                    "Lords feasted while servants kept the fires going.")
    rivers = rec("Name two rivers that flow through Germany.", "The Rhine and the Danube.")
    kept, report = impl.curate([castle, foreign, respelled, rivers], ["Define entropy."])
    assert report == {"input": 4, "schema": 0, "length": 0, "language": 1, "quality": 0, "contamination": 0,
                      "near_duplicate": 1, "kept": 2}, report
    assert kept == [castle, rivers], f"expected the castle and rivers records, got {kept}"


@pytest.mark.task("curate")
def test_curate_report_counts(impl, tmp_path):
    prompts = ["Explain how volcanoes form.", "Why do honeybees dance?", "Suggest a chess opening for beginners.",
               "Give me a recipe idea with sourdough.", "Who walked on the moon first?", "Recommend three jazz albums.",
               "List pros and cons of rooftop solar panels.", "How does an octopus change colour?",
               "Describe daily life inside a medieval castle.", "Define compound interest with an example."]
    good = [rec(p, f"A short, helpful answer to: {p.lower()}") for p in prompts]
    bad = [
        {"instruction": "Missing fields"},                                            # schema
        rec("Hi", "Hello."),                                                          # length
        rec("Décris la couleur du ciel pendant une journée très ensoleillée.", "Le ciel est bleu et clair."),
        rec("Repeat after me please now.", "go go go go go go go go go go"),          # quality
        rec("Quiz: what is the boiling point of water at sea level in degrees?", "100 degrees."),  # contamination
        dict(good[0], instruction=good[0]["instruction"].replace("Describe", "Please describe")),  # near-dup
    ]
    kept, report = impl.curate(good + bad, ["What is the boiling point of water at sea level in degrees Celsius?"])
    assert report == {"input": 16, "schema": 1, "length": 1, "language": 1, "quality": 1, "contamination": 1,
                      "near_duplicate": 1, "kept": 10}, report
    assert kept == good, "the ten distinct good records should survive, in order"
    path = impl.write_jsonl(kept, tmp_path / "out" / "data.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == kept
    ds = impl.load_as_dataset(path)
    assert ds.num_rows == 10 and sorted(ds.column_names) == ["input", "instruction", "output"]
    assert list(tmp_path.joinpath("out").iterdir()) == [path], "no temporary file may be left behind"


# ------------------------------------------------------------------------------------------ files and SmolLM2

def test_shipped_data_is_valid(impl):
    seeds, evals = impl.read_jsonl(impl.SEED_FILE), impl.read_jsonl(impl.EVAL_FILE)
    assert len(seeds) >= 30 and len(evals) >= 5
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(impl.RECORD_SCHEMA)
    assert all(validator.is_valid(r) for r in seeds), "every seed task should match the record schema"


def test_api_generator_fails_in_one_line_without_a_key(impl, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        impl.OpenAIChatGenerator()


@pytest.mark.slow
@pytest.mark.task("curate")
def test_smollm2_end_to_end(impl, tmp_path):
    from labkit import assets

    from labkit.device import torch_threads

    with torch_threads(1):  # one thread: much faster than two on a shared 2-core machine
        model, tok = assets.smollm2()
        seeds = [r["instruction"] for r in impl.read_jsonl(impl.SEED_FILE)]
        got = impl.self_instruct(impl.LocalModelGenerator(model, tok, chat=False, max_new_tokens=16),
                                 impl.LocalModelGenerator(model, tok, chat=True, max_new_tokens=16), seeds, n=4)
    assert got, "SmolLM2 should produce at least one parsable instruction out of 4"
    kept, report = impl.curate(got, [r["question"] for r in impl.read_jsonl(impl.EVAL_FILE)])
    assert report["input"] == len(got) and report["kept"] == len(kept)
    assert sum(v for k, v in report.items() if k not in ("input", "kept")) + len(kept) == len(got)
    ds = impl.load_as_dataset(impl.write_jsonl(got, tmp_path / "smol.jsonl"))
    assert ds.num_rows == len(got)
