"""The events feed (GET /api/v1/events) and manual redelivery of one event (§9).

The feed is read in (txid, id) order, and only events of transactions older than the
oldest one still running (pg_snapshot_xmin): ids are handed out before commit, so a
transaction that started earlier can commit an event with a smaller id after a reader
has moved past it. Events of a transaction still running are not shown yet; every
event a later transaction commits sorts after every event already shown, so a
reader that follows `after` from page to page sees each event once, in order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, literal_column, select, tuple_, update

from adapters.resources import Resources
from domain.errors import Conflict, InvalidInput, NotFound
from domain.webhook_models import Event, WebhookDelivery, WebhookEndpoint
from domain.webhooks import EventType, parse_event_id, public_event_id
from services.webhooks.delivery import event_payload
from services.webhooks.outbox import defer_deliveries, subscribes_to

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_VISIBLE = Event.txid < literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def check_type(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return EventType(value).value
    except ValueError:
        raise InvalidInput(f"type must be one of {', '.join(e.value for e in EventType)}",
                           code="unknown_event", field="type") from None


def list_events(res: Resources, *, event_type: str | None, after: str | None,
                limit: int) -> dict[str, Any]:
    """Oldest first after the cursor; `next_after` is the cursor for the next page."""
    kind = check_type(event_type)
    after_id = parse_event_id(after) if after is not None else None
    with res.uow() as uow:
        session = uow.session
        query = select(Event).where(_VISIBLE)
        if after_id is not None:
            cursor = session.execute(select(Event.txid, Event.id)
                                     .where(Event.id == after_id)).first()
            if cursor is None:
                raise InvalidInput(f"after: no event {after}", code="unknown_cursor",
                                   field="after")
            query = query.where(tuple_(Event.txid, Event.id) > tuple_(cursor.txid, cursor.id))
        if kind is not None:
            query = query.where(Event.type == kind)
        rows = session.scalars(query.order_by(Event.txid, Event.id).limit(limit + 1)).all()
        page = [event_payload(e) for e in rows[:limit]]
    return {"items": page, "has_more": len(rows) > limit,
            "next_after": page[-1]["id"] if page else after}


def get_event(res: Resources, event_id: str) -> dict[str, Any]:
    with res.uow() as uow:
        event = uow.session.get(Event, _known_id(event_id))
        if event is None:
            raise NotFound("Event not found", code="event_not_found")
        return event_payload(event)


def _known_id(event_id: str) -> int:
    try:
        return parse_event_id(event_id, field="id")
    except InvalidInput:
        raise NotFound("Event not found", code="event_not_found") from None


def redeliver_event(res: Resources, event_id: str) -> dict[str, Any]:
    """Send the event again to every enabled endpoint subscribed to it now: a delivery
    that was delivered or failed starts a new round of the retry schedule; an endpoint
    added since the event gets its first delivery of it."""
    with res.uow() as uow:
        session = uow.session
        event = session.get(Event, _known_id(event_id))
        if event is None:
            raise NotFound("Event not found", code="event_not_found")
        endpoint_ids = session.scalars(
            select(WebhookEndpoint.id).where(subscribes_to(event.type))).all()
        if not endpoint_ids:
            raise Conflict("No enabled webhook endpoint subscribes to this event",
                           code="no_subscribed_endpoint", event_type=event.type)
        reset = session.scalars(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_id == event.id,
                   WebhookDelivery.endpoint_id.in_(endpoint_ids))
            .values(status="pending", round_attempts=0, next_attempt_at=func.now(),
                    updated_at=func.now())
            .returning(WebhookDelivery.endpoint_id)
            .execution_options(synchronize_session=False)).all()
        missing = [e for e in endpoint_ids if e not in set(reset)]
        if missing:
            session.execute(insert(WebhookDelivery), [
                {"event_id": event.id, "endpoint_id": e} for e in missing])
        delivery_ids = session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.event_id == event.id,
                                             WebhookDelivery.endpoint_id.in_(endpoint_ids))
        ).all()
        defer_deliveries(session, delivery_ids)
        uow.commit()
    return {"event_id": public_event_id(event.id), "deliveries": len(delivery_ids)}
