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
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    String,
    and_,
    insert,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from adapters.db import defer_task
from adapters.prepared import Prepared, fetch_one, flushed_connection
from domain.webhook_models import CURRENT_TXID_SQL, Event, WebhookDelivery, WebhookEndpoint
from domain.webhooks import ALL_EVENTS, NOTIFICATION_TYPES, EventType
from services.webhooks.views import (
    ORDER_EVENT_DATA,
    PAYMENT_EVENT_DATA,
    RECONCILIATION_ITEM_EVENT_DATA,
    REFUND_EVENT_DATA,
)

DELIVER_TASK = "webhooks.deliver"
# events.txid given once per statement (an InitPlan) rather than by the column's default,
# which PostgreSQL evaluates again for every row: the same value, 0.7 us a row less (B4).
_TXID = f"(SELECT {CURRENT_TXID_SQL})"

# object type -> (its rows as FROM ... with the alias its event data reads, that alias,
# the notification's columns (user_id, order_id, payment_id, refund_id), or None: none)
_SOURCES = {
    "payment": ("payments p", "p", PAYMENT_EVENT_DATA, "p.user_id, p.order_id, p.id, NULL"),
    "order": ("orders o", "o", ORDER_EVENT_DATA, None),
    "refund": ("refunds r JOIN payments p ON p.id = r.payment_id", "r", REFUND_EVENT_DATA,
               "p.user_id, p.order_id, p.id, r.id"),
    "reconciliation": ("reconciliation_items ri JOIN reconciliation_runs rr "
                       "ON rr.id = ri.run_id", "ri", RECONCILIATION_ITEM_EVENT_DATA, None),
}


def event_ctes(object_type: str, notify: bool, rows: str, alias: str, where: str = "",
               bind: str = ":{}") -> str:
    """The CTEs `ev` (the events), `notified` (the customer's notifications, if `notify`
    and the object type has them) and `queued` (the deliveries, column `id`), to follow a
    WITH, for every row of `rows` (a FROM item naming its rows `alias`: a table, or an
    earlier CTE holding every column the object's view reads) that `where` keeps. Binds
    `type` (and `notification`), written as `bind` gives them (SQLAlchemy's :name by
    default; "%({})s" for psycopg's). For a statement that also makes the change itself."""
    _, _, data, notification = _SOURCES[object_type]
    notified = ""
    if notify and notification:
        notified = f"""
        notified AS (
            INSERT INTO notifications (user_id, order_id, payment_id, refund_id, type, event_id)
            SELECT {notification}, {bind.format("notification")}, ev.id
            FROM ev JOIN {rows} ON {alias}.id = ev.object_id),"""
    return f"""
        ev AS (
            INSERT INTO events (type, object_type, object_id, data, txid)
            SELECT {bind.format("type")}, '{object_type}', {alias}.id, {data}, {_TXID}
            FROM {rows} {where}
            RETURNING id, object_id),{notified}
        queued AS (
            INSERT INTO webhook_deliveries (event_id, endpoint_id)
            SELECT ev.id, e.id FROM ev JOIN webhook_endpoints e
                ON e.enabled AND e.events && ARRAY[CAST({bind.format("type")} AS varchar), '*']
            RETURNING id)"""


def _statement(object_type: str, notify: bool, one: bool) -> Prepared[list[int]]:
    """`one`: for a single object, `id = %(id)s` rather than `id = ANY(%(ids)s)`. PostgreSQL
    plans this statement (the view's CASEs and subqueries) in ~0.5 ms. It keeps a prepared
    statement's generic plan, planned once, only when that costs no more than the plans it
    made for the parameters; for `= ANY(array)` the generic plan assumes several rows and
    never wins, so every single event was planned afresh (a settlement writes two: 1 of its
    ~2 ms of database time, B4's callbacks). With `= %(id)s` the two plans cost the same.
    Run by psycopg itself (adapters/prepared.py): a settlement writes two events, and
    SQLAlchemy's work around each cost more Python than the statement's round trip."""
    source, alias, _, _ = _SOURCES[object_type]
    where = f"WHERE {alias}.id = %(id)s" if one else f"WHERE {alias}.id = ANY(%(ids)s)"
    ctes = event_ctes(object_type, notify, source, alias, where, bind="%({})s")
    return Prepared(f"WITH {ctes}\n        SELECT array(SELECT id FROM queued)", _ids)


def _ids(ids: list[int]) -> list[int]:
    return ids


# Built once: per object type, with and without the notification, for one object or many.
_STATEMENTS = {(kind, notify, one): _statement(kind, notify, one)
               for kind in _SOURCES for notify in (False, True) for one in (False, True)}


def object_type_of(event_type: EventType) -> str:
    return event_type.value.split(".", 1)[0]


def record_events(session: Session, event_type: EventType, object_ids: Sequence[int]) -> int:
    """One `event_type` event per object (payment, order or refund id), in the caller's
    transaction, after its change. Returns how many deliveries were queued."""
    if not object_ids:
        return 0
    notification = NOTIFICATION_TYPES.get(event_type)
    one = len(object_ids) == 1
    statement = _STATEMENTS[(object_type_of(event_type), notification is not None, one)]
    params: dict[str, Any] = {"type": event_type.value}
    if one:
        params["id"] = object_ids[0]
    else:
        params["ids"] = list(object_ids)
    if notification is not None:
        params["notification"] = notification
    delivery_ids = fetch_one(flushed_connection(session), statement, params) or []
    defer_deliveries(session, delivery_ids)
    return len(delivery_ids)


def record_event(session: Session, event_type: EventType, object_id: int) -> int:
    return record_events(session, event_type, (object_id,))


def payment_events_from(rows: CTE, event_type: EventType) -> CTE:
    """For a set-based writer whose statement already has the changed payments' rows
    (an UPDATE ... RETURNING every column the view reads, as the CTE `rows`): the events
    and their deliveries as CTEs of that same statement, so 100,000 payments are neither
    read again nor sent back and forth (B4). Returns the deliveries' CTE (column `id`):
    pass its ids to defer_deliveries. No notification: for the payment events with one
    (succeeded, failed) use record_events."""
    assert event_type not in NOTIFICATION_TYPES and object_type_of(event_type) == "payment"
    p = rows.alias("p")
    events = (insert(Event).from_select(
        ["type", "object_type", "object_id", "data", "txid"],
        select(literal(event_type.value), literal("payment"), p.c.id,
               literal_column(PAYMENT_EVENT_DATA), literal_column(_TXID)).select_from(p))
        .returning(Event.id).cte("webhook_events"))
    subscribed = subscribes_to(event_type.value)
    return (insert(WebhookDelivery).from_select(
        ["event_id", "endpoint_id"],
        select(events.c.id, WebhookEndpoint.id).select_from(events)
        .join(WebhookEndpoint, subscribed), include_defaults=False)  # the server's defaults
        .returning(WebhookDelivery.id).cte("webhook_deliveries_queued"))


def subscribes_to(event_type: str) -> ColumnElement[bool]:
    """An enabled endpoint that wants `event_type` (by name, or all with "*")."""
    return and_(WebhookEndpoint.enabled.is_(True), WebhookEndpoint.events.overlap(
        array([literal(event_type, String), literal(ALL_EVENTS, String)])))


def defer_deliveries(session: Session, delivery_ids: Sequence[int]) -> None:
    for delivery_id in delivery_ids:
        defer_task(session, DELIVER_TASK, int(delivery_id))
