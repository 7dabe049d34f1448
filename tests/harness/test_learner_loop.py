"""The learner's loop as a learner meets it, in a throwaway copy of the project holding one lab: an endless loop,
a crash or Ctrl-C in a TODO still gives a task table; every make verb the README documents runs end to end."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.labs import ROOT

LAB = "llm-engineer/phase-01-foundations-text/lab-01-tokenization-from-scratch"
NAME = "lab-01-tokenization-from-scratch"
FILLED = "return text.split()"  # the [whitespace] task's answer in solution.py


def make_sandbox(root: Path, lab_source: str | None = None) -> Path:
    """A copy of the project with one lab; lab.py is the learner's file (`lab_source`, default: the scaffold)."""
    for name in ("labkit", "Makefile", "pyproject.toml", "conftest.py", "README.md", "CATALOG.md",
                 "requirements.lock", "requirements.in", "system-design", "interview-prep"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)  # copy2 keeps make's stamp valid
    shutil.copytree(ROOT / LAB, root / LAB, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / LAB, root / "tests" / LAB, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".venv").symlink_to(ROOT / ".venv")
    if lab_source is not None:
        (root / LAB / "lab.py").write_text(lab_source)
    return root


def learner_file(replacement: str) -> str:
    """A finished lab.py (the solution) whose [whitespace] answer is replaced by `replacement`."""
    source = (ROOT / LAB / "solution.py").read_text()
    assert source.count(FILLED) == 1
    return source.replace(FILLED, replacement)


def env_for(root: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1", **extra}


def check(root: Path, *args, timeout=240, **env):
    return subprocess.run([sys.executable, "-m", "labkit", "check", NAME, *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout, env=env_for(root, **env))


def row(output: str, task: str) -> str:
    found = [line for line in output.splitlines() if f"[{task}]" in line and "tests" in line]
    assert found, f"no table row for [{task}] in:\n{output[-3000:]}"
    return found[0]


def test_endless_loop_becomes_a_timeout_row_and_the_table_still_prints(tmp_path):
    root = make_sandbox(tmp_path, learner_file("while True:\n            pass"))
    started = time.perf_counter()
    result = check(root, "--task", "whitespace", LABKIT_TIMEOUT="3")
    assert time.perf_counter() - started < 200
    assert result.returncode == 1
    assert "TIMEOUT" in row(result.stdout, "whitespace") and "loop" in row(result.stdout, "whitespace")


@pytest.mark.parametrize("crash, how", [
    ("import os; os._exit(0)", "exit code 0"),
    ("import ctypes; ctypes.string_at(0)", "SIGSEGV"),
])
def test_a_process_killing_crash_still_gives_a_table_and_a_nonzero_exit(tmp_path, crash, how):
    root = make_sandbox(tmp_path, learner_file(crash))
    result = check(root)
    assert result.returncode != 0, result.stdout[-2000:]
    crashed = row(result.stdout, "whitespace")
    assert "CRASH" in crashed and how in crashed, crashed
    assert "pass" in row(result.stdout, "vocab")  # tests that ran before the crash keep their verdict


def test_sys_exit_in_a_task_is_a_failure_not_a_silent_success(tmp_path):
    root = make_sandbox(tmp_path, learner_file("import sys; sys.exit(0)"))
    result = check(root)
    assert result.returncode == 1
    assert "FAIL" in row(result.stdout, "whitespace") and "SystemExit" in row(result.stdout, "whitespace")


def test_ctrl_c_prints_the_table_so_far_and_one_line_without_a_traceback(tmp_path):
    started = tmp_path / "whitespace-task-started"
    root = make_sandbox(tmp_path / "project",
                        learner_file(f"open({str(started)!r}, 'w').close(); import time; time.sleep(300)"))
    cli = subprocess.Popen([sys.executable, "-m", "labkit", "check", NAME], cwd=root, env=env_for(root),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not started.exists() and time.monotonic() < deadline:  # wait until the tests reach the sleeping task
        time.sleep(0.2)
    assert started.exists(), "the sleeping task never started"
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130
    assert "Traceback" not in out + err, (out + err)[-3000:]
    assert "tasks pass" in out and "interrupted" in out, out[-3000:]
    assert "pass" in row(out, "vocab") and "not run" in row(out, "compression")


def test_unknown_task_gets_one_line_listing_the_tasks(tmp_path):
    result = check(ROOT, "--task", "vocabulary")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "whitespace" in result.stderr, result.stderr


def test_verbose_shows_details_of_failing_tasks_only(tmp_path):
    root = make_sandbox(tmp_path, learner_file('return text.split(" ")'))
    result = check(root, "--verbose")
    assert result.returncode == 1
    details = result.stdout.split("tasks pass", 1)[1]
    assert "---- [whitespace]" in details, details[-3000:]
    assert "---- [vocab]" not in details and "NotImplementedError" not in details


def make(root: Path, *args, timeout=600):
    return subprocess.run(["make", *args], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env=env_for(root))


# Every make verb the README shows, run in a copy holding one lab; a verb the README adds must be added here.
VERBS = {
    "help": (),
    "setup": (),
    "list": (),
    "status": (),
    "check": (f"LAB={NAME}",),
    "check-solutions": (),
    "run": (f"LAB={NAME}",),
    "progress": (),
    "scaffold": (),
    "bench": (f"LAB={NAME}",),
    "mistakes": (f"LAB={NAME}",),
    "test": (),
    "test-portability": ("CPU_CAPS=default native",),
    "capacity": ("SCENARIO=70b-pretraining-1024-h100",),
    "design-docs": ("CHECK=1",),
    "quiz": ("TRACK=cv", "LIST=1"),
}


def test_readme_documents_no_make_verb_that_is_not_exercised_here():
    documented = set(re.findall(r"\bmake ([a-z][a-z-]*)", (ROOT / "README.md").read_text()))
    assert documented - set(VERBS) == set(), f"README verbs without an end-to-end test: {documented - set(VERBS)}"
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert documented <= targets, f"README verbs the Makefile lacks: {documented - targets}"


@pytest.mark.slow
def test_every_documented_make_verb_runs_end_to_end(tmp_path):
    root = make_sandbox(tmp_path)
    failures = []
    for verb, args in VERBS.items():
        result = make(root, verb, *args)
        expected_rc = 2 if verb == "check" else 0  # make says 2 when `check` reports tasks left (scaffold)
        if result.returncode != expected_rc or "Traceback" in result.stdout + result.stderr:
            failures.append(f"make {verb} {' '.join(args)}: exit {result.returncode}\n"
                            f"{(result.stdout + result.stderr)[-1500:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_run_with_impl_lab_stops_at_the_first_todo(tmp_path):
    root = make_sandbox(tmp_path)
    result = make(root, "run", f"LAB={NAME}", "IMPL=lab")
    assert result.returncode != 0 and "unrecognized arguments" not in result.stderr, result.stderr
    assert "Next task: [" in result.stderr, result.stderr


@pytest.mark.slow
def test_progress_is_cached_per_lab_and_prints_only_the_table(tmp_path):
    root = make_sandbox(tmp_path)
    first = make(root, "progress")
    assert first.returncode == 0, first.stdout + first.stderr
    second = make(root, "progress")  # nothing changed: read from the cache, no pytest run at all
    assert "grading" not in second.stdout and "0/5" in second.stdout, second.stdout
    assert "failed" not in second.stdout and "error" not in second.stdout.lower(), second.stdout
    (root / LAB / "lab.py").write_text(learner_file(FILLED))  # the learner finishes the lab
    third = make(root, "progress")
    assert "grading 1 lab" in third.stdout and "5/5" in third.stdout, third.stdout
