"""Real Celery worker processes for tests about delivery and concurrency."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.processes import wait_until

CELERY = str(Path(sys.executable).parent / "celery")


def start_worker(env: dict[str, str], log_path: Path, concurrency: int = 2,
                 queues: str = "callbacks,payments,maintenance",
                 extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """A `celery worker` in its own process group; returns once it says it is ready.

    A test may restart a worker on the same log (its later checks read the whole history),
    so readiness is looked for only in what this start appended: an earlier run's
    "ready." line must not pass for this process's."""
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    start_offset = log.tell()
    proc = subprocess.Popen(
        [CELERY, "-A", "workers.app", "worker", "--loglevel", "INFO", "--concurrency",
         str(concurrency), "-Q", queues, "--hostname", name, "--without-gossip",
         "--without-mingle", *extra_args],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: proc.poll() is not None or b" ready." in _log_since(log_path, start_offset),
               timeout=60, message="celery worker ready")
    if proc.poll() is not None:
        tail = _log_since(log_path, start_offset)[-3000:].decode(errors="replace")
        raise RuntimeError(f"worker exited early:\n{tail}")
    return proc


def _log_since(log_path: Path, offset: int) -> bytes:
    with open(log_path, "rb") as log:
        log.seek(offset)
        return log.read()


def start_beat(env: dict[str, str], log_path: Path, schedule_path: Path) -> subprocess.Popen:
    """A `celery beat` in its own process group, sending to the broker of `env`."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [CELERY, "-A", "workers.app", "beat", "--loglevel", "INFO",
         "--schedule", str(schedule_path)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
