"""GET /metrics with real processes: the callback counters, the final-status counter, the
scrape-time gauges, and web and worker figures in one scrape (multiprocess mode).

The first test runs its own gunicorn and its own worker on a private broker, both with
PROMETHEUS_MULTIPROC_DIR, as `make up` does: callbacks wait in the queue (backlog and
queue depth visible) until the worker is started, then the worker's outcomes reach the
web's scrape. The others use the in-process live server (its default registry), so
they read deltas: counters are process-wide and other tests move them too.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from devstack.scratch_servers import gunicorn as gunicorn_server
from tests.support.callbacks import (
    event_body,
    inbox_statuses,
    post_callback,
    signed_headers,
    store_callback,
)
from tests.support.factories import make_order, make_payment
from tests.support.metrics import delta, has, scrape, value
from tests.support.private_stack import env_with, serve_app, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.worker import start_worker

CB = "payments_callbacks_total"


@pytest.fixture
def multiprocess_web(clean_db, settings, stack_env, private_redis, tmp_path):
    """gunicorn (2 processes) on a private broker, metrics in a multiprocess dir; the env
    is returned too, so the test can start a worker that shares both."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**env_with(stack_env, settings_with(settings, redis_url=private_redis.url)),
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WEB_WORKERS": "2",
           "WEB_THREADS": "2"}
    log_path = tmp_path / "web.log"
    with gunicorn_server(env, log_path) as url:
        yield url, env, log_path


def test_callback_outcomes_backlog_and_worker_figures_in_one_scrape(
        multiprocess_web, clean_db, tmp_path):
    url, env, web_log = multiprocess_web
    payment_id = make_payment(clean_db, make_order(clean_db), status="processing")
    # A process that has just created its file and not yet sized it must not fail the
    # scrape (prometheus_client cannot read a 0-byte file).
    (Path(env["PROMETHEUS_MULTIPROC_DIR"]) / "counter_999999.db").touch()
    before = scrape(url)

    valid = event_body(payment_id)
    assert post_callback(url, valid).json() == {"received": True, "duplicate": False}
    assert post_callback(url, valid).json() == {"received": True, "duplicate": True}
    request_id = f"bad-sig-{uuid.uuid4().hex[:8]}"
    forged = event_body(payment_id)
    refused = post_callback(url, forged, headers={**signed_headers(forged, secret="wrong"),
                                                  "X-Request-ID": request_id})
    assert refused.status_code == 401
    assert refused.headers["X-Request-ID"] == request_id
    unknown_payment = event_body(payment_id + 10_000)  # stored, unmatched once processed
    assert post_callback(url, unknown_payment).json()["duplicate"] is False

    queued = scrape(url)
    for outcome, moved in {"received": 4, "verified": 3, "rejected": 1, "duplicate": 1,
                           "stored": 2}.items():
        assert delta(before, queued, CB, provider="sandbox", outcome=outcome) == moved, outcome
    assert delta(before, queued, "payments_callback_signature_failures_total",
                 provider="sandbox", reason="signature_mismatch") == 1
    assert delta(before, queued, "payments_callback_response_seconds_count",
                 provider="sandbox") == 4
    # No worker consumes yet: both stored callbacks wait in the inbox, and the appliers'
    # wake-up in the queue (one for both, unless the first's flag expired in between).
    assert value(queued, "payments_callback_inbox_backlog") == 2
    assert value(queued, "payments_queue_depth", queue="callbacks") in (1, 2)
    assert value(queued, "payments_queue_depth", queue="maintenance") == 0
    assert value(queued, "payments_callback_inbox_oldest_age_seconds") > 0
    assert value(queued, "payments_ready", check="database") == 1
    assert value(queued, "payments_ready", check="redis") == 1
    # Zero from the start, so the first one is an increase Prometheus can see.
    assert ("payments_callbacks_total", frozenset({("provider", "sandbox"),
                                                   ("outcome", "failed")})) in queued
    assert ("payments_provider_calls_total", frozenset({
        ("provider", "sandbox"), ("call", "create"), ("outcome", "unavailable")})) in queued

    # The web's log lines are JSON, with the request's id (the refused signature's warning).
    refusal = [line for line in _json_lines(web_log) if line.get("request_id") == request_id]
    assert refusal and refusal[0]["logger"] == "services.callbacks"
    assert {"ts", "level", "message"} <= set(refusal[0])

    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: inbox_statuses(clean_db) == {"processed": 1, "unmatched": 1},
                   timeout=30, message="both callbacks processed")

        def applied() -> dict | None:  # counters move just after the commits we waited for
            now = scrape(url)
            return now if (delta(before, now, CB, provider="sandbox", outcome="unmatched")
                           and delta(before, now, CB, provider="sandbox", outcome="processed")
                           and delta(before, now, "payments_task_seconds_count",
                                     task="callbacks.apply_batch") >= 1) else None

        after = wait_until(applied, timeout=15, interval=0.3, message="worker figures")
    finally:
        stop_process_group(worker)
    assert delta(before, after, CB, provider="sandbox", outcome="processed") == 1
    assert delta(before, after, CB, provider="sandbox", outcome="unmatched") == 1
    assert delta(before, after, "payments_payments_final_total", status="succeeded") == 1
    assert delta(before, after, "payments_task_seconds_count", task="callbacks.process") == 0
    assert value(after, "payments_callback_inbox_backlog") == 0
    assert value(after, "payments_queue_depth", queue="callbacks") == 0
    assert value(after, "payments_callback_inbox_oldest_age_seconds") == 0

    # The worker's lines about each callback carry its inbox id and payment id, and the
    # batch task that applied it.
    outcomes = [line for line in _json_lines(tmp_path / "worker.log")
                if line["logger"] == "services.callback_batches"
                and " -> " in line["message"]]
    assert {line["payment_id"] for line in outcomes} == {payment_id, payment_id + 10_000}
    assert all(line["callback_id"] and line["task"] == "callbacks.apply_batch"
               for line in outcomes)


def test_gauges_in_process_and_a_dead_broker_does_not_break_the_scrape(
        clean_db, settings, private_redis):
    store_callback(clean_db, event_body(123))  # stored, never enqueued
    with serve_app(settings_with(settings, redis_url=private_redis.url)) as (url, _res):
        samples = scrape(url)
        assert value(samples, "payments_callback_inbox_backlog") == 1
        assert value(samples, "payments_queue_depth", queue="payments") == 0
        private_redis.stop()
        samples = scrape(url)  # raises unless 200
        assert value(samples, "payments_callback_inbox_backlog") == 1
        assert not has(samples, "payments_queue_depth")  # left out, not a broken scrape
        assert value(samples, "payments_ready", check="redis") == 0  # as /readyz says
        assert value(samples, "payments_ready", check="database") == 1


def test_final_status_expiry_and_refund_counters_move_at_commit(api, clean_db, live_url,
                                                                admin_key):
    from services.maintenance import expire_stale_payments  # noqa: PLC0415

    before = scrape(live_url)
    make_payment(clean_db, make_order(clean_db), status="init", expires_at=_past())
    # A processing one is asked of its provider first; with no provider reference the
    # answer is unknown, so it expires too.
    make_payment(clean_db, make_order(clean_db), status="processing", expires_at=_past())
    assert expire_stale_payments(clean_db)["changed"] == 2
    paid = make_payment(clean_db, make_order(clean_db, status="paid"), status="succeeded")
    refused = api.as_key(admin_key).post(f"/api/v1/payments/{paid}/refunds",
                                                json={"amount": "500.00"})
    assert refused.status_code == 400  # rolled back: counts nothing
    accepted = api.as_key(admin_key).post(f"/api/v1/payments/{paid}/refunds",
                                                 json={"amount": "10.00"})
    assert accepted.status_code == 202, accepted.text
    order = api.as_key(admin_key).post("/api/v1/orders",
                                       json={"total_amount": "100.00", "user_id": 1})
    created = api.as_key(admin_key).post("/api/v1/payments", json={"order_id": order.json()["id"]})
    assert created.status_code == 201, created.text
    again = api.as_key(admin_key).post("/api/v1/payments", json={"order_id": order.json()["id"]})
    assert again.status_code == 200  # the active one: nothing created
    after = scrape(live_url)
    assert delta(before, after, "payments_payments_final_total", status="expired") == 2
    assert delta(before, after, "payments_expirations_total", kind="payment") == 2
    assert delta(before, after, "payments_refunds_total", outcome="requested") == 1
    assert delta(before, after, "payments_payments_created_total") == 1
    # A sweep that ran to its end says when; the gauge is what the stale-sweep alert reads.
    assert value(after, "payments_sweep_last_completed_timestamp_seconds",
                 sweep="expire_payments") > time.time() - 60


def _past():
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    return datetime.now(UTC) - timedelta(minutes=5)


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def test_a_failed_after_commit_hook_is_counted_and_its_transaction_stays_committed(
        live_url, clean_db):
    from sqlalchemy import select  # noqa: PLC0415

    from domain.models import Order  # noqa: PLC0415

    order_id = make_order(clean_db)
    before = scrape(live_url)

    def broken_hook() -> None:
        raise ConnectionError("the broker went away")

    sent: list[str] = []
    with clean_db.uow() as uow:
        uow.session.execute(Order.__table__.update().where(Order.id == order_id)
                            .values(status="cancelled"))
        uow.after_commit(broken_hook)
        uow.after_commit(lambda: sent.append("the next hook still runs"))
        uow.commit()

    assert delta(before, scrape(live_url), "payments_after_commit_failures_total") == 1
    assert sent == ["the next hook still runs"]
    with clean_db.uow() as uow:
        assert uow.session.execute(
            select(Order.status).where(Order.id == order_id)).scalar_one() == "cancelled"
