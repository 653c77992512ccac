"""50 balance payments of one user sent at the same moment over real HTTP, each from its
own thread and connection, against a wallet that holds enough for 20 (DESIGN.md §10).

The wallet's row lock serialises them; each is all or nothing. Counted in PostgreSQL:
exactly 20 paid (debit, payment succeeded, order paid, history, audit), 30 refused with
409 insufficient_balance and nothing of theirs written, the balance 0 and equal to its
ledger."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from sqlalchemy import func, select

from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from domain.wallet_models import WalletEntry
from services.wallet.verification import verify_wallets
from tests.support.live_server import Api
from tests.support.wallets import balance, balance_order, credit, ledger_sum

USER = 51
ORDERS = 50
AFFORDABLE = 20
PRICE = Decimal("10.00")


def test_fifty_concurrent_balance_pays_for_a_wallet_that_holds_twenty(api, admin_key,
                                                                      make_user_key,
                                                                      clean_db):
    admin = api.as_key(admin_key)
    user_key = make_user_key(USER)
    credit(admin, USER, str(PRICE * AFFORDABLE))
    payments = [balance_order(admin, USER, str(PRICE))[1]["id"] for _ in range(ORDERS)]
    barrier = threading.Barrier(ORDERS)
    answers: dict[int, tuple[int, dict]] = {}

    def pay(payment_id: int) -> None:
        client = Api(api.base_url, user_key)  # its own connection
        barrier.wait()
        response = client.post(f"/api/v1/payments/{payment_id}/pay", timeout=60)
        answers[payment_id] = (response.status_code, response.json())

    threads = [threading.Thread(target=pay, args=(pid,)) for pid in payments]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    elapsed = time.monotonic() - started

    assert len(answers) == ORDERS
    paid = {pid for pid, (status, _) in answers.items() if status == 200}
    refused = {pid for pid, (status, _) in answers.items() if status == 409}
    assert (len(paid), len(refused)) == (AFFORDABLE, ORDERS - AFFORDABLE), answers
    for _, body in (answers[pid] for pid in refused):
        assert (body["code"], body["amount"]) == ("insufficient_balance", "10.00")
    print(f"\n{ORDERS} concurrent balance pays answered in {elapsed:.2f} s")

    assert balance(clean_db, USER) == Decimal("0.00")
    assert ledger_sum(clean_db, USER) == Decimal("0.00")
    assert verify_wallets(clean_db).ok
    with clean_db.uow() as uow:
        session = uow.session
        debited = dict(session.execute(
            select(WalletEntry.payment_id, WalletEntry.amount)
            .where(WalletEntry.kind == "payment")).tuples().all())
        rows = session.execute(
            select(Payment.id, Payment.status, Order.status.label("order_status"))
            .join(Order, Order.id == Payment.order_id)).all()
        succeeded_events = dict(session.execute(
            select(PaymentEvent.payment_id, func.count())
            .where(PaymentEvent.event == "payment_succeeded")
            .group_by(PaymentEvent.payment_id)).tuples().all())
        paid_history = dict(session.execute(
            select(Payment.id, func.count())
            .join(OrderStatusHistory, OrderStatusHistory.order_id == Payment.order_id)
            .where(OrderStatusHistory.to_status == "paid")
            .group_by(Payment.id)).tuples().all())
    assert debited == {pid: -PRICE for pid in paid}  # one debit each, only the paid
    assert succeeded_events == {pid: 1 for pid in paid}
    assert paid_history == {pid: 1 for pid in paid}
    # No payment half done: paid means paid all through, refused means untouched.
    assert {r.id: (r.status, r.order_status) for r in rows} == {
        **{pid: ("succeeded", "paid") for pid in paid},
        **{pid: ("init", "pending") for pid in refused}}
