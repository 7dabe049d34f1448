"""Prompts and few-shot contexts: hand-written strings first, then lm-evaluation-harness's own rendering of the
same documents (a ConfigurableTask built from this lab's YAML configs), then properties of the shot picker."""
import pytest

MMLU_DOC = {"question": "  What is 2 + 3?\n", "answer_a": "4", "answer_b": "5", "answer_c": "6", "answer_d": "23",
            "correct_answer": "B", "topic": "elementary mathematics", "doc_id": 7}
HELLASWAG_DOC = {"activity_label": "Home and Garden", "ctx_a": "[header] How to dry herbs [title] Pick the herbs.",
                 "ctx_b": "", "endings": ["[step] Hang them  upside down.", "Eat them all.", "Boil the stems [title]",
                                          "Paint them."], "label": "2", "doc_id": 3}


@pytest.mark.task("prompts")
def test_mmlu_example_by_hand(impl):
    e = impl.make_example("mmlu", MMLU_DOC)
    assert e.question == "What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 23\nAnswer:", repr(e.question)
    assert e.description == "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
    assert (tuple(e.choices), e.gold, e.answer, e.doc_id, e.group) == (("A", "B", "C", "D"), 1, "B", 7,
                                                                        "elementary mathematics")


@pytest.mark.task("prompts")
def test_hellaswag_example_by_hand(impl):
    e = impl.make_example("hellaswag", HELLASWAG_DOC)
    # ctx_b is empty: "ctx_a " + "" leaves a trailing space that the clean-up strips; " [title]" becomes ". ",
    # other [tags] disappear, a double space becomes one. The strip comes first, so a tag at either end
    # leaves its space behind (lm-eval's order, kept for parity).
    assert e.question == "Home and Garden: How to dry herbs. Pick the herbs.", repr(e.question)
    assert tuple(e.choices) == (" Hang them upside down.", "Eat them all.", "Boil the stems. ", "Paint them.")
    assert e.gold == 2 and isinstance(e.gold, int), "the label is the string '2' in the data; gold is the int 2"
    assert e.answer == "Boil the stems. " and e.description == ""


@pytest.mark.task("prompts")
def test_hellaswag_capitalises_the_second_context_part(impl):
    doc = {"activity_label": "Cooking", "ctx_a": "A man cracks two eggs.", "ctx_b": "he WHISKS", "doc_id": 0,
           "endings": ["a", "b", "c", "d"], "label": "0"}
    assert impl.make_example("hellaswag", doc).question == "Cooking: A man cracks two eggs. He whisks"


@pytest.mark.task("prompts")
def test_gsm8k_example_by_hand(impl):
    doc = {"question": "Tom has 3 apples and buys 4. How many now?", "answer": "3 + 4 = 7\n#### 7", "doc_id": 11}
    e = impl.make_example("gsm8k", doc)
    assert e.question == "Question: Tom has 3 apples and buys 4. How many now?\nAnswer:"
    assert (e.answer, e.gold, tuple(e.choices), e.description) == ("3 + 4 = 7\n#### 7", "3 + 4 = 7\n#### 7", (), "")


@pytest.mark.task("prompts")
def test_prompts_equal_lm_evals_rendering_of_the_hellaswag_sample(impl, lm_eval_task, read_rows):
    task = lm_eval_task("hellaswag")
    for row, doc in zip(read_rows("hellaswag"), task.eval_docs):
        e = impl.make_example("hellaswag", row)
        assert e.description + e.question == task.fewshot_context(doc, 0), row["doc_id"]
        assert list(e.choices) == task.doc_to_choice(doc), row["doc_id"]
        assert e.gold == task.doc_to_target(doc), row["doc_id"]


@pytest.mark.task("prompts")
def test_prompts_equal_lm_evals_rendering_of_mmlu_across_subjects(impl, lm_eval_task, read_rows):
    task = lm_eval_task("mmlu")
    rows = read_rows("mmlu")
    docs = task.eval_docs
    for i in range(0, len(rows), 487):  # 29 rows spread over the subjects (the file is sorted by subject)
        if rows[i]["correct_answer"] == "answer":
            continue
        e = impl.make_example("mmlu", rows[i])
        assert e.description + e.question == task.fewshot_context(docs[i], 0), i
        assert list(e.choices) == task.doc_to_choice(docs[i])
        assert e.choices[e.gold] == task.doc_to_target(docs[i]), i


@pytest.mark.task("prompts")
def test_gsm8k_prompt_equals_lm_evals(impl, lm_eval_task, read_rows):
    task = lm_eval_task("gsm8k")
    for row, doc in zip(read_rows("gsm8k")[:5], task.eval_docs):
        assert impl.make_example("gsm8k", row).question == task.fewshot_context(doc, 0)


# ---------------------------------------------------------------- few-shot

def example(impl, doc_id, group="g", question=None, answer=None):
    return impl.Example(doc_id, "", question or f"q{doc_id}", answer or f"a{doc_id}", (), 0, group)


@pytest.mark.task("few-shot")
def test_context_layout_by_hand(impl):
    target = impl.Example(9, "About cats.\n\n", "Q: meow?\nAnswer:", "yes", (), 0, "cats")
    shots = [impl.Example(1, "About cats.\n\n", "Q: purr?\nAnswer:", "sometimes", (), 0, "cats"),
             impl.Example(2, "About cats.\n\n", "Q: bark?\nAnswer:", "no", (), 0, "cats")]
    expected = "About cats.\n\nQ: purr?\nAnswer: sometimes\n\nQ: bark?\nAnswer: no\n\nQ: meow?\nAnswer:"
    assert impl.build_context(target, shots) == expected
    assert impl.build_context(target, []) == "About cats.\n\nQ: meow?\nAnswer:"


@pytest.mark.task("few-shot")
def test_context_equals_lm_eval_with_its_first_n_sampler(impl, lm_eval_task, read_rows):
    # lm-eval with sampler first_n takes the first k documents of the few-shot split (here the evaluated split
    # itself, which it only filters when it is the test split); handed the same shots, the lab's context must
    # be the same string.
    task = lm_eval_task("hellaswag", fewshot_split="validation", fewshot_config={"sampler": "first_n"})
    examples = [impl.make_example("hellaswag", r) for r in read_rows("hellaswag")]
    docs = list(task.eval_docs)
    for i in (2, 5, 13):
        shots = examples[:2]
        assert impl.build_context(examples[i], shots) == task.fewshot_context(docs[i], 2), i


@pytest.mark.task("few-shot")
def test_shots_come_from_the_group_and_never_the_item_itself(impl):
    pool = [example(impl, i, "even" if i % 2 == 0 else "odd") for i in range(40)]
    for item in pool[:10]:
        shots = impl.pick_shots(item, pool, 5)
        assert len(shots) == 5 and len({s.doc_id for s in shots}) == 5
        assert all(s.group == item.group for s in shots), "shots must come from the item's own group"
        assert item.doc_id not in {s.doc_id for s in shots}, "an item must never be its own example (a leak)"


@pytest.mark.task("few-shot")
def test_shots_are_reproducible_and_independent_of_the_other_items(impl):
    pool = [example(impl, i) for i in range(50)]
    alone = [s.doc_id for s in impl.pick_shots(pool[7], pool, 3)]
    for other in pool[:20]:            # evaluating other items first must not change item 7's shots
        impl.pick_shots(other, pool, 3)
    assert [s.doc_id for s in impl.pick_shots(pool[7], pool, 3)] == alone
    assert [s.doc_id for s in impl.pick_shots(pool[7], pool, 3, seed=1234)] == alone, "the default seed is 1234"


@pytest.mark.task("few-shot")
def test_shots_vary_between_items_and_seeds(impl):
    pool = [example(impl, i) for i in range(60)]
    draws = {tuple(sorted(s.doc_id for s in impl.pick_shots(item, pool, 3))) for item in pool[:12]}
    assert len(draws) >= 10, f"12 items drew only {len(draws)} distinct shot sets: seed per item, not once"
    firsts = {tuple(s.doc_id for s in impl.pick_shots(pool[30], pool, 3, seed=s)) for s in range(8)}
    assert len(firsts) >= 7, "different seeds should give different shots"
    assert not all(set(d) <= {0, 1, 2, 3} for d in draws), "shots are drawn at random, not the first k"


@pytest.mark.task("few-shot")
def test_too_few_candidates_is_a_clear_error(impl):
    pool = [example(impl, i, "small") for i in range(3)] + [example(impl, i, "big") for i in range(3, 30)]
    assert len(impl.pick_shots(pool[0], pool, 2)) == 2       # exactly enough: the 2 others of its group
    with pytest.raises(impl.HarnessError, match="num-fewshot"):
        impl.pick_shots(pool[0], pool, 3)
