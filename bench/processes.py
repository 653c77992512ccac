"""A Celery worker for the benchmarks, started with the settings `make up` uses and
stopped (whole process group) on exit. (gunicorn: devstack.scratch_servers.gunicorn.)"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from devstack.scratch_servers import stop_process_group

BIN = Path(sys.executable).parent
WORKER_QUEUES = "callbacks,payments,maintenance"


@contextmanager
def celery_worker(env: Mapping[str, str], log_path: Path, *, concurrency: int = 2,
                  include: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A `celery worker` as `make up` runs it (prefork, `concurrency` processes, our three
    queues); `include` adds a module of extra tasks (the no-op baseline's). Yields once the
    worker says it is ready."""
    args = [str(BIN / "celery"), "-A", "workers.app", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "-Q", WORKER_QUEUES,
            "--hostname", f"bench-{uuid.uuid4().hex[:8]}@%h"]
    if include:
        args += ["--include", include]
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(args, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes()[start:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_process_group(proc)


def wait_until_serving(url: str, timeout: float = 60) -> None:
    """Until `url` answers (any status below 500): gunicorn's port opens before its
    workers have imported the app, and a scenario's first requests should not wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
