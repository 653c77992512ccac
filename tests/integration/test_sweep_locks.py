"""README's table of the sweeps' locks (Periodic jobs), key by key: a run that finds its
job's key held answers what the table says and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.resources import Resources
from domain.models import Payment
from services import maintenance
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with

JOBS = [  # (job, its lock key, what a run says while someone else holds it)
    (maintenance.expire_stale_payments, "maintenance-lock:expire_payments",
     {"skipped": "already running"}),
    (maintenance.expire_stale_orders, "maintenance-lock:expire_orders",
     {"skipped": "already running"}),
    (maintenance.sync_processing_payments, "maintenance-lock:sync_pending",
     {"skipped": "already running"}),
    (maintenance.resend_lost_refunds, "maintenance-lock:resend_refunds",
     {"skipped": "already running"}),
    (maintenance.resend_lost_payment_starts, "maintenance-lock:resend_payment_starts",
     {"skipped": "already running"}),
    (maintenance.purge_idempotency_keys, "maintenance-lock:purge_idempotency_keys",
     {"skipped": "already running"}),
    (maintenance.redeliver_stuck_callbacks, "sweep-lock:redeliver-callbacks", {"changed": 0}),
]


@pytest.fixture
def res(clean_db, settings, private_redis):
    private = Resources(settings_with(settings, redis_url=private_redis.url))
    yield private
    private.close()


@pytest.mark.parametrize(("job", "key", "answer"), JOBS, ids=[key for _, key, _ in JOBS])
def test_a_run_meets_the_lock_readme_names(res, job, key, answer):
    due = make_payment(res, make_order(res), expires_at=datetime.now(UTC) - timedelta(1))
    res.redis.set(key, "another run", ex=60)
    result = job(res)
    result.pop("seconds", None)
    assert result == answer
    assert res.redis.get(key) == b"another run"  # not taken over, not released
    with res.uow() as uow:
        assert uow.session.execute(select(Payment.status).where(Payment.id == due)
                                   ).scalar_one() == "init"


def test_the_lock_ttls_are_the_ones_readme_states():
    assert maintenance.LOCK_TTL_SECONDS == 300 and maintenance.MAX_RUN_SECONDS == 240
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "| 300 s | `{\"skipped\": \"already running\"}` |" in readme
    assert "stop starting new batches after 240 s" in readme
