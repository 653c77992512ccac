"""`python -m bench [--quick] [--runs N] [--scenario NAME] [--size N]`: run, report, clean up."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

from sqlalchemy import create_engine, text

from bench import applying, creation, expiry, ingest, latency
from bench.progress import Progress
from bench.report import REPORT_PATH, Machine, ScenarioResult, write_report
from bench.servers import bench_settings
from config import Settings

# A scenario returns its row, or one row per variant it measures (B3: per rate).
Scenario = Callable[..., ScenarioResult | list[ScenarioResult]]

# name -> (run, full size, quick size), in B1..B5 order
SCENARIOS: dict[str, tuple[Scenario, int, int]] = {
    "ingest": (ingest.run, ingest.FULL_SIZE, ingest.QUICK_SIZE),
    "applying": (applying.run, applying.FULL_SIZE, applying.QUICK_SIZE),
    "latency": (latency.run, latency.FULL_SIZE, latency.QUICK_SIZE),
    "expiry": (expiry.run, expiry.FULL_SIZE, expiry.QUICK_SIZE),
    "creation": (creation.run, creation.FULL_SIZE, creation.QUICK_SIZE),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, under 10 minutes in all (each scenario's QUICK_SIZE)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append",
                        help="run only this scenario (repeatable; default: all)")
    parser.add_argument("--size", type=int,
                        help="a custom size, for trying things out: printed, not reported")
    parser.add_argument("--callback-rate", type=float,
                        help=f"B4's success callbacks per second during the sweep (default "
                             f"{expiry.CALLBACK_RATE}; 0: none); printed, not reported")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite BENCHMARKS.md and the plots from bench/results.json, "
                             "measuring nothing (after a change to the report's layout)")
    args = parser.parse_args(argv)
    if args.render_only:
        write_report([])
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    trying_out = args.size is not None or args.callback_rate is not None
    extra = {} if args.callback_rate is None else {"callback_rate": args.callback_rate}
    progress = Progress()
    started = time.monotonic()
    results: list[ScenarioResult] = []
    with bench_settings(progress.say) as settings:
        machine = _machine(settings)
        progress.say(f"machine: {machine.describe()}")
        for name in args.scenario or list(SCENARIOS):  # in B1..B5 order
            run, full, quick = SCENARIOS[name]
            size = args.size or (quick if args.quick else full)
            mode = "custom" if trying_out else "quick" if args.quick else "full"
            rows = run(settings, progress, size=size, runs=args.runs, mode=mode,
                       machine=machine, **(extra if name == "expiry" else {}))
            for row in rows if isinstance(rows, list) else [rows]:
                progress.say(f"{row.scenario} {name} ({row.size:,} {row.size_unit}): "
                             f"{row.verdict()}")
                results.append(row)
    if trying_out:
        progress.say("custom settings: BENCHMARKS.md left as it was")
    else:
        write_report(results)
        progress.say(f"wrote {REPORT_PATH}")
    progress.say(f"done in {time.monotonic() - started:.0f} s")
    return 0  # a missed target is a finding, reported in BENCHMARKS.md, not a failure


def _machine(settings: Settings) -> Machine:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            postgres = str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()
    return Machine(cpus=os.cpu_count() or 0, python=platform.python_version(),
                   postgres=postgres, system=platform.platform())


if __name__ == "__main__":
    sys.exit(main())
