"""Lab 04 tools: the calculator against Python's own arithmetic and a list of attacks, the registry's
validation and error observations, and the sandbox against an infinite loop, a memory bomb and a socket."""
import math
import os
import signal
import time

import pytest


SAFE = ["1 + 2 * 3", "(184000 / 12) * 2", "2 ** 10", "-3 ** 2", "7 // 2 + 7 % 3", "1.5e3 - 0.25", "+4 - -4"]
ATTACKS = ["__import__('os').system('echo hi')", "().__class__.__bases__", "x + 1", "abs(-3)", "'a' * 3",
           "[1, 2][0]", "lambda: 1", "9 ** 9 ** 9", "True + 1", "(1).real", "open('/etc/passwd')", "1 if 1 else 2"]


@pytest.mark.task("calculator")
def test_calculator_agrees_with_python_arithmetic(impl):
    for expression in SAFE:
        want = eval(expression, {"__builtins__": {}})  # trusted literals only, written in this test
        got = impl.calculator(expression)
        assert math.isclose(got, want), f"{expression!r}: expected {want}, got {got}"


@pytest.mark.task("calculator")
def test_calculator_exponent_cap_is_inclusive(impl):
    # the cap is 100: an exponent of exactly 100 is fine, 101 is refused, and a big base is not the problem
    assert impl.calculator("2 ** 100") == 2 ** 100, "2 ** 100 sits exactly at the cap and must be computed"
    assert impl.calculator("1000 ** 2") == 1_000_000, "a large base with a small exponent is fine"
    with pytest.raises(ValueError):
        impl.calculator("2 ** 101")


@pytest.mark.task("calculator")
@pytest.mark.parametrize("expression", ATTACKS)
def test_calculator_refuses_everything_but_arithmetic(impl, expression):
    with pytest.raises(ValueError):
        impl.calculator(expression)


@pytest.mark.task("tool-registry")
def test_registry_validates_and_reports_errors_as_observations(impl):
    registry = impl.ToolRegistry([
        impl.Tool("add", "add two integers", {"type": "object", "properties": {"a": {"type": "integer"},
                  "b": {"type": "integer"}}, "required": ["a", "b"], "additionalProperties": False},
                  lambda a, b: a + b),
        impl.Tool("boom", "always fails", {"type": "object", "properties": {}}, lambda: 1 / 0)])
    assert registry.call("add", {"a": 2, "b": 3}) == "5", "a valid call returns str(result)"
    for name, args, fragment in [("add", {"a": 2}, "'b' is a required property"),
                                 ("add", {"a": 2, "b": "3"}, "is not of type 'integer'"),
                                 ("add", {"a": 1, "b": 2, "c": 3}, "Additional properties"),
                                 ("nope", {}, "unknown tool"), ("boom", {}, "ZeroDivisionError")]:
        got = registry.call(name, args)
        assert got.startswith("error:") and fragment in got, \
            f"call {name}({args}) should return an 'error: ...' observation mentioning {fragment!r}, got {got!r}"


@pytest.mark.task("tool-registry")
def test_default_tools_answer_from_the_documents(impl):
    registry = impl.default_tools()
    hit = registry.call("search_docs", {"query": "Ostrand lighthouse tall"})
    assert "38 metres" in hit, f"expected the lighthouse fact in the search result, got {hit!r}"
    assert hit == str(impl.search_docs("Ostrand lighthouse tall")), \
        f"a tool's text result should reach the model as is (str, not repr), got {hit!r}"
    assert registry.call("calculator", {"expression": "540 / 36"}) == "15.0", "calculator through the registry"
    assert registry.call("search_docs", {"query": "x", "k": 9}).startswith("error:"), "k above the schema's maximum"


@pytest.mark.task("sandbox")
def test_sandbox_runs_code_and_returns_stdout(impl):
    result = impl.run_python("print(sum(range(10)))")
    assert result.ok and result.stdout.strip() == "45", f"expected stdout '45', got {result}"
    failed = impl.run_python("raise SystemExit(3)")
    assert failed.returncode == 3 and not failed.ok, f"expected exit code 3, got {failed}"


SPAWNS_AND_SPINS = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(60)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
while True:
    pass
"""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"     # a zombie has already died
    except FileNotFoundError:
        return False


@pytest.mark.task("sandbox")
def test_sandbox_timeout_kills_the_whole_process_tree(impl):
    # the CPU limit is set above the wall-clock timeout, so it is the timeout that has to end the run
    result = impl.run_python(SPAWNS_AND_SPINS, timeout=3.0, cpu_seconds=30)
    pid = int(result.stdout.split()[0]) if result.stdout.split() else None
    try:
        assert result.timed_out and not result.ok, f"the spinning program should hit the timeout, got {result}"
        assert pid is not None, f"the program should have printed its child's pid, got {result}"
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "a process started by the sandboxed code must die with it on timeout (kill the group)"
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.task("sandbox")
def test_sandbox_kills_an_infinite_loop(impl):
    result = impl.run_python("while True:\n    pass", timeout=3.0, cpu_seconds=1)
    assert not result.ok, f"an endless loop must not finish normally: {result}"
    assert result.timed_out or (result.returncode is not None and result.returncode < 0), \
        f"expected the wall-clock timeout or a CPU-limit signal, got {result}"


@pytest.mark.task("sandbox")
def test_sandbox_memory_bomb_fails(impl):
    result = impl.run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert not result.ok and "allocated" not in result.stdout, f"a 2 GiB allocation must fail under 256 MiB: {result}"
    assert "MemoryError" in result.stderr or (result.returncode or 0) < 0, f"expected a MemoryError, got {result}"


@pytest.mark.task("sandbox")
def test_sandbox_has_no_network_and_no_environment(impl):
    result = impl.run_python("import socket\nsocket.socket().connect(('127.0.0.1', 9))")
    assert not result.ok and "network is disabled" in result.stderr, f"expected the sandbox's refusal, got {result}"
    env = impl.run_python("import os\nprint(sorted(os.environ))")
    assert env.stdout.strip() in ("[]", "['LC_CTYPE']"), f"the child should get an empty environment, got {env.stdout!r}"
