"""The common case of a batch of callbacks, settled set-based (issue #21, B2).

Most callbacks are a first `payment.succeeded` for a payment waiting for it, whose order
is pending: the payment → succeeded, its order → paid. Settled one by one (settlement.py)
that is some fifteen statements, each a round trip; here a whole batch of them is three:
every row read, locked at once; the payments, audit rows, payment events, orders and
history written by one statement; the order events and inbox marks by another (a small
batch pays per statement, not per row: issue #21, B3). The same rules decide
(domain.settlement.decide_payment_event, on facts read under the same row locks, taken in
the same order: inbox rows, orders, payments), the same compare-and-sets guard every
change, and the same audit, history and outbox rows are written, so the result is the one
settle_callback would give. Anything else (failures, refunds, late successes, mismatches,
top-ups, a second callback for one payment) is handed back for settle_callback itself.
The caller runs this in a savepoint: if anything here raises, it rolls back and settles
every one of them singly instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, DateTime, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from adapters.metrics import CALLBACKS, count_on_commit, count_payment_moved
from domain.callback_events import CallbackEvent, CallbackEventType
from domain.settlement import Action, PaymentFacts, decide_payment_event, order_takes_payment
from domain.statuses import OrderStatus, PaymentStatus
from domain.wallet import OrderPurpose
from domain.webhooks import NOTIFICATION_TYPES, EventType
from services.settlement import SettlementConflict
from services.webhooks.outbox import defer_deliveries, event_ctes


@dataclass(frozen=True)
class Pending:
    """A claimed callback, parsed."""

    callback_id: int
    event: CallbackEvent
    provider: str


_IDS = ARRAY(BigInteger)
_TEXTS = ARRAY(String)
_TIMES = ARRAY(DateTime(timezone=True))
# Every row the common case reads, locked in one statement, in the order every writer
# takes them (inbox rows, then orders, then payments: services/settlement.py's
# _lock_payment): each CTE's scalar subquery over the one before makes PostgreSQL run
# that one to completion first, whatever order the final join reads them in. One row
# per callback whose inbox row is still `received`; the payment's and its order's
# columns NULL when there is none; `owner`: the payment holding the event's
# transaction id, if any (read under the same locks, as settle_callback reads it).
_LOCK_ALL = text("""
    WITH v AS (
        SELECT * FROM unnest(:callback_ids, :payment_ids, :providers, :txns)
            AS v(callback_id, payment_id, provider, txn)),
    inbox AS (
        SELECT id FROM provider_callbacks
        WHERE id = ANY(:callback_ids) AND status = 'received' ORDER BY id FOR UPDATE),
    waiting AS (
        SELECT v.* FROM v JOIN inbox ON inbox.id = v.callback_id),
    locked_orders AS (
        SELECT id, status, purpose FROM orders
        WHERE id IN (SELECT order_id FROM payments
                     WHERE id IN (SELECT payment_id FROM waiting))
        ORDER BY id FOR UPDATE),
    locked_payments AS (
        SELECT id, order_id, status, amount, currency, provider, transaction_id,
               refunded_amount
        FROM payments
        WHERE id IN (SELECT payment_id FROM waiting)
          AND (SELECT count(*) FROM locked_orders) >= 0
        ORDER BY id FOR UPDATE)
    SELECT w.callback_id, p.id, p.order_id, p.status, p.amount, p.currency, p.provider,
           p.transaction_id, p.refunded_amount, o.status AS order_status, o.purpose,
           (SELECT x.id FROM payments x
            WHERE x.provider = w.provider AND x.transaction_id = w.txn) AS owner
    FROM waiting w
    LEFT JOIN locked_payments p ON p.id = w.payment_id
    LEFT JOIN locked_orders o ON o.id = p.order_id
    WHERE (SELECT count(*) FROM locked_payments) >= 0""").bindparams(
    bindparam("callback_ids", type_=_IDS), bindparam("payment_ids", type_=_IDS),
    bindparam("providers", type_=_TEXTS), bindparam("txns", type_=_TEXTS))
# The payments -> succeeded (compare-and-set on the status read under the lock; the
# provider's time of the success beside ours, from the same VALUES list), their
# audit rows, their payment.succeeded events (built from the updated rows: in one
# statement a later CTE cannot see an earlier one's changes in the table), the orders
# -> paid and their history, at once. The caller checks both counts: a compare-and-set
# that missed a row rolls the whole statement back with its savepoint.
_SUCCEED_AND_PAY = text(f"""
    WITH moved AS (
        UPDATE payments p SET status = 'succeeded', transaction_id = v.txn, paid_at = now(),
                              provider_paid_at = v.provider_paid_at, updated_at = now()
        FROM unnest(:ids, :froms, :txns, :provider_paid_ats)
            AS v(id, from_status, txn, provider_paid_at)
        WHERE p.id = v.id AND p.status = v.from_status
        RETURNING p.*),
    audit AS (
        INSERT INTO payment_events (payment_id, event, actor, detail)
        SELECT v.id, 'payment_succeeded', left('provider:' || v.provider, 64),
               jsonb_build_object(
                   'from_status', v.from_status, 'to_status', 'succeeded',
                   'event_id', v.event_id, 'provider', v.provider,
                   'callback_id', v.callback_id, 'transaction_id', v.txn,
                   'amount', v.amount, 'currency', v.currency)
        FROM unnest(:ids, :froms, :txns, :providers, :event_ids, :callback_ids, :amounts,
                    :currencies)
            AS v(id, from_status, txn, provider, event_id, callback_id, amount, currency)),
    {event_ctes("payment", True, "moved p", "p")},
    paid AS (
        UPDATE orders SET status = 'paid', updated_at = now()
        WHERE id = ANY(:order_ids) AND status = 'pending' RETURNING id),
    history AS (
        INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor)
        SELECT v.order_id, 'pending', 'paid', 'payment ' || v.payment_id || ' succeeded',
               left('provider:' || v.provider, 64)
        FROM unnest(:order_ids, :ids, :providers) AS v(order_id, payment_id, provider))
    SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM paid) AS paid,
           ARRAY(SELECT id FROM queued) AS deliveries""").bindparams(
    bindparam("ids", type_=_IDS), bindparam("froms", type_=_TEXTS),
    bindparam("txns", type_=_TEXTS), bindparam("provider_paid_ats", type_=_TIMES),
    bindparam("providers", type_=_TEXTS), bindparam("event_ids", type_=_TEXTS),
    bindparam("callback_ids", type_=_IDS),
    bindparam("amounts", type_=_TEXTS), bindparam("currencies", type_=_TEXTS),
    bindparam("order_ids", type_=_IDS), bindparam("type", type_=String),
    bindparam("notification", type_=String))
# The orders' order.paid events (a statement of their own: the view reads the payments
# and history just written) and the inbox rows marked processed.
_ORDERS_PAID_EVENTS_AND_MARK = text(f"""
    WITH {event_ctes("order", False, "orders o", "o", "WHERE o.id = ANY(:order_ids)")},
    marked AS (
        UPDATE provider_callbacks
        SET status = 'processed', last_error = NULL, processed_at = now(), updated_at = now()
        WHERE id = ANY(:callback_ids) AND status = 'received')
    SELECT id FROM queued""").bindparams(
    bindparam("order_ids", type_=_IDS), bindparam("callback_ids", type_=_IDS),
    bindparam("type", type_=String))


def settle_first_successes(session: Session, pending: Sequence[Pending]
                           ) -> tuple[list[int], list[Pending]]:
    """(callback ids settled here as processed, the rest for settle_callback), in the
    caller's transaction. Rows found no longer `received` are in neither: handled."""
    first: dict[int, Pending] = {}
    for item in pending:
        if (item.event.type is CallbackEventType.PAYMENT_SUCCEEDED
                and item.event.payment_id is not None and item.event.transaction_id
                and item.event.payment_id not in first):
            first[item.event.payment_id] = item
    if not first:
        return [], list(pending)
    chosen = {item.callback_id for item in first.values()}
    rest = [item for item in pending if item.callback_id not in chosen]
    chosen_items = sorted(first.values(), key=lambda item: item.callback_id)
    rows = session.execute(_LOCK_ALL, {
        "callback_ids": [item.callback_id for item in chosen_items],
        "payment_ids": [item.event.payment_id for item in chosen_items],
        "providers": [item.provider for item in chosen_items],
        "txns": [str(item.event.transaction_id) for item in chosen_items]}).all()
    if not rows:
        return [], rest
    by_callback = {item.callback_id: item for item in chosen_items}
    candidates = [by_callback[r.callback_id] for r in rows]
    # order id -> (its status, its purpose), as locked
    orders = {r.order_id: (r.order_status, r.purpose) for r in rows
              if r.id is not None and r.order_status is not None}
    payments = {r.id: PaymentFacts(id=r.id, order_id=r.order_id,
                                   status=PaymentStatus(r.status), amount=r.amount,
                                   currency=r.currency, provider=r.provider,
                                   transaction_id=r.transaction_id,
                                   refunded_amount=r.refunded_amount)
                for r in rows if r.id is not None}
    owners = {(by_callback[r.callback_id].provider,
               by_callback[r.callback_id].event.transaction_id): r.owner
              for r in rows if r.owner is not None}

    fast: list[tuple[Pending, PaymentFacts]] = []
    # One payment per order and per transaction id here: a second one needs the first's
    # outcome (a refund, a transaction conflict), which settle_callback then reads.
    orders_taken: set[int] = set()
    txns_taken: set[tuple[str, str | None]] = set()
    for item in candidates:
        payment = payments.get(item.event.payment_id or 0)
        order = orders.get(payment.order_id) if payment is not None else None
        txn = (item.provider, item.event.transaction_id)
        decision = decide_payment_event(payment, item.event, provider=item.provider,
                                        transaction_owner=owners.get(txn))
        if (payment is not None and order is not None and decision.action is Action.SUCCEED
                and order_takes_payment(OrderStatus(order[0]))
                and order[1] != OrderPurpose.WALLET_TOPUP
                and payment.order_id not in orders_taken and txn not in txns_taken):
            fast.append((item, payment))
            orders_taken.add(payment.order_id)
            txns_taken.add(txn)
        else:
            rest.append(item)
    if fast:
        _apply_successes(session, fast)
    rest.sort(key=lambda item: item.callback_id)
    return [item.callback_id for item, _ in fast], rest


def _apply_successes(session: Session, fast: Sequence[tuple[Pending, PaymentFacts]]) -> None:
    """What _apply_success + transition_payment + transition_order write for each, in two
    statements; every compare-and-set must hit every row, else SettlementConflict."""
    ids = [p.id for _, p in fast]
    order_ids = [p.order_id for _, p in fast]
    # The audit detail and the actors are built in the statement, from these columns, as
    # services/audit.py would write them (amounts as strings).
    written = session.execute(_SUCCEED_AND_PAY, {
        "ids": ids, "froms": [p.status.value for _, p in fast],
        "txns": [item.event.transaction_id for item, _ in fast],
        "provider_paid_ats": [item.event.occurred_at for item, _ in fast],
        "providers": [item.provider for item, _ in fast],
        "event_ids": [item.event.event_id for item, _ in fast],
        "callback_ids": [item.callback_id for item, _ in fast],
        "amounts": [str(item.event.amount) for item, _ in fast],
        "currencies": [item.event.currency for item, _ in fast],
        "order_ids": order_ids, "type": EventType.PAYMENT_SUCCEEDED.value,
        "notification": NOTIFICATION_TYPES[EventType.PAYMENT_SUCCEEDED]}).one()
    if written.moved != len(fast):
        raise SettlementConflict(f"{len(fast) - written.moved} payments changed while locked")
    if written.paid != len(order_ids):
        raise SettlementConflict(f"{len(order_ids) - written.paid} orders changed while locked")
    defer_deliveries(session, written.deliveries)
    for from_status, count in Counter(p.status.value for _, p in fast).items():
        count_payment_moved(session, PaymentStatus.SUCCEEDED.value, count,
                            from_status=from_status)

    defer_deliveries(session, session.execute(_ORDERS_PAID_EVENTS_AND_MARK, {
        "order_ids": order_ids, "callback_ids": [item.callback_id for item, _ in fast],
        "type": EventType.ORDER_PAID.value}).scalars().all())
    for provider, count in Counter(item.provider for item, _ in fast).items():
        count_on_commit(session, CALLBACKS.labels(provider, "processed"), count)
