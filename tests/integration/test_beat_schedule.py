"""The periodic jobs (DESIGN.md §7): the schedule, its tasks in the Celery app, and a real
beat + worker expiring a payment within one interval."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from beat_schedule import build_beat_schedule
from config import Settings
from domain.models import Payment, PaymentEvent
from services.expiry import EXPIRE_PAYMENTS_ACTOR
from tests.support.factories import make_order, make_payment
from tests.support.processes import stop_process_group, wait_until
from tests.support.worker import start_beat

JOBS = {  # task name -> interval with SWEEP_INTERVAL_SECONDS = 7
    "maintenance.expire_payments": 7.0,
    "maintenance.expire_orders": 300.0,
    "maintenance.redeliver_callbacks": 7.0,
    "maintenance.sync_pending": 300.0,
}


def test_the_schedule_has_the_four_jobs_with_intervals_from_settings(settings: Settings):
    schedule = build_beat_schedule(replace(settings, sweep_interval_seconds=7))

    assert {entry["task"]: entry["schedule"] for entry in schedule.values()} == JOBS
    for entry in schedule.values():
        # A tick nobody consumed in time is dropped, never replayed in a pile.
        assert 0 < entry["options"]["expires"] <= entry["schedule"]
        assert entry["options"]["queue"] == "maintenance"


# Loads the app the way `celery -A workers.app worker|beat` does, in a clean process.
DESCRIBE_APP = """
import json
from workers.app import celery
celery.loader.import_default_modules()
print(json.dumps({
    "tasks": {name: {"acks_late": t.acks_late, "ignore_result": t.ignore_result}
              for name, t in celery.tasks.items() if not name.startswith("celery.")},
    "beat": {key: entry["task"] for key, entry in celery.conf.beat_schedule.items()},
}))
"""


def test_every_scheduled_task_is_registered_in_the_celery_app(stack_env):
    done = subprocess.run([sys.executable, "-c", DESCRIBE_APP], env=stack_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    app = json.loads(done.stdout.strip().splitlines()[-1])

    assert sorted(app["beat"].values()) == sorted(JOBS)
    missing = set(JOBS) - set(app["tasks"])
    assert not missing, f"scheduled but not registered: {missing}"
    for name in ("maintenance.expire_payments", "maintenance.expire_orders",
                 "maintenance.sync_pending"):
        assert app["tasks"][name] == {"acks_late": True, "ignore_result": True}


def test_a_real_beat_and_worker_expire_a_payment_within_one_interval(
        stack_env, celery_worker, clean_db, tmp_path):
    res = clean_db
    soon = datetime.now(UTC) + timedelta(seconds=1)
    due_soon = make_payment(res, make_order(res), expires_at=soon)
    fresh = make_payment(res, make_order(res))

    env = dict(stack_env, SWEEP_INTERVAL_SECONDS="1")
    log_path = tmp_path / "beat.log"
    beat = start_beat(env, log_path, tmp_path / "beat-schedule")
    try:
        started = time.monotonic()
        wait_until(lambda: _status(res, due_soon) == "expired", timeout=30,
                   message=f"beat to expire the payment (beat log: {log_path})")
        elapsed = time.monotonic() - started
    finally:
        stop_process_group(beat, signal.SIGTERM)

    print(f"expired {elapsed:.1f} s after beat started (interval 1 s, due after 1 s)")
    with res.uow() as uow:
        actors = uow.session.execute(
            select(PaymentEvent.actor).where(PaymentEvent.payment_id == due_soon,
                                             PaymentEvent.event == "payment_expired")).all()
    assert [a for (a,) in actors] == [EXPIRE_PAYMENTS_ACTOR]
    assert _status(res, fresh) == "init"
    assert "maintenance.expire_payments" in log_path.read_text()


def _status(res, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()
