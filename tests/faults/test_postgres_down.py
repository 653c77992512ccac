"""PostgreSQL stopped (DESIGN.md §6): never a 2xx for a callback that is not stored.

A PostgreSQL of this test's own is killed. While it is down the endpoint answers
503 (the provider retries later), forged callbacks included. A callback stored
before the crash, whose task runs while the database is down, is retried by the
worker with backoff. Once PostgreSQL is back, the provider's retries are stored
and everything is applied exactly once.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from adapters.migrate import upgrade_to_head
from adapters.providers.sandbox.signature import SIGNATURE_HEADER
from domain.models import Payment, PaymentEvent, ProviderCallback
from tests.support.callbacks import event_body, post_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import PrivatePostgres, env_with, serve_app, settings_with
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

pytestmark = pytest.mark.slow

RETRIED = 5


def _statuses(res) -> dict[str, int]:
    with res.uow() as uow:
        return dict(uow.session.execute(select(ProviderCallback.status, func.count())
                                        .group_by(ProviderCallback.status)).all())


def test_database_down_means_503_and_the_providers_retries_are_applied_after(
        settings, stack_env, private_redis, tmp_path):
    postgres = PrivatePostgres(tmp_path / "pg")
    postgres.start()
    worker = None
    try:
        upgrade_to_head(postgres.url)
        private = settings_with(settings, redis_url=private_redis.url,
                                database_url=postgres.url)
        env = env_with(stack_env, private)
        with serve_app(private) as (url, res):
            payments = []
            for _ in range(RETRIED + 1):
                order_id = make_order(res)
                payments.append(make_payment(res, order_id, status="processing"))
            early, later = payments[0], payments[1:]

            # Stored and queued before the crash; no worker has picked it up yet.
            assert post_callback(url, event_body(early)).status_code == 200
            postgres.stop(signal.SIGKILL)
            worker = start_worker(env, tmp_path / "worker.log")  # its task meets a dead DB

            bodies = [event_body(pid) for pid in later]
            for body in bodies:
                started = time.monotonic()
                response = post_callback(url, body)
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "database_unavailable"
                assert time.monotonic() - started < 15
            forged = post_callback(url, bodies[0], headers={SIGNATURE_HEADER: "t=1,v1=00"})
            assert forged.status_code == 503  # cannot even be audited: still not 2xx
            log = tmp_path / "worker.log"
            wait_until(lambda: log.exists() and "retrying after" in log.read_text(
                errors="replace"), timeout=60, interval=0.2,
                message="the early callback's task failing against the dead database")

            postgres.start()
            # nothing from the outage was stored (the early one may be applied already)
            assert sum(_statuses(res).values()) == 1
            for body in bodies:  # the provider's retries
                response = post_callback(url, body)
                assert response.status_code == 200
                assert response.json() == {"received": True, "duplicate": False}
            wait_until(lambda: _statuses(res) == {"processed": RETRIED + 1}, timeout=120,
                       interval=0.5, message="every callback applied")

            with res.uow() as uow:
                s = uow.session
                succeeded = dict(s.execute(
                    select(PaymentEvent.payment_id, func.count())
                    .where(PaymentEvent.event == "payment_succeeded")
                    .group_by(PaymentEvent.payment_id)).all())
                statuses = set(s.execute(select(Payment.status)).scalars())
            assert succeeded == {pid: 1 for pid in payments}
            assert statuses == {"succeeded"}
    finally:
        if worker is not None:
            kill_worker_at_teardown(worker)
        postgres.stop()
