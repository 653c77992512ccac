"""The service's own processes for the benchmarks: gunicorn and a Celery worker,
started with the settings `make up` uses, stopped (whole process group) on exit."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from devstack.embedded import free_port
from devstack.scratch_servers import stop_process_group

BIN = Path(sys.executable).parent
# One config for every gunicorn we start (workers, threads, JSON access log).
GUNICORN_CONFIG = "python:web.gunicorn_conf"
WORKER_QUEUES = "callbacks,payments,maintenance"


@contextmanager
def gunicorn(app: str, env: Mapping[str, str], log_path: Path,
             ready_path: str = "/healthz") -> Iterator[str]:
    """`gunicorn -c python:web.gunicorn_conf <app>` on a free port; yields its base URL
    once `ready_path` answers."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", GUNICORN_CONFIG, app, "--bind", f"127.0.0.1:{port}"],
            env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(proc, base_url + ready_path, log_path)
        yield base_url
    finally:
        stop_process_group(proc)


def _wait_http(proc: subprocess.Popen[bytes], url: str, log_path: Path,
               timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


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
