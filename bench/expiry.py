"""B4 expiry: N due payments expired by `maintenance.expire_payments` ÷ one raw `UPDATE`.

Each run builds the same table twice, from scratch: N due `init` payments (each with
its own pending order: only one active payment per order is allowed) plus a smaller
set of live, not-yet-due payments, then VACUUM ANALYZE and CHECKPOINT, so subject
and baseline start from the same state.

- subject: services.maintenance.expire_stale_payments, the job beat runs (Redis
  run-once lock, batches of expiry.SWEEP_BATCH_SIZE in one short transaction each,
  SKIP LOCKED, one audit row per payment), called again while it reports
  complete=false (its 240 s run budget), all calls timed together. Meanwhile a
  thread applies success callbacks to the live payments at a steady rate, each in
  its own short transaction, and records how long it waited for its row locks.
- baseline: the same rows expired by one raw UPDATE in one transaction.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from adapters.resources import Resources
from bench.progress import Progress, percentile
from bench.report import Machine, ScenarioResult, Target
from config import Settings
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from services import expiry
from services.maintenance import MAX_RUN_SECONDS, expire_stale_payments
from services.transitions import (
    NOW,
    lock_order_status,
    lock_payment_status,
    transition_order,
    transition_payment,
)

SCENARIO = "B4"
TITLE = "expiry: `maintenance.expire_payments` ÷ one raw `UPDATE`"
FULL_SIZE = 1_000_000
QUICK_SIZE = 100_000
TARGET = Target(2.0, at_most=True)
# Success callbacks per second during the sweep: a busy shop's steady trickle. Paced
# rather than flat out, so the load does not take a whole core from the sweep being timed.
CALLBACK_RATE = 100
CALLBACK_ACTOR = "bench:success_callback"

ABOUT = f"""\
Subject: `services.maintenance.expire_stale_payments`, the job behind
`maintenance.expire_payments` (Redis run-once lock; {expiry.SWEEP_CONNECTIONS} connections side
by side, each taking batches of {expiry.SWEEP_BATCH_SIZE:,} due rows, each batch ONE statement
in its own short transaction,
committed with `synchronous_commit = off`: `FOR UPDATE SKIP LOCKED`, the status re-checked in
the `UPDATE`, one `payment_expired` audit row and one merchant `payment.expired` event per
payment inserted from its `RETURNING`).
Baseline: the same rows expired by one raw `UPDATE payments SET status = 'expired', updated_at
= now() WHERE status IN ('init', 'processing') AND expires_at < now()` in one transaction.
Both start from the same freshly built table (N due `init` payments, each with its own pending
order, plus N/50 (at least 5,000) live payments not yet due), after `VACUUM ANALYZE` and
`CHECKPOINT`.

Not like for like, on purpose: the subject also writes one audit row and one event per payment
(two more tables and their indexes: roughly three times the rows written) and commits once
per batch, which the raw `UPDATE` does not; in exchange it holds no more than one batch of
row locks per connection, on disjoint rows (SKIP LOCKED), so a concurrent callback waits at
most for the one batch that holds its row, never for the sweep. While the subject runs,
success callbacks for the live payments are applied at {CALLBACK_RATE}/s by a process of their
own (as worker processes other than the sweep's apply them in production), each in its own
transaction as a settlement does it (lock the order and the payment, move both, write the
audit, history and merchant event rows, commit); their lock waits (time to get both row
locks) and latencies are reported. The baseline runs without that load. Each run truncates
the tables the sweep writes (events included) before it builds its payments. If a call of the
job stops at its {MAX_RUN_SECONDS} s run budget (`complete: false`), it is called again at once
and all calls count."""

# What bounds the ratio, from a short profile (EXPLAIN (ANALYZE, BUFFERS, WAL) of single
# batches, variants timed side by side); refresh it when the sweep's statement changes.
PROFILE = """\
Where the time goes (profiled 2026-12-01 in the first round, mostly quiet: load about 1; the
figures below are that machine's, before the second round's changes).
Variants ran alternately, whole sweeps at 1,000,000 and 200,000, judged by wall time and
PostgreSQL CPU (the server's processes, from /proc), with perf (all processes), pg_stat_wal,
statement durations from the server's log and wait events sampled from pg_stat_activity.

Per payment the raw `UPDATE` writes 853 WAL bytes (the new row version and six index entries;
the two partial indexes skip the expired version) and the job ~2,080: the same update with its
row lock, the audit row and its index entries, the event row with its 480-byte JSONB view and
two index entries. On one connection at 200,000 the job costs ~26 us of PostgreSQL CPU a
payment against the raw `UPDATE`'s ~9: the batched update ~14.5 (its scan, lock, TID lookup and
RETURNING included), the audit row ~3 (with its check), the event ~7 (building its view alone
3.9: to_jsonb of a row is the cheapest form tried, against row_to_json 5.4 and
jsonb_build_object 5.6). No update is HOT (`status` is in three indexes), on both sides; 10-15%
of both sides' CPU is B-tree bottom-up deletion (`heap_index_delete_tuples`) in the indexes
whose key the update leaves as it was. Two connections do the same work for ~20% more CPU (6.4-
6.8 s against 5.5 s at 200,000): both write the last pages of events, payment_events and their
primary keys, and the same leaves of the payments indexes keyed by user or by NULL
(out_trade_no, provider + transaction id); the sweep's backends were on CPU ~73% of the time,
the rest mostly waiting on `BufferContent` (~10%) and `WALWrite` (~9%). The whole machine at
1,000,000 (perf, before this round's changes to the successes): the two sweep backends ~65% of
the samples, the successes alongside ~25% (their Python 14%, their backend 11%), idle ~6%.

Applied on 2026-12-01 evening (the second round):
- Lanes (services/expiry._Lanes). Each sweep connection walks its own half of the due
  payments' span of expires_at, in expires_at order from a cursor where its last batch stopped,
  and joins the other lane when its own is done. Before, every batch of both connections
  scanned ix_payments_due from its start: over the index entries of every payment expired
  before it (dead, but walked again: quadratic in the backlog), and past the rows the other
  connection had locked. At 1,000,000 without the successes: wall 33.2, 29.7 s against 35.8,
  34.3 s; PostgreSQL CPU 59.7, 53.3 s against 63.9, 60.8 s (alternated). At 200,000 no
  difference showed: the quadratic part is small there.
- The successes alongside: a settlement's fixed statements (the two row locks, each move with
  its history or audit row now in ONE statement, the merchant events) run as psycopg prepared
  statements (adapters/prepared.py) instead of through SQLAlchemy's session, which cost ~0.4 ms
  of Python each. Per success on this machine: Python 3.4-3.8 -> 1.05-1.16 ms, PostgreSQL
  1.35-1.48 -> 1.01-1.16 ms (six statements instead of eight). Every single-path settlement,
  refund and order change gains the same.

Applied earlier the same day:
- No foreign key on the audit row (migration 0012). It cost an index probe and a KEY SHARE lock
  per row, 3.3 us; a statement-level trigger now checks all of a statement's new rows in one
  anti-join (~0.8 us a row) and payments can no longer be deleted at all. PostgreSQL CPU at
  200,000 on one connection 5.62, 5.74 s before, 5.15, 5.27 s after (5.0, 5.1 with no check).
- The successes alongside. An order's merchant event was planned afresh for every success:
  PostgreSQL never took its generic plan with `id = ANY(:ids)` (the order view's subqueries,
  ~0.5 ms a plan); one object's event is now `id = :id`, planned once per connection: 2.16 ->
  1.26 ms of PostgreSQL CPU per success. They also locked the order and the payment twice (the
  transitions were not given the statuses read under the locks, as a settlement gives them), and
  now run in a process of their own, as worker processes apply callbacks in production.
- Each run starts without the earlier runs' events: runs 2 and 3 had swept into one and two
  million events left by the runs before (e.g. 19.8, 22.0, 22.0 s; now 19.3-19.6 s).
- A sweep connection stops at its first short batch (its scan went round the whole table)
  instead of one more batch that finds nothing, which scanned the whole table again.

Measured, full runs at 1,000,000 with the successes alongside. The second round, on a machine
about twice as slow as the first round's (the raw `UPDATE` takes 18-26 s against ~9 s): the
code before it 2.11, 1.87 and, alternated with the lanes, 2.09, 1.76 (lanes 2.05, 1.96, with
the successes' old statements); both changes together 1.52, 2.24, 1.68 (the baseline alone moved
between 18.4 and 25.9 s in that set, most of its spread) and again 1.52, 1.60, 1.68 (the run in
the table: subject 34.7-36.9 s, the successes now keeping up with their 100/s, against ~75/s
before on this machine); at 100,000 1.62, 1.88, 1.25 against 2.20, 2.19, 2.22.
The first round: the code before it 2.36, 2.50 (2.26, 2.36, 2.26 the evening before);
after the changes to the audit row and the successes 2.12, 2.25, 2.20, then with the truncate
2.07, 2.08, 2.05; with the short batch 2.32, 2.25, 2.14 and 2.40, 2.24, 2.02 (the load average
swung between 1.4 and 6 in those two) and 2.09, 2.18, 2.11. Without the successes 1.96, 2.01.
Run to run the same code moves by up to 15% here, and the baseline as much as the subject.

Tried, not kept (each alternated with the code of the day, at 1,000,000 with the successes
unless said): batches of 5,000 and 10,000 (2.22 and 2.19 against 2.08 and 2.02); caches of 1,000
ids on the event and audit sequences, so each backend writes its own range of the primary keys
(2.17, 2.18 against 2.06, 2.07; ~5% less CPU at 200,000 without the successes; a cache would
also have broken the audit trail's order by id); shared_buffers 1 GB instead of 128 MB (slower:
24.3, 25.6 s against 21.4, 22.8 s); max_wal_size 8 GB, so no checkpoint falls in the sweep
instead of three (no faster); no row lock in the batch (no CPU change at 200,000); partial
unique indexes on out_trade_no and provider + transaction id, which never need their NULL
entries (both sides ~18% faster at 200,000, the raw `UPDATE` most, so the ratio rose: 2.11,
2.24 against 2.14, 1.93); earlier rounds: wal_buffers 16 MB, three sweep connections, the audit
rows inserted before the update. No index could go: on payments each serves a query (`status,
created_at` the admin list's status filter and order; `user_id` a user's list; `order_id` an
order's payments; the unique ones are constraints), events' (txid, id) is the feed's order,
payment_events' payment_id the audit trail's reads.

What bounds the rest: the job does ~3x the raw `UPDATE`'s PostgreSQL work (three rows and their
index entries per payment), spread over two connections that still share the last pages of
the tables they insert into, on two cores that the successes alongside (~0.2 cores at 100/s
on this machine since the second round, ~0.5 before it) and anyone else's load also take from."""

RAW_UPDATE = text("""
UPDATE payments SET status = 'expired', updated_at = now()
WHERE status IN ('init', 'processing') AND expires_at < now()
""")

# The orders first (one per payment), then their payments: the first :due are due, spread
# over the last ~17 minutes per million (distinct expires_at, ordered like their ids, as a
# real backlog would be); the rest are live and due in 30 minutes.
INSERT_ORDERS = text("""
INSERT INTO orders (order_number, user_id, total_amount, currency, status,
                    created_at, updated_at)
SELECT 'bench-' || g, 1 + g % 1000, 100.00, 'CNY', 'pending', now(), now()
FROM generate_series(1, :total) AS g
""")
INSERT_PAYMENTS = text("""
INSERT INTO payments (order_id, user_id, amount, currency, method, status, provider, attempt,
                      fee, refunded_amount, needs_review, created_at, updated_at, expires_at)
SELECT o.id, o.user_id, 100.00, 'CNY', 'wechat', 'init', 'sandbox', 1, 0.60, 0, false,
       t.created, t.created, t.created + interval '30 minutes'
FROM (SELECT id, user_id, row_number() OVER (ORDER BY id) AS n FROM orders) AS o,
     LATERAL (SELECT CASE WHEN o.n <= :due
                          THEN now() - interval '31 minutes' - (:due - o.n) * interval '1 ms'
                          ELSE now() END) AS t(created)
ORDER BY o.id
""")
# The merchant events, their deliveries and the customers' notifications too: each run's
# sweep writes a million events, and a later run must not start on the earlier runs' rows.
TRUNCATE = text("TRUNCATE payment_events, order_status_history, refunds, payments, orders, "
                "events, webhook_deliveries, notifications RESTART IDENTITY CASCADE")


def run(settings: Settings, progress: Progress, *, size: int, runs: int, mode: str,
        machine: Machine, callback_rate: float = CALLBACK_RATE) -> ScenarioResult:
    live = max(5_000, size // 50)
    res = Resources(settings)
    subject_seconds: list[float] = []
    baseline_seconds: list[float] = []
    loads: list[SuccessLoad] = []
    sweeps: list[SweepCalls] = []
    try:
        for i in range(1, runs + 1):
            tag = f"{SCENARIO} run {i}/{runs}"
            _build_table(res, progress, tag, due=size, live=live)
            seconds, sweep, load = _time_subject(settings, res, progress, tag, size,
                                                callback_rate)
            subject_seconds.append(seconds)
            sweeps.append(sweep)
            loads.append(load)
            _build_table(res, progress, tag, due=size, live=live)
            baseline_seconds.append(_time_baseline(res, progress, tag, size))
            progress.say(f"{tag}: subject {seconds:.2f} s, baseline {baseline_seconds[-1]:.2f} s,"
                         f" ratio {seconds / baseline_seconds[-1]:.2f}")
    finally:
        res.close()
    return ScenarioResult(
        scenario=SCENARIO, title=TITLE, size=size, size_unit="payments", mode=mode,
        target=TARGET, unit="s", baseline=baseline_seconds, subject=subject_seconds,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=machine,
        about=f"{ABOUT}\n\n{PROFILE}",
        notes=_notes(size, live, sweeps, loads, subject_seconds, callback_rate))


# -- the table ------------------------------------------------------------------------------

def _build_table(res: Resources, progress: Progress, tag: str, *, due: int, live: int) -> None:
    started = time.perf_counter()
    progress.say(f"{tag}: building {due:,} due + {live:,} live payments")
    with res.db.engine.begin() as conn:
        conn.execute(TRUNCATE)
        conn.execute(INSERT_ORDERS, {"total": due + live})
        conn.execute(INSERT_PAYMENTS, {"due": due})
    with _autocommit(res) as conn:
        conn.execute(text("VACUUM ANALYZE orders, payments, payment_events"))
        _checkpoint(conn)
    progress.say(f"{tag}: table built in {time.perf_counter() - started:.1f} s")


def _autocommit(res: Resources) -> Connection:
    return res.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _checkpoint(conn: Connection) -> None:
    """Start each timed phase with no dirty pages left by the build (needs superuser or
    pg_checkpoint; without it the phases just share the noise)."""
    try:
        conn.execute(text("CHECKPOINT"))
    except Exception:  # noqa: BLE001 - a missing privilege only costs precision
        pass


def _count_due(res: Resources) -> int:
    with res.db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM payments WHERE status IN ('init', 'processing') "
            "AND expires_at < now()")).scalar_one())


# -- subject --------------------------------------------------------------------------------

@dataclass
class SweepCalls:
    """What the job's calls reported in one run."""

    calls: int = 0
    changed: int = 0
    batches: int = 0


def _time_subject(settings: Settings, res: Resources, progress: Progress, tag: str,
                  size: int, callback_rate: float) -> tuple[float, SweepCalls, SuccessLoad]:
    with res.db.engine.connect() as conn:
        live = [(int(p), int(o)) for p, o in conn.execute(text(
            "SELECT id, order_id FROM payments WHERE expires_at > now() ORDER BY id"))]
    events_before = _events_inserted(res)
    sweep_res = Resources(settings)
    load = SuccessLoad(settings, live, callback_rate)
    sweep = SweepCalls()

    def line() -> str:
        successes = load.applied.value
        expired = _events_inserted(res) - events_before - successes
        return (f"{tag}: sweeping, {time.perf_counter() - started:.0f} s, about "
                f"{max(expired, 0):,}/{size:,} expired; {successes:,} successes "
                f"applied meanwhile")

    progress.say(f"{tag}: subject: expire_stale_payments on {size:,} due payments, "
                 f"successes at {callback_rate:g}/s alongside")
    try:
        with sweep_res.uow():  # connect before the clock starts, as a worker would be
            pass
        load.start()
        started = time.perf_counter()
        with progress.ticking(line):
            while True:
                result = expire_stale_payments(sweep_res)
                if "skipped" in result:
                    raise RuntimeError(f"the sweep did not run: {result}")
                sweep.calls += 1
                sweep.changed += result["changed"]
                sweep.batches += result["batches"]
                if result["complete"]:
                    break
                progress.say(f"{tag}: the job stopped at its run budget; calling it again")
        seconds = time.perf_counter() - started
    finally:
        load.stop()
        sweep_res.close()
    if load.error:
        raise RuntimeError(f"the success callbacks failed: {load.error}")
    left = _count_due(res)
    if sweep.changed != size or left:
        raise RuntimeError(f"the sweep expired {sweep.changed:,} of {size:,}; {left:,} still due")
    return seconds, sweep, load


def _events_inserted(res: Resources) -> int:
    """payment_events rows inserted so far, from the statistics collector: free to read,
    about a second behind (a count(*) would load the database being measured)."""
    with res.db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'payment_events'"
        )).scalar_one())


class SuccessLoad:
    """Success callbacks for live payments, applied at `rate` per second until stopped, each
    as a callback's settlement does it: lock the order, then the payment, move both (passing
    the statuses read under those locks, as services/settlement.py does) with their history
    and audit rows, commit.

    In a process of its own, as callbacks are applied in production: by worker processes
    other than the one whose task runs the sweep. Run as a thread of the sweep's process,
    its Python per callback (~2.5 ms then; ~1 ms since the transitions run prepared) held
    the GIL the sweep's two threads need between their batches. `start` returns once its
    connection is open; `stop` collects what it measured (lock waits, latencies, whether the
    live payments ran out, its error if any).
    """

    def __init__(self, settings: Settings, live: list[tuple[int, int]], rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = context.Event()
        self._results = context.Queue()
        self.applied = context.Value("i", 0)  # read while it runs, for the progress line
        self._process = context.Process(
            target=_apply_successes, name="bench-successes", daemon=True,
            args=(settings, live, rate, self._ready, self._stop, self._results, self.applied))
        self.lock_waits: list[float] = []
        self.latencies: list[float] = []
        self.exhausted = False
        self.error: str | None = None
        self._rate = rate

    def start(self) -> None:
        if self._rate <= 0:  # a rate of 0: no load at all
            return
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the success callbacks' process did not start")

    def stop(self) -> None:
        if not self._process.is_alive() and self._process.exitcode is None:
            return  # never started
        self._stop.set()
        self.lock_waits, self.latencies, self.exhausted, self.error = self._results.get(
            timeout=60)
        self._process.join(60)


def _apply_successes(settings: Settings, live: list[tuple[int, int]], rate: float,
                     ready: Any, stop: Any, results: Any, applied: Any) -> None:
    """SuccessLoad's process: its own Resources, one success every 1/rate s until `stop`."""
    res = Resources(settings)
    lock_waits: list[float] = []
    latencies: list[float] = []
    exhausted, error = False, None
    interval = 1 / rate
    try:
        with res.uow():  # connected before the sweep's clock starts
            pass
        ready.set()
        next_at = time.monotonic()
        for payment_id, order_id in live:
            if stop.wait(max(0.0, next_at - time.monotonic())):
                break
            # Behind schedule (a slow success)? Carry on from now, no catch-up burst.
            next_at = max(next_at, time.monotonic() - 1) + interval
            lock_wait, latency = _succeed(res, payment_id, order_id)
            lock_waits.append(lock_wait)
            latencies.append(latency)
            with applied.get_lock():
                applied.value += 1
        else:
            exhausted = True
    except Exception as exc:  # noqa: BLE001 - surfaced by the scenario after the sweep
        error = f"{type(exc).__name__}: {exc}"
    finally:
        ready.set()
        stop.wait()
        results.put((lock_waits, latencies, exhausted, error))
        res.close()


def _succeed(res: Resources, payment_id: int, order_id: int) -> tuple[float, float]:
    """One success: (seconds waiting for both row locks, seconds for the whole transaction)."""
    started = time.perf_counter()
    with res.uow() as uow:
        session = uow.session
        order_status = lock_order_status(session, order_id)
        payment_status = lock_payment_status(session, payment_id)
        locked = time.perf_counter()
        transition_order(session, order_id, OrderStatus.PAID, actor=CALLBACK_ACTOR,
                         reason="payment succeeded", locked=order_status)
        before = transition_payment(
            session, payment_id, PaymentStatus.SUCCEEDED, actor=CALLBACK_ACTOR,
            event="payment_succeeded",
            values={"paid_at": NOW, "transaction_id": f"bench-{payment_id}"},
            allowed_from=ACTIVE_PAYMENT_STATUSES, locked=payment_status)
        if before is None:
            raise RuntimeError(f"live payment {payment_id} could not succeed")
        uow.commit()
    return locked - started, time.perf_counter() - started


# -- baseline -------------------------------------------------------------------------------

def _time_baseline(res: Resources, progress: Progress, tag: str, size: int) -> float:
    progress.say(f"{tag}: baseline: one raw UPDATE of {size:,} due payments")
    with res.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # connected before the clock starts
        conn.commit()
        started = time.perf_counter()
        changed = conn.execute(RAW_UPDATE).rowcount
        conn.commit()
        seconds = time.perf_counter() - started
    if changed != size:
        raise RuntimeError(f"the raw UPDATE expired {changed:,} of {size:,}")
    return seconds


# -- the report's notes ---------------------------------------------------------------------

def _notes(size: int, live: int, sweeps: list[SweepCalls], loads: list[SuccessLoad],
           subject_seconds: list[float], callback_rate: float) -> list[str]:
    waits = [w for load in loads for w in load.lock_waits]
    latencies = [x for load in loads for x in load.latencies]
    calls = [s.calls for s in sweeps]
    budget = (f"one call of the job per run: its {MAX_RUN_SECONDS} s run budget was never reached"
              if max(calls) == 1 else
              f"{min(calls)}–{max(calls)} calls of the job per run: it stopped at its "
              f"{MAX_RUN_SECONDS} s run budget and was called again at once; all calls are timed")
    batches = statistics.median(s.batches for s in sweeps)
    notes = [f"Subject: {size:,} payments expired per run in {batches:,.0f} batches (median); "
             f"{budget}."]
    if waits:
        ms = [1000 * percentile(waits, q) for q in (50, 99, 100)]
        lat = [1000 * percentile(latencies, q) for q in (50, 99, 100)]
        notes.append(
            f"Concurrent success callbacks on live payments ({callback_rate:g}/s asked, "
            f"{len(waits) / sum(subject_seconds):.0f}/s achieved): {len(waits):,} applied "
            f"during the sweeps of all runs; lock wait (order + payment "
            f"row locks) p50 {ms[0]:.1f} ms, p99 {ms[1]:.1f} ms, max {ms[2]:.1f} ms; whole "
            f"transaction p50 {lat[0]:.1f} ms, p99 {lat[1]:.1f} ms, max {lat[2]:.1f} ms.")
    else:
        notes.append("No success callback completed during the sweeps.")
    if any(load.exhausted for load in loads):
        notes.append(f"The {live:,} live payments ran out before a sweep ended; the callbacks "
                     "stopped there.")
    return notes
