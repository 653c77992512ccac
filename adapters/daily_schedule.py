"""A beat schedule that fires once a day at a wall-clock time in a given time zone.

Celery's crontab with a `nowfun` in another zone than the app's (UTC here) computes its
next run with the two clocks mixed up (checked on Celery 5.7: a 10:00 Asia/Shanghai job
reported due again right after it ran), and setting the app's zone would move every
other job. This one is small enough to be obviously right: the next run is the first
HH:MM in the zone after the last one, found with zoneinfo (DST included).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import BaseSchedule, schedstate


class daily_at(BaseSchedule):  # noqa: N801 - named like Celery's own `crontab`, `schedule`
    def __init__(self, hour: int, minute: int, zone: str) -> None:
        super().__init__()
        self.hour, self.minute, self.zone = hour, minute, zone

    def next_after(self, moment: datetime) -> datetime:
        local = _aware(moment).astimezone(ZoneInfo(self.zone))
        day = local.date()
        while True:
            candidate = datetime(day.year, day.month, day.day, self.hour, self.minute,
                                 tzinfo=ZoneInfo(self.zone))
            if candidate > local:
                return candidate.astimezone(UTC)
            day += timedelta(days=1)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.next_after(last_run_at) - datetime.now(UTC)

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = datetime.now(UTC)
        due = self.next_after(last_run_at) <= now
        upcoming = self.next_after(now) if due else self.next_after(last_run_at)
        return schedstate(due, max((upcoming - now).total_seconds(), 1.0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, daily_at) and (self.hour, self.minute, self.zone) == (
            other.hour, other.minute, other.zone)

    def __hash__(self) -> int:
        return hash((self.hour, self.minute, self.zone))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.hour, self.minute, self.zone)

    def __repr__(self) -> str:
        return f"<daily_at {self.hour:02d}:{self.minute:02d} {self.zone}>"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
