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

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, text

from adapters.resources import Resources
from bench.progress import Progress, percentile
from bench.report import Machine, ScenarioResult, Target
from config import Settings
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from services import expiry
from services.maintenance import MAX_RUN_SECONDS, expire_stale_payments
from services.transitions import (
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
success callbacks
for the live payments are applied at {CALLBACK_RATE}/s, each in its own transaction (lock the
order and the payment, move both, write the audit and history rows, commit); their lock
waits (time to get both row locks) and latencies are reported. The baseline runs without
that load. If a call of the job stops at its {MAX_RUN_SECONDS} s run budget
(`complete: false`), it is called again at once and all calls count."""

# What bounds the ratio, from a short profile (EXPLAIN (ANALYZE, BUFFERS, WAL) of single
# batches, variants timed side by side); refresh it when the sweep's statement changes.
PROFILE = """\
Where the time goes (profiled 2026-12-01 on the machine below, load 1-10 from other engineers'
work: absolute times swing 2-4x, so variants ran alternately; EXPLAIN (ANALYZE, BUFFERS, WAL)
of single 2,000-row batches at 200,000-1,000,000 rows, pg_stat_wal and the PostgreSQL
processes' CPU (/proc) around whole runs, wait events sampled from pg_stat_activity). Per
payment at 1,000,000 the raw `UPDATE` writes 853 WAL bytes (the new row version and six index
entries; the two partial indexes skip the expired version) and the job ~2,150: its row lock
(~55), the same update (~710), the audit row and its index entries (~470 before this round),
the event row with its 480-byte JSONB view and two index entries (~750). No update is HOT
(`n_tup_hot_upd` 0: `status` is in three indexes), in both; a HOT-able schema would cut the
shared part, the baseline's all, and raise the ratio. The due rows come from a sequential scan
that PostgreSQL synchronizes on a table over a quarter of shared_buffers: each batch starts where
the last stopped, so no batch rescans expired rows: the rate holds through a 1,000,000-row
sweep. The job is CPU-bound in PostgreSQL: its two backends were on CPU in ~75% of samples,
the rest mostly `WALWrite` (4 MB wal_buffers hold about one batch's WAL) and `BufferContent` (both
connections append to the same last pages of payment_events and events); it took 30-31 s of
PostgreSQL CPU for 1,000,000 payments against the raw `UPDATE`'s 9 s. Autovacuum ran during one
of the profiled sweeps, which was no outlier. Applied this round: the `UPDATE` finds the locked
rows by ctid instead of by primary key joined on the CTE (batch median 59 -> 51 ms, -14%), and
migration 0011 drops the index on `payment_events.event`, which no query uses (-5% a batch,
-75 WAL bytes a payment). Alternating bench runs at 1,000,000 (quiet machine, load 1-2): before
3.05, 3.15, 2.88, 2.49 (subject 22.8-26.8 s), after 2.64, 2.86, 2.23, 2.53 (21.8-27.1 s); at
100,000 before
2.95, 2.87, after 2.48, 2.68. Tried, not kept: no foreign key on the audit row (-11% PostgreSQL
CPU, 3-13% less wall time; kept for audit integrity); batches of 1,000 (20.3-20.9 s against
18.9-19.6 s for 2,000) or 5,000 (18.8-25.1 s); the view as `to_jsonb` of a row (-12% of its
3.8 us a payment, ~2% of a batch). What bounds the rest: the job does 3.3x the raw `UPDATE`'s
work in PostgreSQL (three rows and their index entries per payment where the `UPDATE` writes one
version), spread over two connections; that is near 2x only while both cores are free, and the
callbacks alongside and anyone else's load take from that. The full rows' run (quiet machine,
load about 1, 2026-12-01 15:50 UTC) gave 2.51 at 1,000,000; dropping the audit row's foreign key
would be the next tenth."""

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
TRUNCATE = text("TRUNCATE payment_events, order_status_history, refunds, payments, orders "
                "RESTART IDENTITY CASCADE")


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
    sweep_res, load_res = Resources(settings), Resources(settings)
    load = SuccessLoad(load_res, live, callback_rate)
    sweep = SweepCalls()

    def line() -> str:
        expired = _events_inserted(res) - events_before - len(load.latencies)
        return (f"{tag}: sweeping, {time.perf_counter() - started:.0f} s, about "
                f"{max(expired, 0):,}/{size:,} expired; {len(load.latencies):,} successes "
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
        load_res.close()
    if load.errors:
        raise load.errors[0]
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
    """Success callbacks for live payments, applied at `rate` per second in a thread until
    stopped, each as a callback's settlement does it: lock the order, then the payment,
    move both with their history and audit rows, commit."""

    def __init__(self, res: Resources, live: list[tuple[int, int]], rate: float) -> None:
        self._res = res
        self._live = live
        self._interval = 1 / rate if rate > 0 else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-successes", daemon=True)
        self.lock_waits: list[float] = []
        self.latencies: list[float] = []
        self.exhausted = False
        self.errors: list[BaseException] = []

    def start(self) -> None:
        if self._interval:  # a rate of 0: no load at all
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            for payment_id, order_id in self._live:
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    return
                # Behind schedule (a slow success)? Carry on from now, no catch-up burst.
                next_at = max(next_at, time.monotonic() - 1) + self._interval
                self._succeed(payment_id, order_id)
            self.exhausted = True
        except BaseException as exc:  # surfaced by the scenario after the sweep
            self.errors.append(exc)

    def _succeed(self, payment_id: int, order_id: int) -> None:
        started = time.perf_counter()
        with self._res.uow() as uow:
            session = uow.session
            lock_order_status(session, order_id)
            lock_payment_status(session, payment_id)
            locked = time.perf_counter()
            transition_order(session, order_id, OrderStatus.PAID, actor=CALLBACK_ACTOR,
                             reason="payment succeeded")
            before = transition_payment(
                session, payment_id, PaymentStatus.SUCCEEDED, actor=CALLBACK_ACTOR,
                event="payment_succeeded",
                values={"paid_at": func.now(), "transaction_id": f"bench-{payment_id}"},
                allowed_from=ACTIVE_PAYMENT_STATUSES)
            if before is None:
                raise RuntimeError(f"live payment {payment_id} could not succeed")
            uow.commit()
        self.lock_waits.append(locked - started)
        self.latencies.append(time.perf_counter() - started)


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
