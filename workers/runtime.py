"""Per-process resources for task code, built lazily after the pool forks."""

from __future__ import annotations

from celery.signals import worker_process_init

from adapters.resources import Resources
from config import Settings

_resources: Resources | None = None


def resources() -> Resources:
    global _resources
    if _resources is None:
        from workers.app import celery  # noqa: PLC0415 - avoid a cycle at import

        _resources = Resources(Settings.from_env(), celery_app=celery)
    return _resources


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    """A forked pool process must not share its parent's sockets."""
    global _resources
    _resources = None
