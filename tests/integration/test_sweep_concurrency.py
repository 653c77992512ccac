"""The sweeps under concurrency: the run_once lock, two sweeps at once, 100k due payments
while successes keep committing. Real PostgreSQL, Redis and processes."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from adapters.resources import Resources
from adapters.run_once import lock_key, run_once
from config import Settings
from domain.models import Payment, PaymentEvent
from domain.statuses import ACTIVE_PAYMENT_STATUSES, PaymentStatus
from services.maintenance import expire_stale_payments
from services.transitions import NOW, transition_payment
from tests.support.processes import wait_until

PAYMENTS = str(Path(sys.executable).parent / "payments")

# One statement each: N pending orders and one init payment per order, created 31
# minutes ago (so due now) or just now (due in 30 minutes). Factories are far too slow
# for 100k rows.
BULK_PAYMENTS = text("""
WITH new_orders AS (
    INSERT INTO orders (order_number, user_id, total_amount, currency, status,
                        created_at, updated_at)
    SELECT 'bulk-' || :tag || '-' || g, 1, 100.00, 'CNY', 'pending', now(), now()
    FROM generate_series(1, :n) AS g
    RETURNING id
)
INSERT INTO payments (order_id, user_id, amount, currency, method, status, provider, attempt,
                      fee, refunded_amount, needs_review, created_at, updated_at, expires_at)
SELECT id, 1, 100.00, 'CNY', 'wechat', 'init', 'sandbox', 1, 0.60, 0, false,
       now() - CAST(:age AS interval), now() - CAST(:age AS interval),
       now() - CAST(:age AS interval) + interval '30 minutes'
FROM new_orders ORDER BY id
RETURNING id
""")


def bulk_payments(res: Resources, n: int, *, due: bool) -> list[int]:
    with res.uow() as uow:
        ids = uow.session.execute(BULK_PAYMENTS, {
            "tag": uuid.uuid4().hex[:8], "n": n,
            "age": "31 minutes" if due else "0 minutes"}).scalars().all()
        uow.commit()
    return sorted(int(i) for i in ids)


def expired_event_counts(res: Resources) -> tuple[int, int, int]:
    """(payment_expired events, distinct payments they name, payments expired)."""
    with res.uow() as uow:
        events, distinct = uow.session.execute(
            select(func.count(), func.count(PaymentEvent.payment_id.distinct()))
            .where(PaymentEvent.event == "payment_expired")).one()
        expired = uow.session.execute(
            select(func.count()).where(Payment.status == "expired")).scalar_one()
    return events, distinct, expired


def succeed(res: Resources, payment_id: int) -> tuple[bool, float]:
    """What a success callback does, in its own short transaction: (applied?, seconds)."""
    started = time.perf_counter()
    with res.uow() as uow:
        before = transition_payment(uow.session, payment_id, PaymentStatus.SUCCEEDED,
                                    actor="test:callback", event="payment_succeeded",
                                    values={"paid_at": NOW,
                                            "transaction_id": f"txn-{payment_id}"},
                                    allowed_from=ACTIVE_PAYMENT_STATUSES)
        uow.commit()
    return before is not None, time.perf_counter() - started


# -- the run_once lock ----------------------------------------------------------------------

def test_run_once_lets_one_run_at_a_time_and_releases_only_its_own_lock(resources):
    client = resources.redis
    job = f"test-{uuid.uuid4().hex[:8]}"
    inside, leave = threading.Event(), threading.Event()
    results: list[dict[str, Any]] = []

    def long_run() -> dict[str, Any]:
        inside.set()
        leave.wait(10)
        return {"changed": 1}

    holder = threading.Thread(target=lambda: results.append(run_once(client, job, 30, long_run)))
    holder.start()
    assert inside.wait(10)
    assert client.ttl(lock_key(job)) > 0  # the lock carries a TTL
    ran_second: list[bool] = []
    assert run_once(client, job, 30, lambda: ran_second.append(True) or {}) == {
        "skipped": "already running"}
    assert ran_second == []
    leave.set()
    holder.join(10)
    assert results == [{"changed": 1}]
    assert client.get(lock_key(job)) is None  # released
    assert run_once(client, job, 30, lambda: {"changed": 0}) == {"changed": 0}

    # A run that outlives its TTL must not delete the lock a later run has taken since.
    def overlong_run() -> dict[str, Any]:
        time.sleep(1.5)  # the 1 s TTL lapses meanwhile
        client.set(lock_key(job), "a later run's token", ex=30)
        return {}

    run_once(client, job, 1, overlong_run)
    assert client.get(lock_key(job)) == b"a later run's token"
    client.delete(lock_key(job))


def test_a_sweep_started_while_another_holds_the_job_is_skipped(stack_env, clean_db):
    res = clean_db
    due = bulk_payments(res, 3, due=True)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> dict[str, Any]:
        inside.set()
        leave.wait(60)
        return {}

    holder = threading.Thread(target=run_once, args=(res.redis, "expire_payments", 60, hold))
    holder.start()
    try:
        assert inside.wait(10)
        second = run_sweep_cli(stack_env)  # a second beat's run, say: a real process
        assert second["result"] == {"skipped": "already running"}
        assert expired_event_counts(res) == (0, 0, 0)
    finally:
        leave.set()
        holder.join(10)
    assert run_sweep_cli(stack_env)["result"]["changed"] == len(due)


def run_sweep_cli(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([PAYMENTS, "sweep", "expire-payments"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- two sweeps at once ---------------------------------------------------------------------

def test_two_sweep_processes_at_once_expire_each_payment_once(stack_env, clean_db):
    """Two `payments sweep expire-payments` processes started together (two beats by
    mistake): the lock lets one work, or both in turn; each payment expires once."""
    due = bulk_payments(clean_db, 10_000, due=True)
    procs = [subprocess.Popen([PAYMENTS, "sweep", "expire-payments"], env=stack_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1])["result"] for out, _ in outputs]

    assert sum(r.get("changed", 0) for r in results) == len(due)
    assert expired_event_counts(clean_db) == (len(due), len(due), len(due))


# Runs the sweep's batch loop with NO run_once lock, once told to go: what two sweeps
# would do if the lock failed them (Redis lost the key, a TTL lapsed).
UNLOCKED_SWEEP = """
import json, sys, time
from pathlib import Path
from adapters.resources import Resources
from config import Settings
from services.expiry import expire_due_payments
go = Path(sys.argv[1])
res = Resources(Settings.from_env())
with res.uow() as uow:  # connect before the start line
    pass
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
print(json.dumps(expire_due_payments(res, batch_size=500).as_dict()), flush=True)
"""


def test_two_sweeps_without_the_lock_still_expire_each_payment_exactly_once(
        stack_env, clean_db, tmp_path):
    """SKIP LOCKED plus the status re-check are the guarantee; the lock is only an
    optimisation. Two real processes run the batch loop at the same moment."""
    due = bulk_payments(clean_db, 20_000, due=True)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", UNLOCKED_SWEEP, str(go)], env=stack_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    changed = [r["changed"] for r in results]
    assert sum(changed) == len(due)
    assert all(c > 0 for c in changed), f"the two sweeps did not overlap: {changed}"
    assert expired_event_counts(clean_db) == (len(due), len(due), len(due))


# -- scale ----------------------------------------------------------------------------------

MAX_SUCCESS_SECONDS = 1.0


def test_100k_due_payments_expire_in_one_run_while_successes_keep_committing(
        settings: Settings, clean_db, capsys):
    due = bulk_payments(clean_db, 100_000, due=True)
    others = bulk_payments(clean_db, 5_000, due=False)
    # DUE payments a callback succeeds mid-sweep: spread over the second half of the
    # backlog, so the sweep (in whatever order it takes rows) has not reached them yet.
    contested = due[len(due) // 2::len(due) // 50][:25]

    sweep_res, callback_res = Resources(settings), Resources(settings)
    sweep_started, sweep_done = threading.Event(), threading.Event()
    latencies: list[float] = []
    contested_won: list[tuple[int, bool]] = []  # (payment, did the sweep still run?)
    errors: list[BaseException] = []

    def callbacks() -> None:
        try:
            sweep_started.wait(30)
            # Once the sweep has committed its first batch, succeed some DUE payments...
            wait_until(lambda: _any_expired(callback_res), timeout=60,
                       interval=0.01, message="the sweep's first batch")
            for payment_id in contested:
                applied, _ = succeed(callback_res, payment_id)
                if applied:
                    contested_won.append((payment_id, not sweep_done.is_set()))
            # ...then keep succeeding OTHER payments until the sweep ends.
            for payment_id in others:
                if sweep_done.is_set():
                    break
                applied, seconds = succeed(callback_res, payment_id)
                assert applied
                latencies.append(seconds)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=callbacks)
    thread.start()
    try:
        sweep_started.set()
        started = time.monotonic()
        result = expire_stale_payments(sweep_res)
        sweep_seconds = time.monotonic() - started
    finally:
        sweep_done.set()
        thread.join(60)
        sweep_res.close()
        callback_res.close()
    assert not errors, errors

    won = {payment_id for payment_id, _ in contested_won}
    with capsys.disabled():
        print(f"\n[100k sweep] {result['changed']} payments expired in {sweep_seconds:.1f} s "
              f"({result['batches']} batches); {len(latencies)} successes committed meanwhile: "
              f"median {statistics.median(latencies) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms; {len(won)}/{len(contested)} due payments "
              f"succeeded mid-sweep ({sum(d for _, d in contested_won)} while it ran)")

    assert result["complete"] is True
    assert result["changed"] == len(due) - len(won)
    # No success waits for the sweep: README's claim. Measured on 2 cores: median about
    # 3 ms, max under 0.2 s; the bound leaves 5x that for a machine shared with others,
    # and is still far below one batch of the sweep holding a success up.
    assert len(latencies) > 0 and max(latencies) < MAX_SUCCESS_SECONDS
    assert won and any(during for _, during in contested_won)
    expired = len(due) - len(won)
    assert expired_event_counts(clean_db) == (expired, expired, expired)
    with clean_db.uow() as uow:
        won_rows = uow.session.execute(
            select(Payment.status, func.count()).where(Payment.id.in_(won))
            .group_by(Payment.status)).all()
        won_expired_events = uow.session.execute(
            select(func.count()).where(PaymentEvent.payment_id.in_(won),
                                       PaymentEvent.event == "payment_expired")).scalar_one()
        others_left_active = uow.session.execute(
            select(func.count()).where(Payment.id.in_(others), Payment.status == "init")
        ).scalar_one()
    assert [tuple(r) for r in won_rows] == [("succeeded", len(won))]
    assert won_expired_events == 0
    assert others_left_active == len(others) - len(latencies)  # not due: never expired


def _any_expired(res: Resources) -> bool:
    with res.uow() as uow:
        return uow.session.execute(
            select(PaymentEvent.id).where(PaymentEvent.event == "payment_expired").limit(1)
        ).first() is not None
