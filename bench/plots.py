"""One small SVG chart per scenario for BENCHMARKS.md: a bar per row (its figure: the
median ratio, or B3's median p99), a dot per run, and the target as a dashed line.
Plain SVG written here, so the benchmarks need no plotting library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bench.report imports this module
    from bench.report import ScenarioResult

WIDTH, LABEL_WIDTH, BAR_HEIGHT, GAP, TOP, BOTTOM = 640, 190, 22, 12, 30, 34


def scenario_svg(rows: Sequence[ScenarioResult]) -> str:
    first = rows[0]
    by_ratio = first.target.on == "ratio"
    values = [[r.ratios[i] if by_ratio else r.subject[i] for i in range(r.runs)] for r in rows]
    every = [first.target.value, *(v for run in values for v in run)]
    plot_width = WIDTH - LABEL_WIDTH - 90  # room for the value after the bar
    height = TOP + len(rows) * (BAR_HEIGHT + GAP) + BOTTOM
    # A log scale when the values span orders of magnitude (B3 over capacity), else linear.
    log = max(every) / max(min(every), 1e-9) > 100
    low, high = math.log10(min(every) / 2), math.log10(max(every) * 1.1)

    def x(value: float) -> float:
        if log:
            share = (math.log10(max(value, 10 ** low)) - low) / (high - low)
        else:
            share = value / (max(every) * 1.1)
        return LABEL_WIDTH + plot_width * share

    what = "ratio subject ÷ baseline" if by_ratio else f"subject p99 ({first.unit})"
    if log:
        what += ", log scale"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
             f'<text x="10" y="18" font-weight="bold">{escape(first.scenario)}: {what}, '
             f'median of runs (bar) and each run (dot)</text>']
    for i, (row, runs) in enumerate(zip(rows, values, strict=True)):
        y = TOP + i * (BAR_HEIGHT + GAP)
        colour = "#3a7d44" if row.passed else "#b5472e"
        label = f"{row.size:,} {row.size_unit} ({row.mode})"
        parts.append(f'<text x="10" y="{y + 15}">{escape(label)}</text>')
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y}" width="{x(row.figure) - LABEL_WIDTH:.1f}" '
                     f'height="{BAR_HEIGHT}" fill="{colour}" opacity="0.75"/>')
        parts.append(f'<text x="{x(max([row.figure, *runs])) + 8:.1f}" y="{y + 15}">'
                     f'{row.figure:,.2f}</text>')
        parts += [f'<circle cx="{x(v):.1f}" cy="{y + BAR_HEIGHT / 2}" r="3" fill="black"/>'
                  for v in runs]
    target_x = x(first.target.value)
    parts.append(f'<line x1="{target_x:.1f}" y1="{TOP - 6}" x2="{target_x:.1f}" '
                 f'y2="{height - BOTTOM + 4}" stroke="black" stroke-dasharray="5,4"/>')
    parts.append(f'<text x="{target_x + 4:.1f}" y="{height - 10}">target '
                 f'{escape(first.target.describe(first.unit))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
