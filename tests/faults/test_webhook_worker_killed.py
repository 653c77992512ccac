"""SIGKILL of the webhooks worker in the middle of a burst of 200 deliveries (§9).

The whole worker (master and pool) dies: the messages it held stay unacknowledged in
Redis until the broker's visibility timeout (15 min), or on RabbitMQ are requeued when its
connection drops, and attempts it had claimed are half done. The redelivery sweep (run
here as beat would, every few seconds) finds the overdue pending deliveries and sends
them to a fresh worker. Counted at the receiver: every event arrives at least once, none
is lost.

Its own Redis (so its own broker): the killed worker's unacknowledged messages stay
there, not in the session's broker where later tests would meet them. Run twice, as the
other worker-kill tests: on that Redis as the broker, and on RabbitMQ (a vhost of the run,
purged before the test), the locks in the private Redis both times.
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from adapters.resources import Resources
from domain.webhook_models import Event, WebhookDelivery
from domain.webhooks import public_event_id
from services.expiry import expire_due_payments
from services.webhooks.delivery import redeliver_lost
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import env_with, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.webhooks import delivery_statuses, receiver, register, start_webhooks_worker  # noqa: F401
from tests.support.worker import kill_worker_at_teardown

pytestmark = pytest.mark.slow

BURST = 200


def test_sigkill_mid_burst_loses_no_delivery(api, admin_key, clean_db, settings, stack_env,
                                             private_redis, private_broker, tmp_path,
                                             receiver):  # noqa: F811
    res = Resources(settings_with(settings, redis_url=private_redis.url,
                                  broker_url=private_broker))
    env = env_with(stack_env, res.settings)
    try:
        _burst_and_kill(api, admin_key, res, env, tmp_path, receiver)
    finally:
        res.close()


def _burst_and_kill(api, admin_key, res, env, tmp_path, receiver) -> None:  # noqa: F811
    # Each answer takes a little while, so the burst is still going when the kill lands.
    url, token = receiver.hook(hang_seconds=0.05)
    register(api.as_key(admin_key), url, ["payment.expired"])
    past = datetime.now(UTC) - timedelta(hours=1)
    for _ in range(BURST):
        make_payment(res, make_order(res), created_at=past - timedelta(minutes=30),
                     expires_at=past)

    worker = start_webhooks_worker(env, tmp_path / "worker-1.log")
    try:
        # One sweep batch: 200 payment.expired events, 200 deliveries sent after its commit.
        assert expire_due_payments(res).changed == BURST
        wait_until(lambda: len(receiver.calls(token)) >= 40, timeout=60,
                   message="the burst under way")
    finally:
        stop_process_group(worker, signal.SIGKILL)
    at_kill = len(receiver.event_ids(token))
    assert at_kill < BURST, "the burst was over before the kill: nothing was tested"
    assert delivery_statuses(res).get("pending", 0) > 0

    worker = start_webhooks_worker(env, tmp_path / "worker-2.log")
    try:
        def all_delivered() -> bool:
            redeliver_lost(res, older_than_seconds=2)  # what beat's tick does, sooner
            return delivery_statuses(res) == {"delivered": BURST}

        wait_until(all_delivered, timeout=120, interval=1, message="every delivery made")
    finally:
        kill_worker_at_teardown(worker)

    with res.uow() as uow:
        event_ids = {public_event_id(i) for i in uow.session.scalars(select(Event.id))}
        attempts = list(uow.session.scalars(select(WebhookDelivery.attempts)))
    assert len(event_ids) == BURST
    received = Counter(c.event_id for c in receiver.calls(token) if c.answered == 200)
    assert set(received) == event_ids  # every event at least once: none lost
    doubled = sum(n - 1 for n in received.values())
    print(f"delivered before the kill: {at_kill}; received twice after it: {doubled}; "
          f"most attempts on one delivery: {max(attempts)}")
