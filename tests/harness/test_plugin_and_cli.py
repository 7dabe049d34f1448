"""The pytest plugin and the CLI as their users meet them: offline guard, gpu skips, per-task tables, and one-line
errors (never a traceback) for user mistakes."""
import re
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from labkit.labs import ROOT, LabNotFound, resolve_lab

LAB1 = "llm-engineer/phase-01-foundations-text/lab-01-tokenization-from-scratch"


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_outbound_connections_are_refused():
    with pytest.raises(ConnectionRefusedError, match="offline by construction"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_is_allowed():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].sendall(b"hi"), daemon=True).start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(2) == b"hi"
    server.close()


def test_gpu_tests_are_skipped_with_a_reason_without_cuda(tmp_path):
    (tmp_path / "test_gpu.py").write_text(textwrap.dedent("""
        import pytest, torch
        @pytest.mark.gpu
        def test_needs_cuda():
            assert torch.cuda.is_available()
    """))
    result = run("-m", "pytest", "-p", "labkit.plugin", "-rs", "-q", str(tmp_path / "test_gpu.py"), cwd=tmp_path)
    import torch
    if torch.cuda.is_available():
        assert "1 passed" in result.stdout, result.stdout
    else:
        assert "1 skipped" in result.stdout and "needs CUDA" in result.stdout, result.stdout


def test_misspelt_lab_gets_suggestions_not_a_traceback():
    result = run("-m", "labkit", "check", "lab-01-tokenisation-from-scratch")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Did you mean" in result.stderr and "lab-01-tokenization-from-scratch" in result.stderr


def test_resolve_lab_accepts_suffixes_and_tests_paths():
    assert str(resolve_lab("lab-01-tokenization-from-scratch")) == LAB1
    assert str(resolve_lab(f"tests/{LAB1}/")) == LAB1
    with pytest.raises(LabNotFound):
        resolve_lab("no-such-lab")


def test_scaffold_stops_at_first_todo_with_the_task_name():
    result = run(f"{LAB1}/lab.py")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "Next task: [" in result.stderr and f"make check LAB={LAB1}" in result.stderr


def test_check_on_untouched_scaffold_reports_every_task_todo():
    result = run("-m", "labkit", "check", "lab-01-tokenization-from-scratch")
    assert result.returncode == 1
    assert "0/5 tasks pass" in result.stdout, result.stdout[-2000:]
    assert re.search(r"todo +\[vocab\]", result.stdout) and "FAIL" not in result.stdout


def test_solution_run_prints_all_tasks_passing():
    result = run("-m", "pytest", f"tests/{LAB1}", "-q")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "(solution.py): 5/5 tasks pass" in result.stdout


def test_inverted_mode_requires_the_scaffold():
    result = run("-m", "pytest", f"tests/{LAB1}", "-q", "--inverted")
    assert result.returncode != 0 and "--impl=lab" in result.stderr
