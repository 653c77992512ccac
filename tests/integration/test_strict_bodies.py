"""Strict request bodies, as Stripe's: unknown fields, other media types and oversized
bodies are refused with the JSON error format, and nothing is written."""

from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import func, select

from domain.models import IdempotencyKey, Order
from web.app import create_app
from web.json_body import MAX_BODY_BYTES


def _orders(res) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(Order)).scalar_one()


def _strict_post_routes(settings, resources) -> list[str]:
    """Every POST of the real app whose body is ours to define: the API and the cashier
    page (not provider callbacks, whose format is the provider's, nor the sandbox)."""
    app = create_app(settings, resources)
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()) and rule.rule.startswith(("/api/", "/checkout/")):
            paths.append(re.sub(r"<(?:int:)?\w+>", "1", rule.rule))
    return sorted(paths)


def test_every_api_and_cashier_post_has_its_body_checked(settings, resources):
    assert len(_strict_post_routes(settings, resources)) >= 10


def test_an_unknown_field_in_any_post_body_is_400_naming_it(api, admin_key, settings,
                                                           clean_db):
    for path in _strict_post_routes(settings, clean_db):
        response = api.as_key(admin_key).post(f"{path}?token=x", json={"surprise": 1})
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert (body["code"], body["field"]) == ("unknown_field", "surprise"), path
        assert "'surprise'" in body["detail"]
    assert _orders(clean_db) == 0


def test_a_typo_next_to_valid_fields_writes_nothing(api, admin_key, clean_db):
    response = api.as_key(admin_key).post("/api/v1/orders", json={
        "total_amount": "10.00", "user_id": 1, "curency": "CNY"})
    assert response.status_code == 400
    assert response.json()["field"] == "curency"
    assert "currency" in response.json()["allowed_fields"]
    assert _orders(clean_db) == 0


@pytest.mark.parametrize(("content_type", "data"), [
    ("application/x-www-form-urlencoded", "total_amount=10.00&user_id=1"),
    ("text/plain", '{"total_amount": "10.00", "user_id": 1}'),
    (None, '{"total_amount": "10.00", "user_id": 1}'),
])
def test_a_body_that_is_not_json_is_415(api, admin_key, clean_db, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.as_key(admin_key).post("/api/v1/orders", data=data.encode(),
                                          headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    assert "application/json" in response.json()["detail"]
    assert _orders(clean_db) == 0


def test_json_with_a_charset_is_json(api, admin_key, clean_db):
    response = api.as_key(admin_key).post(
        "/api/v1/orders", data=b'{"total_amount": "10.00", "user_id": 1}',
        headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


def test_a_20_mb_body_is_413_in_the_json_error_format(api, admin_key, clean_db):
    big = b'{"total_amount": "10.00", "user_id": 1, "x": "' + b"a" * (20 << 20) + b'"}'
    response = api.as_key(admin_key).post(
        "/api/v1/orders", data=big,
        headers={"Content-Type": "application/json", "Idempotency-Key": "big-1"})
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": f"A request body may be at most {MAX_BODY_BYTES} bytes",
        "code": "body_too_large", "max_bytes": MAX_BODY_BYTES}
    assert _orders(clean_db) == 0
    with clean_db.uow() as uow:  # refused before the idempotency claim
        assert uow.session.execute(select(func.count()).select_from(IdempotencyKey)
                                   ).scalar_one() == 0


def test_an_oversized_chunked_body_is_413_too(live_url, admin_key, clean_db):
    def chunks():
        for _ in range(4):
            yield b"a" * MAX_BODY_BYTES

    response = requests.post(live_url + "/api/v1/orders", data=chunks(), timeout=30,
                             headers={"Content-Type": "application/json",
                                      "Authorization": f"Bearer {admin_key}"})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "body_too_large"
    assert _orders(clean_db) == 0


def test_a_body_at_the_limit_is_read(api, admin_key, clean_db):
    padding = MAX_BODY_BYTES - len(b'{"total_amount": "10.00", "user_id": 1}')
    body = b'{"total_amount": "10.00", "user_id": 1}' + b" " * padding
    assert len(body) == MAX_BODY_BYTES
    response = api.as_key(admin_key).post("/api/v1/orders", data=body,
                                          headers={"Content-Type": "application/json"})
    assert response.status_code == 201
