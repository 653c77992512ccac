"""B3 end-to-end latency at a fixed rate: callback sent → payment committed as succeeded.

An open-loop sender posts signed success callbacks at a fixed rate (on schedule,
whether or not earlier ones have been answered, as providers do) to gunicorn, with a
worker applying them as `make up` runs it. A trigger added to this run's database
NOTIFYs each payment's move to `succeeded`; NOTIFY is delivered at commit, so the time
it arrives is the time the payment was committed. Latency is that minus the moment
the callback was due to be sent. Baseline: the hello-world POST at the same rate, sent
the same way, its HTTP round trip (the floor of answering anything here).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

from adapters.resources import Resources
from bench.callbacks import CALLBACK_PATH, signed_headers, success_body
from bench.fixtures import create_processing_payments, empty_tables
from bench.processes import celery_worker, wait_until_serving
from bench.progress import Progress, percentile
from bench.report import Machine, ScenarioResult, Target
from bench.servers import process_env
from config import Settings
from devstack.scratch_servers import gunicorn

SCENARIO = "B3"
TITLE = "end-to-end latency at a fixed rate: callback sent → payment committed"
# Callbacks per second, each a row of its own; the capacity row is the highest of them at
# which the p99 holds the target with the queue not growing (every lower rate holding too).
RATES = (50, 100, 200, 300, 400)
FULL_SIZE = 20           # seconds of load per rate and run
QUICK_SIZE = 5
WARM_UP_SECONDS = 2
TARGET = Target(100, at_most=True, on="subject")  # p99 in ms
CAPACITY_TARGET = Target(300, at_most=False, on="subject")  # callbacks/s
# "The queue is not growing": the median latency of a run's last quarter of callbacks is
# within this of its first quarter's. A growing queue makes every later callback wait longer.
GROWTH_MS = 50.0
SENDER_THREADS = 32      # enough in flight that a slow answer never delays the schedule
CHANNEL = "bench_payment_succeeded"

ABOUT = f"""\
Subject: signed `payment.succeeded` callbacks, each for its own `processing` payment, posted
at a fixed rate, {" and ".join(f"{r}/s" for r in RATES)} (a row each), open loop: each is sent
when due, whether or not earlier ones were answered. They go to `POST /callbacks/sandbox` under
gunicorn (`web/gunicorn_conf.py`), with one worker as `make up` starts it (2 processes)
applying them. The figure is the p99, over all callbacks of a run, of the time from the moment
a callback was due to be sent to the commit that made its payment `succeeded`: a trigger added
for the benchmark NOTIFYs the payment's id, and PostgreSQL delivers a NOTIFY only at commit.
Target: p99 ≤ {TARGET.value:g} ms. Baseline, for scale: the hello-world POST
(`bench/hello.py`) at the same rate through the same sender, its HTTP round trip; the ratio
column is subject p99 ÷ baseline p99."""

# What the rates show; refresh with the numbers.
PROFILE = """\
What bounds it (measured 2026-12-01 on the machine below, shared with other engineers' test
runs and benchmarks: load average 6-12 on 2 cores throughout, so every process waits for a
core at each round trip). A callback's way is the ingest (one autocommit INSERT, one Redis `SET
NX`, and a wake-up message when none is on its way), the wake-up's delivery, then a drain of
batches: each batch is nine sequential PostgreSQL round trips and two Redis ones whatever its
size (the claim: begin, one statement that locks, counts and leases, commit; the payments'
locks, one script call; the settlement: begin, the statement bounds, one locking read, two
writes, commit; the locks' release, one script call), where it was about twenty-three and a
pipelined command per lock before. A running drain keeps the wake-up flag set (it used to run
out after 2 s and wake a second drain that halved every batch), and while callbacks keep
coming it claims at most every 20 ms, so a few share a batch's fixed cost. CPU per callback
by process over the 300/s phase (from /proc; web, worker, PostgreSQL, the sender, Redis): 1.4,
0.33, 0.58, 0.88 and 0.05 ms, 3.2 ms in all, against 2.6, 2.0, 1.4, 1.3 and 0.16 ms (7.4 ms,
more than the two cores hold at 300/s) before this change and B1's; a batch's own CPU in the
worker is 1.5 ms for one callback and 4.1 ms for fifty (2.7 and 7.8 ms before). py-spy on
the pool processes: most of a drain's time is psycopg waiting on PostgreSQL, then Redis round
trips; our code and SQLAlchemy are a few per cent. On the shared machine (the quick rows,
load 6-12) the p99 missed 100 ms from 100/s on, made of stalls of a few hundred ms that hit
the hello-world round trip as well. The full rows were measured on a quiet machine (load about
1, 2026-12-01 17:52 UTC): the p99 stays at 11-44 ms at every rate up to 400/s with the queue
not growing (medians of three: 12, 26, 27, 28 and 41 ms at 50, 100, 200, 300 and 400/s), so
the capacity is the highest rate measured, 400/s. At 15:45 UTC, before B1's prepared insert
and cheaper hooks, 400/s had filled the two cores (the sender, web, worker and PostgreSQL
together about 3.2 ms of CPU per callback, 1.3 ms of it the web's and sender's; our p99
141-209 ms, the hello-world round trip's own 84-119 ms) and the capacity was 300/s. What bounds
it is CPU per callback across the processes, the web's ingest the largest part (B1)."""

NOTIFY_TRIGGER = f"""
CREATE OR REPLACE FUNCTION bench_notify_succeeded() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.id::text);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_notify_succeeded AFTER UPDATE OF status ON payments
FOR EACH ROW WHEN (NEW.status = 'succeeded' AND OLD.status <> 'succeeded')
EXECUTE FUNCTION bench_notify_succeeded();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS bench_notify_succeeded ON payments;
DROP FUNCTION IF EXISTS bench_notify_succeeded();
"""


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine) -> list[ScenarioResult]:
    """One row per rate in RATES and the capacity row, from `runs` runs of `size` seconds of
    load at each rate (each run goes through every rate, lowest first)."""
    env = process_env(settings)
    logs = settings.run_dir
    res = Resources(settings)
    measured: dict[int, list[_AtRate]] = {rate: [] for rate in RATES}
    try:
        with _notify_trigger(res), \
                gunicorn(env, logs / f"{SCENARIO}-app.log") as app_url, \
                gunicorn(env, logs / f"{SCENARIO}-hello.log", app="bench.hello:app") as hello_url, \
                celery_worker(env, logs / f"{SCENARIO}-worker.log"):
            wait_until_serving(app_url + "/healthz")
            wait_until_serving(hello_url + "/hello")
            progress.say(f"{SCENARIO}: warming up ({WARM_UP_SECONDS} s at {min(RATES)}/s)")
            _callbacks_at_rate(settings, res, progress, SCENARIO, app_url, min(RATES),
                               WARM_UP_SECONDS)
            for i in range(1, runs + 1):
                for rate in RATES:
                    tag = f"{SCENARIO} {rate}/s run {i}/{runs}"
                    ours = _callbacks_at_rate(settings, res, progress, tag, app_url, rate, size)
                    hello = _hello_at_rate(progress, tag, hello_url, rate, size)
                    measured[rate].append(_AtRate.of(ours, hello))
                    progress.say(f"{tag}: {measured[rate][-1].describe()}")
    finally:
        res.close()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [_rate_row(rate, measured[rate], size=size, mode=mode, machine=machine, date=date)
            for rate in RATES]
    return [*rows, _capacity_row(measured, size=size, mode=mode, machine=machine, date=date)]


@dataclass(frozen=True)
class _AtRate:
    """One run at one rate."""

    p99: float
    p50: float
    hello_p99: float
    hello_p50: float
    growth_ms: float  # last quarter's median latency - first quarter's

    @classmethod
    def of(cls, ours: list[float], hello: list[float]) -> _AtRate:
        quarter = max(1, len(ours) // 4)
        return cls(p99=percentile(ours, 99), p50=percentile(ours, 50),
                   hello_p99=percentile(hello, 99), hello_p50=percentile(hello, 50),
                   growth_ms=statistics.median(ours[-quarter:])
                   - statistics.median(ours[:quarter]))

    @property
    def holds(self) -> bool:
        return TARGET.met_by(self.p99) and self.growth_ms <= GROWTH_MS

    @property
    def hello_holds(self) -> bool:
        return TARGET.met_by(self.hello_p99)

    def describe(self) -> str:
        return (f"callback → committed p50 {self.p50:,.1f} ms, p99 {self.p99:,.1f} ms, "
                f"last quarter {self.growth_ms:+,.0f} ms against the first; hello-world "
                f"round trip p99 {self.hello_p99:.1f} ms")


def _rate_row(rate: int, runs: list[_AtRate], *, size: int, mode: str, machine: Machine,
              date: str) -> ScenarioResult:
    ours_p50 = statistics.median(r.p50 for r in runs)
    hello_p50 = statistics.median(r.hello_p50 for r in runs)
    growth = ", ".join(f"{r.growth_ms:+,.0f}" for r in runs)
    return ScenarioResult(
        scenario=SCENARIO, title=TITLE, size=size, size_unit=f"s at {rate}/s", mode=mode,
        target=TARGET, unit="ms", baseline=[r.hello_p99 for r in runs],
        subject=[r.p99 for r in runs], date=date, machine=machine,
        about=f"{ABOUT}\n\n{PROFILE}",
        notes=[f"At {rate}/s, median of the runs' p50: callback → committed {ours_p50:,.1f} ms, "
               f"hello-world round trip {hello_p50:.1f} ms. Last quarter's median latency "
               f"against the first's, per run: {growth} ms (the queue grows when this does). "
               f"Every run: all {rate * size:,} callbacks answered 200 and every payment "
               "committed as succeeded (a missing one fails the run)."])


def _capacity(holds: list[bool]) -> int:
    """The highest rate that held with every lower rate holding too; 0 if 50/s did not."""
    best = 0
    for rate, ok in zip(RATES, holds, strict=True):
        if not ok:
            break
        best = rate
    return best


def _capacity_row(measured: dict[int, list[_AtRate]], *, size: int, mode: str,
                  machine: Machine, date: str) -> ScenarioResult:
    runs = len(measured[RATES[0]])
    ours = [_capacity([measured[r][i].holds for r in RATES]) for i in range(runs)]
    hello = [_capacity([measured[r][i].hello_holds for r in RATES]) for i in range(runs)]
    return ScenarioResult(
        scenario=SCENARIO, title=TITLE, size=size, size_unit="s per rate: capacity",
        mode=mode, target=CAPACITY_TARGET, unit="callbacks/s", baseline=[float(h) for h in hello],
        subject=[float(o) for o in ours], date=date, machine=machine,
        about=f"{ABOUT}\n\n{PROFILE}",
        notes=[f"Capacity: the highest of {', '.join(map(str, RATES))}/s at which the p99 "
               f"stayed ≤ {TARGET.value:g} ms with the queue not growing (last quarter's median "
               f"latency within {GROWTH_MS:g} ms of the first's), every lower rate holding too; "
               "web, worker, PostgreSQL, Redis and the sender on the same 2 cores. Baseline: "
               "the same for the hello-world round trip (the sender's and the HTTP stack's own "
               f"limit). Per run: {', '.join(f'{o}/s' for o in ours)}."])


@contextmanager
def _notify_trigger(res: Resources) -> Iterator[None]:
    with res.db.engine.begin() as conn:
        conn.execute(text(NOTIFY_TRIGGER))
    try:
        yield
    finally:
        with res.db.engine.begin() as conn:
            conn.execute(text(DROP_TRIGGER))


class _CommitListener:
    """LISTENs on CHANNEL in a thread; records when each payment id's NOTIFY arrived."""

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.database_url)
        self._conn = psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password,
            dbname=url.database, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self.committed: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="bench-listen", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            for notify in self._conn.notifies(timeout=0.2):
                self.committed[int(notify.payload)] = time.perf_counter()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def _callbacks_at_rate(settings: Settings, res: Resources, progress: Progress, tag: str,
                       base_url: str, rate: int, seconds: int) -> list[float]:
    """Latencies (ms) of rate*seconds callbacks sent on schedule."""
    empty_tables(res)
    payment_ids = create_processing_payments(res, rate * seconds)
    bodies = [success_body(pid) for pid in payment_ids]
    listener = _CommitListener(settings)
    try:
        progress.say(f"{tag}: {len(bodies):,} callbacks at {rate}/s")
        due, answers = _send_at_rate(
            base_url + CALLBACK_PATH, rate,
            [(body, signed_headers(settings, body)) for body in bodies])
        bad = [code for code in answers if code != 200]
        if bad:
            raise RuntimeError(f"{tag}: {len(bad)} callbacks answered {sorted(set(bad))}")
        # Above the workers' capacity the queue drains after the sending stops.
        deadline = time.monotonic() + max(60, len(payment_ids) / 20)
        while len(listener.committed) < len(payment_ids) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.close()
    missing = [pid for pid in payment_ids if pid not in listener.committed]
    if missing:
        raise RuntimeError(f"{tag}: {len(missing)} payments never committed as succeeded")
    return [1000 * (listener.committed[pid] - at) for pid, at in zip(payment_ids, due,
                                                                     strict=True)]


def _hello_at_rate(progress: Progress, tag: str, base_url: str, rate: int,
                   seconds: int) -> list[float]:
    """HTTP round trips (ms) of rate*seconds hello-world POSTs sent on schedule."""
    body = success_body(1)
    progress.say(f"{tag}: {rate * seconds:,} hello-world POSTs at {rate}/s")
    requests_ = [(body, {"Content-Type": "application/json"})] * (rate * seconds)
    due, answers = _send_at_rate(base_url + "/hello", rate, requests_, timed=True)
    if any(not isinstance(a, float) for a in answers):
        raise RuntimeError(f"{tag}: the hello-world app failed")
    return [1000 * (float(done) - at) for done, at in zip(answers, due, strict=True)]


def _send_at_rate(url: str, rate: int, requests_: list[tuple[bytes, dict[str, str]]], *,
                  timed: bool = False) -> tuple[list[float], list[int | float]]:
    """POST each at its due time (start + k/rate). Returns the due times and, per
    request, its status code, or (timed) the moment its answer arrived."""
    local = threading.local()

    def post(body: bytes, headers: dict[str, str]) -> int | float:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        answer = session.post(url, data=body, headers=headers, timeout=30)
        if timed:
            return time.perf_counter() if answer.status_code == 200 else answer.status_code
        return answer.status_code

    start = time.perf_counter() + 0.1
    due = [start + k / rate for k in range(len(requests_))]
    futures: list[Future[int | float]] = []
    with ThreadPoolExecutor(SENDER_THREADS) as pool:
        for at, (body, headers) in zip(due, requests_, strict=True):
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, body, headers))
        return due, [f.result() for f in futures]
