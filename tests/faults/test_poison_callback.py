"""A callback that fails every time ends `failed` with its error, not in an endless loop.

The failure is real: a trigger makes every UPDATE of that one payment raise, as a
bug or a broken row would. The real worker retries with backoff, the attempt
counter in PostgreSQL grows with each try, and after MAX_ATTEMPTS the inbox row
is marked `failed` with the error for an operator (who can replay it once fixed).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from domain.models import Payment, ProviderCallback
from services.callbacks import MAX_ATTEMPTS
from tests.support.callbacks import event_body, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow


def test_poison_callback_ends_failed_through_the_real_worker(clean_db, celery_worker):
    res = clean_db
    order_id = make_order(res)
    payment_id = make_payment(res, order_id, status="processing")
    callback_id = store_callback(res, event_body(payment_id, event_id="evt_poison"))
    with res.db.engine.begin() as conn:
        conn.execute(text(
            "CREATE OR REPLACE FUNCTION test_poison_worker() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'poisoned payment row'; END $$"))
        conn.execute(text(
            f"CREATE TRIGGER test_poison_worker BEFORE UPDATE ON payments FOR EACH ROW "
            f"WHEN (OLD.id = {payment_id}) EXECUTE FUNCTION test_poison_worker()"))
    try:
        assert res.queue.send("callbacks.process", callback_id)

        def inbox():
            with res.uow() as uow:
                return uow.session.execute(
                    select(ProviderCallback.status, ProviderCallback.attempts,
                           ProviderCallback.last_error)
                    .where(ProviderCallback.id == callback_id)).one()

        # backoff 0.5 + 1 + 2 + 4 + 8 s (plus jitter) before the sixth delivery gives up
        final = wait_until(lambda: (row := inbox()).status != "received" and row,
                           timeout=90, interval=0.5, message="the poison callback to fail")
    finally:
        with res.db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_poison_worker ON payments"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_poison_worker()"))

    assert final.status == "failed"
    assert final.attempts == MAX_ATTEMPTS + 1
    assert "gave up after 5 attempts" in final.last_error
    assert "poisoned payment row" in final.last_error
    with res.uow() as uow:
        assert uow.session.execute(select(Payment.status).where(Payment.id == payment_id)
                                   ).scalar_one() == "processing"
