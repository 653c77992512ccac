"""A web process SIGKILLed in the middle of balance payments (DESIGN.md §10): each payment
is all of it or none of it, never half, and the wallet still equals its ledger.

A balance payment runs in the web request, so the process to kill is a gunicorn worker
(real gunicorn, started the way every caller starts it). First a kill at a chosen
point: the test holds a table lock that stops the payment's transaction after the
debit, the entry and "payment succeeded" were written but before the order's history
row and the commit; the worker is killed right there. Then a storm: pays from several
threads while workers are killed as payments get through; every client retries until
it hears an answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import func, select, text

from devstack.embedded import free_port, wait_for_port
from devstack.scratch_servers import GUNICORN, GUNICORN_CONFIG
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from domain.wallet_models import WalletEntry
from services.api_keys import create_api_key
from services.wallet.verification import verify_wallets
from tests.support.live_server import Api
from tests.support.processes import stop_process_group, wait_until
from tests.support.wallets import balance, balance_order, credit, entries

pytestmark = pytest.mark.slow

USER = 61
D = Decimal
STORM_PAYMENTS = 40
KILLS = 3
# A worker killed before its answer (ConnectionError) or while writing it: requests reads
# the body after the headers, so a kill between the two is a ChunkedEncodingError.
LOST_ANSWER = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


@contextmanager
def gunicorn(env: dict[str, str], log: Path, workers: int) -> Iterator[tuple[str, int]]:
    """gunicorn as devstack starts it, but keeping the master's pid: (url, master pid)."""
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [GUNICORN, "-c", GUNICORN_CONFIG, "web.wsgi:app", "--bind", f"127.0.0.1:{port}"],
            env={**env, "WEB_WORKERS": str(workers), "WEB_THREADS": "4"}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        wait_until(lambda: len(web_workers(proc.pid)) == workers, timeout=30,
                   message="gunicorn workers up")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop_process_group(proc)


def web_workers(master_pid: int) -> list[psutil.Process]:
    return psutil.Process(master_pid).children()


def kill(process: psutil.Process) -> None:
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def state_of(res, payment_id: int) -> dict[str, object]:
    """Everything a balance payment writes, counted."""
    with res.uow() as uow:
        s = uow.session
        status, order_id = s.execute(select(Payment.status, Payment.order_id)
                                     .where(Payment.id == payment_id)).one()
        return {
            "payment": status,
            "order": s.execute(select(Order.status).where(Order.id == order_id)).scalar_one(),
            "debits": s.execute(select(func.count()).select_from(WalletEntry)
                                .where(WalletEntry.payment_id == payment_id)).scalar_one(),
            "succeeded_events": s.execute(
                select(func.count()).select_from(PaymentEvent)
                .where(PaymentEvent.payment_id == payment_id,
                       PaymentEvent.event == "payment_succeeded")).scalar_one(),
            "paid_history": s.execute(
                select(func.count()).select_from(OrderStatusHistory)
                .where(OrderStatusHistory.order_id == order_id,
                       OrderStatusHistory.to_status == "paid")).scalar_one(),
        }


NONE_OF_IT = {"payment": "init", "order": "pending", "debits": 0, "succeeded_events": 0,
              "paid_history": 0}
ALL_OF_IT = {"payment": "succeeded", "order": "paid", "debits": 1, "succeeded_events": 1,
             "paid_history": 1}


def backend_waiting_on_history(res) -> int | None:
    """The pid of a PostgreSQL backend blocked inserting an order history row (the order's
    move and its history row are one statement, services/transitions.py)."""
    with res.db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%INSERT INTO order_status_history%'")).scalar()


def tables_written_by(res, pid: int) -> set[str]:
    """Tables on which that backend's open transaction holds a write lock."""
    with res.db.engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT relation::regclass::text FROM pg_locks WHERE pid = :p "
            "AND mode = 'RowExclusiveLock' AND granted"), {"p": pid}).scalars())


def backend_gone(res, pid: int) -> bool:
    with res.db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                            {"p": pid}).scalar_one() == 0


def test_a_web_process_killed_after_the_debit_leaves_none_of_the_payment(
        clean_db, stack_env, tmp_path, admin_key):
    res = clean_db
    user_key = create_api_key(res.uow(), "user", user_id=USER)
    with gunicorn(stack_env, tmp_path / "web.log", workers=1) as (url, master):
        admin, owner = Api(url, admin_key), Api(url, user_key)
        credit(admin, USER, "100.00")
        _, payment = balance_order(admin, USER, "40.00")
        [victim] = web_workers(master)
        answer: list[object] = []

        def pay() -> None:
            try:
                answer.append(owner.post(f"/api/v1/payments/{payment['id']}/pay").status_code)
            except LOST_ANSWER as exc:
                answer.append(exc)

        with res.db.engine.connect() as blocker:
            # Held until after the kill: the payment's transaction stops at its history row,
            # its debit, entry and payment_succeeded already written (not committed).
            blocker.execute(text("LOCK TABLE order_status_history IN SHARE MODE"))
            thread = threading.Thread(target=pay)
            thread.start()
            backend = wait_until(lambda: backend_waiting_on_history(res), timeout=30,
                                 message="the payment to reach its history row")
            # Its transaction has written the debit already (it holds the ledger's lock).
            assert tables_written_by(res, backend) >= {"wallets", "wallet_entries",
                                                        "payments", "payment_events"}
            kill(victim)
            thread.join(30)
            blocker.rollback()
        wait_until(lambda: backend_gone(res, backend), timeout=30,
                   message="the killed request's transaction to end")

        assert isinstance(answer[0], LOST_ANSWER), answer  # no answer came
        assert state_of(res, payment["id"]) == NONE_OF_IT
        assert entries(res, USER) == [("credit", D("100.00"), D("100.00"))]

        # The master has forked a new worker; paying again does all of it, once.
        wait_until(lambda: len(web_workers(master)) == 1, timeout=30,
                   message="gunicorn to replace its worker")
        again = owner.post(f"/api/v1/payments/{payment['id']}/pay")
        assert again.status_code == 200, again.text
        assert state_of(res, payment["id"]) == ALL_OF_IT
        assert balance(res, USER) == D("60.00")
        assert verify_wallets(res).ok


def test_killing_web_processes_during_a_stream_of_pays_halves_no_payment(
        clean_db, stack_env, tmp_path, admin_key):
    res = clean_db
    user_key = create_api_key(res.uow(), "user", user_id=USER)
    with gunicorn(stack_env, tmp_path / "web.log", workers=2) as (url, master):
        admin = Api(url, admin_key)
        credit(admin, USER, "1000.00")
        payments = [balance_order(admin, USER, "10.00")[1]["id"]
                    for _ in range(STORM_PAYMENTS)]
        local = threading.local()
        lost_answers: list[int] = []

        def settled() -> int:
            with res.uow() as uow:
                return uow.session.execute(
                    select(func.count()).select_from(WalletEntry)
                    .where(WalletEntry.kind == "payment")).scalar_one()

        def pay_until_answered(payment_id: int) -> int:
            if not hasattr(local, "client"):
                local.client = Api(url, user_key)
            while True:  # a client whose request died with the process asks again
                try:
                    response = local.client.post(f"/api/v1/payments/{payment_id}/pay")
                except LOST_ANSWER:
                    lost_answers.append(payment_id)
                    local.client = Api(url, user_key)
                    continue
                if response.status_code in (200, 409):
                    return response.status_code
                raise AssertionError(response.text)  # anything else is a bug

        kills: list[int] = []

        def killer() -> None:
            for round_ in range(KILLS):
                target = (round_ + 1) * STORM_PAYMENTS // (KILLS + 2)
                wait_until(lambda t=target: settled() >= t, timeout=60,
                           message=f"{target} payments through")
                wait_until(lambda: len(web_workers(master)) == 2, timeout=30,
                           message="gunicorn workers back")
                for process in web_workers(master):
                    kill(process)
                kills.append(settled())

        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(pay_until_answered, payments))
        kill_thread.join(90)

    assert len(kills) == KILLS, kills
    # 200, or 409 payment_not_payable for one that had committed before its answer was lost.
    assert set(answers) <= {200, 409}
    for payment_id in payments:
        assert state_of(res, payment_id) == ALL_OF_IT, payment_id
    assert balance(res, USER) == D("1000.00") - D("10.00") * STORM_PAYMENTS
    assert verify_wallets(res).ok
    print(f"\nkilled web workers with {kills} payments through; "
          f"{len(lost_answers)} requests lost their answer and were sent again")
