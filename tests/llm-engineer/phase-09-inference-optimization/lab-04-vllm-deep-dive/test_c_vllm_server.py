"""vLLM for real: one OpenAI-compatible vLLM server (from .venv-vllm, `make setup-vllm`) on 127.0.0.1 serves
SmolLM2-135M-Instruct for the whole module. Its greedy tokens must equal transformers' generate() in this
environment, our client must measure it, and its prefix cache must hit on a shared-prefix workload.

Without .venv-vllm these tests skip with the reason; with LABKIT_REQUIRE_VLLM=1 (CI) they fail instead."""
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import torch

from labkit import assets

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
BLOCK = 64          # the CPU attention backend wants a multiple of 32
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
NEW_TOKENS = 24


def require_vllm(impl):
    why = impl.vllm_available()
    if why is None:
        return
    if os.environ.get("LABKIT_REQUIRE_VLLM") == "1":
        pytest.fail(f"LABKIT_REQUIRE_VLLM=1 but {why}")
    pytest.skip(why)


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module")
def vllm_server(impl, tmp_path_factory):
    require_vllm(impl)
    port = impl.free_port()
    argv = impl.vllm_command(str(assets.smollm2_path()), port, block_size=BLOCK, prefix_caching=True,
                             max_model_len=512)
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = impl.ServerProcess(argv, port, log, env=impl.vllm_env(), startup_timeout=900)
    with server:
        print(f"\nvLLM server healthy after {server.startup_seconds:.1f} s")
        yield server
    deadline = time.monotonic() + 15                  # SIGKILLed processes take a moment to leave the table
    while (left := group_members(server.process.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert not left, f"processes of the vLLM server's group outlived stop(): {left}"


@pytest.fixture(scope="module")
def hf_greedy():
    """transformers' greedy continuation (ids) of each prompt, in the main environment."""
    model, tokenizer = assets.smollm2()
    out = {}
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            gen = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
            out[prompt] = gen[0, ids.shape[1]:].tolist()
    return out, tokenizer


@pytest.mark.task("engine-args")
def test_vllm_own_parser_reads_our_command(impl):
    """vLLM's real argument parser (in .venv-vllm) turns our argv into the engine arguments we meant."""
    require_vllm(impl)
    argv = impl.vllm_command(str(assets.smollm2_path()), 8000, block_size=BLOCK, prefix_caching=False,
                             max_num_seqs=4)
    script = (
        "import json, sys\n"
        "from vllm.engine.arg_utils import AsyncEngineArgs\n"
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))\n"
        "engine = AsyncEngineArgs.from_cli_args(args)\n"
        "print(json.dumps(dict(host=args.host, port=args.port, block=engine.block_size, seqs=engine.max_num_seqs,"
        " prefix=engine.enable_prefix_caching, eager=engine.enforce_eager, dtype=engine.dtype)))\n")
    done = subprocess.run([str(impl.VLLM_PYTHON), "-c", script, json.dumps(argv[3:])], capture_output=True,
                          text=True, env=impl.vllm_env(), timeout=300)
    assert done.returncode == 0, f"vLLM's parser refused {argv[3:]}:\n{done.stderr[-1500:]}"
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == dict(host="127.0.0.1", port=8000, block=BLOCK, seqs=4, prefix=False, eager=True,
                       dtype="float32"), f"vLLM read our command as {got}"


@pytest.mark.task("server-process")
def test_vllm_server_answers_health_and_models(impl, vllm_server):
    assert httpx.get(vllm_server.url + "/health", timeout=10).status_code == 200
    models = httpx.get(vllm_server.url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["model"], models
    assert len(group_members(vllm_server.process.pid)) >= 2, "vLLM runs an engine-core process beside its API server"


@pytest.mark.task("stream-request")
def test_vllm_greedy_equals_transformers_token_for_token(impl, vllm_server, hf_greedy):
    expected, tokenizer = hf_greedy

    async def stream_all():
        async with httpx.AsyncClient(timeout=120) as client:
            return [await impl.stream_completion(client, vllm_server.url, "model", impl.Request(p, NEW_TOKENS),
                                                 {"ignore_eos": True}) for p in PROMPTS]

    records = asyncio.run(stream_all())
    for prompt, rec in zip(PROMPTS, records):
        body = {"model": "model", "prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True,
                "return_token_ids": True}
        choice = httpx.post(vllm_server.url + "/v1/completions", json=body, timeout=120).json()["choices"][0]
        assert choice["token_ids"] == expected[prompt], \
            f"{prompt!r}: vLLM greedy ids {choice['token_ids']} differ from transformers' {expected[prompt]}"
        assert rec.error is None and rec.output_tokens == NEW_TOKENS, f"{prompt!r}: {rec}"
        assert rec.text == tokenizer.decode(expected[prompt]) == choice["text"], \
            f"{prompt!r}: streamed text {rec.text!r} vs transformers {tokenizer.decode(expected[prompt])!r}"


@pytest.mark.task("run-benchmark")
def test_benchmark_client_measures_vllm(impl, vllm_server, hf_greedy):
    _, tokenizer = hf_greedy
    workload = impl.make_workload(8, prompt_words=16, max_tokens=12, seed=0)
    records, duration = asyncio.run(impl.run_benchmark(vllm_server.url, "model", workload, rate=8.0,
                                                       max_concurrency=4, extra={"ignore_eos": True}))
    summary = impl.summarize(records, duration)
    assert summary.completed == 8 and summary.output_tokens == 96, f"8 x 12 tokens expected, got {summary}"
    lengths = [len(tokenizer(r.prompt).input_ids) for r in workload]
    assert [r.prompt_tokens for r in records] == lengths, \
        f"the usage block's prompt lengths {[r.prompt_tokens for r in records]} should be the tokenizer's {lengths}"
    assert 0 < summary.ttft["p50"] <= summary.e2e["p50"] and summary.tpot["p50"] > 0, summary
    assert summary.output_throughput == pytest.approx(96 / duration)


@pytest.mark.task("workload")
def test_shared_prefix_hits_vllm_prefix_cache(impl, vllm_server):
    hits_before = impl.counter_total(vllm_server.url, "vllm:prefix_cache_hits")
    workload = impl.make_workload(4, prompt_words=8, max_tokens=2, shared_prefix_words=120, seed=11)
    records, _ = asyncio.run(impl.run_benchmark(vllm_server.url, "model", workload, max_concurrency=1))
    assert all(r.error is None for r in records), [r.error for r in records]
    hits = impl.counter_total(vllm_server.url, "vllm:prefix_cache_hits") - hits_before
    # 120 shared words are well over 2 blocks of 64 tokens, and requests 2-4 find them cached
    assert hits >= 3 * BLOCK, f"a shared 120-word prefix should give >= {3 * BLOCK} cached tokens, got {hits}"
