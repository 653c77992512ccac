"""Every endpoint x {no key, bad key, other user, owner, admin}.

The owner is user 1; "other user" is user 2, who must get 404 for user 1's things
(existence does not leak) and 403 for admin-only operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from domain.models import ApiKey
from services.api_keys import create_api_key, hash_key
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until

OWNER, OTHER = 1, 2
CALLERS = ("no_key", "bad_key", "other_user", "owner", "admin")


@dataclass(frozen=True)
class Case:
    method: str
    path: str            # {order} / {payment} filled from the fixture rows
    body: dict | None
    expected: tuple[int, int, int, int, int]  # in CALLERS order
    payment_status: str = "init"


CASES = {
    "create order": Case("POST", "/api/v1/orders", {"total_amount": "10.00", "user_id": OWNER},
                         (401, 401, 403, 201, 201)),
    "get order": Case("GET", "/api/v1/orders/{order}", None, (401, 401, 404, 200, 200)),
    "transition order": Case("POST", "/api/v1/orders/{order}/transitions", {"to": "cancelled"},
                             (401, 401, 403, 403, 200)),
    "create payment": Case("POST", "/api/v1/payments", {"order_id": "{order}"},
                           (401, 401, 404, 201, 201), payment_status="failed"),
    "list payments": Case("GET", "/api/v1/payments", None, (401, 401, 200, 200, 200)),
    "get payment": Case("GET", "/api/v1/payments/{payment}", None, (401, 401, 404, 200, 200)),
    "payment status": Case("GET", "/api/v1/payments/{payment}/status", None,
                           (401, 401, 404, 200, 200)),
    "pay": Case("POST", "/api/v1/payments/{payment}/pay", None, (401, 401, 404, 202, 202)),
    "cancel": Case("POST", "/api/v1/payments/{payment}/cancel", {}, (401, 401, 404, 200, 200)),
    "retry": Case("POST", "/api/v1/payments/{payment}/retry", None, (401, 401, 404, 201, 201),
                  payment_status="failed"),
    "payment methods": Case("GET", "/api/v1/payment-methods", None, (401, 401, 200, 200, 200)),
}


def _fill(value, ids: dict[str, int]):
    if isinstance(value, str):
        if value in ("{order}", "{payment}"):
            return ids[value.strip("{}")]
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.fixture
def worker_if_paying(request, name):
    """`pay` queues a task: let a real worker run it inside the test, so no message is
    left in flight to meet the next test's rows (ids restart with each TRUNCATE)."""
    if name == "pay":
        request.getfixturevalue("celery_worker")


def _drained(res) -> bool:
    return res.redis.llen("payments") == 0 and res.redis.hlen("unacked") == 0


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name", list(CASES))
def test_authorization_matrix(api, clean_db, worker_if_paying, name, caller):
    case = CASES[name]
    order_id = make_order(clean_db, user_id=OWNER)
    payment_id = make_payment(clean_db, order_id, user_id=OWNER, status=case.payment_status,
                              created_at=datetime.now(UTC) - timedelta(minutes=5),
                              expires_at=datetime.now(UTC) + timedelta(minutes=25))
    keys = {
        "no_key": None,
        "bad_key": "pk_user_this-key-was-never-issued",
        "other_user": create_api_key(clean_db.uow(), "user", user_id=OTHER),
        "owner": create_api_key(clean_db.uow(), "user", user_id=OWNER),
        "admin": create_api_key(clean_db.uow(), "admin"),
    }
    ids = {"order": order_id, "payment": payment_id}
    response = api.as_key(keys[caller]).request(
        case.method, _fill(case.path, ids),
        json=_fill(case.body, ids) if case.body is not None else None)

    expected = case.expected[CALLERS.index(caller)]
    assert response.status_code == expected, response.text
    if name == "pay" and expected == 202:
        wait_until(lambda: api.as_key(keys["admin"]).get(
            f"/api/v1/payments/{payment_id}").json()["pay_url"],
            timeout=30, message="the worker's provider payment")
        wait_until(lambda: _drained(clean_db), timeout=30, message="payments queue drained")
    if expected >= 400:
        body = response.json()
        assert body["detail"]
        assert body["code"] == {
            401: "missing_api_key" if caller == "no_key" else "invalid_api_key",
            403: "admin_only" if name == "transition order" else "user_id_not_allowed",
            404: "order_not_found" if name in ("get order", "create payment")
            else "payment_not_found",
        }[expected]


def test_other_users_listing_shows_none_of_the_owners_payments(api, clean_db):
    order_id = make_order(clean_db, user_id=OWNER)
    make_payment(clean_db, order_id, user_id=OWNER)
    other = create_api_key(clean_db.uow(), "user", user_id=OTHER)
    assert api.as_key(other).get("/api/v1/payments").json()["items"] == []
    response = api.as_key(other).get("/api/v1/payments", params={"order_id": order_id})
    assert response.json()["total"] == 0


def test_revoked_key_is_refused(api, clean_db):
    key = create_api_key(clean_db.uow(), "admin")
    other = create_api_key(clean_db.uow(), "admin")
    client = api.as_key(key)
    assert client.get("/api/v1/payment-methods").status_code == 200  # it worked until now
    with clean_db.uow() as uow:
        uow.session.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(key))
                            .values(revoked_at=datetime.now(UTC)))
        uow.commit()
    response = client.get("/api/v1/payment-methods")
    assert (response.status_code, response.json()["code"]) == (401, "invalid_api_key")
    assert api.as_key(other).get("/api/v1/payment-methods").status_code == 200  # only that one


@pytest.mark.parametrize("header", ["Bearer", "Bearer   "])
def test_an_empty_bearer_header_is_a_missing_key(api, header):
    response = api.get("/api/v1/payment-methods", headers={"Authorization": header})
    assert (response.status_code, response.json()["code"]) == (401, "missing_api_key")


@pytest.mark.parametrize("header", ["Basic YWRtaW46YWRtaW4=", "token", "Token abc",
                                    "pk_admin_abc"])
def test_another_authorization_scheme_is_an_invalid_key_saying_what_is_expected(api, header):
    response = api.get("/api/v1/payment-methods", headers={"Authorization": header})
    body = response.json()
    assert (response.status_code, body["code"]) == (401, "invalid_api_key")
    assert "Bearer <key>" in body["detail"]
    assert body["expected"] == "Bearer <key>"
