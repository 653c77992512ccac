"""The periodic jobs (DESIGN.md §7): the schedule, its tasks in the Celery app, and a real
beat + worker expiring a payment within one interval."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy import func, select

from adapters.daily_schedule import daily_at
from beat_schedule import build_beat_schedule
from config import Settings
from domain.models import Payment, PaymentEvent
from services.expiry import EXPIRE_PAYMENTS_ACTOR
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import env_with, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.worker import start_beat, start_worker

JOBS = {  # task name -> interval with SWEEP_INTERVAL_SECONDS = 7
    "maintenance.expire_payments": 7.0,
    "maintenance.expire_orders": 300.0,
    "maintenance.redeliver_callbacks": 7.0,
    "maintenance.sync_pending": 300.0,
    "maintenance.resend_refunds": 7.0,
    "maintenance.resend_payment_starts": 7.0,
    "maintenance.purge_idempotency_keys": 3600.0,
    "maintenance.redeliver_webhooks": 7.0,  # lost webhook deliveries (DESIGN.md §9)
    "maintenance.check_refunds": 300.0,  # refunds accepted but never confirmed
    # dev and test only (the stand-ins are mounted there): their lost deliveries
    "standins.resume_deliveries": 7.0,
}
# Once a day at a wall-clock time, not every so many seconds (issue #17).
DAILY = {"maintenance.reconcile"}


def test_the_stand_ins_job_is_scheduled_only_where_the_stand_ins_run(settings: Settings):
    production = build_beat_schedule(replace(settings, environment="production"))
    assert "standins.resume_deliveries" not in {e["task"] for e in production.values()}


def test_the_schedule_has_every_job_with_intervals_from_settings(settings: Settings):
    schedule = build_beat_schedule(replace(settings, sweep_interval_seconds=7))
    intervals = {k: e for k, e in schedule.items() if e["task"] not in DAILY}

    assert {entry["task"]: entry["schedule"] for entry in intervals.values()} == JOBS
    for entry in intervals.values():
        # A tick nobody consumed in time is dropped, never replayed in a pile.
        assert 0 < entry["options"]["expires"] <= entry["schedule"]
        assert entry["options"]["queue"] == "maintenance"


def test_the_reconciliation_runs_daily_at_its_time_in_its_zone(settings: Settings):
    assert build_beat_schedule(settings)["reconcile"]["schedule"] == daily_at(
        10, 0, "Asia/Shanghai")
    entry = build_beat_schedule(replace(settings, reconcile_at=(4, 30),
                                        reconcile_tz="Europe/Berlin"))["reconcile"]
    assert entry["task"] == "maintenance.reconcile"
    assert entry["schedule"] == daily_at(4, 30, "Europe/Berlin")
    assert entry["options"] == {"expires": 6 * 3600.0, "queue": "maintenance"}


# Loads the app the way `celery -A workers.app worker|beat` does, in a clean process.
DESCRIBE_APP = """
import json
from workers.app import celery
celery.loader.import_default_modules()
print(json.dumps({
    "tasks": {name: {"acks_late": t.acks_late, "ignore_result": t.ignore_result}
              for name, t in celery.tasks.items() if not name.startswith("celery.")},
    "retries": {name: [getattr(t, option, None) for option in (
                    "max_retries", "retry_backoff", "retry_backoff_max", "retry_jitter")]
                for name, t in celery.tasks.items() if not name.startswith("celery.")},
    "beat": {key: entry["task"] for key, entry in celery.conf.beat_schedule.items()},
}))
"""


def _describe_app(stack_env) -> dict:
    done = subprocess.run([sys.executable, "-c", DESCRIBE_APP], env=stack_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_scheduled_task_is_registered_in_the_celery_app(stack_env):
    app = _describe_app(stack_env)

    assert sorted(app["beat"].values()) == sorted({*JOBS, *DAILY})
    missing = {*JOBS, *DAILY} - set(app["tasks"])
    assert not missing, f"scheduled but not registered: {missing}"
    for name in {*JOBS, *DAILY}:
        assert app["tasks"][name] == {"acks_late": True, "ignore_result": True}


@pytest.mark.parametrize(("task", "longest", "readme"), [
    ("payments.initiate", 183, "at most about 3\n   minutes"),
    ("refunds.execute", 1411, "at most about 23 minutes"),
])
def test_the_retry_schedules_are_the_ones_readme_states(stack_env, task, longest, readme):
    """Each countdown at its maximum, as Celery computes it; full jitter then picks each
    between 0 and that, so the average is about half."""
    max_retries, factor, maximum, jitter = _describe_app(stack_env)["retries"][task]
    assert jitter is True
    assert sum(get_exponential_backoff_interval(int(factor), n, maximum, full_jitter=False)
               for n in range(max_retries)) == longest
    assert readme in (Path(__file__).parents[2] / "README.md").read_text()


def test_the_reconciliation_retry_schedule_is_the_one_readme_states(stack_env):
    first_wait = 300  # workers/tasks/maintenance.py RECONCILE_RETRY_SECONDS
    max_retries, *_ = _describe_app(stack_env)["retries"]["maintenance.reconcile"]
    waits = [first_wait * 2 ** n for n in range(max_retries)]
    assert (max_retries, sum(waits)) == (6, 5 * 3600 + 15 * 60)
    assert "the last about 5 h 15 min after the first" in (
        Path(__file__).parents[2] / "README.md").read_text()


# What "within one interval" allows on top of the interval: the worker taking the message
# and running the sweep on a loaded 2-core machine (measured: well under 0.5 s).
PICKUP_MARGIN = timedelta(seconds=2)


def test_a_real_beat_and_worker_expire_a_payment_within_one_interval(
        stack_env, settings, private_redis, clean_db, tmp_path):
    """On a broker and worker of its own: every job ticks each second here, and what beat
    sent must not outlive the test on the session's worker (a redelivery run it left
    there would take another test's stuck callback)."""
    res = clean_db
    interval = timedelta(seconds=1)
    # Due a while after beat starts, so beat is ticking by then: what is measured is the
    # time from due to expired, not beat's start-up. Sixteen payments fall due a quarter
    # second apart, at every phase of a tick, so one due just after a tick is measured too.
    due_at = _db_now(res) + timedelta(seconds=10)
    due = {make_payment(res, make_order(res), expires_at=due_at + timedelta(seconds=k / 4)):
           due_at + timedelta(seconds=k / 4) for k in range(16)}
    fresh = make_payment(res, make_order(res))

    env = dict(env_with(stack_env, settings_with(settings, redis_url=private_redis.url)),
               SWEEP_INTERVAL_SECONDS="1")
    worker = start_worker(env, tmp_path / "worker.log")
    log_path = tmp_path / "beat.log"
    beat = start_beat(env, log_path, tmp_path / "beat-schedule")
    try:
        wait_until(lambda: "(maintenance.expire_payments)" in log_path.read_text(),
                   timeout=30, message=f"beat's first tick (beat log: {log_path})")
        assert _db_now(res) < due_at, "beat took too long to start for this measurement"
        assert {_status(res, p) for p in due} == {"init"}
        wait_until(lambda: {_status(res, p) for p in due} == {"expired"}, timeout=40,
                   message=f"beat to expire the payments (beat log: {log_path})")
    finally:
        stop_process_group(beat, signal.SIGTERM)
        stop_process_group(worker, signal.SIGTERM)

    with res.uow() as uow:
        expiries = uow.session.execute(
            select(PaymentEvent.payment_id, PaymentEvent.actor, PaymentEvent.created_at)
            .where(PaymentEvent.payment_id.in_(due),
                   PaymentEvent.event == "payment_expired")).all()
    assert sorted(p for p, _, _ in expiries) == sorted(due)  # one expiry each
    assert {actor for _, actor, _ in expiries} == {EXPIRE_PAYMENTS_ACTOR}
    late = {p: at - due[p] for p, _, at in expiries}
    print(f"expired at most {max(late.values()).total_seconds():.2f} s after due "
          f"(interval 1 s)")
    assert max(late.values()) <= interval + PICKUP_MARGIN, late
    assert _status(res, fresh) == "init"


def _db_now(res) -> datetime:
    with res.uow() as uow:
        return uow.session.execute(select(func.now())).scalar_one()


def _status(res, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()
