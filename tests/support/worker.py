"""Real Celery worker processes for tests about delivery and concurrency."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.processes import stop_process_group, wait_until

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


def kill_worker_at_teardown(proc: subprocess.Popen) -> None:
    """End a worker whose test has nothing more to learn from it: SIGKILL to its group.

    A warm stop (SIGTERM) of even an idle worker costs 1-2.5 s in Celery 5.7: the event
    loop sees the signal's flag only when its poll returns (up to 1 s, kombu's hub), the
    prefork pool's stop joins a timer thread that sleeps 0.5 s between passes, and
    closing the Redis channel waits out its pending BRPOP (up to 1 s). SIGQUIT is slower
    still (it also waits for the pool's processes). Teardown gains nothing from that
    wait: the test has seen its work done (or is failing anyway), its broker is its own
    (a private Redis, or the RabbitMQ vhost purged before each test) and keeps whatever
    was unacked, and PostgreSQL rolls back what a dropped connection held open.
    The main process goes first, so the teardown itself writes nothing to the log (it
    is the process that reports a pool process's death) for a test's later checks to
    find. A test about SIGTERM, one that needs the worker's tasks finished before it
    goes on, or one that checks what the worker logs while stopping, sends SIGTERM."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()
    stop_process_group(proc, signal.SIGKILL)  # its pool processes, orphaned by now


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
