"""`payments sweep <job>`, run as a real subprocess against the test servers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from domain.models import Order, Payment, ProviderCallback
from tests.support.factories import make_order, make_payment

PAYMENTS = str(Path(sys.executable).parent / "payments")


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def sweep(env: dict[str, str], job: str) -> tuple[dict[str, Any], str]:
    """The one JSON line the command prints, and its log (stderr)."""
    done = subprocess.run([PAYMENTS, "sweep", job], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.strip().splitlines()
    return json.loads(line), done.stderr


def test_sweep_expire_payments_prints_a_json_line_with_the_count_and_logs_it(
        stack_env, clean_db):
    due = [make_payment(clean_db, make_order(clean_db), created_at=ago(minutes=31))
           for _ in range(2)]
    fresh = make_payment(clean_db, make_order(clean_db))

    output, log = sweep(stack_env, "expire-payments")

    assert output["job"] == "expire-payments" and output["seconds"] >= 0
    assert output["result"]["changed"] == 2 and output["result"]["complete"] is True
    assert "maintenance expire_payments: changed 2 rows" in log
    with clean_db.uow() as uow:
        statuses = dict(uow.session.execute(select(Payment.id, Payment.status)).all())
    assert statuses == {due[0]: "expired", due[1]: "expired", fresh: "init"}

    assert sweep(stack_env, "expire-payments")[0]["result"]["changed"] == 0


def test_sweep_expire_orders(stack_env, clean_db):
    stale = make_order(clean_db, created_at=ago(hours=25))
    active = make_payment(clean_db, stale, created_at=ago(minutes=5))
    young = make_order(clean_db)

    output, log = sweep(stack_env, "expire-orders")

    assert output["result"]["orders_expired"] == 1
    assert output["result"]["payments_cancelled"] == 1
    assert "maintenance expire_orders: changed 2 rows" in log
    with clean_db.uow() as uow:
        orders = dict(uow.session.execute(select(Order.id, Order.status)).all())
        payment = uow.session.execute(
            select(Payment.status).where(Payment.id == active)).scalar_one()
    assert orders == {stale: "expired", young: "pending"} and payment == "cancelled"


def test_sweep_sync_checks_only_quiet_processing_payments(
        stack_env, clean_db):
    quiet = make_payment(clean_db, make_order(clean_db), status="processing",
                         created_at=ago(minutes=5))
    just_started = make_payment(clean_db, make_order(clean_db), status="processing")

    output, _ = sweep(stack_env, "sync")

    # The quiet one is checked; it has no provider reference, so its status is unknown
    # and nothing changes (tests/integration/test_janitor.py covers real answers).
    assert output["result"]["checked"] == 1 and output["result"]["changed"] == 0
    assert output["result"]["provider_unknown"] == 1
    with clean_db.uow() as uow:
        statuses = set(uow.session.execute(
            select(Payment.status).where(Payment.id.in_([quiet, just_started]))).scalars())
    assert statuses == {"processing"}


def test_sweep_redeliver_enqueues_a_stuck_callback_again(stack_env, clean_db):
    from tests.support.callbacks import event_body, store_callback

    payment = make_payment(clean_db, make_order(clean_db))
    stuck = store_callback(clean_db, event_body(payment))
    with clean_db.uow() as uow:  # received two minutes ago and never processed
        uow.session.execute(
            update(ProviderCallback).where(ProviderCallback.id == stuck)
            .values(received_at=text("now() - interval '2 minutes'"),
                    updated_at=text("now() - interval '2 minutes'")))
        uow.commit()

    output, log = sweep(stack_env, "redeliver")

    assert output["result"]["changed"] == 1
    assert "maintenance redeliver_callbacks: enqueued 1 callbacks again" in log
