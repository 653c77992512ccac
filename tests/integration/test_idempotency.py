"""Idempotency-Key on POSTs under /api/v1, over real HTTP and PostgreSQL (DESIGN.md §5).

Mostly through the real POST /api/v1/orders (an order row is the visible side effect);
a test-only route on a second app shows that a 5xx frees the key for a retry.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
from flask import Blueprint, Response, jsonify
from sqlalchemy import Row, event, func, insert, select, update

from adapters.resources import Resources
from config import Settings
from domain.models import ApiKey, IdempotencyKey, Order
from services.api_keys import create_api_key, hash_key
from services.idempotency import request_fingerprint
from tests.support.live_server import Api, serve

ORDER = {"total_amount": "10.00", "user_id": 1}


def _key() -> str:
    return f"idem-{uuid.uuid4()}"


def _order_count(res: Resources) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(Order)).scalar_one()


def _claims(res: Resources) -> list[Row]:
    """Plain rows (not ORM objects): they outlive the unit of work's rollback."""
    with res.uow() as uow:
        return list(uow.session.execute(select(*IdempotencyKey.__table__.c)).all())


def _api_key_id(res: Resources, key: str) -> int:
    with res.uow() as uow:
        return uow.session.execute(
            select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).scalar_one()


def _unanswered_claim(res: Resources, api_key: str, key: str, body: bytes,
                      age: timedelta = timedelta(0)) -> None:
    """The claim a first POST /api/v1/orders with `body` makes before it answers."""
    with res.uow() as uow:
        uow.session.execute(insert(IdempotencyKey).values(
            api_key_id=_api_key_id(res, api_key), key=key,
            request_hash=request_fingerprint("POST", "/api/v1/orders", body),
            created_at=func.now() - age))
        uow.commit()


def test_same_key_and_body_replays_the_first_response(api, admin_key, clean_db):
    admin, key = api.as_key(admin_key), _key()

    first = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})
    again = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})

    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # byte for byte, as the README promises
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _order_count(clean_db) == 1
    [claim] = _claims(clean_db)
    assert (claim.response_status, claim.completed_at is not None) == (201, True)


def test_same_key_with_another_body_is_422_and_writes_nothing(api, admin_key, clean_db):
    admin, key = api.as_key(admin_key), _key()
    admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})

    other = admin.post("/api/v1/orders", json={**ORDER, "total_amount": "20.00"},
                       headers={"Idempotency-Key": key})

    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.json()["detail"]
    assert _order_count(clean_db) == 1
    with clean_db.uow() as uow:
        totals = uow.session.execute(select(Order.total_amount)).scalars().all()
    assert [str(t) for t in totals] == ["10.00"]


def test_same_key_on_another_path_is_422(api, admin_key, clean_db):
    """The path is part of the fingerprint: one key cannot serve two endpoints."""
    admin, key = api.as_key(admin_key), _key()
    order_id = admin.post("/api/v1/orders", json=ORDER,
                          headers={"Idempotency-Key": key}).json()["id"]

    other = admin.post(f"/api/v1/orders/{order_id}/transitions", json={"to": "cancelled"},
                       headers={"Idempotency-Key": key})

    assert other.status_code == 422
    assert admin.get(f"/api/v1/orders/{order_id}").json()["status"] == "pending"


def test_request_still_in_progress_is_409_and_runs_nothing(api, admin_key, clean_db):
    """A claim that is not completed yet stands for a first request still running."""
    key = _key()
    body = json.dumps(ORDER).encode()
    _unanswered_claim(clean_db, admin_key, key, body)

    response = api.as_key(admin_key).post(
        "/api/v1/orders", data=body,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"})

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_request_in_progress"
    assert _order_count(clean_db) == 0
    [claim] = _claims(clean_db)
    assert claim.completed_at is None  # still the first request's claim, untouched


def test_a_4xx_answer_is_stored_and_replayed_not_recomputed(api, admin_key, clean_db):
    admin, key = api.as_key(admin_key), _key()
    order_id = admin.post("/api/v1/orders", json=ORDER).json()["id"]
    ship = {"to": "shipped"}

    refused = admin.post(f"/api/v1/orders/{order_id}/transitions", json=ship,
                         headers={"Idempotency-Key": key})
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_transition"
    # The order becomes shippable; running the request again would now succeed.
    assert admin.post(f"/api/v1/orders/{order_id}/transitions",
                      json={"to": "paid"}).status_code == 200

    replay = admin.post(f"/api/v1/orders/{order_id}/transitions", json=ship,
                        headers={"Idempotency-Key": key})

    assert replay.status_code == 409
    assert replay.json() == refused.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert admin.get(f"/api/v1/orders/{order_id}").json()["status"] == "paid"


def test_a_key_older_than_24_hours_can_be_used_again(api, admin_key, clean_db):
    admin, key = api.as_key(admin_key), _key()
    first = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})
    with clean_db.uow() as uow:
        uow.session.execute(update(IdempotencyKey).values(
            created_at=func.now() - timedelta(hours=25)))
        uow.commit()

    reused = admin.post("/api/v1/orders", json={**ORDER, "total_amount": "20.00"},
                        headers={"Idempotency-Key": key})

    assert reused.status_code == 201
    assert "Idempotent-Replayed" not in reused.headers
    assert reused.json()["id"] != first.json()["id"]
    assert _order_count(clean_db) == 2
    [claim] = _claims(clean_db)  # the old claim was taken over, not duplicated
    assert json.loads(claim.response_body)["id"] == reused.json()["id"]
    again = admin.post("/api/v1/orders", json={**ORDER, "total_amount": "20.00"},
                       headers={"Idempotency-Key": key})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == reused.json()


def test_keys_belong_to_one_api_key(api, admin_key, clean_db):
    other_admin = create_api_key(clean_db.uow(), "admin", name="second admin")
    key = _key()

    mine = api.as_key(admin_key).post("/api/v1/orders", json=ORDER,
                                      headers={"Idempotency-Key": key})
    theirs = api.as_key(other_admin).post("/api/v1/orders", json=ORDER,
                                          headers={"Idempotency-Key": key})

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert _order_count(clean_db) == 2


def test_concurrent_identical_requests_run_once(api, admin_key, clean_db):
    admin, key, threads = api.as_key(admin_key), _key(), 8
    barrier = threading.Barrier(threads)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def send() -> None:
        client = Api(admin.base_url, admin_key)  # a session (connection) per thread
        barrier.wait()
        response = client.post("/api/v1/orders", json=ORDER,
                               headers={"Idempotency-Key": key})
        with lock:
            responses.append(response)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert len(responses) == threads
    assert {r.status_code for r in responses} <= {201, 409}
    executed = [r for r in responses if r.status_code == 201
                and "Idempotent-Replayed" not in r.headers]
    assert len(executed) == 1
    assert all(r.json() == executed[0].json() for r in responses if r.status_code == 201)
    assert all(r.json()["code"] == "idempotency_request_in_progress"
               for r in responses if r.status_code == 409)
    assert _order_count(clean_db) == 1
    after = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert after.json() == executed[0].json()
    assert after.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_key_of_bad_length_is_400(api, admin_key, clean_db, key):
    response = api.as_key(admin_key).post("/api/v1/orders", json=ORDER,
                                          headers={"Idempotency-Key": key})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert _order_count(clean_db) == 0
    assert _claims(clean_db) == []


def test_a_key_of_255_characters_is_stored_and_replayed(api, admin_key, clean_db):
    client = api.as_key(admin_key)
    first = client.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": "k" * 255})
    again = client.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": "k" * 255})

    assert first.status_code == 201
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _order_count(clean_db) == 1


@pytest.mark.parametrize("auth", [None, "pk_admin_not-a-real-key"])
def test_without_a_valid_api_key_the_view_answers_401(api, clean_db, auth):
    response = api.as_key(auth).post("/api/v1/orders", json=ORDER,
                                     headers={"Idempotency-Key": "k" * 300})

    assert response.status_code == 401
    assert _claims(clean_db) == []


def test_requests_without_the_header_or_not_post_are_untouched(api, admin_key, clean_db):
    admin = api.as_key(admin_key)
    assert admin.post("/api/v1/orders", json=ORDER).status_code == 201
    assert admin.post("/api/v1/orders", json=ORDER).status_code == 201
    assert admin.get("/api/v1/payment-methods",
                     headers={"Idempotency-Key": _key()}).status_code == 200
    assert _order_count(clean_db) == 2
    assert _claims(clean_db) == []


# --- 5xx: the claim is released so that the client can retry --------------------------

@pytest.fixture
def flaky_api(settings: Settings, resources: Resources, clean_db) -> Iterator[Api]:
    """The real app plus a test-only route that fails with 500 on its first call."""
    from web.app import create_app

    calls: list[int] = []
    bp = Blueprint("flaky_test_only", __name__)

    @bp.post("/test-only/flaky")
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return jsonify({"calls": len(calls)}), 201

    @bp.post("/test-only/unstorable")
    def unstorable():
        # An answer whose text PostgreSQL refuses (a NUL character): it is sent, but
        # storing it for replays fails.
        calls.append(1)
        return Response(f'{{"calls": {len(calls)}, "note": "\0"}}', status=201,
                        mimetype="application/json")

    app = create_app(settings, resources)
    app.register_blueprint(bp, url_prefix="/api/v1")
    with serve(app) as url:
        yield Api(url)


def test_a_server_error_frees_the_key_for_a_retry(flaky_api, admin_key, clean_db):
    client, key = flaky_api.as_key(admin_key), _key()

    failed = client.post("/api/v1/test-only/flaky", json={}, headers={"Idempotency-Key": key})
    assert failed.status_code == 500
    assert _claims(clean_db) == []

    retried = client.post("/api/v1/test-only/flaky", json={}, headers={"Idempotency-Key": key})
    replayed = client.post("/api/v1/test-only/flaky", json={},
                           headers={"Idempotency-Key": key})

    assert (retried.status_code, retried.json()) == (201, {"calls": 2})
    assert "Idempotent-Replayed" not in retried.headers
    assert (replayed.status_code, replayed.json()) == (201, {"calls": 2})
    assert replayed.headers["Idempotent-Replayed"] == "true"


# --- an answer that could not be stored: the claim is abandoned after a while ----------

def _calls(response: requests.Response) -> int:
    return json.loads(response.text, strict=False)["calls"]  # the NUL is a raw character


def _age_claims(res: Resources, by: timedelta) -> None:
    with res.uow() as uow:
        uow.session.execute(update(IdempotencyKey).values(
            created_at=IdempotencyKey.created_at - by))
        uow.commit()


def test_a_claim_whose_answer_could_not_be_stored_is_abandoned_after_five_minutes(
        flaky_api, admin_key, clean_db):
    client, key = flaky_api.as_key(admin_key), _key()

    first = client.post("/api/v1/test-only/unstorable", json={},
                        headers={"Idempotency-Key": key})
    assert (first.status_code, _calls(first)) == (201, 1)  # the answer was sent
    [claim] = _claims(clean_db)
    assert claim.completed_at is None  # ...but not stored
    # Soon after, a retry must not run the request a second time.
    soon = client.post("/api/v1/test-only/unstorable", json={},
                       headers={"Idempotency-Key": key})
    assert soon.json()["code"] == "idempotency_request_in_progress"
    _age_claims(clean_db, timedelta(minutes=4, seconds=50))
    assert client.post("/api/v1/test-only/unstorable", json={},
                       headers={"Idempotency-Key": key}).status_code == 409

    _age_claims(clean_db, timedelta(seconds=20))  # now past CLAIM_TIMEOUT: abandoned
    retried = client.post("/api/v1/test-only/unstorable", json={},
                          headers={"Idempotency-Key": key})
    assert (retried.status_code, _calls(retried)) == (201, 2)
    assert "Idempotent-Replayed" not in retried.headers
    assert len(_claims(clean_db)) == 1  # taken over, not duplicated


def test_an_abandoned_claim_is_taken_over_by_the_same_request(api, admin_key, clean_db):
    """A claim left by a request that died (no answer stored), five minutes on."""
    key = _key()
    body = json.dumps(ORDER).encode()
    _unanswered_claim(clean_db, admin_key, key, body, age=timedelta(minutes=5, seconds=1))
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}

    ran = api.as_key(admin_key).post("/api/v1/orders", data=body, headers=headers)
    again = api.as_key(admin_key).post("/api/v1/orders", data=body, headers=headers)

    assert ran.status_code == 201 and _order_count(clean_db) == 1
    assert (again.json(), again.headers["Idempotent-Replayed"]) == (ran.json(), "true")


# --- one key lookup per request ---------------------------------------------------------

@contextmanager
def api_key_lookups(res: Resources) -> Iterator[list[str]]:
    """The SELECTs on api_keys the live server (this process, this engine) runs meanwhile."""
    seen: list[str] = []

    def record(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("SELECT") and "FROM api_keys" in statement:
            seen.append(statement)

    event.listen(res.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(res.db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize("with_key", [True, False])
def test_a_post_looks_its_api_key_up_once(api, admin_key, resources, clean_db, with_key):
    headers = {"Idempotency-Key": _key()} if with_key else {}
    with api_key_lookups(resources) as lookups:
        response = api.as_key(admin_key).post("/api/v1/orders", json=ORDER, headers=headers)
    assert response.status_code == 201
    assert len(lookups) == 1, lookups


def test_an_error_answer_is_replayed_byte_for_byte_too(api, admin_key, clean_db):
    admin, key = api.as_key(admin_key), _key()
    bad = {"total_amount": "1.001", "user_id": 1}
    first = admin.post("/api/v1/orders", json=bad, headers={"Idempotency-Key": key})
    again = admin.post("/api/v1/orders", json=bad, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 400
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_claim_stored_as_parsed_json_before_the_upgrade_still_replays(api, admin_key,
                                                                       clean_db):
    admin, key = api.as_key(admin_key), _key()
    first = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})
    with clean_db.uow() as uow:  # as older versions stored it: the parsed object
        uow.session.execute(update(IdempotencyKey).values(response_body=first.json()))
        uow.commit()
    again = admin.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
