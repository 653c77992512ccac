"""POST /callbacks/<provider> over real HTTP, and the admin's inbox endpoints.

The app here publishes to a private Redis that no worker consumes from, so every
test can see exactly what was queued (and that nothing was, when it must not be).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from adapters.providers.sandbox.signature import (
    SIGNATURE_HEADER,
    build_signature_header,
    compute_signature,
)
from devstack.embedded import free_port
from domain.models import CallbackAuthFailure, PaymentEvent, ProviderCallback
from services.callback_wakeup import WAKE_TTL_MS
from tests.support.callbacks import event_body, post_callback, signed_headers, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.live_server import Api
from tests.support.private_stack import env_with, serve_app, settings_with

PAYMENTS_CLI = str(Path(sys.executable).parent / "payments")


@pytest.fixture
def inbox(clean_db, quiet_app):
    """(base_url, resources, broker) with empty tables and an empty broker."""
    url, res, broker = quiet_app
    client = broker.client()
    client.flushdb()
    client.close()
    return url, res, broker


def inbox_rows(res) -> list:
    table = ProviderCallback.__table__
    with res.uow() as uow:
        return list(uow.session.execute(select(table).order_by(table.c.id)))


def audit(res, event: str) -> list:
    table = PaymentEvent.__table__
    with res.uow() as uow:
        return list(uow.session.execute(
            select(table).where(table.c.event == event).order_by(table.c.id)))


def auth_failures(res) -> list:
    table = CallbackAuthFailure.__table__
    with res.uow() as uow:
        return list(uow.session.execute(select(table).order_by(table.c.id)))


def a_payment(res, amount: str = "100.00") -> int:
    return make_payment(res, make_order(res, total=amount), amount=amount)


# --- the happy path ---------------------------------------------------------------------

def test_valid_callback_is_committed_before_the_answer_and_queued_once(inbox):
    url, res, broker = inbox
    payment_id = a_payment(res)
    body = event_body(payment_id, event_id="evt_ok", amount="100.00")

    response = post_callback(url, body)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    [row] = inbox_rows(res)  # visible to a fresh transaction the moment we have the answer
    assert (row.provider, row.event_id, row.event_type, row.payment_id, row.status) == (
        "sandbox", "evt_ok", "payment.succeeded", payment_id, "received")
    assert bytes(row.raw_body) == body
    assert row.payload["data"]["amount"] == "100.00"
    # Not a message per callback: one wake-up for the batch appliers, which claim it.
    assert broker.queued("callbacks") == [{"task": "callbacks.apply_batch", "args": []}]


def test_a_burst_of_callbacks_sends_one_wake_up_not_one_message_each(inbox):
    url, res, broker = inbox
    bodies = [event_body(a_payment(res)) for _ in range(10)]

    started = time.monotonic()
    answers = [post_callback(url, body) for body in bodies]
    elapsed = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * 10
    assert [r.status for r in inbox_rows(res)] == ["received"] * 10
    # No batch runs here to clear the flag: a new wake-up only once it expired.
    queued = broker.queued("callbacks")
    assert {m["task"] for m in queued} == {"callbacks.apply_batch"}
    assert len(queued) <= 1 + int(elapsed / (WAKE_TTL_MS / 1000)), (len(queued), elapsed)


def test_redelivered_event_id_is_a_duplicate_and_not_queued_again(inbox):
    url, res, broker = inbox
    payment_id = a_payment(res)
    body = event_body(payment_id, event_id="evt_dup")

    first = post_callback(url, body)
    # the provider retries later: same event, a fresh signature
    second = post_callback(url, body, headers=signed_headers(body, timestamp=int(time.time())))

    assert first.json() == {"received": True, "duplicate": False}
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True}
    assert len(inbox_rows(res)) == 1
    assert len(broker.queued("callbacks")) == 1


def _stored_and_queued_once(res, broker, body: bytes, payment_id: int) -> None:
    [row] = inbox_rows(res)
    assert (bytes(row.raw_body), row.payment_id, row.status) == (body, payment_id, "received")
    assert broker.queued("callbacks") == [{"task": "callbacks.apply_batch", "args": []}]


def test_body_of_exactly_64_kib_is_accepted(inbox):
    url, res, broker = inbox
    payment_id = a_payment(res)
    body = event_body(payment_id)
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(body) == 64 * 1024
    response = post_callback(url, body)
    assert response.json() == {"received": True, "duplicate": False}
    _stored_and_queued_once(res, broker, body, payment_id)  # every byte of it


def test_a_provider_rotating_its_secret_sends_two_signatures(inbox):
    url, res, broker = inbox
    payment_id = a_payment(res)
    body = event_body(payment_id)
    headers = signed_headers(body, secret=["retired-secret", res.settings.sandbox_webhook_secret])
    response = post_callback(url, body, headers=headers)
    assert response.json() == {"received": True, "duplicate": False}
    _stored_and_queued_once(res, broker, body, payment_id)
    assert audit(res, "signature_verification_failed") == []  # the retired one is no failure


# --- every bad input: its status, and the trace §6 asks for -----------------------------

def _signature_cases(secret: str, tolerance: int):
    now = int(time.time())

    def header_for(body: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: build_signature_header(secret, body, now)}

    def altered(body: bytes) -> tuple[bytes, dict[str, str]]:
        return body.replace(b"100.00", b"1.00"), header_for(body)

    def reserialised(body: bytes) -> tuple[bytes, dict[str, str]]:
        return json.dumps(json.loads(body), indent=2).encode(), header_for(body)

    def stale(body: bytes) -> tuple[bytes, dict[str, str]]:
        return body, {SIGNATURE_HEADER: build_signature_header(secret, body,
                                                               now - tolerance - 60)}

    def future(body: bytes) -> tuple[bytes, dict[str, str]]:
        return body, {SIGNATURE_HEADER: build_signature_header(secret, body,
                                                               now + tolerance + 60)}

    return {
        "missing": (lambda b: (b, {}), "missing_signature"),
        "garbage": (lambda b: (b, {SIGNATURE_HEADER: "complete garbage"}), "malformed_signature"),
        "bad_hex": (lambda b: (b, {SIGNATURE_HEADER: f"t={now},v1={'z' * 64}"}),
                    "malformed_signature"),
        "wrong_secret": (lambda b: (b, {SIGNATURE_HEADER: build_signature_header(
            "not-our-secret", b, now)}), "signature_mismatch"),
        "signature_of_other_timestamp": (lambda b: (b, {SIGNATURE_HEADER: (
            f"t={now},v1={compute_signature(secret, now - 1, b)}")}), "signature_mismatch"),
        "stale": (stale, "timestamp_too_old"),
        "future": (future, "timestamp_in_future"),
        "altered_after_signing": (altered, "signature_mismatch"),
        "reserialised_json": (reserialised, "signature_mismatch"),
        "unsigned_empty_body": (lambda b: (b"", {}), "missing_signature"),
    }


@pytest.mark.parametrize("case", sorted(_signature_cases("x", 300)))
def test_bad_signature_is_401_audited_and_nothing_stored_or_queued(inbox, case):
    url, res, broker = inbox
    body = event_body(a_payment(res), amount="100.00")
    make, reason = _signature_cases(res.settings.sandbox_webhook_secret,
                                    res.settings.callback_tolerance_seconds)[case]
    sent_body, headers = make(body)

    response = requests.post(f"{url}/callbacks/sandbox", data=sent_body,
                             headers=headers or None, timeout=30)

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_signature"
    assert response.json()["reason"] == reason
    assert inbox_rows(res) == []
    assert broker.queued("callbacks") == []
    # Counted per provider and minute, not a row per request (anonymous junk is cheap).
    [failures] = auth_failures(res)
    assert (failures.provider, failures.count) == ("sandbox", 1)
    assert failures.first_reason == failures.last_reason == reason
    assert audit(res, "signature_verification_failed") == []


@pytest.mark.parametrize("body, code, field", [
    (b"", "malformed_json", None),
    (b"this is not json", "malformed_json", None),
    (b'["an", "array"]', "malformed_json", None),
    (b'{"id": "evt_1", "type": "payment.succeeded"}', "invalid_callback", "data"),
    (b'{"id": "evt_1", "type": "charge.succeeded", "data": {}}', "invalid_callback", "type"),
    (b'{"id": "evt_1", "type": "payment.succeeded", "data": {"payment_id": 1, '
     b'"transaction_id": "t", "amount": "1.001", "currency": "CNY"}}', "invalid_amount",
     "data.amount"),
    (b'{"id": "evt_1", "type": "refund.succeeded", "data": {"payment_id": 1, '
     b'"amount": "1.00", "currency": "CNY"}}', "invalid_callback", "data.refund_id"),
])
def test_authentic_but_malformed_body_is_400_and_nothing_stored(inbox, body, code, field):
    url, res, broker = inbox
    response = post_callback(url, body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert response.json()["detail"]
    if field:
        assert response.json()["field"] == field
    assert inbox_rows(res) == []
    assert broker.queued("callbacks") == []
    assert audit(res, "signature_verification_failed") == []


@pytest.mark.parametrize("size", [64 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024])
def test_body_over_64_kib_is_413(inbox, size):
    url, res, broker = inbox
    body = event_body(a_payment(res))
    body = body[:-1] + b" " * (size - len(body)) + b"}"
    response = post_callback(url, body)  # signed: the size alone refuses it
    assert response.status_code == 413
    assert response.json()["code"] == "request_entity_too_large"
    assert inbox_rows(res) == []
    assert broker.queued("callbacks") == []


def test_chunked_body_over_64_kib_is_413_without_content_length(inbox):
    url, res, _ = inbox
    body = event_body(a_payment(res))
    body = body[:-1] + b" " * (100 * 1024) + b"}"
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    response = requests.post(f"{url}/callbacks/sandbox", data=chunks,
                             headers=signed_headers(body), timeout=30)
    assert response.status_code == 413
    assert inbox_rows(res) == []


def test_unknown_provider_is_404_and_leaves_no_trace(inbox):
    url, res, broker = inbox
    body = event_body(a_payment(res))
    response = post_callback(url, body, provider="paypal")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_provider"
    assert inbox_rows(res) == [] and broker.queued("callbacks") == []
    assert audit(res, "signature_verification_failed") == []


def test_only_post_is_allowed(inbox):
    url, _, _ = inbox
    response = requests.get(f"{url}/callbacks/sandbox", timeout=10)
    assert response.status_code == 405


# --- the servers behind it failing ------------------------------------------------------

def test_broker_unreachable_still_answers_200_quickly_and_stores(clean_db, settings):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with serve_app(settings_with(settings, redis_url=dead_broker)) as (url, res):
        body = event_body(a_payment(res), event_id="evt_no_broker")
        started = time.monotonic()
        response = post_callback(url, body)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    assert elapsed < 5, f"the answer took {elapsed:.1f}s with the broker down"
    [row] = inbox_rows(clean_db)
    assert (row.event_id, row.status) == ("evt_no_broker", "received")


def test_database_unreachable_is_503_never_2xx(settings):
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    with serve_app(settings_with(settings, database_url=dead_db)) as (url, _):
        body = event_body(1)
        valid = post_callback(url, body)
        forged = post_callback(url, body, headers={SIGNATURE_HEADER: "t=1,v1=" + "a" * 64})
    assert valid.status_code == 503
    assert valid.json()["code"] == "database_unavailable"
    assert valid.headers["Retry-After"]
    # a forged one cannot even be audited: still not a 2xx, and the provider retries
    assert forged.status_code == 503


# --- admin: list and replay -------------------------------------------------------------

def test_admin_lists_the_inbox_filtered_by_status(inbox, admin_key):
    url, res, _ = inbox
    p1, p2 = a_payment(res), a_payment(res)
    first = store_callback(res, event_body(p1, event_id="evt_a"))
    store_callback(res, event_body(p2, event_id="evt_b"))
    with res.uow() as uow:
        uow.session.get(ProviderCallback, first).status = "unmatched"
        uow.commit()
    admin = Api(url, admin_key)

    everything = admin.get("/api/v1/callbacks").json()
    unmatched = admin.get("/api/v1/callbacks?status=unmatched").json()
    by_payment = admin.get(f"/api/v1/callbacks?payment_id={p2}").json()

    assert everything["total"] == 2 and len(everything["items"]) == 2
    assert [i["event_id"] for i in unmatched["items"]] == ["evt_a"]
    assert unmatched["total"] == 1
    item = unmatched["items"][0]
    assert item["status"] == "unmatched" and item["payment_id"] == p1
    assert item["payload"]["data"]["amount"] == "100.00"
    assert {"attempts", "last_error", "received_at", "processed_at"} <= item.keys()
    assert [i["event_id"] for i in by_payment["items"]] == ["evt_b"]
    bad = admin.get("/api/v1/callbacks?status=bogus")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_status"


def test_inbox_endpoints_are_admin_only(inbox, make_user_key):
    url, res, _ = inbox
    callback_id = store_callback(res, event_body(a_payment(res)))
    anonymous, user = Api(url), Api(url, make_user_key(1))
    assert anonymous.get("/api/v1/callbacks").status_code == 401
    assert user.get("/api/v1/callbacks").status_code == 403
    assert anonymous.post(f"/api/v1/callbacks/{callback_id}/replay").status_code == 401
    assert user.post(f"/api/v1/callbacks/{callback_id}/replay").status_code == 403


def test_replay_requeues_a_failed_callback_with_a_fresh_attempt_budget(inbox, admin_key):
    url, res, broker = inbox
    callback_id = store_callback(res, event_body(a_payment(res), event_id="evt_poison"))
    with res.uow() as uow:
        row = uow.session.get(ProviderCallback, callback_id)
        row.status, row.attempts, row.last_error = "failed", 6, "gave up"
        uow.commit()

    response = Api(url, admin_key).post(f"/api/v1/callbacks/{callback_id}/replay")

    assert response.status_code == 202
    assert response.json() == {"id": callback_id, "status": "received",
                               "previous_status": "failed", "enqueued": True}
    [row] = inbox_rows(res)
    assert (row.status, row.attempts) == ("received", 0)
    assert broker.queued("callbacks") == [{"task": "callbacks.process", "args": [callback_id]}]
    [replayed] = audit(res, "callback_replayed")
    assert replayed.actor == "admin" and replayed.detail["previous_status"] == "failed"


def test_replay_of_a_processed_or_unknown_callback_is_refused(inbox, admin_key):
    url, res, broker = inbox
    callback_id = store_callback(res, event_body(a_payment(res)))
    with res.uow() as uow:
        uow.session.get(ProviderCallback, callback_id).status = "processed"
        uow.commit()
    admin = Api(url, admin_key)

    processed = admin.post(f"/api/v1/callbacks/{callback_id}/replay")
    unknown = admin.post(f"/api/v1/callbacks/{2**62}/replay")
    huge = admin.post(f"/api/v1/callbacks/{2**64}/replay")

    assert processed.status_code == 409
    assert processed.json()["code"] == "callback_already_processed"
    assert unknown.status_code == 404 and unknown.json()["code"] == "callback_not_found"
    assert huge.status_code == 404
    assert broker.queued("callbacks") == []


def test_cli_replay(inbox, stack_env):
    _, res, broker = inbox
    callback_id = store_callback(res, event_body(a_payment(res)))
    with res.uow() as uow:
        uow.session.get(ProviderCallback, callback_id).status = "unmatched"
        uow.commit()

    done = subprocess.run([PAYMENTS_CLI, "callbacks", "replay", str(callback_id)],
                          env=env_with(stack_env, res.settings), capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["previous_status"] == "unmatched" and outcome["enqueued"] is True
    assert broker.queued("callbacks") == [{"task": "callbacks.process", "args": [callback_id]}]
    [replayed] = audit(res, "callback_replayed")
    assert replayed.actor == "cli"

    again = subprocess.run([PAYMENTS_CLI, "callbacks", "replay", str(callback_id)],
                           env=env_with(stack_env, res.settings), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0  # received again: a second replay is allowed and harmless
