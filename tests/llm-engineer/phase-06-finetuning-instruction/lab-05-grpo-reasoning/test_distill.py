"""Checks for the chain-of-thought distillation half of the GRPO lab. References: supervised targets and their
loss written out by hand (a per-token cross-entropy loop), an SFT loop written out in the test with its own batch
construction and torch's AdamW, rejection-sampling cases worked by hand and a brute-force filter over random
completions, and a learning outcome measured over seeds and CPU kernel sets."""
import random

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (the plugin's fixture)


def ids_of(impl, text):
    return [impl.STOI[ch] for ch in text]


# ------------------------------------------------------------------------------------------ sft-targets

@pytest.mark.task("sft-targets")
def test_sft_batch_by_hand(impl):
    ids, labels, attention = impl.sft_batch([("1+2+3=", "3+3=6"), ("9+9+9=", "27")])
    bos, eos, pad = impl.BOS_ID, impl.EOS_ID, impl.PAD_ID
    row0 = [bos] + ids_of(impl, "1+2+3=") + ids_of(impl, "3+3=6") + [eos]  # 13 tokens
    row1 = [bos] + ids_of(impl, "9+9+9=") + ids_of(impl, "27") + [eos] + [pad] * 3  # 10 tokens + 3 of padding
    assert ids.tolist() == [row0, row1], f"rows are <bos> prompt completion <eos>, right-padded: {ids.tolist()}"
    want0 = [-100] * 7 + ids_of(impl, "3+3=6") + [eos]
    want1 = [-100] * 7 + ids_of(impl, "27") + [eos] + [-100] * 3
    assert labels.tolist() == [want0, want1], \
        f"labels: -100 on <bos>, the prompt and padding; the completion and its <eos> as they are: {labels.tolist()}"
    assert attention.tolist() == [[1] * 13, [1] * 10 + [0] * 3], f"attention mask: {attention.tolist()}"


@pytest.mark.task("sft-targets")
def test_sft_loss_is_the_mean_cross_entropy_of_completion_tokens(impl):
    model = impl.tiny_policy(hidden=32, layers=1, seed=4).eval()
    pairs = [("4+4+1=", "8+1=9"), ("0+0+7=", "7"), ("9+8+7=", "17+7=24")]
    ids, labels, attention = impl.sft_batch(pairs)
    with torch.no_grad():
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss.item()
        terms = []  # each completion token and <eos>, scored from its own prefix alone (no padding anywhere)
        for prompt, completion in pairs:
            row = [impl.BOS_ID] + ids_of(impl, prompt + completion) + [impl.EOS_ID]
            logp = torch.log_softmax(model(input_ids=torch.tensor([row])).logits[0], -1)
            for t in range(1 + len(prompt), len(row)):
                terms.append(-logp[t - 1, row[t]].item())
    want = sum(terms) / len(terms)
    assert loss == pytest.approx(want, rel=1e-5), \
        f"loss on these labels should be the mean cross-entropy of the {len(terms)} completion tokens and <eos> " \
        f"({want:.6f}), got {loss:.6f}"
    with pytest.raises(ValueError):
        impl.sft_batch([])


# ------------------------------------------------------------------------------------------ distill-student

def sft_by_hand(impl, model, pairs, steps, lr, batch_size, seed):
    """The SFT loop written out: the same draws, rows and masks built here, cross-entropy on shifted logits."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        batch = [rng.choice(pairs) for _ in range(batch_size)]
        rows = [[impl.BOS_ID] + ids_of(impl, p + c) + [impl.EOS_ID] for p, c in batch]
        starts = [1 + len(p) for p, _ in batch]  # index of each row's first completion token
        width = max(map(len, rows))
        ids = torch.tensor([r + [impl.PAD_ID] * (width - len(r)) for r in rows])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = model(input_ids=ids, attention_mask=attention).logits  # (N, T, V)
        logp = torch.log_softmax(logits.float(), -1)
        total, count = 0.0, 0
        for i, r in enumerate(rows):
            for t in range(starts[i], len(r)):
                total = total - logp[i, t - 1, r[t]]
                count += 1
        loss = total / count
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.task("distill-student")
def test_sft_train_equals_a_loop_written_out(impl):
    pairs = [("1+2+3=", "3+3=6"), ("9+9+9=", "27"), ("0+5+2=", "5+2=7"), ("8+8+0=", "16"), ("2+2+2=", "4+2=6")]
    student = impl.tiny_policy(hidden=32, layers=1, seed=5)
    mirror = impl.tiny_policy(hidden=32, layers=1, seed=5)
    losses = impl.sft_train(student, pairs, steps=3, lr=1e-2, batch_size=4, seed=11)
    want = sft_by_hand(impl, mirror, pairs, steps=3, lr=1e-2, batch_size=4, seed=11)
    assert len(losses) == 3, f"one loss per step: got {len(losses)}"
    assert losses == pytest.approx(want, rel=1e-4), f"step losses: expected {want}, got {losses}"
    for (name, got), ref in zip(student.named_parameters(), mirror.parameters()):
        torch.testing.assert_close(got.detach(), ref.detach(), atol=1e-5, rtol=1e-4,
                                   msg=f"{name} after 3 AdamW steps differs from the loop written out")
    assert not student.training, "sft_train should leave the model in eval mode"


@pytest.mark.task("distill-student")
def test_student_learns_the_traces(impl):
    """Learning outcome: a hidden-32, one-layer student trained 300 SFT steps on the traces of the 800 training
    sums of make_triples(0) answers held-out sums it never saw.

    Measured held-out greedy accuracy (200 sums), student seeds 0-4 (seed 0 is this test):
      default  0.500 0.480 0.670 0.585 0.430
      avx2     0.500 0.485 0.670 0.585 0.430
    The same students untrained score 0.000-0.015. The bar, 0.25, sits 0.18 below the worst run and far above
    an untrained student.
    """
    train, held_out = impl.make_triples(0)
    pairs = [(impl.triple_prompt(p), impl.cot_text(p)) for p in train]
    student = impl.tiny_policy(hidden=32, layers=1, seed=0)
    untrained = impl.triple_accuracy(student, held_out)
    impl.sft_train(student, pairs, steps=300, seed=0)
    accuracy = impl.triple_accuracy(student, held_out)
    assert untrained < 0.05, f"fixture check: an untrained student should score near 0, got {untrained:.3f}"
    assert accuracy >= 0.25, f"held-out accuracy after 300 SFT steps on the traces: expected >= 0.25, " \
                             f"got {accuracy:.3f}"


# ------------------------------------------------------------------------------------------ rejection-sampling

@pytest.mark.task("rejection-sampling")
@pytest.mark.parametrize("problem,text,steps,expected", [
    ((3, 4, 5), "7+5=12", True, True),
    ((3, 4, 5), "12", True, True),  # no work shown: judged on the answer
    ((3, 4, 5), "7+5=13", True, False),  # right step, wrong answer
    ((3, 4, 5), "8+4=12", True, False),  # right answer, wrong step
    ((3, 4, 5), "8+4=12", False, True),  # ... which only the answer check lets through
    ((3, 4, 5), "6+6=12", True, False),  # true equation, but not this problem's partial sum
    ((3, 4, 5), "7+5=12=12", True, False),  # not of the form x+y=z
    ((3, 4, 5), "7+5=1", True, False),
    ((3, 4, 5), "", True, False),
    ((9, 9, 9), "18+9=27", True, True),
    ((0, 0, 0), "0+0=0", True, True),
])
def test_trace_is_valid_by_hand(impl, problem, text, steps, expected):
    got = impl.trace_is_valid(problem, text, check_steps=steps)
    assert got is expected or got == expected, \
        f"trace_is_valid({problem}, {text!r}, check_steps={steps}) should be {expected}, got {got}"


@pytest.mark.task("rejection-sampling")
def test_distill_set_by_hand(impl):
    rows = [(3, 4, 5)] * 4 + [(1, 1, 1)] * 3 + [(2, 0, 9)] * 2
    texts = ["7+5=12", "12", "7+5=12", "8+4=12",  # two distinct keepers, one duplicate, one wrong step
             "2+1=3", "2+1=4", "2+1=3",  # a wrong answer after a right step is never kept
             "2+9=11", "11"]  # (2, 0, 9) is held out: nothing of it may be kept
    kept, counts = impl.build_distill_set(rows, texts, held_out=[(2, 0, 9), (5, 5, 5)])
    want = [((3, 4, 5), "7+5=12"), ((3, 4, 5), "12"), ((1, 1, 1), "2+1=3")]
    assert kept == want, f"kept pairs, distinct, in order of first appearance: expected {want}, got {kept}"
    assert counts == {"sampled": 9, "held_out": 2, "verified": 5, "kept": 3, "problems": 2}, counts
    with pytest.raises(ValueError):
        impl.build_distill_set(rows, texts[:-1], held_out=[])


@pytest.mark.task("rejection-sampling")
def test_distill_set_matches_a_brute_force_filter(impl):
    """Random completions, right and wrong, for a mix of training and held-out sums: the kept set equals the one
    a brute-force filter builds, no held-out sum leaks, and no kept answer is wrong."""
    rng = random.Random(0)
    train, held_out = impl.make_triples(0, held_out=200)
    problems = train[:30] + held_out[:10]
    rows, texts = [], []
    for p in problems:
        a, b, c = p
        for _ in range(6):
            x, y = a + b + rng.choice([0, 0, 0, 1, -1]), c + rng.choice([0, 0, 0, 1])
            z = x + y + rng.choice([0, 0, 0, 1])
            texts.append(rng.choice([f"{x}+{y}={z}", str(z), f"{z}"]))
            rows.append(p)
    held = set(held_out)
    want, seen = [], set()
    for p, t in zip(rows, texts):
        a, b, c = p
        if p in held or (p, t) in seen:
            continue
        if "=" in t:
            x, rest = t.split("+")
            y, z = rest.split("=")
            ok = int(x) == a + b and int(y) == c and int(z) == a + b + c
        else:
            ok = int(t) == a + b + c
        if ok:
            seen.add((p, t))
            want.append((p, t))
    kept, counts = impl.build_distill_set(rows, texts, held_out)
    assert not {p for p, _ in kept} & held, "a held-out sum leaked into the distillation set"
    assert kept == want, f"expected {len(want)} pairs from a brute-force filter, got {len(kept)}: " \
                         f"extra {sorted(set(kept) - set(want))[:3]}, missing {sorted(set(want) - set(kept))[:3]}"
    assert counts["sampled"] == len(texts) and counts["held_out"] == 60 and counts["kept"] == len(want), counts
    assert len(want) > 10, "fixture check: some completions should survive"
