"""Events written in the transaction of the change they tell of (an outbox, §9).

`record_events` runs right after a change's compare-and-set, in the caller's
transaction: the event row (with the object's API view from views.py), the
customer's notification where the event has one, and a delivery row for every
enabled endpoint subscribed to it, in ONE statement whether it is one payment or
a sweep's batch of thousands. So there is no event without its change and no
change without its event: they commit or roll back together.

The delivery tasks are sent after the commit (adapters/db.py sends what is listed
under AFTER_COMMIT_TASKS); a send lost with the broker down leaves the delivery
row pending, and the redelivery sweep (delivery.py) sends it again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, String, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from adapters.db import defer_task
from domain.webhooks import NOTIFICATION_TYPES, EventType
from services.webhooks.views import ORDER_VIEW, PAYMENT_VIEW, REFUND_VIEW

DELIVER_TASK = "webhooks.deliver"

# object type -> (its rows as FROM ... with the alias its view reads, that alias, the
# notification's columns (user_id, order_id, payment_id, refund_id), or None: none)
_SOURCES = {
    "payment": ("payments p", "p", PAYMENT_VIEW, "p.user_id, p.order_id, p.id, NULL"),
    "order": ("orders o", "o", ORDER_VIEW, None),
    "refund": ("refunds r JOIN payments p ON p.id = r.payment_id", "r", REFUND_VIEW,
               "p.user_id, p.order_id, p.id, r.id"),
}


def _statement(object_type: str, notify: bool) -> TextClause:
    source, alias, view, notification = _SOURCES[object_type]
    notified = ""
    if notify and notification:
        notified = f"""
        notified AS (
            INSERT INTO notifications (user_id, order_id, payment_id, refund_id, type, event_id)
            SELECT {notification}, :notification, ev.id
            FROM ev JOIN {source} ON {alias}.id = ev.object_id),"""
    sql = f"""
        WITH ev AS (
            INSERT INTO events (type, object_type, object_id, data)
            SELECT :type, '{object_type}', {alias}.id, jsonb_build_object('object', {view})
            FROM {source} WHERE {alias}.id = ANY(:ids)
            RETURNING id, object_id),{notified}
        queued AS (
            INSERT INTO webhook_deliveries (event_id, endpoint_id)
            SELECT ev.id, e.id FROM ev JOIN webhook_endpoints e
                ON e.enabled AND e.events && ARRAY[CAST(:type AS varchar), '*']
            RETURNING id)
        SELECT id FROM queued"""
    binds = [bindparam("ids", type_=ARRAY(BigInteger)), bindparam("type", type_=String)]
    if notified:
        binds.append(bindparam("notification", type_=String))
    return text(sql).bindparams(*binds)


# Built once: one per object type, with and without the notification.
_STATEMENTS = {(kind, notify): _statement(kind, notify)
               for kind in _SOURCES for notify in (False, True)}


def object_type_of(event_type: EventType) -> str:
    return event_type.value.split(".", 1)[0]


def record_events(session: Session, event_type: EventType, object_ids: Sequence[int]) -> int:
    """One `event_type` event per object (payment, order or refund id), in the caller's
    transaction, after its change. Returns how many deliveries were queued."""
    if not object_ids:
        return 0
    notification = NOTIFICATION_TYPES.get(event_type)
    statement = _STATEMENTS[(object_type_of(event_type), notification is not None)]
    params = {"ids": list(object_ids), "type": event_type.value}
    if notification is not None:
        params["notification"] = notification
    delivery_ids = session.execute(statement, params).scalars().all()
    for delivery_id in delivery_ids:
        defer_task(session, DELIVER_TASK, int(delivery_id))
    return len(delivery_ids)


def record_event(session: Session, event_type: EventType, object_id: int) -> int:
    return record_events(session, event_type, (object_id,))
