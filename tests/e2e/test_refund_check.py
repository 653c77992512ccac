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
from tests.e2e.wechatpay_flow import WAIT, WechatFlow
from tests.support.alipay_double import AlipayDouble, start_alipay_payment
from tests.support.live_server import serve
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until
from tests.support.recording_receiver import RecordingReceiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def elsewhere():
    """Where a lost notification goes: it is sent and answered, never reaching us."""
    rec = RecordingReceiver()
    with serve(rec.app()) as url:
        rec.base_url = url
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


def check_refunds(flow: PaymentFlow, stack, refund_id: int) -> None:
    """`payments sweep check-refunds` once the refund has been quiet for an hour: it sends
    refunds.check, which the stack's worker runs."""
    flow.move_back("refunds", refund_id, 3600, "updated_at")
    cli = Path(sys.executable).with_name("payments")
    result = subprocess.run([str(cli), "sweep", "check-refunds"], env=stack.env,
                            capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["job"] == "check-refunds" and summary["result"]["changed"] >= 1, summary


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
    check_refunds(wechat, wechat.stack, refund_id)  # asked again: ABNORMAL still
    wait_until(lambda: queries() == 2, timeout=WAIT, message="the second refund query")
    wechat.idle()  # acks_late: the check task is done once nothing is unacked
    assert audit(wechat.res, payment["id"], "refund_abnormal") == 1  # one review, not two


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
