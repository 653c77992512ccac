"""How much work is waiting: the inbox backlog and the broker's queue depths.

Read at scrape time by GET /metrics (web/scrape_gauges.py), so they describe the
system as it is now, whichever process did the work.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from sqlalchemy import func, select, text

from adapters.celery_app import QUEUES
from adapters.resources import Resources
from domain.models import ProviderCallback
from domain.statuses import CallbackStatus

# A scrape must stay cheap whatever the backlog: the count uses
# ix_provider_callbacks_status_received and stops at BACKLOG_COUNT_CAP rows (the gauge
# then reads the cap: far past any alert threshold), and a sick database costs at most
# COUNT_TIMEOUT.
COUNT_TIMEOUT = "2s"
BACKLOG_COUNT_CAP = 100_000
# kombu's Redis transport keeps a queue's prioritised messages under "<queue>\x06\x16<n>".
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def inbox_backlog(res: Resources) -> int:
    """Callbacks stored but not yet processed (inbox rows still `received`), counted up
    to BACKLOG_COUNT_CAP."""
    waiting = (select(ProviderCallback.id)
               .where(ProviderCallback.status == CallbackStatus.RECEIVED.value)
               .limit(BACKLOG_COUNT_CAP).subquery())
    with res.uow() as uow:
        uow.session.execute(text(f"SET LOCAL statement_timeout = '{COUNT_TIMEOUT}'"))
        count: int = uow.session.execute(
            select(func.count()).select_from(waiting)).scalar_one()
    return count


def oldest_received_age(res: Resources) -> float:
    """Seconds since the oldest inbox row still `received` arrived, by the database's
    clock; 0 when there is none. The min() is read off the (status, received_at) index."""
    with res.uow() as uow:
        uow.session.execute(text(f"SET LOCAL statement_timeout = '{COUNT_TIMEOUT}'"))
        oldest = select(func.min(ProviderCallback.received_at)).where(
            ProviderCallback.status == CallbackStatus.RECEIVED.value).scalar_subquery()
        age = uow.session.execute(select(func.coalesce(
            func.extract("epoch", func.now() - oldest), 0))).scalar_one()
    return float(age)


def queue_depths(broker: redis.Redis, queues: Iterable[str] = QUEUES) -> dict[str, int]:
    """Messages waiting in each Celery queue on a Redis broker (LLEN of its keys)."""
    names = list(queues)
    pipe = broker.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{name}{_PRIORITY_SEP}{step}")
    lengths = pipe.execute()
    per_queue = 1 + len(_PRIORITY_STEPS)
    return {name: sum(lengths[i * per_queue:(i + 1) * per_queue])
            for i, name in enumerate(names)}
