"""Bad input gets one line that says what to fix: an unknown task, a missing data file, a model that is not a
causal LM, an empty continuation, mismatched scores. These checks are given code, so the tests are not graded."""
import pytest


def one_line_exit(impl, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        impl.main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_unknown_task(impl):
    message = one_line_exit(impl, ["--tasks", "mmlu,mmlux"])
    assert "mmlux" in message and "mmlu, hellaswag, gsm8k" in message


def test_missing_data_file_is_reported_before_any_model_loads(impl, monkeypatch):
    monkeypatch.setitem(impl.DATA_FILES, "hellaswag", (None, "data/not-there.jsonl"))
    monkeypatch.setattr(impl, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the data check"))
    message = one_line_exit(impl, ["--tasks", "hellaswag"])
    assert "not-there.jsonl" in message and "missing" in message
    monkeypatch.setitem(impl.DATA_FILES, "mmlu", ("no-such-package-xyz", "x.jsonl"))
    assert "no-such-package-xyz" in one_line_exit(impl, ["--tasks", "mmlu"])


@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_a_model_that_is_not_causal(impl, tmp_path, kind):
    from transformers import BertConfig, T5Config

    config = (BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                         architectures=["BertForMaskedLM"]) if kind == "bert"
              else T5Config(d_model=8, num_layers=1, num_heads=1, d_ff=8, architectures=["T5ForConditionalGeneration"]))
    config.save_pretrained(tmp_path)
    with pytest.raises(impl.HarnessError, match="not a causal"):
        impl.load_model(str(tmp_path))


def test_a_model_that_cannot_be_found_offline(impl, tmp_path):
    with pytest.raises(impl.HarnessError, match="LABKIT_ONLINE"):
        impl.load_model(str(tmp_path / "no-model-here"))


def test_empty_continuation_and_context(impl, tokenizer):
    with pytest.raises(impl.HarnessError, match="empty continuation"):
        impl.encode_pair(tokenizer, "Answer:", " ")
    with pytest.raises(impl.HarnessError, match="empty context"):
        impl.encode_pair(tokenizer, "", " A")


def test_scores_must_match_choices(impl):
    with pytest.raises(impl.HarnessError, match="choices"):
        impl.choose([-1.0, -2.0], ["A", "B", "C"])


def test_negative_limit(impl):
    assert "--limit" in one_line_exit(impl, ["--tasks", "mmlu", "--limit", "-3"])
