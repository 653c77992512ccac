"""Provider callbacks: the inbox (DESIGN.md §6, §7).

- ingest_callback: verify, commit to the inbox, wake the batch appliers after commit
  (services/callback_batches.py applies them). A callback answered 2xx is always
  stored; one that is not stored never gets a 2xx.
- process_callback: one callback's exactly-once apply (the redelivery sweep's and
  replay's path), under a per-payment Redis lock, with an attempt counter so a poison
  callback ends `failed`, not looping. The batch path applies through the same
  settlement under the same locks.
- redeliver_stuck: re-enqueue inbox rows a lost message or a dead broker left
  `received` (the beat job maintenance.redeliver_callbacks).
- list_callbacks / replay_callback: the admin's view and hand.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from adapters.locks import LockBusy, payment_lock, redis_lock
from adapters.log_context import bind_log_context
from adapters.metrics import CALLBACKS, SIGNATURE_FAILURES, callback_counter
from adapters.providers.base import CallbackRequest, Provider
from adapters.resources import Resources
from domain.callback_auth import SignatureRejected
from domain.callback_events import (
    CallbackEvent,
    event_payload,
    parse_callback_event,
    storable_payload,
)
from domain.errors import Conflict, DomainError, InvalidInput, NotFound
from domain.ids import MAX_BIGINT
from domain.models import Base, CallbackAuthFailure, Payment, ProviderCallback
from domain.statuses import CallbackStatus
from services.audit import record_event
from services.callback_wakeup import wake_appliers
from services.settlement import Settlement, settle_callback

log = logging.getLogger(__name__)

PROCESS_TASK = "callbacks.process"
REFUND_TASK = "refunds.execute"

# A callback's processing is retried on transient errors; past this many attempts
# (counted in PostgreSQL, so a worker that dies mid-way counts too) it is `failed`.
MAX_ATTEMPTS = 5
# The callbacks.process task is killed at PROCESS_TIME_LIMIT_SECONDS, so a lock
# that lives longer than that is never lost by a holder that is still working.
PROCESS_SOFT_TIME_LIMIT_SECONDS = 15
PROCESS_TIME_LIMIT_SECONDS = 20
LOCK_TTL_SECONDS = 30
LOCK_WAIT_SECONDS = 2.0

REDELIVER_AFTER_SECONDS = 60
REDELIVER_BATCH_SIZE = 1000
REDELIVER_RUN_LOCK = "sweep-lock:redeliver-callbacks"

MAX_ERROR_LENGTH = 2000
MAX_PAGE_SIZE = 200


# The payments_callbacks_total outcome of a processed callback ("rejected" is taken by
# signature failures, so a callback the settlement rules refuse is "refused").
APPLIED_OUTCOME = {
    CallbackStatus.PROCESSED: "processed",
    CallbackStatus.UNMATCHED: "unmatched",
    CallbackStatus.REJECTED: "refused",
    CallbackStatus.FAILED: "failed",
}


# The hottest statement of the service (B1 in BENCHMARKS.md), as plain SQL for psycopg:
# run as a prepared statement on the driver connection (adapters.db.Database.run_prepared),
# it costs a fraction of the Python that SQLAlchemy's execution of a Core insert did. The
# columns are domain.models.ProviderCallback's; PostgreSQL parses the payload text itself,
# so amounts keep every digit.
_STORE_CALLBACK = (
    "INSERT INTO provider_callbacks (provider, event_id, event_type, payment_id, raw_body, "
    "payload, status, attempts) VALUES (%s, %s, %s, %s, %s, %s::jsonb, "
    f"'{CallbackStatus.RECEIVED.value}', 0) "
    "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id")
# Real providers name our payment and refund by our merchant references.
_PAYMENT_BY_REFERENCE = "SELECT id FROM payments WHERE out_trade_no = %s"
_REFUND_BY_REFERENCE = "SELECT id FROM refunds WHERE out_refund_no = %s"


@dataclass(frozen=True)
class IngestResult:
    callback_id: int | None  # None for a duplicate
    duplicate: bool


def callback_connector(res: Resources, provider: str) -> Provider:
    """The connector whose callbacks arrive at /callbacks/<provider>; 404 for any name
    that is not a provider this deployment was configured for."""
    connector = res.providers.for_callbacks(provider)
    if connector is None:
        raise NotFound(f"Unknown payment provider {provider[:32]!r}", code="unknown_provider")
    return connector


# --- ingest -------------------------------------------------------------------------------

def ingest_callback(res: Resources, connector: Provider, request: CallbackRequest, *,
                    now: float | None = None,
                    on_refused: Callable[[SignatureRejected], None] | None = None
                    ) -> IngestResult:
    """Verify, store (committed before returning), enqueue after commit when new.

    The connector (callback_connector) verifies and parses the provider's own format;
    what is stored is the raw request body and the normalised event, with the provider's
    merchant references resolved to our payment and refund ids.

    on_refused runs only when the signature is refused, before the refusal is logged and
    aggregated; it may raise instead (the web's per-address limit), and then neither
    happens. A verified callback never calls it.
    """
    provider = connector.name
    callback_counter(provider, "received").inc()
    try:
        event = connector.parse_callback(request, now=time.time() if now is None else now)
        payload = storable_payload(event)
    except SignatureRejected as exc:
        callback_counter(provider, "rejected").inc()
        SIGNATURE_FAILURES.labels(provider, exc.reason).inc()
        if on_refused is not None:
            on_refused(exc)
        _audit_signature_failure(res, connector, exc, request)
        raise
    except DomainError:
        callback_counter(provider, "invalid").inc()
        raise
    callback_counter(provider, "verified").inc()
    try:
        callback_id = _store(res, provider, event, payload, request)
    except (DBAPIError, PoolTimeout):  # answered 503 by the web: the provider retries
        callback_counter(provider, "not_stored").inc()
        raise
    callback_counter(provider, "stored" if callback_id is not None else "duplicate").inc()
    if callback_id is None:
        log.info("duplicate callback %s/%s ignored", provider, event.event_id)
    return IngestResult(callback_id, duplicate=callback_id is None)


def _store(res: Resources, provider: str, event: CallbackEvent, payload: str,
           request: CallbackRequest) -> int | None:
    """The inbox row's id, committed; None when this event id was stored before.

    One statement that must be durable before the answer, so it runs in autocommit: the
    INSERT is its own transaction, committed when it returns, without the BEGIN and COMMIT
    round trips of a transaction around it, on a pool that does not ping (a dead
    connection is retried instead: the insert is idempotent), prepared once per
    connection (B1). The references are read before it."""
    def insert(conn: psycopg.Connection[Any]) -> int | None:
        resolved = resolve_references(conn, event)
        bind_log_context(payment_id=resolved.payment_id)
        # Resolving changes only ids (numbers): storable still, but written anew.
        text = payload if resolved is event else json.dumps(event_payload(resolved))
        return _first_id(conn, _STORE_CALLBACK, (
            provider, resolved.event_id, resolved.type.value, resolved.payment_id,
            request.body, text))

    callback_id = res.db.run_prepared(insert)
    if callback_id is None:
        return None
    bind_log_context(callback_id=callback_id)
    # Not a message per callback: a wake-up for the batch appliers, when none is on its
    # way. A lost one only delays it: the row is stored and the sweep finds it.
    wake_appliers(res)
    return callback_id


def resolve_references(conn: psycopg.Connection[Any], event: CallbackEvent) -> CallbackEvent:
    """Our ids for the merchant references a real provider's event names. A reference we
    never issued resolves to None: the callback is kept, and settles as unmatched. The
    event itself when it names our ids already (the sandbox's)."""
    if (event.payment_id is not None or event.out_trade_no is None) and (
            event.refund_id is not None or event.out_refund_no is None):
        return event
    payment_id, refund_id = event.payment_id, event.refund_id
    if payment_id is None and event.out_trade_no is not None:
        payment_id = _first_id(conn, _PAYMENT_BY_REFERENCE, (event.out_trade_no,))
    if refund_id is None and event.out_refund_no is not None:
        refund_id = _first_id(conn, _REFUND_BY_REFERENCE, (event.out_refund_no,))
    return replace(event, payment_id=payment_id, refund_id=refund_id)


def _first_id(conn: psycopg.Connection[Any], query: str,
              params: tuple[Any, ...]) -> int | None:
    """The id the prepared `query` returns first, or None when it returns no row."""
    row = conn.execute(query, params, prepare=True).fetchone()
    return None if row is None else int(row[0])


_FAILURES = Base.metadata.tables[CallbackAuthFailure.__tablename__]
_COUNT_FAILURE = (
    pg_insert(_FAILURES)
    .values(provider=bindparam("provider"), minute=func.date_trunc("minute", func.now()),
            count=1, first_reason=bindparam("reason"), last_reason=bindparam("reason"))
    .on_conflict_do_update(
        index_elements=["provider", "minute"],
        set_={"count": _FAILURES.c.count + 1, "last_reason": bindparam("reason"),
              "last_at": func.now()}))


def _audit_signature_failure(res: Resources, connector: Provider, exc: SignatureRejected,
                             request: CallbackRequest) -> None:
    """One row per provider and minute, however many arrive (callback_auth_failures):
    anonymous junk must not grow the audit trail a row per request."""
    log.warning("callback from %s refused: %s", connector.name, exc.reason)
    with res.uow() as uow:
        uow.session.execute(_COUNT_FAILURE, {"provider": connector.name,
                                             "reason": exc.reason})
        uow.commit()


def _enqueue(res: Resources, callback_id: int) -> bool:
    return res.queue.send(PROCESS_TASK, callback_id)


def _send_later(res: Resources, task_name: str, *args: Any) -> Callable[[], None]:
    """An after-commit hook: a failed send is logged by the queue, never raised."""
    def send() -> None:
        res.queue.send(task_name, *args)
    return send


# --- process ------------------------------------------------------------------------------

def process_callback(res: Resources, callback_id: int) -> str:
    """Apply one stored callback exactly once; returns what became of it.

    Raises LockBusy when another worker holds the payment (retry later) and any
    error from the settlement (retry with backoff; the attempt counter bounds it).
    """
    row = _load_for_processing(res, callback_id)
    if row is None:
        log.info("callback %s no longer exists; nothing to do", callback_id)
        return "missing"
    if row.status != CallbackStatus.RECEIVED:
        return f"already {row.status}"
    try:
        event = parse_callback_event(row.payload)
    except DomainError as exc:  # only reachable for rows stored by hand or by old code
        _give_up(res, callback_id, f"unreadable callback body: {exc.detail}")
        CALLBACKS.labels(row.provider, "failed").inc()
        return CallbackStatus.FAILED.value
    bind_log_context(callback_id=callback_id, payment_id=event.payment_id)
    # A reference we never issued has no payment to lock: it settles as unmatched under
    # the inbox row's own lock.
    lock = (nullcontext() if event.payment_id is None else
            payment_lock(res.redis, event.payment_id, ttl_seconds=LOCK_TTL_SECONDS,
                         blocking_timeout=LOCK_WAIT_SECONDS))
    with lock:
        attempts = _count_attempt(res, callback_id)
        if attempts is None:
            return "already handled"
        if attempts > MAX_ATTEMPTS:
            _give_up(res, callback_id, f"gave up after {MAX_ATTEMPTS} attempts; "
                                       f"last error: {row.last_error or 'worker lost'}")
            CALLBACKS.labels(row.provider, "failed").inc()
            return CallbackStatus.FAILED.value
        try:
            settlement = _settle(res, callback_id, event, row.provider)
        except Exception as exc:
            CALLBACKS.labels(row.provider, "error").inc()
            _record_error(res, callback_id, exc)
            raise
    if settlement is None:
        return "already handled"
    log.info("callback %s (%s %s) -> %s%s", callback_id, event.type.value, event.event_id,
             settlement.status.value, f": {settlement.note}" if settlement.note else "")
    CALLBACKS.labels(row.provider, APPLIED_OUTCOME[settlement.status]).inc()
    return settlement.status.value


def _settle(res: Resources, callback_id: int, event: Any, provider: str) -> Settlement | None:
    with res.uow() as uow:
        settlement = settle_callback(uow.session, callback_id, event, provider=provider)
        if settlement is not None and settlement.refund_id is not None:
            refund_id = settlement.refund_id
            uow.after_commit(_send_later(res, REFUND_TASK, refund_id))
        uow.commit()
    return settlement


_LOAD_CALLBACK = (select(ProviderCallback.provider, ProviderCallback.status,
                         ProviderCallback.payload, ProviderCallback.last_error)
                  .where(ProviderCallback.id == bindparam("callback_id")))
_COUNT_ATTEMPT = (update(ProviderCallback)
                  .where(ProviderCallback.id == bindparam("callback_id"),
                         ProviderCallback.status == CallbackStatus.RECEIVED.value)
                  .values(attempts=ProviderCallback.attempts + 1, updated_at=func.now())
                  .returning(ProviderCallback.attempts)
                  .execution_options(synchronize_session=False))


def _load_for_processing(res: Resources, callback_id: int) -> Any:
    with res.uow() as uow:
        return uow.session.execute(_LOAD_CALLBACK, {"callback_id": callback_id}).first()


def _count_attempt(res: Resources, callback_id: int) -> int | None:
    """+1 attempt, committed before the work: a worker killed mid-way still counts."""
    with res.uow() as uow:
        attempts = uow.session.execute(_COUNT_ATTEMPT,
                                       {"callback_id": callback_id}).scalar_one_or_none()
        uow.commit()
    return attempts


def _give_up(res: Resources, callback_id: int, error: str) -> None:
    log.error("callback %s failed for good: %s", callback_id, error)
    with res.uow() as uow:
        uow.session.execute(
            update(ProviderCallback)
            .where(ProviderCallback.id == callback_id,
                   ProviderCallback.status == CallbackStatus.RECEIVED.value)
            .values(status=CallbackStatus.FAILED.value, last_error=error[:MAX_ERROR_LENGTH],
                    processed_at=func.now(), updated_at=func.now())
            .execution_options(synchronize_session=False))
        uow.commit()


def _record_error(res: Resources, callback_id: int, exc: Exception) -> None:
    """Best effort (the database may be what failed): keep the error for the operator."""
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
    log.warning("callback %s attempt failed: %s", callback_id, error)
    try:
        with res.uow() as uow:
            uow.session.execute(
                update(ProviderCallback)
                .where(ProviderCallback.id == callback_id,
                       ProviderCallback.status == CallbackStatus.RECEIVED.value)
                .values(last_error=error, updated_at=func.now())
                .execution_options(synchronize_session=False))
            uow.commit()
    except Exception as record_exc:
        log.warning("could not record the error of callback %s: %s", callback_id, record_exc)


# --- redelivery ---------------------------------------------------------------------------

def redeliver_stuck(res: Resources, older_than_seconds: float = REDELIVER_AFTER_SECONDS,
                    batch_size: int = REDELIVER_BATCH_SIZE) -> int:
    """Enqueue again every inbox row still `received` after `older_than_seconds`.

    Batched; rows a worker is settling right now are skipped (SKIP LOCKED), and each
    row sent gets a fresh updated_at so the next run leaves it alone for a while.
    Returns how many were enqueued. One run at a time; a second concurrent run is 0.
    """
    try:
        with redis_lock(res.redis, REDELIVER_RUN_LOCK, ttl_seconds=600, blocking_timeout=0):
            return _redeliver_batches(res, older_than_seconds, batch_size)
    except LockBusy:
        log.info("another redelivery run is in progress")
        return 0


def _redeliver_batches(res: Resources, older_than_seconds: float, batch_size: int) -> int:
    sent, after_id = 0, 0
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, max(older_than_seconds, 0))
    while True:
        due = (select(ProviderCallback.id)
               .where(ProviderCallback.status == CallbackStatus.RECEIVED.value,
                      ProviderCallback.received_at <= cutoff,
                      ProviderCallback.updated_at <= cutoff,
                      ProviderCallback.id > after_id)
               .order_by(ProviderCallback.id).limit(batch_size)
               .with_for_update(skip_locked=True))
        with res.uow() as uow:
            ids = sorted(uow.session.execute(
                update(ProviderCallback).where(ProviderCallback.id.in_(due.scalar_subquery()))
                .values(updated_at=func.now()).returning(ProviderCallback.id)
                .execution_options(synchronize_session=False)).scalars())
            uow.commit()
        for callback_id in ids:
            if not _enqueue(res, callback_id):
                log.warning("broker unavailable: redelivery stops after %d; the next run "
                            "sends the rest", sent)
                return sent
            sent += 1
        if len(ids) < batch_size:
            break
        after_id = ids[-1]
    if sent:
        log.info("redelivered %d stuck callbacks", sent)
    return sent


# --- admin --------------------------------------------------------------------------------

def list_callbacks(res: Resources, *, status: str | None = None,
                   payment_id: int | None = None, page: int = 1,
                   page_size: int = 50) -> dict[str, Any]:
    if status is not None and status not in {s.value for s in CallbackStatus}:
        raise InvalidInput(f"status must be one of {', '.join(s.value for s in CallbackStatus)}",
                           code="invalid_status", field="status")
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be >= 1 and page_size 1..{MAX_PAGE_SIZE}",
                           code="invalid_page")
    filters = []
    if status is not None:
        filters.append(ProviderCallback.status == status)
    if payment_id is not None:
        filters.append(ProviderCallback.payment_id == payment_id)
    with res.uow() as uow:
        total = uow.session.execute(
            select(func.count()).select_from(ProviderCallback).where(*filters)).scalar_one()
        rows = uow.session.execute(
            select(ProviderCallback).where(*filters).order_by(ProviderCallback.id.desc())
            .offset((page - 1) * page_size).limit(page_size)).scalars().all()
        items = [callback_view(row) for row in rows]
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def callback_view(row: ProviderCallback) -> dict[str, Any]:
    return {"id": row.id, "provider": row.provider, "event_id": row.event_id,
            "event_type": row.event_type, "payment_id": row.payment_id, "status": row.status,
            "attempts": row.attempts, "last_error": row.last_error,
            "received_at": row.received_at, "updated_at": row.updated_at,
            "processed_at": row.processed_at, "payload": row.payload}


def replay_callback(res: Resources, callback_id: int, actor: str) -> dict[str, Any]:
    """Process a stored callback again (failed, unmatched, rejected or stuck ones).

    A processed one is refused (409): its effect is already applied, and the rules
    would only ignore it. The row goes back to `received` with a fresh attempt budget.
    """
    if not 0 < callback_id <= MAX_BIGINT:
        raise NotFound(f"Callback {callback_id} not found", code="callback_not_found")
    sent: dict[str, bool] = {}
    with res.uow() as uow:
        row = uow.session.execute(
            select(ProviderCallback.id, ProviderCallback.status, ProviderCallback.event_id,
                   ProviderCallback.payment_id)
            .where(ProviderCallback.id == callback_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"Callback {callback_id} not found", code="callback_not_found")
        if row.status == CallbackStatus.PROCESSED:
            raise Conflict("This callback was already processed; replaying it would change "
                           "nothing", code="callback_already_processed")
        uow.session.execute(
            update(ProviderCallback).where(ProviderCallback.id == callback_id)
            .values(status=CallbackStatus.RECEIVED.value, attempts=0, processed_at=None,
                    claimed_until=None, updated_at=func.now())
            .execution_options(synchronize_session=False))
        known_payment = row.payment_id is not None and uow.session.execute(
            select(Payment.id).where(Payment.id == row.payment_id)).first() is not None
        record_event(uow.session, "callback_replayed",
                     payment_id=row.payment_id if known_payment else None, actor=actor,
                     callback_id=callback_id, event_id=row.event_id,
                     previous_status=row.status)
        uow.after_commit(lambda: sent.update(enqueued=_enqueue(res, callback_id)))
        uow.commit()
    return {"id": callback_id, "status": CallbackStatus.RECEIVED.value,
            "previous_status": row.status, "enqueued": sent.get("enqueued", False)}
