"""The benchmark report: given numbers in, the BENCHMARKS.md table and its verdicts out."""

from __future__ import annotations

import json

from bench.progress import percentile
from bench.report import Machine, ScenarioResult, Target, load_results, render, write_report

MACHINE = Machine(cpus=2, python="3.11.7", postgres="16.2", system="Linux")


def b4(mode: str, size: int, subject: list[float], baseline: list[float],
       date: str = "2025-01-02 03:04 UTC") -> ScenarioResult:
    return ScenarioResult(
        scenario="B4", title="expiry: sweep ÷ raw UPDATE", size=size, size_unit="payments",
        mode=mode, target=Target(2.0), unit="s", baseline=baseline, subject=subject, date=date,
        machine=MACHINE,
        about="What is compared.", notes=["Lock wait p99 3.0 ms."])


def table_rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("| ")]


def test_a_row_shows_medians_the_median_ratio_and_the_verdict():
    # ratios 3.0, 1.5, 2.5 -> median 2.5 (not 4.5 / 1.5 = 3.0, the ratio of medians)
    row = b4("quick", 100_000, subject=[3.0, 4.5, 5.0], baseline=[1.0, 3.0, 2.0])
    text = render([row])

    header, *rows = table_rows(text)
    assert header[:7] == ["size", "runs", "baseline median (s)", "subject median (s)",
                          "ratio (median)", "target", "result"]
    assert rows == [["100,000 payments (quick)", "3", "2.00", "4.50", "**2.50**", "≤ 2.0", "miss",
                     "2025-01-02 03:04 UTC", "2 cores, Python 3.11.7, PostgreSQL 16.2"]]
    assert "## B4 expiry: sweep ÷ raw UPDATE" in text
    assert "What is compared." in text
    assert "3.00 / 1.00 = 3.00; 4.50 / 3.00 = 1.50; 5.00 / 2.00 = 2.50" in text
    assert "- Lock wait p99 3.0 ms." in text


def test_a_ratio_at_the_target_passes():
    row = b4("full", 1_000_000, subject=[4.0], baseline=[2.0])
    assert row.ratio == 2.0 and row.passed
    assert table_rows(render([row]))[1][:7] == [
        "1,000,000 payments (full)", "1", "2.00", "4.00", "**2.00**", "≤ 2.0", "pass"]


def test_a_run_replaces_its_own_row_and_keeps_the_others(tmp_path):
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    full = b4("full", 1_000_000, subject=[30.0], baseline=[10.0], date="2025-01-01 00:00 UTC")
    write_report([full, b4("quick", 100_000, [9.0], [1.0])],
                 results_path=results, report_path=report, plots_dir=tmp_path / "plots")

    quick_again = b4("quick", 100_000, [3.0, 3.0, 3.0], [2.0, 2.0, 2.0],
                     date="2025-02-02 00:00 UTC")
    rows = write_report([quick_again], results_path=results, report_path=report,
                        plots_dir=tmp_path / "plots")

    assert [(r.mode, r.runs) for r in rows] == [("quick", 3), ("full", 1)]  # by size
    assert load_results(results) == rows
    assert len(json.loads(results.read_text())) == 2
    text = report.read_text()
    assert [r[0] for r in table_rows(text)[1:]] == [
        "100,000 payments (quick)", "1,000,000 payments (full)"]
    assert table_rows(text)[1][4:7] == ["**1.50**", "≤ 2.0", "pass"]
    assert table_rows(text)[2][4:8] == ["**3.00**", "≤ 2.0", "miss", "2025-01-01 00:00 UTC"]
    assert "Last run: 2025-02-02 00:00 UTC, which ran B4 (100,000 payments (quick))." in text
    assert text.count("## B4 ") == 1  # one section per scenario, a row per size


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0


def test_a_throughput_ratio_passes_at_or_above_its_target():
    row = ScenarioResult(
        scenario="B1", title="ingest", size=20, size_unit="s of load", mode="full",
        target=Target(0.5, at_most=False), unit="req/s", baseline=[2000.0, 2400.0],
        subject=[1000.0, 600.0], date="2025-01-02 03:04 UTC", machine=MACHINE)
    assert row.ratios == [0.5, 0.25] and row.ratio == 0.375 and not row.passed
    assert table_rows(render([row]))[1][:7] == [
        "20 s of load (full)", "2", "2,200", "800", "**0.38**", "≥ 0.5", "miss"]
    assert row.verdict() == "ratio 0.38 (target ≥ 0.5): miss"
    assert ScenarioResult(**{**vars(row), "subject": [1000.0, 1200.0]}).passed


def test_an_absolute_target_is_checked_on_the_subjects_median():
    # B3: p99 latency in ms; the ratio to the baseline is shown but decides nothing
    row = ScenarioResult(
        scenario="B3", title="latency", size=10, size_unit="s at 50/s", mode="quick",
        target=Target(100, at_most=True, on="subject"), unit="ms", baseline=[4.0, 5.0, 6.0],
        subject=[30.0, 90.0, 400.0], date="2025-01-02 03:04 UTC", machine=MACHINE)
    assert row.figure == 90.0 and row.passed and row.ratio == 18.0
    header, cells = table_rows(render([row]))
    assert header[2:4] == ["baseline median (ms)", "subject median (ms)"]
    assert cells[:7] == ["10 s at 50/s (quick)", "3", "5.00", "90.00", "18.00",
                         "subject ≤ 100 ms", "pass"]
    assert row.verdict() == "ms 90.00 (target ≤ 100 ms): pass"


def test_rows_of_one_scenario_at_different_rates_are_kept_apart(tmp_path):
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"

    def b3(rate: int, p99: float) -> ScenarioResult:
        return ScenarioResult(
            scenario="B3", title="latency", size=10, size_unit=f"s at {rate}/s", mode="quick",
            target=Target(100, on="subject"), unit="ms", baseline=[5.0], subject=[p99],
            date="2025-01-02 03:04 UTC", machine=MACHINE)

    rows = write_report([b3(50, 30.0), b3(200, 900.0)], results_path=results,
                        report_path=report, plots_dir=tmp_path / "plots")
    assert len(rows) == 2 and load_results(results) == rows
    assert "![B3: figure per row against the target](plots/B3.svg)" in report.read_text()
    svg = (tmp_path / "plots" / "B3.svg").read_text()
    assert svg.startswith("<svg") and "50/s" in svg and "200/s" in svg
    assert svg.count("<circle") == 2 and "target ≤ 100 ms" in svg
