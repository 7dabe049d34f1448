"""Likelihood scoring on a tiny random Llama with SmolLM2's tokenizer: the context/continuation split against
lm-evaluation-harness's own `_encode_pair`, the summed log-probs against a one-request-at-a-time forward pass
written here and against lm-eval's HFLM, batches of every size against each other; then the acc / acc_norm /
acc_bytes choice rule on hand-worked numbers and against lm-eval's `process_results`."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [
    ("Answer:", " A"),
    ("Answer: ", "A"),                             # trailing space moves to the continuation
    ("Answer:\n\n", "B"),                          # several trailing whitespace characters move together
    ("The cat sat on the ma", "t"),                # the whole encodes 'mat' as one piece: cut after the context
    ("Question: 2+2?\nAnswer:", " 4, because two and two make four."),
    ("Un café, s'il vous plaît.", " Merci beaucoup !"),
]


@pytest.mark.task("encode")
def test_encode_pair_by_hand(impl, tokenizer):
    assert impl.encode_pair(tokenizer, "Answer: ", "A") == (tokenizer.encode("Answer:"), tokenizer.encode(" A"))
    assert impl.encode_pair(tokenizer, "Answer:", " A") == (tokenizer.encode("Answer:"), tokenizer.encode(" A"))


@pytest.mark.task("encode")
@pytest.mark.parametrize("context, continuation", PAIRS)
def test_encode_pair_equals_lm_eval(impl, tokenizer, hflm, context, continuation):
    expected = hflm._encode_pair(context, continuation)
    got = impl.encode_pair(tokenizer, context, continuation)
    assert tuple(map(list, got)) == tuple(map(list, expected)), f"{context!r} + {continuation!r}"


def reference_loglikelihood(model, context_ids, continuation_ids):
    """One request, no batching, no padding: sum over the continuation of log p(token | everything before)."""
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = F.log_softmax(model(ids).logits[0].double(), dim=-1)           # (T, V)
    total, greedy = 0.0, True
    for j, token in enumerate(continuation_ids):
        position = len(context_ids) + j - 1                                      # the position predicting it
        total += logprobs[position, token].item()
        greedy &= int(logprobs[position].argmax()) == token
    return total, greedy


def mixed_requests(tokenizer, tiny):
    """Different lengths, one context with four one-token choices (MMLU-like), one context with multi-token
    choices (HellaSwag-like), a duplicate, and one continuation that is the model's own greedy pick."""
    requests = [("Question: what is 2+2?\nA. 3\nB. 4\nAnswer:", f" {c}") for c in "ABCD"]
    requests += [("A man cracks eggs into a bowl. He", e) for e in (" whisks them.", " paints the wall blue.",
                                                                      " eats the bowl.", " whisks them quickly.")]
    requests += [("Hello", " world"), ("Answer:", " A"), ("Question: what is 2+2?\nA. 3\nB. 4\nAnswer:", " B")]
    context = "Once upon a time"
    ids = torch.tensor([tokenizer.encode(context)])
    with torch.no_grad():
        greedy_token = int(tiny(ids).logits[0, -1].argmax())
    greedy_text = tokenizer.decode([greedy_token])
    if tokenizer.encode(context + greedy_text)[len(ids[0]):] == [greedy_token]:
        requests.append((context, greedy_text))
    return requests


@pytest.mark.task("loglikelihood")
def test_loglikelihood_equals_one_at_a_time_reference(impl, tokenizer, tiny, hflm):
    requests = mixed_requests(tokenizer, tiny)
    got = impl.loglikelihoods(tiny, tokenizer, requests, batch_size=4)
    assert len(got) == len(requests)
    for (context, continuation), (value, greedy) in zip(requests, got):
        ctx_ids, cont_ids = hflm._encode_pair(context, continuation)
        expected, expected_greedy = reference_loglikelihood(tiny, ctx_ids, cont_ids)
        assert value == pytest.approx(expected, abs=2e-4), f"{context!r} + {continuation!r}"
        assert greedy == expected_greedy, f"is_greedy of {context!r} + {continuation!r}"
    assert any(greedy for _, greedy in got), "the request built from the greedy token should be greedy"


@pytest.mark.task("loglikelihood")
def test_loglikelihood_equals_lm_eval(impl, tokenizer, tiny, hflm):
    from lm_eval.api.instance import Instance

    requests = mixed_requests(tokenizer, tiny)
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    expected = hflm.loglikelihood(instances, disable_tqdm=True)
    got = impl.loglikelihoods(tiny, tokenizer, requests, batch_size=3)
    for request, (value, greedy), (ref, ref_greedy) in zip(requests, got, expected):
        assert value == pytest.approx(ref, abs=2e-4) and greedy == ref_greedy, request


@pytest.mark.task("loglikelihood")
@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_any_batch_size_gives_the_unbatched_answers(impl, tokenizer, tiny, batch_size):
    requests = mixed_requests(tokenizer, tiny)
    one = impl.loglikelihoods(tiny, tokenizer, requests, batch_size=1)
    got = impl.loglikelihoods(tiny, tokenizer, requests, batch_size=batch_size)
    np.testing.assert_allclose([v for v, _ in got], [v for v, _ in one], atol=2e-4,
                               err_msg=f"batch_size={batch_size} changed the scores (padding, positions or order)")
    assert [g for _, g in got] == [g for _, g in one]


@pytest.mark.task("loglikelihood")
def test_identical_inputs_share_one_forward_row(impl, tokenizer, tiny):
    rows = []
    hook = tiny.register_forward_hook(lambda module, args, kwargs_or_out: rows.append(
        (kwargs_or_out.logits.shape[0])), with_kwargs=False)
    try:
        context = "Question: which letter?\nA. x\nB. y\nC. z\nD. w\nAnswer:"
        got = impl.loglikelihoods(tiny, tokenizer, [(context, f" {c}") for c in "ABCD"], batch_size=8)
    finally:
        hook.remove()
    assert sum(rows) == 1, f"four one-token choices of one context need one row, {sum(rows)} were run"
    ids = torch.tensor([tokenizer.encode(context)])
    with torch.no_grad():
        last = F.log_softmax(tiny(ids).logits[0, -1].double(), dim=-1)
    expected = [last[tokenizer.encode(f" {c}")[0]].item() for c in "ABCD"]
    np.testing.assert_allclose([v for v, _ in got], expected, atol=2e-4)


@pytest.mark.task("loglikelihood")
def test_long_inputs_are_cut_from_the_left_like_lm_eval(impl, tokenizer, make_llama):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    short = make_llama(len(tokenizer), seed=1, max_positions=24, eos=tokenizer.eos_token_id)
    context = " ".join(f"word{i}" for i in range(40))          # far more than 24 tokens
    requests = [(context, " end of it"), ("short one", " here")]
    reference = HFLM(pretrained=short, tokenizer=tokenizer, batch_size=1, device="cpu", max_length=24)
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    expected = [v for v, _ in reference.loglikelihood(instances, disable_tqdm=True)]
    got = [v for v, _ in impl.loglikelihoods(short, tokenizer, requests, batch_size=2)]
    np.testing.assert_allclose(got, expected, atol=2e-4)


# ---------------------------------------------------------------- choosing

@pytest.mark.task("multiple-choice")
def test_choose_by_hand(impl):
    # sums -4, -6, -9: acc picks 0. Per character (1, 6, 9 chars): -4, -1, -1: a tie, the first (1) wins.
    assert impl.choose([-4.0, -6.0, -9.0], ["a", "bbbbbb", "ccccccccc"]) == (0, 1, 1)
    # A tie on the raw sums also goes to the first.
    assert impl.choose([-2.0, -2.0, -3.0], ["xx", "yy", "zz"])[0] == 0
    assert impl.choose([-3.0, -1.0, -1.0], ["x", "y", "z"])[0] == 1


@pytest.mark.task("multiple-choice")
def test_normalisation_counts_the_choice_without_its_delimiter(impl):
    # 2 and 4 characters: -1.5 vs -1.25 picks the longer; counting the leading space (3 and 5) would give
    # -1.0 vs -1.0, a tie that goes to the shorter.
    assert impl.choose([-3.0, -5.0], ["ab", "abcd"])[1] == 1


@pytest.mark.task("multiple-choice")
def test_characters_and_bytes_differ_for_accented_text(impl):
    # 'crème' is 5 characters but 6 UTF-8 bytes; 'creme!' is 6 and 6.
    # per character: -12/5 = -2.4 vs -12.5/6 = -2.083 -> 1; per byte: -12/6 = -2.0 vs -2.083 -> 0
    assert impl.choose([-12.0, -12.5], ["crème", "creme!"]) == (0, 1, 0)


@pytest.mark.task("multiple-choice")
def test_choose_equals_lm_evals_process_results(impl, lm_eval_task, read_rows):
    task = lm_eval_task("hellaswag", metric_list=[{"metric": m} for m in ("acc", "acc_norm", "acc_bytes")])
    rng = np.random.default_rng(0)
    for row, doc in zip(read_rows("hellaswag"), task.eval_docs):
        choices = task.doc_to_choice(doc)
        for _ in range(5):
            lls = (-rng.uniform(1, 3, size=4) * np.array([len(c) for c in choices]) / 4).tolist()
            expected = task.process_results(doc, [(v, False) for v in lls])
            pred, pred_norm, pred_bytes = impl.choose(lls, choices)
            gold = int(row["label"])
            got = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold),
                   "acc_bytes": float(pred_bytes == gold)}
            assert got == {k: expected[k] for k in got}, (row["doc_id"], lls)
