"""A receiver that never answers in time does not slow down payments (DESIGN.md §9).

Webhooks have their own queue and worker: with both of that worker's slots stuck on a
receiver that sleeps past the 10 s timeout, success callbacks are applied as fast as
without it. Measured: from the callback's 200 to the payment being succeeded in
PostgreSQL, for the same number of callbacks with and without the hanging receiver.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from domain.models import Payment
from services.expiry import expire_due_payments
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until
from tests.support.webhooks import receiver, register, webhooks_worker  # noqa: F401

pytestmark = pytest.mark.slow

CALLBACKS = 10
HANG_SECONDS = 12.0  # past the 10 s timeout: the receiver never answers in time


def _apply_latencies(res, live_url: str) -> list[float]:
    """Seconds from each callback's 200 to its payment being succeeded, one at a time."""
    latencies = []
    for _ in range(CALLBACKS):
        payment_id = make_payment(res, make_order(res), status="processing")
        response = post_callback(live_url, event_body(payment_id))
        assert response.status_code == 200, response.text
        answered = time.monotonic()

        def succeeded(pid: int = payment_id) -> bool:
            with res.uow() as uow:
                return uow.session.scalar(
                    select(Payment.status).where(Payment.id == pid)) == "succeeded"

        wait_until(succeeded, timeout=30, interval=0.01, message=f"payment {payment_id} paid")
        latencies.append(time.monotonic() - answered)
    return latencies


def test_a_hanging_receiver_does_not_delay_callbacks_being_applied(
        api, admin_key, live_url, clean_db, celery_worker, webhooks_worker,  # noqa: F811
        receiver):  # noqa: F811
    res = clean_db
    without = _apply_latencies(res, live_url)

    url, token = receiver.hook(hang_seconds=HANG_SECONDS)
    register(api.as_key(admin_key), url)
    # A backlog for the hanging receiver: more deliveries than the webhooks worker has slots.
    past = datetime.now(UTC) - timedelta(hours=1)
    for _ in range(6):
        make_payment(res, make_order(res), created_at=past - timedelta(minutes=30),
                     expires_at=past)
    assert expire_due_payments(res).changed == 6
    wait_until(lambda: receiver.started(token) >= 2, timeout=30,
               message="the webhooks worker stuck on the hanging receiver")
    hanging_before = receiver.started(token) - len(receiver.calls(token))
    with_hang = _apply_latencies(res, live_url)
    still_hanging = receiver.started(token) - len(receiver.calls(token))

    print(f"apply latency without a hanging receiver: p50 {statistics.median(without):.3f} s, "
          f"max {max(without):.3f} s; with one: p50 {statistics.median(with_hang):.3f} s, "
          f"max {max(with_hang):.3f} s (requests hanging: {hanging_before} before, "
          f"{still_hanging} after)")
    assert hanging_before >= 2  # both webhooks slots were stuck while we measured
    # Sharing a worker with the webhooks, a callback would wait out a 10 s timeout.
    assert max(with_hang) < 3.0
    assert statistics.median(with_hang) < statistics.median(without) + 1.0
