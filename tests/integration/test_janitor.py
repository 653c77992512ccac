"""The janitor (maintenance.sync_pending) and the expiry check ask the provider (DESIGN.md §7).

Callbacks are "lost" by holding them back at the sandbox (out_of_order with nothing
to pair them with): they never arrive, and no delivery task is left retrying after
the test. The janitor's quiet minute and a payment's TTL pass by moving timestamps
back in the database.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from adapters.locks import payment_lock
from adapters.resources import Resources
from devstack.embedded import free_port
from services.maintenance import expire_stale_payments, sync_processing_payments
from services.provider_sync import UNKNOWN, ProviderQuery, ProviderVerdict, query_statuses
from tests.support.factories import make_order, make_payment
from tests.support.payment_flow import PaymentFlow

QUIET = 120  # seconds moved back: past the janitor's one quiet minute


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def started_with_lost_callback(flow: PaymentFlow, button: str) -> tuple[dict, str]:
    payment = flow.payment(flow.order()["id"])
    pay_url = flow.pay(payment["id"])
    flow.test_options(pay_url, out_of_order=True)
    flow.press(pay_url, button)
    assert [d["status"] for d in flow.deliveries(pay_url)] == ["held"]
    flow.move_back("payments", payment["id"], QUIET, "updated_at")
    return payment, pay_url


def test_a_payment_declined_at_the_provider_is_marked_failed_like_its_callback_would(flow):
    payment, pay_url = started_with_lost_callback(flow, "decline")

    result = sync_processing_payments(flow.res)

    assert (result["checked"], result["provider_failed"], result["now_failed"],
            result["changed"]) == (1, 1, 1, 1)
    assert flow.get(payment["id"])["status"] == "failed"
    assert flow.events(payment["id"])[-1] == ("payment_failed", "system:sync_pending")
    assert flow.get_order(payment["order_id"])["status"] == "pending"  # payable again

    flow.test_options(pay_url, out_of_order=False)  # the lost callback turns up after all
    flow.settle(pay_url)
    assert [e for e, _ in flow.events(payment["id"])].count("payment_failed") == 1
    assert sync_processing_payments(flow.res)["checked"] == 0


def test_the_janitor_takes_the_same_payment_lock_as_callbacks(flow):
    payment, pay_url = started_with_lost_callback(flow, "approve")

    # A callback worker holds the payment: the janitor leaves it for the next run.
    with payment_lock(flow.res.redis, payment["id"], ttl_seconds=30, blocking_timeout=1):
        busy = sync_processing_payments(flow.res)
    assert (busy["provider_succeeded"], busy["changed"]) == (1, 0)
    assert flow.get(payment["id"])["status"] == "processing"

    result = sync_processing_payments(flow.res)
    assert (result["now_succeeded"], result["changed"]) == (1, 1)
    paid = flow.get(payment["id"])
    assert paid["status"] == "succeeded" and paid["paid_at"] is not None
    assert paid["transaction_id"] == flow.at_provider(pay_url)["transaction_id"]
    assert flow.get_order(payment["order_id"])["status"] == "paid"
    flow.test_options(pay_url, out_of_order=False)
    flow.settle(pay_url)
    assert [e for e, _ in flow.events(payment["id"])] == [
        "payment_created", "payment_start_requested", "payment_started", "payment_succeeded"]


def test_pending_unknown_and_recent_payments_are_left_alone(flow, settings):
    waiting = flow.payment(flow.order()["id"])
    pay_url = flow.pay(waiting["id"])  # open at the sandbox, nobody has paid
    flow.move_back("payments", waiting["id"], QUIET, "updated_at")
    # processing without a provider reference: there is nothing to ask about
    never_started = make_payment(flow.res, make_order(flow.res), status="processing")
    flow.move_back("payments", never_started, QUIET, "updated_at")
    recent = flow.payment(flow.order()["id"])
    flow.pay(recent["id"])  # processing, but not quiet for a minute yet

    result = sync_processing_payments(flow.res)

    assert (result["checked"], result["provider_pending"], result["provider_unknown"],
            result["changed"]) == (2, 1, 1, 0)
    for payment_id in (waiting["id"], never_started, recent["id"]):
        assert flow.get(payment_id)["status"] == "processing"

    # The provider unreachable: every answer is unknown, nothing changes.
    down = Resources(dataclasses.replace(
        settings, public_base_url=f"http://127.0.0.1:{free_port()}"))
    try:
        result = sync_processing_payments(down)
    finally:
        down.close()
    assert (result["checked"], result["provider_unknown"], result["changed"]) == (2, 2, 0)
    assert flow.get(waiting["id"])["status"] == "processing"
    flow.settle(pay_url)


def test_the_expiry_sweep_expires_a_payment_the_provider_still_waits_for(flow):
    payment = flow.payment(flow.order()["id"])
    pay_url = flow.pay(payment["id"])
    flow.move_back("payments", payment["id"], 3600, "created_at", "updated_at", "expires_at")

    result = expire_stale_payments(flow.res)

    assert result["processing_expired"] == 1 and "provider_paid_applied" not in result
    assert flow.get(payment["id"])["status"] == "expired"
    assert flow.events(payment["id"])[-1] == ("payment_expired", "system:expire_payments")
    flow.settle(pay_url)


def test_status_queries_map_the_sandbox_and_stop_at_their_time_budget(flow):
    payment = flow.payment(flow.order()["id"])
    pay_url = flow.pay(payment["id"])
    asked = ProviderQuery(payment["id"], "sandbox", flow.ticket(pay_url))
    no_reference = ProviderQuery(payment["id"] + 1000, "sandbox", None)

    answers = query_statuses(flow.res, [no_reference, asked])
    assert answers[no_reference.payment_id] == UNKNOWN
    assert (answers[asked.payment_id].verdict, answers[asked.payment_id].amount) == (
        ProviderVerdict.PENDING, Decimal("100.00"))
    # Out of time: what was not asked is missing (not "unknown"), so the expiry sweep
    # leaves it for its next run instead of expiring it unasked.
    assert query_statuses(flow.res, [no_reference, asked], budget_seconds=0) == {
        no_reference.payment_id: UNKNOWN}

    flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel")  # closed at the sandbox
    assert query_statuses(flow.res, [asked])[asked.payment_id].verdict is ProviderVerdict.FAILED
    flow.settle(pay_url)
