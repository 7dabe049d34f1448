"""What every lab's `if __name__ == "__main__":` block uses.

`run(main)` runs the demo; in a scaffold it stops at the first TODO and names the task to do next instead of
printing a traceback. `output_dir(__file__)` is where a lab writes its artifacts (outputs/ under the repo,
mirroring the lab's folder; git ignores it).
"""
from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Callable

from labkit.labs import ROOT

TODO = re.compile(r"^TODO \[(?P<task>[a-z0-9-]+)\]: (?P<hint>.*)$")


def output_dir(lab_file: str) -> Path:
    lab = Path(lab_file).resolve().parent
    try:
        rel = lab.relative_to(ROOT)
    except ValueError:
        rel = Path(lab.name)
    out = ROOT / "outputs" / rel
    out.mkdir(parents=True, exist_ok=True)
    return out


def todo_location(err: NotImplementedError) -> str:
    """file:line of the frame that raised the TODO."""
    frames = traceback.extract_tb(err.__traceback__)
    last = frames[-1] if frames else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "lab.py"


def run(main: Callable[..., object], *args, **kwargs) -> None:
    try:
        main(*args, **kwargs)
    except NotImplementedError as err:
        found = TODO.match(str(err))
        if not found:
            raise
        lab = Path(main.__code__.co_filename).resolve().parent
        name = lab.relative_to(ROOT) if lab.is_relative_to(ROOT) else lab
        print(f"\nStopped at a TODO. Next task: [{found['task']}] at {todo_location(err)}\n"
              f"  hint: {found['hint']}\n"
              f"  check your work with: make check LAB={name}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None
