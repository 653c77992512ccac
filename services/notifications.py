"""The customer's in-app notifications (seed 003, DESIGN.md §9): written with their
event (services/webhooks/outbox.py), listed and marked read here. A user sees only
their own; another user's notification is "not found", so existence never leaks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from adapters.resources import Resources
from domain.errors import Forbidden, NotFound
from domain.webhook_models import Notification
from services.api_keys import Principal

MAX_BIGINT = 2**63 - 1


def notification_view(n: Notification) -> dict[str, Any]:
    return {"id": n.id, "type": n.type, "order_id": n.order_id, "payment_id": n.payment_id,
            "refund_id": n.refund_id, "read": n.read_at is not None, "read_at": n.read_at,
            "created_at": n.created_at}


def list_notifications(res: Resources, principal: Principal, *, user_id: int | None,
                       unread_only: bool, limit: int, before: int | None) -> dict[str, Any]:
    """Newest first; `next_before` pages on."""
    if not principal.is_admin:
        if user_id is not None and user_id != principal.user_id:
            raise Forbidden("Only an admin key may list another user's notifications",
                            code="admin_only")
        user_id = principal.user_id
    query = select(Notification)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if before is not None:
        query = query.where(Notification.id < before)
    with res.uow() as uow:
        rows = uow.session.scalars(query.order_by(Notification.id.desc()).limit(limit)).all()
        items = [notification_view(n) for n in rows]
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}


def mark_read(res: Resources, principal: Principal, notification_id: int) -> dict[str, Any]:
    """Idempotent: marking a read notification again keeps its first read_at."""
    if not 0 < notification_id <= MAX_BIGINT:
        raise NotFound("Notification not found", code="notification_not_found")
    with res.uow() as uow:
        session = uow.session
        condition = [Notification.id == notification_id]
        if not principal.is_admin:
            condition.append(Notification.user_id == principal.user_id)
        session.execute(update(Notification).where(*condition, Notification.read_at.is_(None))
                        .values(read_at=func.now()).execution_options(synchronize_session=False))
        row = session.scalars(select(Notification).where(*condition)
                              .execution_options(populate_existing=True)).first()
        if row is None:
            raise NotFound("Notification not found", code="notification_not_found")
        view = notification_view(row)
        uow.commit()
    return view
