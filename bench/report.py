"""Results of the scenarios, kept in bench/results.json and rendered to BENCHMARKS.md.

A run replaces the rows of the scenarios it ran (by scenario and size) and keeps
the others, so `make bench QUICK=1` does not wipe the last full run's row. Every
row carries its own date, run count and machine, and BENCHMARKS.md is always
regenerated as a whole from the stored rows.
"""

from __future__ import annotations

import json
import statistics
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config import PROJECT_ROOT

RESULTS_PATH = PROJECT_ROOT / "bench" / "results.json"
REPORT_PATH = PROJECT_ROOT / "BENCHMARKS.md"

INTRO = """\
Written by `make bench` (`python -m bench`); regenerated from `bench/results.json` on every
run, so edit neither by hand. Each scenario reports its figure as a **ratio to a baseline
measured in the same run on the same machine**: absolute times are noisy on a shared 2-core
machine, a ratio of two things measured side by side much less so. A row's ratio is the
median of its runs' ratios (each run measures subject and baseline on identical data); the
medians of the subject's and the baseline's times are shown next to it."""


@dataclass(frozen=True)
class Machine:
    cpus: int
    python: str
    postgres: str
    system: str = ""

    def describe(self) -> str:
        return f"{self.cpus} cores, Python {self.python}, PostgreSQL {self.postgres}"


@dataclass
class ScenarioResult:
    """One row: a scenario at one size, with the times of each of its runs."""

    scenario: str            # "B4"
    title: str               # "expiry: `maintenance.expire_payments` ÷ one raw `UPDATE`"
    size: int                # rows the scenario works on
    mode: str                # "quick" or "full"
    target: float            # the ratio must be at most this
    baseline_seconds: list[float]
    subject_seconds: list[float]
    date: str
    machine: Machine
    about: str = ""          # what subject and baseline are, and what differs between them
    notes: list[str] = field(default_factory=list)  # scenario-specific findings for this row

    @property
    def runs(self) -> int:
        return len(self.subject_seconds)

    @property
    def ratios(self) -> list[float]:
        return [s / b for s, b in zip(self.subject_seconds, self.baseline_seconds, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool:
        return self.ratio <= self.target

    @property
    def key(self) -> tuple[str, str]:
        return self.scenario, self.mode

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        return cls(**{**data, "machine": Machine(**data["machine"])})


# -- storing --------------------------------------------------------------------------------

def load_results(path: Path = RESULTS_PATH) -> list[ScenarioResult]:
    if not path.exists():
        return []
    return [ScenarioResult.from_json(row) for row in json.loads(path.read_text())]


def merge(earlier: Iterable[ScenarioResult],
          now: Iterable[ScenarioResult]) -> list[ScenarioResult]:
    """Earlier rows with the rows run now put in their place, sorted by scenario and size."""
    rows = {r.key: r for r in earlier}
    rows.update({r.key: r for r in now})
    return sorted(rows.values(), key=lambda r: (r.scenario, r.size))


def write_report(now: Sequence[ScenarioResult], *, results_path: Path = RESULTS_PATH,
                 report_path: Path = REPORT_PATH) -> list[ScenarioResult]:
    rows = merge(load_results(results_path), now)
    results_path.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    report_path.write_text(render(rows, ran_now=now))
    return rows


# -- rendering ------------------------------------------------------------------------------

def render(rows: Sequence[ScenarioResult], *, ran_now: Sequence[ScenarioResult] = ()) -> str:
    lines = ["# Benchmarks", "", INTRO, ""]
    if ran_now:
        latest = max(r.date for r in ran_now)
        names = ", ".join(f"{r.scenario} ({r.mode}, {r.size:,})" for r in ran_now)
        lines += [f"Last run: {latest}, which ran {names}. Other rows are kept from earlier "
                  "runs and carry their own date.", ""]
    for scenario in dict.fromkeys(r.scenario for r in rows):
        lines += _scenario_section([r for r in rows if r.scenario == scenario])
    return "\n".join(lines).rstrip() + "\n"


def _scenario_section(rows: Sequence[ScenarioResult]) -> list[str]:
    first = rows[0]
    lines = [f"## {first.scenario} {first.title}", ""]
    for paragraph in first.about.split("\n\n") if first.about else ():
        lines += [_wrap(paragraph), ""]
    lines += [
        "| size | runs | baseline median (s) | subject median (s) | ratio (median) | target "
        "| result | date | machine |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size:,} ({r.mode}) | {r.runs} | {statistics.median(r.baseline_seconds):.2f} "
            f"| {statistics.median(r.subject_seconds):.2f} | **{r.ratio:.2f}** "
            f"| ≤ {r.target:.1f} | {'pass' if r.passed else 'miss'} | {r.date} "
            f"| {r.machine.describe()} |")
    lines.append("")
    for r in rows:
        per_run = "; ".join(f"{s:.2f} / {b:.2f} = {s / b:.2f}" for s, b in
                            zip(r.subject_seconds, r.baseline_seconds, strict=True))
        lines += [f"**{r.size:,} ({r.mode})**, per run (subject s / baseline s = ratio): "
                  f"{per_run}.", ""]
        lines += [f"- {note}" for note in r.notes]
        if r.notes:
            lines.append("")
    return lines


def _wrap(paragraph: str) -> str:
    return textwrap.fill(" ".join(paragraph.split()), width=96, break_long_words=False,
                         break_on_hyphens=False)
