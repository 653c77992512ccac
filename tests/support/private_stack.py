"""Servers a single test owns, so it can stop and start them without touching anyone else.

A private Redis is also a private broker: no session-wide worker consumes from it,
so a test can count what was queued, or run its own worker and kill it.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as redis_lib

from adapters.resources import Resources
from config import Settings
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.support.processes import stop_process_group


class PrivateRedis:
    """An embedded redis-server on a free port; stop() and start() keep the port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = EmbeddedRedis(directory / "data", free_port(), persistent=False)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.server.url(0)

    def start(self) -> None:
        self.proc = self.server.start(self.directory / "redis.log")
        self.server.wait_ready()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, sig)
            self.proc = None

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url, socket_timeout=5)

    def queued(self, queue: str) -> list[dict]:
        """Messages waiting in a Celery queue: [{"task": name, "args": [...]}, ...]."""
        client = self.client()
        try:
            raw = client.lrange(queue, 0, -1)
        finally:
            client.close()
        messages = []
        for item in raw:
            message = json.loads(item)
            body = json.loads(_decode_body(message))
            messages.append({"task": message["headers"]["task"], "args": body[0]})
        return messages


def _decode_body(message: dict) -> str:
    import base64  # noqa: PLC0415

    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode()
    return body


class PrivatePostgres:
    """An embedded PostgreSQL (initdb on first start) on a free port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = EmbeddedPostgres(directory / "data", free_port())
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.server.url("postgres")

    def start(self) -> None:
        self.proc = self.server.start(self.directory / "postgres.log")
        self.server.wait_ready()

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, sig)
            self.proc = None


def settings_with(settings: Settings, *, redis_url: str | None = None,
                  database_url: str | None = None, broker_url: str | None = None
                  ) -> Settings:
    """broker_url: another broker than the Redis (e.g. RabbitMQ); by default a new
    redis_url is the broker too, as BROKER_URL unset is."""
    changes: dict[str, str] = {}
    if redis_url is not None:
        changes.update(redis_url=redis_url, broker_url=redis_url)
    if broker_url is not None:
        changes.update(broker_url=broker_url)
    if database_url is not None:
        changes.update(database_url=database_url)
    return dataclasses.replace(settings, **changes)


def env_with(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """stack_env for processes that should use these settings' servers."""
    out = {**env, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    out.pop("BROKER_URL", None)
    if settings.broker_url != settings.redis_url:
        out["BROKER_URL"] = settings.broker_url
    return out


@contextmanager
def serve_app(settings: Settings) -> Iterator[tuple[str, Resources]]:
    """The real app over real HTTP against these settings' servers."""
    from tests.support.live_server import serve  # noqa: PLC0415
    from web.app import create_app  # noqa: PLC0415

    res = Resources(settings)
    try:
        with serve(create_app(settings, res)) as url:
            yield url, res
    finally:
        res.close()
