"""A read-only look at a RabbitMQ broker: is it reachable, how many messages wait in a
queue. For GET /readyz and the payments_queue_depth gauge when BROKER_URL is amqp://
(with a Redis broker those read Redis itself: services/backlog.py).

Over plain AMQP (a passive queue.declare answers with the queue's ready-message count),
so nothing needs the management plugin. One connection per process, opened on first use
and opened again after any failure; calls are serialised (gunicorn threads share it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from kombu import Connection

CONNECT_TIMEOUT_SECONDS = 2


class AmqpBroker:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = Connection(self._url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              heartbeat=0)
            # One attempt, no retry loop: a probe must answer "down" within the connect
            # timeout, and the next scrape or probe tries again anyway.
            conn.ensure_connection(max_retries=0)
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # already broken: nothing more to free
                pass
            self._conn = None

    def ping(self) -> None:
        """Raises when the broker cannot be reached (a channel is opened and closed)."""
        with self._lock:
            try:
                channel = self._connection().channel()
                channel.close()
            except Exception:
                self._drop()
                raise

    def queue_depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue; a queue not declared yet (no worker or send has used
        it) holds none. Unacknowledged ones (a worker has them) are not counted, as
        Redis's LLEN does not count them either."""
        depths: dict[str, int] = {}
        with self._lock:
            try:
                conn = self._connection()
                for name in queues:
                    # A passive declare of a missing queue closes its channel (404): one
                    # channel per queue keeps that from spilling over to the next.
                    channel = conn.channel()
                    try:
                        _, count, _ = channel.queue_declare(queue=name, passive=True)
                        depths[name] = int(count)
                    except conn.channel_errors:
                        depths[name] = 0
                    finally:
                        try:
                            channel.close()
                        except Exception:  # closed by the broker's 404 already
                            pass
            except Exception:
                self._drop()
                raise
        return depths

    def close(self) -> None:
        with self._lock:
            self._drop()
