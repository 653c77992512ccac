"""The test workers' start and teardown (tests/support/worker.py).

`start_worker` returns only once THIS worker is ready: fault tests restart a worker on
the same log file, and a "ready." line left there by the previous worker must not be
taken for the new one's. `kill_worker_at_teardown` leaves nothing running and nothing
in the log that a test's later checks could mistake for its own kills.
"""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.support.pool_kills import pool_processes
from tests.support.processes import wait_until
from tests.support.worker import kill_worker_at_teardown, start_worker

STALE_READY = b"[2026-12-01 00:00:00,000: INFO/MainProcess] old@host ready.\n"


def test_a_stale_ready_line_does_not_pass_for_a_worker_that_never_started(stack_env, tmp_path):
    log_path = tmp_path / "worker.log"
    log_path.write_bytes(STALE_READY)
    with pytest.raises(RuntimeError, match="worker exited early"):
        # An option celery refuses: this worker exits without ever being ready.
        start_worker(stack_env, log_path, extra_args=("--no-such-option",))
    assert log_path.read_bytes().startswith(STALE_READY), "the earlier history was kept"


def test_a_worker_killed_at_teardown_leaves_no_process_and_no_log_line(stack_env, tmp_path):
    log_path = tmp_path / "worker.log"
    worker = start_worker(stack_env, log_path)
    pool = pool_processes(worker.pid)
    assert pool, "a prefork worker has pool processes"
    before = log_path.read_bytes()
    kill_worker_at_teardown(worker)
    assert worker.returncode == -signal.SIGKILL
    wait_until(lambda: all(_gone(p) for p in pool), timeout=10,
               message="no pool process left orphaned")
    assert log_path.read_bytes() == before, "the teardown itself wrote to the log"


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
