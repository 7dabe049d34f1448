"""Where labs live and how to load one by path.

A lab is a folder holding `solution.py` (under llm-engineer/, cv-engineer/, capstones/ or interview-prep/).
Its tests live under tests/ at the same relative path. Every lab has files named solution.py and lab.py, so
they are never imported by module name: `load_impl` loads one by file path under a unique module name.
"""
from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
TRACKS = ("llm-engineer", "cv-engineer", "capstones", "interview-prep")
IMPLS = ("solution", "lab")


class LabNotFound(LookupError):
    pass


def all_labs() -> list[Path]:
    """Every lab folder (relative to the repo root), in curriculum order."""
    found = []
    for track in TRACKS:
        found += [p.parent.relative_to(ROOT) for p in (ROOT / track).rglob("solution.py")
                  if ".venv" not in p.parts and "outputs" not in p.parts]
    return sorted(found, key=lambda p: (TRACKS.index(p.parts[0]), str(p)))


def resolve_lab(name: str) -> Path:
    """Accept a lab folder, its tests folder, or a unique suffix such as 'lab-01-tokenization-from-scratch'."""
    cleaned = name.strip().strip("/")
    if cleaned.startswith("tests/"):
        cleaned = cleaned[len("tests/"):]
    labs = all_labs()
    exact = [lab for lab in labs if str(lab) == cleaned]
    if exact:
        return exact[0]
    suffix = [lab for lab in labs if str(lab).endswith("/" + cleaned) or str(lab).endswith(cleaned)]
    if len(suffix) == 1:
        return suffix[0]
    if len(suffix) > 1:
        raise LabNotFound(f"'{name}' matches several labs: {', '.join(map(str, suffix))}; give the full folder")
    close = difflib.get_close_matches(cleaned, [str(lab) for lab in labs], n=3, cutoff=0.4)
    close += [str(lab) for lab in labs if lab.name in difflib.get_close_matches(
        Path(cleaned).name, [x.name for x in labs], n=3, cutoff=0.6) and str(lab) not in close]
    hint = f" Did you mean: {', '.join(close[:3])}?" if close else " Run `make list` to see every lab."
    raise LabNotFound(f"no lab called '{name}'.{hint}")


def tests_dir(lab: Path) -> Path:
    return ROOT / "tests" / lab


def lab_of_test(test_path: Path) -> Path | None:
    """The lab folder (relative) that a test file belongs to, or None for harness tests."""
    try:
        rel = Path(test_path).resolve().relative_to(ROOT / "tests")
    except ValueError:
        return None
    for parent in [rel.parent, *rel.parent.parents]:
        if (ROOT / parent / "solution.py").exists():
            return parent
    return None


_loaded: dict[tuple[str, str, str], ModuleType] = {}


def load_impl(lab: Path | str, impl: str = "solution") -> ModuleType:
    """Load `<lab>/<impl>.py` by path (cached), under a module name unique to the lab and implementation.

    When LABKIT_MISTAKE names a classic mistake of this lab (labkit.mistakes), solution.py is loaded with that
    edit applied, in memory; the file on disk is never touched.
    """
    from labkit import mistakes

    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
    lab = Path(lab)
    path = (ROOT / lab / f"{impl}.py") if not lab.is_absolute() else lab / f"{impl}.py"
    mistake = mistakes.active(lab) if impl == "solution" else None
    key = (str(lab), impl, mistake.id if mistake else "")
    if key not in _loaded:
        if not path.exists():
            raise LabNotFound(f"{path} does not exist; run `make scaffold` to generate lab.py files")
        module_name = "labimpl_" + "_".join(lab.parts[-3:]).replace("-", "_") + f"__{impl}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        try:
            if mistake:
                code = compile(mistake.apply(path.read_text()), str(path), "exec")
                exec(code, module.__dict__)
            else:
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        _loaded[key] = module
    return _loaded[key]


def forget(mistake_id: str) -> None:
    """Drop the modules loaded under one classic mistake (see labkit.mistakes)."""
    for key in [k for k in _loaded if k[2] == mistake_id]:
        del _loaded[key]


def reuse(lab: str) -> ModuleType:
    """The reference solution of an earlier lab, for labs that build on it (e.g. a model defined before)."""
    return load_impl(resolve_lab(lab), "solution")
