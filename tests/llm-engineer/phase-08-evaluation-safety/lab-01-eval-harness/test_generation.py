"""Generation and answer extraction: batched greedy completions against transformers' own `generate` run on one
prompt at a time (cut at the stops here), stop sequences by position, and GSM8K numbers by hand and against
lm-evaluation-harness's strict-match filter on the real reference solutions."""
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:",
           "Hi",
           "Question: what is 12 times 3?\nAnswer:",
           "The weather today is"]


def reference_completion(model, tokenizer, prompt, new_tokens, stops):
    """transformers' greedy generate on the prompt alone (no padding), the new tokens decoded, cut before the
    earliest stop sequence (by position in the text)."""
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                             pad_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
    cuts = [text.find(s) for s in [*stops, tokenizer.eos_token] if s and s in text]
    return text[:min(cuts)] if cuts else text


@pytest.fixture(scope="module")
def free_run(tiny, tokenizer):
    """The tiny model's greedy 24-token continuation of each prompt, with no stop sequence."""
    return [reference_completion(tiny, tokenizer, p, 24, []) for p in PROMPTS]


@pytest.mark.task("generate")
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_batched_greedy_equals_one_prompt_at_a_time(impl, tiny, tokenizer, free_run, batch_size):
    got = impl.generate_until(tiny, tokenizer, PROMPTS, stop=["@@@@"], max_new_tokens=24, batch_size=batch_size)
    assert got == free_run, f"batch_size={batch_size}: padding changed the completions (side, mask or slicing)"
    assert not any(c.startswith(p[:5]) for c, p in zip(got, PROMPTS)), "return the new text only, not the prompt"


@pytest.mark.task("generate")
def test_cut_before_the_earliest_stop_sequence(impl, tiny, tokenizer, free_run):
    first = free_run[0]
    assert len(first) > 30, "the tiny model should write enough text for this test"
    late, early = first[20:24], first[8:11]          # listed late-first: the cut must follow the text, not the list
    stops = [late, early]
    expected = [reference_completion(tiny, tokenizer, p, 24, stops) for p in PROMPTS]
    got = impl.generate_until(tiny, tokenizer, PROMPTS, stop=stops, max_new_tokens=24, batch_size=4)
    assert got == expected
    assert got[0] == first[:first.find(early)], "cut just before the earliest stop, the stop itself excluded"


@pytest.mark.task("generate")
def test_two_stops_ending_together_cut_at_the_one_that_starts_first(impl, tiny, tokenizer, free_run):
    # Both stops end at the same character, so generation halts with both in the text; the one listed second
    # starts earlier, and the cut must be there.
    first = free_run[0]
    start = next(i for i in range(6, 20) if first.find(first[i:i + 6]) == i and first.find(first[i + 3:i + 6]) == i + 3)
    longer, shorter = first[start:start + 6], first[start + 3:start + 6]
    got = impl.generate_until(tiny, tokenizer, PROMPTS[:1], stop=[shorter, longer], max_new_tokens=24, batch_size=1)
    assert got == [first[:start]], (shorter, longer, got)


@pytest.mark.task("generate")
def test_max_new_tokens_bounds_the_completion(impl, tiny, tokenizer):
    short = impl.generate_until(tiny, tokenizer, PROMPTS[:2], stop=["@@@@"], max_new_tokens=3, batch_size=2)
    long = impl.generate_until(tiny, tokenizer, PROMPTS[:2], stop=["@@@@"], max_new_tokens=12, batch_size=2)
    for a, b in zip(short, long):
        assert b.startswith(a) and len(tokenizer.encode(a)) <= 4 < len(tokenizer.encode(b))


# ---------------------------------------------------------------- extraction

@pytest.mark.task("extract")
@pytest.mark.parametrize("solution, gold", [
    ("Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 18", "18"),
    ("The total is 1,000 + 250 = 1,250\n#### 1,250", "1250"),
    ("He loses 7 dollars.\n#### -7", "-7"),
    ("Step one #### is not the end.\n#### 42", "42"),   # the final '####' line holds the answer
])
def test_gold_answer_by_hand(impl, solution, gold):
    assert impl.gsm8k_target(solution) == gold


@pytest.mark.task("extract")
def test_gold_without_its_marker_is_a_clear_error(impl):
    with pytest.raises(impl.HarnessError, match="####"):
        impl.gsm8k_target("She makes 18 dollars.")


@pytest.mark.task("extract")
@pytest.mark.parametrize("completion, answer", [
    ("3 + 4 = 7 apples.\n#### 7", "7"),
    ("#### 42\nbut maybe it is 43", "42"),             # the strict line wins over a later number
    ("First 5, then 12, and finally the answer is -3.", "-3"),   # no '####': the last number
    ("The answer is 1,000.", "1000"),
    ("It costs $18.00 in total.", "18"),
    ("She pours 2.5 litres.", "2.5"),
    ("I do not know.", None),
    ("", None),
    ("####  1,234", "1234"),
    ("He owes money.\n#### -12", "-12"),
    ("#### -12 dollars, not 30", "-12"),
])
def test_extract_answer_by_hand(impl, completion, answer):
    assert impl.extract_answer(completion) == answer


@pytest.mark.task("extract")
def test_gold_equals_lm_evals_strict_match_on_real_solutions(impl, read_rows):
    from lm_eval.filters.extraction import RegexFilter

    rows = read_rows("gsm8k")[:300]
    strict = RegexFilter(regex_pattern=r"#### (\-?[0-9\.\,]+)", group_select=0)
    extracted = strict.apply([[r["answer"]] for r in rows], rows)
    for row, (theirs,) in zip(rows, extracted):
        theirs = theirs.replace(",", "").replace("$", "").rstrip(".")      # lm-eval's regexes_to_ignore
        assert impl.gsm8k_target(row["answer"]) == theirs, row["answer"][-40:]
        assert impl.extract_answer(row["answer"]) == theirs, "a reference solution is its own best completion"
