"""Where Triton is not installed the lab still imports, says so in one line, and its kernel tests skip."""
import importlib.util
import subprocess
import sys

import pytest
import torch

from labkit.labs import ROOT, lab_of_test


def _load_without_triton(request, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    path = ROOT / lab_of_test(request.path) / f"{request.config.getoption('--impl')}.py"
    spec = importlib.util.spec_from_file_location("triton_lab_without_triton", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_imports_and_refuses_kernels_in_one_line(request, monkeypatch):
    module = _load_without_triton(request, monkeypatch)
    assert "Triton is not installed" in module.TRITON_MISSING
    with pytest.raises(module.TritonUnavailable) as err:
        module.vector_add(torch.ones(3), torch.ones(3))
    assert "\n" not in str(err.value) and "make setup" in str(err.value)
    with pytest.raises(SystemExit) as stop:
        module.main([])
    assert "Triton is not installed" in str(stop.value.code)


def test_demo_prints_one_line_and_no_traceback(request):
    path = ROOT / lab_of_test(request.path) / "solution.py"
    code = ("import sys, runpy; sys.modules['triton'] = None; sys.modules['triton.language'] = None; "
            f"runpy.run_path({str(path)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1, f"expected exit status 1, got {done.returncode}: {done.stderr[-500:]}"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Triton is not installed" in lines[0], done.stderr
