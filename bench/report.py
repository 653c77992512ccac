"""Results of the scenarios, kept in bench/results.json and rendered to BENCHMARKS.md.

A run replaces the rows of the scenarios it ran (by scenario and size) and keeps
the others, so `make bench QUICK=1` does not wipe the last full run's row. Every
row carries its own date, run count and machine, and BENCHMARKS.md is always
regenerated as a whole from the stored rows.
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.plots import scenario_svg
from config import PROJECT_ROOT

RESULTS_PATH = PROJECT_ROOT / "bench" / "results.json"
REPORT_PATH = PROJECT_ROOT / "BENCHMARKS.md"
PLOTS_DIR = PROJECT_ROOT / "bench" / "plots"  # one SVG per scenario, shown in BENCHMARKS.md

INTRO = """\
Written by `make bench` (`python -m bench`); regenerated from `bench/results.json` on every
run, so edit neither by hand. Each scenario measures its subject against a **baseline in the
same run on the same machine**: absolute figures are noisy on a shared 2-core machine, two
things measured side by side much less so. A row's ratio is the median of its runs' ratios
(each run measures subject and baseline alike); the medians of the subject's and the
baseline's own figures (seconds, requests or tasks per second, milliseconds) are shown next
to it. The target is on that ratio, except B3's, which is on the subject's p99 itself."""


@dataclass(frozen=True)
class Machine:
    cpus: int
    python: str
    postgres: str
    system: str = ""

    def describe(self) -> str:
        return f"{self.cpus} cores, Python {self.python}, PostgreSQL {self.postgres}"


@dataclass(frozen=True)
class Target:
    """What a row must reach. `on` is "ratio" (subject ÷ baseline, the usual case) or
    "subject" (the subject's own median, for a target in absolute units such as B3's
    p99 latency); `at_most` says which side of `value` passes."""

    value: float
    at_most: bool = True
    on: str = "ratio"

    def met_by(self, figure: float) -> bool:
        return figure <= self.value if self.at_most else figure >= self.value

    def describe(self, unit: str) -> str:
        sign = "≤" if self.at_most else "≥"
        if self.on != "ratio":
            return f"{sign} {self.value:g} {unit}"
        # One decimal at least, two where the target has them (B5's 0.15).
        shown = f"{self.value:.2f}"
        return f"{sign} {shown[:-1] if shown.endswith('0') else shown}"


@dataclass
class ScenarioResult:
    """One row: a scenario at one size, with the subject's and the baseline's figure in
    each of its runs (seconds, requests/s, ms: `unit` says)."""

    scenario: str            # "B4"
    title: str               # "expiry: `maintenance.expire_payments` ÷ one raw `UPDATE`"
    size: int                # how much work one run does, in `size_unit`
    size_unit: str           # "payments", "callbacks", "s of load"
    mode: str                # "quick", "full" or "custom"
    target: Target
    unit: str                # of the per-run figures: "s", "req/s", "ms"
    baseline: list[float]
    subject: list[float]
    date: str
    machine: Machine
    about: str = ""          # what subject and baseline are, and what differs between them
    notes: list[str] = field(default_factory=list)  # scenario-specific findings for this row

    @property
    def runs(self) -> int:
        return len(self.subject)

    @property
    def ratios(self) -> list[float]:
        return [s / b for s, b in zip(self.subject, self.baseline, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def figure(self) -> float:
        """What the target is checked against."""
        return self.ratio if self.target.on == "ratio" else statistics.median(self.subject)

    @property
    def passed(self) -> bool:
        return self.target.met_by(self.figure)

    @property
    def key(self) -> tuple[str, str, str]:
        """A row replaces the stored row with the same key (B3 has a row per rate)."""
        return self.scenario, self.mode, self.size_unit

    def verdict(self) -> str:
        """`ratio 0.62 (target ≥ 0.5): pass`, for progress lines."""
        name = "ratio" if self.target.on == "ratio" else self.unit
        return (f"{name} {self.figure:.2f} (target {self.target.describe(self.unit)}): "
                f"{'pass' if self.passed else 'miss'}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        return cls(**{**data, "machine": Machine(**data["machine"]),
                      "target": Target(**data["target"])})


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
    return sorted(rows.values(), key=lambda r: (r.scenario, r.size, _numbers_in(r.size_unit)))


def _numbers_in(text: str) -> list[int]:
    """"s at 50/s" before "s at 200/s"."""
    return [int(n) for n in re.findall(r"\d+", text)]


def write_report(now: Sequence[ScenarioResult], *, results_path: Path = RESULTS_PATH,
                 report_path: Path = REPORT_PATH,
                 plots_dir: Path = PLOTS_DIR) -> list[ScenarioResult]:
    rows = merge(load_results(results_path), now)
    results_path.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    plots_dir.mkdir(parents=True, exist_ok=True)
    for scenario, scenario_rows in _by_scenario(rows).items():
        # One chart, one unit: B3's capacity row is in the table only, its ms rows charted.
        unit = Counter(r.unit for r in scenario_rows).most_common(1)[0][0]
        (plots_dir / f"{scenario}.svg").write_text(
            scenario_svg([r for r in scenario_rows if r.unit == unit]))
    plots = plots_dir.relative_to(report_path.parent) if plots_dir.is_relative_to(
        report_path.parent) else plots_dir
    report_path.write_text(render(rows, ran_now=now, plots=plots))
    return rows


def _by_scenario(rows: Sequence[ScenarioResult]) -> dict[str, list[ScenarioResult]]:
    grouped: dict[str, list[ScenarioResult]] = {}
    for row in rows:
        grouped.setdefault(row.scenario, []).append(row)
    return grouped


# -- rendering ------------------------------------------------------------------------------

def render(rows: Sequence[ScenarioResult], *, ran_now: Sequence[ScenarioResult] = (),
           plots: Path | None = None) -> str:
    """The whole BENCHMARKS.md; `plots`, where the scenarios' SVGs are (relative to it)."""
    lines = ["# Benchmarks", "", INTRO, ""]
    if ran_now:
        latest = max(r.date for r in ran_now)
        names = ", ".join(f"{r.scenario} ({_size(r)})" for r in ran_now)
        lines += [f"Last run: {latest}, which ran {names}. Other rows are kept from earlier "
                  "runs and carry their own date.", ""]
    elif rows:
        lines += [f"Newest row: {max(r.date for r in rows)}; every row carries its own date.",
                  ""]
    for scenario_rows in _by_scenario(rows).values():
        lines += _scenario_section(scenario_rows, plots)
    return "\n".join(lines).rstrip() + "\n"


def _scenario_section(rows: Sequence[ScenarioResult], plots: Path | None) -> list[str]:
    first = rows[0]
    unit = first.unit
    latest = max(rows, key=lambda r: r.date)  # its description is the current one
    lines = [f"## {first.scenario} {latest.title}", ""]
    for paragraph in latest.about.split("\n\n") if latest.about else ():
        lines += [_wrap(paragraph), ""]
    # A section whose rows are in different units (B3: ms per rate, and its capacity in
    # callbacks/s) names the unit in each cell instead of the header.
    mixed = len({r.unit for r in rows}) > 1
    head = "" if mixed else f" ({unit})"
    lines += [
        f"| size | runs | baseline median{head} | subject median{head} | ratio (median) "
        "| target | result | date | machine |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"**{r.ratio:.2f}**" if r.target.on == "ratio" else f"{r.ratio:.2f}"
        target = r.target.describe(r.unit)
        if r.target.on == "subject":
            target = f"subject {target}"
        cell = f" {r.unit}" if mixed else ""
        lines.append(
            f"| {_size(r)} | {r.runs} | {_num(statistics.median(r.baseline))}{cell} "
            f"| {_num(statistics.median(r.subject))}{cell} | {ratio} | {target} "
            f"| {'pass' if r.passed else 'miss'} | {r.date} | {r.machine.describe()} |")
    lines.append("")
    if plots is not None:
        lines += [f"![{first.scenario}: figure per row against the target]"
                  f"({plots.as_posix()}/{first.scenario}.svg)", ""]
    for r in rows:
        per_run = "; ".join(f"{_num(s)} / {_num(b)} = {s / b:.2f}" for s, b in
                            zip(r.subject, r.baseline, strict=True))
        lines += [f"**{_size(r)}**, per run (subject {r.unit} / baseline {r.unit} = ratio): "
                  f"{per_run}.", ""]
        lines += [f"- {note}" for note in r.notes]
        if r.notes:
            lines.append("")
    return lines


def _size(r: ScenarioResult) -> str:
    return f"{r.size:,} {r.size_unit} ({r.mode})"


def _num(value: float) -> str:
    """Two decimals for small figures (seconds, ms), none for big ones (req/s)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _wrap(paragraph: str) -> str:
    return textwrap.fill(" ".join(paragraph.split()), width=96, break_long_words=False,
                         break_on_hyphens=False)
