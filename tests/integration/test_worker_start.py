"""`start_worker` (tests/support/worker.py) returns only once THIS worker is ready.

Fault tests restart a worker on the same log file; a "ready." line left there by the
previous worker must not be taken for the new one's.
"""

from __future__ import annotations

import pytest

from tests.support.worker import start_worker

STALE_READY = b"[2026-12-01 00:00:00,000: INFO/MainProcess] old@host ready.\n"


def test_a_stale_ready_line_does_not_pass_for_a_worker_that_never_started(stack_env, tmp_path):
    log_path = tmp_path / "worker.log"
    log_path.write_bytes(STALE_READY)
    with pytest.raises(RuntimeError, match="worker exited early"):
        # An option celery refuses: this worker exits without ever being ready.
        start_worker(stack_env, log_path, extra_args=("--no-such-option",))
    assert log_path.read_bytes().startswith(STALE_READY), "the earlier history was kept"
