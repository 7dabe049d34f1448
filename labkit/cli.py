"""The command line behind the Makefile: `python -m labkit <verb>`.

User errors (a misspelt lab, a missing lab.py, a GPU-only lab on a CPU machine) get one line saying what was
wrong and what to do, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from labkit import catalog
from labkit.device import has_cuda
from labkit.labs import ROOT, LabNotFound, all_labs, resolve_lab, tests_dir
from labkit.scaffold import ScaffoldError, scaffold_file, tasks_in

NEEDS_CUDA = re.compile(r"^LAB_NEEDS_CUDA\s*=\s*True", re.M)


class UserError(Exception):
    pass


def _pytest(args: list[str]) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    return subprocess.call(command, cwd=ROOT)


def _lab_test_dirs() -> list[str]:
    return [str(tests_dir(lab).relative_to(ROOT)) for lab in all_labs() if tests_dir(lab).exists()]


def _lab(name: str | None) -> Path:
    if not name:
        raise UserError("name a lab, e.g. `make check LAB=lab-01-tokenization-from-scratch` (`make list` shows all)")
    try:
        return resolve_lab(name)
    except LabNotFound as err:
        raise UserError(str(err)) from None


def cmd_list(_args) -> int:
    for lab in all_labs():
        tasks = len(tasks_in(ROOT / lab / "solution.py"))
        tests = "tests" if tests_dir(lab).exists() else "NO TESTS"
        gpu = "  (needs CUDA)" if NEEDS_CUDA.search((ROOT / lab / "solution.py").read_text()) else ""
        print(f"{str(lab):<78} {tasks:>2} tasks  {tests}{gpu}")
    return 0


def cmd_scaffold(args) -> int:
    changed = []
    for lab in all_labs():
        try:
            if scaffold_file(ROOT / lab / "solution.py", write=not args.check):
                changed.append(lab)
        except ScaffoldError as err:
            raise UserError(str(err)) from None
    verb = "out of date" if args.check else "regenerated"
    for lab in changed:
        print(f"{verb}: {lab}/lab.py")
    if not changed:
        print(f"all {len(all_labs())} lab.py files match their solution.py")
    return 1 if (args.check and changed) else 0


def cmd_check(args) -> int:
    lab = _lab(args.lab)
    if not tests_dir(lab).exists():
        raise UserError(f"{lab} has no tests yet (expected them in tests/{lab}/)")
    if not (ROOT / lab / "lab.py").exists():
        raise UserError(f"{lab}/lab.py is missing: run `make scaffold` to generate it")
    print(f"Grading {lab}/lab.py (the reference is solution.py; it is not used here)")
    detail = ["--tb=short", "-rfE"] if args.verbose else ["--tb=no", "-rN"]
    code = _pytest([str(tests_dir(lab).relative_to(ROOT)), "--impl=lab", "-q", "-p", "no:warnings", *detail])
    if code and not args.verbose:
        print("\nFor each failing test's details: make check LAB=<lab> V=1")
    return 0 if code == 0 else 1


def cmd_check_solutions(args) -> int:
    dirs = _lab_test_dirs()
    if not dirs:
        raise UserError("no lab has tests yet")
    extra = ["-x"] if args.exitfirst else []
    return _pytest([*dirs, "--impl=solution", "-q", *extra])


def cmd_test(_args) -> int:
    print("==> 1/2 reference solutions, harness, drift, requirements and docs checks")
    first = _pytest(["-q"])
    print("\n==> 2/2 inverted check: every graded test must fail on the untouched lab.py with its TODO")
    second = _pytest([*_lab_test_dirs(), "--impl=lab", "--inverted", "-q", "-p", "no:randomly"])
    if first or second:
        print(f"\nmake test FAILED (solutions/harness: exit {first}; inverted check: exit {second})")
        return 1
    return 0


def cmd_progress(_args) -> int:
    from labkit.plugin import summarize

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "results.json"
        _pytest([*_lab_test_dirs(), "--impl=lab", "-q", "--tb=no", "-rN", "-p", "no:warnings", "--no-header",
                 f"--labkit-json={report}"])
        results = json.loads(report.read_text()) if report.exists() else {}
    summary = summarize(results)
    print("\nYour progress (lab.py files):")
    total_done = total = 0
    for lab in all_labs():
        tasks = summary.get(str(lab), {})
        done = sum(t["status"] == "pass" for t in tasks.values())
        total_done, total = total_done + done, total + len(tasks)
        bar = "#" * done + "." * (len(tasks) - done)
        print(f"  {str(lab):<78} {done:>2}/{len(tasks):<2} {bar}")
    print(f"\n{total_done}/{total} tasks pass across {len(all_labs())} labs")
    return 0


def cmd_run(args) -> int:
    lab = _lab(args.lab)
    script = ROOT / lab / f"{args.impl}.py"
    if NEEDS_CUDA.search((ROOT / lab / "solution.py").read_text()) and not has_cuda():
        raise UserError(f"{lab} needs a CUDA GPU and none is visible here; run it on a GPU machine "
                        "(its CPU-safe checks still run in `make check-solutions`)")
    if not script.exists():
        raise UserError(f"{script.relative_to(ROOT)} is missing: run `make scaffold`")
    return subprocess.call([sys.executable, str(script), *args.rest], cwd=ROOT)


def cmd_bench(args) -> int:
    labs = [_lab(args.lab)] if args.lab else all_labs()
    benches = [ROOT / lab / "bench.py" for lab in labs if (ROOT / lab / "bench.py").exists()]
    if not benches:
        raise UserError(f"no bench.py in {args.lab or 'any lab'}")
    status = 0
    for bench in benches:
        print(f"\n==> {bench.parent.relative_to(ROOT)}", flush=True)
        status |= subprocess.call([sys.executable, str(bench)], cwd=ROOT)
    return status


def cmd_status(args) -> int:
    text = catalog.render_status()
    if args.write:
        catalog.write_status(text)
        print("README.md status table updated")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="AI Engineer Labs: run, check and scaffold labs.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every lab, its tasks and whether it has tests").set_defaults(fn=cmd_list)
    scaffold = verbs.add_parser("scaffold", help="regenerate every lab.py from its solution.py")
    scaffold.add_argument("--check", action="store_true", help="only report lab.py files that are out of date")
    scaffold.set_defaults(fn=cmd_scaffold)
    check = verbs.add_parser("check", help="grade your lab.py task by task")
    check.add_argument("lab", nargs="?")
    check.add_argument("-v", "--verbose", action="store_true", help="show each failing test's traceback")
    check.set_defaults(fn=cmd_check)
    solutions = verbs.add_parser("check-solutions", help="run every reference solution's checks")
    solutions.add_argument("-x", "--exitfirst", action="store_true")
    solutions.set_defaults(fn=cmd_check_solutions)
    verbs.add_parser("test", help="everything CI runs").set_defaults(fn=cmd_test)
    verbs.add_parser("progress", help="your progress over the curriculum").set_defaults(fn=cmd_progress)
    run = verbs.add_parser("run", help="run a lab's demo")
    run.add_argument("lab", nargs="?")
    run.add_argument("--impl", choices=("solution", "lab"), default="solution")
    run.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the script")
    run.set_defaults(fn=cmd_run)
    bench = verbs.add_parser("bench", help="run benchmarks (one lab, or all)")
    bench.add_argument("lab", nargs="?")
    bench.set_defaults(fn=cmd_bench)
    status = verbs.add_parser("status", help="the catalog status table (README)")
    status.add_argument("--write", action="store_true")
    status.set_defaults(fn=cmd_status)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    try:
        return args.fn(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
