"""The servers a benchmark runs on, found or started the way the test suite does it.

- DATABASE_URL set: that PostgreSQL server; else an embedded one in a temp dir.
- REDIS_URL set: that Redis, on a DB number nobody uses; else an embedded one.
Either way the run gets its own database `payments_bench_<random>` at migration
head, dropped at the end, and everything started here is stopped again.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_lib
from sqlalchemy.engine import make_url

from adapters.migrate import upgrade_to_head
from bench.progress import Say
from config import Settings, normalize_database_url
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.support.processes import stop_process_group

CLAIM_KEY = "payments-bench:claim"


@contextmanager
def bench_settings(say: Say) -> Iterator[Settings]:
    """Settings pointing at a fresh database and an empty Redis DB, for the whole run."""
    run_dir = Path(tempfile.mkdtemp(prefix="payments-bench-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, run_dir, True)
        server_url = stack.enter_context(_postgres_server(run_dir, say))
        database_url = stack.enter_context(_fresh_database(server_url, say))
        redis_url = stack.enter_context(_redis(run_dir, say))
        yield Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                 "APP_ENV": "test", "RUN_DIR": str(run_dir)})


@contextmanager
def _postgres_server(run_dir: Path, say: Say) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        say("PostgreSQL: the server at DATABASE_URL")
        yield normalize_database_url(os.environ["DATABASE_URL"])
        return
    pg = EmbeddedPostgres(run_dir / "postgres", free_port())
    say(f"PostgreSQL: starting an embedded server on :{pg.port}")
    proc = pg.start(run_dir / "postgres.log")
    try:
        pg.wait_ready()
        yield pg.url("postgres")
    finally:
        stop_process_group(proc, signal.SIGINT)


@contextmanager
def _fresh_database(server_url: str, say: Say) -> Iterator[str]:
    name = f"payments_bench_{uuid.uuid4().hex[:12]}"
    server = make_url(server_url)
    conninfo: dict[str, Any] = dict(host=server.host, port=server.port, user=server.username,
                    password=server.password, dbname=server.database or "postgres",
                    autocommit=True)
    with psycopg.connect(**conninfo) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        say(f"database {name}: migrating to head")
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _redis(run_dir: Path, say: Say) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        url, client = _claim_free_redis_db(redis_lib.Redis.from_url(os.environ["REDIS_URL"]))
        say(f"Redis: the server at REDIS_URL, DB {url.rsplit('/', 1)[1]}")
        try:
            yield url
        finally:
            client.flushdb()
            client.close()
        return
    rd = EmbeddedRedis(run_dir / "redis", free_port(), persistent=False)
    say(f"Redis: starting an embedded server on :{rd.port}")
    proc = rd.start(run_dir / "redis.log")
    try:
        rd.wait_ready()
        yield rd.url()
    finally:
        stop_process_group(proc, signal.SIGTERM)


def _claim_free_redis_db(base: redis_lib.Redis) -> tuple[str, redis_lib.Redis]:
    """An empty DB number on a shared Redis, claimed with a marker key (as the tests do),
    so the sweep's run-once lock cannot meet a dev stack's or a test run's."""
    kwargs = base.connection_pool.connection_kwargs
    host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
    for db in range(15, 0, -1):
        client = redis_lib.Redis(host=host, port=port, db=db)
        if client.set(CLAIM_KEY, uuid.uuid4().hex, nx=True, ex=6 * 3600):
            if client.dbsize() == 1:
                return f"redis://{host}:{port}/{db}", client
            client.delete(CLAIM_KEY)
        client.close()
    raise RuntimeError("no free Redis DB number on the shared server")
