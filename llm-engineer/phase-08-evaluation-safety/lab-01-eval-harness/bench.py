"""Items per second of this harness against lm-evaluation-harness, on the same model (SmolLM2-135M-Instruct, one
object shared by both) and the same items, side by side in one run; then what batching and the prediction cache
add. Prints ratios; asserts nothing about time.

Two views:
  scoring     the log-likelihood requests alone: lm-eval's HFLM.loglikelihood vs this lab's loglikelihoods(),
              on the same (context, continuation) pairs (the prompts are equal: the tests check it)
  end to end  lm_eval.simple_evaluate(...) vs evaluate_task(...): task set-up, data, prompts, scoring, metrics

    python bench.py                          (8 MMLU + 8 HellaSwag items, best of 2 after a warm-up)
    python bench.py --mmlu 32 --hellaswag 20 --repeats 3
"""
from __future__ import annotations

import argparse
import tempfile
import time

import lm_eval
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

import labkit

lab = labkit.load_impl("llm-engineer/phase-08-evaluation-safety/lab-01-eval-harness", "solution")


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: tokenizer caches, the datasets arrow cache, first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_task(lm, task: str, n: int, repeats: int) -> None:
    examples = lab.task_examples(task, n)[0]
    requests = [(lab.build_context(e, []), lab.TARGET_DELIMITER + c) for e in examples for c in e.choices]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    hflm = {b: HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=b, device="cpu") for b in (1, 8)}
    config = lab.lm_eval_config(task)
    ids = sorted(e.doc_id for e in examples)
    folder = tempfile.mkdtemp(prefix="eval-cache-")
    lab.evaluate_task(lm, task, n, batch_size=8, cache=lab.PredictionCache(folder, lm.model_id), progress=False)

    def end_to_end_lm_eval():
        lm_eval.simple_evaluate(model=hflm[1], tasks=[dict(config)], samples={config["task"]: ids},
                                log_samples=False, bootstrap_iters=0, verbosity="ERROR")

    rows = {
        "scoring: lm-eval HFLM, batch 1 (its default)": lambda: hflm[1].loglikelihood(instances, disable_tqdm=True),
        "scoring: lm-eval HFLM, batch 8": lambda: hflm[8].loglikelihood(instances, disable_tqdm=True),
        "scoring: this harness, batch 1": lambda: lab.loglikelihoods(lm.model, lm.tokenizer, requests, 1),
        "scoring: this harness, batch 8": lambda: lab.loglikelihoods(lm.model, lm.tokenizer, requests, 8),
        "end to end: lm_eval.simple_evaluate, batch 1": end_to_end_lm_eval,
        "end to end: evaluate_task, batch 8, no cache": lambda: lab.evaluate_task(lm, task, n, batch_size=8,
                                                                                  progress=False),
        "end to end: evaluate_task, batch 8, warm cache": lambda: lab.evaluate_task(
            lm, task, n, batch_size=8, cache=lab.PredictionCache(folder, lm.model_id), progress=False),
    }
    speed = {name: n / best_of(fn, repeats) for name, fn in rows.items()}
    base = speed["scoring: lm-eval HFLM, batch 1 (its default)"]
    for name, value in speed.items():
        print(f"{task:<10}{name:<50}{value:>9.2f}{value / base:>12.2f}x")
    ratio = lambda a, b: speed[a] / speed[b]  # noqa: E731
    print(f"{task:<10}this harness vs lm-eval, scoring at batch 1: "
          f"{ratio('scoring: this harness, batch 1', 'scoring: lm-eval HFLM, batch 1 (its default)'):.2f}x, "
          f"at batch 8: {ratio('scoring: this harness, batch 8', 'scoring: lm-eval HFLM, batch 8'):.2f}x, "
          f"end to end: {ratio('end to end: evaluate_task, batch 8, no cache', 'end to end: lm_eval.simple_evaluate, batch 1'):.2f}x")
    print(f"{task:<10}batching in this harness (8 vs 1): "
          f"{ratio('scoring: this harness, batch 8', 'scoring: this harness, batch 1'):.2f}x; warm cache vs none: "
          f"{ratio('end to end: evaluate_task, batch 8, warm cache', 'end to end: evaluate_task, batch 8, no cache'):.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mmlu", type=int, default=8)
    parser.add_argument("--hellaswag", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both harnesses")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = lab.load_model("smollm2", "cpu")
    print(f"SmolLM2-135M-Instruct on CPU, {torch.get_num_threads()} thread(s), float32, zero-shot, "
          f"best of {args.repeats} after a warm-up; items/s and the ratio to lm-eval's scoring at batch 1")
    print(f"{'task':<10}{'what':<50}{'items/s':>9}{'ratio':>13}")
    for task, n in (("mmlu", args.mmlu), ("hellaswag", args.hellaswag)):
        if n > 0:
            bench_task(lm, task, n, args.repeats)


if __name__ == "__main__":
    main()
