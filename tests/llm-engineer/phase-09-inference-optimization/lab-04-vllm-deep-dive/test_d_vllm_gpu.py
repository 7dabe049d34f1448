"""On a CUDA machine (where `make setup-vllm` installs the official vllm): the same client against vLLM in bfloat16
with graph capture on, through a request-rate sweep. Skipped without a GPU."""
import math
import os

import pytest

from labkit import assets

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.mark.task("run-benchmark")
def test_official_vllm_on_cuda_serves_a_rate_sweep(impl, tmp_path):
    why = impl.vllm_available()
    if why:
        if os.environ.get("LABKIT_REQUIRE_VLLM") == "1":
            pytest.fail(f"LABKIT_REQUIRE_VLLM=1 but {why}")
        pytest.skip(why)
    port = impl.free_port()
    argv = impl.vllm_command(str(assets.smollm2_path()), port, dtype="bfloat16", block_size=16,
                             enforce_eager=False, max_model_len=1024)
    env = {k: v for k, v in impl.vllm_env().items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    env["VLLM_GPU_MEMORY_UTILIZATION"] = "0.5"
    with impl.ServerProcess(argv + ["--gpu-memory-utilization", "0.5"], port, tmp_path / "vllm.log", env=env,
                            startup_timeout=900) as server:
        workload = impl.make_workload(64, prompt_words=64, max_tokens=64, seed=0)
        rows = impl.sweep(server.url, "model", workload, [8.0, math.inf], max_concurrency=64,
                          extra={"ignore_eos": True})
    for rate, summary in rows:
        print(f"\nvLLM on CUDA @ {rate}/s: {summary.output_throughput:.0f} tok/s, TTFT p99 "
              f"{1e3 * summary.ttft['p99']:.1f} ms, TPOT p50 {1e3 * summary.tpot['p50']:.2f} ms")
        assert summary.completed == 64 and summary.output_tokens == 64 * 64, summary
    assert rows[1][1].output_throughput > rows[0][1].output_throughput * 0.9, "all at once should not be slower"
