"""Render the design documents: every number in them is computed by capacity.py from a scenario.

    .venv/bin/python system-design/render.py           # (re)write system-design/{llm,cv}/*.md and README.md
    .venv/bin/python system-design/render.py --check   # exit 1 if a committed document differs

A template (system-design/templates/<track>/<doc>.md) is Markdown with Jinja2 placeholders:

    {% set pre = scenario("70b-pretraining-1024-h100") %}
    Training takes {{ pre.total_flops }}: {{ pre.days }} on {{ pre.n_gpus }}.
    {{ kv_cache_bytes(32, 8, 128, 8192) | exact }}          calculator functions can be called directly
    {{ (pre.quoted_days.value / pre.days.value) | fmt("x") }}  arithmetic on values needs an explicit format

A scenario line prints with its unit's format (sheets.format_value). A bare float refuses to print, so every
figure on the page goes through a formatter on purpose.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jinja2

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import capacity  # noqa: E402
import sheets  # noqa: E402

TEMPLATES = HERE / "templates"
TRACKS = ("llm", "cv")


def template_paths() -> list[Path]:
    """The documents of each track, plus this folder's README (its figures come from the scenarios too)."""
    readme = [TEMPLATES / "README.md"] if (TEMPLATES / "README.md").exists() else []
    return sorted(p for track in TRACKS for p in (TEMPLATES / track).glob("*.md")) + readme


def output_path(template: Path) -> Path:
    return HERE / template.relative_to(TEMPLATES)


def _finalize(value):
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"a bare {type(value).__name__} ({value!r}) reached the page; format it, e.g. "
                        f"| fmt(\"B\"), | fmt(\"x\"), | fmt(\"%\"), | sig")
    return value


def _exact(value, unit: str | None = None) -> str:
    """Whole number with separators: 1073741824 -> '1,073,741,824 B'."""
    if isinstance(value, sheets.Quantity):
        value, unit = value.value, unit if unit is not None else value.unit
    text = f"{round(value):,}"
    return f"{text} {unit}" if unit else text


def _fmt(value, unit: str = "") -> str:
    if isinstance(value, sheets.Quantity):
        value = value.value
    return sheets.format_value(value, unit)


def _sig(value, digits: int = 3) -> str:
    if isinstance(value, sheets.Quantity):
        value = value.value
    return sheets.sig(value, digits)


def _gib(value) -> str:
    if isinstance(value, sheets.Quantity):
        value = value.value
    return f"{sheets.sig(value / 2**30)} GiB"


def _num(value) -> str:
    """The value without its unit: 70e9 params -> '70 billion'."""
    if isinstance(value, sheets.Quantity):
        value = value.value
    return sheets.words(value)


# A figure typed into a template instead of computed: digits that are not part of a name (H100, p99, bf16,
# Llama-3-8B, YOLOv8m, 1F1B, recall@10). Placeholders, code, link targets and numbered-list markers are removed first.
_STRIP = [re.compile(p, re.S | re.M) for p in (
    r"\{\{.*?\}\}", r"\{%.*?%\}", r"\{#.*?#\}", r"<!--.*?-->", r"^```(?!mermaid).*?^```", r"`[^`\n]*`",
    r"\]\([^)]*\)", r"^\s*\d+\.\s")]
_BARE_NUMBER = re.compile(r"(?<![\w\-/.@])\d+(?:[.,]\d+)*(?![\w])")


def bare_numbers(template_text: str) -> list[str]:
    """Lines of a template that state a number outside a placeholder (each as 'line N: text')."""
    text = template_text
    for pattern in _STRIP:
        text = pattern.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return [f"line {i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if _BARE_NUMBER.search(line)]


def environment(used: list[str]) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, finalize=_finalize)
    cache: dict[str, sheets.Sheet] = {}

    def scenario(name: str) -> sheets.Sheet:
        if name not in cache:
            cache[name] = sheets.load(name)
        if name not in used:
            used.append(name)
        return cache[name]

    env.globals.update(capacity.FORMULAS, scenario=scenario, ceil=__import__("math").ceil)
    env.filters.update(fmt=_fmt, exact=_exact, sig=_sig, gib=_gib, num=_num)
    return env


def render(template: Path) -> str:
    """The document a template produces: a generated-file notice, the body, and the scenarios it used."""
    used: list[str] = []
    name = template.relative_to(TEMPLATES).as_posix()
    typed = bare_numbers(template.read_text())
    if typed:
        raise RenderError(f"templates/{name} states numbers outside placeholders (compute them from a scenario): "
                          + "; ".join(typed[:3]))
    try:
        body = environment(used).get_template(name).render()
    except (jinja2.TemplateError, sheets.ScenarioError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
        raise RenderError(f"templates/{name}: {type(err).__name__}: {err}") from None
    notice = (f"<!-- Generated by system-design/render.py from templates/{name}; edit the template or its scenarios, "
              f"then run `.venv/bin/python system-design/render.py`. -->\n")
    up = "../" * (len(template.relative_to(TEMPLATES).parts) - 1)
    sources = "\n".join(f"- [{n}]({up}scenarios/{n}.toml): `.venv/bin/python system-design/capacity.py {n}`"
                        for n in used)
    footer = (f"\n---\n\nEvery figure on this page is computed by [capacity.py]({up}capacity.py) from these scenarios "
              "(copy one, change an input, and print the sheet):\n\n" + sources + "\n") if used else ""
    return notice + body.rstrip("\n") + "\n" + footer


class RenderError(RuntimeError):
    pass


def stale() -> list[Path]:
    """Templates whose committed document differs from what they render to now."""
    return [t for t in template_paths()
            if not output_path(t).exists() or output_path(t).read_text() != render(t)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report documents that differ; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        if args.check:
            behind = stale()
            if behind:
                shown = ", ".join(str(output_path(t).relative_to(HERE.parent)) for t in behind)
                print(f"render.py: {len(behind)} document(s) differ from their templates: {shown}; "
                      f"run .venv/bin/python system-design/render.py", file=sys.stderr)
                return 1
            print(f"all {len(template_paths())} documents match their templates")
            return 0
        for template in template_paths():
            text, out = render(template), output_path(template)
            if not out.exists() or out.read_text() != text:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
                print(f"wrote {out.relative_to(HERE.parent)}")
        return 0
    except RenderError as err:
        print(f"render.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
