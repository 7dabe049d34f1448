"""The command line behind the Makefile: `python -m labkit <verb>`.

User errors (a misspelt lab, a missing lab.py, a GPU-only lab on a CPU machine) get one line saying what was
wrong and what to do, never a traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit import catalog, mistakes
from labkit.device import has_cuda
from labkit.labs import ROOT, LabNotFound, all_labs, resolve_lab, tests_dir
from labkit.scaffold import ScaffoldError, scaffold_file, tasks_in

NEEDS_CUDA = re.compile(r"^LAB_NEEDS_CUDA\s*=\s*True", re.M)
# Per test, when grading a learner's lab.py: an endless loop becomes a TIMEOUT row (LABKIT_TIMEOUT overrides).
LEARNER_TIMEOUT_S = float(os.environ.get("LABKIT_TIMEOUT", 120))
PROGRESS_CACHE = ROOT / ".labkit" / "progress"


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


class GradedRun:
    """pytest in a child process that writes one JSON line per test (labkit.plugin's --labkit-json), so the CLI
    can print the task table even when the run is interrupted (Ctrl-C) or the child dies (os._exit, a segfault)."""

    def __init__(self, test_dirs: list[str], impl: str, extra: list[str], quiet: bool = False):
        self.events = Path(tempfile.mkstemp(prefix="labkit-", suffix=".jsonl")[1])
        self.command = [sys.executable, "-m", "pytest", *test_dirs, f"--impl={impl}", "-p", "no:warnings",
                        "-p", "no:cacheprovider", f"--labkit-json={self.events}", *extra]
        self.quiet = quiet
        self.interrupted = False
        self.returncode = 0

    def run(self) -> "GradedRun":
        output = subprocess.DEVNULL if self.quiet else None
        # A session of its own: Ctrl-C reaches only the CLI, which stops the child and still prints the table.
        child = subprocess.Popen(self.command, cwd=ROOT, stdout=output, stderr=output, start_new_session=True)
        try:
            self.returncode = child.wait()
        except KeyboardInterrupt:
            self.interrupted = True
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            self.returncode = 130
        return self

    def results(self) -> tuple[dict, bool]:
        """nodeid -> result entry, and whether the child finished its session. A test that started but never
        reported is the one the child died in: it is recorded as crashed."""
        results, started, done = {}, {}, False
        for line in self.events.read_text().splitlines() if self.events.exists() else []:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a dying process
            kind = event.pop("event", None)
            if kind == "start":
                started[event["nodeid"]] = event
            elif kind == "result":
                results[event.pop("nodeid")] = event
            elif kind == "done":
                done = True
        self.events.unlink(missing_ok=True)
        if not done and not self.interrupted:
            for nodeid, event in started.items():
                if nodeid not in results:
                    how = f"exit code {self.returncode}" if self.returncode >= 0 else \
                        f"signal {signal.Signals(-self.returncode).name}"
                    results[nodeid] = {"lab": event["lab"], "task": event["task"], "outcome": "crashed",
                                       "todo": None, "message": f"the test process died in {nodeid.split('::')[-1]} "
                                       f"({how}): look for os._exit, sys.exit in a thread, or a crash in native code"}
        return results, done


def cmd_check(args) -> int:
    from labkit.plugin import task_table

    lab = _lab(args.lab)
    if not tests_dir(lab).exists():
        raise UserError(f"{lab} has no tests yet (expected them in tests/{lab}/)")
    if not (ROOT / lab / "lab.py").exists():
        raise UserError(f"{lab}/lab.py is missing: run `make scaffold` to generate it")
    tasks = tasks_in(ROOT / lab / "solution.py")
    wanted = [t for arg in args.task for t in arg.split(",") if t]
    unknown = [t for t in wanted if t not in tasks]
    if unknown:
        raise UserError(f"{lab} has no task {', '.join(unknown)}; its tasks are: {', '.join(tasks)}")
    print(f"Grading {lab}/lab.py (the reference is solution.py; it is not used here)")
    extra = ["-q", "--tb=no", "-rN", "--no-header", f"--timeout={LEARNER_TIMEOUT_S:g}"]
    extra += [f"--task={t}" for t in wanted]
    run = GradedRun([str(tests_dir(lab).relative_to(ROOT))], "lab", extra).run()
    results, done = run.results()
    shown = {str(lab): wanted or tasks}
    for line in task_table(results, "lab", shown):
        print(line)
    if args.verbose:
        _print_failure_details(results)
    if run.interrupted:
        print("\ninterrupted: the table shows the tests that finished before Ctrl-C")
        return 130
    if not done:
        print(f"\nthe test run stopped early (exit code {run.returncode}): see the CRASH row above")
        return 1
    everything_passes = results and all(e["outcome"] in ("passed", "skipped") for e in results.values())
    if not everything_passes and not args.verbose:
        task_part = f" TASK={','.join(wanted)}" if wanted else ""
        print(f"\nDetails of failing tasks: make check LAB={lab}{task_part} V=1")
    return 0 if everything_passes and run.returncode == 0 else 1


def _print_failure_details(results: dict) -> None:
    """The full report of each failing (not merely unfinished) test: what a learner needs to fix a task."""
    failing = [(nodeid, e) for nodeid, e in results.items() if e["outcome"] in ("failed", "timeout", "crashed")]
    for nodeid, entry in failing:
        print(f"\n---- [{entry['task']}] {nodeid}\n{entry.get('details') or entry['message']}")


def cmd_check_solutions(args) -> int:
    dirs = _lab_test_dirs()
    if not dirs:
        raise UserError("no lab has tests yet")
    extra = ["-x"] if args.exitfirst else []
    return _pytest([*dirs, "--impl=solution", "-q", *extra])


def cmd_mistakes(args) -> int:
    """Each lab's catalog in a pytest process of its own (one lab's crash cannot hide another lab's verdicts),
    `--jobs` labs at a time; the mistakes of one lab share that process (labkit.plugin, --mistakes)."""
    from concurrent.futures import ThreadPoolExecutor

    labs = [_lab(args.lab)] if args.lab else all_labs()
    runs = []
    for lab in labs:
        try:
            found = mistakes.load_catalog(lab)
        except mistakes.CatalogError as err:
            raise UserError(str(err)) from None
        if found and tests_dir(lab).exists():
            runs.append(lab)
    if not runs:
        raise UserError(f"no mistakes.toml with tests in {args.lab or 'any lab'}")

    def run_lab(lab: Path) -> tuple[Path, int, str, list[dict], float]:
        events = Path(tempfile.mkstemp(prefix="labkit-mistakes-", suffix=".jsonl")[1])
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", str(tests_dir(lab).relative_to(ROOT)),
                               "--impl=solution", "--mistakes", "-q", "-p", "no:warnings", "--no-header",
                               f"--labkit-json={events}"], cwd=ROOT, capture_output=True, text=True)
        verdicts = [json.loads(line) for line in events.read_text().splitlines() if '"mistake"' in line]
        events.unlink(missing_ok=True)
        return lab, done.returncode, done.stdout + done.stderr, verdicts, time.perf_counter() - started

    started, caught, total, failed = time.perf_counter(), 0, 0, []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for lab, code, output, verdicts, took in pool.map(run_lab, runs):
            expected = len(mistakes.load_catalog(lab))
            lab_caught = sum(v["caught"] for v in verdicts)
            caught, total = caught + lab_caught, total + expected
            complete = len(verdicts) == expected and code in (0, 1)
            print(f"{'ok  ' if complete and lab_caught == expected else 'FAIL'} {lab}: {lab_caught}/{expected} "
                  f"caught ({took:.0f} s)", flush=True)
            if not complete or lab_caught < expected or args.verbose:
                print(output.rstrip()[-6000:] if not complete else
                      "\n".join(line for line in output.splitlines() if "SURVIVED" in line or args.verbose))
                failed.append(str(lab))
    rate = f"{100 * caught / total:.1f}%" if total else "n/a"
    print(f"\nclassic mistakes: {caught}/{total} caught (kill rate {rate}) across {len(runs)} labs in "
          f"{time.perf_counter() - started:.0f} s")
    if failed:
        print(f"labs with surviving mistakes or a run that did not finish: {', '.join(failed)}")
    return 1 if failed else 0


def cmd_test(_args) -> int:
    print("==> 1/3 reference solutions, harness, drift, requirements and docs checks")
    first = _pytest(["-q"])
    print("\n==> 2/3 inverted check: every graded test must fail on the untouched lab.py with its TODO")
    second = _pytest([*_lab_test_dirs(), "--impl=lab", "--inverted", "-q", "-p", "no:randomly"])
    print("\n==> 3/3 classic mistakes: each catalogued learner mistake must fail its own task's tests")
    third = cmd_mistakes(argparse.Namespace(lab=None, jobs=os.cpu_count() or 1, verbose=False))
    if first or second or third:
        print(f"\nmake test FAILED (solutions/harness: exit {first}; inverted check: exit {second}; "
              f"classic mistakes: exit {third})")
        return 1
    return 0


def _progress_key(lab: Path) -> str:
    """Changes whenever the learner's file, the lab's tests or the harness that grades them change."""
    digest = hashlib.sha256()
    files = [ROOT / lab / "lab.py", ROOT / lab / "solution.py", *sorted(tests_dir(lab).rglob("*.py")),
             *sorted((ROOT / "labkit").glob("*.py"))]
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cmd_progress(_args) -> int:
    from labkit.plugin import summarize

    labs = [lab for lab in all_labs() if tests_dir(lab).exists() and (ROOT / lab / "lab.py").exists()]
    cached, stale = {}, []
    for lab in labs:
        entry = PROGRESS_CACHE / (str(lab).replace("/", "__") + ".json")
        saved = json.loads(entry.read_text()) if entry.exists() else {}
        if saved.get("key") == _progress_key(lab):
            cached[str(lab)] = saved["results"]
        else:
            stale.append(lab)
    if stale:
        print(f"grading {len(stale)} lab(s) whose files changed since the last `make progress`...", flush=True)
        started = time.perf_counter()
        run = GradedRun([str(tests_dir(lab).relative_to(ROOT)) for lab in stale], "lab",
                        ["-q", "--tb=no", f"--timeout={LEARNER_TIMEOUT_S:g}"], quiet=True).run()
        results, done = run.results()
        if run.interrupted:
            print("interrupted: nothing was saved; run `make progress` again")
            return 130
        PROGRESS_CACHE.mkdir(parents=True, exist_ok=True)
        for lab in stale:
            mine = {k: v for k, v in results.items() if v["lab"] == str(lab)}
            cached[str(lab)] = mine
            if done:  # a run that died half-way is shown but not remembered
                _write_atomic(PROGRESS_CACHE / (str(lab).replace("/", "__") + ".json"),
                              json.dumps({"key": _progress_key(lab), "results": mine}))
        print(f"graded in {time.perf_counter() - started:.0f} s")
    results = {nodeid: entry for lab_results in cached.values() for nodeid, entry in lab_results.items()}
    summary = summarize(results, {str(lab): tasks_in(ROOT / lab / "solution.py") for lab in labs})
    print("\nYour progress (lab.py files):")
    total_done = total = 0
    for lab in labs:
        tasks = summary.get(str(lab), {})
        done = sum(t["status"] == "pass" for t in tasks.values())
        total_done, total = total_done + done, total + len(tasks)
        bar = "#" * done + "." * (len(tasks) - done)
        print(f"  {str(lab):<78} {done:>2}/{len(tasks):<2} {bar}")
    print(f"\n{total_done}/{total} tasks pass across {len(labs)} labs")
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cmd_run(args) -> int:
    if args.rest[:1] == ["--impl"] and len(args.rest) > 1:  # `labkit run <lab> --impl lab` reads the same
        args.impl, args.rest = args.rest[1], args.rest[2:]
    if args.impl not in ("solution", "lab"):
        raise UserError(f"IMPL must be solution or lab, not {args.impl!r}")
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
    check.add_argument("-v", "--verbose", action="store_true", help="show each failing test's report in full")
    check.add_argument("--task", action="append", default=[], metavar="NAME",
                       help="grade only this task (repeatable, or comma-separated)")
    check.set_defaults(fn=cmd_check)
    solutions = verbs.add_parser("check-solutions", help="run every reference solution's checks")
    solutions.add_argument("-x", "--exitfirst", action="store_true")
    solutions.set_defaults(fn=cmd_check_solutions)
    verbs.add_parser("test", help="everything CI runs").set_defaults(fn=cmd_test)
    mistakes_verb = verbs.add_parser("mistakes", help="check that each classic mistake fails its task's tests")
    mistakes_verb.add_argument("lab", nargs="?")
    mistakes_verb.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                               help="labs checked at the same time (default: one per CPU)")
    mistakes_verb.add_argument("-v", "--verbose", action="store_true", help="print every mistake, caught or not")
    mistakes_verb.set_defaults(fn=cmd_mistakes)
    verbs.add_parser("progress", help="your progress over the curriculum").set_defaults(fn=cmd_progress)
    run = verbs.add_parser("run", help="run a lab's demo")
    run.add_argument("--impl", choices=("solution", "lab"), default="solution")
    run.add_argument("lab", nargs="?")
    run.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the script")
    run.set_defaults(fn=cmd_run)
    bench = verbs.add_parser("bench", help="run benchmarks (one lab, or all)")
    bench.add_argument("lab", nargs="?")
    bench.set_defaults(fn=cmd_bench)
    verbs.add_parser("quiz", help="timed interview practice (`labkit quiz --help` for its options)")
    status = verbs.add_parser("status", help="the catalog status table (README)")
    status.add_argument("--write", action="store_true")
    status.set_defaults(fn=cmd_status)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quiz"]:  # its options are its own (labkit.quiz)
        from labkit import quiz

        os.chdir(ROOT)
        return quiz.main(argv[1:])
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    try:
        return args.fn(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
