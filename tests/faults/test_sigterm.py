"""SIGTERM to the web and to the worker during a burst (issue #18): what a deploy or a
scale-down does. Nothing in flight is dropped, nothing is half done.

- gunicorn (web/gunicorn_conf.py: graceful_timeout) stops accepting and lets the requests
  it holds finish: callbacks whose bodies are still arriving when the signal lands are
  answered 200 and stored; any other answer is a 200 for a stored callback, and a
  sender that finds the server gone simply has nothing stored (it retries elsewhere).
  Those callbacks are applied afterwards only through the wake-ups the web published
  (services/callback_wakeup.py; no sweep runs here), so this too runs on each broker.
- the Celery worker's warm shutdown finishes the tasks it is running and puts the ones
  it had only received back on the queue (acks_late): a worker started afterwards applies
  the rest, with no sweep and no replay by hand, each payment exactly once. On Redis the
  messages it had received go back at once (kombu restores them), on RabbitMQ when its
  channel closes.

Each runs once with its private Redis as the broker and once on RabbitMQ (private_broker,
tests/conftest.py), the locks and wake-up flag in the private Redis both times.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, text

from adapters.locks import payment_lock_name
from devstack.embedded import free_port, wait_for_port
from devstack.scratch_servers import GUNICORN, GUNICORN_CONFIG
from domain.models import Payment, PaymentEvent, ProviderCallback
from tests.support.callbacks import event_body, post_callback, signed_headers
from tests.support.factories import make_order, make_payment
from tests.support.pool_kills import pool_processes
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.slow

SLOW_REQUESTS = 3  # below the web's 4 threads: one is left for the burst
WEB_BURST = 100  # more than get through before the signal
WORKER_BURST = 50
BUSY_LOCK_MS = 120_000  # held by the test for the first worker's whole life


def _payments(res, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        ids.append(make_payment(res, make_order(res), status="processing"))
    return ids


def _inbox(res) -> dict[str, int]:
    with res.uow() as uow:
        return dict(uow.session.execute(select(ProviderCallback.status, func.count())
                                        .group_by(ProviderCallback.status)).all())


def _stored_payments(res) -> set[int]:
    with res.uow() as uow:
        return set(uow.session.execute(select(ProviderCallback.payment_id)).scalars())


def _successes(res) -> dict[int, int]:
    with res.uow() as uow:
        return dict(uow.session.execute(
            select(PaymentEvent.payment_id, func.count())
            .where(PaymentEvent.event == "payment_succeeded")
            .group_by(PaymentEvent.payment_id)).all())


def _start_gunicorn(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [GUNICORN, "-c", GUNICORN_CONFIG, "web.wsgi:app", "--bind", f"127.0.0.1:{port}"],
            env={**env, "WEB_WORKERS": "1", "WEB_THREADS": "4"}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port(port, timeout=30)
    wait_until(lambda: len(pool_processes(proc.pid)) == 1, timeout=30,
               message="gunicorn's worker up")
    return proc, port


def _start_slow_request(port: int, body: bytes) -> socket.socket:
    """A callback whose headers and first bytes are sent; the rest comes later."""
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body).items())
    sock = socket.create_connection(("127.0.0.1", port), timeout=40)
    sock.sendall((f"POST /callbacks/sandbox HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                 + body[:10])
    return sock


def _finish_slow_request(sock: socket.socket, body: bytes) -> int:
    sock.sendall(body[10:])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return int(answer.split(b" ", 2)[1]) if answer else 0  # 0: cut off, no answer


def test_sigterm_to_the_web_lets_its_in_flight_callbacks_finish(
        clean_db, settings, stack_env, private_redis, private_broker, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url, broker_url=private_broker)
    env = env_with(stack_env, private)
    slow_ids = _payments(clean_db, SLOW_REQUESTS)
    burst_ids = _payments(clean_db, WEB_BURST)
    slow_bodies = [event_body(pid) for pid in slow_ids]
    web, port = _start_gunicorn(env, tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}"
    answers: dict[int, int | str] = {}
    try:
        assert post_callback(url, event_body(burst_ids[0])).status_code == 200
        answers[burst_ids[0]] = 200
        slow = [_start_slow_request(port, body) for body in slow_bodies]
        stop = threading.Event()

        def burst() -> None:
            with requests.Session() as http:
                for pid in burst_ids[1:]:
                    if stop.is_set():
                        return
                    try:
                        answers[pid] = post_callback(url, event_body(pid), session=http,
                                                     timeout=40).status_code
                    except requests.ConnectionError as exc:
                        answers[pid] = type(exc).__name__  # the server is going away
                        return

        sender = threading.Thread(target=burst, daemon=True)
        sender.start()
        wait_until(lambda: len(answers) > 20, timeout=30, message="the burst under way")
        web.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the shutdown has begun; these requests are still arriving
        slow_codes = [_finish_slow_request(sock, body)
                      for sock, body in zip(slow, slow_bodies, strict=True)]
        assert web.wait(timeout=40) == 0
        stop.set()
        sender.join(timeout=40)
    finally:
        stop_process_group(web)

    assert slow_codes == [200] * SLOW_REQUESTS
    http_codes = {code for code in answers.values() if isinstance(code, int)}
    assert http_codes == {200}, answers
    answered = {pid for pid, code in answers.items() if code == 200}
    stored = _stored_payments(clean_db)
    # Every 200 stored, and nothing stored that was not answered 200.
    assert stored == answered | set(slow_ids)

    worker = start_worker(env, tmp_path / "worker.log", queues="callbacks")
    try:
        wait_until(lambda: _inbox(clean_db) == {"processed": len(stored)}, timeout=60,
                   message="every stored callback applied")
    finally:
        stop_process_group(worker)
    assert _successes(clean_db) == {pid: 1 for pid in stored}
    print(f"answered before the web stopped: {len(answered)} of {WEB_BURST}")


def test_sigterm_to_the_worker_finishes_or_requeues_its_tasks(
        clean_db, settings, stack_env, private_redis, private_broker, tmp_path):
    private = settings_with(settings, redis_url=private_redis.url, broker_url=private_broker)
    env = env_with(stack_env, private)
    payment_ids = _payments(clean_db, WORKER_BURST)
    log = tmp_path / "worker.log"
    blocker = clean_db.db.engine.connect()
    with serve_app(private) as (url, res):
        with requests.Session() as http:
            for pid in payment_ids:
                assert post_callback(url, event_body(pid), session=http).status_code == 200
        # The test holds the payments' rows: the worker's first task is caught in flight,
        # inside its transaction, when the signal lands.
        # And one payment's Redis lock: its batch leaves that callback busy and schedules a
        # follow-up, the only message that can apply it. The in-flight batch takes all the
        # others, so without it nothing would be left to show the queue kept what the
        # stopped worker had not run (on Redis an ETA it held, restored; on RabbitMQ in
        # delayed delivery or requeued with its channel).
        busy_lock = payment_lock_name(payment_ids[-1])
        assert res.redis.set(busy_lock, "test", px=BUSY_LOCK_MS)
        tx = blocker.begin()
        blocker.execute(text("SELECT id FROM payments WHERE id = ANY(:ids) FOR UPDATE"),
                        {"ids": payment_ids})
        worker = start_worker(env, log, queues="callbacks")
        try:
            wait_until(lambda: _waiting_on_locks(res) > 0, timeout=60,
                       message="the worker's task waiting on a payment row")
            worker.send_signal(signal.SIGTERM)
            time.sleep(1)
            assert worker.poll() is None, "the worker left without finishing its task"
            tx.rollback()  # the task goes on, commits, and the worker exits
            assert worker.wait(timeout=60) == 0
        finally:
            blocker.close()
            stop_process_group(worker)
        at_stop = _inbox(res)
        # The in-flight batch finished whole; only the busy callback waits.
        assert at_stop == {"processed": WORKER_BURST - 1, "received": 1}, at_stop
        assert "Warm shutdown" in log.read_text(errors="replace")

        # No sweep, no replay: the busy callback's follow-up is still on the queue.
        res.redis.delete(busy_lock)
        worker = start_worker(env, log, queues="callbacks")
        try:
            wait_until(lambda: _inbox(res) == {"processed": WORKER_BURST}, timeout=90,
                       message="every callback applied by the next worker")
        finally:
            stop_process_group(worker)
    assert _successes(clean_db) == {pid: 1 for pid in payment_ids}
    with clean_db.uow() as uow:
        statuses = set(uow.session.execute(select(Payment.status)
                                           .where(Payment.id.in_(payment_ids))).scalars())
    assert statuses == {"succeeded"}
    print(f"inbox when the worker stopped: {at_stop}")


def _waiting_on_locks(res) -> int:
    with res.uow() as uow:
        return int(uow.session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())
