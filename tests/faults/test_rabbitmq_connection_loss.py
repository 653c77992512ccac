"""RabbitMQ drops every connection while callbacks stream in (issue #18).

`rabbitmqctl close_all_connections` on the test's vhost is what a broker restart, a
failover to another node or a network cut looks like to clients: the web's publishing
connection and the worker's consuming one are closed under them, with tasks in flight.
Every callback is still answered 200 (it is stored before the answer); a message the
worker had not acknowledged is requeued by RabbitMQ when its channel closes; a publish that
failed is counted and its callback sent again by the redelivery sweep (what beat runs).
At the end every payment is applied exactly once, by a worker that reconnected by itself.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select

from domain.models import OrderStatusHistory, PaymentEvent, ProviderCallback
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("rabbitmqctl"),
                                 reason="needs rabbitmqctl to close the broker's connections")]

PAYMENTS = 80
CLOSE_AFTER = 15  # processed callbacks before the broker drops everyone


def _statuses(res) -> dict[str, int]:
    with res.uow() as uow:
        return dict(uow.session.execute(select(ProviderCallback.status, func.count())
                                        .group_by(ProviderCallback.status)).all())


def _close_connections(vhost: str) -> None:
    done = subprocess.run(["rabbitmqctl", "close_all_connections", "-p", vhost,
                           "test: broker failover"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_every_callback_applied_once_across_a_broker_connection_loss(
        clean_db, settings, stack_env, private_redis, rabbitmq_url, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url, broker_url=rabbitmq_url)
    vhost = unquote(rabbitmq_url.rsplit("/", 1)[1]) or "/"
    payments = [make_payment(clean_db, make_order(clean_db), status="processing")
                for _ in range(PAYMENTS)]
    worker_env, log_path = env_with(stack_env, private), tmp_path / "worker.log"
    worker = start_worker(worker_env, log_path, queues="callbacks,maintenance")
    restarts = 0
    try:
        with serve_app(private) as (url, res):
            answers: list[int] = []

            def stream() -> None:
                for payment_id in payments:
                    answers.append(post_callback(url, event_body(payment_id)).status_code)
                    time.sleep(0.02)  # a stream, so the drop lands in its middle

            sender = threading.Thread(target=stream, daemon=True)
            sender.start()
            wait_until(lambda: _statuses(res).get("processed", 0) >= CLOSE_AFTER,
                       timeout=60, message=f"{CLOSE_AFTER} callbacks applied")
            _close_connections(vhost)
            sender.join(timeout=120)
            assert answers == [200] * PAYMENTS

            def beat_tick_then_check() -> bool:
                nonlocal worker, restarts
                if worker.poll() is not None:  # what the supervisor would do
                    restarts += 1
                    worker = start_worker(worker_env, log_path, queues="callbacks,maintenance")
                res.queue.send("maintenance.redeliver_callbacks", 0)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    if _statuses(res) == {"processed": PAYMENTS}:
                        return True
                    time.sleep(0.2)
                return False

            wait_until(beat_tick_then_check, timeout=120, interval=0,
                       message="every stored callback applied")
    finally:
        kill_worker_at_teardown(worker)

    log = log_path.read_text(errors="replace")
    assert "Connection to broker lost" in log or "ConnectionForced" in log or \
        "CONNECTION_FORCED" in log, "the worker never saw its connection closed"
    # A worker consuming some queues binds all of them for delayed delivery, at start and
    # at each reconnect: it must find every exchange declared (workers/broker_setup.py).
    assert "Failed to bind queue" not in log, log[-3000:]
    with clean_db.uow() as uow:
        s = uow.session
        succeeded = dict(s.execute(select(PaymentEvent.payment_id, func.count())
                                   .where(PaymentEvent.event == "payment_succeeded")
                                   .group_by(PaymentEvent.payment_id)).all())
        paid = s.execute(select(func.count()).select_from(OrderStatusHistory)
                         .where(OrderStatusHistory.to_status == "paid")).scalar_one()
    assert succeeded == {pid: 1 for pid in payments}
    assert paid == PAYMENTS
    print(f"worker restarts after the connection loss: {restarts}")
