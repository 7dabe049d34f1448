"""Invariants every lab keeps: no drift between solution.py and lab.py, the files and README headings the
contract asks for, graded tests for every task, tests that never import solution/lab by name."""
import ast
import re

import pytest

from labkit import mistakes
from labkit.labs import ROOT, all_labs
from labkit.labs import tests_dir as lab_tests_dir
from labkit.scaffold import generate, tasks_in

LABS = all_labs()
README_HEADINGS = ["Goal", "Concepts", "Steps", "Stack", "Data", "Run it", "Expected output", "How it is tested",
                   "Cost", "Talking points", "Resume bullet", "Extensions"]
TASK_MARK = re.compile(r"""mark\.task\(\s*["']([a-z0-9-]+)["']""")


def test_there_are_labs():
    assert LABS, "no lab folders found under the track folders"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_lab_py_is_generated_from_solution(lab):
    solution, scaffold = ROOT / lab / "solution.py", ROOT / lab / "lab.py"
    assert scaffold.exists(), f"{lab}/lab.py is missing: run `make scaffold`"
    assert scaffold.read_text() == generate(solution.read_text(), str(solution)), \
        f"{lab}/lab.py differs from what `make scaffold` generates from solution.py: run `make scaffold`"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_lab_has_its_files(lab):
    missing = [name for name in ("README.md", "solution.py", "lab.py", "requirements.txt")
               if not (ROOT / lab / name).exists()]
    assert not missing, f"{lab} lacks {', '.join(missing)}"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_readme_has_the_lab_template_headings(lab):
    text = (ROOT / lab / "README.md").read_text()
    headings = re.findall(r"^## (.+?)\s*$", text, flags=re.M)
    missing = [h for h in README_HEADINGS if h not in headings]
    assert not missing, f"{lab}/README.md lacks the headings: {', '.join('## ' + h for h in missing)}"
    assert text.startswith("# "), f"{lab}/README.md should start with a '# ' title"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_readme_says_how_to_run_the_files_outside_make(lab):
    run_it = (ROOT / lab / "README.md").read_text().split("## Run it", 1)[-1].split("\n## ", 1)[0]
    assert ".venv/bin/python" in run_it, f"{lab}/README.md: '## Run it' should show the .venv/bin/python commands"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_every_task_has_at_least_two_classic_mistakes(lab):
    """The catalog applies cleanly (each edit found once, inside its task's region) and covers every task; whether
    each mistake is caught is checked by `make mistakes`, the third stage of `make test`."""
    try:
        catalog = mistakes.load_catalog(lab)
    except mistakes.CatalogError as err:
        pytest.fail(str(err))
    counts = {task: sum(m.task == task for m in catalog) for task in tasks_in(ROOT / lab / "solution.py")}
    short = {task: n for task, n in counts.items() if n < mistakes.MIN_PER_TASK}
    assert not short, (f"{lab}/{mistakes.CATALOG}: tasks with fewer than {mistakes.MIN_PER_TASK} classic mistakes: "
                       f"{short}")


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_every_task_has_a_graded_test_and_tests_name_real_tasks(lab):
    folder = lab_tests_dir(lab)
    assert folder.exists(), f"{lab} has no tests: expected tests/{lab}/test_*.py"
    tasks = tasks_in(ROOT / lab / "solution.py")
    assert tasks, f"{lab}/solution.py marks no task (# BEGIN SOLUTION [task] hint)"
    marked = {m for f in folder.rglob("test_*.py") for m in TASK_MARK.findall(f.read_text())}
    untested = [t for t in tasks if t not in marked]
    assert not untested, f"{lab}: tasks without a graded test: {untested}"
    unknown = sorted(marked - set(tasks))
    assert not unknown, f"{lab}: tests mark tasks that solution.py does not define: {unknown}"


@pytest.mark.parametrize("lab", LABS, ids=str)
def test_lab_runs_as_a_script(lab):
    text = (ROOT / lab / "solution.py").read_text()
    assert re.search(r'^if __name__ == "__main__":\n\s+labkit\.run\(', text, flags=re.M), \
        f"{lab}/solution.py should end with `if __name__ == \"__main__\": labkit.run(main)`"


def _test_files():
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py"))


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tests_never_import_implementations_by_name(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        bad = [n for n in names if n.split(".")[0] in ("solution", "lab")]
        assert not bad, f"{path.relative_to(ROOT)}:{node.lineno} imports {bad}; use the `impl` fixture instead"


def test_readme_status_table_is_current():
    from labkit import catalog

    assert catalog.status_in_readme() == catalog.render_status(), \
        "README.md's status table is stale: run `.venv/bin/python -m labkit status --write`"


def test_catalog_names_every_lab_folder():
    from labkit import catalog

    listed = {str(unit.path) for unit in catalog.units()}
    unlisted = [str(lab) for lab in LABS if str(lab) not in listed]
    assert not unlisted, f"lab folders missing from CATALOG.md: {unlisted}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci.splitlines()[-1], ".ci/run must end by running `make test`"


PLANNING_WORDS = re.compile(r"\b(the seed(?:'s| text| curriculum| suggests| targets| reports| prints)?\b(?! of\b| \d)|"
                            r"seed figures|the brief\b|brief's|spec template|the spec\b|spec's)", re.I)


def test_docs_speak_of_the_project_only():
    """Learners read these pages: they name what a thing is, not the planning documents it came from."""
    found = []
    for doc in sorted(ROOT.glob("**/*.md")):
        if any(part.startswith(".venv") for part in doc.parts) or "outputs" in doc.parts:   # .venv, .venv-vllm
            continue
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            if (match := PLANNING_WORDS.search(line)) and "random seed" not in line.lower():
                found.append(f"{doc.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert not found, "say what the thing is instead of naming planning documents:\n" + "\n".join(found)
