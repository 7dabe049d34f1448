"""The pytest plugin every lab's tests run under (registered by the root conftest.py).

- `--impl=solution|lab` picks the file the `impl` fixture loads (by path, never by module name).
- `@pytest.mark.task("name")` ties a test to a task of its lab (a `# BEGIN SOLUTION [name]` region); the terminal
  summary prints a per-task table, and `--labkit-json` writes the same results for `labkit progress`.
- `@pytest.mark.gpu` tests are skipped, with the reason shown, when CUDA is absent.
- Every test starts from seed 0; Hugging Face runs offline; sockets to anything but loopback are refused.
- `--inverted` runs the graded tests against the untouched scaffold and passes each one only if it fails with
  the TODO's NotImplementedError (a graded test that passes on an empty scaffold checks nothing).
- `--mistakes` applies each classic mistake of a lab's mistakes.toml to solution.py in memory and runs that task's
  tests; a mistake no test catches fails the run (labkit.mistakes).
- `--task NAME` keeps only the graded tests of that task.
"""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from labkit import device as devices
from labkit import labs, mistakes
from labkit.labs import ROOT, lab_of_test, load_impl
from labkit.offline import set_offline_env
from labkit.scaffold import tasks_in
from labkit.script import TODO

RESULTS_KEY = pytest.StashKey[dict]()
LAB_KEY = pytest.StashKey[Path | None]()
SATISFIED_KEY = pytest.StashKey[bool]()  # inverted mode: a fixture already failed with the TODO


def pytest_addoption(parser):
    group = parser.getgroup("labkit")
    group.addoption("--impl", choices=("solution", "lab"), default="solution",
                    help="which implementation the tests load: the reference solution.py or the learner's lab.py")
    group.addoption("--inverted", action="store_true",
                    help="graded tests must fail on the untouched lab.py with the TODO's NotImplementedError")
    group.addoption("--labkit-json", metavar="PATH",
                    help="append per-test events and task results as JSON lines (read by the labkit CLI)")
    group.addoption("--mistakes", action="store_true",
                    help="apply each lab's classic mistakes (mistakes.toml) and require its task's tests to fail")
    group.addoption("--mistake-limit", type=float, default=60.0, metavar="SECONDS",
                    help="with --mistakes: a test that runs longer than this under a mistake counts as catching it")
    group.addoption("--task", action="append", default=[], metavar="NAME",
                    help="only the graded tests of this task (repeatable)")
    group.addoption("--allow-network", action="store_true", help="do not refuse outbound connections")


def pytest_configure(config):
    set_offline_env()
    config.addinivalue_line("markers", "task(name): the lab task this test grades")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped when no GPU is visible")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on 2 CPU cores")
    if config.getoption("--inverted") and config.getoption("--impl") != "lab":
        raise pytest.UsageError("--inverted checks the scaffolds: run it with --impl=lab")
    if config.getoption("--mistakes") and (config.getoption("--impl") != "solution" or config.getoption("--inverted")):
        raise pytest.UsageError("--mistakes edits the reference solutions: run it with --impl=solution")
    if not config.getoption("--allow-network"):
        _refuse_outbound_connections()
    config.stash[RESULTS_KEY] = {}
    if config.getoption("--impl") == "lab" or config.getoption("--mistakes"):
        _fail_fast_hypothesis(derandomize=bool(config.getoption("--mistakes")))


def _fail_fast_hypothesis(derandomize: bool) -> None:
    """On a learner's file a TODO fails every example; shrinking that failure only wastes seconds per test. Under
    --mistakes the examples are also fixed, so whether a mistake is caught never depends on a random draw."""
    try:
        from hypothesis import Phase, settings
    except ImportError:
        return
    settings.register_profile("labkit-fail-fast", phases=[Phase.explicit, Phase.reuse, Phase.generate],
                              database=None, derandomize=derandomize)
    settings.load_profile("labkit-fail-fast")


# ---------------------------------------------------------------- network guard

def _is_loopback(host) -> bool:
    if host in (None, "", "localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkRefused(ConnectionRefusedError):
    pass


def _refuse_outbound_connections() -> None:
    if getattr(socket.socket, "_labkit_guarded", False):
        return
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, \
        socket.getaddrinfo

    def refuse(address) -> None:
        raise NetworkRefused(f"labkit: tests are offline by construction; refused a connection to {address!r} "
                             "(only loopback is allowed)")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            refuse(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host if not isinstance(host, bytes) else host.decode()):
            refuse(host)
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    socket.socket._labkit_guarded = True


# ---------------------------------------------------------------- collection

def _task_of(item) -> str | None:
    marker = item.get_closest_marker("task")
    return marker.args[0] if marker and marker.args else None


def pytest_collection_modifyitems(config, items):
    known: dict[Path, list[str]] = {}
    graded_only = config.getoption("--inverted") or config.getoption("--mistakes") or config.getoption("--task")
    wanted_tasks = {t for arg in config.getoption("--task") for t in arg.split(",") if t}
    keep, dropped = [], []
    cuda = devices.has_cuda()
    for item in items:
        lab = lab_of_test(item.path)
        item.stash[LAB_KEY] = lab
        task = _task_of(item)
        if task is not None:
            if lab is None:
                raise pytest.UsageError(f"{item.nodeid}: a task marker outside a lab's tests folder")
            if lab not in known:
                known[lab] = tasks_in(ROOT / lab / "solution.py")
            if task not in known[lab]:
                raise pytest.UsageError(f"{item.nodeid}: task '{task}' is not a task of {lab} "
                                        f"(its tasks: {', '.join(known[lab])})")
        if item.get_closest_marker("gpu") and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA: no GPU visible here (runs on the GPU CI runner)"))
        if (graded_only and task is None) or (wanted_tasks and task not in wanted_tasks):
            dropped.append(item)
        else:
            keep.append(item)
    unknown = wanted_tasks - {t for tasks in known.values() for t in tasks}
    if unknown:
        every = sorted({t for tasks in known.values() for t in tasks})
        raise pytest.UsageError(f"no task called {', '.join(sorted(unknown))} here; the tasks are: {', '.join(every)}")
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if config.getoption("--mistakes"):
        for lab in dict.fromkeys(item.stash[LAB_KEY] for item in items):
            try:
                mistakes.load_catalog(lab)
            except mistakes.CatalogError as err:
                raise pytest.UsageError(str(err)) from None


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def impl(request):
    """The lab's implementation module: solution.py by default, lab.py with --impl=lab."""
    lab = lab_of_test(request.path)
    if lab is None:
        pytest.fail(f"{request.path} is not under tests/<lab folder>/, so there is no implementation to load")
    return load_impl(lab, request.config.getoption("--impl"))


@pytest.fixture(scope="session")
def device():
    """torch.device picked by labkit.pick_device (CUDA when present; LABKIT_DEVICE overrides)."""
    return devices.pick_device()


@pytest.fixture(scope="module")
def one_thread():
    """A module of tiny-model tests opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`: torch runs
    on one CPU thread for the module (restored after), which is faster for tiny tensors and steadier when the
    machine is shared."""
    with devices.torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def _seeded():
    devices.seed_everything(0)
    yield


# ---------------------------------------------------------------- reporting

def _todo_in(excinfo) -> str | None:
    """The task name when the failure is a scaffold's TODO, else None."""
    if excinfo is None or not isinstance(excinfo.value, NotImplementedError):
        return None
    found = TODO.match(str(excinfo.value))
    return found["task"] if found else None


TIMEOUT_WORDS = "Timeout"  # pytest-timeout fails a test with "Failed: Timeout (>Ns) from pytest-timeout."


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    task = _task_of(item)
    if task is None or report.when == "teardown" and report.passed:
        return
    todo = _todo_in(call.excinfo)
    if item.config.getoption("--inverted") and not report.skipped:
        _invert(item, report, todo)
    results = item.config.stash[RESULTS_KEY]
    entry = results.setdefault(item.nodeid, {"lab": str(item.stash.get(LAB_KEY, None)), "task": task,
                                             "outcome": "passed", "todo": None, "message": ""})
    if report.skipped:
        entry["outcome"] = "skipped"
        entry["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    elif report.failed:
        entry["outcome"] = "todo" if todo and not item.config.getoption("--inverted") else "failed"
        entry["todo"] = todo
        entry["message"] = _short_message(call.excinfo, report)
        if TIMEOUT_WORDS in entry["message"] and "pytest-timeout" in entry["message"]:
            entry["outcome"] = "timeout"
        if entry["outcome"] != "todo":
            entry["details"] = "\n".join(str(report.longrepr).splitlines()[-60:])


def _emit(config, event: dict) -> None:
    """One JSON line per event, flushed at once, so a CLI can still report when the run dies half-way."""
    path = config.getoption("--labkit-json")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(event) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    task = _task_of(item)
    if task is not None:
        _emit(item.config, {"event": "start", "nodeid": item.nodeid, "lab": str(item.stash.get(LAB_KEY, None)),
                            "task": task})
    yield
    entry = item.config.stash[RESULTS_KEY].get(item.nodeid)
    if entry is not None:
        _emit(item.config, {"event": "result", "nodeid": item.nodeid, **entry})


def pytest_sessionfinish(session, exitstatus):
    _emit(session.config, {"event": "done", "exitstatus": int(exitstatus)})


def _short_message(excinfo, report) -> str:
    if excinfo is not None:
        text = str(excinfo.value).strip().splitlines()
        return f"{excinfo.typename}: {text[0] if text else ''}"[:300]
    return str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""


def _invert(item, report, todo: str | None) -> None:
    if report.when not in ("setup", "call"):
        return
    if report.failed and todo:
        report.outcome = "passed"
        report.longrepr = None
        if report.when == "setup":
            item.stash[SATISFIED_KEY] = True
            item.runtest = lambda: None  # the fixture already hit the TODO: nothing left to run
    elif report.failed:
        report.longrepr = (f"inverted check: {item.nodeid} failed on the untouched scaffold, but not with a "
                           f"TODO's NotImplementedError:\n{report.longrepr}")
    elif report.when == "call" and report.passed and not item.stash.get(SATISFIED_KEY, False):
        report.outcome = "failed"
        report.longrepr = (f"inverted check: graded test {item.nodeid} PASSED on the untouched scaffold. It checks "
                           "nothing the learner writes, or the scaffold leaks the answer.")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS_KEY, {})
    if not results or config.getoption("--inverted") or config.getoption("--labkit-json") \
            or config.getoption("--mistakes"):
        return  # the inverted check reports by test; the labkit CLI prints its own table from the JSON lines
    for line in task_table(results, config.getoption("--impl")):
        terminalreporter.write_line(line)


STATUS_ORDER = ("CRASH", "TIMEOUT", "FAIL", "todo", "pass")


def summarize(results: dict, all_tasks: dict[str, list[str]] | None = None) -> dict[str, dict[str, dict]]:
    """lab -> task -> {status, passed, total, detail}, tasks in solution order. `all_tasks` (lab -> tasks) adds a
    'not run' row for tasks no result mentions (a run that was interrupted or crashed)."""
    by_lab: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for entry in results.values():
        by_lab[entry["lab"]][entry["task"]].append(entry)
    for lab, tasks in (all_tasks or {}).items():
        for task in tasks:
            by_lab[lab].setdefault(task, [])
    summary = {}
    for lab, tasks in by_lab.items():
        order = tasks_in(ROOT / lab / "solution.py")
        summary[lab] = {}
        for task in sorted(tasks, key=lambda t: order.index(t) if t in order else len(order)):
            summary[lab][task] = _task_status(tasks[task])
    return summary


def _task_status(entries: list[dict]) -> dict:
    ran = [e for e in entries if e["outcome"] != "skipped"]
    failed = [e for e in ran if e["outcome"] != "passed"]
    if not entries:
        status, detail = "-", "not run"
    elif not ran:
        status, detail = "skip", entries[0]["message"]
    elif crashed := [e for e in failed if e["outcome"] == "crashed"]:
        status, detail = "CRASH", crashed[0]["message"]
    elif timed_out := [e for e in failed if e["outcome"] == "timeout"]:
        status, detail = "TIMEOUT", ("a test ran past its time limit: look for a loop that never ends "
                                     f"({timed_out[0]['message']})")
    elif wrong := [e for e in failed if e["outcome"] == "failed"]:
        status, detail = "FAIL", wrong[0]["message"]
    elif failed:
        waiting = sorted({e["todo"] for e in failed if e["todo"]})
        status, detail = "todo", "waiting on TODO " + ", ".join(f"[{t}]" for t in waiting)
    else:
        status, detail = "pass", ""
    return {"status": status, "passed": len(ran) - len(failed), "total": len(ran), "detail": detail}


def task_table(results: dict, impl: str, all_tasks: dict[str, list[str]] | None = None) -> list[str]:
    lines = []
    for lab, tasks in summarize(results, all_tasks).items():
        done = sum(t["status"] == "pass" for t in tasks.values())
        lines += ["", f"{lab}  ({impl}.py): {done}/{len(tasks)} tasks pass"]
        width = max(len(t) for t in tasks) + 2
        for task, info in tasks.items():
            detail = f"  {info['detail']}" if info["detail"] else ""
            lines.append(f"  {info['status']:<7} [{task}]".ljust(width + 12) +
                         f"{info['passed']}/{info['total']} tests{detail}")
    return lines


# ---------------------------------------------------------------- classic mistakes

class MistakeTimedOut(Exception):
    pass


def _on_alarm(signum, frame):
    raise MistakeTimedOut("ran past the --mistake-limit under this mistake")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """With --mistakes: for each catalogued mistake, load the edited solution and run its task's tests until one
    fails (caught) or all pass (survived). Session fixtures stay; module and function fixtures are rebuilt per
    mistake, because they may hold results computed by the edited code."""
    if not session.config.getoption("--mistakes") or session.config.option.collectonly:
        return None
    from _pytest.runner import runtestprotocol

    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    write = terminal.write_line if terminal else print
    by_task: dict[tuple[str, str], list] = defaultdict(list)
    for item in session.items:
        by_task[(str(item.stash[LAB_KEY]), _task_of(item))].append(item)
    limit = session.config.getoption("--mistake-limit")
    survivors, caught, started = [], 0, time.perf_counter()
    for lab in dict.fromkeys(item.stash[LAB_KEY] for item in session.items):
        catalog = mistakes.load_catalog(lab)
        if not catalog:
            continue
        write(f"\n{lab}: {len(catalog)} classic mistakes")
        for mistake in catalog:
            items = by_task.get((str(lab), mistake.task), [])
            verdict = _try_mistake(session, mistake, items, limit, runtestprotocol)
            _emit(session.config, {"event": "mistake", "id": mistake.id, "task": mistake.task, "says": mistake.says,
                                   "caught": bool(verdict), "by": verdict or ""})
            if verdict:
                caught += 1
                write(f"  caught    [{mistake.task}] {mistake.says}  <- {verdict}")
            else:
                survivors.append(mistake)
                write(f"  SURVIVED  [{mistake.task}] {mistake.says}  ({len(items)} tests of the task all passed)")
    total = caught + len(survivors)
    rate = f"{100 * caught / total:.1f}%" if total else "n/a"
    write(f"\nclassic mistakes: {caught}/{total} caught (kill rate {rate}) in {time.perf_counter() - started:.0f} s")
    for mistake in survivors:
        write(f"  SURVIVED {mistake.id} [{mistake.task}] {mistake.says}: strengthen that task's tests")
    session.testsfailed = len(survivors)
    return True


def _try_mistake(session, mistake, items, limit, runtestprotocol) -> str | None:
    """The first test of the task that fails under the mistake (nodeid and reason), or None if none does."""
    saved = {name: mod for name, mod in sys.modules.items() if name.startswith("labimpl_")}
    os.environ[mistakes.ENV] = mistake.id
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i, item in enumerate(items):
            nextitem = items[i + 1] if i + 1 < len(items) else None
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                reports = runtestprotocol(item, log=False, nextitem=nextitem)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            failed = [r for r in reports if r.failed]
            if failed:
                if nextitem is not None:
                    session._setupstate.teardown_exact(None)  # drop fixtures built from the edited code
                crash = getattr(failed[0].longrepr, "reprcrash", None)
                reason = (crash.message if crash else str(failed[0].longrepr)).strip().splitlines() or ["failed"]
                return f"{item.name}: {reason[0][:120]}"
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)
        del os.environ[mistakes.ENV]
        for name in [n for n in sys.modules if n.startswith("labimpl_")]:
            if name in saved:
                sys.modules[name] = saved[name]
            else:
                del sys.modules[name]
        labs.forget(mistake.id)
