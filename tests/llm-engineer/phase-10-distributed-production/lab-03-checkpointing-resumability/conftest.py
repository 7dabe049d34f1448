"""Fixtures for this lab's tests: subprocesses that always die with the test, whatever happens."""
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_worker.py")


class Workers:
    """Starts `_worker.py` jobs; every process is killed and reaped at teardown, even when the test failed."""

    def __init__(self, impl_name: str):
        self.impl_name, self.procs = impl_name, []

    def start(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "LABKIT_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, str(WORKER), self.impl_name, *map(str, args)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float) -> list[str]:
        """Read the worker's output until a line starts with `prefix`; fail (with the output) on exit or timeout."""
        if not hasattr(proc, "lines"):                 # one reader thread per process feeds a queue of lines
            proc.lines, proc.seen = queue.Queue(), []
            threading.Thread(target=lambda: [proc.lines.put(line.rstrip("\n")) for line in proc.stdout],
                             daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = proc.lines.get(timeout=0.05)
            except queue.Empty:
                if proc.poll() is not None and proc.lines.empty():
                    time.sleep(0.2)
                    if proc.lines.empty():
                        break
                continue
            proc.seen.append(line)
            if line.startswith(prefix):
                return proc.seen
        todo = next((line for line in proc.seen if "NotImplementedError: TODO [" in line), None)
        if todo is not None:                            # an unfinished lab.py: report the TODO the worker hit
            raise NotImplementedError(todo.split("NotImplementedError: ", 1)[1])
        tail = "\n".join(proc.seen[-15:])
        pytest.fail(f"the worker never printed {prefix!r} (exit code {proc.poll()}); its last output:\n{tail}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def workers(request):
    pool = Workers(request.config.getoption("--impl"))
    yield pool
    pool.close()
