"""Top-up orders (DESIGN.md §10) with a real worker and the sandbox provider: paid by
another method they credit the wallet with the order; a refund takes the money out of
the wallet when it is requested (409 topup_already_spent when the wallet no longer holds
it, nothing written); a refund the provider then fails puts it back."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from domain.models import Payment
from services.wallet.verification import verify_wallets
from tests.support.callbacks import event_body, post_callback, signed_headers
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until
from tests.support.wallets import balance, balance_order, counts, entries

USER = 41
D = Decimal


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker, make_user_key) -> PaymentFlow:
    make_user_key(USER)
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def paid_topup(flow: PaymentFlow, total: str, **test_options) -> tuple[dict, dict, str]:
    """A top-up order paid at the sandbox: (order, payment, pay_url)."""
    order = flow.admin.post("/api/v1/orders", json={"total_amount": total, "user_id": USER,
                                                    "purpose": "wallet_topup"}).json()
    payment = flow.payment(order["id"], "wechat")
    pay_url = flow.pay(payment["id"])
    if test_options:
        flow.test_options(pay_url, **test_options)
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
    return order, payment, pay_url


def test_refunding_an_unspent_topup_takes_it_out_of_the_wallet(flow, clean_db):
    order, payment, pay_url = paid_topup(flow, "50.00")
    assert balance(clean_db, USER) == D("50.00")

    refund = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})
    assert refund.status_code == 202, refund.text
    # Out of the wallet at once, before the provider has paid it back: it cannot be spent.
    assert balance(clean_db, USER) == D("0.00")
    flow.wait_refund(payment["id"], refund.json()["id"], "succeeded")
    flow.settle(pay_url)
    assert flow.get_order(order["id"])["status"] == "refunded"
    assert entries(clean_db, USER) == [("topup", D("50.00"), D("50.00")),
                                       ("refund", D("-50.00"), D("0.00"))]
    assert verify_wallets(clean_db).ok


def test_refunding_a_spent_topup_is_409_and_writes_nothing(flow, clean_db):
    _, payment, pay_url = paid_topup(flow, "50.00")
    _, spend = balance_order(flow.admin, USER, "30.00")
    assert flow.admin.post(f"/api/v1/payments/{spend['id']}/pay").status_code == 200
    before = counts(clean_db)

    refused = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})

    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert (body["code"], body["balance"], body["amount"]) == (
        "topup_already_spent", "20.00", "50.00")
    assert counts(clean_db) == before  # no refund, no entry, no event, order still paid
    assert flow.get(payment["id"])["status"] == "succeeded"

    part = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                           json={"amount": "20.00"})
    assert part.status_code == 202, part.text
    flow.wait_refund(payment["id"], part.json()["id"], "succeeded")
    flow.settle(pay_url)
    assert balance(clean_db, USER) == D("0.00")
    assert [kind for kind, _, _ in entries(clean_db, USER)] == ["topup", "payment", "refund"]
    assert verify_wallets(clean_db).ok


def test_a_failed_topup_refund_puts_the_money_back(flow, clean_db, settings):
    order, payment, pay_url = paid_topup(flow, "50.00", fail_refunds=True)

    refund = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})
    assert refund.status_code == 202, refund.text
    flow.wait_refund(payment["id"], refund.json()["id"], "failed")
    flow.settle(pay_url)

    assert entries(clean_db, USER) == [("topup", D("50.00"), D("50.00")),
                                       ("refund", D("-50.00"), D("0.00")),
                                       ("refund", D("50.00"), D("50.00"))]
    assert flow.get_order(order["id"])["status"] == "paid"
    assert verify_wallets(clean_db).ok

    # The provider then reports the refund succeeded after all (§6: money that left us):
    # the user would hold the top-up twice, so the payment goes to a person, and the
    # wallet is not overdrawn behind anyone's back.
    late = event_body(payment["id"], event_type="refund.succeeded", amount="50.00",
                      refund_id=refund.json()["id"], transaction_id="rf_late")
    assert post_callback(flow.admin.base_url, late,
                         headers=signed_headers(late, secret=settings.sandbox_webhook_secret)
                         ).status_code == 200
    wait_until(lambda: ("topup_refund_succeeded_after_give_back", "provider:sandbox")
               in flow.events(payment["id"]), timeout=30, message="the late refund applied")
    with clean_db.uow() as uow:
        assert uow.session.execute(select(Payment.needs_review)
                                   .where(Payment.id == payment["id"])).scalar_one()
    assert flow.get(payment["id"])["status"] == "refunded"
    assert balance(clean_db, USER) == D("50.00")
    assert verify_wallets(clean_db).ok


def test_a_purchase_paid_at_the_sandbox_leaves_the_wallet_alone(flow, clean_db):
    flow.paid("12.00", user_id=USER)
    assert balance(clean_db, USER) is None
