"""A worker SIGKILLed in the middle of a batch of callbacks (issue #21, B2's guarantees).

One `callbacks.apply_batch` claims every waiting callback and applies them one by one in
savepoints of a single transaction. A trigger makes the UPDATE of one payment in the
middle of the batch sleep, so the test knows the batch is inside that transaction with
the callbacks before it applied (but not committed); then it SIGKILLs the pool process
running it. Nothing of the batch may be visible, every row must still be `received` with
its attempt counted, and, with no sweep and nobody replaying anything, the master's fresh
pool process must apply every callback exactly once when the dead batch's lease ends.

Its own Redis (so its own broker) and its own worker, with one pool process: the process
killed is the one in the batch.
"""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import func, select, text

from domain.models import OrderStatusHistory, Payment, ProviderCallback
from services.callback_batches import LEASE_SECONDS
from services.callback_wakeup import APPLY_BATCH_TASK
from tests.support.callbacks import event_body, event_counts, inbox_statuses, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.pool_kills import pool_processes
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow

PAYMENTS = 60
STALLED = 30          # the batch stalls on this one's UPDATE, the ones before it applied
SLEEP_SECONDS = 8     # below the settlement's 10 s statement timeout

_IN_THE_SLEEP = text("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                     "current_database() AND wait_event = 'PgSleep'")


def _sleeping(res) -> bool:
    with res.db.engine.connect() as probe:
        return probe.execute(_IN_THE_SLEEP).scalar_one() == 1


def _rows(res) -> list[tuple[str, int, bool]]:
    with res.uow() as uow:
        return [(status, attempts, leased) for status, attempts, leased in uow.session.execute(
            select(ProviderCallback.status, ProviderCallback.attempts,
                   ProviderCallback.claimed_until.is_not(None)))]


def test_a_worker_killed_mid_batch_commits_nothing_and_every_callback_applies_once_after(
        clean_db, settings, stack_env, private_redis, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url)
    payments = []
    for _ in range(PAYMENTS):
        order_id = make_order(clean_db)
        payments.append((order_id, make_payment(clean_db, order_id, status="processing")))
    for _, payment_id in payments:  # stored as ingest stores them, not yet woken
        store_callback(clean_db, event_body(payment_id, event_id=f"evt_{payment_id}"))
    stalled = payments[STALLED][1]
    with clean_db.db.engine.begin() as conn:
        conn.execute(text(
            f"CREATE OR REPLACE FUNCTION test_stall_batch() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN PERFORM pg_sleep({SLEEP_SECONDS}); RETURN NEW; END $$"))
        conn.execute(text(
            f"CREATE TRIGGER test_stall_batch BEFORE UPDATE ON payments FOR EACH ROW "
            f"WHEN (OLD.id = {stalled}) EXECUTE FUNCTION test_stall_batch()"))

    log_path = tmp_path / "worker.log"
    worker = start_worker(env_with(stack_env, private), log_path, concurrency=1,
                          queues="callbacks")
    try:
        with serve_app(private) as (_, res):
            [pool] = pool_processes(worker.pid)
            assert res.queue.send(APPLY_BATCH_TASK)  # what ingest's wake-up sends
            wait_until(lambda: _sleeping(res), timeout=60, interval=0.05,
                       message="the batch to reach the stalled payment")
            # Inside the batch: the callbacks before the stalled one are applied in their
            # savepoints, none committed; every row claimed, its attempt counted, leased.
            assert _rows(res) == [("received", 1, True)] * PAYMENTS
            os.kill(pool.pid, signal.SIGKILL)
            with clean_db.db.engine.begin() as conn:  # waits for the dead batch to end
                conn.execute(text("DROP TRIGGER test_stall_batch ON payments"))
                conn.execute(text("DROP FUNCTION test_stall_batch()"))
            assert event_counts(res, "payment_succeeded") == {}  # the batch left nothing

            # Recovery: no sweep, no replay; the master's new pool process runs the
            # redelivered wake-up, which waits for the dead batch's lease to end.
            wait_until(lambda: inbox_statuses(res) == {"processed": PAYMENTS},
                       timeout=LEASE_SECONDS + 60, interval=0.5,
                       message="every callback applied after the lease")
            assert len(pool_processes(worker.pid)) == 1
    finally:
        kill_worker_at_teardown(worker)
        with clean_db.db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_stall_batch ON payments"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_stall_batch()"))

    log = log_path.read_text(errors="replace")
    assert "SIGKILL" in log or "WorkerLostError" in log, "the batch was not killed"
    with clean_db.uow() as uow:
        s = uow.session
        statuses = dict(s.execute(select(Payment.status, func.count())
                                  .group_by(Payment.status)).all())
        paid = dict(s.execute(
            select(OrderStatusHistory.order_id, func.count())
            .where(OrderStatusHistory.to_status == "paid")
            .group_by(OrderStatusHistory.order_id)).all())
        attempts = set(s.execute(select(ProviderCallback.attempts)).scalars())
    assert statuses == {"succeeded": PAYMENTS}
    assert event_counts(clean_db, "payment_succeeded") == {pid: 1 for _, pid in payments}
    assert paid == {oid: 1 for oid, _ in payments}
    assert attempts == {2}  # the killed attempt counted, and the one that applied
