"""Delivering one event to one endpoint (DESIGN.md §9): an attempt, its record, the
retry schedule, disabling an endpoint that only fails, and the sweep for lost messages.

An attempt is claimed in one short transaction (attempt counted, the slot held until
its retry would be due), the HTTP POST runs with no transaction and no lock, and its
result is recorded in another. So a duplicate task message (a redelivered one, or the
sweep's) finds the slot taken and does nothing, and a worker killed mid-POST leaves a
pending delivery the sweep sends again once the slot has passed: at least once,
never lost; receivers dedupe by the event id, which is the same on every attempt.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from adapters import webhook_http
from adapters.locks import LockBusy, redis_lock
from adapters.metrics import (
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_LATENCY,
    WEBHOOK_ENDPOINTS_DISABLED,
    count_on_commit,
    observe_on_commit,
)
from adapters.resources import Resources
from domain.webhook_models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from domain.webhook_signature import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign
from domain.webhooks import public_event_id, retry_delay
from services.audit import record_event
from services.transitions import utc_now
from services.webhooks.endpoints import address_vetter, live_secrets
from services.webhooks.outbox import DELIVER_TASK

log = logging.getLogger(__name__)

REDELIVER_TASK = "maintenance.redeliver_webhooks"
# A pending delivery overdue by this much has lost its message (a countdown retry fires
# when due, and a claim moves the due time on): the sweep sends it again.
REDELIVER_AFTER_SECONDS = 60
REDELIVER_BATCH_SIZE = 1000
REDELIVER_RUN_LOCK = "webhooks-redeliver-run"
# A claimed attempt holds its delivery at least this long: the POST's timeout and a margin.
CLAIM_SECONDS = int(webhook_http.TIMEOUT_SECONDS) + 5
SYSTEM_ACTOR = "system:webhooks"


@dataclass(frozen=True)
class AttemptOutcome:
    """What the task does next: try again in `retry_in` seconds, or stop."""

    state: str  # the delivery's status afterwards, or "missing"
    retry_in: float | None = None


def event_payload(event: Event) -> dict[str, Any]:
    return {"id": public_event_id(event.id), "type": event.type,
            "created_at": event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "data": event.data}


def event_body(event: Event) -> bytes:
    """The bytes POSTed and signed; the same for every attempt of the event."""
    return json.dumps(event_payload(event), separators=(",", ":"),
                      ensure_ascii=False).encode()


def signed_headers(secrets: list[str], body: bytes, event_id: str,
                   event_type: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secrets, body, int(time.time())),
            EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: event_type}


@dataclass(frozen=True)
class _Claim:
    number: int
    url: str
    body: bytes
    headers: dict[str, str]
    event_created_at: datetime


def attempt_delivery(res: Resources, delivery_id: int) -> AttemptOutcome:
    """One attempt at delivery `delivery_id` (the task's work). Safe to call at any time:
    a delivery that is gone, finished or not yet due is left as it is."""
    claim = _claim(res, delivery_id)
    if isinstance(claim, AttemptOutcome):
        return claim
    response = webhook_http.post(claim.url, claim.body, claim.headers,
                                 vet=address_vetter(res.settings))
    if not response.delivered:
        log.info("webhook delivery %s attempt %s failed: %s", delivery_id, claim.number,
                 response.error)
    return _record(res, delivery_id, claim, response)


def _claim(res: Resources, delivery_id: int) -> _Claim | AttemptOutcome:
    schedule = res.settings.webhooks.retry_schedule_seconds
    with res.uow() as uow:
        session = uow.session
        row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if row is None:
            return AttemptOutcome("missing")
        if row.status != "pending":
            return AttemptOutcome(row.status)
        now = utc_now(session)
        if row.next_attempt_at > now:
            return AttemptOutcome("pending", (row.next_attempt_at - now).total_seconds())
        endpoint = session.get(WebhookEndpoint, row.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            row.status, row.last_error, row.updated_at = "failed", "endpoint disabled", now
            count_on_commit(session, WEBHOOK_DELIVERIES.labels("skipped"))
            uow.commit()
            return AttemptOutcome("failed")
        event = session.get(Event, row.event_id)
        assert event is not None  # a delivery's event is never deleted (foreign key)
        row.attempts += 1
        row.round_attempts += 1
        hold = max(CLAIM_SECONDS, retry_delay(schedule, row.round_attempts) or 0)
        row.next_attempt_at = now + timedelta(seconds=hold)
        row.updated_at = now
        body = event_body(event)
        claim = _Claim(row.attempts, endpoint.url, body,
                       signed_headers(live_secrets(endpoint, now), body,
                                      public_event_id(event.id), event.type),
                       event.created_at)
        uow.commit()
    return claim


def _record(res: Resources, delivery_id: int, claim: _Claim,
            response: webhook_http.WebhookResponse) -> AttemptOutcome:
    schedule = res.settings.webhooks.retry_schedule_seconds
    with res.uow() as uow:
        session = uow.session
        row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if row is None:  # its endpoint was deleted meanwhile
            return AttemptOutcome("missing")
        session.execute(insert(WebhookAttempt).values(
            delivery_id=delivery_id, number=claim.number, status_code=response.status_code,
            duration_ms=response.duration_ms, error=response.error,
            response_body=response.body))
        now = utc_now(session)
        if row.status != "pending" or row.attempts != claim.number:
            uow.commit()  # redelivered or finished meanwhile: only the attempt is kept
            return AttemptOutcome(row.status)
        row.last_status_code, row.last_error, row.updated_at = (
            response.status_code, response.error, now)
        retry_in: float | None = None
        if response.delivered:
            row.status, row.delivered_at = "delivered", now
            count_on_commit(session, WEBHOOK_DELIVERIES.labels("delivered"))
            observe_on_commit(session, WEBHOOK_DELIVERY_LATENCY,
                              (now - claim.event_created_at).total_seconds())
            session.execute(update(WebhookEndpoint)
                            .where(WebhookEndpoint.id == row.endpoint_id,
                                   WebhookEndpoint.failing_since.is_not(None))
                            .values(failing_since=None))
        else:
            delay = retry_delay(schedule, row.round_attempts)
            if delay is None:
                row.status = "failed"
                count_on_commit(session, WEBHOOK_DELIVERIES.labels("failed"))
                log.warning("webhook delivery %s failed for good after %s attempts: %s",
                            delivery_id, row.attempts, response.error)
            else:
                row.next_attempt_at = now + timedelta(seconds=delay)
                retry_in = float(delay)
                count_on_commit(session, WEBHOOK_DELIVERIES.labels("retried"))
            _note_failure(res, session, row.endpoint_id, now, response.error)
        state = row.status
        uow.commit()
    return AttemptOutcome(state, retry_in)


def _note_failure(res: Resources, session: Session, endpoint_id: int, now: datetime,
                  error: str | None) -> None:
    """Start the endpoint's failing streak, or end the endpoint if the streak is 3 days
    old: each write only when it changes something, so a burst of failures does not
    queue up on the endpoint's row."""
    session.execute(update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == endpoint_id,
                           WebhookEndpoint.failing_since.is_(None))
                    .values(failing_since=now))
    cutoff = now - timedelta(seconds=res.settings.webhooks.disable_after_seconds)
    disabled = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True),
               WebhookEndpoint.failing_since <= cutoff)
        .values(enabled=False, updated_at=now,
                disabled_reason=func.concat("every delivery failed since ",
                                            WebhookEndpoint.failing_since))
        .returning(WebhookEndpoint.failing_since)).scalar_one_or_none()
    if disabled is not None:
        log.warning("webhook endpoint %s disabled: every delivery failed since %s",
                    endpoint_id, disabled)
        record_event(session, "webhook_endpoint_disabled", payment_id=None,
                     actor=SYSTEM_ACTOR, endpoint_id=endpoint_id, failing_since=disabled,
                     last_error=error)
        count_on_commit(session, WEBHOOK_ENDPOINTS_DISABLED)


# --- the sweep -------------------------------------------------------------------------

def redeliver_lost(res: Resources, older_than_seconds: float = REDELIVER_AFTER_SECONDS,
                   batch_size: int = REDELIVER_BATCH_SIZE) -> int:
    """Send again every pending delivery overdue by `older_than_seconds` (its message was
    lost: a worker killed mid-attempt, a broker down at commit). Each one sent is marked
    due now, so the next run leaves it alone for a while. One run at a time."""
    try:
        with redis_lock(res.redis, REDELIVER_RUN_LOCK, ttl_seconds=600, blocking_timeout=0):
            return _redeliver_batches(res, older_than_seconds, batch_size)
    except LockBusy:
        log.info("another webhook redelivery run is in progress")
        return 0


def _redeliver_batches(res: Resources, older_than_seconds: float, batch_size: int) -> int:
    sent, after_id = 0, 0
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, max(older_than_seconds, 0))
    while True:
        due = (select(WebhookDelivery.id)
               .where(WebhookDelivery.status == "pending",
                      WebhookDelivery.next_attempt_at <= cutoff,
                      WebhookDelivery.id > after_id)
               .order_by(WebhookDelivery.id).limit(batch_size)
               .with_for_update(skip_locked=True))
        with res.uow() as uow:
            ids = sorted(uow.session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=func.now()).returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)).scalars())
            uow.commit()
        for delivery_id in ids:
            if not res.queue.send(DELIVER_TASK, delivery_id):
                log.warning("broker unavailable: webhook redelivery stops after %d", sent)
                return sent
            sent += 1
        if len(ids) < batch_size:
            return sent
        after_id = ids[-1]


def pending_deliveries(res: Resources) -> int:
    with res.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(WebhookDelivery)
                                      .where(WebhookDelivery.status == "pending")) or 0)
