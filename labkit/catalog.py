"""The curriculum catalog (CATALOG.md) and the status table generated from it and the tree."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from labkit.labs import ROOT

ROW = re.compile(r"^\| (?P<unit>[^|]+?) \| (?P<seed>[^|]+?) \|$")
SECTION = re.compile(r"^## (?P<section>[\w-]+)/$")
STATUS_BEGIN, STATUS_END = "<!-- status:begin -->", "<!-- status:end -->"


@dataclass(frozen=True)
class Unit:
    section: str  # llm-engineer, cv-engineer, capstones, system-design, interview-prep
    path: Path  # relative to the repo root
    seed: str

    @property
    def is_folder(self) -> bool:
        return self.path.suffix not in (".md", ".py")

    def status(self) -> str:
        full = ROOT / self.path
        if not full.exists():
            return "planned"
        if not self.is_folder:
            return "ready"
        needed = ("README.md", "solution.py", "lab.py", "requirements.txt")
        has_all = all((full / name).exists() for name in needed)
        has_tests = (ROOT / "tests" / self.path).exists()
        return "ready" if has_all and has_tests else "in progress"


def units(catalog: Path = ROOT / "CATALOG.md") -> list[Unit]:
    found, section = [], None
    for line in catalog.read_text().splitlines():
        if match := SECTION.match(line):
            section = match["section"]
        elif (match := ROW.match(line)) and section and match["unit"] not in ("unit", "---"):
            found.append(Unit(section, Path(section) / match["unit"], match["seed"]))
    return found


def render_status() -> str:
    rows = ["| section | ready | in progress | planned |", "|---|---|---|---|"]
    for section in dict.fromkeys(u.section for u in units()):
        counts = Counter(u.status() for u in units() if u.section == section)
        rows.append(f"| {section}/ | {counts['ready']} | {counts['in progress']} | {counts['planned']} |")
    ready = [u for u in units() if u.status() == "ready" and u.is_folder]
    rows += ["", "Ready labs: " + (", ".join(f"[{u.path.name}]({u.path}/)" for u in ready) or "none yet") + "."]
    return "\n".join(rows)


def write_status(text: str, readme: Path = ROOT / "README.md") -> None:
    content = readme.read_text()
    start, end = content.index(STATUS_BEGIN), content.index(STATUS_END)
    updated = content[:start] + STATUS_BEGIN + "\n" + text + "\n" + content[end:]
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(updated)
    tmp.replace(readme)


def status_in_readme(readme: Path = ROOT / "README.md") -> str:
    content = readme.read_text()
    return content[content.index(STATUS_BEGIN) + len(STATUS_BEGIN):content.index(STATUS_END)].strip()
