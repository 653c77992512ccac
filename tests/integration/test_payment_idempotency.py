"""POST /api/v1/payments with an Idempotency-Key claims the key, creates the payment and
stores its answer in ONE transaction (web/idempotency.InTransaction), over real HTTP and
PostgreSQL: while the creation waits, nothing of it is visible, and a second request
with the key waits for it and replays it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from sqlalchemy import event, func, select, text

from adapters.resources import Resources
from domain.models import IdempotencyKey, Payment
from tests.support.factories import make_order
from tests.support.live_server import Api


def _count(res: Resources, model: type) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(model)).scalar_one()


def _wait_for_lock_waiters(res: Resources, how_many: int) -> None:
    """Until `how_many` backends of this database wait on a lock (the order's row lock or
    the uncommitted claim), or 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with res.db.engine.connect() as conn:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
        if waiting >= how_many:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {how_many} requests waiting on a lock")


def _post_in_thread(client: Api, body: dict, key: str,
                    into: list[requests.Response]) -> threading.Thread:
    def send() -> None:
        into.append(Api(client.base_url, client.key).post(
            "/api/v1/payments", json=body, headers={"Idempotency-Key": key}))
    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_the_claim_commits_with_the_payment_and_a_second_request_waits_for_both(
        api, make_user_key, clean_db):
    client, key = api.as_key(make_user_key(1)), f"pay-{uuid.uuid4()}"
    order_id = make_order(clean_db, user_id=1)
    body = {"order_id": order_id, "method": "wechat"}
    first: list[requests.Response] = []
    second: list[requests.Response] = []

    with clean_db.db.engine.connect() as blocker:  # holds the order's row lock
        blocker.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"),
                        {"id": order_id})
        threads = [_post_in_thread(client, body, key, first)]
        _wait_for_lock_waiters(clean_db, 1)
        # The first request has claimed the key, but in its own open transaction.
        assert _count(clean_db, IdempotencyKey) == 0
        threads.append(_post_in_thread(client, body, key, second))
        _wait_for_lock_waiters(clean_db, 2)  # the second waits on that claim, no 409
        assert not second
        blocker.rollback()
    for thread in threads:
        thread.join(30)

    [ran], [replayed] = first, second
    assert ran.status_code == replayed.status_code == 201
    assert "Idempotent-Replayed" not in ran.headers
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == ran.content
    assert _count(clean_db, Payment) == 1
    with clean_db.uow() as uow:
        [claim] = uow.session.execute(select(IdempotencyKey)).scalars().all()
        assert (claim.response_status, claim.completed_at is not None) == (201, True)


def test_a_refused_creation_stores_its_answer_and_nothing_else(api, make_user_key,
                                                               clean_db):
    client, key = api.as_key(make_user_key(1)), f"pay-{uuid.uuid4()}"
    order_id = make_order(clean_db, user_id=1, total="10.00")
    body = {"order_id": order_id, "method": "wechat", "amount": "9.99"}

    refused = client.post("/api/v1/payments", json=body, headers={"Idempotency-Key": key})
    again = client.post("/api/v1/payments", json=body, headers={"Idempotency-Key": key})

    assert refused.status_code == 400 and refused.json()["code"] == "amount_mismatch"
    assert (again.status_code, again.content) == (400, refused.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _count(clean_db, Payment) == 0
    assert _count(clean_db, IdempotencyKey) == 1


def test_the_same_key_for_another_order_is_422_and_creates_nothing(api, make_user_key,
                                                                   clean_db):
    client, key = api.as_key(make_user_key(1)), f"pay-{uuid.uuid4()}"
    first, other = make_order(clean_db, user_id=1), make_order(clean_db, user_id=1)
    assert client.post("/api/v1/payments", json={"order_id": first},
                       headers={"Idempotency-Key": key}).status_code == 201

    reused = client.post("/api/v1/payments", json={"order_id": other},
                         headers={"Idempotency-Key": key})

    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert _count(clean_db, Payment) == 1


@contextmanager
def transactions(res: Resources) -> Iterator[list[str]]:
    """What the live server (this process, this engine) commits meanwhile: each COMMIT,
    and each statement run in autocommit (a transaction of its own)."""
    seen: list[str] = []

    def statement(conn, cursor, sql, *_):
        if cursor.connection.autocommit:  # the driver's own setting (adapters.db.autocommit_on)
            seen.append(" ".join(sql.split())[:60])

    def commit(conn):
        seen.append("COMMIT")

    event.listen(res.db.engine, "before_cursor_execute", statement)
    event.listen(res.db.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(res.db.engine, "before_cursor_execute", statement)
        event.remove(res.db.engine, "commit", commit)


def test_a_keyed_creation_is_the_key_lookup_and_one_transaction(api, make_user_key,
                                                               resources, clean_db):
    client = api.as_key(make_user_key(1))
    order_id = make_order(clean_db, user_id=1)
    assert client.get("/api/v1/payments").status_code == 200  # last_used_at written now

    with transactions(resources) as committed:
        response = client.post("/api/v1/payments", json={"order_id": order_id},
                               headers={"Idempotency-Key": f"pay-{uuid.uuid4()}"})

    assert response.status_code == 201
    assert len(committed) == 2, committed
    assert "api_keys" in committed[0] and committed[1] == "COMMIT"
