"""maintenance.check_refunds against each provider's double (issue #18): a refund the
provider finished whose notification never reached us ends settled through the refund
status query, on the doubles stack's real worker; one still in progress stays processing.

Each case starts where refunds.execute leaves a refund: accepted by the provider, its
reference stored, `processing`. The provider side is made by our own connector (WeChat
Pay's with a notify_url that leads elsewhere, so the REFUND.SUCCESS is sent but lost to
us) or by our worker with the sandbox's callbacks sent elsewhere. Then the refund is
made quiet for an hour and `payments sweep check-refunds` sends refunds.check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from adapters.providers.alipay import AlipayProvider
from adapters.providers.base import ProviderRefund, RefundRequest
from adapters.providers.wechatpay import WechatPayProvider
from adapters.providers.wechatpay.credentials import load_credentials
from domain.models import Payment, PaymentEvent, Refund
from services.merchant_references import fix_out_refund_no
from services.refunds import check_refund
from tests.e2e.wechatpay_flow import WAIT, WechatFlow
from tests.support.alipay_double import AlipayDouble, start_alipay_payment
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until
from tests.support.recording_receiver import RecordingReceiver, served_receiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def elsewhere():
    """Where a lost notification goes: it is sent and answered, never reaching us."""
    with served_receiver() as rec:
        yield rec


@pytest.fixture
def wechat(doubles) -> WechatFlow:
    return WechatFlow(doubles)


# --- the state refunds.execute leaves, and the sweep ------------------------------------

def new_refund(res, payment_id: int, amount: str, reason: str | None = None
               ) -> tuple[int, RefundRequest]:
    """Our refund row (pending, its out_refund_no fixed) and the request a connector gets
    for it, as refunds.execute builds them."""
    with res.uow() as uow:
        payment = uow.session.get(Payment, payment_id)
        refund_id = uow.session.execute(insert(Refund).values(
            payment_id=payment_id, amount=Decimal(amount), currency=payment.currency,
            status="pending", reason=reason).returning(Refund.id)).scalar_one()
        uow.commit()
        request = (payment.provider_reference, payment.out_trade_no, payment.amount,
                   payment.currency)
    with res.uow() as uow:
        out_refund_no = fix_out_refund_no(uow, res, refund_id)
    reference, out_trade_no, total, currency = request
    return refund_id, RefundRequest(refund_id, out_refund_no, reference, out_trade_no,
                                    Decimal(amount), total, currency, reason)


def accepted(res, refund_id: int, answer: ProviderRefund) -> None:
    """What refunds.execute stores from the provider's acceptance."""
    with res.uow() as uow:
        uow.session.execute(update(Refund).where(Refund.id == refund_id).values(
            status="processing", provider_refund_id=answer.reference))
        uow.commit()


def refund_row(res, refund_id: int) -> Refund:
    with res.uow() as uow:
        row = uow.session.get(Refund, refund_id)
        uow.session.expunge(row)
        return row


def sweep(flow: PaymentFlow, stack, refund_id: int) -> int:
    """`payments sweep check-refunds` once the refund has been quiet for an hour: how many
    refunds.check it sent, which the stack's worker runs."""
    flow.move_back("refunds", refund_id, 3600, "updated_at")
    cli = Path(sys.executable).with_name("payments")
    result = subprocess.run([str(cli), "sweep", "check-refunds"], env=stack.env,
                            capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["job"] == "check-refunds", summary
    return int(summary["result"]["changed"])


def check_refunds(flow: PaymentFlow, stack, refund_id: int) -> None:
    assert sweep(flow, stack, refund_id) >= 1


# Past REFUND_REVIEW_AFTER_SECONDS (a week by default, as the stack runs).
OVERDUE_SECONDS = 8 * 86400


def overdue(flow: PaymentFlow, refund_id: int) -> None:
    """The refund was requested more than a week ago."""
    flow.move_back("refunds", refund_id, OVERDUE_SECONDS, "created_at")


def audit_details(res, payment_id: int, event: str) -> list[dict]:
    with res.uow() as uow:
        return list(uow.session.scalars(select(PaymentEvent.detail).where(
            PaymentEvent.payment_id == payment_id, PaymentEvent.event == event)
            .order_by(PaymentEvent.id)))


def our_amount(res, refund_id: int, amount: str) -> None:
    """Our stored amount made to differ from what the provider refunded."""
    with res.uow() as uow:
        uow.session.execute(update(Refund).where(Refund.id == refund_id)
                            .values(amount=Decimal(amount)))
        uow.commit()


def assert_flagged_once_not_asked_again(flow: PaymentFlow, stack, payment_id: int,
                                        refund_id: int, event: str,
                                        queries) -> dict:
    """The refund flagged for review (still processing, nothing settled), its payment too,
    one `event` audit row; the next sweep sends nothing, a redelivered refunds.check asks
    nothing. Returns the audit row's detail."""
    wait_until(lambda: refund_row(flow.res, refund_id).needs_review, timeout=WAIT,
               message="the refund flagged for review")
    flow.settle()
    row = refund_row(flow.res, refund_id)
    assert (row.status, row.completed_at) == ("processing", None)
    payment = flow.get(payment_id)
    assert payment["needs_review"] is True and payment["status"] == "succeeded"
    assert payment["refunded_amount"] in ("0.00", "0", None)
    asked = queries()
    assert asked == 1
    assert sweep(flow, stack, refund_id) == 0  # flagged: the sweep leaves it alone
    assert check_refund(stack.resources, refund_id) == "flagged for review"  # a late message
    flow.settle()
    assert queries() == asked
    [detail] = audit_details(flow.res, payment_id, event)
    assert detail["refund_id"] == refund_id
    assert audit(flow.res, payment_id, "refund_succeeded") == 0
    return detail


def worker_said(stack, line: str, before: int) -> None:
    """Wait for the worker's log to say `line` once more than `before` times."""
    log = stack.run_dir / "worker.log"
    wait_until(lambda: log.read_text(errors="replace").count(line) > before, timeout=WAIT,
               message=f"the worker logging {line!r}")


def log_count(stack, line: str) -> int:
    return (stack.run_dir / "worker.log").read_text(errors="replace").count(line)


def audit(res, payment_id: int, event: str) -> int:
    with res.uow() as uow:
        return len(uow.session.scalars(select(PaymentEvent.id).where(
            PaymentEvent.payment_id == payment_id, PaymentEvent.event == event)).all())


# --- WeChat Pay --------------------------------------------------------------------------

def wechat_paid(flow: WechatFlow, total: str = "88.80") -> dict:
    payment, pay_url = flow.started(total)
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    flow.wait_delivered(1)
    flow.idle()
    return payment


def wechat_refund_lost(flow: WechatFlow, elsewhere: RecordingReceiver, payment_id: int,
                       amount: str, reason: str | None = None) -> tuple[int, str]:
    """Refunded at the double by our connector, its notification sent elsewhere:
    (our refund id, the token of where the notification went)."""
    hook, token = elsewhere.hook()
    connector = WechatPayProvider(load_credentials(flow.stack.settings.wechatpay), hook)
    refund_id, request = new_refund(flow.res, payment_id, amount, reason)
    answer = connector.refund(request)
    assert answer.outcome is None  # WeChat Pay: PROCESSING, the outcome comes by notification
    accepted(flow.res, refund_id, answer)
    return refund_id, token


def test_a_wechat_refund_whose_notification_was_lost_ends_succeeded(wechat, elsewhere):
    """Fails with the old check (the refund request repeated): the double, as WeChat Pay,
    answers a repeat PROCESSING, so the refund stayed processing for ever."""
    payment = wechat_paid(wechat)
    refund_id, token = wechat_refund_lost(wechat, elsewhere, payment["id"], "10.00")
    [lost] = wait_until(lambda: elsewhere.calls(token), timeout=WAIT,
                        message="the REFUND.SUCCESS notification sent elsewhere")
    [at_double] = wechat.refunds_at_double()
    assert at_double.status == "SUCCESS"
    wechat.idle()
    assert refund_row(wechat.res, refund_id).status == "processing"  # we never heard

    check_refunds(wechat, wechat.stack, refund_id)
    done = wechat.wait_refund(payment["id"], refund_id, "succeeded")
    assert done["provider_refund_id"] == at_double.refund_ref
    paid = wechat.wait_status(payment["id"], "partially_refunded")
    assert paid["refunded_amount"] == "10.00"
    assert audit(wechat.res, payment["id"], "refund_succeeded") == 1

    # The lost notification turning up after all changes nothing: applied once.
    headers = {k: v for k, v in lost.headers.items()
               if k.lower().startswith("wechatpay-") or k.lower() == "content-type"}
    assert wechat.post_callback(headers, lost.body).status_code in (200, 204)
    wechat.idle()
    assert wechat.get(payment["id"])["refunded_amount"] == "10.00"
    assert audit(wechat.res, payment["id"], "refund_succeeded") == 1
    assert refund_row(wechat.res, refund_id).status == "succeeded"


def test_a_wechat_refund_still_processing_stays_processing(wechat, elsewhere):
    payment = wechat_paid(wechat)
    refund_id, token = wechat_refund_lost(wechat, elsewhere, payment["id"], "10.00",
                                          "double:processing")
    line = f"refund {refund_id} still processing at wechatpay"
    before = log_count(wechat.stack, line)
    check_refunds(wechat, wechat.stack, refund_id)
    worker_said(wechat.stack, line, before)
    wechat.idle()
    row = refund_row(wechat.res, refund_id)
    assert (row.status, row.needs_review, row.completed_at) == ("processing", False, None)
    assert wechat.get(payment["id"])["refunded_amount"] in ("0.00", "0", None)
    [at_double] = wechat.refunds_at_double()
    assert at_double.status == "PROCESSING" and elsewhere.calls(token) == []


def test_a_wechat_refund_abnormal_is_flagged_for_review_once(wechat, elsewhere, caplog):
    caplog.set_level("INFO", logger="werkzeug")
    payment = wechat_paid(wechat)
    refund_id, _ = wechat_refund_lost(wechat, elsewhere, payment["id"], "10.00",
                                      "double:abnormal")
    out_refund_no = refund_row(wechat.res, refund_id).out_refund_no
    query = f"GET /doubles/wechatpay/v3/refund/domestic/refunds/{out_refund_no} "

    def queries() -> int:  # the double's refund query, served by the live server here
        return sum(query in r.getMessage() for r in caplog.records)

    check_refunds(wechat, wechat.stack, refund_id)
    wait_until(lambda: refund_row(wechat.res, refund_id).needs_review, timeout=WAIT,
               message="the abnormal refund flagged")
    assert refund_row(wechat.res, refund_id).status == "processing"  # neither done nor failed
    assert wechat.get(payment["id"])["needs_review"] is True
    assert queries() == 1
    # Flagged: a person decides, the provider is not asked again.
    assert sweep(wechat, wechat.stack, refund_id) == 0
    wechat.idle()  # acks_late: the check task is done once nothing is unacked
    assert queries() == 1
    assert audit(wechat.res, payment["id"], "refund_abnormal") == 1  # one review, not two


def wechat_query_counter(flow: WechatFlow, refund_id: int, caplog):
    caplog.set_level("INFO", logger="werkzeug")
    out_refund_no = refund_row(flow.res, refund_id).out_refund_no
    query = f"GET /doubles/wechatpay/v3/refund/domestic/refunds/{out_refund_no} "
    return lambda: sum(query in r.getMessage() for r in caplog.records)


def test_a_wechat_refund_processing_for_over_a_week_is_flagged_once(wechat, elsewhere,
                                                                   caplog):
    """PROCESSING for ever at WeChat Pay: asked at every check until the refund is a week
    old, then flagged for review (refund_overdue), never failed, and asked no more."""
    payment = wechat_paid(wechat)
    refund_id, _ = wechat_refund_lost(wechat, elsewhere, payment["id"], "10.00",
                                      "double:processing")
    queries = wechat_query_counter(wechat, refund_id, caplog)
    overdue(wechat, refund_id)
    check_refunds(wechat, wechat.stack, refund_id)
    detail = assert_flagged_once_not_asked_again(wechat, wechat.stack, payment["id"],
                                                 refund_id, "refund_overdue", queries)
    assert (detail["provider"], detail["provider_answer"]) == ("wechatpay",
                                                               "still processing")
    [at_double] = wechat.refunds_at_double()
    assert at_double.status == "PROCESSING"


def test_a_wechat_refund_of_another_amount_is_flagged_not_settled(wechat, elsewhere,
                                                                  caplog):
    """WeChat Pay's query says SUCCESS with amount.refund 1000 fen; ours says 12.00."""
    payment = wechat_paid(wechat)
    refund_id, _ = wechat_refund_lost(wechat, elsewhere, payment["id"], "10.00")
    queries = wechat_query_counter(wechat, refund_id, caplog)
    wait_until(lambda: wechat.refunds_at_double()[0].status == "SUCCESS", timeout=WAIT,
               message="the refund done at the double")
    our_amount(wechat.res, refund_id, "12.00")
    check_refunds(wechat, wechat.stack, refund_id)
    detail = assert_flagged_once_not_asked_again(wechat, wechat.stack, payment["id"],
                                                 refund_id, "amount_mismatch", queries)
    assert (detail["received_amount"], detail["expected_amount"]) == ("10.00", "12.00")


# --- Alipay ------------------------------------------------------------------------------

def alipay_paid(flow: PaymentFlow, alipay: AlipayDouble) -> dict:
    _, payment, pay_url = start_alipay_payment(flow, "88.80")
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    alipay.wait_delivered(1)
    return flow.get(payment["id"])


def test_an_alipay_refund_left_processing_ends_succeeded(alipay_flow, alipay, doubles):
    """Alipay's refund answer is its outcome; a worker that died between storing the
    acceptance and applying it left the refund processing, and no notification settles
    a refund (it is read as the trade's status). The refund query finishes it."""
    payment = alipay_paid(alipay_flow, alipay)
    connector = doubles.resources.providers.by_name("alipay")
    assert isinstance(getattr(connector, "inner", connector), AlipayProvider)
    refund_id, request = new_refund(doubles.resources, payment["id"], "10.00")
    answer = connector.refund(request)
    accepted(doubles.resources, refund_id, answer)
    alipay.wait_delivered(2)  # the refund's trade-status notification, applied as such
    alipay_flow.settle()
    assert refund_row(doubles.resources, refund_id).status == "processing"

    check_refunds(alipay_flow, doubles, refund_id)
    alipay_flow.wait_refund(payment["id"], refund_id, "succeeded")
    paid = alipay_flow.wait_status(payment["id"], "partially_refunded")
    assert paid["refunded_amount"] == "10.00"
    assert audit(doubles.resources, payment["id"], "refund_succeeded") == 1


def test_an_alipay_refund_alipay_has_not_made_stays_processing(alipay_flow, alipay, doubles):
    """No refund of that out_request_no at Alipay: the query answers without
    refund_status, which is no outcome; the refund waits for the next check."""
    payment = alipay_paid(alipay_flow, alipay)
    refund_id, request = new_refund(doubles.resources, payment["id"], "10.00")
    accepted(doubles.resources, refund_id, ProviderRefund(request.out_refund_no))
    line = f"refund {refund_id} still processing at alipay"
    before = log_count(doubles, line)
    check_refunds(alipay_flow, doubles, refund_id)
    worker_said(doubles, line, before)
    alipay_flow.settle()
    assert refund_row(doubles.resources, refund_id).status == "processing"
    assert alipay.trade(payment["out_trade_no"])["refunds"] == []


def alipay_query_counter(caplog):
    """The double's refund queries of this trade, as its gateway logs them."""
    caplog.set_level("INFO", logger="standins.alipay.gateway")

    def queries() -> int:
        return sum("alipay.trade.fastpay.refund.query" in r.getMessage()
                   for r in caplog.records if r.name == "standins.alipay.gateway")
    return queries


def test_an_alipay_refund_alipay_has_not_made_for_a_week_is_flagged_once(
        alipay_flow, alipay, doubles, caplog):
    """No refund_status from Alipay at every check: once the refund is a week old it is
    flagged for review instead of being asked again for ever."""
    payment = alipay_paid(alipay_flow, alipay)
    refund_id, request = new_refund(doubles.resources, payment["id"], "10.00")
    accepted(doubles.resources, refund_id, ProviderRefund(request.out_refund_no))
    queries = alipay_query_counter(caplog)
    overdue(alipay_flow, refund_id)
    check_refunds(alipay_flow, doubles, refund_id)
    detail = assert_flagged_once_not_asked_again(alipay_flow, doubles, payment["id"],
                                                 refund_id, "refund_overdue", queries)
    assert detail["provider"] == "alipay" and detail["review_after_seconds"] == 7 * 86400
    assert alipay.trade(payment["out_trade_no"])["refunds"] == []


def test_an_alipay_refund_of_another_amount_is_flagged_not_settled(alipay_flow, alipay,
                                                                   doubles, caplog):
    """The refund query's refund_amount "10.00" (yuan) against our 12.00."""
    payment = alipay_paid(alipay_flow, alipay)
    connector = doubles.resources.providers.by_name("alipay")
    refund_id, request = new_refund(doubles.resources, payment["id"], "10.00")
    accepted(doubles.resources, refund_id, connector.refund(request))
    alipay.wait_delivered(2)
    alipay_flow.settle()
    queries = alipay_query_counter(caplog)
    our_amount(doubles.resources, refund_id, "12.00")
    check_refunds(alipay_flow, doubles, refund_id)
    detail = assert_flagged_once_not_asked_again(alipay_flow, doubles, payment["id"],
                                                 refund_id, "amount_mismatch", queries)
    assert (detail["received_amount"], detail["expected_amount"]) == ("10.00", "12.00")


def test_an_alipay_refund_answer_whose_total_includes_another_refund_is_settled_by_the_query(
        alipay_flow, alipay, doubles):
    """Alipay's refund answer gives refund_fee, the trade's TOTAL refunded: here 15.00,
    a 10.00 refund we never heard of included. Not taken as this refund's amount (nor
    flagged): the refund query says this one returned 5.00, which is settled."""
    payment = alipay_paid(alipay_flow, alipay)
    connector = doubles.resources.providers.by_name("alipay")
    _, unknown_to_us = new_refund(doubles.resources, payment["id"], "10.00")
    connector.refund(unknown_to_us)  # done at Alipay; our row stays pending, unsent
    alipay.wait_delivered(2)
    alipay_flow.settle()
    line = f"reports 15.00 refunded in all for payment {payment['id']}"
    before = log_count(doubles, line)
    response = alipay_flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                                      json={"amount": "5.00"})
    assert response.status_code == 202, response.text
    refund_id = response.json()["id"]
    alipay_flow.wait_refund(payment["id"], refund_id, "succeeded")
    worker_said(doubles, line, before)
    assert alipay_flow.get(payment["id"])["refunded_amount"] == "5.00"
    assert not refund_row(doubles.resources, refund_id).needs_review


# --- the sandbox -------------------------------------------------------------------------

def test_a_sandbox_refund_whose_callback_was_lost_ends_succeeded(doubles, elsewhere):
    """Here the refund goes the whole way through our API and worker; the sandbox's
    refund.succeeded callback goes elsewhere (its callback_url knob)."""
    flow = PaymentFlow(doubles.api, doubles.admin_key(), doubles.settings.sandbox_api_key,
                       doubles.resources)
    payment, pay_url = flow.paid("50.00", method="bank_card")
    assert payment["provider"] == "sandbox"
    flow.settle(pay_url)
    hook, token = elsewhere.hook()
    flow.test_options(pay_url, callback_url=hook)
    response = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                               json={"amount": "20.00"})
    assert response.status_code == 202, response.text
    refund_id = response.json()["id"]
    wait_until(lambda: elsewhere.calls(token), timeout=WAIT,
               message="the refund.succeeded callback sent elsewhere")
    flow.settle()
    row = refund_row(doubles.resources, refund_id)
    assert row.status == "processing" and row.provider_refund_id

    check_refunds(flow, doubles, refund_id)
    flow.wait_refund(payment["id"], refund_id, "succeeded")
    assert flow.wait_status(payment["id"], "partially_refunded")["refunded_amount"] == "20.00"
    assert audit(doubles.resources, payment["id"], "refund_succeeded") == 1


def sandbox_refund_lost(doubles, elsewhere, amount: str = "20.00"):
    """A sandbox refund made through our API and worker, its callback sent elsewhere:
    (flow, payment, refund id, the sandbox's ticket)."""
    flow = PaymentFlow(doubles.api, doubles.admin_key(), doubles.settings.sandbox_api_key,
                       doubles.resources)
    payment, pay_url = flow.paid("50.00", method="bank_card")
    flow.settle(pay_url)
    hook, token = elsewhere.hook()
    flow.test_options(pay_url, callback_url=hook)
    response = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                               json={"amount": amount})
    assert response.status_code == 202, response.text
    refund_id = response.json()["id"]
    wait_until(lambda: elsewhere.calls(token), timeout=WAIT,
               message="the refund callback sent elsewhere")
    flow.settle()
    return flow, flow.get(payment["id"]), refund_id, PaymentFlow.ticket(pay_url)


def sandbox_query_counter(caplog, ticket: str, refund_id: int):
    caplog.set_level("INFO", logger="werkzeug")
    query = f"GET /sandbox/api/payments/{ticket}/refunds/{refund_id} "
    return lambda: sum(query in r.getMessage() for r in caplog.records)


def test_a_sandbox_refund_unknown_there_for_a_week_is_flagged_once(doubles, caplog):
    """The sandbox answers the query 404 (no such refund): a refusal, no outcome; a week
    after the refund was requested it is flagged for review and asked no more."""
    flow = PaymentFlow(doubles.api, doubles.admin_key(), doubles.settings.sandbox_api_key,
                       doubles.resources)
    paid, pay_url = flow.paid("50.00", method="bank_card")
    flow.settle(pay_url)
    payment = flow.get(paid["id"])
    refund_id, _ = new_refund(doubles.resources, payment["id"], "20.00")
    accepted(doubles.resources, refund_id, ProviderRefund("rfd_never_made"))
    queries = sandbox_query_counter(caplog, PaymentFlow.ticket(pay_url), refund_id)
    overdue(flow, refund_id)
    check_refunds(flow, doubles, refund_id)
    detail = assert_flagged_once_not_asked_again(flow, doubles, payment["id"], refund_id,
                                                 "refund_overdue", queries)
    assert detail["provider_answer"].startswith("the query was refused")


def test_a_sandbox_refund_of_another_amount_is_flagged_not_settled(doubles, elsewhere,
                                                                   caplog):
    flow, payment, refund_id, ticket = sandbox_refund_lost(doubles, elsewhere)
    queries = sandbox_query_counter(caplog, ticket, refund_id)
    our_amount(doubles.resources, refund_id, "25.00")
    check_refunds(flow, doubles, refund_id)
    detail = assert_flagged_once_not_asked_again(flow, doubles, payment["id"], refund_id,
                                                 "amount_mismatch", queries)
    assert (detail["received_amount"], detail["expected_amount"]) == ("20.00", "25.00")
