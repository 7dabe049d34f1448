"""Scenarios: capacity plans as data files, evaluated with the formulas in capacity.py.

A scenario is a TOML file in system-design/scenarios/ (copy one and change it):

    title = "70B dense pretraining on 1024 H100s"
    about = "One paragraph: what is being sized and where the inputs come from."

    [inputs]    # name = number, or name = { value = ..., unit = "...", what = "..." }
    n_params = { value = 70e9, unit = "params", what = "dense model parameters" }

    [calc]      # evaluated in order; a formula may use the inputs, earlier calc names and capacity.FORMULAS
    total_flops = { formula = "training_flops(n_params, n_tokens)", unit = "FLOPs", what = "training compute" }

A formula is a Python expression limited to numbers, names, + − × ÷ // % **, calls of the calculator's
functions (and ceil, floor, sqrt, log, log2, min, max, sum, round, abs), lists and [i] indexing.
Units decide how values print (format_value), and documents reuse the same formatting:
  B, B/s, bit/s, FLOP/s, Hz   SI prefixes (1.07 GB, 989 TFLOP/s)
  FLOPs                       scientific (6.30e23 FLOPs)
  USD, USD/<period>           dollars ($0.37, $1.77M/yr)
  %, pp                       a fraction as a percentage, or as percentage points (0.0686 -> 6.86 points)
  x                           a ratio (6.44×)
  ms                          a value held in seconds, shown in milliseconds
  anything else               the number (in words above a million) followed by the unit: 70 billion params
"""
from __future__ import annotations

import ast
import math
import operator
import tomllib
from dataclasses import dataclass
from pathlib import Path

import capacity

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"

HELPERS = {"ceil": math.ceil, "floor": math.floor, "sqrt": math.sqrt, "log": math.log, "log2": math.log2,
           "min": min, "max": max, "sum": sum, "round": round, "abs": abs}
FUNCTIONS = {**capacity.FORMULAS, **HELPERS}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class ScenarioError(ValueError):
    """A scenario that cannot be found, parsed or evaluated; the message is one line."""


@dataclass(frozen=True)
class Quantity:
    """One line of a sheet: a value with its unit, what it is, and the formula that produced it (None for inputs).
    str() gives the formatted value, so a document template can write {{ s.total_flops }}."""
    name: str
    value: object
    unit: str = ""
    what: str = ""
    formula: str | None = None

    def __str__(self) -> str:
        return format_value(self.value, self.unit)


@dataclass(frozen=True)
class Sheet:
    """A scenario evaluated: attribute access gives each Quantity (sheet.total_flops)."""
    name: str
    title: str
    about: str
    path: Path
    lines: dict

    def __getattr__(self, key):
        try:
            return self.__dict__["lines"][key]
        except KeyError:
            raise AttributeError(f"scenario '{self.name}' has no input or calc named '{key}'") from None


# ---------------------------------------------------------------------------------------------------------
# Formatting: units decide the rendering
# ---------------------------------------------------------------------------------------------------------
SI = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")]
WORDS = [(1e12, "trillion"), (1e9, "billion"), (1e6, "million")]
SCALED = {"B": "B", "B/s": "B/s", "bit/s": "bit/s", "FLOP/s": "FLOP/s", "Hz": "Hz"}


def sig(x: float, digits: int = 3) -> str:
    """x to `digits` significant figures, trailing zeros dropped, thousands separated: 23333.3 -> '23,300'."""
    if x == 0:
        return "0"
    if isinstance(x, int) and abs(x) < 10 ** 7:
        return f"{x:,}"
    rounded = round(x, digits - 1 - math.floor(math.log10(abs(x))))
    if abs(rounded) >= 10 ** (digits - 1):
        return f"{int(round(rounded)):,}"
    return f"{rounded:,.{digits}g}" if abs(rounded) >= 1e-4 else f"{rounded:.{digits - 1}e}"


def format_value(value, unit: str = "") -> str:
    """Render a value for a sheet or a document according to its unit."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, unit) for v in value) + "]"
    if unit in SCALED:
        for scale, prefix in SI:
            if abs(value) >= scale:
                return f"{sig(value / scale)} {prefix}{SCALED[unit]}"
        return f"{sig(value)} {SCALED[unit]}"
    if unit == "FLOPs":
        return f"{sci(value)} FLOPs"
    if unit == "USD":
        return usd(value)
    if unit.startswith("USD/"):
        return f"{usd(value)}/{unit[4:]}"
    if unit == "%":
        return f"{sig(value * 100)}%"
    if unit == "pp":
        text = sig(value * 100)
        return f"{text} point" if text == "1" else f"{text} points"
    if unit == "x":
        return f"{sig(value)}×"
    if unit == "ms":
        return f"{sig(value * 1000)} ms"
    text = words(value)
    return f"{text} {unit}" if unit else text


def sci(x: float) -> str:
    """Scientific notation with three significant figures: 6.3e23 -> '6.30e23', 8.2e9 -> '8.20e9'."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def words(x) -> str:
    """Large counts in words (70 billion, 1.5 trillion); smaller ones with separators; huge ones in e-notation."""
    if abs(x) >= 1e15:
        return sci(x)
    for scale, word in WORDS:
        if abs(x) >= scale:
            return f"{sig(x / scale)} {word}"
    return sig(x)


def usd(x: float) -> str:
    """Dollars: $0.085, $0.50, $45.80, $12,300, $1.77M, $2.45B."""
    if abs(x) >= 1e9:
        return f"${sig(x / 1e9)}B"
    if abs(x) >= 1e6:
        return f"${sig(x / 1e6)}M"
    if abs(x) >= 100:
        return f"${sig(x)}"
    return f"${x:,.2f}" if abs(x) >= 0.1 else f"${sig(x, 2)}"


# ---------------------------------------------------------------------------------------------------------
# Evaluating formulas safely
# ---------------------------------------------------------------------------------------------------------
def evaluate(formula: str, names: dict) -> object:
    """Evaluate a scenario formula; anything outside the small expression language is refused."""
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as err:
        raise ScenarioError(f"cannot parse formula {formula!r}: {err.msg}") from None
    return _eval(tree.body, names, formula)


def _eval(node, names, formula):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ScenarioError(f"unknown name '{node.id}' in {formula!r}; known: {', '.join(names) or 'none'}")
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        return BINARY[type(node.op)](_eval(node.left, names, formula), _eval(node.right, names, formula))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand, names, formula))
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(item, names, formula) for item in node.elts]
    if isinstance(node, ast.Subscript):
        index = _eval(node.slice, names, formula)
        return _eval(node.value, names, formula)[index]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id not in FUNCTIONS:
            raise ScenarioError(f"unknown function '{node.func.id}' in {formula!r}; "
                                f"the calculator has: {', '.join(capacity.FORMULAS)}")
        args = [_eval(a, names, formula) for a in node.args]
        kwargs = {k.arg: _eval(k.value, names, formula) for k in node.keywords}
        try:
            return FUNCTIONS[node.func.id](*args, **kwargs)
        except (ValueError, TypeError, ZeroDivisionError) as err:
            raise ScenarioError(f"{node.func.id}(...) in {formula!r}: {err}") from None
    raise ScenarioError(f"{formula!r} uses {type(node).__name__}, which formulas do not allow "
                        f"(numbers, names, arithmetic, calls, lists and [i] only)")


# ---------------------------------------------------------------------------------------------------------
# Loading scenarios
# ---------------------------------------------------------------------------------------------------------
def names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A shipped scenario's name, or a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ScenarioError(f"no scenario file at {name_or_path}")
        return path
    shipped = SCENARIOS / f"{name_or_path}.toml"
    if not shipped.exists():
        raise ScenarioError(f"unknown scenario '{name_or_path}'; available: {', '.join(names())} "
                            f"(or give a path to a .toml file)")
    return shipped


def load(name_or_path: str) -> Sheet:
    path = resolve(name_or_path)
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path.name}: not valid TOML: {err}") from None
    return evaluate_spec(spec, path)


def evaluate_spec(spec: dict, path: Path) -> Sheet:
    unknown = set(spec) - {"title", "about", "inputs", "calc"}
    if unknown:
        raise ScenarioError(f"{path.name}: unknown top-level keys {sorted(unknown)}; "
                            f"a scenario has title, about, [inputs] and [calc]")
    values, lines = {}, {}
    for name, entry in spec.get("inputs", {}).items():
        if name in FUNCTIONS:
            raise ScenarioError(f"{path.name}: input '{name}' shadows the function of that name; rename it")
        entry = entry if isinstance(entry, dict) else {"value": entry}
        if "value" not in entry or not _is_number_or_list(entry["value"]):
            raise ScenarioError(f"{path.name}: input '{name}' needs a numeric value (or a list of numbers)")
        lines[name] = Quantity(name, entry["value"], entry.get("unit", ""), entry.get("what", ""))
        values[name] = entry["value"]
    for name, entry in spec.get("calc", {}).items():
        if not isinstance(entry, dict) or "formula" not in entry:
            raise ScenarioError(f"{path.name}: calc '{name}' needs a formula: "
                                f"{name} = {{ formula = \"...\", unit = \"...\", what = \"...\" }}")
        if name in values or name in FUNCTIONS:
            raise ScenarioError(f"{path.name}: calc '{name}' reuses a name already defined (or a function's)")
        try:
            value = evaluate(entry["formula"], values)
        except ScenarioError as err:
            raise ScenarioError(f"{path.name}: calc '{name}': {err}") from None
        lines[name] = Quantity(name, value, entry.get("unit", ""), entry.get("what", ""), entry["formula"])
        values[name] = value
    return Sheet(path.stem, spec.get("title", path.stem), spec.get("about", ""), path, lines)


def _is_number_or_list(value) -> bool:
    if isinstance(value, list):
        return all(_is_number_or_list(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------------
# Printing a sheet
# ---------------------------------------------------------------------------------------------------------
def render_sheet(sheet: Sheet) -> str:
    """Inputs, then each derived line as `name = formula` followed by its value; what it is on the right."""
    out = [sheet.title, "=" * len(sheet.title)]
    if sheet.about:
        out += [_wrap(sheet.about), ""]
    inputs = [q for q in sheet.lines.values() if q.formula is None]
    derived = [q for q in sheet.lines.values() if q.formula is not None]
    width = max((len(q.name) for q in sheet.lines.values()), default=0)
    out.append("Inputs")
    for q in inputs:
        out.append(f"  {q.name:<{width}}  {str(q):<24}  {q.what}".rstrip())
    out += ["", "Derived (name = formula → value)"]
    for q in derived:
        out.append(f"  {q.name:<{width}} = {q.formula}")
        out.append(f"  {'':<{width}}   → {str(q):<22}  {q.what}".rstrip())
    out += ["", f"(from {_shown(sheet.path)}; copy it, change the inputs, and run capacity.py on your copy)"]
    return "\n".join(out)


def list_scenarios() -> str:
    rows = []
    for name in names():
        try:
            title = tomllib.loads((SCENARIOS / f"{name}.toml").read_text()).get("title", "")
        except tomllib.TOMLDecodeError:
            title = "(not valid TOML)"
        rows.append(f"{name:<40} {title}")
    return "\n".join(rows)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def _wrap(text: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), width))
