"""The whole loop through real HTTP, a real worker and the sandbox provider (DESIGN.md §5-§7).

Order -> payment -> pay (the worker asks the sandbox, over HTTP, for a pay_url) ->
the customer presses Approve or Decline on the sandbox's pay page -> the sandbox
delivers a signed callback to our /callbacks/sandbox -> the worker applies it.
Refunds go the same way back. Nothing is inserted by hand; where a test needs time
to pass (the 30 s retry gap, the janitor's quiet minute, a payment's TTL) it moves
a timestamp back in the database and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.maintenance import expire_stale_payments
from tests.support.payment_flow import PaymentFlow

PAYMENTS = str(Path(sys.executable).parent / "payments")


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def test_order_payment_pay_approve_ends_paid(flow):
    order = flow.order("88.80")
    payment = flow.payment(order["id"])
    assert (payment["status"], payment["pay_url"]) == ("init", None)

    pay_url = flow.pay(payment["id"])

    started = flow.get(payment["id"])
    assert started["status"] == "processing" and started["provider"] == "sandbox"
    assert pay_url.startswith(f"{flow.admin.base_url}/sandbox/pay/tkt_")
    at_provider = flow.at_provider(pay_url)
    assert (at_provider["status"], at_provider["amount"], at_provider["method"]) == (
        "pending", "88.80", "wechat")

    flow.press(pay_url, "approve")

    paid = flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
    assert paid["transaction_id"] == flow.at_provider(pay_url)["transaction_id"]
    assert paid["amount"] == "88.80" and paid["paid_at"] is not None
    assert [e["event"] for e in paid["logs"]] == [
        "payment_created", "payment_start_requested", "payment_started", "payment_succeeded"]
    assert flow.get_order(order["id"])["status"] == "paid"
    assert flow.get_order(order["id"])["amount_paid"] == "88.80"


def test_decline_fails_then_a_retry_is_approved_and_paid(flow):
    order = flow.order()
    first = flow.payment(order["id"])
    first_url = flow.pay(first["id"])
    flow.press(first_url, "decline")
    assert [e["event"] for e in flow.wait_status(first["id"], "failed")["logs"]] == [
        "payment_created", "payment_start_requested", "payment_started", "payment_failed"]
    assert flow.get_order(order["id"])["status"] == "pending"

    too_soon = flow.admin.post(f"/api/v1/payments/{first['id']}/retry")
    assert too_soon.status_code == 429
    # The 30 s between attempts pass in the database, not in the test's wall clock.
    flow.move_back("payments", first["id"], 31, "created_at")
    retry = flow.admin.post(f"/api/v1/payments/{first['id']}/retry")
    assert retry.status_code == 201, retry.text
    second = retry.json()
    assert (second["attempt"], second["order_id"]) == (2, order["id"])

    second_url = flow.pay(second["id"])
    assert second_url != first_url  # a new provider payment for the new attempt
    flow.press(second_url, "approve")

    flow.wait_status(second["id"], "succeeded")
    flow.settle(first_url, second_url)
    assert flow.get(first["id"])["status"] == "failed"
    order_now = flow.get_order(order["id"])
    assert (order_now["status"], order_now["amount_paid"]) == ("paid", "100.00")


def test_partial_refund_then_the_rest_refunds_payment_and_order_exactly(flow):
    payment, pay_url = flow.paid("100.00")
    order_id = payment["order_id"]

    first = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                            json={"amount": "30.10", "reason": "one item returned"})
    assert first.status_code == 202, first.text
    assert (first.json()["amount"], first.json()["status"]) == ("30.10", "pending")
    flow.wait_refund(payment["id"], first.json()["id"], "succeeded")
    partly = flow.get(payment["id"])
    assert (partly["status"], partly["refunded_amount"]) == ("partially_refunded", "30.10")
    assert flow.get_order(order_id)["status"] == "paid"  # a partial refund keeps it paid

    rest = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})
    assert rest.status_code == 202, rest.text
    assert rest.json()["amount"] == "69.90"  # no amount: all that remains
    refund = flow.wait_refund(payment["id"], rest.json()["id"], "succeeded")
    assert refund["provider_refund_id"].startswith("rfd_")
    flow.settle(pay_url)

    done = flow.get(payment["id"])
    assert (done["status"], done["refunded_amount"], done["amount"]) == (
        "refunded", "100.00", "100.00")
    order = flow.get_order(order_id)
    assert (order["status"], order["amount_paid"], order["amount_refunded"]) == (
        "refunded", "100.00", "100.00")
    assert [(h["from"], h["to"]) for h in order["history"]] == [
        (None, "pending"), ("pending", "paid"), ("paid", "refunding"), ("refunding", "refunded")]
    events = [e["event"] for e in done["logs"]]
    assert events.count("refund_requested") == 2 and events.count("refund_succeeded") == 2
    assert flow.at_provider(pay_url)["refunded_amount"] == "100.00"
    assert flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                           json={}).status_code == 409  # refunded: nothing more to give


def test_callbacks_delivered_twice_apply_once(flow):
    order = flow.order()
    payment = flow.payment(order["id"])
    pay_url = flow.pay(payment["id"])
    flow.test_options(pay_url, deliver_twice=True)

    flow.press(pay_url, "approve")

    flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
    sent = flow.deliveries(pay_url)
    assert len(sent) == 2 and len({d["event_id"] for d in sent}) == 1  # one event, twice
    inbox = flow.admin.get(f"/api/v1/callbacks?payment_id={payment['id']}").json()["items"]
    assert len(inbox) == 1 and inbox[0]["status"] == "processed"  # the copy: a duplicate
    assert [e for e, _ in flow.events(payment["id"])].count("payment_succeeded") == 1
    assert flow.get_order(order["id"])["status"] == "paid"


def test_a_failure_delivered_after_the_success_never_regresses_it(flow):
    """out_of_order: Decline's payment.failed is held, the customer then approves on the
    same page, and the success goes out first: failed arrives after succeeded (§6)."""
    order = flow.order()
    payment = flow.payment(order["id"])
    pay_url = flow.pay(payment["id"])
    flow.test_options(pay_url, out_of_order=True)

    flow.press(pay_url, "decline")
    flow.press(pay_url, "approve")

    flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
    sent = flow.deliveries(pay_url)
    assert [d["type"] for d in sorted(sent, key=lambda d: d["delivered_at"])] == [
        "payment.succeeded", "payment.failed"]
    final = flow.get(payment["id"])
    assert final["status"] == "succeeded"
    assert final["transaction_id"] == flow.at_provider(pay_url)["transaction_id"]
    events = [e for e, _ in flow.events(payment["id"])]
    # Exactly one success was applied and nothing after it moved the payment back. (If
    # the worker ever took the failure first, the success would arrive as a late payment
    # on a pending order: still paid, still exactly one success.)
    successes = [i for i, e in enumerate(events) if e in ("payment_succeeded",
                                                          "late_payment_received")]
    assert len(successes) == 1
    assert not {"payment_failed", "payment_expired"} & set(events[successes[0]:])
    assert flow.get_order(order["id"])["status"] == "paid"
    inbox = flow.admin.get(f"/api/v1/callbacks?payment_id={payment['id']}").json()["items"]
    assert sorted(c["status"] for c in inbox) == ["processed", "processed"]


def test_a_lost_success_callback_is_found_paid_by_the_janitor_and_the_expiry_check(
        flow, stack_env):
    """The success callbacks are held back at the sandbox (out_of_order with nothing to
    pair them with), which for us is a callback lost on the way: it never arrives and no
    delivery task is left retrying. The janitor and the expiry sweep ask the sandbox."""
    synced = flow.payment(flow.order()["id"])
    expiring = flow.payment(flow.order()["id"])
    urls = {p["id"]: flow.pay(p["id"]) for p in (synced, expiring)}
    for pay_url in urls.values():
        flow.test_options(pay_url, out_of_order=True)
        flow.press(pay_url, "approve")
        assert flow.at_provider(pay_url)["status"] == "succeeded"
        assert [d["status"] for d in flow.deliveries(pay_url)] == ["held"]

    def sync() -> dict:
        done = subprocess.run([PAYMENTS, "sweep", "sync"], env=stack_env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])["result"]

    # The janitor only looks at payments quiet for a minute: nothing yet.
    assert sync()["checked"] == 0
    flow.move_back("payments", synced["id"], 120, "updated_at")
    result = sync()
    assert (result["checked"], result["provider_succeeded"], result["changed"]) == (1, 1, 1)
    found = flow.get(synced["id"])
    assert found["status"] == "succeeded"
    assert found["transaction_id"] == flow.at_provider(urls[synced["id"]])["transaction_id"]
    assert flow.events(synced["id"])[-1] == ("payment_succeeded", "system:sync_pending")
    assert flow.get_order(synced["order_id"])["status"] == "paid"

    # Past its expires_at, the other one is asked of the provider before it is expired.
    flow.move_back("payments", expiring["id"], 3600, "created_at", "updated_at", "expires_at")
    swept = expire_stale_payments(flow.res)
    assert swept["provider_paid_applied"] == 1 and "processing_expired" not in swept
    kept = flow.get(expiring["id"])
    assert kept["status"] == "succeeded"
    assert [e for e, _ in flow.events(expiring["id"])] == [
        "payment_created", "payment_start_requested", "payment_started", "payment_succeeded"]
    assert flow.get_order(expiring["order_id"])["status"] == "paid"

    # The held callbacks finally arrive: they find the work done and change nothing.
    for pay_url in urls.values():
        flow.test_options(pay_url, out_of_order=False)
    flow.settle(*urls.values())
    for payment_id in urls:
        events = [e for e, _ in flow.events(payment_id)]
        assert events.count("payment_succeeded") == 1 and flow.get(payment_id)["status"] == (
            "succeeded")
