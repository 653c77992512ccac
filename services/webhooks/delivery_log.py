"""An endpoint's deliveries as the admin API lists them: each with its attempts (§9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import InvalidInput
from domain.webhook_models import DELIVERY_STATUSES, Event, WebhookAttempt, WebhookDelivery
from domain.webhooks import public_event_id
from services.webhooks.endpoints import find_endpoint


def list_deliveries(res: Resources, endpoint_id: int, *, status: str | None,
                    limit: int, before: int | None) -> dict[str, Any]:
    """An endpoint's deliveries, newest first, each with its attempts."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                           code="invalid_field", field="status")
    with res.uow() as uow:
        session = uow.session
        find_endpoint(session, endpoint_id)
        query = (select(WebhookDelivery, Event.type)
                 .join(Event, Event.id == WebhookDelivery.event_id)
                 .where(WebhookDelivery.endpoint_id == endpoint_id))
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        if before is not None:
            query = query.where(WebhookDelivery.id < before)
        rows = session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit)).all()
        attempts = _attempts(session, [d.id for d, _ in rows])
        items = [_delivery_view(d, event_type, attempts.get(d.id, [])) for d, event_type in rows]
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}


def _attempts(session: Session, delivery_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if not delivery_ids:
        return found
    for a in session.scalars(select(WebhookAttempt)
                             .where(WebhookAttempt.delivery_id.in_(delivery_ids))
                             .order_by(WebhookAttempt.id)):
        found.setdefault(a.delivery_id, []).append(
            {"number": a.number, "status_code": a.status_code, "duration_ms": a.duration_ms,
             "error": a.error, "response_body": a.response_body, "at": a.created_at})
    return found


def _delivery_view(d: WebhookDelivery, event_type: str,
                   attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": d.id, "event_id": public_event_id(d.event_id), "event_type": event_type,
            "status": d.status, "attempts": d.attempts, "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
            "delivered_at": d.delivered_at, "created_at": d.created_at,
            "attempt_log": attempts}
