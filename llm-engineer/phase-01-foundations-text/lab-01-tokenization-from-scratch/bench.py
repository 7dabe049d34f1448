"""Benchmark: compression and encode throughput of the three tokenizers against tiktoken, on ~1 MB of Shakespeare.

Compression is reported as bytes per token (the byte tokenizer is the 1.0 baseline); throughput as MB/s, with
the ratio to tiktoken's GPT-2 encoder (Rust) measured in the same run.
"""

import labkit
from labkit import assets
from labkit.bench import best_seconds

LAB = "llm-engineer/phase-01-foundations-text/lab-01-tokenization-from-scratch"


def main() -> None:
    lab = labkit.load_impl(LAB, "solution")
    text = assets.shakespeare(max_chars=1_000_000)
    megabytes = len(text.encode("utf-8")) / 1e6
    lines = text.splitlines()
    tokenizers = {
        "whitespace": lab.WhitespaceTokenizer().train(lines),
        "regex (GPT-2)": lab.RegexTokenizer().train(lines),
        "byte-level": lab.ByteLevelTokenizer(),
        "tiktoken gpt2": assets.tiktoken_encoding("gpt2"),
        "tiktoken cl100k": assets.tiktoken_encoding("cl100k_base"),
    }
    # Time every tokenizer first, then report each against tiktoken's GPT-2 row from the same pass.
    seconds = {name: best_seconds(lambda tok=tok: tok.encode(text)) for name, tok in tokenizers.items()}
    baseline = seconds["tiktoken gpt2"]
    print(f"{megabytes:.2f} MB of Shakespeare, best of 3 runs; vocabularies trained on the same text")
    print(f"{'tokenizer':<17}{'tokens':>10}{'bytes/token':>13}{'MB/s':>9}{'vs tiktoken gpt2':>18}")
    for name, tok in tokenizers.items():
        stats = lab.compression(tok, text)
        print(f"{name:<17}{stats.n_tokens:>10,}{stats.bytes_per_token:>13.2f}{megabytes / seconds[name]:>9.1f}"
              f"{baseline / seconds[name]:>17.2f}x")


if __name__ == "__main__":
    main()
