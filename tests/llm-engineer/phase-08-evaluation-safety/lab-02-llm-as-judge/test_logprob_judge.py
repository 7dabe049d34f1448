"""The log-probability judge on a tiny random Llama with SmolLM2's tokenizer: its margin equals log p("A") -
log p("B") computed here from the chat template, batching with left padding changes nothing, and the verdict is
the margin's sign. One slow test runs the real SmolLM2-135M-Instruct."""
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from labkit import assets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(assets.smollm2_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


ITEMS = [("What is 2 + 2?", "The answer is 4.", "The answer is 5."),
         ("What is 10 + 13?", "Let me think about it step by step. The answer is 23.", "23"),
         ("Q?", "x", "a much longer answer that pushes the prompt further along")]


def reference_margin(model, tokenizer, messages):
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, -1].double(), dim=-1)
    a, b = tokenizer.convert_tokens_to_ids(["A", "B"])
    return float(logp[a] - logp[b])


@pytest.mark.task("logprob-judge")
def test_margin_is_the_log_probability_gap_after_the_assistant_header(impl, tiny_model):
    model, tokenizer = tiny_model
    judge = impl.LogprobJudge(model, tokenizer)
    for item in ITEMS:
        expected = reference_margin(model, tokenizer, impl.judge_messages(*item))
        assert judge.margins([item])[0] == pytest.approx(expected, abs=2e-4)


@pytest.mark.task("logprob-judge")
def test_a_batch_of_different_lengths_equals_one_at_a_time(impl, tiny_model):
    model, tokenizer = tiny_model
    judge = impl.LogprobJudge(model, tokenizer)
    batched = judge.margins(ITEMS)
    expected = [reference_margin(model, tokenizer, impl.judge_messages(*item)) for item in ITEMS]
    assert batched == pytest.approx(expected, abs=2e-4)
    assert len(set(round(m, 6) for m in batched)) == 3
    for item, margin in zip(ITEMS, expected):
        assert judge(*item) == ("A" if margin > 0 else "B")


@pytest.mark.slow
@pytest.mark.task("logprob-judge")
def test_smollm2_judges_an_obvious_pair_consistently(impl):
    model, tokenizer = assets.smollm2()
    judge = impl.LogprobJudge(model, tokenizer)
    question, right, wrong = "What is 2 + 2?", "The answer is 4.", "The answer is 5."
    margins = judge.margins([(question, right, wrong), (question, wrong, right)])
    expected = [reference_margin(model, tokenizer, impl.judge_messages(question, right, wrong)),
                reference_margin(model, tokenizer, impl.judge_messages(question, wrong, right))]
    assert margins == pytest.approx(expected, abs=1e-3)
