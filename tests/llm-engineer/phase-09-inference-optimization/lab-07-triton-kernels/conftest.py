"""Shared setup for the Triton lab's checks.

- Without CUDA the kernels must run in Triton's interpreter, and `@triton.jit` reads TRITON_INTERPRET when a
  kernel is *defined*: a module-scoped autouse fixture sets it before the lab's module (and so triton) is
  loaded, and restores the variable after, so other labs' tests in the same run never see it. Triton's own
  helper kernels (tl.sum, tl.max, ...) are defined when triton.language is imported, so if another library in
  this pytest process imported triton first (bitsandbytes, peft, torchao and torch._inductor all do), that copy
  is dropped from sys.modules (its compiled extension kept) and the lab imports triton afresh in interpreter mode.
- Triton reads a kernel's source text (`inspect.getsourcelines`) to run or compile it. A classic mistake is an
  edit applied to solution.py in memory only, so that text would still be the file on disk: while a mistake is
  active, linecache serves the edited source instead, and the mistake really runs.
- Kernel tests take the `kernels` fixture: it skips, with the lab's one-line reason, where Triton is missing.
- A TODO left in a kernel body reaches the test wrapped in the interpreter's InterpreterError; it is unwrapped
  so the learner's table says "todo" for it, as for a TODO in a launcher.
"""
import linecache
import os
import sys

import pytest
import torch

from labkit import mistakes
from labkit.labs import ROOT, lab_of_test


def _triton_imported_without_the_interpreter() -> bool:
    lang = sys.modules.get("triton.language")
    if lang is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction
    return not isinstance(lang.max, InterpretedFunction)


@pytest.fixture(scope="module", autouse=True)
def triton_interpreter():
    """TRITON_INTERPRET=1 for this module's tests when there is no GPU (autouse: set up before `impl`)."""
    if torch.cuda.is_available():
        yield
        return
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    if _triton_imported_without_the_interpreter():
        for name in [n for n in sys.modules if n.split(".")[0] == "triton" and not n.startswith("triton._C")]:
            del sys.modules[name]
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except Exception as err:
        cause = err.__cause__
        if type(err).__name__ == "InterpreterError" and isinstance(cause, NotImplementedError):
            raise cause from None
        raise


@pytest.fixture(scope="module")
def impl(impl, request):
    lab = lab_of_test(request.path)
    mistake = mistakes.active(lab) if request.config.getoption("--impl") == "solution" else None
    if mistake is None:
        yield impl
        return
    path = str(ROOT / lab / "solution.py")
    text = mistake.apply((ROOT / lab / "solution.py").read_text())
    saved = linecache.cache.get(path)
    linecache.cache[path] = (len(text), None, text.splitlines(keepends=True), path)  # mtime None: never re-read
    try:
        yield impl
    finally:
        if saved is None:
            linecache.cache.pop(path, None)
        else:
            linecache.cache[path] = saved


@pytest.fixture(scope="module")
def kernels(impl):
    """The lab module, when its kernels can run here (else the test is skipped with the reason)."""
    if impl.TRITON_MISSING:
        pytest.skip(impl.TRITON_MISSING)
    return impl


@pytest.fixture(scope="module")
def dev(kernels):
    """Where kernel inputs live: CPU under the interpreter, the GPU when Triton compiles."""
    return kernels.kernel_device()
