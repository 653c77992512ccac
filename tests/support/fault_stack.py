"""A whole stack of a fault test's own: the real app over HTTP on a port known up front,
and the environment for its workers, on the session's PostgreSQL and a Redis the test
owns (which it may kill, restart empty, or keep as the broker).

The sandbox provider is mounted in that app and reached at PUBLIC_BASE_URL, so its
deliveries and our provider calls go through this stack's broker, not the session's.
The broker comes from one place (`broker_url`, default: the test's Redis), so a test can
be run against another broker by passing its URL.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.resources import Resources
from config import Settings
from devstack.embedded import free_port
from tests.support.live_server import serve
from tests.support.private_stack import env_with, settings_with
from tests.support.worker import start_worker

ALL_QUEUES = "callbacks,payments,maintenance,webhooks"


@dataclass(frozen=True)
class FaultStack:
    url: str
    res: Resources
    settings: Settings
    env: dict[str, str]  # for workers and beat of this stack

    def start_worker(self, log_path: Path, concurrency: int = 2,
                     queues: str = ALL_QUEUES) -> subprocess.Popen:
        return start_worker(self.env, log_path, concurrency=concurrency, queues=queues)


@contextmanager
def fault_stack(settings: Settings, stack_env: dict[str, str], redis_url: str, *,
                broker_url: str | None = None, **extra_env: str) -> Iterator[FaultStack]:
    port = free_port()
    private = dataclasses.replace(settings_with(settings, redis_url=redis_url),
                                  public_base_url=f"http://127.0.0.1:{port}")
    if broker_url is not None:
        private = dataclasses.replace(private, broker_url=broker_url)
    env = {**env_with(stack_env, private), "PUBLIC_BASE_URL": private.public_base_url,
           "BROKER_URL": private.broker_url, **extra_env}
    from web.app import create_app  # noqa: PLC0415

    res = Resources(private)
    try:
        with serve(create_app(private, res), port=port) as url:
            yield FaultStack(url, res, private, env)
    finally:
        res.close()
