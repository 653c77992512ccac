"""adapters/daily_schedule.py: beat's daily reconciliation tick at a wall-clock time."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from unittest.mock import patch

from adapters.daily_schedule import daily_at

TEN_IN_SHANGHAI = daily_at(10, 0, "Asia/Shanghai")  # 02:00 UTC


def due(schedule: daily_at, last_run: datetime, now: datetime) -> tuple[bool, float]:
    with patch("adapters.daily_schedule.datetime", wraps=datetime) as clock:
        clock.now.return_value = now
        state = schedule.is_due(last_run)
    return state.is_due, state.next


def test_it_fires_once_a_day_at_the_time_in_its_zone():
    ran = datetime(2026, 11, 30, 2, 0, 3, tzinfo=UTC)  # yesterday's run, 10:00:03 there
    assert due(TEN_IN_SHANGHAI, ran, datetime(2026, 12, 1, 1, 59, tzinfo=UTC)) == (
        False, 60.0)
    is_due, next_in = due(TEN_IN_SHANGHAI, ran, datetime(2026, 12, 1, 2, 0, 1, tzinfo=UTC))
    assert is_due and 86_398 < next_in <= 86_399
    today = datetime(2026, 12, 1, 2, 0, 2, tzinfo=UTC)
    assert due(TEN_IN_SHANGHAI, today, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))[0] is False


def test_the_next_run_follows_the_zone_through_daylight_saving():
    new_york = daily_at(10, 0, "America/New_York")
    assert new_york.next_after(datetime(2026, 3, 7, 16, tzinfo=UTC)) == datetime(
        2026, 3, 8, 14, tzinfo=UTC)  # EDT from that morning: 10:00 is 14:00 UTC
    assert new_york.next_after(datetime(2026, 3, 6, 16, tzinfo=UTC)) == datetime(
        2026, 3, 7, 15, tzinfo=UTC)  # EST: 15:00 UTC


def test_it_survives_beats_shelve():
    assert pickle.loads(pickle.dumps(TEN_IN_SHANGHAI)) == TEN_IN_SHANGHAI
