"""Redis loses all its data (restarted without persistence) while work is queued (issue #18).

With the worker stopped, every kind of work is queued on the test's own Redis:
- provider callbacks stored in the inbox (`callbacks.process`);
- a refund just requested (`refunds.execute`);
- a `pay` just accepted, 202 (`payments.initiate`);
- a customer's Approve on the sandbox's pay page (the sandbox's own `sandbox.deliver_callback`);
- a payment cancelled through the API, whose merchant webhook is due (`webhooks.deliver`);
- and, from before, a refund the provider accepted whose confirming callback is held back
  (the sandbox's delay_seconds), so only asking the provider finishes it.
Redis is then killed and started again empty: every message is gone. A worker starts, and
the sweeps run as beat runs them (here every 2 s with a 0 s age instead of every minute,
so the test need not wait): everything completes by itself, and PostgreSQL shows each
payment applied once, each refund done once at the provider and here, each webhook event
delivered.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import text

from domain.webhooks import public_event_id
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.fault_stack import fault_stack
from tests.support.live_server import Api
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import stop_process_group, wait_until
from tests.support.webhook_receiver import webhook_receiver
from tests.support.webhooks import FAST_SCHEDULE, register
from tests.support.worker import kill_worker_at_teardown

pytestmark = pytest.mark.slow

CALLBACKS = 10
# What beat sends every SWEEP_INTERVAL_SECONDS (and every 5 min for check_refunds), each
# with a 0 s age: the sweeps that repair lost messages.
SWEEPS = ("maintenance.redeliver_callbacks", "maintenance.resend_refunds",
          "maintenance.resend_payment_starts", "maintenance.check_refunds",
          "maintenance.redeliver_webhooks", "standins.resume_deliveries")


def _count(res, sql: str, **params) -> int:
    with res.uow() as uow:
        return int(uow.session.execute(text(sql), params).scalar_one())


def _events(res, event: str) -> dict[int, int]:
    with res.uow() as uow:
        rows = uow.session.execute(text(
            "SELECT payment_id, count(*) FROM payment_events WHERE event = :e "
            "GROUP BY payment_id"), {"e": event}).all()
    return {int(pid): int(n) for pid, n in rows}


def test_everything_queued_completes_exactly_once_after_redis_loses_its_data(
        clean_db, settings, stack_env, private_redis, admin_key, tmp_path):
    with webhook_receiver() as receiver, fault_stack(
            settings, stack_env, private_redis.url,
            WEBHOOK_RETRY_SCHEDULE_SECONDS=FAST_SCHEDULE) as stack:
        res = stack.res
        flow = PaymentFlow(Api(stack.url), admin_key, settings.sandbox_api_key, res)
        admin = flow.admin
        hook_url, hook_token = receiver.hook()
        endpoint = register(admin, hook_url)
        log = tmp_path / "worker.log"
        worker = stack.start_worker(log)
        try:
            # --- before: payments that need a worker to get where the test wants them ---
            paid, paid_url = flow.paid("80.00")  # its refund is requested in the outage
            held, held_url = flow.paid("60.00")  # its refund is accepted, confirmation held
            flow.test_options(held_url, delay_seconds=3600)
            held_refund = admin.post(f"/api/v1/payments/{held['id']}/refunds", json={})
            assert held_refund.status_code == 202, held_refund.text
            held_refund_id = held_refund.json()["id"]
            wait_until(lambda: flow.refunds(held["id"])[0]["status"] == "processing",
                       timeout=30, message="the provider accepting the held refund")
            to_approve = flow.payment(flow.order("70.00")["id"])
            approve_url = flow.pay(to_approve["id"])
            to_cancel = flow.payment(flow.order("50.00")["id"])
            # Not flow.settle(): the held confirmation keeps a delayed task unacked.
            wait_until(lambda: receiver.event_ids(hook_token) and _count(
                res, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'")
                == 0 and _count(res, "SELECT count(*) FROM provider_callbacks "
                                     "WHERE status = 'received'") == 0,
                timeout=30, message="the callbacks and webhooks so far handled")
        finally:
            stop_process_group(worker, signal.SIGTERM)  # warm: its tasks finish first

        # --- the work queued while no worker runs ---
        callback_payments = []
        for _ in range(CALLBACKS):
            order_id = make_order(res)
            callback_payments.append(make_payment(res, order_id, status="processing"))
        for payment_id in callback_payments:
            answer = post_callback(stack.url, event_body(payment_id))
            assert answer.status_code == 200, answer.text
        refund = admin.post(f"/api/v1/payments/{paid['id']}/refunds", json={})
        assert refund.status_code == 202 and refund.json()["status"] == "pending"
        refund_id = refund.json()["id"]
        to_pay = flow.payment(flow.order("40.00")["id"])
        accepted = admin.post(f"/api/v1/payments/{to_pay['id']}/pay")
        assert accepted.status_code == 202 and accepted.json()["pay_url"] is None
        flow.press(approve_url, "approve")
        cancelled = admin.post(f"/api/v1/payments/{to_cancel['id']}/cancel", json={})
        assert cancelled.status_code == 200, cancelled.text

        queued = {q: [m["task"] for m in private_redis.queued(q)]
                  for q in ("callbacks", "payments", "webhooks")}
        assert queued["callbacks"], queued  # however the callbacks' work is queued
        assert {"refunds.execute", "payments.initiate",
                "sandbox.deliver_callback"} <= set(queued["payments"]), queued
        assert "webhooks.deliver" in queued["webhooks"], queued

        # --- Redis loses everything ---
        private_redis.stop(signal.SIGKILL)
        private_redis.start()
        assert private_redis.client().dbsize() == 0

        worker = stack.start_worker(log)
        try:
            def state() -> dict[str, object]:
                return {
                    "callbacks waiting": _count(res, "SELECT count(*) FROM provider_callbacks"
                                                     " WHERE status = 'received'"),
                    "refunds": {r["id"]: r["status"] for p in (paid, held)
                                for r in flow.refunds(p["id"])},
                    "started": flow.get(to_pay["id"])["pay_url"] is not None,
                    "approved": flow.get(to_approve["id"])["status"],
                    "webhooks waiting": _count(res, "SELECT count(*) FROM webhook_deliveries"
                                                    " WHERE status <> 'delivered'")}

            def done() -> bool:
                return state() == {
                    "callbacks waiting": 0,
                    "refunds": {refund_id: "succeeded", held_refund_id: "succeeded"},
                    "started": True, "approved": "succeeded", "webhooks waiting": 0}

            def beat_tick_then_check() -> bool:
                assert worker.poll() is None, "the worker died"
                for task in SWEEPS:
                    res.queue.send(task, 0)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    if done():
                        return True
                    time.sleep(0.2)
                return False

            try:
                wait_until(beat_tick_then_check, timeout=90, interval=0,
                           message="every kind of lost work completed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()}") from None
            # Webhooks of the repairs themselves (payment.succeeded of each callback, ...)
            wait_until(lambda: _count(res, "SELECT count(*) FROM webhook_deliveries "
                                           "WHERE status <> 'delivered'") == 0,
                       timeout=30, message="every webhook delivered")
        finally:
            kill_worker_at_teardown(worker)

        # --- exactly once, by PostgreSQL's count ---
        every_paid = [*callback_payments, paid["id"], held["id"], to_approve["id"]]
        assert _events(res, "payment_succeeded") == {pid: 1 for pid in every_paid}
        assert _count(res, "SELECT count(*) FROM provider_callbacks "
                           "WHERE status <> 'processed'") == 0
        assert _events(res, "refund_succeeded") == {paid["id"]: 1, held["id"]: 1}
        for rid in (refund_id, held_refund_id):
            assert _count(res, "SELECT count(*) FROM sandbox_refunds "
                               "WHERE merchant_refund_id = :id", id=rid) == 1
        assert {p: flow.get(p)["status"] for p in (paid["id"], held["id"])} == {
            paid["id"]: "refunded", held["id"]: "refunded"}
        assert _count(res, "SELECT count(*) FROM sandbox_payments "
                           "WHERE merchant_payment_id = :id", id=to_pay["id"]) == 1
        assert _events(res, "payment_started").get(to_pay["id"]) == 1
        assert flow.get(to_cancel["id"])["status"] == "cancelled"
        # Each event for the endpoint has one delivery, delivered, and reached the receiver.
        with res.uow() as uow:
            event_ids = {public_event_id(e) for e in uow.session.execute(text(
                "SELECT event_id FROM webhook_deliveries WHERE endpoint_id = :ep"),
                {"ep": endpoint["id"]}).scalars()}
            per_event = uow.session.execute(text(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM webhook_deliveries "
                "GROUP BY event_id, endpoint_id) AS c")).scalar_one()
        assert per_event == 1
        assert receiver.event_ids(hook_token) == event_ids
        cancelled_events = [d for d in receiver.calls(hook_token)
                            if b'"payment.cancelled"' in d.body]
        assert cancelled_events, "the webhook queued before the loss never arrived"
