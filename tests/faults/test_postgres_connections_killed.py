"""PostgreSQL terminates every connection, several times, during a burst of callbacks
(issue #18; DESIGN.md §6: never a 2xx for a callback that is not stored).

A separate connection runs `pg_terminate_backend` on every other backend of the test's
database, KILL_ROUNDS times in the course of a burst of callbacks that a provider (a few
threads) sends while a real worker applies them. Every connection of the web's pool, the
worker's pool and the test's own dies mid-use. The web answers only 200 or 503 (never a
500, never a hang); the provider retries its 503s as providers do; the worker retries its
failed attempts. In the end every callback the provider got a 200 for is stored, and
every payment is applied exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from sqlalchemy import func, select

from domain.models import OrderStatusHistory, Payment, PaymentEvent, ProviderCallback
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow

PAYMENTS = 150
SENDERS = 6
KILL_ROUNDS = 5
PROVIDER_RETRY_SECONDS = 0.2

TERMINATE_OTHERS = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def _inbox(res) -> dict[str, int]:
    with res.uow() as uow:
        return dict(uow.session.execute(select(ProviderCallback.status, func.count())
                                        .group_by(ProviderCallback.status)).all())


def test_connections_terminated_during_a_burst_mean_503s_retries_and_exactly_once(
        clean_db, settings, stack_env, private_redis, database_url, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url)
    payments = []
    for _ in range(PAYMENTS):
        order_id = make_order(clean_db)
        payments.append(make_payment(clean_db, order_id, status="processing"))
    log = tmp_path / "worker.log"
    worker = start_worker(env_with(stack_env, private), log, concurrency=2,
                          queues="callbacks")
    codes: Counter[int] = Counter()
    codes_lock = threading.Lock()
    answered_200: set[int] = set()
    killed: list[int] = []
    try:
        with serve_app(private) as (url, res):

            def provider(payment_id: int) -> None:
                """Send one event until it gets a 200, waiting a little after each 503."""
                body = event_body(payment_id, event_id=f"evt_{payment_id}",
                                  transaction_id=f"txn_{payment_id}")
                with requests.Session() as http:
                    while True:
                        status = post_callback(url, body, session=http, timeout=20).status_code
                        with codes_lock:
                            codes[status] += 1
                        if status != 503:
                            break
                        time.sleep(PROVIDER_RETRY_SECONDS)
                if status == 200:
                    answered_200.add(payment_id)

            def killer() -> None:
                """KILL_ROUNDS rounds, paced by the burst's progress (round r once r/(R+1)
                of the payments have their 200), so every round falls inside the burst
                however fast the machine is: how many backends each round terminated."""
                with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
                    for round_ in range(1, KILL_ROUNDS + 1):
                        target = round_ * PAYMENTS // (KILL_ROUNDS + 1)
                        wait_until(lambda t=target: len(answered_200) >= t, timeout=120,
                                   interval=0.02, message=f"{target} callbacks answered")
                        killed.append(conn.execute(TERMINATE_OTHERS).fetchone()[0])

            kill_thread = threading.Thread(target=killer, daemon=True)
            kill_thread.start()
            started = time.monotonic()
            with ThreadPoolExecutor(SENDERS) as pool:
                list(pool.map(provider, payments))
            burst_seconds = time.monotonic() - started
            kill_thread.join(timeout=30)

            assert set(codes) <= {200, 503}, codes
            assert answered_200 == set(payments)
            # Every round, in the middle of the burst, found live connections to kill (the
            # web's, the worker's).
            assert len(killed) == KILL_ROUNDS and all(n > 0 for n in killed), killed
            wait_until(lambda: _inbox(res) == {"processed": PAYMENTS}, timeout=120,
                       interval=0.5, message="every stored callback applied")
    finally:
        kill_worker_at_teardown(worker)
    print(f"answers: {dict(codes)} in {burst_seconds:.1f} s; backends terminated per "
          f"round: {killed}")

    with clean_db.uow() as uow:
        s = uow.session
        succeeded = dict(s.execute(select(PaymentEvent.payment_id, func.count())
                                   .where(PaymentEvent.event == "payment_succeeded")
                                   .group_by(PaymentEvent.payment_id)).all())
        statuses = dict(s.execute(select(Payment.status, func.count())
                                  .group_by(Payment.status)).all())
        paid = s.execute(select(func.count()).select_from(OrderStatusHistory)
                         .where(OrderStatusHistory.to_status == "paid")).scalar_one()
        stored = s.execute(select(func.count()).select_from(ProviderCallback)).scalar_one()
    assert stored == PAYMENTS  # each 200 stored once; a retried 503 never stored twice
    assert succeeded == {pid: 1 for pid in payments}
    assert statuses == {"succeeded": PAYMENTS}
    assert paid == PAYMENTS
