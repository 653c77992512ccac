"""Applying stored callbacks in batches (services/callback_batches.py), against real
PostgreSQL and Redis: the service is called directly, with its follow-up wake-ups going
to a Redis of the test's own that no worker drains (so they can be looked at).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from adapters.locks import payment_lock_name
from adapters.resources import Resources
from domain.models import OrderStatusHistory, Payment, ProviderCallback
from services import callback_batches, callback_wakeup
from services.callback_batches import BUSY_RETRY_SECONDS, apply_callback_batch, drain_inbox
from services.callback_wakeup import WAKE_KEY
from services.callbacks import MAX_ATTEMPTS
from tests.support.callbacks import event_body, event_counts, inbox_statuses, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with


@pytest.fixture
def res(clean_db, settings, private_redis):
    private = Resources(settings_with(settings, redis_url=private_redis.url))
    yield private
    private.close()


def _payments(res, count: int) -> list[int]:
    return [make_payment(res, make_order(res), status="processing") for _ in range(count)]


def _store(res, payment_ids) -> list[int]:
    return [store_callback(res, event_body(pid, event_id=f"evt_{pid}")) for pid in payment_ids]


def _row(res, callback_id: int):
    with res.uow() as uow:
        return uow.session.execute(
            select(ProviderCallback.status, ProviderCallback.attempts,
                   ProviderCallback.last_error,
                   ProviderCallback.claimed_until.is_not(None))
            .where(ProviderCallback.id == callback_id)).one()


def _unlease(res) -> None:
    """Skip the backoff a failed attempt's lease imposes (the test has no time to wait)."""
    with res.db.engine.begin() as conn:
        conn.execute(text("UPDATE provider_callbacks SET claimed_until = NULL"))


def test_a_batch_applies_every_waiting_callback_in_one_go(res):
    payment_ids = _payments(res, 30)
    _store(res, payment_ids)

    outcome = apply_callback_batch(res)

    assert (outcome.claimed, outcome.busy, outcome.errors) == (30, 0, 0)
    assert outcome.outcomes == {"processed": 30}
    assert inbox_statuses(res) == {"processed": 30}
    assert event_counts(res, "payment_succeeded") == {pid: 1 for pid in payment_ids}
    assert apply_callback_batch(res).claimed == 0  # nothing twice


def test_a_full_batch_leaves_the_rest_for_the_next_and_sends_it(res, private_redis):
    _store(res, _payments(res, 12))

    first = apply_callback_batch(res, limit=5)

    assert first.claimed == 5
    assert inbox_statuses(res) == {"processed": 5, "received": 7}
    # another pool process may take the next batch at once
    assert {m["task"] for m in private_redis.queued("callbacks")} == {"callbacks.apply_batch"}
    assert apply_callback_batch(res, limit=5).claimed == 5
    assert apply_callback_batch(res, limit=5).claimed == 2
    assert inbox_statuses(res) == {"processed": 12}


def test_a_poison_callback_rolls_back_alone_and_ends_failed_after_the_limit(res):
    payment_ids = _payments(res, 9)
    poison = payment_ids[4]
    callback_ids = _store(res, payment_ids)
    poison_callback = callback_ids[4]
    with res.db.engine.begin() as conn:
        conn.execute(text(
            "CREATE OR REPLACE FUNCTION test_poison_batch() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'poisoned payment row'; END $$"))
        conn.execute(text(
            f"CREATE TRIGGER test_poison_batch BEFORE UPDATE ON payments FOR EACH ROW "
            f"WHEN (OLD.id = {poison}) EXECUTE FUNCTION test_poison_batch()"))
    try:
        first = apply_callback_batch(res)
        assert (first.claimed, first.errors, first.outcomes) == (9, 1, {"processed": 8})
        assert inbox_statuses(res) == {"processed": 8, "received": 1}
        status, attempts, error, leased = _row(res, poison_callback)
        assert (status, attempts) == ("received", 1) and "poisoned payment row" in error
        assert leased  # backed off: the next batch does not retry it at once
        assert first.retry_in is not None  # a follow-up is scheduled for it

        for _ in range(MAX_ATTEMPTS):  # attempts 2..5 fail, the 6th gives up
            _unlease(res)
            apply_callback_batch(res)
    finally:
        with res.db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_poison_batch ON payments"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_poison_batch()"))

    status, attempts, error, _ = _row(res, poison_callback)
    assert (status, attempts) == ("failed", MAX_ATTEMPTS + 1)
    assert "gave up after 5 attempts" in error and "poisoned payment row" in error
    assert event_counts(res, "payment_succeeded") == {
        pid: 1 for pid in payment_ids if pid != poison}
    with res.uow() as uow:
        assert uow.session.execute(select(Payment.status).where(Payment.id == poison)
                                   ).scalar_one() == "processing"


def test_a_callback_whose_payment_lock_is_busy_waits_uncounted_for_a_later_batch(res):
    payment_ids = _payments(res, 4)
    callback_ids = _store(res, payment_ids)
    res.redis.set(payment_lock_name(payment_ids[1]), "someone-else", px=30_000)

    outcome = apply_callback_batch(res)

    assert (outcome.claimed, outcome.busy) == (3, 1)
    assert outcome.retry_in is not None
    assert _row(res, callback_ids[1])[:2] == ("received", 0)  # no attempt counted
    assert res.redis.get(payment_lock_name(payment_ids[1])) == b"someone-else"  # untouched
    res.redis.delete(payment_lock_name(payment_ids[1]))
    assert apply_callback_batch(res).claimed == 1
    assert inbox_statuses(res) == {"processed": 4}


class _Killed(BaseException):
    """The pool process SIGKILLed there: nothing after it runs."""


def _send_killed(*_args, **_kwargs):
    raise _Killed


@pytest.mark.parametrize("send", [_send_killed, lambda *_a, **_k: False],
                         ids=["killed-while-sending", "send-refused"])
def test_a_follow_up_that_never_left_holds_back_no_later_one(res, private_redis,
                                                             monkeypatch, send):
    # Rows a dead batch leased: the batch schedules a follow-up for when the lease ends.
    _store(res, _payments(res, 3))
    with res.db.engine.begin() as conn:
        conn.execute(text(
            "UPDATE provider_callbacks SET claimed_until = now() + interval '30 seconds'"))
    monkeypatch.setattr(res.queue, "send", send)
    try:
        apply_callback_batch(res)
    except _Killed:
        pass
    monkeypatch.undo()
    assert private_redis.queued("callbacks") == []  # the follow-up never reached the broker

    # The killed task's redelivered message (or any later batch) must schedule it again:
    # a slot left behind by the lost one would hold it back for the lease's 30 s, and
    # nothing would wake after that.
    again = apply_callback_batch(res)
    assert again.retry_in is not None and 25 < again.retry_in <= 30
    assert [m["task"] for m in private_redis.queued("callbacks")] == ["callbacks.apply_batch"]


def test_a_follow_up_finds_its_slot_free_and_schedules_the_next(res):
    payment_id = _payments(res, 1)[0]
    _store(res, [payment_id])
    res.redis.set(payment_lock_name(payment_id), "someone-else", px=30_000)

    first = apply_callback_batch(res)
    assert (first.busy, first.retry_in) == (1, BUSY_RETRY_SECONDS)
    time.sleep(first.retry_in)  # the follow-up is due, and the lock is still busy

    follow_up = apply_callback_batch(res)
    assert follow_up.busy == 1 and follow_up.retry_in is not None  # and one more after it


def test_two_callbacks_for_one_payment_in_one_batch_apply_once(res):
    [payment_id] = _payments(res, 1)
    store_callback(res, event_body(payment_id, event_id="evt_a", transaction_id="txn_1"))
    store_callback(res, event_body(payment_id, event_id="evt_b", transaction_id="txn_1"))

    apply_callback_batch(res)

    assert inbox_statuses(res) == {"processed": 2}
    assert event_counts(res, "payment_succeeded") == {payment_id: 1}


def test_concurrent_batches_apply_every_payment_exactly_once(res):
    payment_ids = _payments(res, 200)
    _store(res, payment_ids)
    # some providers send the same capture twice under new event ids
    for pid in payment_ids[:40]:
        store_callback(res, event_body(pid, event_id=f"evt_{pid}_again"))
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            for _ in range(60):
                apply_callback_batch(res, limit=20)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    _unlease(res)
    while apply_callback_batch(res).claimed:  # busy leftovers of the race
        pass

    assert errors == []
    assert inbox_statuses(res) == {"processed": 240}
    assert event_counts(res, "payment_succeeded") == {pid: 1 for pid in payment_ids}
    with res.uow() as uow:
        paid = uow.session.execute(
            select(OrderStatusHistory.order_id, func.count())
            .where(OrderStatusHistory.to_status == "paid")
            .group_by(OrderStatusHistory.order_id)).all()
    assert len(paid) == 200 and {n for _, n in paid} == {1}


def _trail(res, payment_id: int, order_id: int, callback_id: int) -> dict:
    """What a settled success leaves, with this payment's own ids taken out."""
    with res.db.engine.connect() as conn:
        audit = [(e, a, {k: v for k, v in d.items() if k not in ("callback_id", "event_id",
                                                                  "transaction_id")})
                 for e, a, d in conn.execute(text(
                     "SELECT event, actor, detail FROM payment_events WHERE payment_id = :p "
                     "ORDER BY id"), {"p": payment_id})]
        history = [(f, t, r.replace(str(payment_id), "P"), a) for f, t, r, a in conn.execute(
            text("SELECT from_status, to_status, reason, actor FROM order_status_history "
                 "WHERE order_id = :o ORDER BY id"), {"o": order_id})]
        events = [t for (t,) in conn.execute(text(
            "SELECT type FROM events WHERE (object_type = 'payment' AND object_id = :p) OR "
            "(object_type = 'order' AND object_id = :o) ORDER BY id"),
            {"p": payment_id, "o": order_id})]
        notifications = conn.execute(text(
            "SELECT count(*) FROM notifications WHERE payment_id = :p"),
            {"p": payment_id}).scalar_one()
        payment = conn.execute(text(
            "SELECT status, transaction_id IS NOT NULL, paid_at IS NOT NULL FROM payments "
            "WHERE id = :p"), {"p": payment_id}).one()
        inbox = conn.execute(text(
            "SELECT status, last_error, processed_at IS NOT NULL FROM provider_callbacks "
            "WHERE id = :c"), {"c": callback_id}).one()
    return {"audit": audit, "history": history, "events": events,
            "notifications": notifications, "payment": tuple(payment), "inbox": tuple(inbox)}


def test_the_batch_leaves_the_same_trail_as_the_single_callback_path(res):
    from services.callbacks import process_callback

    single_order, batch_order = make_order(res), make_order(res)
    single = make_payment(res, single_order, status="processing")
    batched = make_payment(res, batch_order, status="processing")
    single_callback = store_callback(res, event_body(single, event_id="evt_single"))
    assert process_callback(res, single_callback) == "processed"
    batch_callback = store_callback(res, event_body(batched, event_id="evt_batched"))
    assert apply_callback_batch(res).outcomes == {"processed": 1}

    assert (_trail(res, batched, batch_order, batch_callback)
            == _trail(res, single, single_order, single_callback))


def test_a_drain_takes_batch_after_batch_and_hands_the_flag_back_at_the_end(res, private_redis):
    """One wake-up applies everything waiting, however many batches it takes; while it
    runs the wake-up flag stays set (callbacks stored meanwhile send no wake-up of their
    own: the loop's next claim takes them), and it is cleared once a claim finds nothing."""
    payment_ids = _payments(res, 12)
    _store(res, payment_ids)
    res.redis.set(WAKE_KEY, 1)  # as ingest left it when it sent the wake-up

    outcome = drain_inbox(res, limit=5)

    assert outcome.claimed == 12 and outcome.outcomes == {"processed": 12}
    assert inbox_statuses(res) == {"processed": 12}
    assert event_counts(res, "payment_succeeded") == {pid: 1 for pid in payment_ids}
    assert not res.redis.exists(WAKE_KEY)


def test_a_drain_past_its_budget_hands_over_to_a_fresh_wake_up(res, private_redis):
    _store(res, _payments(res, 12))
    res.redis.set(WAKE_KEY, 1)

    outcome = drain_inbox(res, limit=5, budget_seconds=0)

    assert outcome.claimed == 5  # one batch, then the budget is spent
    assert inbox_statuses(res) == {"processed": 5, "received": 7}
    assert not res.redis.exists(WAKE_KEY)
    # the full batch's own wake-up and the hand-over
    assert [m["task"] for m in private_redis.queued("callbacks")] == ["callbacks.apply_batch"] * 2



def test_a_drain_keeps_the_wake_up_flag_set_while_it_runs(res, monkeypatch):
    """A drain longer than the flag's TTL sets it again: run out, the next callback would
    wake a second drain beside this one."""
    monkeypatch.setattr(callback_batches, "WAKE_TTL_MS", 300)
    monkeypatch.setattr(callback_wakeup, "WAKE_TTL_MS", 300)
    # Enough one-callback batches that the drain outlasts the TTL several times over on a
    # fast machine (a batch of one takes a few milliseconds at best).
    _store(res, _payments(res, 300))
    res.redis.set(WAKE_KEY, 1, px=300)  # as ingest set it
    gaps: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not res.redis.exists(WAKE_KEY) and inbox_statuses(res).get("received"):
                gaps.append(time.monotonic())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        outcome = drain_inbox(res, limit=1, budget_seconds=120)  # three hundred batches
    finally:
        stop.set()
        watcher.join()

    assert outcome.claimed == 300
    assert time.monotonic() - started > 0.6  # the flag's TTL twice over, at least
    assert gaps == []
