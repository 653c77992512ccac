"""Top-up credits while the worker's pool processes are SIGKILLed (DESIGN.md §8, §10).

A top-up is credited in the settlement transaction of its payment's success callback,
in the worker. Killing the pool mid-flight (acks_late + reject_on_worker_lost redeliver
the task) must neither lose a credit nor make two: counted in PostgreSQL, every top-up
order is paid once and credited once, each wallet holds exactly its top-ups, and the
ledger agrees. Its own Redis and worker, as tests/faults/test_worker_killed.py, and like
it run twice: on the Redis broker and on RabbitMQ (the killed task's message is requeued
when its channel closes), the locks in the private Redis both times.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from domain.models import Order, OrderStatusHistory, ProviderCallback
from domain.wallet_models import WalletEntry
from services.wallet.verification import verify_wallets
from tests.support.callbacks import event_body
from tests.support.factories import make_order, make_payment
from tests.support.pool_kills import kill_pool_in_rounds, post_callbacks
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.wallets import balance
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow

USERS = (81, 82, 83)  # several top-ups per wallet: its row lock is contended
# A backlog the three kill rounds cannot lease all of: each round kills two batches with up
# to 100 rows each (BATCH_SIZE), leased for 30 s (LEASE_SECONDS). With 100 per user the
# first round leased everything left, and the next rounds waited out that lease before
# any progress: two lease waits (~75 s); with 250 the rounds find fresh rows, one (~60 s).
PER_USER = 250
AGAIN = 40  # the same capture sent again under a new event id
KILL_ROUNDS = 3
AMOUNT = "10.00"


def _processed(res) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(ProviderCallback).where(
            ProviderCallback.status == "processed")).scalar_one()


def test_every_topup_is_credited_once_while_pool_processes_are_killed(
        clean_db, settings, stack_env, private_redis, private_broker, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url, broker_url=private_broker)
    payments: list[tuple[int, int, int]] = []  # (user, order, payment)
    for user in USERS:
        for _ in range(PER_USER):
            order_id = make_order(clean_db, user_id=user, total=AMOUNT)
            payments.append((user, order_id, make_payment(
                clean_db, order_id, user_id=user, amount=AMOUNT, status="processing")))
    with clean_db.uow() as uow:
        uow.session.execute(update(Order).values(purpose="wallet_topup"))
        uow.commit()
    bodies = [event_body(pid, event_id=f"evt_{pid}", amount=AMOUNT) for _, _, pid in payments]
    bodies += [event_body(pid, event_id=f"evt_{pid}_again", amount=AMOUNT)
               for _, _, pid in payments[::len(payments) // AGAIN][:AGAIN]]

    log_path = tmp_path / "worker.log"
    worker = start_worker(env_with(stack_env, private), log_path, concurrency=2,
                          queues="callbacks")
    try:
        with serve_app(private) as (url, res):

            kills: list[int] = []

            def killer() -> None:
                kills.extend(kill_pool_in_rounds(worker.pid, KILL_ROUNDS,
                                                 lambda: _processed(res), step=20))

            kill_thread = threading.Thread(target=killer, daemon=True)
            kill_thread.start()
            responses = post_callbacks(url, bodies)
            kill_thread.join(timeout=180)
            assert [r.status_code for r in responses] == [200] * len(bodies)
            assert len(kills) == KILL_ROUNDS, kills
            # The captures sent again are processed as no-ops: already succeeded.
            wait_until(lambda: _processed(res) == len(bodies), timeout=170, interval=1,
                       message="every stored callback handled")
    finally:
        kill_worker_at_teardown(worker)

    log = log_path.read_text(errors="replace")
    assert "SIGKILL" in log or "WorkerLostError" in log, "no task was killed mid-flight"
    with clean_db.uow() as uow:
        s = uow.session
        credits = dict(s.execute(
            select(WalletEntry.payment_id, func.count()).where(WalletEntry.kind == "topup")
            .group_by(WalletEntry.payment_id)).tuples().all())
        paid = dict(s.execute(
            select(OrderStatusHistory.order_id, func.count())
            .where(OrderStatusHistory.to_status == "paid")
            .group_by(OrderStatusHistory.order_id)).tuples().all())
    assert credits == {pid: 1 for _, _, pid in payments}
    assert paid == {oid: 1 for _, oid, _ in payments}
    for user in USERS:
        assert balance(clean_db, user) == Decimal(AMOUNT) * PER_USER
    assert verify_wallets(clean_db).ok
    print(f"\nkills per round: {kills}")

