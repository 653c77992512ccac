"""kombu's Redis transport, with one crash worked around (registered for redis:// URLs).

When the broker vanishes while a worker holds unacked messages (acks_late tasks, or a
retry waiting for its countdown), Celery closes the broken connection
(celery.worker.consumer.Consumer.on_connection_error_after_connected). Closing the
channel restores the unacked messages (kombu.transport.virtual.Channel.close ->
QoS.restore_unacked_once), and by then the transport's `client` is None, so building a
Redis client for the restore raises `AttributeError: 'NoneType' object has no attribute
'hostname'` in Channel._connparams. That is not one of the connection errors Celery
ignores there, so the worker dies with "Unrecoverable error" instead of reconnecting.
Upstream reports of this very failure (a channel closed after its transport lost its
client, crashing in `_connparams` on `conninfo.hostname`): celery/kombu#582 "Error on
restarting Gossip", and on broker restarts celery/celery#7705 "celery work recover failed
as redis broker restart". No kombu release up to 5.7.0 (the newest, installed here)
fixes it.

The workaround: a restore that cannot reach Redis (the transport's connection is
already closed) is skipped with a warning instead of crashing. Nothing is lost by
skipping it: an unacked message also stays in Redis' unacked index, where kombu's
visibility-timeout restore puts it back on its queue; and if Redis itself lost its data,
the work is stored in PostgreSQL and the sweeps send it again (README, Periodic jobs).
Remove this module when kombu guards the restore itself.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_unacked(self, client: Any = None) -> Any:
        if client is None and self.channel.connection.client is None:
            delivered: Any = self._delivered
            log.warning("broker connection closed: %d unacked message(s) not restored by "
                        "this worker; Redis restores them after the visibility timeout "
                        "(celery/kombu#582)", len(delivered))
            delivered.clear()
            return None
        return super().restore_unacked(client)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


def register() -> None:
    """Make redis:// and rediss:// broker URLs use this transport (idempotent)."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
