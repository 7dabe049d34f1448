"""The shipped alert rules and Grafana dashboard as files (not graded: the learner does not write them).
promtool (Debian's `prometheus` package) checks and unit-tests the rules when it is on PATH; without it the
structure is checked here and the promtool part is skipped with the reason. Which metric names they read is
checked against the running service in test_service.py."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

LAB = Path(__file__).resolve().parents[4] / "llm-engineer/phase-10-distributed-production/lab-04-observability"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RECORD_NAME = re.compile(r"^[a-zA-Z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+$")   # level:metric:operations


def rules():
    return yaml.safe_load((LAB / "alerts.yml").read_text())


def balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not any(depth.values())


def test_alert_rules_are_well_formed():
    groups = rules()["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), f"group names must be unique: {names}"
    alerts = 0
    for group in groups:
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), f"a rule is an alert or a record, not both: {rule}"
            assert isinstance(rule["expr"], str) and balanced(rule["expr"]), f"unbalanced expr: {rule['expr']!r}"
            if "record" in rule:
                assert RECORD_NAME.match(rule["record"]), f"recording rule names read level:metric:operations, got {rule['record']}"
                continue
            alerts += 1
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), f"alert names are CamelCase: {rule['alert']}"
            assert "for" not in rule or DURATION.match(rule["for"]), f"{rule['alert']}: bad 'for' {rule.get('for')!r}"
            assert rule["labels"]["severity"] in ("page", "ticket"), f"{rule['alert']}: severity page or ticket"
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert alerts >= 6


def test_dashboard_is_well_formed():
    dashboard = json.loads((LAB / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"panel ids must be unique: {ids}"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['title']} is wider than Grafana's 24 columns"
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
        assert p["targets"], f"panel {p['title']} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(balanced(t["expr"]) for t in p["targets"])
    assert dashboard["uid"] and dashboard["title"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus); the structure is checked above")
    return found


def test_promtool_check_rules():
    result = subprocess.run([promtool(), "check", "rules", "alerts.yml"], cwd=LAB, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_show_the_alerts_firing():
    result = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=LAB, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
