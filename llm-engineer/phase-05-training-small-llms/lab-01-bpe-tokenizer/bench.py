"""Benchmark: BPE training (incremental vs naive full recount vs HF tokenizers) and encoding (ours vs tiktoken).

Everything is measured in this run, on the same ~1 MB of Shakespeare. The naive trainer recounts every pair before
every merge, so on 1 MB it runs only its first --naive-merges merges (checked identical to the incremental
trainer's) and its total is extrapolated linearly from them; the output says so. Times are CPU seconds on one
thread (HF tokenizers is pinned to one thread with RAYON_NUM_THREADS=1; unset it to let it use every core).
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers on one thread, like everything else here
from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

import labkit
from labkit import assets

LAB = "llm-engineer/phase-05-training-small-llms/lab-01-bpe-tokenizer"


def timed(fn, *args, **kwargs):
    """(result, CPU seconds of this process). CPU time, not wall time: the machine is shared, and every contender
    here runs on one thread, so CPU time is what an idle core would take."""
    start = time.process_time()
    result = fn(*args, **kwargs)
    return result, time.process_time() - start


def hf_train(text: str, vocab_size: int):
    """HF tokenizers' BpeTrainer with GPT-2's byte-level pre-tokenizer (same regex, 256-byte alphabet)."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--naive-merges", type=int, default=40, help="merges the naive trainer runs on the full text")
    args = parser.parse_args()
    lab = labkit.load_impl(LAB, "solution")
    text = assets.shakespeare(args.chars)
    size_mb = len(text.encode("utf-8")) / 1e6
    merges_wanted = args.vocab_size - 256
    print(f"text: {size_mb:.2f} MB of Shakespeare; vocab_size {args.vocab_size} ({merges_wanted} merges); "
          f"{os.cpu_count()} CPU cores visible\n")

    # ---- training
    counts, t_count = timed(lab.word_counts, text)
    incremental, t_inc = timed(lab.train_incremental, counts, merges_wanted)
    naive, t_naive_part = timed(lab.train_naive, counts, args.naive_merges)
    assert naive == incremental[:len(naive)], "naive and incremental trainers disagree on the first merges"
    small = lab.word_counts(text[:60_000])
    naive_small, t_naive_small = timed(lab.train_naive, small, 200)
    inc_small, t_inc_small = timed(lab.train_incremental, small, 200)
    assert naive_small == inc_small, "naive and incremental trainers disagree on 60k characters"
    t_naive = t_naive_part * len(incremental) / len(naive)
    hf, t_hf = timed(hf_train, text, args.vocab_size)

    ours_total = t_count + t_inc
    rows = [
        ("ours, incremental (pre-tokenize + count + merges)", ours_total, "measured"),
        ("ours, naive full recount", t_count + t_naive,
         f"linear extrapolation from its first {len(naive)} merges (identical to incremental's); an upper "
         "bound, since words shrink as merges go"),
        (f"HF tokenizers BpeTrainer (Rust, {os.environ['RAYON_NUM_THREADS']} thread)", t_hf, "measured"),
    ]
    print(f"BPE training on {size_mb:.2f} MB, {len(incremental)} merges")
    print(f"  {'trainer':<52}{'CPU s':>9}{'vs incremental':>16}   note")
    for name, seconds, note in rows:
        print(f"  {name:<52}{seconds:>9.2f}{seconds / ours_total:>15.2f}x   {note}")
    print(f"  on 60k characters, 200 merges, both measured in full: naive {t_naive_small:.2f} s, incremental "
          f"{t_inc_small:.3f} s ({t_naive_small / t_inc_small:.0f}x); identical merges: True")
    table = lab.bytes_to_unicode()
    to_bytes = {ch: b for b, ch in table.items()}
    state = json.loads(hf.to_str())["model"]["merges"]  # [left, right] in GPT-2's byte-to-unicode spelling
    hf_merges = [tuple(bytes(to_bytes[c] for c in part) for part in (pair.split(" ") if isinstance(pair, str) else pair))
                 for pair in state]
    vocab = {i: bytes([i]) for i in range(256)}
    ours_bytes = []
    for new_id, (left, right) in enumerate(incremental, start=256):
        vocab[new_id] = vocab[left] + vocab[right]
        ours_bytes.append((vocab[left], vocab[right]))
    same = len(set(ours_bytes) & set(hf_merges))
    first_diff = next((i for i, (x, y) in enumerate(zip(ours_bytes, hf_merges)) if x != y), None)
    print(f"  merges shared with HF: {same}/{len(ours_bytes)} (same order up to merge {first_diff}; "
          "tie-breaks differ)\n")

    # ---- encoding
    reference = assets.tiktoken_encoding("gpt2")
    gpt2, t_load = timed(lab.gpt2_tokenizer)
    ours_ids, t_cold = timed(gpt2.encode_ordinary, text)
    _, t_warm = timed(gpt2.encode_ordinary, text)
    theirs_ids, t_tik = timed(reference.encode_ordinary, text)
    assert ours_ids == theirs_ids, "our GPT-2 tokens differ from tiktoken's"
    n = len(theirs_ids)
    print(f"GPT-2 encoding of {size_mb:.2f} MB ({n:,} tokens, identical to tiktoken; loading our merges took "
          f"{t_load:.2f} s)")
    print(f"  {'encoder':<52}{'MB/s':>9}{'tokens/s':>12}{'vs tiktoken':>13}")
    for name, seconds in [("ours, cold pre-token cache", t_cold), ("ours, warm pre-token cache", t_warm),
                          ("tiktoken encode_ordinary (Rust, 1 thread)", t_tik)]:
        print(f"  {name:<52}{size_mb / seconds:>9.2f}{n / seconds:>12,.0f}{t_tik / seconds:>12.3f}x")


if __name__ == "__main__":
    main()
