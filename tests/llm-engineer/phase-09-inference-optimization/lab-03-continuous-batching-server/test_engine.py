"""Continuous-batching engine checks, without HTTP. References: transformers' LlamaForCausalLM (logits), lab 01's
cached `generate` run one request at a time (greedy tokens), transformers' TopPLogitsWarper (nucleus filter),
OpenAI's own response types (chunk schema), and hand-worked budgets and stop cases."""
from collections import deque

import pytest
import torch

from labkit.labs import reuse

LlamaConfig = pytest.importorskip("transformers").LlamaConfig
from transformers import LlamaForCausalLM, TopPLogitsWarper  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny model: one torch thread (labkit plugin)

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.!?:\n"


def tiny_hf(vocab: int, seed: int = 0, max_pos: int = 128) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_pos,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval().double()
    with torch.no_grad():  # wider than the 0.02 init so logits are well apart (float64 rules out near-ties)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def parts(impl):
    tok = impl.CharTokenizer(ALPHABET)
    hf = tiny_hf(tok.vocab_size)
    model = impl.kvlab.GPT.from_llama(hf, block_size=128).eval()
    return hf, model, tok


def alone_greedy(model, tok, prompt_ids, max_tokens):
    """Reference: lab 01's cached generate on this request alone, cut at EOS."""
    kv = reuse("lab-01-kv-cache-from-scratch")
    out = kv.generate(model, torch.tensor([prompt_ids]), max_tokens)[0, len(prompt_ids):].tolist()
    return out[:out.index(tok.eos_id)] if tok.eos_id in out else out


def req(impl, rid, n_prompt, max_tokens=8, computed=0, **params):
    r = impl.Request(str(rid), list(range(1, n_prompt + 1)), impl.SamplingParams(max_tokens=max_tokens, **params))
    r.computed = computed
    return r


# --------------------------------------------------------------------------- validate

def validate(impl, tok, body, chat=False, context=64):
    return impl.validate_request(body, model_name="tiny", tokenizer=tok, context=context, chat=chat)


@pytest.mark.task("validate")
def test_a_good_body_gives_ids_params_and_defaults(impl):
    tok = impl.CharTokenizer(ALPHABET)
    ids, params, stream = validate(impl, tok, {"model": "tiny", "prompt": "hi there"})
    assert ids == tok.encode("hi there"), f"expected the prompt's ids, got {ids}"
    assert (params.max_tokens, params.temperature, params.top_p, params.seed, params.stop, stream) == \
        (16, 1.0, 1.0, None, (), False), f"expected OpenAI's defaults (16, 1.0, 1.0, None, (), False), got {params}"
    ids, params, stream = validate(impl, tok, {"model": "tiny", "prompt": "a", "max_tokens": 5, "temperature": 0,
                                               "top_p": 0.5, "seed": 7, "stop": "x", "stream": True, "user": "u"})
    assert (params.max_tokens, params.temperature, params.top_p, params.seed, tuple(params.stop), stream) == \
        (5, 0.0, 0.5, 7, ("x",), True), f"fields were not carried over: {params}, stream={stream}"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    ids, _, _ = validate(impl, tok, {"model": "tiny", "messages": messages}, chat=True)
    assert ids == tok.chat(messages), "a chat body should be tokenized with the chat template"


@pytest.mark.task("validate")
@pytest.mark.parametrize("change, status, field", [
    ({"max_tokens": -3}, 400, "max_tokens"), ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": True}, 400, "max_tokens"), ({"max_tokens": 2.0}, 400, "max_tokens"),
    ({"max_tokens": "5"}, 400, "max_tokens"), ({"model": "gpt-9"}, 404, "model"), ({"model": None}, 400, "model"),
    ({"temperature": 2.5}, 400, "temperature"), ({"temperature": "hot"}, 400, "temperature"),
    ({"temperature": float("nan")}, 400, "temperature"), ({"top_p": 0}, 400, "top_p"),
    ({"top_p": 1.01}, 400, "top_p"), ({"seed": "1"}, 400, "seed"), ({"seed": 1.5}, 400, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"), ({"stop": ""}, 400, "stop"), ({"stop": [3]}, 400, "stop"),
    ({"stream": "yes"}, 400, "stream"), ({"prompt": 123}, 400, "prompt"), ({"prompt": ""}, 400, "prompt"),
    ({"prompt": "ABC"}, 400, "prompt"),
])
def test_bad_fields_are_refused_with_a_clear_one_line_message(impl, change, status, field):
    tok = impl.CharTokenizer(ALPHABET)
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 4, **change}
    with pytest.raises(impl.RequestError) as info:
        validate(impl, tok, body)
    err = info.value
    assert err.status == status, f"{change}: expected HTTP {status}, got {err.status} ({err})"
    assert field in str(err) and "\n" not in str(err), f"{change}: expected one line naming '{field}', got {err!r}"


@pytest.mark.task("validate")
def test_bad_chat_messages_and_non_objects_are_refused(impl):
    tok = impl.CharTokenizer(ALPHABET)
    for messages in ([], "hi", [{"role": "robot", "content": "x"}], [{"role": "user", "content": 5}], [3]):
        with pytest.raises(impl.RequestError) as info:
            validate(impl, tok, {"model": "tiny", "messages": messages}, chat=True)
        assert info.value.status == 400 and "messages" in str(info.value), f"{messages!r}: got {info.value!r}"
    with pytest.raises(impl.RequestError):
        validate(impl, tok, ["not", "an", "object"])


@pytest.mark.task("validate")
def test_prompt_plus_max_tokens_may_fill_the_context_exactly(impl):
    tok = impl.CharTokenizer(ALPHABET)
    ids, params, _ = validate(impl, tok, {"model": "tiny", "prompt": "a" * 60, "max_tokens": 4}, context=64)
    assert len(ids) + params.max_tokens == 64
    for prompt, max_tokens in (("a" * 60, 5), ("a" * 65, 1)):
        with pytest.raises(impl.RequestError) as info:
            validate(impl, tok, {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens}, context=64)
        assert info.value.status == 400 and "64" in str(info.value), \
            f"{len(prompt)} + {max_tokens} > 64 should be a 400 naming the context, got {info.value!r}"


# --------------------------------------------------------------------------- scheduler

@pytest.mark.task("scheduler")
def test_decodes_go_first_then_waiting_requests_join_under_the_token_budget(impl):
    running = [req(impl, "r1", 5, computed=5), req(impl, "r2", 3, computed=3)]
    waiting = deque([req(impl, "w1", 4), req(impl, "w2", 4), req(impl, "w3", 4)])
    plan = impl.schedule(waiting, running, impl.Limits(max_batch=8, token_budget=10))
    got = [(r.id, n) for r, n in plan]
    # 2 decode tokens, then w1's 4-token prompt (6 used), then w2's prompt fills the budget exactly (10); w3 waits
    assert got == [("r1", 1), ("r2", 1), ("w1", 4), ("w2", 4)], f"expected decodes then two prefills, got {got}"
    assert [r.id for r in running] == ["r1", "r2", "w1", "w2"] and [r.id for r in waiting] == ["w3"], \
        f"admitted requests should move to running in order; running {[r.id for r in running]}"


@pytest.mark.task("scheduler")
def test_a_prompt_longer_than_the_budget_is_prefilled_in_chunks(impl):
    limits = impl.Limits(max_batch=4, token_budget=4)
    running, waiting = [req(impl, "d", 2, computed=2)], deque([req(impl, "long", 10)])
    chunks = []
    for _ in range(4):
        plan = impl.schedule(waiting, running, limits)
        chunks.append([(r.id, n) for r, n in plan])
        for r, n in plan:
            r.computed += n
            if r.id == "d":
                r.output_ids.append(0)
    assert chunks == [[("d", 1), ("long", 3)], [("d", 1), ("long", 3)], [("d", 1), ("long", 3)],
                      [("d", 1), ("long", 1)]], f"expected chunks of 3 then the decode of 'long', got {chunks}"


@pytest.mark.task("scheduler")
def test_admission_stops_at_max_batch_and_never_overtakes_on_kv_capacity(impl):
    running = [req(impl, f"r{i}", 2, computed=2) for i in range(3)]
    waiting = deque([req(impl, "a", 2), req(impl, "b", 2)])
    impl.schedule(waiting, running, impl.Limits(max_batch=4, token_budget=64))
    assert len(running) == 4 and [r.id for r in waiting] == ["b"], "max_batch=4: exactly one of two should join"
    # KV: running reserves 3 x (2 + 8) = 30; 'big' needs 2 + 8 = 10 and capacity 39 leaves 9: it waits, and the
    # small one behind it must not jump ahead of it
    running = [req(impl, f"r{i}", 2, computed=2) for i in range(3)]
    waiting = deque([req(impl, "big", 2), req(impl, "small", 1, max_tokens=1)])
    plan = impl.schedule(waiting, running, impl.Limits(max_batch=8, token_budget=64, kv_capacity=39))
    assert [r.id for r, _ in plan] == ["r0", "r1", "r2"] and len(waiting) == 2, \
        f"nothing should join when the head does not fit, got {[r.id for r, _ in plan]}"
    plan = impl.schedule(waiting, running, impl.Limits(max_batch=8, token_budget=64, kv_capacity=40))
    assert [r.id for r, _ in plan][-1] == "big", "a request that exactly fills the KV capacity should join"


@pytest.mark.task("scheduler")
def test_eviction_frees_finished_slots_and_keeps_order(impl):
    running = [req(impl, i, 2) for i in "abcd"]
    for r in running:
        r.cache = object()
    running[1].finish_reason, running[3].finish_reason = "stop", "abort"
    done = impl.evict_finished(running)
    assert [r.id for r in running] == ["a", "c"], f"expected a, c to keep running, got {[r.id for r in running]}"
    assert sorted(r.id for r in done) == ["b", "d"] and all(r.cache is None for r in done), \
        "finished requests should come back with their cache dropped"


@pytest.mark.task("scheduler")
def test_requests_join_mid_flight_and_the_batch_never_exceeds_max(impl, parts):
    _, model, tok = parts
    engine = impl.Engine(model, tok, impl.Limits(max_batch=3, token_budget=16))
    first = [impl.Request(str(i), tok.encode("hello"), impl.SamplingParams(max_tokens=6 + 4 * i, temperature=0))
             for i in range(3)]
    for r in first:
        engine.add(r)
    engine.step()
    late = impl.Request("late", tok.encode("hi"), impl.SamplingParams(max_tokens=3, temperature=0))
    engine.add(late)
    step, freed, joined = 1, None, None
    while engine.has_work:
        engine.step()
        step += 1
        assert len(engine.running) <= 3, f"the running batch grew to {len(engine.running)} with max_batch=3"
        if joined is None and late.computed > 0:
            joined = step
        if freed is None and any(r.finish_reason for r in first):
            freed = step
    assert freed is not None and joined == freed + 1, \
        f"a slot freed at step {freed}; the waiting request should join at step {freed + 1}, joined at {joined}"
    assert late.first_token_at is not None and late.first_token_at < first[2].token_times[-1], \
        "the late request should be served while the longest one still runs (continuous, not static)"


# --------------------------------------------------------------------------- batched forward

@pytest.mark.task("batched-forward")
def test_mixed_prefill_and_decode_logits_equal_transformers(impl, parts):
    hf, model, tok = parts
    a = impl.Request("a", tok.encode("the cat sat"), impl.SamplingParams(max_tokens=4))
    b = impl.Request("b", tok.encode("on a mat, it"), impl.SamplingParams(max_tokens=4))
    c = impl.Request("c", tok.encode("no"), impl.SamplingParams(max_tokens=4))
    impl.batched_forward(model, [(a, len(a.prompt_ids)), (b, 5)])           # step 1: a whole, b's first chunk
    a.output_ids.append(3)
    logits = impl.batched_forward(model, [(c, 2), (a, 1), (b, 7)])          # step 2: new, decode, rest of b
    assert logits.shape == (3, tok.vocab_size), f"expected (3, vocab) logits, got {tuple(logits.shape)}"
    assert (a.computed, b.computed, c.computed) == (12, 12, 2) and a.cache.length == 12, \
        f"positions cached should be 12, 12, 2; got {(a.computed, b.computed, c.computed)}"
    with torch.no_grad():
        for row, ids in zip(logits, (c.prompt_ids, a.prompt_ids + [3], b.prompt_ids)):
            ref = hf(torch.tensor([ids])).logits[0, -1]
            # rotary angles are float32 in both (lab 01 and transformers), so ~1e-6 differences remain
            assert torch.allclose(row, ref, rtol=1e-5, atol=1e-5), \
                f"logits differ from transformers' by {(row - ref).abs().max():.2e} for a sequence of {len(ids)}"


@pytest.mark.task("batched-forward")
def test_continuous_batch_greedy_equals_each_request_alone(impl, parts):
    _, model, tok = parts
    prompts = ["hello world", "a cat", "the quick brown fox jumps", "zz top, yes!", "one", "two birds?"] * 2
    engine = impl.Engine(model, tok, impl.Limits(max_batch=5, token_budget=12))
    reqs = [impl.Request(str(i), tok.encode(p), impl.SamplingParams(max_tokens=4 + 5 * (i % 5), temperature=0))
            for i, p in enumerate(prompts)]
    for r in reqs:
        engine.add(r)
    engine.run_until_done()
    for r in reqs:
        ref = alone_greedy(model, tok, r.prompt_ids, r.params.max_tokens)
        assert r.output_ids == ref, f"request {r.id}: batched tokens {r.output_ids} != alone {ref}"


# --------------------------------------------------------------------------- sampling

@pytest.mark.task("sampling")
def test_top_p_boundary_is_exact(impl):
    probs = torch.tensor([0.125, 0.5, 0.125, 0.25])      # sorted: 0.5, 0.25, 0.125, 0.125; mass before: 0, .5, .75
    for top_p, expect in ((0.75, [0, 2 / 3, 0, 1 / 3]), (0.5, [0, 1, 0, 0]), (0.76, [0.125, 0.5, 0.125, 0.25]),
                          (1.0, [0.125, 0.5, 0.125, 0.25])):
        got = impl.top_p_filter(probs, top_p)
        if top_p == 0.76:   # one of the two 0.125 tokens is kept (which one is a tie): mass 0.875, renormalised
            assert sorted(got.tolist()) == pytest.approx(sorted([0, 0.125 / 0.875, 0.25 / 0.875, 0.5 / 0.875])), got
            continue
        assert got.tolist() == pytest.approx(expect), f"top_p={top_p}: expected {expect}, got {got.tolist()}"


@pytest.mark.task("sampling")
def test_top_p_matches_transformers(impl):
    g = torch.Generator().manual_seed(1)
    for top_p in (0.3, 0.6, 0.9, 0.95):
        for _ in range(5):
            logits = torch.randn(50, generator=g) * 2
            probs = torch.softmax(logits, -1)
            ref = torch.softmax(TopPLogitsWarper(top_p)(None, logits[None])[0], -1)
            got = impl.top_p_filter(probs, top_p)
            assert torch.allclose(got, ref, atol=1e-6), f"top_p={top_p}: differs from TopPLogitsWarper by " \
                                                          f"{(got - ref).abs().max():.2e}"


@pytest.mark.task("sampling")
def test_temperature_draws_follow_the_scaled_softmax(impl):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    params = impl.SamplingParams(temperature=2.0)
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([impl.sample_next(logits, params, g) for _ in range(6000)])
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    expect = torch.softmax(logits.double() / 2.0, -1)
    # binomial sd at n=6000 is <= 0.0065; 0.025 is about four sd, and a wrong temperature moves a cell by > 0.1
    assert (freq - expect).abs().max() < 0.025, f"frequencies {freq.tolist()} vs softmax(l/T) {expect.tolist()}"
    zero = impl.SamplingParams(temperature=0.0)
    assert impl.sample_next(torch.tensor([0.1, 3.0, 2.9]), zero, g) == 1, "temperature 0 should be argmax"


@pytest.mark.task("sampling")
def test_a_seeded_request_samples_the_same_alone_or_in_a_batch(impl, parts):
    _, model, tok = parts

    def run(batch_prompts):
        engine = impl.Engine(model, tok, impl.Limits(max_batch=8, token_budget=64))
        reqs = [impl.Request(str(i), tok.encode(p), impl.SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9,
                                                                         seed=100 + i))
                for i, p in enumerate(batch_prompts)]
        for r in reqs:
            engine.add(r)
        engine.run_until_done()
        return [r.output_ids for r in reqs]

    prompts = ["hello", "hello", "what is this", "a b c"]
    together = run(prompts)
    for i, p in enumerate(prompts):
        alone = run(["x"] * i + [p])[i]        # same seed (100 + i), other company
        assert together[i] == alone, f"request {i} sampled {together[i]} in a batch but {alone} alone"
    assert together[0] != together[1], "different seeds on the same prompt should give different samples"


# --------------------------------------------------------------------------- stop conditions

@pytest.mark.task("stop")
def test_stop_strings_eos_and_length_by_hand(impl):
    P = impl.SamplingParams
    cases = [
        (("ab<END>cd", 5, 9, P(max_tokens=20, stop=("cd", "<END>"))), ("stop", 2)),     # earliest stop wins
        (("hello world", 5, 4, P(max_tokens=4, stop=("world",))), ("stop", 6)),         # stop beats length
        (("hello", 99, 3, P(max_tokens=4)), ("stop", 5)),                                 # EOS (id 99)
        (("hello", 5, 4, P(max_tokens=4)), ("length", 5)),                                # exactly max_tokens
        (("hello", 5, 3, P(max_tokens=4)), (None, 5)),                                    # one to go
        (("hello wor", 5, 3, P(max_tokens=9, stop=("world",))), (None, 6)),               # hold back "wor"
        (("say ab", 5, 3, P(max_tokens=9, stop=("xyz", "abc", "b"))), ("stop", 5)),       # "b" is complete
        (("say aab", 5, 3, P(max_tokens=9, stop=("aabx", "bq"))), (None, 4)),             # longest prefix "aab"
        (("endless", 5, 3, P(max_tokens=9, stop=("zz",))), (None, 7)),
    ]
    for args, expect in cases:
        got = tuple(impl.stop_state(*args[:3], 99, args[3]))
        assert got == expect, f"stop_state{args[:3]} with stop={args[3].stop}, max_tokens={args[3].max_tokens}: " \
                              f"expected {expect}, got {got}"


@pytest.mark.task("stop")
def test_streamed_text_never_shows_a_stop_string(impl, parts):
    _, model, tok = parts
    prompt = tok.encode("a b c")
    free = alone_greedy(model, tok, prompt, 30)
    text = tok.decode(free)
    assert len(text) > 8, "the reference continuation should be long enough to hold a stop string"
    stop = text[5:8]                                      # a 3-character string the model will produce
    engine = impl.Engine(model, tok, impl.Limits(max_batch=2, token_budget=32))
    r = impl.Request("s", prompt, impl.SamplingParams(max_tokens=30, temperature=0, stop=("qqq", stop)))
    engine.add(r)
    streamed = []
    while engine.has_work:
        streamed += [e.delta for e in engine.step()]
    cut = text.find(stop)
    assert r.finish_reason == "stop" and r.text == text[:cut], f"expected {text[:cut]!r} and 'stop', got " \
                                                                f"{r.text!r} and {r.finish_reason!r}"
    assert "".join(streamed) == r.text, f"the streamed pieces {streamed} should add up to {r.text!r}"


# --------------------------------------------------------------------------- SSE format

def parse_sse(raw: str) -> list[str]:
    """Strict client side: events end with a blank line and hold exactly one 'data: ' line each."""
    assert raw.endswith("\n\n"), f"an SSE event must end with a blank line, got {raw[-10:]!r}"
    events = []
    for block in raw[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 1 and lines[0].startswith("data: "), f"expected one 'data: ' line, got {lines!r}"
        events.append(lines[0][len("data: "):])
    return events


@pytest.mark.task("sse")
def test_sse_events_are_single_data_lines(impl):
    import json

    raw = impl.sse_event({"text": "two\nlines", "n": 1}) + impl.sse_event("[DONE]")
    payloads = parse_sse(raw)
    assert json.loads(payloads[0]) == {"text": "two\nlines", "n": 1} and payloads[1] == "[DONE]", payloads


@pytest.mark.task("sse")
def test_chunks_follow_openai_types(impl):
    from openai.types import Completion
    from openai.types.chat import ChatCompletionChunk

    mid = impl.completion_chunk("cmpl-1", "tiny", 1, "hi", None, chat=False)   # the client reads it unvalidated
    assert mid["choices"][0]["text"] == "hi" and mid["object"] == "text_completion" and \
        mid["choices"][0]["finish_reason"] is None and mid["id"] == "cmpl-1", mid
    c = Completion.model_validate(impl.completion_chunk("cmpl-1", "tiny", 1, "", "length", chat=False))
    assert c.choices[0].finish_reason == "length"
    first = ChatCompletionChunk.model_validate(impl.completion_chunk("c-1", "tiny", 1, "he", None, chat=True,
                                                                     first=True))
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == "he", first
    later = ChatCompletionChunk.model_validate(impl.completion_chunk("c-1", "tiny", 1, "y", "stop", chat=True))
    assert later.choices[0].delta.content == "y" and later.choices[0].delta.role is None and \
        later.choices[0].finish_reason == "stop" and later.object == "chat.completion.chunk", later
