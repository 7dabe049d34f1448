"""Lab 02: LLM-as-judge with bias controls, Cohen's kappa, Elo and Bradley-Terry ratings with bootstrap intervals.

What you build, one idea per function:
  a judge's reply -> "A" | "B" | "tie" (or a one-line error when it says something else)
  -> swap-position averaging: ask (a, b) and (b, a), score a as the mean of both; a verdict that flips counts 0.5
  -> bias measurements: how often slot A wins, how often the longer answer wins between answers of equal quality
  -> agreement with reference labels: Cohen's kappa and a Wilson interval on the raw agreement
  -> Elo (online, K-factor, order dependent) and Bradley-Terry (maximum likelihood by the MM algorithm) ratings,
     with bootstrap intervals over matches
  -> a real judge: SmolLM2-135M-Instruct reads the judging prompt through its chat template and the verdict is
     the sign of log p("A") - log p("B") for its first reply token (no sampling, so it is deterministic).

The candidate "models" answer arithmetic questions, so every pair has an exact reference label. Scripted judges
with one bias each (always slot A, the longer answer, its own style) show each bias measured and then removed.

Run it:  python solution.py                 (scripted judges, ratings, then SmolLM2 as the judge on 12 questions)
         python solution.py --questions 40  (more questions; the SmolLM2 part costs about 1 s per question)
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
import torch

import labkit
from labkit import assets

VERDICT_SCORE = {"A": 1.0, "tie": 0.5, "B": 0.0}  # the score of the answer in slot A
Judge = Callable[[str, str, str], str]  # judge(question, answer in slot A, answer in slot B) -> reply text
Match = tuple[str, str, float]  # (model i, model j, score of i: 1 win, 0.5 tie, 0 loss)


# ---------------------------------------------------------------- verdicts and swap averaging

def parse_verdict(reply: str) -> str:
    """"A", "B" or "tie" from a judge's reply such as "A", "b.", "[[B]]", "Verdict: tie", "A - it is correct".
    Anything else raises ValueError with a one-line message that quotes the reply."""
    # BEGIN SOLUTION [parse-verdict] Strip brackets, quotes, asterisks and an optional "verdict:"; the first word must be a, b or tie.
    match = re.match(r"^[\s\[(*\"']*(?:verdict\s*[:=]?\s*)?[\[(*\"']*(a|b|tie)(?![a-z0-9])", reply, re.IGNORECASE)
    if match is None:
        raise ValueError(f"judge reply {reply[:60]!r} is not a verdict: it must start with A, B or tie")
    word = match.group(1).lower()
    return "tie" if word == "tie" else word.upper()
    # END SOLUTION


def swap_score(judge: Judge, question: str, a: str, b: str) -> float:
    """Score of answer a against b, averaged over both slot orders: 1 (a wins in both), 0 (b wins in both),
    0.5 (a verdict that flips with the order, or two ties), 0.75 / 0.25 (one win and one tie)."""
    # BEGIN SOLUTION [swap] Judge (a, b) and (b, a); in the second call a sits in slot B, so its score is 1 - that verdict's.
    a_first = VERDICT_SCORE[parse_verdict(judge(question, a, b))]
    a_second = 1.0 - VERDICT_SCORE[parse_verdict(judge(question, b, a))]
    return (a_first + a_second) / 2
    # END SOLUTION


def score_to_verdict(score: float) -> str:
    return "A" if score > 0.5 else "B" if score < 0.5 else "tie"


# ---------------------------------------------------------------- bias measurements

def first_slot_win_rate(verdicts: Sequence[str]) -> float:
    """Among decisive verdicts (ties left out), the fraction won by slot A. An unbiased judge on pairs shown in a
    random order gives about 0.5."""
    # BEGIN SOLUTION [bias] Count "A" over the verdicts that are not ties; none decisive is a ValueError.
    decisive = [v for v in verdicts if v != "tie"]
    if not decisive:
        raise ValueError("no decisive verdicts (all ties): the first-slot win rate is undefined")
    return sum(v == "A" for v in decisive) / len(decisive)
    # END SOLUTION


def longer_win_rate(pairs: Sequence[tuple[str, str, str]]) -> float:
    """pairs: (answer in slot A, answer in slot B, verdict), all of equal quality. Among pairs whose lengths differ
    and whose verdict is decisive, the fraction won by the longer answer (0.5 for a judge without length bias)."""
    # BEGIN SOLUTION [bias] Skip equal lengths and ties; the longer answer won when the verdict names its slot.
    counted = wins = 0
    for a, b, verdict in pairs:
        if len(a) == len(b) or verdict == "tie":
            continue
        counted += 1
        wins += (verdict == "A") == (len(a) > len(b))
    if counted == 0:
        raise ValueError("no decisive pairs of different lengths: the longer-answer win rate is undefined")
    return wins / counted
    # END SOLUTION


# ---------------------------------------------------------------- agreement with reference labels

def cohen_kappa(rater1: Sequence[str], rater2: Sequence[str]) -> float:
    """Cohen's kappa = (p_o - p_e) / (1 - p_e): p_o the observed agreement, p_e the agreement expected by chance
    from each rater's own label frequencies (sum over labels of p1(label) * p2(label))."""
    if len(rater1) != len(rater2) or not rater1:
        raise ValueError(f"kappa needs two label lists of the same non-zero length, got {len(rater1)} and {len(rater2)}")
    # BEGIN SOLUTION [kappa] Observed agreement, then chance agreement from the product of the two raters' marginals.
    n = len(rater1)
    observed = sum(x == y for x, y in zip(rater1, rater2)) / n
    labels = set(rater1) | set(rater2)
    expected = sum((list(rater1).count(c) / n) * (list(rater2).count(c) / n) for c in labels)
    if expected == 1.0:
        return 1.0  # both raters used one and the same label throughout
    return (observed - expected) / (1 - expected)
    # END SOLUTION


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: centre (p + z²/2n) / (1 + z²/n), half-width
    z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got successes={successes}, n={n}")
    # BEGIN SOLUTION [kappa] z from the normal quantile of (1 + confidence) / 2, then the Wilson centre and half-width.
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
    # END SOLUTION


# ---------------------------------------------------------------- ratings

def elo_ratings(matches: Sequence[Match], models: Sequence[str], k: float = 32.0,
                initial: float = 1000.0) -> dict[str, float]:
    """Online Elo, one match at a time in the given order: E_i = 1 / (1 + 10^((R_j - R_i) / 400)),
    R_i += K (S_i - E_i) and R_j -= the same amount (zero-sum). A different order gives different ratings."""
    ratings = {m: initial for m in models}
    # BEGIN SOLUTION [elo] Both expectations come from the ratings before this match; move i and j by opposite amounts.
    for i, j, score in matches:
        expected = 1.0 / (1.0 + 10 ** ((ratings[j] - ratings[i]) / 400))
        delta = k * (score - expected)
        ratings[i] += delta
        ratings[j] -= delta
    # END SOLUTION
    return ratings


def bradley_terry(matches: Sequence[Match], models: Sequence[str], iterations: int = 10_000,
                  tol: float = 1e-10) -> dict[str, float]:
    """Bradley-Terry strengths θ (natural-log scale, mean 0): P(i beats j) = 1 / (1 + exp(θ_j - θ_i)), fitted by
    maximum likelihood with Hunter's MM algorithm, a tie counting as half a win for each side:
        p_i <- W_i / sum_j n_ij / (p_i + p_j),   W_i = wins of i, n_ij = matches between i and j (both orders)."""
    index = {m: n for n, m in enumerate(models)}
    wins = np.zeros(len(models))
    games = np.zeros((len(models), len(models)))
    # BEGIN SOLUTION [bradley-terry] Count wins (ties as halves) and symmetric game counts, iterate the MM update, centre log p.
    for i, j, score in matches:
        wins[index[i]] += score
        wins[index[j]] += 1.0 - score
        games[index[i], index[j]] += 1
        games[index[j], index[i]] += 1
    for name, w in zip(models, wins):
        if w <= 0 or w >= games[index[name]].sum():
            raise ValueError(f"model {name!r} wins all or none of its matches: its Bradley-Terry strength is infinite; "
                             "add matches (or a prior) before fitting")
    p = np.ones(len(models))
    for _ in range(iterations):
        updated = wins / (games / (p[:, None] + p[None, :])).sum(axis=1)
        updated /= np.exp(np.log(updated).mean())  # fix the scale: geometric mean 1
        done = np.abs(updated - p).max() < tol
        p = updated
        if done:
            break
    theta = np.log(p)
    return {m: float(t) for m, t in zip(models, theta - theta.mean())}
    # END SOLUTION


def to_elo_scale(theta: dict[str, float], centre: float = 1000.0) -> dict[str, float]:
    """Bradley-Terry strengths on Elo's scale: 400 points = a factor 10 in odds."""
    return {m: centre + 400 / math.log(10) * t for m, t in theta.items()}


def bootstrap_ratings(matches: Sequence[Match], fit: Callable[[Sequence[Match]], dict[str, float]],
                      n_boot: int = 200, confidence: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over matches: resample len(matches) matches with replacement n_boot times, refit, and
    take each model's (1 - confidence)/2 and (1 + confidence)/2 quantiles. Resamples the fit refuses are skipped."""
    rng = np.random.default_rng(seed)
    # BEGIN SOLUTION [bootstrap] Draw indices with replacement, refit on each resample, then per-model percentiles.
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = rng.integers(0, len(matches), size=len(matches))
        try:
            ratings = fit([matches[n] for n in picked])
        except ValueError:
            continue
        for model, value in ratings.items():
            samples.setdefault(model, []).append(value)
    tail = (1 - confidence) / 2 * 100
    return {m: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for m, v in samples.items()}
    # END SOLUTION


# ---------------------------------------------------------------- a real judge: SmolLM2 by log-probabilities

JUDGE_INSTRUCTIONS = ("You are an impartial judge. Read the question and the two answers, decide which answer is "
                      "correct, and reply with a single letter: A or B.")


def judge_messages(question: str, first: str, second: str) -> list[dict]:
    """The chat a judging model reads: its instructions, then the question and both answers."""
    return [{"role": "system", "content": JUDGE_INSTRUCTIONS},
            {"role": "user", "content": f"Question: {question}\n\nAnswer A: {first}\n\nAnswer B: {second}\n\n"
                                        "Which answer is correct? Reply A or B."}]


class LogprobJudge:
    """judge(question, first, second) -> "A" | "B": the sign of log p("A") - log p("B") for the model's first reply
    token after the chat template's assistant header. Deterministic and one forward pass per judgement."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.letters = [tokenizer.convert_tokens_to_ids(letter) for letter in ("A", "B")]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in self.letters:
            raise ValueError("the tokenizer has no single token for 'A' or 'B': pick other verdict tokens")

    @torch.no_grad()
    def margins(self, items: Sequence[tuple[str, str, str]]) -> list[float]:
        """log p("A") - log p("B") for each (question, first, second), in one left-padded batch."""
        # BEGIN SOLUTION [logprob-judge] Render each chat with the generation prompt, left-pad, read the last position's log-softmax.
        texts = [self.tokenizer.apply_chat_template(judge_messages(*item), tokenize=False, add_generation_prompt=True)
                 for item in items]
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        logits = self.model(**batch.to(self.model.device)).logits[:, -1, :].float()  # (batch, vocab)
        logp = torch.log_softmax(logits, dim=-1)
        return (logp[:, self.letters[0]] - logp[:, self.letters[1]]).tolist()
        # END SOLUTION

    def __call__(self, question: str, first: str, second: str) -> str:
        margin = self.margins([(question, first, second)])[0]
        return "A" if margin > 0 else "B" if margin < 0 else "tie"


class CachedJudge:
    """Wraps a LogprobJudge: judges a whole list of (question, first, second) in batches, then answers from cache."""

    def __init__(self, judge: LogprobJudge, batch_size: int = 8):
        self.judge, self.batch_size, self.cache = judge, batch_size, {}

    def prefill(self, items: Sequence[tuple[str, str, str]]) -> None:
        todo = [item for item in dict.fromkeys(items) if item not in self.cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for item, margin in zip(chunk, self.judge.margins(chunk)):
                self.cache[item] = margin

    def __call__(self, question: str, first: str, second: str) -> str:
        item = (question, first, second)
        if item not in self.cache:
            self.prefill([item])
        margin = self.cache[item]
        return "A" if margin > 0 else "B" if margin < 0 else "tie"


# ---------------------------------------------------------------- data: candidate models with exact ground truth

PADDING = ("Let me think about this carefully and go through it step by step, checking each digit twice. "
           "After working it out, ")
SELF_STYLE = "Certainly! "


def make_questions(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    questions = []
    for _ in range(n):
        x, y = rng.randint(10, 99), rng.randint(10, 99)
        questions.append((f"What is {x} + {y}?", x + y))
    return questions


# name -> (probability of a correct answer, style): the answer set of a candidate "model"
CANDIDATES = {"careful": (0.9, "plain"), "verbose": (0.5, "padded"), "hasty": (0.5, "plain"),
              "sloppy": (0.2, "plain"), "judge-kin": (0.5, "self")}


def candidate_answers(questions: Sequence[tuple[str, int]], seed: int = 0) -> dict[str, list[tuple[str, bool]]]:
    """Each candidate's (answer text, is it correct) for every question; wrong answers are off by 1 to 9."""
    rng = random.Random(seed)
    answers: dict[str, list[tuple[str, bool]]] = {}
    for name, (p_correct, style) in CANDIDATES.items():
        rows = []
        for _question, truth in questions:
            correct = rng.random() < p_correct
            value = truth if correct else truth + rng.choice([-1, 1]) * rng.randint(1, 9)
            text = f"The answer is {value}."
            if style == "padded":
                text = PADDING + text[0].lower() + text[1:]
            elif style == "self":
                text = SELF_STYLE + text
            rows.append((text, correct))
        answers[name] = rows
    return answers


def reference_verdict(correct_a: bool, correct_b: bool) -> str:
    return "A" if correct_a and not correct_b else "B" if correct_b and not correct_a else "tie"


# ---------------------------------------------------------------- scripted judges, one bias each

def _answer_is_right(question: str, answer: str) -> bool:
    x, y = map(int, re.findall(r"\d+", question))
    numbers = re.findall(r"-?\d+", answer)
    return bool(numbers) and int(numbers[-1]) == x + y


def _coin(*parts: str) -> float:
    """A deterministic uniform number in [0, 1) per input, so scripted judges repeat their verdicts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def oracle_judge(question: str, first: str, second: str) -> str:
    return reference_verdict(_answer_is_right(question, first), _answer_is_right(question, second))


def position_biased_judge(question: str, first: str, second: str, p_first: float = 0.25) -> str:
    """Picks slot A whenever the answers are of equal quality, and with probability p_first otherwise."""
    verdict = oracle_judge(question, first, second)
    return "A" if verdict == "tie" or _coin(question, first, second) < p_first else verdict


def length_biased_judge(question: str, first: str, second: str) -> str:
    """Prefers the longer answer whenever the lengths differ by more than 20 characters; otherwise judges correctly."""
    if abs(len(first) - len(second)) > 20:
        return "A" if len(first) > len(second) else "B"
    return oracle_judge(question, first, second)


def self_preferring_judge(question: str, first: str, second: str) -> str:
    """Prefers an answer written in its own style (the "Certainly!" opener) over one that is not."""
    mine = first.startswith(SELF_STYLE), second.startswith(SELF_STYLE)
    if mine[0] != mine[1]:
        return "A" if mine[0] else "B"
    return oracle_judge(question, first, second)


def normalise_answer(answer: str) -> str:
    """The length control: judge only the final claim ("The answer is n."), dropping preambles and padding."""
    claims = re.findall(r"answer is\s*-?\d+", answer, re.IGNORECASE)
    return f"The {claims[-1].lower()}." if claims else answer.strip()


def normalised(judge: Judge) -> Judge:
    return lambda question, first, second: judge(question, normalise_answer(first), normalise_answer(second))


def panel(*judges: Judge) -> Judge:
    """The self-preference control: a majority of judges from different families (a tie when none has a majority)."""
    def vote(question: str, first: str, second: str) -> str:
        verdicts = [parse_verdict(j(question, first, second)) for j in judges]
        a, b = verdicts.count("A"), verdicts.count("B")
        return "A" if a > len(judges) / 2 else "B" if b > len(judges) / 2 else "tie"
    return vote


# ---------------------------------------------------------------- running a tournament

def tournament(judge: Judge, questions, answers, models: Sequence[str], swap: bool = True,
               seed: int = 0) -> list[tuple[str, str, float, str, str, str]]:
    """Every pair of models on every question. Rows: (model i, model j, score of i, raw verdict, slot-A answer,
    slot-B answer). Without swap the pair is shown once, in a random order; with swap both orders are averaged."""
    rng = random.Random(seed)
    rows = []
    for q, (question, _truth) in enumerate(questions):
        for i, j in itertools.combinations(models, 2):
            a, b = answers[i][q][0], answers[j][q][0]
            if swap:
                rows.append((i, j, swap_score(judge, question, a, b), "", a, b))
                continue
            if rng.random() < 0.5:  # show j first
                verdict = parse_verdict(judge(question, b, a))
                rows.append((i, j, 1.0 - VERDICT_SCORE[verdict], verdict, b, a))
            else:
                verdict = parse_verdict(judge(question, a, b))
                rows.append((i, j, VERDICT_SCORE[verdict], verdict, a, b))
    return rows


def references(questions, answers, models) -> list[str]:
    return [reference_verdict(answers[i][q][1], answers[j][q][1])
            for q in range(len(questions)) for i, j in itertools.combinations(models, 2)]


def report_judge(name: str, judge: Judge, questions, answers, models) -> None:
    raw = tournament(judge, questions, answers, models, swap=False)
    swapped = tournament(judge, questions, answers, models, swap=True)
    reference = references(questions, answers, models)
    raw_labels = [score_to_verdict(s) for _, _, s, *_ in raw]
    swap_labels = [score_to_verdict(s) for _, _, s, *_ in swapped]
    # every pair in both orders, one verdict each: slot A's share of the decisive ones (0.5 without position bias)
    both_orders = []
    for q, (question, _truth) in enumerate(questions):
        for i, j in itertools.combinations(models, 2):
            a, b = answers[i][q][0], answers[j][q][0]
            both_orders += [parse_verdict(judge(question, a, b)), parse_verdict(judge(question, b, a))]
    halves = sum(s == 0.5 for _, _, s, *_ in swapped)
    agree_swap = sum(x == y for x, y in zip(swap_labels, reference))
    low, high = wilson_interval(agree_swap, len(reference))
    print(f"  {name:<10} slot A wins {first_slot_win_rate(both_orders):.2f} (swap-averaged: 0.50 by construction) | "
          f"kappa one order {cohen_kappa(raw_labels, reference):+.2f} -> swapped {cohen_kappa(swap_labels, reference):+.2f} | "
          f"agreement {agree_swap / len(reference):.2f} (95% CI {low:.2f}-{high:.2f}); {halves}/{len(swapped)} pairs scored 0.5")


def equal_quality_pairs(judge: Judge, questions, answers, long_model: str, short_model: str):
    pairs = []
    for q, (question, _truth) in enumerate(questions):
        (a, ok_a), (b, ok_b) = answers[long_model][q], answers[short_model][q]
        if ok_a == ok_b:
            for first, second in ((a, b), (b, a)):
                pairs.append((first, second, parse_verdict(judge(question, first, second))))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=60, help="arithmetic questions for the scripted judges")
    parser.add_argument("--model-questions", type=int, default=12, help="questions SmolLM2 judges (0 skips it)")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples")
    args = parser.parse_args(argv)
    labkit.seed_everything(0)
    questions = make_questions(args.questions)
    answers = candidate_answers(questions)
    models = ["careful", "hasty", "sloppy"]
    print(f"{len(questions)} questions; accuracy per candidate: " + ", ".join(
        f"{m} {np.mean([ok for _, ok in answers[m]]):.2f}" for m in CANDIDATES))

    print("\nposition bias (careful / hasty / sloppy, every pair on every question):")
    report_judge("oracle", oracle_judge, questions, answers, models)
    report_judge("slot-A", position_biased_judge, questions, answers, models)

    print("\nlength bias (verbose vs hasty: same accuracy, verbose pads its answers):")
    for name, judge in (("length-biased", length_biased_judge), ("  + normalised answers", normalised(length_biased_judge)),
                        ("oracle", oracle_judge)):
        pairs = equal_quality_pairs(judge, questions, answers, "verbose", "hasty")
        try:
            shown = f"{longer_win_rate(pairs):.2f} of decisive equal-quality pairs"
        except ValueError:
            shown = "- (every equal-quality pair judged a tie)"
        print(f"  {name:<24} longer answer wins {shown}")
    for name, judge in (("length-biased", length_biased_judge), ("  + normalised answers", normalised(length_biased_judge))):
        rows = tournament(judge, questions, answers, ["careful", "verbose", "hasty"])
        print(f"  {name:<24} kappa vs reference {cohen_kappa([score_to_verdict(s) for _, _, s, *_ in rows], references(questions, answers, ['careful', 'verbose', 'hasty'])):+.2f}")

    print("\nself-preference (judge-kin writes in the self-preferring judge's style):")
    trio = ["careful", "hasty", "judge-kin"]
    for name, judge in (("self-preferring", self_preferring_judge),
                        ("panel (self, oracle, length)", panel(self_preferring_judge, oracle_judge, length_biased_judge)),
                        ("oracle", oracle_judge)):
        rows = tournament(judge, questions, answers, trio)
        kin = [s if i == "judge-kin" else 1 - s for i, j, s, *_ in rows if "judge-kin" in (i, j)]
        print(f"  {name:<30} judge-kin's mean score {np.mean(kin):.2f}")

    print("\nratings from the oracle judge, swap-averaged (careful, hasty, sloppy, verbose):")
    four = ["careful", "hasty", "sloppy", "verbose"]
    matches = [(i, j, s) for i, j, s, *_ in tournament(oracle_judge, questions, answers, four)]
    elo = elo_ratings(matches, four)
    bt = to_elo_scale(bradley_terry(matches, four))
    elo_ci = bootstrap_ratings(matches, lambda ms: elo_ratings(ms, four), n_boot=args.boot)
    bt_ci = bootstrap_ratings(matches, lambda ms: to_elo_scale(bradley_terry(ms, four)), n_boot=args.boot)
    for m in sorted(four, key=bt.get, reverse=True):
        print(f"  {m:<8} Elo {elo[m]:7.1f} ({elo_ci[m][0]:.0f}-{elo_ci[m][1]:.0f})   "
              f"BT {bt[m]:7.1f} ({bt_ci[m][0]:.0f}-{bt_ci[m][1]:.0f})")
    orders = []
    for seed in range(5):
        shuffled = list(matches)
        random.Random(seed).shuffle(shuffled)
        orders.append(elo_ratings(shuffled, four)["careful"])
    print(f"  Elo depends on match order: 'careful' over 5 shuffles {min(orders):.1f}-{max(orders):.1f}; "
          f"Bradley-Terry does not (one likelihood)")

    if args.model_questions:
        print(f"\nSmolLM2-135M-Instruct as the judge (log p(A) - log p(B)) on {args.model_questions} questions:")
        model, tokenizer = assets.smollm2()
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        small = questions[: args.model_questions]
        judge = CachedJudge(LogprobJudge(model, tokenizer))
        items = [(q, answers[i][n][0], answers[j][n][0]) for n, (q, _) in enumerate(small)
                 for i, j in itertools.permutations(models, 2)]
        started = time.perf_counter()
        judge.prefill(items)
        print(f"  {len(items)} judgements in {time.perf_counter() - started:.1f} s")
        report_judge("SmolLM2", judge, small, answers, models)
        # A softer control: average the margins of both orders, m(a, b) - m(b, a), so a constant pull towards
        # slot A cancels and whatever preference for the right answer is left decides.
        hits = total = 0
        for n, (question, _truth) in enumerate(small):
            for i, j in itertools.combinations(models, 2):
                (a, ok_a), (b, ok_b) = answers[i][n], answers[j][n]
                if ok_a == ok_b:
                    continue
                averaged = judge.cache[(question, a, b)] - judge.cache[(question, b, a)]
                hits += (averaged > 0) == ok_a
                total += 1
        if total:
            low, high = wilson_interval(hits, total)
            print(f"  margin averaged over both orders picks the correct answer in {hits}/{total} pairs with one "
                  f"correct answer ({hits / total:.2f}, 95% CI {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    labkit.run(main)
