"""Sending the sandbox's callbacks: signed, retried with backoff until a 2xx.

Each event becomes a row in sandbox_deliveries (its body serialised once), and
the `sandbox.deliver_callback` task attempts it. Every attempt is signed afresh
(`t` is the time of that attempt, as the receiver's tolerance window demands).
An attempt is claimed in one short transaction (attempt counted, next slot set)
and its result recorded in another; the HTTP call holds no lock and no
transaction. A duplicate task message finds the next slot in the future and only
reschedules itself, so one delivery is never sent by two workers at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from adapters.providers.sandbox.signature import SIGNATURE_HEADER, build_signature_header
from adapters.resources import Resources
from config import Settings
from services.transitions import utc_now
from standins.sandbox.events import MAX_ATTEMPTS, backoff_seconds
from standins.sandbox.models import SandboxDelivery, SandboxPayment
from standins.sandbox.options import TestOptions

log = logging.getLogger(__name__)

DELIVER_TASK = "sandbox.deliver_callback"
CALLBACK_PATH = "/callbacks/sandbox"
SEND_TIMEOUT = (3.0, 10.0)  # connect, read: the receiver should answer fast
SIMULATED_FAILURE = "simulated failure (test option fail_first)"


@dataclass(frozen=True)
class AttemptOutcome:
    """What the task should do next: run again in `retry_in` seconds, or stop."""

    state: str  # the delivery's status afterwards, or "missing"
    retry_in: float | None = None


def default_callback_url(settings: Settings) -> str:
    return settings.public_base_url + CALLBACK_PATH


def queue_callback(session: Session, ticket: SandboxPayment, options: TestOptions, *,
                   settings: Settings, event_id: str, event_type: str,
                   body: bytes) -> list[int]:
    """Insert the delivery row(s) of one event, in the caller's transaction (which holds
    the ticket's row lock). Returns the ids to enqueue once that transaction commits."""
    now = utc_now(session)
    held: list[SandboxDelivery] = []
    if options.out_of_order:
        held = list(session.scalars(
            select(SandboxDelivery).where(SandboxDelivery.sandbox_payment_id == ticket.id,
                                          SandboxDelivery.status == "held")))
    # out_of_order: hold this one, unless one is held already; then this one goes first.
    status = "held" if options.out_of_order and not held else "pending"
    fields = dict(sandbox_payment_id=ticket.id, event_id=event_id, event_type=event_type,
                  url=options.callback_url or default_callback_url(settings), body=body,
                  simulated_failures=options.fail_first,
                  not_before=now + timedelta(seconds=options.delay_seconds))
    original = SandboxDelivery(status=status, **fields)
    session.add(original)
    session.flush()
    if options.deliver_twice:
        session.add(SandboxDelivery(status="waiting", after_delivery_id=original.id, **fields))
    for earlier in held:
        earlier.status = "waiting"
        earlier.after_delivery_id = original.id
    session.flush()
    return [original.id] if status == "pending" else []


def release_held(session: Session, ticket_id: int) -> list[int]:
    """Callbacks held by out_of_order become due now (the knob was switched off)."""
    return list(session.scalars(
        update(SandboxDelivery)
        .where(SandboxDelivery.sandbox_payment_id == ticket_id,
               SandboxDelivery.status == "held")
        .values(status="pending", updated_at=utc_now(session))
        .returning(SandboxDelivery.id)))


def enqueue_after_commit(res: Resources, uow: UnitOfWork, delivery_ids: Iterable[int]) -> None:
    """A failed send is only logged: the delivery row stays pending (see the README)."""
    def send(delivery_id: int) -> Callable[[], None]:
        def hook() -> None:
            res.queue.send(DELIVER_TASK, delivery_id)
        return hook

    for delivery_id in delivery_ids:
        uow.after_commit(send(delivery_id))


def attempt_delivery(res: Resources, delivery_id: int) -> AttemptOutcome:
    """One attempt at delivery `delivery_id` (the task's work). Safe to call any time:
    a delivery that is gone, finished or not yet due is left as it is."""
    with res.uow() as uow:
        session = uow.session
        row = session.get(SandboxDelivery, delivery_id, with_for_update=True)
        if row is None:
            log.warning("%s: delivery %s does not exist; nothing to do", DELIVER_TASK,
                        delivery_id)
            return AttemptOutcome("missing")
        if row.status != "pending":
            # delivered or abandoned: done; held or waiting: enqueued again when released.
            return AttemptOutcome(row.status)
        now = utc_now(session)
        if row.not_before > now:
            return AttemptOutcome("pending", (row.not_before - now).total_seconds())
        row.attempts += 1
        attempt = row.attempts
        # Claim this slot: the next attempt, if any, is due only after the backoff.
        row.not_before = now + timedelta(seconds=backoff_seconds(attempt))
        row.updated_at = now
        simulated = attempt <= row.simulated_failures
        url, body = row.url, bytes(row.body)
        uow.commit()

    status: int | None
    error: str | None
    if simulated:
        status, error = None, SIMULATED_FAILURE
    else:
        status, error = post_signed(url, body, res.settings.sandbox_webhook_secret)
    return _record_attempt(res, delivery_id, attempt, status, error)


def post_signed(url: str, body: bytes, secret: str) -> tuple[int | None, str | None]:
    """POST the body with a signature made now: (HTTP status, None) or (None, error)."""
    headers = {SIGNATURE_HEADER: build_signature_header(secret, body, int(time.time())),
               "Content-Type": "application/json", "User-Agent": "payments-sandbox/1"}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT,
                                 allow_redirects=False)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:300]}"


def _record_attempt(res: Resources, delivery_id: int, attempt: int, status: int | None,
                    error: str | None) -> AttemptOutcome:
    with res.uow() as uow:
        session = uow.session
        row = session.get(SandboxDelivery, delivery_id, with_for_update=True)
        if row is None or row.status != "pending":
            return AttemptOutcome(row.status if row else "missing")
        now = utc_now(session)
        row.last_status, row.last_error, row.updated_at = status, error, now
        delivered = error is None
        if delivered:
            row.status, row.delivered_at = "delivered", now
        elif row.attempts >= MAX_ATTEMPTS:
            row.status = "abandoned"
            log.error("sandbox callback %s (%s) abandoned after %s attempts: %s",
                      row.event_id, row.event_type, row.attempts, error)
        else:
            log.info("sandbox callback %s attempt %s failed: %s", row.event_id, attempt, error)
            retry_in = max(0.0, (row.not_before - now).total_seconds())
            uow.commit()
            return AttemptOutcome("pending", retry_in)
        # Finished either way: what waited for this one (a copy, a reversed pair) goes now.
        released = list(session.scalars(
            update(SandboxDelivery)
            .where(SandboxDelivery.after_delivery_id == delivery_id,
                   SandboxDelivery.status == "waiting")
            .values(status="pending", updated_at=now)
            .returning(SandboxDelivery.id)))
        enqueue_after_commit(res, uow, released)
        state = row.status
        uow.commit()
    return AttemptOutcome(state)


def delivery_views(session: Session, ticket_id: int) -> list[dict[str, object]]:
    rows = session.scalars(
        select(SandboxDelivery).where(SandboxDelivery.sandbox_payment_id == ticket_id)
        .order_by(SandboxDelivery.id)).all()
    return [{"id": r.id, "event_id": r.event_id, "type": r.event_type, "status": r.status,
             "url": r.url, "attempts": r.attempts, "last_status": r.last_status,
             "last_error": r.last_error, "delivered_at": r.delivered_at,
             "after_delivery_id": r.after_delivery_id} for r in rows]
