"""HumanEval programs judged by the problems' own tests and reference solutions (run in-process: they are trusted
code), stop sequences by hand, and sampling against transformers' own greedy decoding."""
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from labkit import assets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problems(impl):
    return impl.load_humaneval()


def run_trusted(program: str) -> None:
    exec(compile(program, "<humaneval>", "exec"), {"__name__": "__main__"})


@pytest.mark.task("program")
def test_reference_solutions_pass_their_tests(impl, problems):
    assert len(problems) == 164
    for problem in problems[:40]:
        run_trusted(impl.humaneval_program(problem, problem["canonical_solution"]))


@pytest.mark.task("program")
def test_a_wrong_body_fails_the_tests(impl, problems):
    failures = 0
    for problem in problems[:20]:
        program = impl.humaneval_program(problem, "    return None\n")
        try:
            run_trusted(program)
        except Exception:  # an assertion, or a TypeError from computing with None
            failures += 1
    assert failures >= 18, f"'return None' should fail nearly every problem's tests; it failed {failures}/20"


@pytest.mark.task("program")
def test_the_check_is_called_on_the_entry_point(impl, problems):
    problem = problems[0]
    program = impl.humaneval_program(problem, problem["canonical_solution"])
    assert program.startswith(problem["prompt"]) and program.rstrip().endswith(f"check({problem['entry_point']})")
    with pytest.raises(ValueError, match="empty"):
        impl.humaneval_program(problem, "  \n")


@pytest.mark.task("clean-completion")
def test_cut_at_the_earliest_stop(impl):
    body = "    return x + 1\n"
    assert impl.truncate_completion(body + "\ndef helper():\n    pass\n") == body
    assert impl.truncate_completion(body + "\nprint(f(2))\n# done\n") == body
    # "\n#" starts at the body's own last newline, so that newline goes too
    assert impl.truncate_completion(body + "# note\n\nif __name__ == '__main__':\n    f()\ndef g(): pass") == body[:-1]
    assert impl.truncate_completion(body) == body
    assert impl.truncate_completion("\ndef g(): pass") == ""
    assert impl.truncate_completion("abc|x|y", stops=("|y", "|x")) == "abc"


@pytest.mark.task("clean-completion")
def test_cut_keeps_nested_definitions(impl):
    body = "    def inner(y):\n        return y * 2\n    return inner(x)\n"
    assert impl.truncate_completion(body + "\ndef other():\n    pass\n") == body


@pytest.mark.task("clean-completion")
def test_code_is_taken_from_the_first_fenced_block(impl):
    code = "def f(x):\n    return x\n"
    assert impl.extract_code(f"Sure! Here it is:\n```python\n{code}```\nIt returns x.") == code
    assert impl.extract_code(f"```\n{code}```") == code  # a fence without a language tag
    assert impl.extract_code(f"```py\n{code}```\nand a test:\n```python\nassert f(1) == 1\n```") == code
    assert impl.extract_code(f"```python\n{code}") == code  # cut off before the closing fence
    assert impl.extract_code(code) == code  # no fence: the reply is the code


@pytest.mark.task("program")
def test_a_whole_function_reply_replaces_the_prompt_and_keeps_its_imports(impl, problems):
    problem = problems[0]  # has_close_elements, whose prompt imports List from typing
    header = problem["prompt"][problem["prompt"].index("def "):].split("\n")[0]
    reply = header + "\n" + problem["canonical_solution"]  # the whole function, without the typing import
    program = impl.humaneval_program(problem, reply)
    assert program.count(f"def {problem['entry_point']}(") == 1
    run_trusted(program)
    # a reply that defines only a helper is still a body: the prompt comes first
    helper = "    return _helper(numbers, threshold)\n\ndef _helper(numbers, threshold):\n" + \
        problem["canonical_solution"]
    run_trusted(impl.humaneval_program(problem, helper))


@pytest.fixture(scope="module")
def tiny_model():
    tokenizer = AutoTokenizer.from_pretrained(assets.smollm2_path())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


PROMPT = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n"


@pytest.mark.task("sampling")
def test_temperature_zero_is_greedy_decoding(impl, tiny_model):
    model, tokenizer = tiny_model
    inputs = tokenizer(PROMPT, return_tensors="pt")
    greedy = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    expected = impl.truncate_completion(tokenizer.decode(greedy[0, inputs["input_ids"].shape[1]:],
                                                         skip_special_tokens=True))
    got = impl.sample_completions(model, tokenizer, PROMPT, n=3, temperature=0.0, max_new_tokens=12)
    assert got == [expected] * 3


@pytest.mark.task("sampling")
def test_samples_are_n_independent_draws_without_the_prompt(impl, tiny_model):
    model, tokenizer = tiny_model
    got = impl.sample_completions(model, tokenizer, PROMPT, n=6, temperature=1.0, max_new_tokens=12, seed=1)
    assert len(got) == 6 and len(set(got)) >= 3, got  # a random model at T=1 rarely repeats 12 tokens
    assert not any(PROMPT.strip() in text for text in got)
    assert all(stop not in text for text in got for stop in impl.STOP_SEQUENCES)
    again = impl.sample_completions(model, tokenizer, PROMPT, n=6, temperature=1.0, max_new_tokens=12, seed=1)
    assert again == got  # the seed makes a run repeatable


@pytest.mark.task("sampling")
def test_chat_mode_asks_through_the_template_and_keeps_the_code_block(impl, tiny_model):
    model, tokenizer = tiny_model
    text = impl.chat_prompt(tokenizer, PROMPT)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    greedy = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    reply = tokenizer.decode(greedy[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    got = impl.sample_completions(model, tokenizer, PROMPT, n=2, temperature=0.0, max_new_tokens=12, chat=True)
    assert got == [impl.extract_code(reply)] * 2


@pytest.mark.task("sampling")
def test_low_temperature_concentrates_on_the_greedy_answer(impl, tiny_model):
    model, tokenizer = tiny_model
    greedy = impl.sample_completions(model, tokenizer, PROMPT, n=1, temperature=0.0, max_new_tokens=4)[0]
    # A random model's logits are nearly flat, so "cold" has to be very cold to sharpen them.
    cold = impl.sample_completions(model, tokenizer, PROMPT, n=8, temperature=0.001, max_new_tokens=4, seed=2)
    hot = impl.sample_completions(model, tokenizer, PROMPT, n=8, temperature=1.0, max_new_tokens=4, seed=2)
    assert sum(c == greedy for c in cold) > sum(h == greedy for h in hot)
