"""Scenario files and the capacity.py command line: every shipped scenario evaluates, its key figures equal the
hand-worked values in the comments, and the CLI prints sheets, lists scenarios and refuses bad input in one line."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DESIGN = Path(__file__).resolve().parents[2] / "system-design"

SCENARIOS = sorted(p.stem for p in (DESIGN / "scenarios").glob("*.toml"))
PY = sys.executable


def test_there_are_scenarios_for_every_document():
    assert len(SCENARIOS) >= 11, SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_shipped_scenario_evaluates_and_prints(sheets, name):
    sheet = sheets.load(name)
    assert sheet.title and sheet.about, f"{name}: give it a title and an about paragraph"
    derived = [q for q in sheet.lines.values() if q.formula]
    assert derived, f"{name}: no [calc] lines"
    assert all(q.what for q in sheet.lines.values()), f"{name}: every line needs a `what`"
    text = sheets.render_sheet(sheet)
    assert sheet.title in text
    missing = [q.name for q in derived if f"= {q.formula}\n" not in text or q.name not in text]
    assert not missing, f"{name}: formulas not shown for {missing}"


# Key figures, worked by hand from each scenario's inputs.
EXPECTED = {
    "70b-pretraining-1024-h100": {
        "total_flops": 6.3e23,                      # 6 · 70e9 · 1.5e12
        "gpu_s": 1.59256e9,                         # 6.3e23 / (989e12 · 0.4) = 6.3e23 / 3.956e14
        "days": 17.9999,                            # 1.59256e9 / 1024 / 86400
        "quoted_gpu_s": 3.5e9,                      # 6.3e23 / (400e12 · 0.45)
        "quoted_days": 39.5598,                     # 3.5e9 / 1024 / 86400
        "nodes": 128, "dp": 64,                     # 1024 / 8; 1024 / (4 · 4)
        "train_state_bytes": 1.12e12,               # 16 · 70e9
        "state_per_gpu": 18.3203125e9,              # 4 · 70e9 / 16 + 12 · 70e9 / 1024
        "steps": 357_628,                           # ceil(1.5e12 / 4,194,304) = ceil(357,627.87)
        "pp_bubble": 3 / 19,                        # (4 − 1) / (16 + 4 − 1)
    },
    "llm-gateway-100k-qps": {
        "llama3_8b_kv_8k": 1_073_741_824,           # 2 · 32 · 8 · 128 · 8192 · 2
        "large_kv_128k_bf16": 42_949_672_960,       # 2 · 80 · 8 · 128 · 131072 · 2
        "large_kv_128k_fp8": 21_474_836_480,
        "naive_gpus": 73_334,                       # ceil(70e6 / 3000) + 30e6 / 600 = 23,334 + 50,000
        "quoted_rate_cost_per_mtok": 0.370370,      # 4 / (3000 · 3600) · 1e6
        "rate_for_quoted_cost": 5555.56,            # 4 / 3600 / 0.2e-6
        "price_for_quoted_cost": 2.16,              # 0.2e-6 · 3000 · 3600
        "small_prefill_per_gpu": 61612.70,          # 1979e12 · 0.5 / (2 · 8.03e9)
        "small_prefill_gpus": 1299,                 # ceil(70,000 · 800 / (61,612.70 · 0.7)) = ceil(1298.4)
        "long_seqs_per_group": 11,                  # floor((320e9 − 70.6e9) / 21,474,836,480) = floor(11.61)
    },
    "rag-100m-docs-1k-qps": {
        "chunks": 500e6,
        "vector_bytes": 1.536e12,                   # 500e6 · 768 · 4
        "index_bytes": 1.666065e12,                 # 500e6 · (3072 + 4 · (64 + 32/31))
        "shards": 5, "search_nodes": 10,            # ceil(1.666e12 / 358.4e9) = ceil(4.65); × 2 replicas
        "rerank_gpus": 71,                          # 2 · 560e6 · 17.5e6 = 1.96e16; / (989e12 · 0.4 · 0.7) = 70.78
        "embed_gpu_hours": 97.9345,                 # 2 · 110e6 · 1.5e11 = 3.3e19; / 9.36e13 = 352,564 s
    },
    "finetuning-platform": {
        "lora_trainable": 41_943_040,               # rank 16 on Llama-3-8B's seven projections × 32 layers
        "large_full_per_gpu": 35.3e9,               # 16 · 70.6e9 / 32
        "large_min_gpus": 15,                       # ceil(1.1296e12 / 80e9) = ceil(14.12)
        "cluster_gpus": 32,                         # the average needs 14, one 70B job needs 32 at once
        "lora_compute_share": 2 / 3,
    },
    "eval-platform-per-checkpoint": {
        "n_for_margin": 385,                        # ceil(1.96² · 0.25 / 0.05²) = ceil(384.16)
        "n_for_power": 783,                         # ceil(782.53)
        "mmlu_tokens": 33_700_800,                  # 14,042 · 4 · 600
        "judge_cost": 16.8,                         # 800 · 2 · (1500 · 3 + 400 · 15) / 1e6
    },
    "pretraining-data-10tb": {
        "lsh_bands": 9, "lsh_rows": 13, "perms_used": 117,
        "quoted_perms_needed": 1024,
        "web_tokens": 3.85875e11,                   # 10e12 · 0.9 · 0.5 · 0.5 · 0.7 · 0.98 / 4
        "id_bytes_small": 2, "id_bytes_large": 4,   # 50,257 < 2^16 ≤ 128,256
        "math_epochs": 5.0,                         # 0.1 · 1.5e12 / 30e9
    },
    "cv-image-pipeline": {
        "avg_rps": 578.704,                         # 50e6 / 86400
        "framework_workers": 60,                    # 100 · 30 · 0.020
        "max_decoded_bytes": 50_331_648,            # 4096 · 4096 · 3
        "nms_pairs_raw": 35_275_800,                # 8400 · 8399 / 2
    },
    "video-analytics-1000-cameras": {
        "frames_sampled": 10_000,
        "raw_frame": 6_220_800,
        "kafka_bytes_full": 6e9,                    # 30,000 · 200 kB
        "kafka_disk": 4.32e13,                      # 10,000 · 200e3 · 7200 s · 3
        "batch": 32,                                # 20 ms wait + 22 ms fits 50 ms; + 35 ms does not
        "gpus": 11,                                 # ceil(10,000 / (1454.5 · 0.7)) + 1 = ceil(9.82) + 1
        "quoted_gpus": 15,                          # ceil(30,000 / 2100) = ceil(14.29)
        "latency_total": 0.121,
        "event_bytes_full": 155.52e12,              # 300 · 200e3 · 86400 · 30
    },
    "resnet50-imagenet-8-a100": {
        "example_s": 5.8333e-3,                     # 2 · 7/8 · 1e9 / 300e9
        "quoted_example_s": 1.6667e-3,              # 1e9 / 600e9
        "ddp_per_gpu": 40e9, "fsdp_per_gpu": 10e9,  # 2.5e9 · 16 and a quarter of it
        "state_1b": 16e9, "state_10b": 160e9,
        "lr_linear": 0.8, "lr_sqrt": 0.282843,      # 0.1 · 2048/256; 0.1 · sqrt(8)
        "efficiency": 0.9375,                       # 7.5 / 8
    },
    "gpu-accelerators-yolov8m": {
        "pcie_bw": 31.5077e9,                       # 16e9 · 16 · 128/130 / 8
        "mxu_macs": 16_384,
        "tpu_peak": 2.752512e14,                    # 8 · 16384 · 2 · 1.05e9
        "batch_fp32": 314_572_800,                  # 64 · 640 · 640 · 3 · 4
        "copy_fp32": 9.984e-3,                      # 314,572,800 / 31.5077e9
        "resolution_gain": 2.36686,                 # (640 / 416)²
    },
    "yolov8m-serving-100ms-slo": {
        "batch": 32,                                # 50 ms queue + 22 ms ≤ 80 ms; + 35 ms > 80 ms
        "replicas": 2,                              # ceil(1000 / (1454.5 · 0.7)) + 1
        "tight_batch": 8, "tight_replicas": 4,      # 12 ms ≤ 20 ms; ceil(1000 / 466.7) + 1
        "quoted_hpa_pods": 10,
        "hpa_target": 1018.18,                      # 1454.5 · 0.7
    },
}


@pytest.mark.parametrize("name,key", [(n, k) for n, d in EXPECTED.items() for k in d])
def test_key_figures_match_hand_computation(sheets, name, key):
    expected = EXPECTED[name][key]
    got = getattr(sheets.load(name), key).value
    assert got == pytest.approx(expected, rel=1e-4), f"{name}.{key}: expected {expected}, got {got}"


def test_every_scenario_has_hand_checked_figures():
    assert sorted(EXPECTED) == SCENARIOS, "add hand-worked expectations for new scenarios"


# ---------------------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,unit,text", [
    (1_073_741_824, "B", "1.07 GB"), (42_949_672_960, "B", "42.9 GB"), (1.12e12, "B", "1.12 TB"),
    (6.3e23, "FLOPs", "6.30e23 FLOPs"), (989e12, "FLOP/s", "989 TFLOP/s"), (3.5e9, "GPU-s", "3.5 billion GPU-s"),
    (23_334, "GPUs", "23,334 GPUs"), (39.5598, "days", "39.6 days"), (0.370370, "USD", "$0.37"),
    (0.085, "USD", "$0.085"), (1_770_000, "USD", "$1.77M"), (2.57e9, "USD/yr", "$2.57B/yr"),
    (0.4, "%", "40%"), (0.0686, "pp", "6.86 points"), (0.01, "pp", "1 point"), (6.44, "x", "6.44×"),
    (0.0583, "ms", "58.3 ms"), (1.5e12, "tokens", "1.5 trillion tokens"), (0.5, "", "0.5"),
])
def test_format_value(sheets, value, unit, text):
    assert sheets.format_value(value, unit) == text


# ---------------------------------------------------------------------------------------------------------
# Formula language: refuses what it does not allow, in one line
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("formula,message", [
    ("__import__('os')", "unknown function '__import__'"),
    ("open('x')", "unknown function 'open'"),
    ("n_gpus.real", "uses Attribute"),
    ("lambda: 1", "uses Lambda"),
    ("nope + 1", "unknown name 'nope'"),
    ("training_days(1e20, 0, 1e15, 0.5)", "n_gpus must be a whole number >= 1"),
    ("1 +", "cannot parse formula"),
])
def test_formulas_refuse_bad_expressions(sheets, formula, message):
    with pytest.raises(sheets.ScenarioError) as info:
        sheets.evaluate(formula, {"n_gpus": 8})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_formulas_evaluate_arithmetic_calls_lists_and_indexing(sheets):
    names = {"a": 3, "xs": [1, 2, 3]}
    assert sheets.evaluate("a ** 2 // 4 + xs[2] - -1", names) == 3 ** 2 // 4 + 3 + 1
    assert sheets.evaluate("ceil(sum(xs) / 4) + max(a, 7)", names) == 2 + 7
    low, high = sheets.evaluate("wilson_interval(5, 10)[0]", names), sheets.evaluate("wilson_interval(5, 10)[1]", names)
    assert low < 0.5 < high


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------
def run_cli(*args, cwd=None):
    return subprocess.run([PY, str(DESIGN / "capacity.py"), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_cli_prints_a_sheet_with_formulas():
    result = run_cli("70b-pretraining-1024-h100")
    assert result.returncode == 0, result.stderr
    assert "70B dense pretraining on 1024 H100s" in result.stdout
    assert "total_flops" in result.stdout and "= training_flops(n_params, n_tokens)" in result.stdout
    assert "6.30e23 FLOPs" in result.stdout and "3.5 billion GPU-s" in result.stdout


def test_cli_lists_every_scenario():
    result = run_cli("--list")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert listed == SCENARIOS


def test_cli_refuses_an_unknown_scenario_in_one_line():
    result = run_cli("no-such-scenario")
    assert result.returncode == 2
    err = result.stderr.strip()
    assert "\n" not in err and "unknown scenario 'no-such-scenario'" in err
    assert all(name in err for name in SCENARIOS), "the error lists the available scenarios"
    assert "Traceback" not in result.stderr


def test_cli_without_a_scenario_says_what_to_give():
    result = run_cli()
    assert result.returncode == 2 and "give a scenario name or path" in result.stderr


def test_cli_runs_a_copied_and_changed_scenario(tmp_path):
    # Doubling the GPUs halves the days: 17.9999 → 9.0 days.
    copy = tmp_path / "my-pretraining.toml"
    text = (DESIGN / "scenarios" / "70b-pretraining-1024-h100.toml").read_text()
    copy.write_text(text.replace('n_gpus = { value = 1024,', 'n_gpus = { value = 2048,'))
    result = run_cli(str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2,048 GPUs" in result.stdout and "→ 9 days" in result.stdout


def test_cli_reports_a_broken_formula_with_its_file_and_line(tmp_path):
    broken = tmp_path / "broken.toml"
    shutil.copy(DESIGN / "scenarios" / "cv-image-pipeline.toml", broken)
    broken.write_text(broken.read_text().replace('formula = "images_per_day / 86400"',
                                                 'formula = "images_per_day / seconds_per_day"'))
    result = run_cli(str(broken))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert "\n" not in err and "broken.toml: calc 'avg_rps': unknown name 'seconds_per_day'" in err


def test_cli_reports_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("title = \n")
    result = run_cli(str(bad))
    assert result.returncode == 2 and "bad.toml: not valid TOML" in result.stderr


def test_cli_reports_a_missing_file(tmp_path):
    result = run_cli(str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "no scenario file at" in result.stderr
