"""Each lab's requirements.txt pins exactly the third-party packages its code imports, at the lock's versions."""
import ast
import re
import sys
from functools import lru_cache
from importlib.metadata import packages_distributions

import pytest

from labkit.labs import ROOT, all_labs

LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[^\s#]+)\s*(?:#\s*(?P<why>\S.*))?$")
PROJECT_MODULES = {"labkit"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def third_party_imports(path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in PROJECT_MODULES and m != "__future__"}


def distributions_of(module: str) -> set[str]:
    return {normalise(d) for d in packages_distributions().get(module, [])}


def test_lock_pins_every_package_exactly():
    assert lock(), "requirements.lock is empty"
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        assert not line or line.startswith("#") or re.match(r"^[A-Za-z0-9_.\-]+==\S+$", line), \
            f"requirements.lock line is not an exact pin: {line!r}"
    assert lock()["torch"] == "2.14.1" and lock()["torchvision"] == "0.29.1"


@pytest.mark.parametrize("lab", all_labs(), ids=str)
def test_lab_requirements_match_imports_and_lock(lab):
    folder = ROOT / lab
    pinned, commented = {}, set()
    for raw in (folder / "requirements.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"{lab}/requirements.txt: '{line}' is not an exact pin (name==version [# why])"
        name = normalise(match["name"])
        assert name in lock(), f"{lab}/requirements.txt pins {name}, which the main lock does not have"
        assert match["version"] == lock()[name], \
            f"{lab}/requirements.txt pins {name}=={match['version']}, the lock has {lock()[name]}"
        pinned[name] = match["version"]
        if match["why"]:
            commented.add(name)
    needed = {}
    for script in ("solution.py", "bench.py"):
        if (folder / script).exists():
            for module in third_party_imports(folder / script):
                dists = distributions_of(module)
                assert dists, f"{lab}/{script} imports '{module}', which no installed package provides"
                needed[module] = dists
    missing = {m: sorted(d) for m, d in needed.items() if not d & set(pinned)}
    assert not missing, f"{lab}/requirements.txt does not cover imports {missing}"
    covered = set().union(*needed.values()) if needed else set()
    extra = sorted(set(pinned) - covered - commented)
    assert not extra, f"{lab}/requirements.txt pins {extra} without importing them; add a '# why' comment or drop them"
