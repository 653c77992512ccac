"""RabbitMQ as the broker (issue #18): BROKER_URL=amqp://..., locks still in Redis.

Each test has a vhost of its own on the machine's RabbitMQ (tests/support/rabbitmq.py;
skipped, saying why, where none answers), real HTTP, a real Celery worker process.
- the work queues are quorum queues (the broker refuses to see them as classic);
- publisher confirms: a publish the broker refuses is a failed send (counted, the
  callback stays stored for the sweep), not a message silently gone;
- countdown retries, sub-second ones included, arrive through native delayed delivery;
- /readyz checks the broker it uses; payments_queue_depth reads RabbitMQ's queues.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
import requests
from sqlalchemy import select

from adapters.celery_app import QUEUES
from adapters.locks import payment_lock
from domain.models import ProviderCallback
from services.callback_wakeup import APPLY_BATCH_TASK, WAKE_KEY
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.metrics import scrape, value
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.rabbitmq import declares_as_classic, queue_message_count
from tests.support.worker import start_worker

pytestmark = pytest.mark.slow

ALL_QUEUES = ",".join(QUEUES)


@pytest.fixture
def on_rabbitmq(settings, private_redis, rabbitmq_url):
    """Settings whose broker is this test's RabbitMQ vhost and whose locks are its
    private Redis."""
    return settings_with(settings, redis_url=private_redis.url, broker_url=rabbitmq_url)


def inbox_status(res, callback_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(select(ProviderCallback.status).where(
            ProviderCallback.id == callback_id)).scalar_one()


def stored_callback_id(res, event_id: str) -> int:
    with res.uow() as uow:
        return int(uow.session.execute(select(ProviderCallback.id).where(
            ProviderCallback.event_id == event_id)).scalar_one())


def a_processing_payment(res) -> int:
    return make_payment(res, make_order(res), status="processing")


def test_callbacks_are_applied_through_quorum_queues(clean_db, stack_env, on_rabbitmq,
                                                     tmp_path):
    payment_id = a_processing_payment(clean_db)
    with serve_app(on_rabbitmq) as (url, res):
        # No worker yet: the message waits in RabbitMQ, visible in the gauge.
        assert post_callback(url, event_body(payment_id, event_id="evt_q")).status_code == 200
        assert queue_message_count(on_rabbitmq.broker_url, "callbacks") == 1
        assert value(scrape(url), "payments_queue_depth", queue="callbacks") == 1
        ready = requests.get(url + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["checks"]["broker"] == "ok"

        worker = start_worker(env_with(stack_env, on_rabbitmq), tmp_path / "worker.log",
                              queues=ALL_QUEUES)
        try:
            callback_id = stored_callback_id(res, "evt_q")
            wait_until(lambda: inbox_status(res, callback_id) == "processed", timeout=30,
                       message="the callback applied by the worker")
            assert value(scrape(url), "payments_queue_depth", queue="callbacks") == 0
        finally:
            stop_process_group(worker, signal.SIGTERM)

    for name in QUEUES:  # declared by the worker as quorum queues: not classic ones
        refusal = declares_as_classic(on_rabbitmq.broker_url, name)
        assert refusal is not None and "x-queue-type" in refusal, (name, refusal)


def test_countdown_follow_ups_arrive_through_native_delayed_delivery(
        clean_db, stack_env, on_rabbitmq, tmp_path):
    """While the payment's lock is held the batch leaves the callback waiting and sends
    itself a follow-up 0.5 s ahead (services/callback_batches.py): a countdown under a
    second, which RabbitMQ's delayed delivery counts in whole seconds. Only follow-ups
    can apply it here (no beat, no sweep): it is applied once the lock is free, never
    failed, and the follow-ups kept coming while the lock was held."""
    payment_id = a_processing_payment(clean_db)
    log_path = tmp_path / "worker.log"
    worker = start_worker(env_with(stack_env, on_rabbitmq), log_path, queues=ALL_QUEUES)
    try:
        with serve_app(on_rabbitmq) as (url, res):
            with payment_lock(res.redis, payment_id, ttl_seconds=30, blocking_timeout=0):
                assert post_callback(url, event_body(payment_id, event_id="evt_r")
                                     ).status_code == 200
                callback_id = stored_callback_id(res, "evt_r")
                # The wake-up, then at least two follow-ups while the lock is held.
                wait_until(lambda: batches_received(log_path) >= 3, timeout=20,
                           message="follow-up batches while the lock is held")
                assert inbox_status(res, callback_id) == "received"
            wait_until(lambda: inbox_status(res, callback_id) == "processed", timeout=30,
                       message="the callback applied by a follow-up")
    finally:
        stop_process_group(worker, signal.SIGTERM)
    log = log_path.read_text()
    assert "countdown must be a positive number" not in log
    assert "raised unexpected" not in log, log[-3000:]


def batches_received(log_path) -> int:
    return log_path.read_text().count(f"Task {APPLY_BATCH_TASK}[")


SENDS = 6


@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs rabbitmqctl to set a "
                    "queue length policy on the test's vhost")
def test_a_publish_the_broker_refuses_is_a_failed_send_not_a_lost_message(
        clean_db, on_rabbitmq):
    """A queue at its length limit with overflow reject-publish nacks new messages (a
    quorum queue enforces the limit a message or so late). With publisher confirms each
    refused send fails (payments_enqueue_failures_total), so its callback is known to
    wait for the redelivery sweep, and every send reported done is in the queue; without
    confirms the refused messages vanish while their sends report success."""
    payments = [a_processing_payment(clean_db) for _ in range(SENDS)]
    with queue_length_limit(on_rabbitmq.broker_url, "callbacks", 1), \
            serve_app(on_rabbitmq) as (url, res):
        before = value(scrape(url), "payments_enqueue_failures_total",
                       task=APPLY_BATCH_TASK)
        for n, payment_id in enumerate(payments):
            # Each callback its own wake-up (one is sent only when none is on its way).
            res.redis.delete(WAKE_KEY)
            assert post_callback(url, event_body(payment_id, event_id=f"evt_{n}")
                                 ).status_code == 200  # stored whatever the broker does
        failed = value(scrape(url), "payments_enqueue_failures_total",
                       task=APPLY_BATCH_TASK) - before
        assert failed >= SENDS - 2, failed
        assert queue_message_count(on_rabbitmq.broker_url, "callbacks") == SENDS - failed


@contextmanager
def queue_length_limit(broker_url: str, queue: str, limit: int) -> Iterator[None]:
    """A policy on the run's vhost, removed afterwards (the vhost outlives this test)."""
    vhost = unquote(broker_url.rsplit("/", 1)[1]) or "/"
    name = f"limit-{queue}"
    set_policy = subprocess.run(
        ["rabbitmqctl", "set_policy", "-p", vhost, "--apply-to", "queues", name,
         f"^{queue}$", json.dumps({"max-length": limit, "overflow": "reject-publish"})],
        capture_output=True, text=True, timeout=60, check=False)
    assert set_policy.returncode == 0, set_policy.stderr
    try:
        yield
    finally:
        subprocess.run(["rabbitmqctl", "clear_policy", "-p", vhost, name],
                       capture_output=True, timeout=60, check=False)


def test_readiness_names_an_unreachable_broker(clean_db, settings, private_redis):
    unreachable = settings_with(settings, redis_url=private_redis.url,
                                broker_url="amqp://guest:guest@127.0.0.1:1//")
    with serve_app(unreachable) as (url, _):
        answer = requests.get(url + "/readyz", timeout=30)
    assert answer.status_code == 503
    # One connection attempt, no retry loop: a probe answers at once (kombu's connect()
    # alone waits 2 s before its one retry).
    assert answer.elapsed.total_seconds() < 1.5, answer.elapsed
    checks = answer.json()["checks"]
    assert checks["database"] == checks["redis"] == "ok"
    assert checks["broker"].startswith("unavailable")
