"""Test servers: real PostgreSQL and Redis, found or started by the suite itself.

- DATABASE_URL set: that server; else an embedded PostgreSQL under a temp dir.
- REDIS_URL set: that server, on a Redis DB number nobody uses; else an
  embedded Redis. Every run gets its own database and cleans up after itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapters.resources import Resources
from config import Settings
from devstack.embedded import free_port
from devstack.scratch_servers import (
    fresh_database,
    postgres_server,
    redis_database,
    stop_process_group,
)

TABLES = ("idempotency_keys", "wallet_entries", "wallets", "payment_events", "refunds",
          "order_status_history",
          "provider_callbacks", "payments", "orders", "api_keys",
          # the sandbox provider's own tables (its tickets are keyed by our payment ids)
          "sandbox_deliveries", "sandbox_refunds", "sandbox_payments",
          # the provider doubles' tables
          "standin_notifications", "standin_refunds", "standin_orders",
          "callback_auth_failures",
          # merchant webhooks and the events feed (migration 0004)
          "webhook_attempts", "webhook_deliveries", "webhook_endpoints", "notifications",
          "events",
          # the daily reconciliation (migration 0007)
          "reconciliation_items", "reconciliation_runs")


# Tests that load the machine (workers killed and restarted, whole stacks, bursts, the
# benchmarks' smoke runs): under `make test` (pytest-xdist, --dist loadgroup) they run one
# after another in one process, so two never compete for the cores and their timings;
# everything else shares the other process. Each process has its own servers and
# database (the fixtures below), so the two never see each other's rows.
HEAVY = ("tests/faults/", "tests/e2e/test_make_up.py", "tests/e2e/test_bench_smoke.py",
         "tests/integration/test_sweep_concurrency.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(HEAVY):
            item.add_marker(pytest.mark.xdist_group("heavy"))


@pytest.fixture(scope="session")
def tmp_run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payments-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(tmp_run_dir: Path) -> Iterator[str]:
    """The PostgreSQL server of this run (its maintenance database)."""
    with postgres_server(tmp_run_dir) as server_url:
        yield server_url


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database at migration head, dropped after the run."""
    with fresh_database(postgres_url, "payments_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_run_dir: Path) -> Iterator[str]:
    with redis_database(tmp_run_dir) as url:
        yield url


@pytest.fixture(scope="session")
def live_port() -> int:
    """The port the live test server will listen on, known before anything starts,
    so workers and the sandbox provider can be told PUBLIC_BASE_URL up front."""
    return free_port()


@pytest.fixture(scope="session")
def stack_env(database_url: str, redis_url: str, tmp_run_dir: Path,
              live_port: int) -> dict[str, str]:
    """Environment for processes the tests start (workers, gunicorn, the CLI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL",)}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_ENV="test",
               # Many tests send bad signatures from 127.0.0.1 on purpose: the rate limit
               # has a test of its own (tests/integration/test_security.py).
               CALLBACK_AUTH_FAILURE_LIMIT="100000 per minute",
               RUN_DIR=str(tmp_run_dir), PYTHONUNBUFFERED="1",
               PUBLIC_BASE_URL=f"http://127.0.0.1:{live_port}")
    return env


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings.from_env(stack_env)


@pytest.fixture(scope="session")
def resources(settings: Settings) -> Iterator[Resources]:
    res = Resources(settings)
    yield res
    res.close()


@pytest.fixture
def clean_db(resources: Resources) -> Iterator[Resources]:
    """Empty tables before the test: no test sees another's rows.

    Ids are NOT restarted, so a task left over from an earlier test (the session
    worker may still be running it) can never act on this test's rows. TRUNCATE can
    deadlock with such a task; it is simply tried again.
    """
    _truncate(resources)
    yield resources


def _truncate(resources: Resources) -> None:
    for attempt in range(5):
        try:
            with resources.db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
            return
        except DBAPIError as exc:
            if attempt == 4 or not isinstance(exc.orig, psycopg.errors.DeadlockDetected):
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def live_url(settings: Settings, resources: Resources, live_port: int) -> Iterator[str]:
    """The real app over real HTTP (werkzeug, threaded), against the test servers,
    at settings.public_base_url."""
    from tests.support.live_server import serve
    from web.app import create_app

    with serve(create_app(settings, resources), port=live_port) as url:
        yield url


@pytest.fixture
def api(live_url: str, clean_db: Resources):
    """An anonymous client; `.as_key(key)` for an authenticated one."""
    from tests.support.live_server import Api

    return Api(live_url)


@pytest.fixture
def admin_key(clean_db: Resources) -> str:
    from services.api_keys import create_api_key

    return create_api_key(clean_db.uow(), "admin", name="test admin")


@pytest.fixture
def make_user_key(clean_db: Resources):
    from services.api_keys import create_api_key

    def make(user_id: int) -> str:
        return create_api_key(clean_db.uow(), "user", user_id=user_id, name=f"user {user_id}")

    return make


@pytest.fixture(scope="session")
def celery_worker(stack_env: dict[str, str], tmp_run_dir: Path):
    """One real worker process (prefork pool of 2) for the whole run, on the test servers.

    Tests that kill workers start their own with tests.support.worker.start_worker.
    """
    from tests.support.worker import start_worker

    proc = start_worker(stack_env, tmp_run_dir / "worker.log")
    yield proc
    stop_process_group(proc, signal.SIGTERM)


@pytest.fixture
def private_redis(tmp_path: Path):
    """A redis-server of this test's own: a broker no session worker consumes from, that the
    test may stop and start (tests.support.private_stack)."""
    from tests.support.private_stack import PrivateRedis

    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq_run_url():
    """This run's RabbitMQ vhost (skipped, saying why, where no RabbitMQ answers:
    tests.support.rabbitmq)."""
    from tests.support.rabbitmq import rabbitmq_vhost

    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def rabbitmq_url(rabbitmq_run_url: str) -> str:
    """A RabbitMQ broker URL with none of our queues or messages on it."""
    from tests.support.rabbitmq import purge_our_queues

    purge_our_queues(rabbitmq_run_url)
    return rabbitmq_run_url


@pytest.fixture(params=["redis", "rabbitmq"])
def private_broker(request, private_redis) -> str:
    """The broker URL of a test that runs once on each: its private Redis (locks and
    broker, as with BROKER_URL unset), then RabbitMQ (a fresh vhost; locks stay on the
    private Redis)."""
    if request.param == "redis":
        return private_redis.url
    return request.getfixturevalue("rabbitmq_url")


@pytest.fixture(scope="module")
def quiet_app(settings: Settings, tmp_path_factory):
    """(base_url, resources, broker): the app publishing to a Redis of this module's own
    that no worker drains, so a test sees exactly what was queued (or that nothing was)."""
    from tests.support.private_stack import PrivateRedis, serve_app, settings_with

    broker = PrivateRedis(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        with serve_app(settings_with(settings, redis_url=broker.url)) as (url, res):
            yield url, res, broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def doubles_stack(postgres_url: str, tmp_run_dir: Path):
    """A second stack (own database, Redis, live server, worker) whose wechat and alipay
    methods go to the local WeChat Pay and Alipay doubles (tests.support.doubles_stack)."""
    from tests.support.doubles_stack import doubles_stack as start

    with start(postgres_url, tmp_run_dir / "doubles-stack") as stack:
        yield stack


@pytest.fixture
def doubles(doubles_stack):
    """The doubles stack with every table emptied first."""
    _truncate(doubles_stack.resources)
    return doubles_stack
