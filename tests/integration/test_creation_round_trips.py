"""Payment creation's round trips (B5), over real HTTP and PostgreSQL: what the live
server (this process, this engine) sends to the database for one POST /api/v1/payments."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, insert, select

from adapters.resources import Resources
from domain.models import ApiKey, Order, Payment
from services.api_keys import authenticate, authenticate_on, create_api_key
from tests.support.factories import make_order, make_payment


@contextmanager
def checkouts(res: Resources) -> Iterator[list[int]]:
    """The server pid of each connection the engine's pool hands out meanwhile."""
    seen: list[int] = []

    def record(dbapi_connection, *_):
        seen.append(dbapi_connection.info.backend_pid)

    event.listen(res.db.engine, "checkout", record)
    try:
        yield seen
    finally:
        event.remove(res.db.engine, "checkout", record)


def all_given_back(res: Resources) -> bool:
    """The pool holds every connection again (the live server's teardown may still be
    running just after the answer arrived)."""
    deadline = time.monotonic() + 2
    while res.db.engine.pool.checkedout() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    return res.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@contextmanager
def statements(res: Resources) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, *_):
        seen.append(" ".join(statement.split()))

    event.listen(res.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(res.db.engine, "before_cursor_execute", record)


def test_a_creation_is_the_key_lookup_the_order_lock_and_one_insert(api, make_user_key,
                                                                    resources, clean_db):
    client = api.as_key(make_user_key(1))
    order_id = make_order(clean_db, user_id=1)
    # A key's first use records its last_used_at (at most once per period): done here.
    assert client.get("/api/v1/payments").status_code == 200

    with statements(resources) as sent:
        response = client.post("/api/v1/payments", json={"order_id": order_id})

    assert response.status_code == 201
    assert len(sent) == 3, sent
    assert "FROM api_keys" in sent[0]
    assert sent[1].startswith("SELECT") and "FROM orders" in sent[1] and "FOR UPDATE" in sent[1]
    assert "INSERT INTO payments" in sent[2] and "INSERT INTO payment_events" in sent[2]


def test_the_answer_built_from_the_insert_is_the_payment_as_read_back(api, make_user_key,
                                                                     clean_db):
    """The 201's detail comes from the INSERT's RETURNING, not from a read: it must be
    the very view GET /payments/<id> shows, field for field, its log included."""
    client = api.as_key(make_user_key(1))
    order_id = make_order(clean_db, user_id=1, total="88.80")

    created = client.post("/api/v1/payments", json={"order_id": order_id, "method": "alipay"})
    read = client.get(f"/api/v1/payments/{created.json()['id']}")

    assert created.status_code == 201 and read.status_code == 200
    assert created.json() == read.json()
    [log] = created.json()["logs"]
    assert log["detail"] == {"method": "alipay", "amount": "88.80", "currency": "CNY",
                             "attempt": 1, "expires_at": created.json()["expires_at"],
                             "retry_of": None}


def test_a_retrys_answer_built_from_the_insert_is_the_payment_as_read_back(
        api, make_user_key, clean_db):
    """A retry inserts its attempt the same way (services/payment_attempts.py), its audit
    row naming the payment it follows."""
    client = api.as_key(make_user_key(1))
    order_id = make_order(clean_db, user_id=1, total="12.34")
    failed = make_payment(clean_db, order_id, amount="12.34", method="alipay",
                          status="failed", created_at=datetime.now(UTC) - timedelta(minutes=2))

    retried = client.post(f"/api/v1/payments/{failed}/retry")
    read = client.get(f"/api/v1/payments/{retried.json()['id']}")

    assert retried.status_code == 201 and read.status_code == 200
    assert retried.json() == read.json()
    assert retried.json()["attempt"] == 2
    [log] = retried.json()["logs"]
    assert log["detail"] == {"method": "alipay", "amount": "12.34", "currency": "CNY",
                             "attempt": 2, "expires_at": retried.json()["expires_at"],
                             "retry_of": failed}


def orders_numbered(res: Resources, order_number: str) -> int:
    """Committed orders with this number: 0 shows a unit of work left uncommitted."""
    with res.uow() as uow:
        return int(uow.session.execute(select(func.count()).select_from(Order).where(
            Order.order_number == order_number)).scalar_one())


def test_the_key_lookup_leaves_its_pooled_connection_transactional(settings):
    """The lookup runs in autocommit; the pool must hand the connection on as before, or
    the next unit of work on it would commit statement by statement."""
    res = Resources(settings, db_pool_size=1)
    try:
        key = create_api_key(res.uow(), "admin", name="autocommit check")
        assert authenticate(res.uow(), key) is not None
        with res.uow() as uow:  # the same (only) pooled connection; never committed
            uow.session.execute(insert(Order).values(
                order_number="autocommit-check", user_id=1, total_amount=1, currency="CNY"))
        assert orders_numbered(res, "autocommit-check") == 0
    finally:
        res.close()


def test_a_creation_checks_out_one_pooled_connection(api, make_user_key, resources, clean_db):
    """The key is looked up on the connection the creation's transaction then uses
    (web.auth, keeps_connection): one pool checkout a request, given back at its end."""
    client = api.as_key(make_user_key(1))
    first, second = make_order(clean_db, user_id=1), make_order(clean_db, user_id=1)

    # The key's first use: its last_used_at is written, in autocommit, on that connection.
    with checkouts(resources) as handed_out, statements(resources) as sent:
        response = client.post("/api/v1/payments", json={"order_id": first})
    assert response.status_code == 201
    assert len(handed_out) == 1 and all_given_back(resources)
    assert len(sent) == 4 and "UPDATE api_keys" in sent[1], sent

    with checkouts(resources) as handed_out:
        keyed = client.post("/api/v1/payments", json={"order_id": second},
                            headers={"Idempotency-Key": "one-connection"})
        replayed = client.post("/api/v1/payments", json={"order_id": second},
                               headers={"Idempotency-Key": "one-connection"})
    assert keyed.status_code == 201 and replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert len(handed_out) == 2 and all_given_back(resources)

    # A 4xx rolls the view's transaction back; its answer is then stored on that same
    # connection (web.idempotency._record_failed_view).
    with checkouts(resources) as handed_out:
        missing = client.post("/api/v1/payments", json={"order_id": second + 1000},
                              headers={"Idempotency-Key": "no-such-order"})
    assert missing.status_code == 404
    assert len(handed_out) == 1 and all_given_back(resources)
    with resources.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ApiKey).where(
            ApiKey.last_used_at.is_not(None))).scalar_one() == 1


def test_a_creation_refused_before_its_view_gives_the_connection_back(api, make_user_key,
                                                                      resources, clean_db):
    """An invalid key (401), or a malformed Idempotency-Key refused in the before_request
    hook after the lookup (400): the view never runs, the connection still goes back."""
    order_id = make_order(clean_db, user_id=1)
    refused = api.as_key("pk_user_not-a-key").post("/api/v1/payments",
                                                   json={"order_id": order_id})
    malformed = api.as_key(make_user_key(1)).post(
        "/api/v1/payments", json={"order_id": order_id}, headers={"Idempotency-Key": ""})

    assert refused.status_code == 401 and refused.json()["code"] == "invalid_api_key"
    assert malformed.status_code == 400
    assert all_given_back(resources)
    with resources.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Payment)).scalar_one() == 0


def test_a_unit_of_work_on_the_lookups_connection_is_transactional(settings):
    """After the lookup in autocommit, the connection is back to the engine's isolation
    level: a unit of work on it that does not commit leaves nothing behind."""
    res = Resources(settings, db_pool_size=1)
    try:
        key = create_api_key(res.uow(), "admin", name="held connection check")
        uow = res.uow()
        with uow.held_connection() as conn:
            assert authenticate_on(conn, key) is not None
            with uow.on(conn) as work:  # never committed
                work.session.execute(insert(Order).values(
                    order_number="held-check", user_id=1, total_amount=1, currency="CNY"))
        assert orders_numbered(res, "held-check") == 0
    finally:
        res.close()
