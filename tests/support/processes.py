"""Starting and stopping real processes from tests."""

from __future__ import annotations

import time

from devstack.scratch_servers import stop_process_group

__all__ = ["stop_process_group", "wait_until"]


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
