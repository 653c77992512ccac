"""The daily reconciliation against each provider's stand-in (issue #17): the real
statement over HTTP (WeChat Pay's trade bill with its hash, Alipay's bill zip, the
sandbox's JSON), parsed, compared with our books, and what the provider took but we had
not applied applied through the callbacks' settlement."""

from __future__ import annotations

import gzip
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select
from wechatpayv3 import WeChatPay, WeChatPayType

from adapters.providers.wechatpay.statement import parse_trade_bill
from domain.models import (
    Order,
    OrderStatusHistory,
    Payment,
    PaymentEvent,
    ProviderCallback,
    Refund,
)
from domain.reconciliation_models import ReconciliationItem, ReconciliationRun
from domain.webhook_models import Event
from services.reconciliation.run import (
    ReconciliationFailed,
    reconcile_daily,
    reconcile_day,
    statement_day,
    unfinished_days,
)
from standins.models import StandinOrder
from standins.statements import arm_fault, clear_faults
from standins.wechatpay.keys import load_double_keys
from standins.wechatpay.notify import render_notification, transaction_payload
from standins.wechatpay.orders import order_view
from tests.integration.test_cli import run_cli
from tests.support.metrics import delta, scrape
from tests.support.processes import wait_until
from tests.support.reconciliation import ProviderDay

PROVIDERS = ("wechatpay", "alipay", "sandbox")


def today(res) -> object:
    return datetime.now(ZoneInfo(res.settings.reconcile_tz)).date()


def items(res, run_id: int) -> set[tuple[str, str, str, int | None]]:
    with res.uow() as uow:
        return {(i.object, i.kind, i.status, i.refund_id or i.payment_id) for i in
                uow.session.scalars(select(ReconciliationItem)
                                    .where(ReconciliationItem.run_id == run_id))}


def counts(res) -> dict[str, int]:
    """Rows a second run must not add to: audit, events, refunds, order history."""
    with res.uow() as uow:
        return {table.__tablename__: uow.session.execute(
            select(func.count()).select_from(table)).scalar_one()
            for table in (PaymentEvent, Event, Refund)}


def the_day(res, provider: str):
    """The scenario of the issue: 5 fine, 1 paid whose callback never came, 1 succeeded
    here but unknown at the provider, 1 amount mismatch, 1 refund paid out there and not
    finished here."""
    day = ProviderDay(res, provider)
    fine = [day.payment(f"{10 + n}.00") for n in range(5)]
    lost = day.payment("66.60", ours="processing")
    missing = day.payment("77.70", at_provider=False)
    mismatch = day.payment("88.80", provider_amount="99.00")
    refund_id = day.refund(fine[0], "4.00")
    return fine, lost, missing, mismatch, refund_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_day_reports_exactly_its_discrepancies_and_applies_what_the_provider_took(
        doubles, provider):
    res = doubles.resources
    fine, lost, missing, mismatch, refund_id = the_day(res, provider)

    summary = reconcile_day(res, provider, today(res))

    assert summary["status"] == "succeeded"
    assert (summary["statement_lines"], summary["matched"], summary["applied"],
            summary["flagged"]) == (8, 5, 2, 2)
    assert items(res, summary["run_id"]) == {
        ("payment", "missing_here", "applied", lost.payment_id),
        ("payment", "missing_at_provider", "flagged", missing.payment_id),
        ("payment", "amount_mismatch", "flagged", mismatch.payment_id),
        ("refund", "missing_here", "applied", refund_id)}
    with res.uow() as uow:
        paid = uow.session.get(Payment, lost.payment_id)
        assert paid.status == "succeeded" and paid.transaction_id == lost.transaction_id
        assert uow.session.get(Order, lost.order_id).status == "paid"
        assert uow.session.execute(select(PaymentEvent.actor).where(
            PaymentEvent.payment_id == lost.payment_id,
            PaymentEvent.event == "payment_succeeded")).scalar_one() == "system:reconcile"
        assert uow.session.get(Refund, refund_id).status == "succeeded"
        refunded = uow.session.get(Payment, fine[0].payment_id)
        assert (refunded.status, str(refunded.refunded_amount)) == ("partially_refunded",
                                                                    "4.00")
        # Flagged is only flagged: the mismatched payment keeps what we hold.
        assert uow.session.get(Payment, mismatch.payment_id).status == "succeeded"
        announced = uow.session.execute(select(Event.data).where(
            Event.type == "reconciliation.mismatch")).scalars().all()
    assert sorted(e["object"]["kind"] for e in announced) == sorted(
        ["missing_here", "missing_at_provider", "amount_mismatch", "missing_here"])
    assert {e["object"]["provider"] for e in announced} == {provider}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_run_twice_changes_nothing_the_second_time(doubles, provider):
    res = doubles.resources
    the_day(res, provider)
    scraped = scrape(doubles.live_url)
    first = reconcile_day(res, provider, today(res))
    after_first = scrape(doubles.live_url)
    before = counts(res)
    with res.uow() as uow:
        payments = uow.session.execute(
            select(Payment.id, Payment.status, Payment.refunded_amount, Payment.updated_at)
            .order_by(Payment.id)).all()

    second = reconcile_day(res, provider, today(res))

    assert second["run_id"] == first["run_id"]
    assert items(res, second["run_id"]) == items(res, first["run_id"])
    assert (second["applied"], second["flagged"]) == (first["applied"], first["flagged"])
    assert second["matched"] == first["matched"] + 2  # the two applied now match
    assert counts(res) == before
    with res.uow() as uow:
        assert uow.session.execute(
            select(Payment.id, Payment.status, Payment.refunded_amount, Payment.updated_at)
            .order_by(Payment.id)).all() == payments
        run = uow.session.get(ReconciliationRun, second["run_id"])
        assert (run.status, run.attempts) == ("succeeded", 2)
    # A metric per discrepancy, counted the first time only.
    name = "payments_reconciliation_mismatches_total"
    after_second = scrape(doubles.live_url)
    assert {kind: delta(scraped, after_first, name, provider=provider, kind=kind)
            for kind in ("missing_here", "missing_at_provider", "amount_mismatch")} == {
        "missing_here": 2, "missing_at_provider": 1, "amount_mismatch": 1}
    assert all(delta(after_first, after_second, name, provider=provider, kind=kind) == 0
               for kind in ("missing_here", "missing_at_provider", "amount_mismatch"))


@pytest.mark.parametrize(("provider", "fault", "reason"), [
    ("wechatpay", "hash", "does not match its SHA1"),
    ("wechatpay", "unavailable", "statement not fetched"),
    ("alipay", "unavailable", "statement not fetched"),
    ("sandbox", "unavailable", "statement not fetched"),
])
def test_a_statement_that_cannot_be_had_fails_the_run_and_touches_nothing(
        doubles, provider, fault, reason):
    res = doubles.resources
    _, lost, *_ = the_day(res, provider)
    before = counts(res)
    clear_faults(res.redis, provider)
    arm_fault(res.redis, provider, fault)

    with pytest.raises(ReconciliationFailed) as failed:
        reconcile_day(res, provider, today(res))

    assert reason in failed.value.reason
    with res.uow() as uow:
        run = uow.session.execute(select(ReconciliationRun).where(
            ReconciliationRun.provider == provider)).scalar_one()
        assert run.status == "failed" and reason in (run.error or "")
        assert uow.session.get(Payment, lost.payment_id).status == "processing"
        assert uow.session.execute(select(func.count()).select_from(ReconciliationItem)
                                   ).scalar_one() == 0
    assert counts(res) == before


def test_a_failed_run_is_retried_by_its_task_and_then_applies(doubles):
    """maintenance.reconcile on a real worker: the first statement fails its hash, the
    run is `failed`, and the task's retry (backoff shortened for the test) succeeds."""
    res = doubles.resources
    _, lost, *_ = the_day(res, "wechatpay")
    clear_faults(res.redis, "wechatpay")
    arm_fault(res.redis, "wechatpay", "hash")

    assert res.queue.send("maintenance.reconcile", today(res).isoformat(), ["wechatpay"], 2)

    def run() -> ReconciliationRun | None:
        with res.uow() as uow:
            row = uow.session.execute(select(ReconciliationRun).where(
                ReconciliationRun.provider == "wechatpay")).scalar_one_or_none()
            if row is not None:
                uow.session.expunge(row)
            return row
    failed = wait_until(lambda: (r := run()) is not None and r.status == "failed" and r,
                        timeout=30, message="the first attempt failed")
    assert "SHA1" in failed.error
    done = wait_until(lambda: (r := run()) is not None and r.status == "succeeded" and r,
                      timeout=60, message="the retry succeeded")
    assert done.attempts == 2 and done.error is None and done.applied == 2
    with res.uow() as uow:
        assert uow.session.get(Payment, lost.payment_id).status == "succeeded"


def test_the_runs_and_their_items_over_the_admin_api(doubles):
    res = doubles.resources
    _, _, missing, _, _ = the_day(res, "alipay")
    summary = reconcile_day(res, "alipay", today(res))
    admin = doubles.api.as_key(doubles.admin_key())

    runs = admin.get("/api/v1/reconciliation/runs", params={"provider": "alipay"})
    assert runs.status_code == 200, runs.text
    [run] = runs.json()["items"]
    assert (run["id"], run["status"], run["statement_date"], run["applied"],
            run["flagged"]) == (summary["run_id"], "succeeded", today(res).isoformat(), 2, 2)
    flagged = admin.get(f"/api/v1/reconciliation/runs/{run['id']}/items",
                        params={"status": "flagged", "page_size": 1})
    assert flagged.status_code == 200, flagged.text
    body = flagged.json()
    assert (body["total"], body["page_size"], len(body["items"])) == (2, 1, 1)
    assert {i["kind"] for i in admin.get(
        f"/api/v1/reconciliation/runs/{run['id']}/items",
        params={"status": "flagged"}).json()["items"]} == {"missing_at_provider",
                                                          "amount_mismatch"}
    [gone] = [i for i in admin.get(f"/api/v1/reconciliation/runs/{run['id']}/items"
                                   ).json()["items"] if i["kind"] == "missing_at_provider"]
    assert (gone["payment_id"], gone["reference"], gone["our_amount"],
            gone["provider_amount"]) == (missing.payment_id, missing.out_trade_no, "77.70", None)

    bad = admin.get(f"/api/v1/reconciliation/runs/{run['id']}/items",
                    params={"status": "weird"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_status")
    assert admin.get("/api/v1/reconciliation/runs", params={"date": "2026-13-01"}
                     ).json()["code"] == "invalid_field"
    unknown = admin.get("/api/v1/reconciliation/runs/999999999/items")
    assert (unknown.status_code, unknown.json()["code"]) == (
        404, "reconciliation_run_not_found")
    user = doubles.api.as_key(doubles.user_key(1))
    assert user.get("/api/v1/reconciliation/runs").json()["code"] == "admin_only"


def test_the_wechatpay_sdk_fetches_the_same_bill_from_the_double(doubles):
    """wechatpayv3 as an oracle: it verifies the double's signed tradebill answer, its
    signed download is accepted, and the bill it gets has the announced SHA1 and reads
    as the lines our connector reads."""
    res = doubles.resources
    fine, *_ = the_day(res, "wechatpay")
    env = doubles.env
    wx = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=env["WECHATPAY_MCHID"],
                   private_key=Path(env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]).read_text(),
                   cert_serial_no=env["WECHATPAY_MERCHANT_SERIAL_NO"],
                   appid=env["WECHATPAY_APPID"], apiv3_key=env["WECHATPAY_APIV3_KEY"],
                   public_key=Path(env["WECHATPAY_PUBLIC_KEY_FILE"]).read_text(),
                   public_key_id=env["WECHATPAY_PUBLIC_KEY_ID"], timeout=(3, 30))
    wx._core._gate_way = env["WECHATPAY_BASE_URL"]  # the SDK's host is fixed: the double's

    code, message = wx.trade_bill(bill_date=today(res).isoformat())
    assert code == 200, message
    answer = json.loads(message)
    code, content = wx.download_bill(answer["download_url"])
    assert code == 200, content
    bill = gzip.decompress(content)
    assert hashlib.sha1(bill).hexdigest() == answer["hash_value"]
    ours = res.providers.by_name("wechatpay").fetch_statement(today(res))
    assert parse_trade_bill(bill, today(res)) == ours
    assert {line.out_trade_no for line in ours.lines} >= {p.out_trade_no for p in fine}


def test_a_run_racing_the_lost_notifications_applies_each_success_once(doubles):
    """The notifications arrive after all, while the run applies the same successes: the
    per-payment lock and the settlement's compare-and-set let exactly one of the two
    apply each (whichever comes first), and the other changes nothing."""
    res = doubles.resources
    day = ProviderDay(res, "wechatpay")
    lost = [day.payment(f"{20 + n}.00", ours="processing") for n in range(6)]
    keys = load_double_keys(res.settings.run_dir)
    with res.uow() as uow:
        orders = uow.session.scalars(select(StandinOrder).where(
            StandinOrder.out_trade_no.in_([p.out_trade_no for p in lost]))).all()
        notifications = [render_notification(res.settings, transaction_payload(
            order_view(keys, order))) for order in orders]
    http = requests.Session()

    def notify(notification: tuple[dict[str, str], bytes]) -> int:
        headers, body = notification
        return http.post(doubles.live_url + "/callbacks/wechatpay", data=body,
                         headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        # The notifications first: their worker applies them while the run fetches and
        # applies, so each success is claimed by one side or the other.
        early = [notify(n) for n in notifications[:3]]  # stored, being applied
        sent = [pool.submit(notify, n) for n in notifications[3:]]
        summary = reconcile_day(res, "wechatpay", today(res))
        answers = early + [f.result() for f in sent]
    assert answers == [204] * len(lost)
    wait_until(lambda: _inbox_settled(res), timeout=30, message="notifications applied")

    assert summary["applied"] + summary["matched"] == len(lost)
    actors: list[str] = []
    with res.uow() as uow:
        for payment in lost:
            assert uow.session.get(Payment, payment.payment_id).status == "succeeded"
            successes = uow.session.execute(select(PaymentEvent.actor).where(
                PaymentEvent.payment_id == payment.payment_id,
                PaymentEvent.event == "payment_succeeded")).scalars().all()
            assert len(successes) == 1, successes
            actors += successes
            assert uow.session.execute(select(func.count()).select_from(OrderStatusHistory)
                                       .where(OrderStatusHistory.order_id == payment.order_id,
                                              OrderStatusHistory.to_status == "paid")
                                       ).scalar_one() == 1
    # Measured here: the worker takes a second or two to pick each callback up, so the
    # run claims them all and the callbacks end `processed` as duplicates; whichever
    # side comes first, the other is a no-op.
    print(f"applied by: {sorted(actors)}")


def _last_evening(res) -> datetime:
    """Two seconds before today's midnight in RECONCILE_TZ: on the provider's yesterday."""
    midnight = datetime.combine(today(res), time(0), ZoneInfo(res.settings.reconcile_tz))
    return midnight - timedelta(seconds=2)


def _flagged_ids(res, run_id: int) -> set[int | None]:
    return {ref for _, _, status, ref in items(res, run_id) if status == "flagged"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_what_a_run_applies_stays_on_its_statement_day_for_the_next_days_run(
        doubles, provider):
    """Yesterday's run applies a lost payment and a lost refund this morning (our clock:
    today). Today's statement rightly lacks both; today's run must not call them missing
    at the provider (issue #17 follow-up)."""
    res = doubles.resources
    evening = _last_evening(res)
    day = ProviderDay(res, provider)
    lost = day.payment("31.00", ours="processing", paid_at=evening)
    paid = day.payment("32.00", paid_at=evening)
    refund_id = day.refund(paid, "5.00", paid_out_at=evening)

    yesterdays = reconcile_day(res, provider, evening.date())
    assert items(res, yesterdays["run_id"]) == {
        ("payment", "missing_here", "applied", lost.payment_id),
        ("refund", "missing_here", "applied", refund_id)}
    with res.uow() as uow:
        applied = uow.session.get(Payment, lost.payment_id)
        # Dated by the statement line's time (every double's statement gives one).
        assert applied.provider_paid_at == evening
        assert applied.paid_at.astimezone(evening.tzinfo).date() == today(res)
        assert uow.session.get(Refund, refund_id).provider_completed_at == evening

    todays = reconcile_day(res, provider, today(res))
    assert todays["statement_lines"] == 0
    assert _flagged_ids(res, todays["run_id"]) == set()
    # And yesterday's again finds both there, matched.
    again = reconcile_day(res, provider, evening.date())
    assert (again["matched"], again["flagged"]) == (3, 0)


def _paid(res, payment_id: int) -> bool:
    with res.uow() as uow:
        return uow.session.get(Payment, payment_id).status == "succeeded"


def test_a_callback_paid_before_midnight_and_applied_after_stays_on_the_providers_day(
        doubles):
    """Paid at the provider at 23:59:58, its notification applied here after midnight
    (here: now, today). The provider's statement has it yesterday; our books must too,
    by the notification's success_time, not by when we applied it."""
    res = doubles.resources
    evening = _last_evening(res)
    late = ProviderDay(res, "wechatpay").payment("41.00", ours="processing",
                                                 paid_at=evening)
    keys = load_double_keys(res.settings.run_dir)
    with res.uow() as uow:
        order = uow.session.scalars(select(StandinOrder).where(
            StandinOrder.out_trade_no == late.out_trade_no)).one()
        headers, body = render_notification(res.settings, transaction_payload(
            order_view(keys, order)))
    answer = requests.post(doubles.live_url + "/callbacks/wechatpay", data=body,
                           headers=headers, timeout=30)
    assert answer.status_code == 204
    wait_until(lambda: _paid(res, late.payment_id), timeout=30,
               message="notification applied")
    with res.uow() as uow:
        payment = uow.session.get(Payment, late.payment_id)
        assert payment.provider_paid_at == evening
        assert payment.paid_at.astimezone(evening.tzinfo).date() == today(res)

    todays = reconcile_day(res, "wechatpay", today(res))
    assert late.payment_id not in _flagged_ids(res, todays["run_id"])
    yesterdays = reconcile_day(res, "wechatpay", evening.date())
    assert (yesterdays["matched"], yesterdays["flagged"], yesterdays["applied"]) == (1, 0, 0)


def _inbox_settled(res) -> bool:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(ProviderCallback).where(
            ProviderCallback.status == "received")).scalar_one() == 0


def test_payments_reconcile_runs_a_day_now_and_exits_1_when_a_run_failed(doubles):
    res = doubles.resources
    _, lost, *_ = the_day(res, "sandbox")
    day = today(res).isoformat()

    done = run_cli(doubles.env, "reconcile", "--date", day, "--provider", "sandbox")
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert (line["provider"], line["date"], line["status"], line["applied"],
            line["flagged"]) == ("sandbox", day, "succeeded", 2, 2)

    arm_fault(res.redis, "alipay", "unavailable")
    failed = run_cli(doubles.env, "reconcile", "--date", day, "--provider", "alipay")
    assert failed.returncode == 1
    [line] = [json.loads(x) for x in failed.stdout.splitlines() if x.startswith("{")]
    assert (line["provider"], line["status"]) == ("alipay", "failed")
    assert "HTTP 503" in line["error"]

    wrong = run_cli(doubles.env, "reconcile", "--provider", "paypal")
    assert wrong.returncode == 2 and "not a routed provider" in wrong.stderr
    assert run_cli(doubles.env, "reconcile", "--date", "2026-02-30").returncode == 2


def test_the_daily_tick_also_takes_up_the_past_weeks_failed_days(doubles):
    res = doubles.resources
    yesterday = statement_day(res)
    earlier = yesterday - timedelta(days=2)
    arm_fault(res.redis, "sandbox", "unavailable")
    with pytest.raises(ReconciliationFailed):
        reconcile_day(res, "sandbox", earlier)
    assert unfinished_days(res, before=yesterday) == [("sandbox", earlier)]

    done, failed = reconcile_daily(res)

    assert failed == []
    assert sorted((d["provider"], d["date"]) for d in done) == sorted(
        [(p, yesterday.isoformat()) for p in PROVIDERS] + [("sandbox", earlier.isoformat())])
    with res.uow() as uow:
        run = uow.session.execute(select(ReconciliationRun).where(
            ReconciliationRun.provider == "sandbox",
            ReconciliationRun.statement_date == earlier)).scalar_one()
        assert (run.status, run.attempts) == ("succeeded", 2)
    assert unfinished_days(res, before=yesterday) == []
