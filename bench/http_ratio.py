"""The shape B1 and B5 share: requests/s of one of our endpoints under wrk ÷ requests/s
of the hello-world POST (bench/hello.py), both served by the same gunicorn settings and
loaded by the same wrk settings, alternating in each run. A scenario may name a floor
app instead (B1: bench/floor.py, the same work written by hand): the floor is then the
baseline the target is on, and the hello-world ratio is kept as information."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from adapters.resources import Resources
from bench import wrk
from bench.processes import wait_until_serving
from bench.progress import Progress
from bench.report import Machine, ScenarioResult, Target
from bench.servers import process_env
from config import Settings
from devstack.scratch_servers import gunicorn

HELLO_PATH = "/hello"
# The most requests/s one run could need requests for: far above what 2 cores serve.
MAX_RATE = 4000
WARM_UP_SECONDS = 2


@dataclass
class HttpScenario:
    """What differs between B1 and B5."""

    scenario: str
    title: str
    target: Target
    about: str
    # (res, how many) -> that many distinct requests for our endpoint, their rows made
    prepare: Callable[[Resources, int], list[wrk.Request]]
    # The table each answered request adds one row to (counted after each run).
    stored_in: str
    reset: Callable[[Resources], None]
    notes: list[str] = field(default_factory=list)
    # "module:app" of a hand-written floor serving the same path (B1), or None
    floor_app: str | None = None


def run(spec: HttpScenario, settings: Settings, progress: Progress, *, size: int, runs: int,
        mode: str, machine: Machine) -> ScenarioResult:
    """`size` is the seconds of load each side gets per run."""
    wrk.wrk_binary()  # fail before starting anything when wrk is missing
    env = process_env(settings)
    logs = settings.run_dir
    res = Resources(settings)
    subject: list[float] = []
    hellos: list[float] = []
    floors: list[float] = []
    latencies: list[tuple[float, float]] = []
    try:
        with ExitStack() as servers:
            app_url = servers.enter_context(gunicorn(env, logs / f"{spec.scenario}-app.log"))
            hello_url = servers.enter_context(gunicorn(
                env, logs / f"{spec.scenario}-hello.log", app="bench.hello:app"))
            floor_url = servers.enter_context(gunicorn(
                env, logs / f"{spec.scenario}-floor.log", app=spec.floor_app)
            ) if spec.floor_app else None
            wait_until_serving(app_url + "/healthz")
            wait_until_serving(hello_url + HELLO_PATH)
            if floor_url:
                wait_until_serving(floor_url + "/nothing-here")
            urls = _Urls(app_url, hello_url, floor_url)
            progress.say(f"{spec.scenario}: warming up the servers ({WARM_UP_SECONDS} s each)")
            _load(spec, res, settings, urls, WARM_UP_SECONDS)
            for i in range(1, runs + 1):
                tag = f"{spec.scenario} run {i}/{runs}"
                progress.say(f"{tag}: preparing requests")
                ours, hello, floor = _load(spec, res, settings, urls, size,
                                           progress=progress, tag=tag)
                subject.append(ours.per_second)
                hellos.append(hello.per_second)
                latencies.append((ours.p99_ms, hello.p99_ms))
                line = (f"{tag}: ours {ours.per_second:,.0f} req/s, hello-world "
                        f"{hello.per_second:,.0f} req/s, ratio "
                        f"{ours.per_second / hello.per_second:.2f}")
                if floor is not None:
                    floors.append(floor.per_second)
                    line += (f"; floor {floor.per_second:,.0f} req/s, ours ÷ floor "
                             f"{ours.per_second / floor.per_second:.2f}")
                progress.say(line)
    finally:
        spec.reset(res)  # nothing left queued or stored for the next scenario
        res.close()
    notes = [*spec.notes, _latency_note(latencies)]
    if floors:
        notes.append(_hello_note(subject, hellos, floors))
    return ScenarioResult(
        scenario=spec.scenario, title=spec.title, size=size, size_unit="s of load",
        mode=mode, target=spec.target, unit="req/s", baseline=floors or hellos,
        subject=subject, date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine, about=spec.about, notes=notes)


@dataclass(frozen=True)
class _Urls:
    app: str
    hello: str
    floor: str | None


def _hello_note(subject: Sequence[float], hellos: Sequence[float],
                floors: Sequence[float]) -> str:
    ours = statistics.median(s / h for s, h in zip(subject, hellos, strict=True))
    floor = statistics.median(f / h for f, h in zip(floors, hellos, strict=True))
    return (f"Against the hello-world POST (information; median of the runs' ratios): ours "
            f"{ours:.2f}, the floor {floor:.2f}; hello-world median "
            f"{statistics.median(hellos):,.0f} req/s.")


def _load(spec: HttpScenario, res: Resources, settings: Settings, urls: _Urls,
          seconds: float, *, progress: Progress | None = None, tag: str = ""
          ) -> tuple[wrk.WrkResult, wrk.WrkResult, wrk.WrkResult | None]:
    spec.reset(res)
    requests = spec.prepare(res, int(MAX_RATE * seconds))
    ours_file = settings.run_dir / f"{spec.scenario}-requests.txt"
    hello_file = settings.run_dir / f"{spec.scenario}-hello-requests.txt"
    wrk.write_requests(ours_file, requests)
    # The same bytes to the hello-world app: only the path differs.
    wrk.write_requests(hello_file, (replace(r, path=HELLO_PATH) for r in requests))
    if progress:
        progress.say(f"{tag}: wrk on ours for {seconds:g} s")
    ours = wrk.run_wrk(urls.app, ours_file, seconds)
    _check(spec, res, ours, settings.run_dir / f"{spec.scenario}-app.log")
    floor = None
    if urls.floor:
        # The same requests again, so the floor stores the very same rows: from empty
        # (_check waited for those still in flight at ours when wrk stopped: stored after
        # the TRUNCATE, one beyond the floor's reach would count as a row of the floor's).
        with res.db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {spec.stored_in}"))
        if progress:
            progress.say(f"{tag}: wrk on the floor for {seconds:g} s")
        floor = wrk.run_wrk(urls.floor, ours_file, seconds)
        _check(spec, res, floor, settings.run_dir / f"{spec.scenario}-floor.log")
    if progress:
        progress.say(f"{tag}: wrk on hello-world for {seconds:g} s")
    hello = wrk.run_wrk(urls.hello, hello_file, seconds)
    if hello.errors:
        raise RuntimeError(f"{spec.scenario}: the hello-world app answered {hello.errors} "
                           "errors")
    return ours, hello, floor


def _stored_when_quiet(res: Resources, table: str, interval: float = 0.2,
                      timeout: float = 10.0) -> int:
    """The table's row count once it stopped growing for `interval` seconds."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        with res.db.engine.connect() as conn:
            stored = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        if stored == last or time.monotonic() > deadline:
            return stored
        last = stored
        time.sleep(interval)


def _check(spec: HttpScenario, res: Resources, result: wrk.WrkResult,
           app_log: Path) -> None:
    """A run counts only with zero errors, no request sent twice and everything stored."""
    if result.errors:
        tail = "\n".join(app_log.read_text(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"{spec.scenario}: {result.errors} of {result.requests} requests "
                           f"failed; the app's last log lines:\n{tail}")
    if result.wraps:
        raise RuntimeError(f"{spec.scenario}: wrk ran out of prepared requests; raise "
                           "http_ratio.MAX_RATE")
    stored = _stored_when_quiet(res, spec.stored_in)
    # wrk stops counting at its deadline with up to CONNECTIONS requests in flight.
    if not result.requests <= stored <= result.requests + wrk.CONNECTIONS:
        raise RuntimeError(f"{spec.scenario}: {result.requests} requests answered but "
                           f"{stored} rows stored in {spec.stored_in}")


def _latency_note(latencies: Sequence[tuple[float, float]]) -> str:
    ours = statistics.median(p for p, _ in latencies)
    hello = statistics.median(p for _, p in latencies)
    return (f"Zero errors in every run (any error or unstored request fails the run). "
            f"Latency under this closed-loop load ({wrk.CONNECTIONS} connections), median "
            f"of the runs' p99: ours {ours:.1f} ms, hello-world {hello:.1f} ms.")
