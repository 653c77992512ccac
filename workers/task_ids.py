"""The one check every task that takes a row id makes of its message first."""

from __future__ import annotations

import logging

from domain.ids import is_int

log = logging.getLogger(__name__)


def seconds_argument(value: object) -> float | None:
    """An optional age in seconds passed by an operator or a test (beat sends none)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(float(value), 0.0)
    return None


def checked_id(task_name: str, value: object) -> int | None:
    """The message's id, or None (logged) when it is not an integer. Such a message was not
    sent by our code, and no retry can make it one: the task drops it."""
    if is_int(value):
        return value
    log.error("%s: ignoring a message with a non-integer id %r", task_name, value)
    return None
