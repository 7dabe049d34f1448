"""Lab 04 agent: the JSON state machine on hand-written documents, constrained decoding that yields
schema-valid JSON from random-weight models (many seeds) and from SmolLM2 (slow), and the ReAct loop driven by
a scripted model: dispatch, errors as observations, the step cap, repeated calls, the JSON-lines trace."""
import json
import string

import jsonschema
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from labkit import assets

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12}, "age": {"type": "integer"},
    "colour": {"enum": ["red", "green", "grey"]}, "member": {"type": "boolean"}}}
PIECES = ['{"', '":', '","', '",', ',"', '"}', "true", "false", "red", "gre", "en", "ey", "name", "age", "colour",
          "member", "12", "345", " the", "ab", 'x"', '":"', '"x', "\\", "\\n", "{}", "0", "-1", "9999999999"]
VOCAB = sorted(set(string.printable) - set("\t\n\r\x0b\x0c")) + PIECES


def walk_all(machine, text):
    state = machine.start
    for ch in text:
        state = machine.step(state, ch)
        if state is None:
            return None
    return state


@pytest.mark.task("json-machine")
def test_machine_accepts_valid_and_rejects_invalid_documents(impl):
    machine = impl.JsonSchemaMachine(SCHEMA)
    good = ['{"name":"Ann","age":42,"colour":"grey","member":true}', '{"name":"x","age":-7,"colour":"red","member":false}',
            '{"name":"a b c","age":0,"colour":"green","member":true}']
    for text in good:
        jsonschema.validate(json.loads(text), SCHEMA)  # the test's own documents are valid
        end = walk_all(machine, text)
        assert end is not None and machine.done(end), f"expected the machine to accept {text}"
    bad = ['{"name":"","age":1,"colour":"red","member":true}',       # minLength 1
           '{"name":"abcdefghijklm","age":1,"colour":"red","member":true}',  # maxLength 12
           '{"name":"a","age":01,"colour":"red","member":true}',     # leading zero
           '{"name":"a","age":1,"colour":"blue","member":true}',     # not in the enum
           '{"name":"a","age":1,"colour":"red","member":yes}',       # not a boolean
           '{"age":1,"name":"a","colour":"red","member":true}',      # order is fixed
           '{"name":"a\\"b","age":1,"colour":"red","member":true}',  # no escapes in this subset
           '{"name": "a","age":1,"colour":"red","member":true}']     # no whitespace in this subset
    for text in bad:
        end = walk_all(machine, text)
        assert end is None or not machine.done(end), f"the machine must reject {text}"
    nine = '{"name":"a","age":123456789,"colour":"red","member":true}'       # at most 9 digits: 9 is fine
    assert walk_all(machine, nine) is not None and machine.done(walk_all(machine, nine)), f"expected to accept {nine}"
    for text in ['{"name":"a","age":1234567890,"colour":"red","member":true}',  # 10 digits
                 '{"name":"a","age":-,"colour":"red","member":true}']:         # a minus sign is not a number
        end = walk_all(machine, text)
        assert end is None or not machine.done(end), f"the machine must reject {text}"
    partial = walk_all(machine, '{"name":"Ann","age":4')
    assert partial is not None and not machine.done(partial), "a valid prefix is a live, unfinished state"


@pytest.mark.task("json-machine")
def test_machine_refuses_unsupported_schemas(impl):
    for schema in [{"type": "array"}, {"type": "object", "properties": {"x": {"type": "number"}}},
                   {"type": "object", "properties": {"x": {"type": "object", "properties": {}}}}]:
        with pytest.raises(ValueError):
            impl.JsonSchemaMachine(schema)


@pytest.mark.task("constrained-decoding")
def test_mask_matches_brute_force_walks(impl):
    machine, vocab = impl.JsonSchemaMachine(SCHEMA), impl.TokenVocab(VOCAB)
    for prefix in ['', '{"name":', '{"name":"Ann', '{"name":"abcdefghijk', '{"name":"A","age":4', '{"name":"A","age":4,"colour":"gr',
                   '{"name":"A","age":4,"colour":"red","member":']:
        state = walk_all(machine, prefix)
        mask = vocab.allowed(machine, state)
        want = [walk_all_from(machine, state, s) is not None for s in VOCAB]
        wrong = [VOCAB[i] for i in range(len(VOCAB)) if bool(mask[i]) != want[i]]
        assert not wrong, f"after {prefix!r} the mask is wrong for tokens {wrong[:10]}"


def walk_all_from(machine, state, text):
    for ch in text:
        state = machine.step(state, ch)
        if state is None:
            return None
    return state


def reference_greedy(model, machine, prompt):
    """Masked greedy decoding written out slowly: the whole sequence through the model at every step (no cache),
    allowed tokens found by walking every vocabulary string."""
    ids, state, text = list(prompt), machine.start, ""
    with torch.no_grad():
        while not machine.done(state):
            logits = model(torch.tensor([ids])).logits[0, -1]
            allowed = [walk_all_from(machine, state, s) is not None for s in VOCAB]
            logits = logits.masked_fill(~torch.tensor(allowed), float("-inf"))
            token = int(torch.argmax(logits))
            state, text = walk_all_from(machine, state, VOCAB[token]), text + VOCAB[token]
            ids.append(token)
    return text


@pytest.mark.task("constrained-decoding")
def test_greedy_output_equals_a_slow_reference(impl):
    vocab, machine = impl.TokenVocab(VOCAB), impl.JsonSchemaMachine(SCHEMA)
    for seed in range(3):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256, bos_token_id=0, eos_token_id=1)).eval()
        got = impl.constrained_generate(model, vocab, machine, [3, 4, 5])
        want = reference_greedy(model, machine, [3, 4, 5])
        assert got == want, f"seed {seed}: greedy masked decoding should give {want!r}, got {got!r}"


@pytest.mark.task("constrained-decoding")
def test_random_models_always_emit_schema_valid_json(impl):
    vocab = impl.TokenVocab(VOCAB)
    machine = impl.JsonSchemaMachine(SCHEMA)
    outputs = set()
    for seed in range(12):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256, bos_token_id=0, eos_token_id=1)).eval()
        for temperature in (0.0, 1.5):
            gen = torch.Generator().manual_seed(seed)
            text = impl.constrained_generate(model, vocab, machine, [3, 4, 5], temperature=temperature, generator=gen)
            try:
                jsonschema.validate(json.loads(text), SCHEMA)
            except (json.JSONDecodeError, jsonschema.ValidationError) as err:
                pytest.fail(f"seed {seed}, temperature {temperature}: {text!r} is not schema-valid JSON ({err})")
            outputs.add(text)
    assert len(outputs) > 5, f"random models should produce varied documents, got only {len(outputs)} distinct"


@pytest.mark.slow
@pytest.mark.task("constrained-decoding")
def test_smollm2_structured_output_is_valid(impl):
    model, tokenizer = assets.smollm2()
    vocab = impl.TokenVocab.from_tokenizer(tokenizer)
    machine = impl.JsonSchemaMachine(SCHEMA)
    for request in ["Invent a person: name, age, favourite colour, club member?", "Describe Bob, 31, likes green."]:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": request}], add_generation_prompt=True,
                                            tokenize=True)["input_ids"]
        text = impl.constrained_generate(model, vocab, machine, list(ids))
        jsonschema.validate(json.loads(text), SCHEMA)


# ---------------------------------------------------------------- the loop

def step(tool, **args):
    return {"thought": "next", "tool": tool, "args": args}


@pytest.mark.task("react-loop")
def test_loop_dispatches_and_feeds_observations_back(impl, tmp_path):
    registry = impl.default_tools()
    model = impl.ScriptedModel([step("search_docs", query="Redfern school pupils teachers"),
                                step("calculator", expression="540 / 36"),
                                {"thought": "done", "final_answer": "{last}"}])
    trace = impl.JsonlTrace(tmp_path / "trace.jsonl")
    result = impl.run_agent(model, registry, "Pupils per teacher at Redfern?", trace=trace)
    assert (result.answer, result.steps, result.stop_reason) == ("15.0", 3, "final_answer"), \
        f"expected answer '15.0' after 3 steps, got {result.answer!r}, {result.steps}, {result.stop_reason}"
    observations = [m["content"] for m in result.messages if m["role"] == "user"][1:]
    assert "540 pupils" in observations[0] and observations[1] == "Observation: 15.0", \
        f"each tool result must come back as an 'Observation: ...' message, got {observations}"


@pytest.mark.task("react-loop")
def test_loop_survives_bad_replies_and_unknown_tools(impl):
    model = impl.ScriptedModel(["not json at all", step("teleport", where="mars"), step("calculator", expr="1+1"),
                                {"final_answer": "gave up"}])
    result = impl.run_agent(model, impl.default_tools(), "anything")
    assert result.stop_reason == "final_answer" and result.answer == "gave up", f"got {result.stop_reason}, {result.answer}"
    observations = [m["content"] for m in result.messages if m["role"] == "user"][1:]
    assert len(observations) == 3 and all(o.startswith("Observation: error:") for o in observations), \
        f"a bad reply, an unknown tool and bad arguments each give an error observation, got {observations}"


@pytest.mark.task("react-loop")
def test_loop_stops_at_the_step_cap_and_on_repeats(impl):
    calls = [step("calculator", expression=f"{i} + 1") for i in range(10)]
    capped = impl.run_agent(impl.ScriptedModel(calls), impl.default_tools(), "loop", max_steps=4)
    assert (capped.stop_reason, capped.steps, capped.answer) == ("max_steps", 4, None), \
        f"expected to stop after 4 steps with no answer, got {capped.stop_reason}, {capped.steps}, {capped.answer}"
    model = impl.ScriptedModel(calls)
    impl.run_agent(model, impl.default_tools(), "loop", max_steps=4)
    assert model.calls == 4, f"max_steps=4 allows exactly 4 model replies, the model was asked {model.calls} times"
    same = [step("calculator", expression="2 + 2")] * 5
    repeated = impl.run_agent(impl.ScriptedModel(same), impl.default_tools(), "loop", max_steps=10, max_repeats=1)
    assert (repeated.stop_reason, repeated.steps) == ("repeated_call", 3), \
        f"1 call + 1 refused repeat, then stop at the 3rd identical call; got {repeated.stop_reason} at {repeated.steps}"
    refused = [m["content"] for m in repeated.messages if m["role"] == "user"][2]
    assert "already called" in refused, f"the refused repeat must be explained to the model, got {refused!r}"
    # the same arguments written in another key order are the same call
    reordered = impl.ScriptedModel([step("search_docs", query="Ostrand", k=1),
                                    '{"thought": "again", "tool": "search_docs", "args": {"k": 1, "query": "Ostrand"}}',
                                    {"final_answer": "done"}])
    result = impl.run_agent(reordered, impl.default_tools(), "q", max_repeats=1)
    second = [m["content"] for m in result.messages if m["role"] == "user"][2]
    assert "already called" in second, f"a repeat with reordered argument keys must be refused, got {second!r}"


@pytest.mark.task("react-loop")
def test_replies_of_the_wrong_shape_become_observations(impl):
    model = impl.ScriptedModel(['[1, 2]', '{"thought": "t", "tool": "calculator"}',
                                '{"tool": "calculator", "args": "1 + 1"}', {"final_answer": "ok"}])
    result = impl.run_agent(model, impl.default_tools(), "q")
    assert (result.stop_reason, result.answer) == ("final_answer", "ok"), f"got {result.stop_reason}, {result.answer}"
    observations = [m["content"] for m in result.messages if m["role"] == "user"][1:]
    assert len(observations) == 3 and all(o.startswith("Observation: error:") for o in observations), \
        f"a JSON list, a call without args and args that are not an object each give an error, got {observations}"


@pytest.mark.task("trace")
def test_trace_writes_one_json_line_per_step(impl, tmp_path):
    path = tmp_path / "sub" / "trace.jsonl"
    trace = impl.JsonlTrace(path)
    for i in range(3):
        trace.append({"step": i, "note": "ünïcode"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3, f"expected 3 lines, got {len(lines)}"
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows] == [0, 1, 2] and all("time" in r for r in rows), f"got {rows}"
    model = impl.ScriptedModel([step("calculator", expression="1 + 1"), {"final_answer": "2"}])
    impl.run_agent(model, impl.default_tools(), "q", trace=impl.JsonlTrace(tmp_path / "run.jsonl"))
    logged = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [r.get("tool", "final") for r in logged] == ["calculator", "final"], f"one line per step, got {logged}"
    assert logged[0]["observation"] == "2", f"the observation is logged, got {logged[0]}"
