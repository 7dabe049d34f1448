"""Generate a lab's `lab.py` from its `solution.py`.

A solution marks the code a learner must write:

    def encode(self, text):
        # BEGIN SOLUTION [encode] Split with the pattern, then look each piece up.
        return [self.vocab[p] for p in self.pattern.findall(text)]
        # END SOLUTION

`[encode]` names the task (tests carry `@pytest.mark.task("encode")`); the rest of the line is the hint.
In `lab.py` the region becomes a TODO comment and a `raise NotImplementedError` naming the task.
Regions must sit inside a function body (a stub anywhere else would break the import) and may not nest.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?P<rest>.*)$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
TASK_AND_HINT = re.compile(r"^ \[(?P<task>[a-z0-9][a-z0-9-]*)\] (?P<hint>\S.*)$")
MARKER_WORDS = ("BEGIN SOLUTION", "END SOLUTION")

LAB_HEADER = (
    "# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.\n"
    "# Check your work with `make check LAB=<this lab's folder>`.\n"
)


class ScaffoldError(ValueError):
    """A solution.py whose markers cannot be turned into a scaffold; the message starts with file:line."""


@dataclass(frozen=True)
class Region:
    task: str
    hint: str
    begin: int  # 1-based line of the BEGIN marker
    end: int  # 1-based line of the END marker
    indent: str


def find_regions(source: str, path: str = "<solution>") -> list[Region]:
    """Parse the markers of one file, refusing anything ambiguous."""
    regions: list[Region] = []
    open_region: tuple[int, str, str, str] | None = None
    for lineno, line in enumerate(source.splitlines(), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_region:
                raise ScaffoldError(f"{path}:{lineno}: BEGIN SOLUTION inside the region opened at line "
                                    f"{open_region[0]}; regions cannot nest")
            parsed = TASK_AND_HINT.match(begin["rest"])
            if not parsed:
                raise ScaffoldError(f"{path}:{lineno}: write the marker as '# BEGIN SOLUTION [task-name] hint' "
                                    "(task name in lower-case letters, digits and dashes, then a one-line hint)")
            open_region = (lineno, begin["indent"], parsed["task"], parsed["hint"].strip())
        elif end:
            if not open_region:
                raise ScaffoldError(f"{path}:{lineno}: END SOLUTION without a BEGIN SOLUTION before it")
            start, indent, task, hint = open_region
            if start + 1 == lineno:
                raise ScaffoldError(f"{path}:{start}: the region for [{task}] is empty")
            regions.append(Region(task, hint, start, lineno, indent))
            open_region = None
        elif any(word in line for word in MARKER_WORDS) and line.lstrip().startswith("#"):
            raise ScaffoldError(f"{path}:{lineno}: malformed marker; use '# BEGIN SOLUTION [task] hint' "
                                "and '# END SOLUTION' on lines of their own")
    if open_region:
        raise ScaffoldError(f"{path}:{open_region[0]}: BEGIN SOLUTION for [{open_region[2]}] is never closed")
    _check_placement(source, regions, path)
    return regions


def _check_placement(source: str, regions: list[Region], path: str) -> None:
    """Each region must lie wholly inside the body of one function (straddled statements fail the compile later)."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        raise ScaffoldError(f"{path}:{err.lineno}: solution does not parse: {err.msg}") from None
    starts = sorted((n.lineno, n.col_offset) for n in ast.walk(tree) if isinstance(n, ast.stmt))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def extent(fn: ast.AST) -> tuple[int, int]:
        # A function's text runs from its `def` to the next statement at its own indentation or shallower,
        # so trailing comments (like an END marker) still belong to it.
        following = [line for line, col in starts if line > fn.end_lineno and col <= fn.col_offset]
        return fn.lineno, (following[0] - 1 if following else len(source.splitlines()))

    for region in regions:
        inside = [fn for fn in functions
                  if extent(fn)[0] < region.begin and region.end <= extent(fn)[1]
                  and len(region.indent.expandtabs()) > fn.col_offset]
        if not inside:
            raise ScaffoldError(f"{path}:{region.begin}: the region for [{region.task}] is not inside a function "
                                "body; a stub there would break the import")


def stub_lines(region: Region) -> list[str]:
    message = f"TODO [{region.task}]: {region.hint}"
    return [f"{region.indent}# TODO [{region.task}]: {region.hint}",
            f"{region.indent}raise NotImplementedError({message!r})"]


def generate(source: str, path: str = "<solution>") -> str:
    """Return the text of lab.py for the given solution.py text."""
    regions = find_regions(source, path)
    lines = source.splitlines()
    out: list[str] = []
    origin: list[int] = []  # origin[i] = the solution line that output line i+1 comes from
    cursor = 0
    for region in regions:
        out.extend(lines[cursor:region.begin - 1])
        origin.extend(range(cursor + 1, region.begin))
        out.extend(stub_lines(region))
        origin.extend([region.begin, region.begin])
        cursor = region.end
    out.extend(lines[cursor:])
    origin.extend(range(cursor + 1, len(lines) + 1))
    text = "\n".join(out) + "\n"
    try:
        compile(text, path.replace("solution.py", "lab.py"), "exec")
    except SyntaxError as err:
        line = origin[min(max((err.lineno or 1) - 1, 0), len(origin) - 1)] if origin else 1
        raise ScaffoldError(f"{path}:{line}: the generated scaffold does not parse ({err.msg}); "
                            "move the markers so that whole statements are replaced") from None
    return _add_header(text)


def _add_header(text: str) -> str:
    """Put the 'generated' notice after a shebang/docstring-free first line, keeping the module docstring first."""
    tree = ast.parse(text)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None),
                                                                        ast.Constant):
        cut = tree.body[0].end_lineno
        lines = text.splitlines(keepends=True)
        return "".join(lines[:cut]) + LAB_HEADER + "".join(lines[cut:])
    return LAB_HEADER + text


def tasks_in(solution: Path) -> list[str]:
    """Task names in order of first appearance."""
    seen: dict[str, None] = {}
    for region in find_regions(solution.read_text(), str(solution)):
        seen.setdefault(region.task, None)
    return list(seen)


def scaffold_file(solution: Path, write: bool = True) -> bool:
    """Regenerate lab.py beside solution.py. Returns True when the file changed (or would change)."""
    target = solution.with_name("lab.py")
    text = generate(solution.read_text(), str(solution))
    current = target.read_text() if target.exists() else None
    if current == text:
        return False
    if write:
        tmp = target.with_suffix(".py.tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return True
