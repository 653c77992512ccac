"""Set-based, batched expiry of payments and orders, and the processing janitor (DESIGN.md §7).

Each batch is ONE statement in its own short transaction: a CTE picks up to
`batch_size` due rows `FOR UPDATE SKIP LOCKED`, an UPDATE in the same statement
moves them and re-checks their status, and an INSERT ... SELECT over the
UPDATE's RETURNING writes their audit/history rows. So:
- a row a callback is working on (it holds the row lock) is skipped, never
  waited for: the callback's success wins, and the sweep takes what is still
  due on its next run;
- a row that changed since it was read is not moved (the status re-check);
- every moved row gets exactly one audit row, in the same commit, and one merchant
  event (§9), written set-based too (services/webhooks/outbox.py): in the payments'
  statement itself, and by a second one over the ids the orders' statement returns;
- the commit does not wait for the WAL flush: a batch lost in a crash is redone by
  the next run (why that is safe: _begin_sweep_batch).
Rows are never loaded into Python, so one run copes with any backlog; a run
stops early at its deadline and the next tick carries on. Due init payments are
swept by SWEEP_CONNECTIONS such loops side by side, each on its own lane (a span of
expires_at) and in expires_at order from a cursor; SKIP LOCKED keeps their rows apart
where they meet, so a callback still waits for one batch at most, the one holding its
row. A lane is done at its first short batch (_Lanes).

Payments in `processing` exist at the provider, which may hold the customer's
money, so they are first asked of the provider through `provider_status_check`;
a success found there is applied (services/provider_sync.py) instead of expired.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnClause,
    Select,
    String,
    any_,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased

from adapters.metrics import EXPIRATIONS, count_on_commit, count_payment_final
from adapters.resources import Resources
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from domain.webhooks import EventType
from services.provider_sync import (
    UNKNOWN,
    ProviderAnswer,
    ProviderQuery,
    ProviderVerdict,
    apply_answer,
    query_statuses,
)
from services.webhooks.outbox import defer_deliveries, payment_events_from, record_events
from services.webhooks.views import PAYMENT_VIEW_COLUMNS

log = logging.getLogger(__name__)

# A few thousand rows a batch: big enough that 100k rows are a few dozen statements,
# small enough that a batch's row locks are held for a fraction of a second.
SWEEP_BATCH_SIZE = 2000
# Init payments are expired by this many connections side by side (each its own batch
# loop): the work is PostgreSQL's, and one connection keeps one core busy (B4). A
# callback still waits for one batch at most: the one holding its row.
SWEEP_CONNECTIONS = 2
# One batch statement never waits on locks (SKIP LOCKED), so this only trips on a
# sick database; it bounds a run to its deadline plus one batch (see services/maintenance).
BATCH_STATEMENT_TIMEOUT = "30s"
# The janitor looks at payments that have been processing at least this long.
SYNC_MIN_AGE_SECONDS = 60

EXPIRE_PAYMENTS_ACTOR = "system:expire_payments"
SYNC_PENDING_ACTOR = "system:sync_pending"
EXPIRE_ORDERS_ACTOR = "system:expire_orders"
PAYMENT_TTL_REASON = "payment ttl elapsed"
ORDER_TTL_REASON = "order ttl elapsed"
ORDER_EXPIRED_REASON = "order expired"

ACTIVE = tuple(s.value for s in ACTIVE_PAYMENT_STATUSES)
# A payment row's physical address; valid for as long as the statement holds its row lock.
_CTID: ColumnClause[Any] = literal_column("payments.ctid")


def provider_status_check(res: Resources,
                          payments: Sequence[ProviderQuery]) -> dict[int, ProviderAnswer]:
    """Ask each payment's provider (by the provider name stored on the payment) for its status.

    Called outside any transaction (a provider call must never hold row locks) with
    one batch of processing payments; returns an answer per payment id asked about
    (UNKNOWN for any error, timeout or missing provider reference). Bounded in time
    (provider_sync.QUERY_BUDGET_SECONDS), so the run's time budget and its lock's TTL
    (services/maintenance.py) hold; payments it had no time to ask are missing. What
    the callers do:
    - expire_due_payments: SUCCEEDED -> the success is applied through the settlement
      path success callbacks use (not expired); not asked -> left for the next run;
      anything else -> expired.
    - check_processing_payments (the janitor): SUCCEEDED and FAILED are applied the
      same way; PENDING and UNKNOWN change nothing.
    """
    return query_statuses(res, payments)


@dataclass
class SweepTally:
    """What one run did; `as_dict()` is what the CLI prints and the logs show."""

    changed: int = 0
    batches: int = 0
    complete: bool = True  # False when the run stopped at its deadline with work left
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "batches": self.batches, "complete": self.complete,
                **dict(sorted(self.counts.items()))}


# -- payments -------------------------------------------------------------------------------

def expire_due_payments(res: Resources, *, batch_size: int = SWEEP_BATCH_SIZE,
                        deadline: float | None = None) -> SweepTally:
    """init/processing payments past expires_at (database clock) -> expired, with audit rows.

    init payments never reached a provider and go set-based straight away;
    processing ones go through `provider_status_check` a batch at a time first.
    """
    tally = SweepTally()
    # init: SWEEP_CONNECTIONS loops side by side, each on its own lane of the backlog (see
    # _Lanes), each lane until a batch comes back short.
    lanes = _Lanes.over_due_init(res, SWEEP_CONNECTIONS)
    if lanes is not None:
        with ThreadPoolExecutor(SWEEP_CONNECTIONS,
                                thread_name_prefix="expire-payments") as pool:
            parts = [pool.submit(_expire_due_init, res, lanes, first, batch_size, deadline)
                     for first in range(SWEEP_CONNECTIONS)]
            for part in parts:
                done = part.result()  # a loop's error is the run's error
                tally.batches += done.batches
                tally.changed += done.changed
                tally.counts.update(done.counts)
                tally.complete = tally.complete and done.complete
    _expire_due_processing(res, batch_size, deadline, tally)
    return tally


class _Lane:
    """A span of the due init payments by expires_at: from `cursor` (inclusive; where its
    next batch starts) up to `end` (exclusive; None: up to now())."""

    def __init__(self, cursor: datetime, end: datetime | None) -> None:
        self.cursor = cursor
        self.end = end
        self.done = False


class _Lanes:
    """The due init payments cut by expires_at into one lane per loop, so the loops work on
    different rows: different heap pages and index leaves, and no loop scans past the rows
    another has locked, nor again past the rows it expired itself (its cursor starts each
    batch where the last one stopped; scanning from the start, every batch walked again
    the index entries of all the rows expired before it). B4 at 1,000,000 without the
    successes: ~10% less wall time and PostgreSQL CPU (median of two). A loop whose lane
    runs out joins the next lane that has not (wrapping round), from that lane's cursor: both
    then take its batches, SKIP LOCKED keeping their rows apart, so no loop idles while
    work is left. A lane is done at its first short batch: from its cursor to its end,
    every due row left was locked by someone else (a loop in the same lane, which expires
    it, or a callback: skipped this run anyway). Lane 0 starts at the oldest due payment,
    so together the lanes cover every due row that existed when the run began."""

    def __init__(self, lanes: list[_Lane]) -> None:
        self._lanes = lanes
        self._lock = threading.Lock()

    @classmethod
    def over_due_init(cls, res: Resources, count: int) -> _Lanes | None:
        """`count` lanes of equal time spans between the oldest and the newest due init
        payment (two index probes), or None when none is due."""
        with res.uow() as uow:
            oldest, newest = uow.session.execute(
                select(func.min(Payment.expires_at), func.max(Payment.expires_at))
                .where(Payment.status == PaymentStatus.INIT.value,
                       Payment.expires_at < func.now())).one()
        if oldest is None:
            return None
        starts = [oldest + (newest - oldest) * k / count for k in range(count)]
        ends: list[datetime | None] = [*starts[1:], None]
        return cls([_Lane(start, end) for start, end in zip(starts, ends, strict=True)])

    def lane(self, index: int) -> _Lane:
        return self._lanes[index]

    def advance(self, lane: _Lane, last: datetime | None, short: bool) -> _Lane | None:
        """After a batch in `lane` that locked rows up to expires_at `last`: move its cursor
        on, and return the lane to take the next batch from (None: all are done)."""
        with self._lock:
            if last is not None and last > lane.cursor:
                lane.cursor = last  # inclusive: rows at `last` not taken yet are met again
            lane.done = lane.done or short
            if not lane.done:
                return lane
            at = self._lanes.index(lane)
            rest = self._lanes[at + 1:] + self._lanes[:at]
            return next((other for other in rest if not other.done), None)


def _expire_due_init(res: Resources, lanes: _Lanes, first: int, batch_size: int,
                     deadline: float | None) -> SweepTally:
    """One connection's loop over due init payments, a batch per transaction, from lane
    `first` on until every lane is done (see _Lanes)."""
    tally = SweepTally()
    lane: _Lane | None = lanes.lane(first)
    while lane is not None and not _past(deadline, tally):
        params = {"cursor": lane.cursor, "end": lane.end}
        with res.uow() as uow:
            _begin_sweep_batch(uow.session)
            changed, found, last, delivery_ids = uow.session.execute(
                _expire_init_statement(batch_size, lane.end is not None), params).one()
            defer_deliveries(uow.session, delivery_ids)
            count_payment_final(uow.session, PaymentStatus.EXPIRED.value, changed)
            uow.commit()
        if changed:
            tally.batches += 1
            tally.changed += changed
            tally.counts["init_expired"] += changed
        lane = lanes.advance(lane, last, short=found < batch_size)
    return tally


def _expire_due_processing(res: Resources, batch_size: int, deadline: float | None,
                           tally: SweepTally) -> None:
    after_id = 0  # a keyset cursor: payments the provider says are paid are passed over
    while not _past(deadline, tally):
        with res.uow() as uow:
            batch = _processing_batch(uow.session, after_id, batch_size,
                                      Payment.expires_at < func.now())
        if not batch:
            break
        after_id = batch[-1].payment_id
        answers = provider_status_check(res, batch)
        expirable = []
        for query in batch:
            answer = answers.get(query.payment_id)
            if answer is None:  # not asked (the batch's query budget ran out): next run
                tally.counts["provider_not_asked"] += 1
                continue
            if answer.verdict is not ProviderVerdict.SUCCEEDED:
                expirable.append(query.payment_id)
                continue
            # The customer paid and the callback has not (yet) reached us: the money is
            # real, so the success is applied as its callback would apply it.
            status = apply_answer(res, query, answer, actor=EXPIRE_PAYMENTS_ACTOR)
            if status is None:  # a callback is settling it right now: leave it to that
                tally.counts["provider_paid_left"] += 1
            elif status == PaymentStatus.PROCESSING:  # refused (e.g. amount_mismatch)
                expirable.append(query.payment_id)
            else:
                tally.changed += 1
                tally.counts["provider_paid_applied"] += 1
        tally.batches += 1
        if not expirable:
            continue
        with res.uow() as uow:
            _begin_sweep_batch(uow.session)
            changed, _, _, delivery_ids = uow.session.execute(_expire_payments_statement(
                len(expirable), status=PaymentStatus.PROCESSING.value, only_ids=expirable)
            ).one()
            defer_deliveries(uow.session, delivery_ids)
            count_payment_final(uow.session, PaymentStatus.EXPIRED.value, changed)
            uow.commit()
        tally.changed += changed
        tally.counts["processing_expired"] += changed


@lru_cache(maxsize=8)
def _expire_init_statement(batch_size: int, lane_ends: bool) -> Select[Any]:
    """The init batches' statement, built once per batch size and kind of lane (the last
    lane has no end but now()): the lane's bounds are its parameters :cursor and :end.
    Building it again (2.2 ms of Python, its cache key included) left the batch's
    connection idle that long between batches and took CPU from the sweep (B4)."""
    return _expire_payments_statement(batch_size, status=PaymentStatus.INIT.value,
                                      lane=True, lane_ends=lane_ends)


def _expire_payments_statement(batch_size: int, *, status: str,
                               only_ids: Sequence[int] | None = None, lane: bool = False,
                               lane_ends: bool = False) -> Select[Any]:
    """One batch, one statement; returns how many payments it expired, how many due rows it
    locked, the newest expires_at among those (a lane's next cursor) and the ids of the
    webhook deliveries of their payment.expired events (services/webhooks/outbox.py):

    WITH due AS (SELECT ctid, expires_at FROM payments
                 WHERE status = :status AND expires_at < now() [AND id IN (:ids)]
                       [AND expires_at >= :cursor [AND expires_at < :end]
                        ORDER BY expires_at]
                 LIMIT :batch FOR UPDATE SKIP LOCKED),
         expired AS (UPDATE payments SET status = 'expired', updated_at = now()
                     WHERE ctid = ANY(ARRAY(SELECT ctid FROM due)) AND status = :status
                     RETURNING <the columns the event's view reads>, :status AS from_status),
         events AS (INSERT INTO payment_events (payment_id, event, actor, detail)
                    SELECT id, 'payment_expired', :actor, :detail || jsonb_build_object(
                        'expires_at', expires_at) FROM expired
                    RETURNING payment_id),
         webhook_events AS (INSERT INTO events ... SELECT ... FROM expired AS p ...),
         webhook_deliveries_queued AS (INSERT INTO webhook_deliveries ... RETURNING id)
    SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM due),
           (SELECT max(expires_at) FROM due), array(SELECT id FROM webhook_deliveries_queued)
    """
    conditions = [Payment.status == status, Payment.expires_at < func.now()]
    if only_ids is not None:
        conditions.append(Payment.id.in_(only_ids))
    pick = select(_CTID.label("ctid"), Payment.expires_at).where(*conditions)
    if lane:
        # In expires_at order (ix_payments_due's), so a lane's cursor can move on to the
        # newest row a batch took: every due row before it was taken or held by someone.
        pick = pick.where(Payment.expires_at >= bindparam("cursor"))
        if lane_ends:
            pick = pick.where(Payment.expires_at < bindparam("end"))
        pick = pick.order_by(Payment.expires_at)
    # Otherwise no ORDER BY: any due rows will do, and without one the scan stops after
    # batch_size rows instead of sorting the whole backlog again for every batch.
    # (Nothing here waits for a lock, so lock order cannot deadlock.)
    due = pick.limit(batch_size).with_for_update(skip_locked=True).cte("due")
    # The UPDATE finds the locked rows by ctid (a TID scan, in heap order), not by primary
    # key joined on `due` (an index descent and a hash join: 14% of a batch, B4). Sound
    # because this statement holds their row locks from `due` on: none can be updated
    # (moved) in between, and each still has `status`, so that is its from_status (the
    # re-check stays, as the compare-and-set). A row that `due` locked in a version newer
    # than the statement's snapshot (updated, still due, since the statement began) is
    # not found, so not expired: it stays due, for the next batch or run.
    expired = (update(Payment)
               .where(_CTID == any_(func.array(select(due.c.ctid).scalar_subquery())),
                      Payment.status == status)
               .values(status=PaymentStatus.EXPIRED.value, updated_at=func.now())
               .returning(*(Payment.__table__.c[name] for name in PAYMENT_VIEW_COLUMNS),
                          literal(status, String).label("from_status"))
               .cte("expired"))
    events = (insert(PaymentEvent).from_select(
        ["payment_id", "event", "actor", "detail"],
        select(expired.c.id, literal("payment_expired"), literal(EXPIRE_PAYMENTS_ACTOR),
               _expired_detail(status).op("||")(
                   func.jsonb_build_object("expires_at", expired.c.expires_at))))
        .returning(PaymentEvent.payment_id).cte("events"))
    # The merchant's payment.expired events (§9) from the same RETURNING, set-based too.
    queued = payment_events_from(expired, EventType.PAYMENT_EXPIRED)
    # A count, not the ids: the caller only counts them (2,000 ids a batch to send and parse).
    return select(select(func.count()).select_from(events).scalar_subquery(),
                  select(func.count()).select_from(due).scalar_subquery(),
                  select(func.max(due.c.expires_at)).scalar_subquery(),
                  func.array(select(queued.c.id).scalar_subquery()))


def _expired_detail(from_status: str) -> BindParameter[Any]:
    """The part of a payment_expired row's detail that is the same for the whole batch, as
    one JSONB value; the statement adds each row's expires_at with `||`. The same detail
    as jsonb_build_object of all four, for 0.7 us a row less (B4)."""
    return literal({"from_status": from_status, "to_status": PaymentStatus.EXPIRED.value,
                    "reason": PAYMENT_TTL_REASON}, JSONB)


# -- orders ---------------------------------------------------------------------------------

def expire_due_orders(res: Resources, *, batch_size: int = SWEEP_BATCH_SIZE,
                      deadline: float | None = None) -> SweepTally:
    """pending orders older than ORDER_TTL -> expired (history rows); their active
    payments -> cancelled (payment_cancelled rows), in the same transaction.

    A success that arrives for such a payment later is a late payment (§6): the
    order is no longer pending, so the money is refunded, never dropped.

    Locks are only ever taken with SKIP LOCKED, the order first and then its
    active payment, and an order whose active payment someone else holds (a
    callback settling it) is left for the next run. So the sweep never waits on
    a callback, and a callback (payment lock, then order lock) never deadlocks
    with it.
    """
    tally = SweepTally()
    ttl = timedelta(seconds=res.settings.order_ttl_seconds)
    after_id = 0  # a keyset cursor, so orders left for the next run are not met again
    while not _past(deadline, tally):
        with res.uow() as uow:
            session = uow.session
            _begin_sweep_batch(session)
            order_ids = session.execute(_lock_due_orders(ttl, after_id, batch_size)).scalars().all()
            if not order_ids:
                break
            after_id = max(order_ids)
            active = session.execute(
                select(Payment.id, Payment.order_id)
                .where(Payment.order_id.in_(order_ids), Payment.status.in_(ACTIVE))).all()
            locked = set(session.execute(
                select(Payment.id).where(Payment.id.in_([p.id for p in active]),
                                         Payment.status.in_(ACTIVE))
                .with_for_update(skip_locked=True)).scalars()) if active else set()
            busy = {p.order_id for p in active if p.id not in locked}
            expired_orders, cancelled_payments = session.execute(_expire_orders_statement(
                [o for o in order_ids if o not in busy], sorted(locked))).one()
            orders, payments = len(expired_orders), len(cancelled_payments)
            record_events(session, EventType.PAYMENT_CANCELLED, cancelled_payments)
            record_events(session, EventType.ORDER_EXPIRED, expired_orders)
            count_on_commit(session, EXPIRATIONS.labels("order"), orders)
            count_payment_final(session, PaymentStatus.CANCELLED.value, payments)
            uow.commit()
        tally.batches += 1
        tally.changed += orders + payments
        tally.counts["orders_expired"] += orders
        tally.counts["payments_cancelled"] += payments
        tally.counts["orders_left_busy"] += len(busy)
    return tally


def _lock_due_orders(ttl: timedelta, after_id: int, batch_size: int) -> Select[Any]:
    return (select(Order.id)
            .where(Order.status == OrderStatus.PENDING.value,
                   Order.created_at < func.now() - ttl, Order.id > after_id)
            .order_by(Order.id).limit(batch_size).with_for_update(skip_locked=True))


def _expire_orders_statement(order_ids: Sequence[int],
                             payment_ids: Sequence[int]) -> Select[Any]:
    """Locked orders -> expired and their locked active payments -> cancelled, with their
    history and audit rows; one statement, returning the ids of (orders expired, payments
    cancelled):

    WITH expired_orders AS (UPDATE orders SET status = 'expired' ...
                            WHERE id IN (:orders) AND status = 'pending' RETURNING id),
         history AS (INSERT INTO order_status_history ... SELECT ... FROM expired_orders),
         cancelled AS (UPDATE payments SET status = 'cancelled' ... FROM payments AS before
                       WHERE id IN (:payments) AND status IN ('init', 'processing')
                       AND order_id IN (SELECT id FROM expired_orders)
                       RETURNING id, order_id, before.status),
         cancel_events AS (INSERT INTO payment_events ... SELECT ... FROM cancelled)
    SELECT array(SELECT order_id FROM history), array(SELECT payment_id FROM cancel_events)
    """
    pending = OrderStatus.PENDING.value
    expired_orders = (update(Order)
                      .where(Order.id.in_(order_ids), Order.status == pending)
                      .values(status=OrderStatus.EXPIRED.value, updated_at=func.now())
                      .returning(Order.id).cte("expired_orders"))
    history = (insert(OrderStatusHistory).from_select(
        ["order_id", "from_status", "to_status", "reason", "actor"],
        select(expired_orders.c.id, literal(pending), literal(OrderStatus.EXPIRED.value),
               literal(ORDER_TTL_REASON), literal(EXPIRE_ORDERS_ACTOR)))
        .returning(OrderStatusHistory.order_id).cte("history"))
    # `before` is the row as this statement found it: we hold its lock, so it is the
    # status the cancellation moved it from.
    before = aliased(Payment, name="before")
    cancelled = (update(Payment)
                 .where(Payment.id.in_(payment_ids), Payment.status.in_(ACTIVE),
                        Payment.order_id.in_(select(expired_orders.c.id)),
                        before.id == Payment.id)
                 .values(status=PaymentStatus.CANCELLED.value, updated_at=func.now())
                 .returning(Payment.id, Payment.order_id, before.status.label("from_status"))
                 .cte("cancelled_payments"))
    events = (insert(PaymentEvent).from_select(
        ["payment_id", "event", "actor", "detail"],
        select(cancelled.c.id, literal("payment_cancelled"), literal(EXPIRE_ORDERS_ACTOR),
               func.jsonb_build_object("from_status", cancelled.c.from_status,
                                       "to_status", PaymentStatus.CANCELLED.value,
                                       "reason", ORDER_EXPIRED_REASON,
                                       "order_id", cancelled.c.order_id)))
        .returning(PaymentEvent.payment_id).cte("cancel_events"))
    return select(func.array(select(history.c.order_id).scalar_subquery()),
                  func.array(select(events.c.payment_id).scalar_subquery()))


# -- the janitor ----------------------------------------------------------------------------

def check_processing_payments(res: Resources, *, batch_size: int = SWEEP_BATCH_SIZE,
                              deadline: float | None = None) -> SweepTally:
    """Processing payments quiet for a minute or more, asked of their provider in batches.

    A lost callback leaves a payment processing although the provider has
    settled it; the provider's answer repairs that, through the settlement path
    callbacks use: "paid" -> succeeded (order paid, or refunded if it can no longer
    take the money), "failed"/"closed" -> failed. The result counts the answers
    ({"checked": n, "provider_succeeded": ..., "now_succeeded": ..., "changed": ...}).
    """
    tally = SweepTally()
    tally.counts["checked"] = 0
    quiet_since = func.now() - timedelta(seconds=SYNC_MIN_AGE_SECONDS)
    after_id = 0
    while not _past(deadline, tally):
        with res.uow() as uow:
            batch = _processing_batch(uow.session, after_id, batch_size,
                                      Payment.updated_at < quiet_since)
        if not batch:
            break
        after_id = batch[-1].payment_id
        answers = provider_status_check(res, batch)
        tally.batches += 1
        tally.counts["checked"] += len(batch)
        for query in batch:
            answer = answers.get(query.payment_id, UNKNOWN)
            tally.counts[f"provider_{answer.verdict.value}"] += 1
            if answer.verdict in (ProviderVerdict.SUCCEEDED, ProviderVerdict.FAILED):
                status = apply_answer(res, query, answer, actor=SYNC_PENDING_ACTOR)
                if status is not None and status != PaymentStatus.PROCESSING:
                    tally.changed += 1
                    tally.counts[f"now_{status}"] += 1
    return tally


# -- helpers --------------------------------------------------------------------------------

def _processing_batch(session: Session, after_id: int, batch_size: int,
                      condition: Any) -> list[ProviderQuery]:
    rows = session.execute(
        select(Payment.id, Payment.provider, Payment.provider_reference)
        .where(Payment.status == PaymentStatus.PROCESSING.value, Payment.id > after_id,
               condition)
        .order_by(Payment.id).limit(batch_size)).all()
    return [ProviderQuery(int(r.id), r.provider, r.provider_reference) for r in rows]


def _begin_sweep_batch(session: Session) -> None:
    """First in each expiry batch's transaction (the payments and orders sweeps; never the
    janitor or a settlement): cap its statement time, and commit without waiting for the
    WAL flush (synchronous_commit = off: 4-11% off a sweep's time).

    Safe for these batches only. A crash of PostgreSQL can lose the last moments of such
    commits (up to 3 x wal_writer_delay, 0.6 s by default). A lost batch leaves its rows as
    they were before the sweep: active though past expires_at (or their order past
    ORDER_TTL), the state every due row is in until a sweep reaches it, so the next sweep
    expires them again. Nothing leaves the database with a batch (no after-commit hook but
    a metrics counter). And no later decision can rest on a lost expiry: whatever acts on
    an expired row and keeps something (a late success, a refund, a new attempt) writes and
    commits synchronously, its commit record after ours in the WAL, so flushing the WAL up
    to its own record flushes ours first; a reader that only refuses (`pay`, the checkout
    page, the worker) leaves nothing behind, as if it had come just before the sweep.
    Both settings end with the transaction (one round trip sets both);
    tests/integration/test_expire_payments.py checks that neither leaks.
    """
    session.execute(text(
        f"SELECT set_config('statement_timeout', '{BATCH_STATEMENT_TIMEOUT}', true), "
        "set_config('synchronous_commit', 'off', true)"))


def _past(deadline: float | None, tally: SweepTally) -> bool:
    if deadline is not None and time.monotonic() >= deadline:
        tally.complete = False
        return True
    return False
