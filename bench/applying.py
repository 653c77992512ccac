"""B2 applying: callbacks applied per second by the worker pool ÷ no-op tasks per second.

Each run stores N success callbacks in the inbox (each for its own `processing` payment)
and sends the one wake-up ingest would have sent while no worker runs; then starts a
worker as `make up` does and times it applying them in batches. The baseline queues N
`bench.noop` tasks on the same queue, same broker, and times a worker with the same
settings.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import insert, text

from adapters.celery_app import make_celery
from adapters.resources import Resources
from bench.callbacks import success_body
from bench.fixtures import create_processing_payments, empty_tables
from bench.processes import celery_worker
from bench.progress import Progress
from bench.report import Machine, ScenarioResult, Target
from bench.servers import process_env
from config import Settings
from domain.models import Base, ProviderCallback
from domain.statuses import CallbackStatus
from services.callback_batches import BATCH_SIZE
from services.callback_wakeup import wake_appliers

SCENARIO = "B2"
TITLE = "applying: callbacks applied/s by the worker pool ÷ no-op tasks/s"
FULL_SIZE = 10_000
QUICK_SIZE = 2_000
TARGET = Target(1.0, at_most=False)
CONCURRENCY = 2  # as `make up` starts it (WORKER_CONCURRENCY), one per core here
# The rate is taken between these fractions of the queue done: worker start-up and the
# last stragglers are not what is being compared.
WINDOW = (0.1, 0.9)
POLL_SECONDS = 0.02  # how often the metric files are read while a worker drains
TASK_COUNT_METRIC = "payments_task_seconds"
# Applied callbacks, as the worker counts them at each batch's commit.
APPLIED_METRIC = "payments_callbacks"
NOOP_TASK = "bench.noop"  # bench/noop_task.py

ABOUT = f"""\
Subject: N success callbacks stored in the inbox (each a signed `payment.succeeded` for its own
`processing` payment) and the one `callbacks.apply_batch` wake-up ingest would have sent, while
no worker runs; then one worker as `make up` starts it (prefork, {CONCURRENCY} processes, acks
late, prefetch 1) applies them in batches of up to {BATCH_SIZE}: per batch one claim (one
statement locks the waiting rows with SKIP LOCKED, counts their attempts and sets a lease;
their payments' Redis locks are taken by one script call; committed), then one transaction in
which the common case settles set-based (the inbox rows, orders and payments locked by one
statement; the payments → succeeded and their orders → paid with history, audit and outbox
rows by two more; the inbox rows → processed) and anything else settles singly, each in its
own savepoint; one commit, the locks released. A full batch sends the next wake-up at once,
so both pool processes work. Baseline: N `bench.noop` tasks (same argument, same queue, same
broker and worker settings) that do nothing. Both rates are completions per second between
{WINDOW[0]:.0%} and {WINDOW[1]:.0%} of the work, read from the worker's own metrics
(`{APPLIED_METRIC}_total{{outcome="processed"}}`, counted at each batch's commit;
`{TASK_COUNT_METRIC}` for the no-ops), so worker start-up is not in either. Each run checks
that every payment succeeded exactly once."""

# Where the time goes; refresh when the settlement path changes.
PROFILE = """\
Where the time goes (measured 2026-12-01 on the machine below, shared with four other
engineers' test runs: load average 10-12 on 2 cores): `apply_callback_batch` called in a loop
over 2,000 stored callbacks, under cProfile, took 1.1 ms of CPU per callback in the worker process
(3.9 ms wall: the rest is waiting on PostgreSQL), against 14 ms per callback when each callback
of the batch was settled by `settle_callback` in its own savepoint. That was with about twenty
statements per batch; since issue #21's B3 work a batch is nine PostgreSQL round trips and two
Redis ones whatever its size (the claim: begin, one claim statement, commit; the locks, one
script call; the settlement: begin, the statement bounds, one locking read, two writes, commit;
the locks' release, one script call), and a batch's own CPU in the worker fell by about 45%
(`apply_callback_batch` on 1, 10 and 50 stored callbacks, fastest of 40: 1.5, 2.1 and 4.1 ms
against 2.7, 3.8 and 7.8 ms before). What bounds the rest: PostgreSQL's own work per row
(about a dozen row writes per callback, each with its index entries and WAL) and psycopg's
waiting on it. The no-op baseline is round-trip bound (acks late, prefetch 1: about four
Redis round trips per task) and suffers more than the batch does from a loaded machine: in
these runs it reached 47-53 tasks/s against 379-577/s on a quiet machine earlier the same day
(the full rows below, measured with the previous one-message-per-callback apply), while the
batches applied 416-692/s; after issue #21's B3 work, quick runs on a machine as loaded
(load average 9-11) applied 1,474-2,557/s against 109-586 no-op tasks/s. So the
ratio in the quick rows overstates what a quiet machine shows. The full rows were measured on
a quiet machine (load about 1, 2026-12-01 17:47 UTC): 5,225-7,571 callbacks/s applied against
574-597 no-op tasks/s, ratios 13.19, 12.61, 8.75 (15:40 UTC, before this round's ingest and
expiry changes: 6,552-7,555 against 634-716, 9.3-11.9)."""


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine) -> ScenarioResult:
    res = Resources(settings)
    celery = make_celery(settings)
    subject: list[float] = []
    baseline: list[float] = []
    try:
        for i in range(1, runs + 1):
            tag = f"{SCENARIO} run {i}/{runs}"
            # Whatever an earlier scenario left queued would be drained and counted first.
            celery.control.purge()
            subject.append(_time_subject(settings, res, progress, tag, size))
            celery.control.purge()
            baseline.append(_time_baseline(settings, celery, progress, tag, size))
            progress.say(f"{tag}: applied {subject[-1]:,.0f}/s, no-op {baseline[-1]:,.0f}/s, "
                         f"ratio {subject[-1] / baseline[-1]:.2f}")
    finally:
        res.close()
    return ScenarioResult(
        scenario=SCENARIO, title=TITLE, size=size, size_unit="callbacks", mode=mode,
        target=TARGET, unit="tasks/s", baseline=baseline, subject=subject,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=machine,
        about=f"{ABOUT}\n\n{PROFILE}",
        notes=[f"Every run: all {size:,} payments succeeded, each with exactly one "
               "`payment_succeeded` audit row, and every inbox row ended `processed`."])


def _time_subject(settings: Settings, res: Resources, progress: Progress, tag: str,
                  size: int) -> float:
    progress.say(f"{tag}: storing {size:,} callbacks and waking the appliers")
    empty_tables(res)
    _store_callbacks(res, create_processing_payments(res, size))
    wake_appliers(res)
    rate = _drain(settings, progress, tag, "callbacks", size, include=None,
                  count=_callbacks_applied)
    problem = _check_applied(res, size)
    if problem:
        raise RuntimeError(f"{tag}: {problem}")
    return rate


def _time_baseline(settings: Settings, celery: Celery, progress: Progress, tag: str,
                   size: int) -> float:
    progress.say(f"{tag}: queueing {size:,} no-op tasks")
    for n in range(1, size + 1):
        celery.send_task(NOOP_TASK, args=[n], queue="callbacks")
    return _drain(settings, progress, tag, NOOP_TASK, size, include="bench.noop_task")


def _store_callbacks(res: Resources, payment_ids: list[int]) -> list[int]:
    rows = []
    for payment_id in payment_ids:
        body = success_body(payment_id)
        rows.append({"provider": "sandbox", "event_id": f"bench-{payment_id}",
                     "event_type": "payment.succeeded", "payment_id": payment_id,
                     "raw_body": body, "payload": json.loads(body),
                     "status": CallbackStatus.RECEIVED.value})
    with res.db.engine.begin() as conn:
        conn.execute(insert(Base.metadata.tables[ProviderCallback.__tablename__]), rows)
        ids = conn.execute(text("SELECT id FROM provider_callbacks ORDER BY id"))
        return [int(r[0]) for r in ids]


def _drain(settings: Settings, progress: Progress, tag: str, task: str, size: int,
           include: str | None, count: Callable[[Path, str], int] | None = None) -> float:
    """Start a worker, wait until it has done `size` of `task` (tasks of that name run,
    or what `count` counts), stop it; the rate between the WINDOW fractions of the work."""
    count = count or _tasks_done
    env = process_env(settings)
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    low, high = int(size * WINDOW[0]), int(size * WINDOW[1])
    marks: dict[int, float] = {}
    done = 0
    progress.say(f"{tag}: a worker drains {size:,} {task}")
    with celery_worker(env, settings.run_dir / f"{SCENARIO}-worker.log",
                       concurrency=CONCURRENCY, include=include):
        deadline = time.monotonic() + max(120, size / 10)
        last_say = time.monotonic()
        while done < size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tag}: only {done:,} of {size:,} {task} ran")
            time.sleep(POLL_SECONDS)
            done = max(done, count(metrics_dir, task))
            now = time.monotonic()
            for mark in (low, high):
                if done >= mark and mark not in marks:
                    marks[mark] = now
            if now - last_say > 5:
                progress.say(f"{tag}: {done:,}/{size:,} {task} done")
                last_say = now
    # Two batches can commit within one poll on a tiny size: the poll is the clock's tick.
    return (high - low) / max(marks[high] - marks[low], POLL_SECONDS)


def _tasks_done(metrics_dir: Path, task: str) -> int:
    """Tasks named `task` finished so far, from the worker processes' metric files."""
    return _metric_sum(metrics_dir, TASK_COUNT_METRIC,
                       lambda s: s.name.endswith("_count") and s.labels.get("task") == task)


def _callbacks_applied(metrics_dir: Path, _: str) -> int:
    """Callbacks applied (committed) so far, from the worker processes' metric files."""
    return _metric_sum(metrics_dir, APPLIED_METRIC,
                       lambda s: s.name.endswith("_total")
                       and s.labels.get("outcome") == "processed")


def _metric_sum(metrics_dir: Path, family_name: str, wanted: Callable[[Any], bool]) -> int:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    try:
        families = list(registry.collect())
    except struct.error:
        # A worker process has just created its metrics file and not yet sized it
        # (prometheus_client reads a 0-byte file as a truncated one): read again on the
        # next poll (the caller keeps the highest count seen).
        return 0
    for family in families:
        if family.name == family_name:
            return int(sum(s.value for s in family.samples if wanted(s)))
    return 0



def _check_applied(res: Resources, size: int) -> str | None:
    with res.db.engine.connect() as conn:
        succeeded, events, processed = conn.execute(text("""
            SELECT (SELECT count(*) FROM payments WHERE status = 'succeeded'),
                   (SELECT count(*) FROM (SELECT payment_id FROM payment_events
                                          WHERE event = 'payment_succeeded'
                                          GROUP BY payment_id HAVING count(*) = 1) AS once),
                   (SELECT count(*) FROM provider_callbacks WHERE status = 'processed')
        """)).one()
    if (succeeded, events, processed) != (size, size, size):
        return (f"of {size:,}: {succeeded:,} payments succeeded, {events:,} with exactly one "
                f"audit row, {processed:,} callbacks processed")
    return None
