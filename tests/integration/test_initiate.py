"""payments.initiate and cancel against the sandbox provider over real HTTP (DESIGN.md §5, §6a).

- a start delivered twice makes one provider payment and one payment_started;
- a provider that does not answer is retried with backoff, never a failed payment;
- a provider that refuses fails the payment, with its reason;
- cancelling a processing payment closes it at the provider, unless it is paid there.
"""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from adapters.providers.base import ProviderUnavailable
from adapters.resources import Resources
from devstack.embedded import free_port
from services.payment_start import start_payment_processing
from tests.support.factories import make_order, make_payment
from tests.support.payment_flow import PaymentFlow
from tests.support.private_stack import env_with, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.worker import start_worker


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def tickets_for(res, payment_id: int) -> int:
    """How many payments the sandbox holds for this merchant payment id (its own table)."""
    with res.uow() as uow:
        return uow.session.execute(
            text("SELECT count(*) FROM sandbox_payments WHERE merchant_payment_id = :id"),
            {"id": payment_id}).scalar_one()


def dead_provider_settings(settings):
    """The same servers, but the provider (the sandbox at PUBLIC_BASE_URL) on a closed port."""
    return dataclasses.replace(settings, public_base_url=f"http://127.0.0.1:{free_port()}")


def test_a_start_delivered_twice_makes_one_provider_payment_and_one_payment_started(flow):
    payment = flow.payment(flow.order()["id"])
    # The API's own message plus two copies, as a redelivering broker might send them.
    assert flow.admin.post(f"/api/v1/payments/{payment['id']}/pay").status_code == 202
    assert flow.res.queue.send("payments.initiate", payment["id"])
    assert flow.res.queue.send("payments.initiate", payment["id"])
    pay_url = wait_until(lambda: flow.get(payment["id"])["pay_url"], timeout=30,
                         message="pay_url")
    flow.settle()

    assert tickets_for(flow.res, payment["id"]) == 1
    started = flow.get(payment["id"])
    assert started["status"] == "processing"
    assert [e for e, _ in flow.events(payment["id"])] == [
        "payment_created", "payment_start_requested", "payment_started"]
    assert started["logs"][2]["detail"]["provider_reference"] == flow.ticket(pay_url)
    assert start_payment_processing(flow.res, payment["id"]) == "nothing to do"
    assert flow.at_provider(pay_url)["merchant_payment_id"] == payment["id"]
    # Its merchant reference was fixed before the provider heard of it (DESIGN.md §6b).
    assert payment["out_trade_no"] is None
    assert started["out_trade_no"] == f"P{payment['id']:010d}"


def test_the_merchant_reference_carries_the_prefix_and_never_changes(flow):
    payment = flow.payment(flow.order()["id"])
    prefixed = Resources(dataclasses.replace(flow.res.settings, out_trade_no_prefix="shopA_"))
    try:
        assert start_payment_processing(prefixed, payment["id"]) == "started"
        assert flow.get(payment["id"])["out_trade_no"] == f"shopA_P{payment['id']:010d}"
    finally:
        prefixed.close()


def test_the_same_start_run_side_by_side_still_starts_once(flow):
    """Two starts that both reach the provider before either records its answer."""
    payment = flow.payment(flow.order()["id"])
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: start_payment_processing(flow.res, payment["id"]),
                                 range(4)))
    assert outcomes.count("started") == 1, outcomes
    assert set(outcomes) <= {"started", "already started", "nothing to do"}
    assert tickets_for(flow.res, payment["id"]) == 1
    assert [e for e, _ in flow.events(payment["id"])] == ["payment_created", "payment_started"]


def test_provider_down_raises_for_a_retry_and_leaves_the_payment_startable(flow, settings):
    payment = flow.payment(flow.order()["id"])
    down = Resources(dead_provider_settings(settings))
    try:
        with pytest.raises(ProviderUnavailable):
            start_payment_processing(down, payment["id"])
    finally:
        down.close()
    assert flow.get(payment["id"])["status"] == "init"
    assert [e for e, _ in flow.events(payment["id"])] == ["payment_created"]

    # The provider is back: the next attempt starts it as if nothing happened.
    assert start_payment_processing(flow.res, payment["id"]) == "started"
    assert flow.get(payment["id"])["pay_url"]


@pytest.mark.slow
def test_a_real_worker_retries_a_start_while_the_provider_is_down(
        clean_db, settings, stack_env, private_redis, tmp_path):
    """Its own broker and worker, whose PUBLIC_BASE_URL (so its provider) is a closed port."""
    private = settings_with(dead_provider_settings(settings), redis_url=private_redis.url)
    payment_id = make_payment(clean_db, make_order(clean_db))
    log_path = tmp_path / "worker.log"
    env = {**env_with(stack_env, private), "PUBLIC_BASE_URL": private.public_base_url}
    worker = start_worker(env, log_path, concurrency=1, queues="payments")
    sender = Resources(private)
    try:
        assert sender.queue.send("payments.initiate", payment_id)
        retries = re.compile(r"payments\.initiate\[[^\]]+\] retry: Retry in")
        wait_until(lambda: len(retries.findall(log_path.read_text())) >= 3, timeout=60,
                   message="three retries of payments.initiate")
    finally:
        stop_process_group(worker)
        sender.close()
    log = log_path.read_text()
    assert "ProviderUnavailable" in log
    with clean_db.uow() as uow:
        status = uow.session.execute(
            text("SELECT status FROM payments WHERE id = :id"), {"id": payment_id}).scalar_one()
        events = uow.session.execute(
            text("SELECT event FROM payment_events WHERE payment_id = :id"),
            {"id": payment_id}).scalars().all()
    assert status == "init" and events == []  # retried, never failed


def test_a_provider_that_refuses_the_payment_fails_it_with_the_reason(flow):
    payment = flow.payment(flow.order()["id"])
    # The sandbox already has this merchant payment id with other terms: a permanent 409.
    taken = flow.merchant.post("/sandbox/api/payments", json={
        "merchant_payment_id": payment["id"], "amount": "1.00", "currency": "CNY",
        "method": "wechat"})
    assert taken.status_code == 201, taken.text

    assert start_payment_processing(flow.res, payment["id"]) == "failed"

    failed = flow.get(payment["id"])
    assert (failed["status"], failed["pay_url"]) == ("failed", None)
    event = failed["logs"][-1]
    assert (event["event"], event["actor"]) == ("payment_failed", "worker")
    assert event["detail"]["provider_code"] == "merchant_payment_id_reused"
    assert "provider refused the payment" in event["detail"]["reason"]


# --- cancel -----------------------------------------------------------------------------

def test_cancelling_a_processing_payment_closes_it_at_the_provider(flow):
    payment = flow.payment(flow.order()["id"])
    pay_url = flow.pay(payment["id"])

    answer = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel",
                             json={"reason": "changed my mind"})

    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
    assert answer.json()["logs"][-1]["detail"]["closed_at_provider"] is True
    assert flow.at_provider(pay_url)["status"] == "closed"
    late = flow.customer.http.post(f"{pay_url}/approve", allow_redirects=False, timeout=30)
    assert late.status_code == 409  # the pay page no longer takes money
    again = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")
    assert [e for e, _ in flow.events(payment["id"])].count("payment_cancelled") == 1
    flow.settle(pay_url)


def test_cancelling_a_payment_already_paid_at_the_provider_is_409_and_the_money_lands(flow):
    order = flow.order()
    payment = flow.payment(order["id"])
    pay_url = flow.pay(payment["id"])
    flow.test_options(pay_url, out_of_order=True)  # the success callback is held back
    flow.press(pay_url, "approve")

    answer = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel")

    assert (answer.status_code, answer.json()["code"]) == (409, "payment_already_paid")
    assert flow.get(payment["id"])["status"] == "processing"
    flow.test_options(pay_url, out_of_order=False)  # the callback arrives after all
    flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
    assert flow.get_order(order["id"])["status"] == "paid"
    assert "payment_cancelled" not in [e for e, _ in flow.events(payment["id"])]


def test_cancelling_an_init_payment_asks_no_provider(flow):
    payment = flow.payment(flow.order()["id"])
    answer = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel")
    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
    assert tickets_for(flow.res, payment["id"]) == 0
