"""Every benchmark scenario runs end to end on tiny sizes (`--size`, one run), so the
suite behind `make bench` cannot rot between full runs. A custom size never touches
BENCHMARKS.md or bench/results.json."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from config import PROJECT_ROOT

pytestmark = pytest.mark.slow

# scenario -> a size small enough for seconds, big enough to exercise every phase
SMOKE_SIZES = {
    "ingest": 1,        # seconds of wrk load per side
    "creation": 1,
    "applying": 200,    # callbacks
    "latency": 1,       # seconds at the fixed rate
    "expiry": 3000,     # due payments
}
NEEDS_WRK = {"ingest", "creation"}


@pytest.mark.parametrize("scenario", sorted(SMOKE_SIZES))
def test_scenario_runs_and_reports_a_verdict(scenario):
    if scenario in NEEDS_WRK and not shutil.which("wrk"):
        pytest.skip("wrk is not installed (`make install` installs it as root)")
    report = PROJECT_ROOT / "BENCHMARKS.md"
    results = PROJECT_ROOT / "bench" / "results.json"
    before = (report.read_bytes(), results.read_bytes())

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--scenario", scenario, "--size",
         str(SMOKE_SIZES[scenario]), "--runs", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)

    assert proc.returncode == 0, proc.stderr[-4000:]
    verdicts = [line for line in proc.stderr.splitlines() if f"{scenario} (" in line
                and "(target " in line]
    assert verdicts, proc.stderr[-4000:]  # one per row (B3: one per rate)
    assert all(line.endswith((": pass", ": miss")) for line in verdicts)
    assert "run 1/1" in proc.stderr  # progress lines while it ran
    assert (report.read_bytes(), results.read_bytes()) == before
