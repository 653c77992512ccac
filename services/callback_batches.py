"""Applying stored callbacks in batches: many per task and per transaction (issue #21, B2).

One Celery message per callback costs more than most callbacks take to apply, so ingest
sends a cheap, deduplicated wake-up instead (services/callback_wakeup.py), and a
`callbacks.apply_batch` task applies whatever is waiting, oldest first:

1. Claim (one short transaction, committed): one statement takes up to BATCH_SIZE
   `received` rows nobody has claimed (FOR UPDATE SKIP LOCKED), counts their attempt and
   sets their lease (`claimed_until`); then each row's Redis lock (its payment's, as the
   single-callback path takes; pipelined SET NX PX, not waiting). A row whose lock is
   busy is handed back as it was before the commit, for a later batch. The commit comes
   before any work, so a callback that kills its worker still counts, and no other batch
   claims it meanwhile.
2. Apply (one transaction, one commit): first the common case (first successes of
   waiting payments) set-based, in a few statements (services/batch_settlement.py); if
   that raises, the transaction is rolled back and started again without it. The rest
   go through the same settlement as the single path (settle_callback: inbox row lock,
   compare-and-set, audit, outbox), each in a SAVEPOINT. A callback that raises there
   rolls back only its own savepoint; its error is kept and its lease set to a backoff,
   and past MAX_ATTEMPTS it ends `failed`. The rest of the batch commits.
3. Release the locks.

A worker SIGKILLed mid-batch never commits step 2: its rows stay `received` with their
attempt counted, and once their lease and locks expire (LEASE_SECONDS) the next batch,
or the redelivery sweep, takes them; the compare-and-set refuses a stale second apply.
Nothing here depends on the broker being Redis: the wake-up flag and the locks live in
the Redis the service always has; the broker only carries `callbacks.apply_batch`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import BigInteger, DateTime, Float, Integer, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from adapters.db import savepoint
from adapters.locks import acquire_many, payment_lock_name, release_many
from adapters.log_context import log_context
from adapters.metrics import CALLBACKS, count_on_commit
from adapters.resources import Resources
from domain.callback_events import CallbackEvent, parse_callback_event
from domain.errors import DomainError
from services.batch_settlement import Pending, settle_first_successes
from services.callback_wakeup import (
    APPLY_BATCH_TASK,
    WAKE_TTL_MS,
    clear_wake_flag,
    keep_wake_flag,
)
from services.callbacks import (
    APPLIED_OUTCOME,
    LOCK_TTL_SECONDS,
    MAX_ATTEMPTS,
    MAX_ERROR_LENGTH,
    REFUND_TASK,
)
from services.settlement import bound_waits, settle_callback

log = logging.getLogger(__name__)

BATCH_SIZE = 100
# A claimed row's lease and its lock's TTL: above the longest a batch may run (its
# transaction stops taking new callbacks after BATCH_BUDGET_SECONDS; one settlement is
# bounded by its 10 s statement timeout), so a live batch never loses either.
LEASE_SECONDS = LOCK_TTL_SECONDS
BATCH_BUDGET_SECONDS = 10.0
# How long one wake-up's drain_inbox may keep taking batches before handing over.
DRAIN_BUDGET_SECONDS = 5.0
# A drain's rhythm while callbacks keep coming (drain_inbox): a batch that was not full
# is followed by the next claim no sooner than this after it began. A batch of one
# callback costs nearly what a batch of ten does, and on two shared cores that CPU is
# the web's; the pause adds at most this to a callback's way.
PACE_SECONDS = 0.02
# At most one delayed follow-up pending at a time (rows left behind: busy locks, errors,
# another batch's lease).
RETRY_KEY = "callbacks:apply-retry"
# A slot ends this long before its follow-up is due, so the follow-up's own batch always
# finds it free (clocks, timers).
SLOT_MARGIN_SECONDS = 0.1
BUSY_RETRY_SECONDS = 0.5
MIN_RETRY_SECONDS = 0.2
ERROR_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class BatchOutcome:
    claimed: int = 0
    busy: int = 0          # left for later: their lock was held by someone else
    released: int = 0      # claimed but not reached within the budget (attempt returned)
    errors: int = 0        # raised; rolled back to their savepoint, retried later
    outcomes: dict[str, int] = field(default_factory=dict)
    retry_in: float | None = None  # a follow-up was scheduled this many seconds ahead

    def summary(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "busy": self.busy, "released": self.released,
                "errors": self.errors, **self.outcomes}

    def add(self, other: BatchOutcome) -> None:
        self.claimed += other.claimed
        self.busy += other.busy
        self.released += other.released
        self.errors += other.errors
        for name, count in other.outcomes.items():
            self.outcomes[name] = self.outcomes.get(name, 0) + count
        self.retry_in = other.retry_in if other.retry_in is not None else self.retry_in


# --- follow-ups ------------------------------------------------------------------------

def _schedule_follow_up(res: Resources, delay: float) -> float | None:
    """A batch in `delay` seconds, unless one is pending already.

    A held slot must mean a message is on its way: every batch that finds it held relies
    on that message and schedules nothing. So the slot is taken only once the broker has
    the message. Taken before the send (as it once was), a batch SIGKILLed between the
    two (a fresh pool process's first send opens its RabbitMQ connection and waits for
    the publisher confirm: tens of ms), or a refused send, left a slot with no message
    behind it: for its whole delay (30 s for a dead batch's lease) every batch, the dead
    one's redelivery too, skipped its follow-up, and once they had all run nobody woke
    again. Two batches racing past the check may both send: one batch too many, harmless.
    The slot ends before the follow-up is due (its countdown runs from the send's start),
    so the batch it starts can schedule the next one."""
    delay = max(MIN_RETRY_SECONDS, delay)
    # Two slots, so a pending far one (a dead batch's lease, 30 s) never holds back a near
    # one (a busy lock, 0.5 s).
    key = f"{RETRY_KEY}:{'soon' if delay <= BUSY_RETRY_SECONDS * 2 else 'later'}"
    try:
        if res.redis.exists(key):
            return None
    except redis.RedisError:
        return None  # no Redis, no locks: the task's retry or the sweep carries on
    started = time.monotonic()
    if not res.queue.send(APPLY_BATCH_TASK, countdown=delay):
        return None
    slot_ms = int((delay - SLOT_MARGIN_SECONDS - (time.monotonic() - started)) * 1000)
    if slot_ms > 0:
        try:
            res.redis.set(key, 1, px=slot_ms)
        except redis.RedisError:
            pass  # no slot: the next batch may send one follow-up more
    return delay


# --- the batch -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Claimed:
    id: int
    payment_id: int | None
    provider: str
    payload: Any
    attempts: int
    last_error: str | None


_ARRAY = ARRAY(BigInteger)
# The claim in one statement: up to :limit waiting rows nobody holds, locked (SKIP
# LOCKED), their attempt counted and a lease set; with them (a row whose id is NULL) the
# seconds until the first lease another batch holds ends, if any (a dead batch's rows).
# The statement's snapshot predates its own UPDATE, so that row sees only others' leases.
# The rows keep their old lease and updated_at, for _UNCLAIM (a busy lock's row is left as
# it was).
_CLAIM = text("""
    WITH candidates AS (
        SELECT id, claimed_until, updated_at FROM provider_callbacks
        WHERE status = 'received' AND (claimed_until IS NULL OR claimed_until <= now())
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE provider_callbacks c
        SET attempts = c.attempts + 1, updated_at = now(),
            claimed_until = now() + make_interval(secs => :lease)
        FROM candidates WHERE c.id = candidates.id
        RETURNING c.id, c.payment_id, c.provider, c.payload, c.attempts, c.last_error,
                  candidates.claimed_until AS old_claimed_until,
                  candidates.updated_at AS old_updated_at)
    SELECT *, NULL::float8 AS next_lease FROM claimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           extract(epoch FROM min(claimed_until) - now())::float8
    FROM provider_callbacks WHERE status = 'received' AND claimed_until > now()
    """).bindparams(bindparam("limit", type_=Integer), bindparam("lease", type_=Float))
# Claimed rows whose payment's lock turned out busy, before the claim commits: back to
# what they were, so only the rows this batch applies have an attempt counted.
_UNCLAIM = text("""
    UPDATE provider_callbacks c
    SET attempts = c.attempts - 1, claimed_until = v.claimed_until, updated_at = v.updated_at
    FROM unnest(:ids, :leases, :updated) AS v(id, claimed_until, updated_at)
    WHERE c.id = v.id""").bindparams(
    bindparam("ids", type_=_ARRAY), bindparam("leases", type_=ARRAY(DateTime(True))),
    bindparam("updated", type_=ARRAY(DateTime(True))))
_RETURN_UNTRIED = text("""
    UPDATE provider_callbacks SET attempts = attempts - 1, claimed_until = NULL
    WHERE id = ANY(:ids) AND status = 'received'""").bindparams(bindparam("ids", type_=_ARRAY))
_KEEP_ERROR = text("""
    UPDATE provider_callbacks
    SET last_error = :error, updated_at = now(),
        claimed_until = clock_timestamp() + make_interval(secs => :backoff)
    WHERE id = :id AND status = 'received'""").bindparams(
    bindparam("id", type_=BigInteger), bindparam("error", type_=String),
    bindparam("backoff", type_=Float))
_GIVE_UP = text("""
    UPDATE provider_callbacks
    SET status = 'failed', last_error = :error, processed_at = now(), updated_at = now()
    WHERE id = :id AND status = 'received'""").bindparams(
    bindparam("id", type_=BigInteger), bindparam("error", type_=String))


def lock_name(payment_id: int | None, callback_id: int) -> str:
    """The payment's lock, as every writer of a payment takes it; a callback naming no
    payment we know (unmatched) locks only itself."""
    return (payment_lock_name(payment_id) if payment_id is not None
            else f"callback-lock:{callback_id}")


def drain_inbox(res: Resources, *, limit: int = BATCH_SIZE,
                budget_seconds: float = DRAIN_BUDGET_SECONDS) -> BatchOutcome:
    """The wake-up's work: batches one after another until nothing is waiting.

    The wake-up flag stays set while the batches run, so callbacks stored meanwhile send
    no wake-up of their own: the next batch of this loop claims them together. (Cleared
    before every batch, each callback arriving during a batch woke a batch of its own, and
    at moderate rates every batch's fixed round trips were paid per callback.) It is set
    again every half of its TTL, so a long drain is not joined by a second one woken when
    the flag ran out (the two halved each other's batches). While callbacks keep coming
    (two batches in a row found some, neither full), the next claim comes no sooner than
    PACE_SECONDS after the last began, so that a few share each batch's fixed cost. Only
    when a claim finds nothing is the flag cleared, and then the inbox is looked at once
    more: a callback committed before the clear is seen by that last claim, one committed
    after it sends the next wake-up itself. Past the budget the loop hands over to a fresh
    wake-up, so one task never holds a pool process for long."""
    total = BatchOutcome()
    deadline = time.monotonic() + budget_seconds
    keep_flag_at = 0.0
    streak = 0  # batches in a row that claimed something
    while True:
        started = time.monotonic()
        if started >= keep_flag_at:
            keep_wake_flag(res)
            keep_flag_at = started + WAKE_TTL_MS / 2000
        outcome = apply_callback_batch(res, limit=limit, clear_flag=False)
        total.add(outcome)
        if outcome.claimed:
            if time.monotonic() >= deadline:
                clear_wake_flag(res)
                res.queue.send(APPLY_BATCH_TASK)  # if lost, the redelivery sweep carries on
                return total
            streak += 1
            if streak > 1 and outcome.claimed < limit:
                _sleep_until(started + PACE_SECONDS)
            continue
        clear_wake_flag(res)
        last = apply_callback_batch(res, limit=limit, clear_flag=False)
        total.add(last)
        if not last.claimed:
            return total
        streak = 1


def _sleep_until(moment: float) -> None:
    pause = moment - time.monotonic()
    if pause > 0:
        time.sleep(pause)


def apply_callback_batch(res: Resources, *, limit: int = BATCH_SIZE,
                         clear_flag: bool = True) -> BatchOutcome:
    """Claim, apply and commit one batch of waiting callbacks (module docstring).

    Alone (clear_flag), the wake-up flag is cleared before the claim, so anything
    committed later wakes a batch again; drain_inbox clears it itself."""
    outcome = BatchOutcome()
    if clear_flag:
        clear_wake_flag(res)
    claimed, held, full, next_lease = _claim(res, limit, outcome)
    try:
        if full and claimed:
            # More are waiting: another pool process takes the next batch meanwhile.
            res.queue.send(APPLY_BATCH_TASK)
        retry_at = _apply(res, claimed, outcome) if claimed else None
    finally:
        release_many(res.redis, held)
    delays = [d for d in (retry_at, next_lease,
                          BUSY_RETRY_SECONDS if outcome.busy else None,
                          0.0 if outcome.released else None) if d is not None]
    if delays:
        outcome.retry_in = _schedule_follow_up(res, min(delays))
    if claimed:
        log.info("callback batch: %s", outcome.summary())
    return outcome


def _claim(res: Resources, limit: int, outcome: BatchOutcome
           ) -> tuple[list[_Claimed], dict[str, str], bool, float | None]:
    """(claimed rows in id order, the locks held for them, whether the batch was full,
    seconds until another batch's lease ends, if any).

    One transaction: the claim statement, the rows' Redis locks (pipelined), the rows
    whose lock is busy handed back (rare: one statement more), the commit."""
    held: dict[str, str] = {}
    with res.uow() as uow:
        s = uow.session
        rows = s.execute(_CLAIM, {"limit": limit, "lease": LEASE_SECONDS}).all()
        next_lease = next((r.next_lease for r in rows if r.id is None), None)
        rows = [r for r in rows if r.id is not None]
        full = len(rows) == limit
        if full:
            next_lease = None  # more are waiting: the next batch comes at once anyway
        if not rows:
            uow.commit()
            return [], {}, False, None if next_lease is None else float(next_lease)
        names = {row.id: lock_name(row.payment_id, row.id) for row in rows}
        held = acquire_many(res.redis, names.values(), ttl_seconds=LEASE_SECONDS)
        try:
            busy = [row for row in rows if names[row.id] not in held]
            if busy:
                s.execute(_UNCLAIM, {"ids": [r.id for r in busy],
                                     "leases": [r.old_claimed_until for r in busy],
                                     "updated": [r.old_updated_at for r in busy]})
            uow.commit()
        except BaseException:
            release_many(res.redis, held)
            raise
    outcome.busy = len(busy)
    claimed = sorted((_Claimed(id=r.id, payment_id=r.payment_id, provider=r.provider,
                               payload=r.payload, attempts=r.attempts,
                               last_error=r.last_error)
                      for r in rows if names[r.id] in held), key=lambda c: c.id)
    outcome.claimed = len(claimed)
    return claimed, held, full, None if next_lease is None else float(next_lease)


class _SetBasedFailed(Exception):
    """The set-based settlement raised: its transaction is lost, the batch starts over
    settling each callback singly."""


def _apply(res: Resources, claimed: Sequence[_Claimed], outcome: BatchOutcome) -> float | None:
    """Apply every claimed row in one transaction; seconds until the first errored row
    may be tried again (None: no errors).

    The set-based settlement of the common case runs first in the transaction, with no
    savepoint of its own (two round trips fewer per batch): if it raises, the whole
    transaction, which holds nothing else yet, rolls back and a second one settles every
    callback singly, each in its savepoint."""
    try:
        return _apply_in_transaction(res, claimed, outcome, set_based=True)
    except _SetBasedFailed as failed:
        log.info("callback batch settles one by one after: %s", failed)
        return _apply_in_transaction(res, claimed, outcome, set_based=False)


def _apply_in_transaction(res: Resources, claimed: Sequence[_Claimed], outcome: BatchOutcome,
                          *, set_based: bool) -> float | None:
    deadline = time.monotonic() + BATCH_BUDGET_SECONDS
    untried: list[int] = []
    errors: list[tuple[int, str, float]] = []
    refunds: list[int] = []
    with res.uow() as uow:
        s = uow.session
        bound_waits(s)
        pending: list[Pending] = []
        unreadable: list[tuple[_Claimed, str]] = []
        for row in claimed:
            readable = _readable(row)
            if isinstance(readable, str):
                unreadable.append((row, readable))
            else:
                pending.append(Pending(row.id, readable, row.provider))
        done, rest = _settle_common_case(s, pending, outcome) if set_based else ([], pending)
        for row, reason in unreadable:
            _count(outcome, _give_up(s, row, reason))
        settled: list[tuple[Pending, str, str | None]] = [
            (item, "processed", None) for item in done]
        by_id = {row.id: row for row in claimed}
        for item in rest:
            if time.monotonic() > deadline:
                untried.append(item.callback_id)
                continue
            with log_context(callback_id=item.callback_id, payment_id=item.event.payment_id):
                applied = _apply_one(s, by_id[item.callback_id], item.event, refunds, errors)
            if applied is not None:
                _count(outcome, applied[0])
                settled.append((item, *applied))
        for callback_id, error, backoff in errors:
            s.execute(_KEEP_ERROR, {"id": callback_id, "error": error, "backoff": backoff})
        if untried:
            s.execute(_RETURN_UNTRIED, {"ids": untried})
        for refund_id in refunds:
            uow.after_commit(_sender(res, REFUND_TASK, refund_id))
        uow.commit()
    for item, status, note in settled:  # each callback's line, as the single path logs it
        with log_context(callback_id=item.callback_id, payment_id=item.event.payment_id):
            log.info("callback %s (%s %s) -> %s%s", item.callback_id, item.event.type.value,
                     item.event.event_id, status, f": {note}" if note else "")
    outcome.errors, outcome.released = len(errors), len(untried)
    return min((backoff for _, _, backoff in errors), default=None)


def _count(outcome: BatchOutcome, status: str, count: int = 1) -> None:
    outcome.outcomes[status] = outcome.outcomes.get(status, 0) + count


def _readable(row: _Claimed) -> CallbackEvent | str:
    """The row's event, or why it is given up on (too many attempts, or a body that no
    longer parses)."""
    if row.attempts > MAX_ATTEMPTS:
        return (f"gave up after {MAX_ATTEMPTS} attempts; last error: "
                f"{row.last_error or 'worker lost'}")
    try:
        return parse_callback_event(row.payload)
    except DomainError as exc:  # only reachable for rows stored by hand or by old code
        return f"unreadable callback body: {exc.detail}"


def _settle_common_case(s: Session, pending: list[Pending], outcome: BatchOutcome
                        ) -> tuple[list[Pending], list[Pending]]:
    """First successes of waiting payments, set-based (services/batch_settlement.py):
    (those settled, the rest, to settle one by one). _SetBasedFailed if it raised."""
    try:
        done, rest = settle_first_successes(s, pending)
    except Exception as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            raise
        raise _SetBasedFailed(f"{type(exc).__name__}: {exc}") from exc
    if done:
        _count(outcome, "processed", len(done))
    by_id = {item.callback_id: item for item in pending}
    return [by_id[callback_id] for callback_id in done], rest


def _apply_one(s: Session, row: _Claimed, event: CallbackEvent, refunds: list[int],
               errors: list[tuple[int, str, float]]) -> tuple[str, str | None] | None:
    """One callback in its savepoint; what became of it and why (None: errored or
    already done)."""
    try:
        with savepoint(s):
            settlement = settle_callback(s, row.id, event, provider=row.provider,
                                         waits_bound=True)
            if settlement is not None:
                count_on_commit(s, CALLBACKS.labels(row.provider,
                                                    APPLIED_OUTCOME[settlement.status]))
    except Exception as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            raise  # the transaction is gone: the whole batch is retried
        CALLBACKS.labels(row.provider, "error").inc()
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        log.warning("callback %s attempt %d failed: %s", row.id, row.attempts, error)
        backoff = ERROR_BACKOFF_SECONDS[min(row.attempts, len(ERROR_BACKOFF_SECONDS)) - 1]
        errors.append((row.id, error, backoff))
        return None
    if settlement is None:
        return None
    if settlement.refund_id is not None:
        refunds.append(settlement.refund_id)
    return settlement.status.value, settlement.note


def _give_up(s: Session, row: _Claimed, error: str) -> str:
    log.error("callback %s failed for good: %s", row.id, error)
    s.execute(_GIVE_UP, {"id": row.id, "error": error[:MAX_ERROR_LENGTH]})
    count_on_commit(s, CALLBACKS.labels(row.provider, "failed"))
    return "failed"


def _sender(res: Resources, task_name: str, *args: Any) -> Any:
    def send() -> None:
        res.queue.send(task_name, *args)
    return send
