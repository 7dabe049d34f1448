"""The classic-mistakes check: a catalog must apply exactly where it says, a caught mistake passes, a surviving one
fails the run and is named, the file on disk is never touched, and a mistake reaches code loaded in a subprocess."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit import mistakes
from labkit.labs import ROOT

SOLUTION = textwrap.dedent('''
    def mean(xs: list[float]) -> float:
        """Arithmetic mean."""
        # BEGIN SOLUTION [mean] Sum over count.
        return sum(xs) / len(xs)
        # END SOLUTION


    def variance(xs: list[float]) -> float:
        """Sample variance (n - 1 in the denominator)."""
        # BEGIN SOLUTION [variance] Squared deviations from the mean, over n - 1.
        m = mean(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
        # END SOLUTION
''')

TESTS = textwrap.dedent('''
    import subprocess, sys
    import pytest

    @pytest.mark.task("mean")
    def test_mean(impl):
        assert impl.mean([1.0, 2.0, 6.0]) == 3.0

    @pytest.mark.task("variance")
    def test_variance_in_a_fresh_process(impl):
        # loads the lab again in a subprocess, as distributed tests do: the mistake must reach it too
        code = ("from labkit.labs import load_impl; "
                "print(load_impl('llm-engineer/phase-00-toy/lab-01-stats').variance([1.0, 2.0, 6.0]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert float(out) == 7.0
''')

TOY = "llm-engineer/phase-00-toy/lab-01-stats"


def toy_project(root: Path, catalog: str) -> Path:
    for name in ("labkit", "pyproject.toml", "conftest.py"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    (root / TOY).mkdir(parents=True)
    (root / TOY / "solution.py").write_text(SOLUTION)
    (root / TOY / "mistakes.toml").write_text(textwrap.dedent(catalog))
    (root / "tests" / TOY).mkdir(parents=True)
    (root / "tests" / TOY / "test_stats.py").write_text(TESTS)
    return root


def run_mistakes(root: Path):
    return subprocess.run([sys.executable, "-m", "pytest", f"tests/{TOY}", "--mistakes", "-q", "-p", "no:randomly"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})


CAUGHT = '''
    [[mistake]]
    task = "variance"
    says = "population variance (divides by n)"
    before = "/ (len(xs) - 1)"
    after = "/ len(xs)"
'''
SURVIVES = '''
    [[mistake]]
    task = "mean"
    says = "sorts before summing (harmless, so no test can catch it)"
    before = "return sum(xs) / len(xs)"
    after = "return sum(sorted(xs)) / len(xs)"
'''


def test_a_caught_mistake_passes_even_when_the_task_is_checked_in_a_subprocess(tmp_path):
    root = toy_project(tmp_path, CAUGHT)
    result = run_mistakes(root)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "caught    [variance] population variance" in result.stdout
    assert "1/1 caught (kill rate 100.0%)" in result.stdout
    assert (root / TOY / "solution.py").read_text() == SOLUTION  # applied in memory only


def test_a_surviving_mistake_fails_the_run_and_is_named(tmp_path):
    root = toy_project(tmp_path, CAUGHT + SURVIVES)
    result = run_mistakes(root)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "SURVIVED  [mean] sorts before summing" in result.stdout
    assert f"SURVIVED {TOY}#2 [mean]" in result.stdout and "1/2 caught" in result.stdout


@pytest.mark.parametrize("entry, complaint", [
    ('task = "mean"\nsays = "x"\nbefore = "len(xs)"\nafter = "1"', "occurs 2 times"),
    ('task = "mean"\nsays = "x"\nbefore = "m = mean(xs)"\nafter = "m = 0"', "not inside a [mean] region"),
    ('task = "mean"\nsays = "x"\nbefore = "Arithmetic mean."\nafter = "Mean."', "not inside a [mean] region"),
    ('task = "mean"\nsays = "x"\nbefore = "return sum(xs) / len(xs)"\nafter = "return sum(xs) /"', "does not parse"),
    ('task = "mean"\nsays = "x"\nbefore = "sum(xs)"\nafter = "sum(xs)"', "the same text"),
    ('task = "mean"\nbefore = "sum(xs)"\nafter = "sum(xs)"', "missing says"),
    ('task = "mean"\nsays = "no (?!\\S) escapes in basic strings"\nbefore = "a"\nafter = "b"', "not valid TOML"),
])
def test_a_catalog_entry_that_cannot_apply_is_refused_with_its_place(tmp_path, entry, complaint):
    root = toy_project(tmp_path, "[[mistake]]\n" + entry + "\n")
    with pytest.raises(mistakes.CatalogError, match=r"mistakes\.toml") as err:
        mistakes.load_catalog(root / TOY)
    assert complaint in str(err.value)


def test_unknown_mistake_number_in_the_environment_is_an_error(tmp_path, monkeypatch):
    root = toy_project(tmp_path, CAUGHT)
    monkeypatch.setenv(mistakes.ENV, f"{root / TOY}#7")
    with pytest.raises(mistakes.CatalogError, match="has no mistake 7"):
        mistakes.active(root / TOY)


def test_the_cli_runs_each_lab_in_its_own_process_and_totals_them(tmp_path):
    root = toy_project(tmp_path, CAUGHT + SURVIVES)
    result = subprocess.run([sys.executable, "-m", "labkit", "mistakes", "--jobs", "2"], cwd=root,
                            capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert result.returncode == 1, result.stdout[-2000:]
    assert f"FAIL {TOY}: 1/2 caught" in result.stdout
    assert "SURVIVED  [mean] sorts before summing" in result.stdout
    assert "classic mistakes: 1/2 caught (kill rate 50.0%) across 1 labs" in result.stdout


def test_a_lab_whose_run_dies_is_reported_not_silently_passed(tmp_path):
    crash = SURVIVES.replace('after = "return sum(sorted(xs)) / len(xs)"', 'after = "return __import__(\'os\')._exit(0)"')
    root = toy_project(tmp_path, crash)  # the mistake kills the pytest process in the middle of its lab
    result = subprocess.run([sys.executable, "-m", "labkit", "mistakes"], cwd=root, capture_output=True,
                            text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert result.returncode == 1 and f"FAIL {TOY}: 0/1 caught" in result.stdout, result.stdout[-2000:]
