"""A stream of callbacks while the worker's pool processes are SIGKILLed (DESIGN.md §6, §8).

acks_late + reject_on_worker_lost put the message of a task that died with its
process back on the queue; the master forks a new pool process; the inbox row
lock, the payment's compare-and-set and the attempt counter make the second run
harmless. At the end every payment is applied exactly once.

Its own Redis and broker and its own worker: nothing else consumes the queue, and the
kills hit only this test's worker. It runs twice: on the Redis broker, and on RabbitMQ
(quorum queues; the message of a killed task is requeued when its channel closes, with no
visibility timeout to wait for), each with the locks in the private Redis.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from domain.models import OrderStatusHistory, Payment, PaymentEvent, ProviderCallback
from tests.support.callbacks import event_body
from tests.support.factories import make_order, make_payment
from tests.support.pool_kills import kill_pool_in_rounds, pool_processes, post_callbacks
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow

PAYMENTS = 1000
SAME_EVENT_AGAIN = 60      # the provider redelivers an event id it already sent
NEW_EVENT_SAME_TXN = 60    # or sends the same capture under a new event id
KILL_ROUNDS = 4


def _count(res, *where) -> int:
    with res.uow() as uow:
        return uow.session.execute(
            select(func.count()).select_from(ProviderCallback).where(*where)).scalar_one()


def test_every_payment_applied_exactly_once_while_pool_processes_are_killed(
        clean_db, settings, stack_env, private_redis, private_broker, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url, broker_url=private_broker)
    payments = []
    for _ in range(PAYMENTS):
        order_id = make_order(clean_db)
        payments.append((order_id, make_payment(clean_db, order_id, status="processing")))
    bodies = [event_body(pid, event_id=f"evt_{pid}", transaction_id=f"txn_{pid}")
              for _, pid in payments]
    bodies += [event_body(pid, event_id=f"evt_{pid}", transaction_id=f"txn_{pid}")
               for _, pid in payments[:SAME_EVENT_AGAIN]]
    bodies += [event_body(pid, event_id=f"evt_{pid}_again", transaction_id=f"txn_{pid}")
               for _, pid in payments[-NEW_EVENT_SAME_TXN:]]
    stored_rows = PAYMENTS + NEW_EVENT_SAME_TXN

    log_path = tmp_path / "worker.log"
    worker = start_worker(env_with(stack_env, private), log_path, concurrency=2,
                          queues="callbacks")
    kills: list[int] = []
    try:
        with serve_app(private) as (url, res):

            def processed() -> int:
                return _count(res, ProviderCallback.status == "processed")

            # The stream is sent in parts, the next part once a round has killed the pool:
            # the workers apply a burst about as fast as it arrives, so one burst sent at
            # once could be all applied before the later rounds, leaving them nothing to
            # interrupt (and no progress to wait for).
            parts = [bodies[i::KILL_ROUNDS + 1] for i in range(KILL_ROUNDS + 1)]
            rounds_done = threading.Semaphore(0)

            def killer() -> None:
                # Kill the whole pool while it works through the backlog: tasks die
                # mid-flight, with locks held and transactions open. Before each round the
                # master must have forked a new pool, and that pool must have done some work.
                kills.extend(kill_pool_in_rounds(worker.pid, KILL_ROUNDS, processed, step=30,
                                                 after_each=rounds_done.release))

            kill_thread = threading.Thread(target=killer, daemon=True)
            kill_thread.start()
            responses = post_callbacks(url, parts[0])
            for part in parts[1:]:
                assert rounds_done.acquire(timeout=130), f"a kill round never came: {kills}"
                responses += post_callbacks(url, part)
            kill_thread.join(timeout=180)

            assert [r.status_code for r in responses] == [200] * len(bodies)
            assert sum(r.json()["duplicate"] for r in responses) == SAME_EVENT_AGAIN
            assert len(kills) == KILL_ROUNDS and all(n >= 1 for n in kills), kills

            # Recovery: no replay by hand, only the retries the task itself schedules.
            wait_until(lambda: _count(res, ProviderCallback.status == "received") == 0,
                       timeout=170, interval=1, message="every stored callback handled")
            wait_until(lambda: len(pool_processes(worker.pid)) == 2, timeout=60,
                       message="the pool whole again")
    finally:
        kill_worker_at_teardown(worker)

    log = log_path.read_text(errors="replace")
    assert "SIGKILL" in log or "WorkerLostError" in log, "no task was killed mid-flight"

    res = clean_db
    with res.uow() as uow:
        s = uow.session
        inbox = dict(s.execute(select(ProviderCallback.status, func.count())
                               .group_by(ProviderCallback.status)).all())
        succeeded = dict(s.execute(
            select(PaymentEvent.payment_id, func.count())
            .where(PaymentEvent.event == "payment_succeeded")
            .group_by(PaymentEvent.payment_id)).all())
        other_events = s.execute(select(func.count()).select_from(PaymentEvent).where(
            PaymentEvent.event != "payment_succeeded")).scalar_one()
        statuses = dict(s.execute(select(Payment.status, func.count())
                                  .group_by(Payment.status)).all())
        paid_rows = dict(s.execute(
            select(OrderStatusHistory.order_id, func.count())
            .where(OrderStatusHistory.to_status == "paid")
            .group_by(OrderStatusHistory.order_id)).all())
        max_attempts = s.execute(select(func.max(ProviderCallback.attempts))).scalar_one()

    assert inbox == {"processed": stored_rows}
    assert statuses == {"succeeded": PAYMENTS}
    assert succeeded == {pid: 1 for _, pid in payments}
    assert other_events == 0
    assert paid_rows == {oid: 1 for oid, _ in payments}
    print(f"kills per round: {kills}; max attempts on one callback: {max_attempts}")
