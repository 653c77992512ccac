"""A worker holding a payment's Redis lock is paused (SIGSTOP) past the lock's TTL while
another worker applies the same payment (issue #18; DESIGN.md §6, STYLE.md: the lock is
an optimisation, the compare-and-set is the guarantee).

Worker A takes `payment-lock:<id>` for callback 1 and is stopped (SIGSTOP on its pool
process) inside the lock: the test holds callback 1's inbox row lock, so A is caught at
its first statement under the Redis lock and frozen there. The lock's TTL then runs out
(the test expires the key rather than wait the 30 s of LOCK_TTL_SECONDS: Redis drops it
exactly as a lapsed TTL would). Worker B applies callback 2, the same capture under
another event id: it takes the lock and the payment succeeds. A resumes (SIGCONT) and
goes on as if it still held the lock: the settlement re-reads the payment under its row
lock and the compare-and-set refuses a second success. One transition, one audit row, one
order change; A's release finds the lock no longer its own.
"""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import text

from adapters.locks import payment_lock_name
from tests.support.callbacks import event_body, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.pool_kills import pool_processes
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow


def _scalar(res, sql: str, **params):
    with res.uow() as uow:
        return uow.session.execute(text(sql), params).scalar_one()


def test_a_paused_lock_holder_resuming_after_its_ttl_is_refused_by_the_compare_and_set(
        clean_db, settings, stack_env, private_redis, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url)
    env = env_with(stack_env, private)
    res = clean_db
    order_id = make_order(res)
    payment_id = make_payment(res, order_id, status="processing")
    first = store_callback(res, event_body(payment_id, event_id=f"evt_{payment_id}_a",
                                           transaction_id=f"txn_{payment_id}"))
    second = store_callback(res, event_body(payment_id, event_id=f"evt_{payment_id}_b",
                                            transaction_id=f"txn_{payment_id}"))
    redis = private_redis.client()
    lock_key = payment_lock_name(payment_id)
    a_log, b_log = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    worker_a = start_worker(env, a_log, concurrency=1, queues="callbacks")
    worker_b = None
    paused: list[int] = []
    blocker = res.db.engine.connect()
    try:
        # Hold callback 1's inbox row: A will wait on it with the payment's lock held.
        tx = blocker.begin()
        blocker.execute(text("SELECT id FROM provider_callbacks WHERE id = :id FOR UPDATE"),
                        {"id": first})
        with serve_app(private) as (_, app_res):
            app_res.queue.send("callbacks.process", first)
            wait_until(lambda: redis.exists(lock_key) and _scalar(
                res, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND query LIKE 'UPDATE provider_callbacks%'") == 1,
                timeout=30, message="worker A inside the payment lock, at the inbox row")
            (child,) = pool_processes(worker_a.pid)
            os.kill(child.pid, signal.SIGSTOP)
            paused.append(child.pid)
            tx.rollback()  # A's statement gets its row now, but A itself is frozen
            redis.pexpire(lock_key, 1)  # the TTL runs out while A is paused
            wait_until(lambda: not redis.exists(lock_key), timeout=5,
                       message="the lock expired")

            worker_b = start_worker(env, b_log, concurrency=1, queues="callbacks")
            app_res.queue.send("callbacks.process", second)
            wait_until(lambda: _scalar(res, "SELECT status FROM provider_callbacks "
                                            "WHERE id = :id", id=second) == "processed",
                       timeout=30, message="worker B applying callback 2")
            assert _scalar(res, "SELECT status FROM payments WHERE id = :id",
                           id=payment_id) == "succeeded"

            os.kill(paused.pop(), signal.SIGCONT)  # A carries on, its lock long gone
            wait_until(lambda: _scalar(res, "SELECT status FROM provider_callbacks "
                                            "WHERE id = :id", id=first) != "received",
                       timeout=30, message="worker A finishing callback 1")
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        blocker.close()
        redis.close()
        kill_worker_at_teardown(worker_a)
        if worker_b is not None:
            kill_worker_at_teardown(worker_b)

    with res.uow() as uow:
        statuses = dict(uow.session.execute(text(
            "SELECT id, status FROM provider_callbacks WHERE payment_id = :p"),
            {"p": payment_id}).all())
    assert statuses == {first: "processed", second: "processed"}
    assert _scalar(res, "SELECT count(*) FROM payment_events WHERE payment_id = :p "
                        "AND event = 'payment_succeeded'", p=payment_id) == 1
    assert _scalar(res, "SELECT count(*) FROM order_status_history WHERE order_id = :o "
                        "AND to_status = 'paid'", o=order_id) == 1
    assert _scalar(res, "SELECT status FROM payments WHERE id = :id",
                   id=payment_id) == "succeeded"
    # A applied nothing: the success was B's; A's release found the lock not its own.
    assert f"callback {first} (" in a_log.read_text(errors="replace")
    assert "payment already succeeded" in a_log.read_text(errors="replace")
    assert f"callback {second} (" in b_log.read_text(errors="replace")
    assert f"lock payment-lock:{payment_id} expired before its holder finished" in \
        a_log.read_text(errors="replace")
