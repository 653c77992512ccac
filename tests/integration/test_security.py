"""Safe production defaults and what anonymous requests cannot do (issue: security).

A production app is built here from the test servers' settings with APP_ENV=production
and strong secrets, and served over real HTTP beside the suite's test-mode app.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import redis as redis_lib
import requests
from sqlalchemy import func, select, text, update

from adapters.resources import Resources
from config import Settings
from config_secrets import Secrets
from domain.models import CallbackAuthFailure, IdempotencyKey, Payment, ProviderCallback
from services.checkout import checkout_url
from services.maintenance import purge_idempotency_keys
from tests.support.callbacks import event_body, post_callback, signed_headers
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import PrivateRedis, serve_app, settings_with
from web.rate_limits import KEY_PREFIX
from web.security_headers import HEADERS

METRICS_TOKEN = "m" * 40


def production(settings: Settings) -> Settings:
    return dataclasses.replace(settings, environment="production", secrets=Secrets(
        checkout_token_secret="c" * 40, flower_basic_auth="ops:" + "p" * 40,
        metrics_bearer_token=METRICS_TOKEN))


@pytest.fixture(scope="module")
def prod_url(settings) -> Iterator[str]:
    with serve_app(production(settings)) as (url, _res):
        yield url


def test_the_production_app_mounts_no_stand_in(settings, prod_url, live_url):
    from web.app import create_app

    rules = [r.rule for r in create_app(production(settings)).url_map.iter_rules()]
    assert not [r for r in rules if r.startswith(("/sandbox", "/doubles"))]
    # ... while the test app has them, so the check above can fail.
    assert [r for r in create_app(settings).url_map.iter_rules()
            if r.rule.startswith("/sandbox")]
    for path in ("/sandbox/pay/tkt_x", "/sandbox/pay/tkt_x/approve"):
        refused = requests.post(prod_url + path, timeout=10)
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    # In test the route exists (the sandbox's own page says the ticket is unknown).
    known = requests.get(live_url + "/sandbox/pay/tkt_x", timeout=10)
    assert known.headers["Content-Type"].startswith("text/html")
    # No method is silently sent to the sandbox: with none routed, none is enabled.
    spec = requests.get(prod_url + "/openapi.json", timeout=10).json()
    assert not [p for p in spec["paths"] if p.startswith("/sandbox")]


def test_no_method_is_enabled_without_a_real_provider_in_production(settings, prod_url,
                                                                  clean_db):
    from services.api_keys import create_api_key

    key = create_api_key(clean_db.uow(), "admin", name="prod admin")
    methods = requests.get(prod_url + "/api/v1/payment-methods",
                           headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    # Only the wallet's balance, which no provider serves.
    assert [m["code"] for m in methods["items"] if m["enabled"]] == ["balance"]
    order = make_order(clean_db)
    refused = requests.post(prod_url + "/api/v1/payments", timeout=10,
                            headers={"Authorization": f"Bearer {key}"},
                            json={"order_id": order, "method": "wechat"})
    assert refused.status_code == 400 and refused.json()["code"] == "unsupported_method"
    with clean_db.uow() as uow:
        assert uow.session.execute(select(func.count()).select_from(Payment)).scalar_one() == 0


def test_metrics_need_the_bearer_token_outside_dev(prod_url, live_url):
    assert requests.get(prod_url + "/metrics", timeout=10).status_code == 401
    wrong = requests.get(prod_url + "/metrics", timeout=10,
                         headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_metrics_token"
    ok = requests.get(prod_url + "/metrics", timeout=10,
                      headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "payments_callbacks_total" in ok.text
    assert requests.get(live_url + "/metrics", timeout=10).status_code == 200  # dev: open


def test_security_headers_on_the_api_the_docs_and_the_cashier_page(api, clean_db, settings):
    payment = make_payment(clean_db, make_order(clean_db))
    with clean_db.uow() as uow:
        expires_at = uow.session.get(Payment, payment).expires_at
    page = checkout_url(settings, payment, expires_at).removeprefix(settings.public_base_url)
    for path in ("/api/v1/payment-methods", "/docs", "/openapi.json", page, "/healthz",
                 "/no/such/page"):
        response = api.get(path)
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
    assert "frame-ancestors 'none'" in HEADERS["Content-Security-Policy"]
    # The pages load nothing inline that this policy would block.
    for path in ("/docs", page):
        html = api.get(path).text
        assert "<style>" not in html and not re.search(r"<script(?![^>]*(src=|json))", html)


def test_a_javascript_pay_url_is_never_linked_on_the_cashier_page(api, clean_db, settings):
    payment = make_payment(clean_db, make_order(clean_db), status="processing")
    with clean_db.uow() as uow:
        uow.session.execute(update(Payment).where(Payment.id == payment).values(
            pay_url="javascript:alert(document.cookie)", qr_payload="weixin://wxpay/x"))
        uow.commit()
        expires_at = uow.session.get(Payment, payment).expires_at
    link = checkout_url(settings, payment, expires_at).removeprefix(settings.public_base_url)
    path, _, query = link.partition("?")
    status = api.get(f"{path}/status?{query}").json()
    assert status["pay_url"] is None and status["has_qr"] is True
    assert "javascript:" not in api.get(link).text


@contextmanager
def _served_with_private_redis(settings: Settings, tmp_path, **changes
                               ) -> Iterator[tuple[str, Resources, PrivateRedis]]:
    """The test app over HTTP with its own Redis (the limit's counters live there)."""
    broker = PrivateRedis(tmp_path)
    broker.start()
    try:
        with serve_app(dataclasses.replace(settings_with(settings, redis_url=broker.url),
                                           **changes)) as (url, res):
            yield url, res, broker
    finally:
        broker.stop()


@pytest.fixture
def limited_app(settings, clean_db, tmp_path) -> Iterator[tuple[str, Resources]]:
    """The test app with the production limit, its own Redis (the counters live there)."""
    with _served_with_private_redis(settings, tmp_path,
                                    callback_auth_failure_limit="20 per minute") as served:
        yield served[:2]


def test_a_thousand_bad_signatures_write_a_row_a_minute_and_get_429(limited_app):
    url, res = limited_app
    payment = make_payment(res, make_order(res))
    session = requests.Session()
    body = event_body(payment)
    statuses = [post_callback(url, body, session=session,
                              headers=signed_headers(body, secret="not-the-secret")).status_code
                for _ in range(1000)]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    with res.uow() as uow:
        rows = uow.session.execute(select(CallbackAuthFailure.count)).scalars().all()
        stored = uow.session.execute(
            select(func.count()).select_from(ProviderCallback)).scalar_one()
    assert 1 <= len(rows) <= 2 and sum(rows) == 20  # a minute may turn
    assert stored == 0
    # Past the limit the address gets the provider's format and a Retry-After.
    limited = post_callback(url, body, session=session,
                            headers=signed_headers(body, secret="not-the-secret"))
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    # A genuine callback from elsewhere is not slowed: the limit is per client address,
    # and only refusals count against it (here: the same address, still refused).
    assert limited.json()["code"] == "too_many_refused_callbacks"


def test_genuine_callbacks_never_count_against_the_limit(limited_app):
    url, res = limited_app
    for _ in range(30):  # more than the limit, all authentic
        payment = make_payment(res, make_order(res))
        assert post_callback(url, event_body(payment)).status_code == 200


@contextmanager
def _redis_commands(url: str) -> Iterator[list[str]]:
    """Every command the Redis at `url` runs inside the block (MONITOR), as text, filled
    in when the block ends."""
    seen: list[str] = []
    watcher = redis_lib.Redis.from_url(url, socket_timeout=10)
    with watcher.monitor() as monitor:
        yield seen
        marker = f"end-of-block-{uuid.uuid4().hex}"
        other = redis_lib.Redis.from_url(url)
        other.echo(marker)
        other.close()
        while marker not in (command := monitor.next_command()["command"]):
            seen.append(command)
    watcher.close()


def _limiter_commands(commands: list[str]) -> list[str]:
    return [command for command in commands if KEY_PREFIX in command]


def test_a_genuine_callback_never_touches_the_limiter(settings, clean_db, tmp_path):
    """No Redis command of the limit for a verified signature (issue #21, B1): only a
    refused one is counted."""
    with _served_with_private_redis(settings, tmp_path,
                                    callback_auth_failure_limit="20 per minute"
                                    ) as (url, res, broker):
        with _redis_commands(broker.url) as commands:
            for _ in range(5):
                payment = make_payment(res, make_order(res))
                assert post_callback(url, event_body(payment)).status_code == 200
        assert commands, "the monitor saw nothing (the wake-ups at least)"
        assert _limiter_commands(commands) == []
        # The same watch does see the limit at work when a signature is refused.
        body = event_body(make_payment(res, make_order(res)))
        with _redis_commands(broker.url) as commands:
            refused = post_callback(url, body,
                                    headers=signed_headers(body, secret="not-the-secret"))
        assert refused.status_code == 401
        assert _limiter_commands(commands)


def test_past_the_limit_a_genuine_callback_from_the_same_address_is_still_stored(
        settings, clean_db, tmp_path):
    """A provider behind the same address as an attacker (a shared NAT or proxy) must not
    lose callbacks: the limit refuses bad signatures only, and a good one is never
    counted nor refused by it."""
    with _served_with_private_redis(settings, tmp_path,
                                    callback_auth_failure_limit="3 per minute"
                                    ) as (url, res, _):
        junk = event_body(make_payment(res, make_order(res)))
        bad = signed_headers(junk, secret="not-the-secret")
        assert [post_callback(url, junk, headers=bad).status_code
                for _ in range(5)] == [401, 401, 401, 429, 429]
        payment = make_payment(res, make_order(res))
        genuine = post_callback(url, event_body(payment))
        assert genuine.status_code == 200, genuine.text
        with res.uow() as uow:
            assert uow.session.execute(
                select(func.count()).select_from(ProviderCallback)
                .where(ProviderCallback.payment_id == payment)).scalar_one() == 1
        limited = post_callback(url, junk, headers=bad)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["Retry-After"]) <= 60


def test_the_limit_keys_on_the_client_behind_trusted_proxies(settings, clean_db, tmp_path):
    with _served_with_private_redis(settings, tmp_path, trusted_proxies=1,
                                    callback_auth_failure_limit="2 per minute"
                                    ) as (url, res, _):
        junk = event_body(make_payment(res, make_order(res)))
        bad = signed_headers(junk, secret="not-the-secret")
        attacker = {**bad, "X-Forwarded-For": "203.0.113.7"}
        assert [post_callback(url, junk, headers=attacker).status_code
                for _ in range(3)] == [401, 401, 429]
        neighbour = {**bad, "X-Forwarded-For": "203.0.113.8"}
        assert post_callback(url, junk, headers=neighbour).status_code == 401


def test_a_redis_outage_lets_refusals_through_as_401(settings, clean_db, tmp_path):
    with _served_with_private_redis(settings, tmp_path,
                                    callback_auth_failure_limit="1 per minute"
                                    ) as (url, res, broker):
        junk = event_body(make_payment(res, make_order(res)))
        bad = signed_headers(junk, secret="not-the-secret")
        broker.stop()
        statuses = [post_callback(url, junk, headers=bad).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]


def test_unknown_provider_names_add_no_metric_series(api, live_url):
    for name in ("nonsense-one", "x" * 60, "sandbox2"):
        response = requests.post(f"{live_url}/callbacks/{name}", data=b"{" * 60000,
                                 timeout=10)
        assert response.status_code == 404
    metrics = api.get("/metrics").text
    assert "nonsense-one" not in metrics and "sandbox2" not in metrics
    assert "x" * 60 not in metrics


@pytest.mark.parametrize("path", ["/api/v1/callbacks", "/api/v1/payments"])
@pytest.mark.parametrize("page", ["10001", "99999999999999999", "9223372036854775807"])
def test_every_listing_caps_its_page(api, admin_key, path, page):
    response = api.as_key(admin_key).get(f"{path}?page={page}&page_size=100")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_field" and response.json()["field"] == "page"
    assert api.as_key(admin_key).get(f"{path}?page=10000").status_code == 200


def test_a_signed_lone_surrogate_is_400_and_nothing_is_stored(api, live_url, clean_db):
    payment = make_payment(clean_db, make_order(clean_db))
    doc = json.loads(event_body(payment))
    doc["id"] = "evt_\\ud800"
    body = json.dumps(doc).replace("\\\\ud800", "\\ud800").encode()
    assert b"\\ud800" in body
    response = post_callback(live_url, body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_json"
    with clean_db.uow() as uow:
        assert uow.session.execute(
            select(func.count()).select_from(ProviderCallback)).scalar_one() == 0


def test_database_errors_are_logged_without_their_values(clean_db):
    secret = "tok_" + "s" * 30
    with pytest.raises(Exception) as failed, clean_db.uow() as uow:
        # The error is PostgreSQL's own (it does not echo the value); SQLAlchemy would
        # append "[parameters: {'v': 'tok_...'}]" to it but for hide_parameters.
        uow.session.execute(text("SELECT CAST(:v AS text), 1 / 0"), {"v": secret})
    assert "division by zero" in str(failed.value)
    assert secret not in str(failed.value)


@pytest.mark.parametrize("key", ["has space", "tab\there", "ключ", "x" * 256])
def test_idempotency_keys_outside_the_documented_characters_are_refused(api, admin_key, key):
    response = api.as_key(admin_key).post(
        "/api/v1/orders", json={"total_amount": "1.00", "user_id": 1},
        headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


def test_stored_answers_are_purged_after_24_hours(api, admin_key, clean_db):
    admin = api.as_key(admin_key)
    for key in ("old-1", "fresh-1"):
        assert admin.post("/api/v1/orders", json={"total_amount": "1.00", "user_id": 1},
                          headers={"Idempotency-Key": key}).status_code == 201
    with clean_db.uow() as uow:
        uow.session.execute(update(IdempotencyKey).where(IdempotencyKey.key == "old-1")
                            .values(created_at=datetime(2020, 1, 1, tzinfo=UTC)))
        uow.commit()
    summary = purge_idempotency_keys(clean_db)
    assert summary["changed"] == 1
    with clean_db.uow() as uow:
        left = uow.session.execute(select(IdempotencyKey.key)).scalars().all()
    assert left == ["fresh-1"]
