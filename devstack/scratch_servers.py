"""Throwaway servers for the test suite and the benchmarks: found or started, then
cleaned up, so no run ever sees another run's data.

- DATABASE_URL set: that PostgreSQL server; else an embedded one under `run_dir`.
  Either way the run gets its own database `<prefix>_<random>` at migration head,
  dropped at the end.
- REDIS_URL set: that Redis, on a DB number nobody uses (claimed with a marker key,
  flushed at the end); else an embedded, non-persistent one under `run_dir`.
- gunicorn: the web (or any WSGI app) with the service's one gunicorn config, on a free
  port, stopped with its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_lib
from sqlalchemy.engine import make_url

from adapters.migrate import upgrade_to_head
from config import normalize_database_url
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, wait_for_port

REDIS_CLAIM_KEY = "payments-scratch:claim"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
GUNICORN_CONFIG = "python:web.gunicorn_conf"


def stop_process_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                       timeout: float = 20) -> None:
    """Signal the child's whole process group, wait, then SIGKILL what is left
    (a leader that would not stop, or orphans of one that did)."""
    _signal_group(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def postgres_server(run_dir: Path) -> Iterator[str]:
    """A URL of a PostgreSQL server's maintenance database."""
    if os.environ.get("DATABASE_URL"):
        yield normalize_database_url(os.environ["DATABASE_URL"])
        return
    pg = EmbeddedPostgres(run_dir / "postgres", free_port())
    proc = pg.start(run_dir / "postgres.log")
    try:
        pg.wait_ready()
        yield pg.url("postgres")
    finally:
        stop_process_group(proc, signal.SIGINT)  # PostgreSQL's fast shutdown


@contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database at migration head on that server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server = make_url(server_url)
    conninfo: dict[str, Any] = dict(
        host=server.host, port=server.port, user=server.username, password=server.password,
        dbname=server.database or "postgres", autocommit=True)
    with psycopg.connect(**conninfo) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_database(run_dir: Path) -> Iterator[str]:
    """A Redis URL nobody else is using."""
    if os.environ.get("REDIS_URL"):
        url, client = _claim_free_redis_db(redis_lib.Redis.from_url(os.environ["REDIS_URL"]))
        try:
            yield url
        finally:
            client.flushdb()
            client.close()
        return
    rd = EmbeddedRedis(run_dir / "redis", free_port(), persistent=False)
    proc = rd.start(run_dir / "redis.log")
    try:
        rd.wait_ready()
        yield rd.url()
    finally:
        stop_process_group(proc, signal.SIGTERM)


def _claim_free_redis_db(base: redis_lib.Redis) -> tuple[str, redis_lib.Redis]:
    """An empty DB number on a shared Redis, claimed with a marker key."""
    kwargs = base.connection_pool.connection_kwargs
    host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
    for db in range(15, 0, -1):
        client = redis_lib.Redis(host=host, port=port, db=db)
        if client.set(REDIS_CLAIM_KEY, uuid.uuid4().hex, nx=True, ex=6 * 3600):
            if client.dbsize() == 1:
                return f"redis://{host}:{port}/{db}", client
            client.delete(REDIS_CLAIM_KEY)
        client.close()
    raise RuntimeError("no free Redis DB number on the shared server")


@contextmanager
def listening_process(command: Callable[[int], list[str]], env: dict[str, str], stdout: Path,
                      stderr: Path | None = None, port: int | None = None) -> Iterator[int]:
    """`command(port)` started on `port` (a free one unless given) in its own process
    group (stderr into `stdout` unless given its own file); yields the port once it
    accepts connections."""
    port = port or free_port()
    with open(stdout, "ab") as out, open(stderr or os.devnull, "ab") as err:
        proc = subprocess.Popen(command(port), env=env, stdout=out,
                                stderr=err if stderr else subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        stop_process_group(proc)


@contextmanager
def gunicorn(env: dict[str, str], stdout: Path, stderr: Path | None = None,
             app: str = "web.wsgi:app", port: int | None = None) -> Iterator[str]:
    """`gunicorn -c python:web.gunicorn_conf <app>` on `port` (a free one unless given:
    pass one when the app must know its own URL, PUBLIC_BASE_URL); yields its base URL."""
    def command(port: int) -> list[str]:
        return [GUNICORN, "-c", GUNICORN_CONFIG, app, "--bind", f"127.0.0.1:{port}"]

    with listening_process(command, env, stdout, stderr, port) as bound:
        yield f"http://127.0.0.1:{bound}"
