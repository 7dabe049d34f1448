"""The scaffold generator: what it produces, and every kind of bad input it must refuse with file:line."""
import textwrap

import pytest

from labkit.scaffold import ScaffoldError, find_regions, generate

GOOD = textwrap.dedent('''\
    """Module docstring."""
    import math


    def area(r):
        """Circle area."""
        # BEGIN SOLUTION [area] pi r squared.
        return math.pi * r * r
        # END SOLUTION


    class Box:
        def __init__(self, w):
            if w > 0:
                # BEGIN SOLUTION [box] Keep the width.
                self.w = w
                # END SOLUTION
            else:
                raise ValueError("w")
''')


def test_regions_are_found_with_task_and_hint():
    regions = find_regions(GOOD)
    assert [(r.task, r.hint, r.begin, r.end) for r in regions] == [
        ("area", "pi r squared.", 7, 9), ("box", "Keep the width.", 15, 17)]


def test_generated_scaffold_replaces_regions_with_named_stubs():
    lab = generate(GOOD)
    assert "math.pi * r * r" not in lab and "self.w = w" not in lab, "the answer must not leak into lab.py"
    assert "# TODO [area]: pi r squared." in lab
    assert "raise NotImplementedError('TODO [area]: pi r squared.')" in lab
    assert lab.startswith('"""Module docstring."""\n# This file is generated'), "docstring stays first"
    namespace = {}
    exec(compile(lab, "lab.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match=r"TODO \[area\]"):
        namespace["area"](1.0)
    with pytest.raises(ValueError):
        namespace["Box"](-1)  # code outside the markers is kept verbatim


def test_generation_is_deterministic():
    assert generate(GOOD) == generate(GOOD)


BAD = {
    "nested": ("def f():\n    # BEGIN SOLUTION [a] x\n    # BEGIN SOLUTION [b] y\n    return 1\n    # END SOLUTION\n"
               "    # END SOLUTION\n", 3, "cannot nest"),
    "unclosed": ("def f():\n    # BEGIN SOLUTION [a] x\n    return 1\n", 2, "never closed"),
    "stray end": ("def f():\n    return 1\n    # END SOLUTION\n", 3, "without a BEGIN"),
    "no task": ("def f():\n    # BEGIN SOLUTION do it\n    return 1\n    # END SOLUTION\n", 2, "[task-name]"),
    "no hint": ("def f():\n    # BEGIN SOLUTION [a]\n    return 1\n    # END SOLUTION\n", 2, "[task-name]"),
    "module level": ("# BEGIN SOLUTION [a] x\nX = 1\n# END SOLUTION\n", 1, "not inside a function"),
    "class body": ("class A:\n    # BEGIN SOLUTION [a] x\n    X = 1\n    # END SOLUTION\n", 2, "not inside a function"),
    "empty": ("def f():\n    # BEGIN SOLUTION [a] x\n    # END SOLUTION\n    return 1\n", 2, "empty"),
    "malformed": ("def f():\n    #BEGIN SOLUTION [a] x\n    return 1\n", 2, "malformed marker"),
    "straddles": ("def f(x):\n    y = (x +\n    # BEGIN SOLUTION [a] x\n         1)\n    # END SOLUTION\n"
                  "    return y\n", 2, "does not parse"),
    "syntax": ("def f(:\n    pass\n", 1, "does not parse"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_markers_are_refused_with_file_and_line(name):
    source, line, reason = BAD[name]
    with pytest.raises(ScaffoldError) as err:
        generate(source, "labs/x/solution.py")
    message = str(err.value)
    assert message.startswith(f"labs/x/solution.py:{line}:"), message
    assert reason in message, f"expected the reason '{reason}' in: {message}"
