"""Bad input on every endpoint of §9: 400 with `detail` and `code`, and nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from domain.models import IdempotencyKey
from domain.webhook_models import (
    Event,
    Notification,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.support.webhooks import register

TABLES = (WebhookEndpoint, WebhookDelivery, WebhookAttempt, Event, Notification,
          IdempotencyKey)
BASE = "/api/v1/webhook-endpoints"
GOOD = {"url": "https://shop.example/hooks", "events": ["order.paid"]}

CREATE = [
    (b"", "malformed_json"), (b"not json", "malformed_json"), (b"[]", "malformed_json"),
    ({}, "invalid_url"), ({**GOOD, "url": "ftp://shop.example/x"}, "invalid_url"),
    ({**GOOD, "url": "javascript:alert(1)"}, "invalid_url"),
    ({**GOOD, "url": 42}, "invalid_url"), ({**GOOD, "url": "https://"}, "invalid_url"),
    ({**GOOD, "url": "https://u:p@shop.example/"}, "invalid_url"),
    ({**GOOD, "url": "https://shop.example/" + "x" * 3000}, "invalid_url"),
    ({"url": GOOD["url"]}, "invalid_events"), ({**GOOD, "events": []}, "invalid_events"),
    ({**GOOD, "events": "order.paid"}, "invalid_events"),
    ({**GOOD, "events": ["*", "order.paid"]}, "invalid_events"),
    ({**GOOD, "events": ["order.shipped"]}, "unknown_event"),
    ({**GOOD, "events": ["ping"]}, "unknown_event"),
    ({**GOOD, "description": 7}, "invalid_field"),
    ({**GOOD, "description": "x" * 501}, "invalid_field"),
    ({**GOOD, "secret": "whsec_mine"}, "unknown_field"),
]
UPDATE = [
    (b"", "malformed_json"), ({}, "empty_update"), ({"enabled": "yes"}, "invalid_field"),
    ({"enabled": None}, "invalid_field"), ({"url": "mailto:shop@example.com"}, "invalid_url"),
    ({"events": ["refund.maybe"]}, "unknown_event"), ({"secret": "x"}, "unknown_field"),
    ({"events": ["order.paid"], "url": "gopher://x"}, "invalid_url"),
]
QUERIES = [
    ("/api/v1/events", {"type": "order.shipped"}, "unknown_event"),
    ("/api/v1/events", {"after": "42"}, "invalid_event_id"),
    ("/api/v1/events", {"after": "evt_x"}, "invalid_event_id"),
    ("/api/v1/events", {"after": "evt_999999999"}, "unknown_cursor"),
    ("/api/v1/events", {"limit": "0"}, "invalid_field"),
    ("/api/v1/events", {"limit": "101"}, "invalid_field"),
    ("/api/v1/events", {"limit": "ten"}, "invalid_field"),
    ("/api/v1/notifications", {"unread": "maybe"}, "invalid_field"),
    ("/api/v1/notifications", {"limit": "1000"}, "invalid_field"),
    ("/api/v1/notifications", {"user_id": "-1"}, "invalid_field"),
    ("/api/v1/notifications", {"before": "x"}, "invalid_field"),
]


def _counts(res) -> dict[str, int]:
    with res.uow() as uow:
        return {m.__tablename__: int(uow.session.scalar(select(func.count()).select_from(m)))
                for m in TABLES}


def _send(client, method: str, path: str, body) -> object:
    if isinstance(body, bytes):
        return client.request(method, path, data=body,
                              headers={"Content-Type": "application/json"})
    return client.request(method, path, json=body)


def _assert_bad(response, code: str) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == code, answer
    assert isinstance(answer["detail"], str) and answer["detail"]


@pytest.fixture
def admin(api, admin_key):
    return api.as_key(admin_key)


def test_creating_an_endpoint_with_bad_input_is_400_and_writes_nothing(admin, clean_db):
    before = _counts(clean_db)
    for body, code in CREATE:
        _assert_bad(_send(admin, "POST", BASE, body), code)
    assert _counts(clean_db) == before


def test_updating_an_endpoint_with_bad_input_is_400_and_changes_nothing(admin, clean_db):
    endpoint = register(admin, GOOD["url"], GOOD["events"])
    path = f"{BASE}/{endpoint['id']}"
    before = admin.get(path).json()
    counts = _counts(clean_db)
    for body, code in UPDATE:
        _assert_bad(_send(admin, "PATCH", path, body), code)
    assert admin.get(path).json() == before
    assert _counts(clean_db) == counts


def test_bad_query_parameters_are_400(admin, clean_db, make_user_key):
    endpoint = register(admin, GOOD["url"], GOOD["events"])
    user = admin.as_key(make_user_key(5))
    counts = _counts(clean_db)
    for path, params, code in QUERIES:
        client = user if path.endswith("notifications") and "user_id" not in params else admin
        _assert_bad(client.get(path, params=params), code)
    deliveries = f"{BASE}/{endpoint['id']}/deliveries"
    for params in ({"status": "lost"}, {"limit": "0"}, {"before": "0"}):
        _assert_bad(admin.get(deliveries, params=params), "invalid_field")
    assert _counts(clean_db) == counts


def test_unknown_ids_are_404_and_user_keys_are_403(admin, clean_db, make_user_key):
    for method, path, code in [("GET", f"{BASE}/999999", "webhook_endpoint_not_found"),
                               ("PATCH", f"{BASE}/999999", "webhook_endpoint_not_found"),
                               ("DELETE", f"{BASE}/999999", "webhook_endpoint_not_found"),
                               ("POST", f"{BASE}/999999/rotate-secret",
                                "webhook_endpoint_not_found"),
                               ("GET", f"{BASE}/999999/deliveries",
                                "webhook_endpoint_not_found"),
                               ("GET", "/api/v1/events/evt_999999", "event_not_found"),
                               ("GET", "/api/v1/events/nonsense", "event_not_found"),
                               ("POST", "/api/v1/events/evt_999999/redeliver",
                                "event_not_found"),
                               ("POST", "/api/v1/notifications/999999/read",
                                "notification_not_found")]:
        body = {"enabled": True} if method == "PATCH" else None
        response = admin.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == code
    user = admin.as_key(make_user_key(5))
    for method, path in [("POST", BASE), ("GET", BASE), ("GET", "/api/v1/events"),
                         ("POST", "/api/v1/events/evt_1/redeliver")]:
        response = user.request(method, path, json=GOOD)
        assert response.status_code == 403 and response.json()["code"] == "admin_only"
    assert _counts(clean_db)["webhook_endpoints"] == 0
