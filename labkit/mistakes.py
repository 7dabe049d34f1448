"""Classic learner mistakes, written as edits of a lab's solution.py, and the check that each one is caught.

A lab's `mistakes.toml` lists, per task, bugs learners really write:

    [[mistake]]
    task = "encode"
    says = "splits on spaces instead of the regex pattern"
    before = '''return [self.vocab[p] for p in self.pattern.findall(text)]'''
    after = '''return [self.vocab[p] for p in text.split()]'''

`before` must occur exactly once in solution.py, inside a `# BEGIN SOLUTION [encode]` region, so a catalog
cannot silently go stale when a solution changes. `python -m labkit mistakes <lab>` loads each mutant in memory
(the loader applies the edit when LABKIT_MISTAKE names it, in subprocesses too) and runs that task's tests:
a mistake that no test of its own task catches is a hole in the tests.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from labkit.labs import ROOT
from labkit.scaffold import find_regions

CATALOG = "mistakes.toml"
ENV = "LABKIT_MISTAKE"  # "<lab folder>#<n>": the mistake the loader applies to that lab's solution.py
MIN_PER_TASK = 2


class CatalogError(ValueError):
    """A mistakes.toml entry that cannot be applied; the message starts with file and entry number."""


@dataclass(frozen=True)
class Mistake:
    lab: Path  # relative to the repo root
    number: int  # 1-based position in the catalog
    task: str
    says: str
    before: str
    after: str

    @property
    def id(self) -> str:
        return f"{self.lab}#{self.number}"

    def apply(self, source: str) -> str:
        return source.replace(self.before, self.after, 1)


def catalog_path(lab: Path | str) -> Path:
    return ROOT / lab / CATALOG


def load_catalog(lab: Path | str) -> list[Mistake]:
    """The lab's mistakes, each checked to apply exactly once inside a region of its task."""
    lab = Path(lab)
    path = catalog_path(lab)
    if not path.exists():
        return []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        entries = tomllib.loads(path.read_text()).get("mistake", [])
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{where}: not valid TOML ({err})") from None
    solution_path = ROOT / lab / "solution.py"
    source = solution_path.read_text()
    regions = find_regions(source, str(solution_path))
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    mistakes = []
    for number, entry in enumerate(entries, start=1):
        here = f"{where} mistake {number}"
        missing = {"task", "says", "before", "after"} - set(entry)
        if missing:
            raise CatalogError(f"{here}: missing {', '.join(sorted(missing))}")
        before, after = entry["before"].strip("\n"), entry["after"].strip("\n")
        if before == after:
            raise CatalogError(f"{here}: 'before' and 'after' are the same text")
        count = source.count(before)
        if count != 1:
            raise CatalogError(f"{here} ({entry['says']}): 'before' occurs {count} times in solution.py; "
                               "it must occur exactly once (add surrounding text)")
        start = source.index(before)
        first = next(i for i, s in enumerate(line_starts) if s > start)  # 1-based line of the first character
        last = next(i for i, s in enumerate(line_starts) if s >= start + len(before))
        inside = [r for r in regions if r.task == entry["task"] and r.begin < first and last < r.end]
        if not inside:
            raise CatalogError(f"{here} ({entry['says']}): 'before' (line {first}) is not inside a "
                               f"[{entry['task']}] region of solution.py")
        mistake = Mistake(lab, number, entry["task"], entry["says"], before, after)
        try:
            compile(mistake.apply(source), str(solution_path), "exec")
        except SyntaxError as err:
            raise CatalogError(f"{here} ({entry['says']}): the edited solution.py does not parse: {err}") from None
        mistakes.append(mistake)
    return mistakes


def active(lab: Path | str) -> Mistake | None:
    """The mistake LABKIT_MISTAKE asks the loader to apply to this lab's solution.py, if any."""
    wanted = os.environ.get(ENV, "")
    lab_name, _, number = wanted.rpartition("#")
    if not wanted or Path(lab_name) != Path(lab):
        return None
    for mistake in load_catalog(lab):
        if str(mistake.number) == number:
            return mistake
    raise CatalogError(f"{ENV}={wanted}: {lab}/{CATALOG} has no mistake {number}")
