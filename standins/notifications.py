"""The provider doubles' notifications to the merchant: signed afresh on every attempt and
retried on the provider's own published schedule until the merchant accepts one.

Each double registers its NotificationFormat in `standins/<name>/notify.py` (imported by
standins/formats.py): `render` makes the headers and body of one
attempt (so each is signed with a fresh timestamp and nonce, as the real providers do),
`accepted` reads the merchant's answer the way that provider does (WeChat Pay: any
200/204; Alipay: the body `success`), and `schedule` is the wait before each retry.

An attempt is claimed in one short transaction (attempt counted, next slot set) and its
result recorded in another; the HTTP call holds no lock and no transaction. A duplicate
task message finds the next slot in the future and only reschedules itself, so one
notification is never sent by two workers at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from adapters.resources import Resources
from config import Settings
from services.transitions import utc_now
from standins.models import StandinNotification

log = logging.getLogger(__name__)

DELIVER_TASK = "standins.deliver_notification"
SEND_TIMEOUT = (3.0, 10.0)  # connect, read: the merchant should answer fast
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class NotificationFormat:
    render: Callable[[Settings, Mapping[str, Any]], tuple[dict[str, str], bytes]]
    accepted: Callable[[int, bytes], bool]
    schedule: tuple[float, ...]  # seconds to wait after the 1st, 2nd, ... failed attempt


_FORMATS: dict[str, NotificationFormat] = {}


def register_format(provider: str, fmt: NotificationFormat) -> None:
    _FORMATS[provider] = fmt


def format_for(provider: str) -> NotificationFormat:
    if provider not in _FORMATS:
        # The doubles register on import; a worker imports them with its tasks.
        import standins.formats  # noqa: F401
    return _FORMATS[provider]


@dataclass(frozen=True)
class AttemptOutcome:
    """What the task should do next: run again in `retry_in` seconds, or stop."""

    state: str  # the notification's status afterwards, or "missing"
    retry_in: float | None = None


def queue_notification(session: Session, *, provider: str, url: str,
                       payload: Mapping[str, Any]) -> int:
    """A notification row, in the caller's transaction; send its id after commit."""
    return int(session.execute(
        insert(StandinNotification)
        .values(provider=provider, url=url, payload=dict(payload), status="pending")
        .returning(StandinNotification.id)).scalar_one())


def send_after_commit(res: Resources, uow: UnitOfWork, ids: Iterable[int]) -> None:
    """A failed send is only logged by the queue: the row stays pending (it is a
    stand-in: nothing sweeps it; send it again with the task by hand if ever needed)."""
    def send(notification_id: int) -> Callable[[], None]:
        def hook() -> None:
            res.queue.send(DELIVER_TASK, notification_id)
        return hook

    for notification_id in ids:
        uow.after_commit(send(notification_id))


def retry_delay(fmt: NotificationFormat, attempts_made: int, scale: float) -> float | None:
    """Seconds before the next attempt after `attempts_made` failures; None: give up."""
    if attempts_made > len(fmt.schedule):
        return None
    return fmt.schedule[attempts_made - 1] * scale


def attempt_notification(res: Resources, notification_id: int) -> AttemptOutcome:
    """One attempt (the task's work). Safe to call any time: a notification that is gone,
    finished or not yet due is left as it is."""
    with res.uow() as uow:
        session = uow.session
        row = session.get(StandinNotification, notification_id, with_for_update=True)
        if row is None:
            return AttemptOutcome("missing")
        if row.status != "pending":
            return AttemptOutcome(row.status)
        now = utc_now(session)
        if row.not_before > now:
            return AttemptOutcome("pending", (row.not_before - now).total_seconds())
        fmt = format_for(row.provider)
        row.attempts += 1
        delay = retry_delay(fmt, row.attempts, res.settings.standin_retry_scale)
        # Claim this slot: a duplicate message now finds the next attempt in the future.
        row.not_before = now + timedelta(seconds=delay if delay is not None else 3600)
        row.updated_at = now
        attempt, url, payload, provider = row.attempts, row.url, dict(row.payload), row.provider
        uow.commit()

    status, error = _post(fmt, res.settings, url, payload)
    return _record_attempt(res, notification_id, provider, attempt, status, error)


def _post(fmt: NotificationFormat, settings: Settings, url: str,
          payload: Mapping[str, Any]) -> tuple[int | None, str | None]:
    headers, body = fmt.render(settings, payload)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT,
                                 allow_redirects=False)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
    if fmt.accepted(response.status_code, response.content):
        return response.status_code, None
    return response.status_code, (f"HTTP {response.status_code}: "
                                  f"{response.text[:300]}")[:MAX_ERROR_LENGTH]


def _record_attempt(res: Resources, notification_id: int, provider: str, attempt: int,
                    status: int | None, error: str | None) -> AttemptOutcome:
    with res.uow() as uow:
        session = uow.session
        row = session.get(StandinNotification, notification_id, with_for_update=True)
        if row is None or row.status != "pending":
            return AttemptOutcome(row.status if row else "missing")
        now = utc_now(session)
        row.last_status, row.last_error, row.updated_at = status, error, now
        retry_in: float | None = None
        if error is None:
            row.status, row.delivered_at = "delivered", now
        elif retry_delay(format_for(provider), attempt, res.settings.standin_retry_scale) is None:
            row.status = "abandoned"
            log.error("%s notification %s abandoned after %s attempts: %s", provider,
                      notification_id, attempt, error)
        else:
            log.info("%s notification %s attempt %s failed: %s", provider, notification_id,
                     attempt, error)
            retry_in = max(0.0, (row.not_before - now).total_seconds())
        state = row.status
        uow.commit()
    return AttemptOutcome(state, retry_in)


def notification_views(session: Session, provider: str) -> list[dict[str, Any]]:
    """Every notification of one double, oldest first (its test page and the tests)."""
    rows = session.scalars(select(StandinNotification)
                           .where(StandinNotification.provider == provider)
                           .order_by(StandinNotification.id)).all()
    return [{"id": r.id, "url": r.url, "status": r.status, "attempts": r.attempts,
             "last_status": r.last_status, "last_error": r.last_error,
             "payload": r.payload} for r in rows]
