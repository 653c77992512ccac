"""The common case of a batch of callbacks, settled set-based (issue #21, B2).

Most callbacks are a first `payment.succeeded` for a payment waiting for it, whose order
is pending: the payment → succeeded, its order → paid. Settled one by one (settlement.py)
that is some fifteen statements, each a round trip; here a whole batch of them is about
twelve. The same rules decide (domain.settlement.decide_payment_event, on facts read under
the same row locks, taken in the same order: inbox rows, orders, payments), the same
compare-and-sets guard every change, and the same audit, history and outbox rows are
written, so the result is the one settle_callback would give. Anything else (failures,
refunds, late successes, mismatches, top-ups, a second callback for one payment) is
handed back for settle_callback itself. The caller runs this in a savepoint: if anything
here raises, it rolls back and settles every one of them singly instead.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from adapters.metrics import CALLBACKS, count_on_commit, count_payment_moved
from domain.callback_events import CallbackEvent, CallbackEventType
from domain.settlement import Action, PaymentFacts, decide_payment_event, order_takes_payment
from domain.statuses import OrderStatus, PaymentStatus
from domain.wallet import OrderPurpose
from domain.webhooks import EventType
from services.audit import jsonable
from services.settlement import SettlementConflict
from services.webhooks.outbox import record_events


@dataclass(frozen=True)
class Pending:
    """A claimed callback, parsed."""

    callback_id: int
    event: CallbackEvent
    provider: str


_IDS = ARRAY(BigInteger)
_LOCK_INBOX = text("""
    SELECT id FROM provider_callbacks WHERE id = ANY(:ids) AND status = 'received'
    ORDER BY id FOR UPDATE""").bindparams(bindparam("ids", type_=_IDS))
_LOCK_ORDERS = text("""
    SELECT id, status, purpose FROM orders
    WHERE id IN (SELECT order_id FROM payments WHERE id = ANY(:ids))
    ORDER BY id FOR UPDATE""").bindparams(bindparam("ids", type_=_IDS))
_LOCK_PAYMENTS = text("""
    SELECT id, order_id, status, amount, currency, provider, transaction_id, refunded_amount
    FROM payments WHERE id = ANY(:ids) ORDER BY id FOR UPDATE""").bindparams(
    bindparam("ids", type_=_IDS))
_OWNERS = text("""
    SELECT id, provider, transaction_id FROM payments WHERE transaction_id = ANY(:txns)
    """).bindparams(bindparam("txns", type_=ARRAY(String)))
_SUCCEED = text("""
    UPDATE payments p SET status = 'succeeded', transaction_id = v.txn, paid_at = now(),
                          updated_at = now()
    FROM unnest(:ids, :froms, :txns) AS v(id, from_status, txn)
    WHERE p.id = v.id AND p.status = v.from_status
    RETURNING p.id""").bindparams(bindparam("ids", type_=_IDS),
                                  bindparam("froms", type_=ARRAY(String)),
                                  bindparam("txns", type_=ARRAY(String)))
_PAY_ORDERS = text("""
    UPDATE orders SET status = 'paid', updated_at = now()
    WHERE id = ANY(:ids) AND status = 'pending' RETURNING id""").bindparams(
    bindparam("ids", type_=_IDS))
# One INSERT each for the batch's audit and history rows (an executemany would still be a
# statement per row).
_AUDIT = text("""
    INSERT INTO payment_events (payment_id, event, actor, detail)
    SELECT v.payment_id, 'payment_succeeded', v.actor, v.detail::jsonb
    FROM unnest(:ids, :actors, :details) AS v(payment_id, actor, detail)""").bindparams(
    bindparam("ids", type_=_IDS), bindparam("actors", type_=ARRAY(String)),
    bindparam("details", type_=ARRAY(String)))
_HISTORY = text("""
    INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor)
    SELECT v.order_id, 'pending', 'paid', v.reason, v.actor
    FROM unnest(:ids, :reasons, :actors) AS v(order_id, reason, actor)""").bindparams(
    bindparam("ids", type_=_IDS), bindparam("reasons", type_=ARRAY(String)),
    bindparam("actors", type_=ARRAY(String)))
_MARK_PROCESSED = text("""
    UPDATE provider_callbacks
    SET status = 'processed', last_error = NULL, processed_at = now(), updated_at = now()
    WHERE id = ANY(:ids) AND status = 'received'""").bindparams(bindparam("ids", type_=_IDS))


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
    waiting = set(session.execute(_LOCK_INBOX, {"ids": sorted(chosen)}).scalars())
    candidates = [item for item in first.values() if item.callback_id in waiting]
    if not candidates:
        return [], rest
    payment_ids = sorted(item.event.payment_id for item in candidates if item.event.payment_id)
    orders = {r.id: r for r in session.execute(_LOCK_ORDERS, {"ids": payment_ids})}
    payments = {r.id: PaymentFacts(id=r.id, order_id=r.order_id,
                                   status=PaymentStatus(r.status), amount=r.amount,
                                   currency=r.currency, provider=r.provider,
                                   transaction_id=r.transaction_id,
                                   refunded_amount=r.refunded_amount)
                for r in session.execute(_LOCK_PAYMENTS, {"ids": payment_ids})}
    owners = {(r.provider, r.transaction_id): r.id for r in session.execute(
        _OWNERS, {"txns": sorted({str(i.event.transaction_id) for i in candidates})})}

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
                and order_takes_payment(OrderStatus(order.status))
                and order.purpose != OrderPurpose.WALLET_TOPUP
                and order.id not in orders_taken and txn not in txns_taken):
            fast.append((item, payment))
            orders_taken.add(order.id)
            txns_taken.add(txn)
        else:
            rest.append(item)
    if fast:
        _apply_successes(session, fast)
    rest.sort(key=lambda item: item.callback_id)
    return [item.callback_id for item, _ in fast], rest


def _apply_successes(session: Session, fast: Sequence[tuple[Pending, PaymentFacts]]) -> None:
    """What _apply_success + transition_payment + transition_order write for each, at
    once; every compare-and-set must hit every row, else SettlementConflict."""
    ids = [p.id for _, p in fast]
    moved = session.execute(_SUCCEED, {
        "ids": ids, "froms": [p.status.value for _, p in fast],
        "txns": [item.event.transaction_id for item, _ in fast]}).scalars().all()
    if len(moved) != len(fast):
        raise SettlementConflict(f"{len(fast) - len(moved)} payments changed while locked")
    session.execute(_AUDIT, {
        "ids": ids, "actors": [_actor(item) for item, _ in fast],
        "details": [json.dumps(jsonable({
            "from_status": p.status.value, "to_status": PaymentStatus.SUCCEEDED.value,
            "event_id": item.event.event_id, "provider": item.provider,
            "callback_id": item.callback_id, "transaction_id": item.event.transaction_id,
            "amount": item.event.amount, "currency": item.event.currency}))
            for item, p in fast]})
    for from_status, count in Counter(p.status.value for _, p in fast).items():
        count_payment_moved(session, PaymentStatus.SUCCEEDED.value, count,
                            from_status=from_status)
    record_events(session, EventType.PAYMENT_SUCCEEDED, ids)

    order_ids = [p.order_id for _, p in fast]
    paid = session.execute(_PAY_ORDERS, {"ids": order_ids}).scalars().all()
    if len(paid) != len(order_ids):
        raise SettlementConflict(f"{len(order_ids) - len(paid)} orders changed while locked")
    session.execute(_HISTORY, {
        "ids": order_ids, "reasons": [f"payment {p.id} succeeded" for _, p in fast],
        "actors": [_actor(item) for item, _ in fast]})
    record_events(session, EventType.ORDER_PAID, order_ids)

    session.execute(_MARK_PROCESSED, {"ids": [item.callback_id for item, _ in fast]})
    for provider, count in Counter(item.provider for item, _ in fast).items():
        count_on_commit(session, CALLBACKS.labels(provider, "processed"), count)


def _actor(item: Pending) -> str:
    return f"provider:{item.provider}"[:64]
