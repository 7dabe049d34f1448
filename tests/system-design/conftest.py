"""The system-design calculator lives in a folder whose name is not a Python package (system-design/), so its
modules are imported from that folder. These are harness-style tests: they grade no learner task."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "system-design"
if str(DESIGN) not in sys.path:
    sys.path.insert(0, str(DESIGN))


@pytest.fixture(scope="session")
def capacity():
    import capacity as module

    return module


@pytest.fixture(scope="session")
def sheets():
    import sheets as module

    return module


@pytest.fixture(scope="session")
def render():
    import render as module

    return module
