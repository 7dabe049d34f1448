"""The container's entry point: lab 02's FastAPI app over the ONNX file at $MODEL_PATH (mounted read-only).

`uvicorn serve:app` imports this module; lab 02 is imported from its own folder (labkit.reuse), never copied.
"""
import os
from pathlib import Path

import labkit

server = labkit.reuse("lab-02-fastapi-server")
MODEL = Path(os.environ.get("MODEL_PATH", "/models/digit_cnn.onnx"))
if not MODEL.is_file():
    raise SystemExit(f"no model at {MODEL}: run lab 02 once on the host and mount its outputs/ folder at /models")
app = server.build_app(server.load_session(MODEL), max_batch=32, max_wait_ms=5.0)
