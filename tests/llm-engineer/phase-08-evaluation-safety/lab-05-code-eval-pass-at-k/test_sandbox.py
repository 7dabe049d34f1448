"""Untrusted code behind the guard, inside phase 7's jail: each attack is tried for real and must be contained with
a clear verdict, while honest code (writing and deleting its own files) still runs."""
import os

import pytest


def guarded(impl, code, **limits):
    """Run code behind the learner's guard in the jail; returns the raw SandboxResult."""
    limits = {"timeout": 10, "memory_mb": 512, "cpu_seconds": 5, **limits}
    return impl.jail.run_python(impl.guard_prelude() + "\n" + code, **limits)


def refused(result, what):
    return result.returncode not in (0, None) and "SandboxViolation" in result.stderr and what in result.stderr


@pytest.mark.task("guard")
@pytest.mark.parametrize("code, what", [
    ("import os\nwhile True:\n    os.fork()", "os.fork"),
    ("import posix\nposix.fork()", "os.fork"),
    ("import os\nos.system('echo hi')", "os.system"),
    ("import subprocess\nsubprocess.run(['echo', 'hi'])", "subprocess"),
    ("import os\nos.kill(1, 9)", "os.kill"),
    ("import os\nos.execv('/bin/sh', ['sh'])", "os.execv"),
])
def test_process_creation_and_signals_are_refused(impl, code, what):
    result = guarded(impl, code)
    assert refused(result, what), f"expected a SandboxViolation naming {what}; got rc={result.returncode}, " \
                                  f"stderr={result.stderr[-300:]!r}"


@pytest.mark.task("guard")
def test_files_outside_the_sandbox_cannot_be_deleted_renamed_or_written(impl, tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    attacks = [
        ("os.remove", f"import os\nos.remove({str(victim)!r})"),
        ("os.unlink", f"import os\nos.unlink({str(victim)!r})"),
        ("shutil.rmtree", f"import shutil\nshutil.rmtree({str(tmp_path)!r})"),
        ("os.rename", f"import os\nos.rename({str(victim)!r}, 'stolen.txt')"),  # pulling a file in
        ("os.rename", f"import os\nopen('mine.txt', 'w').write('x')\nos.rename('mine.txt', {str(tmp_path / 'out')!r})"),
        ("writing outside", f"open({str(victim)!r}, 'w').write('gone')"),
        ("writing outside", f"open({str(tmp_path / 'new.txt')!r}, 'a').write('x')"),
        ("os.remove", "import os\nos.remove('../../' * 8 + 'etc/hostname')"),  # a relative path that climbs out
    ]
    for what, code in attacks:
        result = guarded(impl, code)
        assert refused(result, what), f"{what}: rc={result.returncode}, stderr={result.stderr[-300:]!r}"
    assert victim.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["keep.txt"]


@pytest.mark.task("guard")
def test_honest_code_may_use_its_own_folder(impl):
    code = ("import os, shutil\n"
            "open('out.txt', 'w').write('ok')\n"
            "os.makedirs('sub/dir')\n"
            "os.rename('out.txt', 'sub/out.txt')\n"
            "assert open('sub/out.txt').read() == 'ok'\n"
            "shutil.rmtree('sub')\n"
            "print(sorted(os.listdir('.')))\n")
    result = guarded(impl, code)
    assert result.returncode == 0, result.stderr[-500:]
    assert "'sub'" not in result.stdout


def result(impl, stdout="", stderr="", returncode=0, timed_out=False):
    return impl.jail.SandboxResult(stdout, stderr, returncode, timed_out)


@pytest.mark.task("verdict")
def test_each_outcome_gets_its_verdict(impl):
    cases = [
        (result(impl, returncode=None, timed_out=True), "timeout"),
        (result(impl, returncode=-24), "timeout"),  # SIGXCPU: the CPU-seconds limit
        (result(impl, returncode=-9, stderr="Traceback...\nMemoryError"), "timeout"),  # killed wins over output
        (result(impl, returncode=1, stderr="Traceback...\nMemoryError"), "memory"),
        (result(impl, returncode=1, stderr="SandboxViolation: sandbox: os.fork is not allowed"), "forbidden"),
        (result(impl, returncode=1, stderr="PermissionError: network is disabled in the sandbox"), "forbidden"),
        (result(impl, returncode=0, stdout="fine"), "passed"),
        (result(impl, returncode=1, stderr="Traceback...\n  assert f(2) == 4\nAssertionError"), "failed"),
        (result(impl, returncode=1, stderr="Traceback...\nNameError: name 'x' is not defined"), "error"),
        (result(impl, returncode=-11), "error"),  # a segfault is not a timeout
    ]
    got = [(impl.classify(r).status, expected) for r, expected in cases]
    assert all(g == e for g, e in got), f"(got, expected): {got}"


@pytest.mark.task("verdict")
def test_error_verdicts_carry_the_last_line_of_stderr(impl):
    verdict = impl.classify(result(impl, returncode=1, stderr="Traceback...\nNameError: name 'x' is not defined\n"))
    assert verdict.detail == "NameError: name 'x' is not defined"
    assert not verdict.passed and impl.classify(result(impl)).passed


@pytest.mark.task("verdict")
@pytest.mark.parametrize("attack, expected", [
    ("infinite loop", "timeout"), ("fork bomb", "forbidden"), ("huge allocation", "memory"),
    ("open a socket", "forbidden"), ("delete outside", "forbidden"),
])
def test_real_attacks_are_contained_with_a_clear_verdict(impl, attack, expected):
    verdict = impl.run_untrusted(impl.ATTACKS[attack][0], timeout=5, cpu_seconds=2)
    assert verdict.status == expected, f"{attack}: expected {expected}, got {verdict}"


@pytest.mark.task("verdict")
def test_the_parent_environment_does_not_leak(impl, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    verdict = impl.run_untrusted("import os\nassert 'OPENAI_API_KEY' not in os.environ and 'HOME' not in os.environ")
    assert verdict.status == "passed", verdict
