"""Rows changed while an expiry batch statement is already running (DESIGN.md §7).

The batch statement locks its due rows (FOR UPDATE SKIP LOCKED) and moves them in the
same statement. A row committed in a new version after that statement took its snapshot,
but before its scan reached the row, is the case to get right: a payment paid by a
callback in that gap must not be expired, and one merely touched (still due) must not be
lost but expired, once, by a later batch or run.

The gap is made wide on purpose, with no change to the sweep: the sweep runs as a role of
its own under a row-level security policy on `payments` whose check calls a function
that, for the "gate" payments, waits on an advisory lock the test holds, in a batch
statement only (the query that draws the run's lanes passes). There is one gate in each
of the run's two lanes (services/expiry._Lanes), the first row its scan meets. While
every batch statement that started waits
there, with its snapshot taken, the test pays one due payment and touches another, both
just after the first lane's gate, on its own connection (the policy does not apply to it)
and commits; then it lets go. The function also records which payments each backend
checked, which shows that a statement that started before the commit did go on to meet
those rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.engine import make_url

from adapters.resources import Resources
from domain.models import Payment, PaymentEvent
from domain.statuses import ACTIVE_PAYMENT_STATUSES, PaymentStatus
from services.maintenance import expire_stale_payments
from services.transitions import NOW, lock_payment_status, transition_payment
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with

pytestmark = pytest.mark.slow

GATE_LOCK = 7_202_612  # the advisory lock key the gate waits on
OTHERS = 5  # due payments nobody touches: the batches have work besides the two raced


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


@pytest.fixture
def gated_sweeper(clean_db: Resources, settings, private_redis) -> Iterator[Resources]:
    """Resources on a role of its own, whose scans of `payments` pass the gate; on the
    test's private Redis, so nothing it sends reaches the session's worker."""
    engine = clean_db.db.engine
    role = f"test_sweeper_{uuid.uuid4().hex[:8]}"
    _install_gate(engine, role)
    url = make_url(settings.database_url).set(username=role, password=None)
    sweeper = Resources(settings_with(settings, redis_url=private_redis.url,
                                      database_url=url.render_as_string(hide_password=False)))
    try:
        yield sweeper
    finally:
        sweeper.close()
        _remove_gate(engine, role)


def _install_gate(engine: Engine, role: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        for grant in ("USAGE ON SCHEMA public",
                      "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public",
                      "USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public"):
            conn.execute(text(f"GRANT {grant} TO {role}"))
        conn.execute(text("CREATE TABLE test_gate (payment_id bigint NOT NULL)"))
        # A check is one transaction's (backend, now(): its start) look at a payment.
        conn.execute(text("CREATE TABLE test_gate_checks (seq bigserial PRIMARY KEY, "
                          "backend int NOT NULL, xact_start timestamptz NOT NULL, "
                          "payment_id bigint NOT NULL)"))
        conn.execute(text(f"GRANT ALL ON test_gate, test_gate_checks, test_gate_checks_seq_seq "
                          f"TO {role}"))
        conn.execute(text(f"""
            CREATE FUNCTION test_gate_check(checked bigint) RETURNS boolean
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                INSERT INTO test_gate_checks (backend, xact_start, payment_id)
                VALUES (pg_backend_pid(), now(), checked);
                IF EXISTS (SELECT 1 FROM test_gate WHERE payment_id = checked)
                   AND current_query() LIKE '%SKIP LOCKED%' THEN
                    PERFORM pg_advisory_xact_lock_shared({GATE_LOCK});
                END IF;
                RETURN true;
            END $$"""))
        # Row-level security does not apply to the table's owner nor to superusers (the
        # test's own connections), only to the sweeper's role.
        conn.execute(text(f"CREATE POLICY test_gate ON payments TO {role} "
                          "USING (test_gate_check(id))"))
        conn.execute(text("ALTER TABLE payments ENABLE ROW LEVEL SECURITY"))


def _remove_gate(engine: Engine, role: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE payments DISABLE ROW LEVEL SECURITY"))
        conn.execute(text("DROP POLICY IF EXISTS test_gate ON payments"))
        conn.execute(text("DROP FUNCTION IF EXISTS test_gate_check(bigint)"))
        conn.execute(text("DROP TABLE IF EXISTS test_gate, test_gate_checks"))
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))


def _gate_waiters(engine: Engine, role: str) -> list[tuple[int, datetime]]:
    """The sweeper's transactions waiting at the gate, as (backend, xact_start)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT pid, xact_start FROM pg_stat_activity WHERE usename = :role "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"), {"role": role})]


def _checked_after_the_gate(engine: Engine, waiters: list[tuple[int, datetime]],
                            gate: int) -> set[int]:
    """Payments the waiting transactions checked after they had checked the gate."""
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT c.payment_id FROM test_gate_checks c JOIN test_gate_checks g "
            "USING (backend, xact_start) WHERE g.payment_id = :gate AND c.seq > g.seq "
            "AND (c.backend, c.xact_start) IN (SELECT * FROM unnest(:pids, :starts))"),
            {"gate": gate, "pids": [w[0] for w in waiters],
             "starts": [w[1] for w in waiters]}).scalars())


def test_rows_changed_after_a_batch_statement_began_are_never_wrongly_expired(
        clean_db, gated_sweeper):
    res = clean_db
    engine = res.db.engine
    role = make_url(gated_sweeper.settings.database_url).username
    # All due, oldest first. The lanes run from the oldest to 3.5 h ago, and from there on.
    gate = make_payment(res, make_order(res), created_at=ago(hours=5))
    paid = make_payment(res, make_order(res), created_at=ago(hours=4, minutes=50))
    touched = make_payment(res, make_order(res), created_at=ago(hours=4, minutes=50))
    second_gate = make_payment(res, make_order(res), created_at=ago(hours=3))
    others = [make_payment(res, make_order(res), created_at=ago(hours=2))
              for _ in range(OTHERS)]
    not_due = make_payment(res, make_order(res))  # created now: 30 minutes to go
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO test_gate VALUES (:a), (:b)"),
                     {"a": gate, "b": second_gate})

    with engine.connect() as holder, ThreadPoolExecutor(1) as pool:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": GATE_LOCK})
        holder.commit()
        sweep = pool.submit(expire_stale_payments, gated_sweeper)
        deadline = time.monotonic() + 20
        while not (waiters := _gate_waiters(engine, role)):
            assert not sweep.done(), f"the sweep never met the gate: {sweep.result()}"
            assert time.monotonic() < deadline, "no batch statement reached the gate"
            time.sleep(0.01)
        time.sleep(0.3)  # the other batch loop of the run reaches its gate too
        waiters = _gate_waiters(engine, role)

        # Meanwhile, with those statements' snapshots taken: a callback pays one due
        # payment, and another is touched (a new row version, still due).
        with res.uow() as callback:
            assert lock_payment_status(callback.session, paid) == PaymentStatus.INIT
            transition_payment(callback.session, paid, PaymentStatus.SUCCEEDED,
                               actor="test:callback", event="payment_succeeded",
                               values={"paid_at": NOW},
                               allowed_from=ACTIVE_PAYMENT_STATUSES)
            callback.session.execute(update(Payment).where(Payment.id == touched)
                                     .values(updated_at=func.now()))
            callback.commit()

        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": GATE_LOCK})
        holder.commit()
        first_run = sweep.result(timeout=60)

    # The interleaving happened: a batch waiting at the gate before the commit went on,
    # with its earlier snapshot, to meet both changed rows.
    met_after_gate = _checked_after_the_gate(engine, waiters, gate)
    assert {paid, touched} <= met_after_gate, (waiters, met_after_gate)

    assert _status(res, paid) == "succeeded"  # never expired
    second_run = expire_stale_payments(gated_sweeper)  # whatever the first left due
    swept = (gate, touched, second_gate, *others)
    statuses = {pid: _status(res, pid) for pid in swept}
    assert statuses == dict.fromkeys(statuses, "expired"), (first_run, second_run)
    assert first_run["changed"] + second_run["changed"] == len(swept)
    assert _status(res, paid) == "succeeded" and _status(res, not_due) == "init"
    assert _events(res, paid) == ["payment_succeeded"]
    for pid in swept:
        assert _events(res, pid) == ["payment_expired"], pid  # once each
    assert expire_stale_payments(gated_sweeper)["changed"] == 0


def _status(res: Resources, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()


def _events(res: Resources, payment_id: int) -> list[str]:
    with res.uow() as uow:
        return list(uow.session.execute(
            select(PaymentEvent.event).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id)).scalars())
