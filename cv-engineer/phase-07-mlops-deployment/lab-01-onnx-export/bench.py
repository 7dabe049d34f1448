"""PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8 (dynamic and static) and fp16, side by side.

The same trained DigitCNN, the same 1,000 held-out test digits, one thread for every runtime (a fair per-core
comparison; ORT and torch would otherwise each grab every core). For each variant: file size, test accuracy,
top-1 agreement with PyTorch, and latency (p50 / p95 over timed calls after warm-up) at batch 1 and batch 32,
with throughput and the ratio to PyTorch eager measured in the same run. Variants are timed in interleaved
rounds so a burst of other work on a shared machine hits them all alike.
With CUDA present, PyTorch fp32 and fp16 on the GPU are added (onnxruntime-gpu is not installed here, so ORT
stays on CPU). Run: make bench LAB=cv-engineer/phase-07-mlops-deployment/lab-01-onnx-export
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import labkit

lab = labkit.reuse("cv-engineer/phase-07-mlops-deployment/lab-01-onnx-export")


def runners(model, paths: dict) -> dict:
    """name -> (file path or None, fn(x float32 numpy) -> logits numpy)."""
    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    out = {"pytorch eager fp32": (None, eager)}
    for label, key in (("ort fp32", "fp32"), ("ort fp32 (extended opt)", "fp32_ort_optimized"),
                       ("ort int8 dynamic", "int8_dynamic"), ("ort int8 static (QDQ)", "int8_static"),
                       ("ort fp16", "fp16")):
        session = lab.make_session(paths[key], providers=["CPUExecutionProvider"], threads=1)
        out[label] = (paths[key], lambda x, s=session: lab.run_onnxruntime(s, x))
    if torch.cuda.is_available():
        for label, dtype in (("pytorch cuda fp32", torch.float32), ("pytorch cuda fp16", torch.float16)):
            gpu = lab.build_model(model.config).to("cuda", dtype)
            gpu.load_state_dict(model.state_dict())
            gpu.eval()

            def on_gpu(x, m=gpu, dt=dtype):
                with torch.inference_mode():
                    y = m(torch.from_numpy(x).to("cuda", dt)).float().cpu().numpy()  # .cpu() waits for the GPU
                return y
            out[label] = (None, on_gpu)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60, help="timed calls per variant and batch size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the best round's p50 is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = lab.trained_model(progress=True)
    splits = lab.digit_splits(model.config["seed"], model.config["n_val"], model.config["n_test"])
    paths = lab.export_all(model, lab.OUT / "bench", splits, progress=True)
    test_x, test_y = lab.to_model_input(splits["test"][0]), splits["test"][1]
    variants = runners(model, paths)
    eager_pred = variants["pytorch eager fp32"][1](test_x).argmax(1)

    quality = {}
    for name, (path, fn) in variants.items():
        pred = np.concatenate([fn(test_x[i:i + 250]) for i in range(0, len(test_x), 250)]).argmax(1)
        quality[name] = ((path.stat().st_size / 1e6) if path else None, (pred == test_y).mean(),
                         (pred == eager_pred).mean())

    from tqdm.auto import tqdm

    latency = {(name, b): [] for name in variants for b in (1, 32)}
    for _ in tqdm(range(args.rounds), desc="timing rounds"):
        for batch in (1, 32):
            x = np.ascontiguousarray(test_x[:batch])
            for name, (_, fn) in variants.items():
                latency[(name, batch)].append(lab.benchmark(lambda: fn(x), warmup=5, iters=args.iters))
    best = {key: min(runs, key=lambda r: r["p50_ms"]) for key, runs in latency.items()}

    base1, base32 = best[("pytorch eager fp32", 1)]["p50_ms"], best[("pytorch eager fp32", 32)]["p50_ms"]
    fp32_mb = quality["ort fp32"][0]
    print(f"\n{'variant':26s} {'MB':>6s} {'size':>6s} {'acc':>6s} {'=eager':>7s} | {'b1 p50':>8s} {'p95':>7s} "
          f"{'vs eager':>8s} | {'b32 p50':>8s} {'img/s':>8s} {'vs eager':>8s}")
    for name in variants:
        mb, acc, agree = quality[name]
        b1, b32 = best[(name, 1)], best[(name, 32)]
        size = f"{mb:6.3f} {mb / fp32_mb:5.2f}x" if mb else f"{'':6s} {'':6s}"
        print(f"{name:26s} {size} {acc:6.3f} {agree:7.3f} | {b1['p50_ms']:6.3f}ms {b1['p95_ms']:5.2f}ms "
              f"{base1 / b1['p50_ms']:7.2f}x | {b32['p50_ms']:6.3f}ms {lab.throughput_fps(b32['p50_ms'], 32):8.0f} "
              f"{base32 / b32['p50_ms']:7.2f}x")
    print("\n'vs eager' = PyTorch eager p50 / this p50 (above 1 = faster); 'size' = file size / ORT fp32 file;"
          " '=eager' = top-1 agreement with PyTorch on the 1,000 test digits.")
    print(f"TensorRT: {'available' if lab.tensorrt_available() else 'not available here (needs an NVIDIA GPU and tensorrt)'}")


if __name__ == "__main__":
    main()
