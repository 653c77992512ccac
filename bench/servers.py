"""The servers a benchmark runs on, found or started the way the test suite does it.

- DATABASE_URL set: that PostgreSQL server; else an embedded one in a temp dir.
- REDIS_URL set: that Redis, on a DB number nobody uses; else an embedded one.
Either way the run gets its own database `payments_bench_<random>` at migration
head, dropped at the end, and everything started here is stopped again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.progress import Say
from config import Settings
from devstack.scratch_servers import fresh_database, postgres_server, redis_database


@contextmanager
def bench_settings(say: Say) -> Iterator[Settings]:
    """Settings pointing at a fresh database and an empty Redis DB, for the whole run."""
    run_dir = Path(tempfile.mkdtemp(prefix="payments-bench-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, run_dir, True)
        say("PostgreSQL: " + ("the server at DATABASE_URL" if os.environ.get("DATABASE_URL")
                              else "starting an embedded server"))
        server_url = stack.enter_context(postgres_server(run_dir))
        say("database payments_bench_*: creating and migrating to head")
        database_url = stack.enter_context(fresh_database(server_url, "payments_bench"))
        say("Redis: " + ("an unused DB of the server at REDIS_URL" if os.environ.get("REDIS_URL")
                         else "starting an embedded server"))
        redis_url = stack.enter_context(redis_database(run_dir))
        yield Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                 "APP_ENV": "test", "RUN_DIR": str(run_dir)})


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a gunicorn or worker started by a scenario: this run's servers,
    and Prometheus' multiprocess mode as `make up` uses it (in its own fresh directory)."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=settings.run_dir))
    return {**os.environ, "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url, "APP_ENV": settings.environment,
            "RUN_DIR": str(settings.run_dir), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1", **extra}
