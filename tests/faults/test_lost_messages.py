"""A task message lost because the broker was down for its send (DESIGN.md §7).

The request is accepted by an app whose broker is stopped (Redis) or unreachable
(RabbitMQ): its work is committed, its `refunds.execute` or `payments.initiate` is not
published (counted in payments_enqueue_failures_total) and nothing would ever send it.
The start sweeps (services/resend.py, what beat runs every SWEEP_INTERVAL_SECONDS) send
it again through the session's broker, where a real worker runs it against the sandbox
provider: the refund or the start happens exactly once, and later runs send nothing more.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.maintenance import resend_lost_payment_starts, resend_lost_refunds
from tests.support.live_server import Api
from tests.support.metrics import scrape, value
from tests.support.payment_flow import PaymentFlow
from tests.support.private_stack import serve_app, settings_with
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


# A RabbitMQ broker nobody listens for: the AMQP send path's failure (connection refused,
# within the publish retry policy), without stopping the machine's RabbitMQ.
UNREACHABLE_AMQP = "amqp://guest:guest@127.0.0.1:1//"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_down_app(request, settings, private_redis, admin_key):
    """(an admin client, base URL) of the app whose broker is down for every send: its
    Redis stopped, or (BROKER_URL=amqp://...) a RabbitMQ that does not answer."""
    if request.param == "redis":
        private_redis.stop()
        down = settings_with(settings, redis_url=private_redis.url)
    else:
        down = settings_with(settings, redis_url=private_redis.url, broker_url=UNREACHABLE_AMQP)
    with serve_app(down) as (url, _):
        yield Api(url, admin_key), url


def _count(res, sql: str, **params) -> int:
    with res.uow() as uow:
        return uow.session.execute(text(sql), params).scalar_one()


def _enqueue_failures(url: str, task: str) -> float:
    return value(scrape(url), "payments_enqueue_failures_total", task=task)


def test_a_refund_whose_message_was_lost_is_executed_once_by_the_sweep(
        flow, broker_down_app, clean_db):
    payment, pay_url = flow.paid("50.00")
    flow.settle(pay_url)
    admin, url = broker_down_app
    failures_before = _enqueue_failures(url, "refunds.execute")

    answer = admin.post(f"/api/v1/payments/{payment['id']}/refunds", json={})
    assert answer.status_code == 202, answer.text
    refund_id = answer.json()["id"]
    assert _enqueue_failures(url, "refunds.execute") == failures_before + 1  # visible
    assert flow.refunds(payment["id"])[0]["status"] == "pending"
    # Still quiet for less than the sweep's 10 minutes: not sent yet.
    assert resend_lost_refunds(clean_db)["changed"] == 0

    assert resend_lost_refunds(clean_db, older_than_seconds=0)["changed"] == 1
    flow.wait_refund(payment["id"], refund_id, "succeeded")
    flow.settle(pay_url)
    assert resend_lost_refunds(clean_db, older_than_seconds=0)["changed"] == 0

    assert _count(clean_db, "SELECT count(*) FROM sandbox_refunds "
                            "WHERE merchant_refund_id = :id", id=str(refund_id)) == 1
    assert [e for e, _ in flow.events(payment["id"])].count("refund_succeeded") == 1
    assert flow.get(payment["id"])["status"] == "refunded"


def test_a_payment_start_whose_message_was_lost_is_started_once_by_the_sweep(
        flow, broker_down_app, clean_db):
    payment = flow.payment(flow.order()["id"])
    admin, url = broker_down_app
    failures_before = _enqueue_failures(url, "payments.initiate")

    answer = admin.post(f"/api/v1/payments/{payment['id']}/pay")
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["pay_url"]) == ("processing", None)
    assert _enqueue_failures(url, "payments.initiate") == failures_before + 1
    # Quiet for less than the sweep's 3 minutes: not sent yet.
    assert resend_lost_payment_starts(clean_db)["changed"] == 0
    assert _count(clean_db, "SELECT count(*) FROM sandbox_payments "
                            "WHERE merchant_payment_id = :id", id=payment["id"]) == 0

    assert resend_lost_payment_starts(clean_db, older_than_seconds=0)["changed"] == 1
    pay_url = wait_until(lambda: flow.get(payment["id"])["pay_url"], timeout=30,
                         message="the provider payment the sweep's start made")
    flow.settle()
    assert resend_lost_payment_starts(clean_db, older_than_seconds=0)["changed"] == 0

    assert _count(clean_db, "SELECT count(*) FROM sandbox_payments "
                            "WHERE merchant_payment_id = :id", id=payment["id"]) == 1
    assert [e for e, _ in flow.events(payment["id"])] == [
        "payment_created", "payment_start_requested", "payment_started"]
    flow.press(pay_url, "approve")  # and the customer can pay it
    flow.wait_status(payment["id"], "succeeded")
    flow.settle(pay_url)
