"""ops/prometheus checked by Prometheus' own tool: the config and rules load, every alert's
unit test passes (ops/prometheus/tests/alerts_test.yml), and those tests would notice an
alert that always fires or never fires. Skipped, with the reason, where promtool is
missing (`make install` installs Debian's prometheus package when run as root)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from config import PROJECT_ROOT

OPS = PROJECT_ROOT / "ops" / "prometheus"
ALERTS = OPS / "rules" / "alerts.yml"
ALERT_TESTS = OPS / "tests" / "alerts_test.yml"
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (apt-get install prometheus; `make install` "
                             "does it when run as root)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _cases(tests: dict[str, Any], alert: str, firing: bool) -> list[dict[str, Any]]:
    """The test groups that expect `alert` firing (or quiet) at some evaluation."""
    return [group for group in tests["tests"]
            if any(case["alertname"] == alert and bool(case["exp_alerts"]) == firing
                   for case in group.get("alert_rule_test", []))]


@needs_promtool
def test_the_scrape_config_and_its_rule_files_are_valid():
    result = _promtool("check", "config", str(OPS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


@needs_promtool
def test_the_rules_are_valid():
    result = _promtool("check", "rules", *map(str, sorted((OPS / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_unit_test_passes():
    result = _promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet():
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    for alert in _alert_rules():
        assert _cases(tests, alert, firing=True), f"{alert}: no test where it fires"
        assert _cases(tests, alert, firing=False), f"{alert}: no test where it stays quiet"


def test_every_alert_says_what_to_check_and_has_a_runbook_section():
    headings = {line[3:].strip() for line in RUNBOOK.read_text().splitlines()
                if line.startswith("## ")}
    for alert, rule in _alert_rules().items():
        notes = rule["annotations"]
        assert notes["summary"] and "Check first" in notes["description"], alert
        assert notes["runbook_url"] == f"docs/runbook.md#{alert.lower()}", alert
        assert alert in headings, f"docs/runbook.md has no '## {alert}' section"
        assert rule["labels"]["severity"] in ("page", "ticket"), alert


@needs_promtool
@pytest.mark.parametrize("firing", [True, False], ids=["always-fires", "never-fires"])
def test_the_unit_tests_catch_an_alert_that_always_or_never_fires(firing, tmp_path):
    """Each alert in turn is replaced by one that always fires (its quiet tests must then
    fail) or never fires (its firing tests must then fail)."""
    rules_text = ALERTS.read_text()
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    broken_expr = "vector(1)" if firing else "vector(1) unless vector(1)"
    survivors = []
    for alert in _alert_rules():
        mutant_rules = yaml.safe_load(rules_text)
        for group in mutant_rules["groups"]:
            for candidate in group["rules"]:
                if candidate["alert"] == alert:
                    candidate["expr"] = broken_expr
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(mutant_rules))
        shutil.copy(OPS / "rules" / "recording.yml", tmp_path / "recording.yml")
        # The always-firing mutant against the tests where the alert stays quiet, and the
        # never-firing one against those where it fires.
        mutant_tests = {**tests, "rule_files": ["recording.yml", "alerts.yml"],
                        "tests": _cases(tests, alert, firing=not firing)}
        test_file = tmp_path / f"{alert}_test.yml"
        test_file.write_text(yaml.safe_dump(mutant_tests))
        if _promtool("test", "rules", str(test_file)).returncode == 0:
            survivors.append(alert)
    assert not survivors, f"tests pass although these alerts {broken_expr}: {survivors}"
