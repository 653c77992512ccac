"""WeChat Pay end to end on the doubles stack: our connector against the double, a real
worker, real notifications. Refusals are sent as an attacker would: the double's own
renderer and keys make the genuine article, then one thing is changed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text, update
from wechatpayv3 import WeChatPay, WeChatPayType

from adapters.providers.base import (
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    RefundRequest,
)
from adapters.providers.wechatpay import WechatPayProvider
from adapters.providers.wechatpay.credentials import load_credentials
from standins.models import StandinOrder
from standins.wechatpay.keys import load_double_keys
from standins.wechatpay.notify import transaction_payload
from standins.wechatpay.orders import order_view
from tests.e2e.wechatpay_flow import WAIT, WechatFlow
from tests.support.payment_flow import success_times
from tests.support.processes import wait_until
from tests.support.recording_receiver import served_receiver


@pytest.fixture
def flow(doubles) -> WechatFlow:
    return WechatFlow(doubles)


@pytest.fixture(scope="module")
def receiver():
    """A merchant endpoint that records what arrives (and can fail the first tries)."""
    with served_receiver() as rec:
        yield rec


def silently_paid(flow: WechatFlow, total: str = "88.80") -> tuple[dict, dict]:
    """A payment paid at the double whose notification never came: (payment, the
    TRANSACTION.SUCCESS payload the double would have sent)."""
    payment, pay_url = flow.started(total)
    flow.press(pay_url, "approve", notify=False)
    order = flow.at_double(payment["out_trade_no"])
    assert order.status == "SUCCESS" and flow.notifications() == []
    keys = load_double_keys(flow.stack.settings.run_dir)
    return payment, transaction_payload(order_view(keys, order))


def test_pay_creates_the_native_order_and_its_notification_pays_the_order(flow):
    payment, pay_url = flow.started("88.80")
    assert payment["out_trade_no"]
    assert pay_url.startswith(flow.stack.live_url + "/doubles/wechatpay/pay/")
    order = flow.at_double(payment["out_trade_no"])
    assert (order.amount_minor, order.currency, order.status) == (8880, "CNY", "NOTPAY")
    assert order.notify_url == flow.stack.live_url + "/callbacks/wechatpay"
    assert order.request_body["mchid"] == flow.stack.env["WECHATPAY_MCHID"]
    assert order.request_body["appid"] == flow.stack.env["WECHATPAY_APPID"]
    page = flow.http.get(pay_url, timeout=WAIT)
    assert page.status_code == 200 and "88.80" in page.text

    flow.press(pay_url, "approve")
    paid = flow.wait_status(payment["id"], "succeeded")
    assert paid["transaction_id"] == flow.at_double(payment["out_trade_no"]).transaction_id
    assert flow.get_order(payment["order_id"])["status"] == "paid"
    [sent] = flow.wait_delivered()
    assert sent["last_status"] == 204 and sent["attempts"] == 1


def test_the_same_notification_again_and_concurrently_is_applied_once(flow):
    payment, pay_url = flow.started()
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    [sent] = flow.wait_delivered()
    payload = sent["payload"]
    # WeChat Pay resends with a fresh signature each time; the id stays the same.
    assert flow.post_callback(*flow.render(payload)).status_code == 204
    attempts = [flow.render(payload) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda a: flow.post_callback(*a), attempts))
    assert [a.status_code for a in answers] == [204] * 4
    flow.idle()
    assert flow.event_names(payment["id"]).count("payment_succeeded") == 1
    assert len(flow.inbox(payload["id"])) == 1
    assert flow.get(payment["id"])["status"] == "succeeded"


def tampered(flow, payload):
    headers, body = flow.render(payload)
    return headers, body.replace(payload["id"].encode(), b"EV-forged-0001")


def unknown_serial(flow, payload):
    headers, body = flow.render(payload)
    return {**headers, "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000000099"}, body


def stale(flow, payload):
    return flow.render(payload, timestamp=int(time.time()) - 3600)


def probe(flow, payload):
    headers, body = flow.render(payload)
    return {**headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/"
            + headers["Wechatpay-Signature"]}, body


@pytest.mark.parametrize("forge", [tampered, unknown_serial, stale, probe])
def test_a_refused_notification_gets_wechats_fail_answer_and_nothing_is_applied(flow, forge):
    payment, payload = silently_paid(flow)
    answer = flow.post_callback(*forge(flow, payload))
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == "FAIL" and answer.json()["message"]
    assert flow.inbox(payload["id"]) == [] and flow.inbox("EV-forged-0001") == []
    assert flow.get(payment["id"])["status"] == "processing"
    # The genuine article still goes through: the refusal was for the change alone.
    assert flow.post_callback(*flow.render(payload)).status_code == 204
    flow.wait_status(payment["id"], "succeeded")


def test_an_amount_that_differs_is_stored_but_never_paid(flow):
    payment, payload = silently_paid(flow, "88.80")
    payload["resource"]["amount"]["total"] = 1  # 0.01 yuan
    assert flow.post_callback(*flow.render(payload)).status_code == 204
    flow.idle()
    [stored] = flow.inbox(payload["id"])
    assert stored.payment_id == payment["id"]
    assert flow.get(payment["id"])["status"] == "processing"
    assert "amount_mismatch" in flow.event_names(payment["id"])


def test_a_notification_signed_with_a_platform_certificate_is_accepted(flow):
    payment, payload = silently_paid(flow)
    headers, body = flow.render({**payload, "signer": "certificate"})
    assert headers["Wechatpay-Serial"] != flow.stack.env["WECHATPAY_PUBLIC_KEY_ID"]
    assert flow.post_callback(headers, body).status_code == 204
    flow.wait_status(payment["id"], "succeeded")


def test_a_refund_is_accepted_then_settled_by_its_notification(flow):
    payment, pay_url = flow.started("88.80")
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    refund = flow.refund(payment["id"], "10.00")
    done = flow.wait_refund(payment["id"], refund["id"], "succeeded")
    [at_double] = flow.refunds_at_double()
    assert at_double.amount_minor == 1000 and at_double.status == "SUCCESS"
    assert at_double.request_body["amount"] == {"refund": 1000, "total": 8880,
                                                "currency": "CNY"}
    assert at_double.request_body["out_trade_no"] == payment["out_trade_no"]
    assert done["provider_refund_id"] == at_double.refund_ref
    assert done["out_refund_no"] == at_double.out_refund_no
    assert flow.get(payment["id"])["refunded_amount"] == "10.00"
    flow.wait_delivered(2)


@pytest.mark.parametrize(("reason", "status", "review"), [
    ("double:closed", "failed", False),  # REFUND.CLOSED
    ("double:abnormal", "processing", True),  # REFUND.ABNORMAL: neither done nor failed
])
def test_a_refund_closed_or_abnormal_at_wechat(flow, reason, status, review):
    payment, pay_url = flow.started("88.80")
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    flow.refund(payment["id"], "10.00", reason)
    flow.wait_delivered(2)
    flow.idle()
    [refund] = flow.refunds(payment["id"])
    assert (refund["status"], refund["needs_review"]) == (status, review)
    assert flow.get(payment["id"])["refunded_amount"] in ("0.00", "0", None)


def test_cancel_closes_the_order_at_wechat(flow):
    payment, pay_url = flow.started()
    response = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel", json={})
    assert response.status_code == 200, response.text
    wait_until(lambda: flow.at_double(payment["out_trade_no"]).status == "CLOSED",
               timeout=WAIT, message="the order closed at the double")
    page = flow.http.post(f"{pay_url}/approve", allow_redirects=False, timeout=WAIT)
    assert page.status_code == 400  # a closed order cannot be paid any more


def run_janitor(flow: WechatFlow, payment_id: int) -> None:
    """`payments sweep sync`, once the payment has been quiet long enough to be asked."""
    with flow.res.uow() as uow:
        uow.session.execute(text("UPDATE payments SET updated_at = updated_at - "
                                 "interval '10 minutes' WHERE id = :id"), {"id": payment_id})
        uow.commit()
    cli = Path(sys.executable).with_name("payments")
    result = subprocess.run([str(cli), "sweep", "sync"], env=flow.stack.env,
                            capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1])["job"] == "sync"


def test_the_janitor_finds_a_payment_paid_whose_notification_never_came(flow):
    payment, _ = silently_paid(flow)
    run_janitor(flow, payment["id"])
    paid = flow.wait_status(payment["id"], "succeeded")
    assert paid["transaction_id"] == flow.at_double(payment["out_trade_no"]).transaction_id
    assert flow.get_order(payment["order_id"])["status"] == "paid"


def test_the_janitor_stores_the_success_time_wechat_reports(flow):
    """The query answer's success_time, not our clock, is when the provider took the
    money (payments.provider_paid_at: the reconciliation's day is cut by it)."""
    payment, _ = silently_paid(flow)
    # Paid two hours ago by the double's clock, so its time and ours cannot be confused.
    paid_at_double = _move_paid_at_back(flow, payment["out_trade_no"], hours=2)
    run_janitor(flow, payment["id"])
    flow.wait_status(payment["id"], "succeeded")
    provider_paid_at, paid_at = success_times(flow.res, payment["id"])
    assert provider_paid_at == paid_at_double.replace(microsecond=0)  # whole seconds
    assert paid_at - provider_paid_at > timedelta(hours=1)  # ours: when we applied it


def _move_paid_at_back(flow: WechatFlow, out_trade_no: str, hours: int) -> datetime:
    with flow.res.uow() as uow:
        moved = uow.session.execute(
            update(StandinOrder).where(StandinOrder.provider == "wechatpay",
                                       StandinOrder.out_trade_no == out_trade_no)
            .values(paid_at=StandinOrder.paid_at - timedelta(hours=hours))
            .returning(StandinOrder.paid_at)).scalar_one()
        uow.commit()
    return moved


def sdk_client(env: dict[str, str], notify_url: str, **changes: str) -> WeChatPay:
    env = {**env, **changes}
    wx = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=env["WECHATPAY_MCHID"],
                   private_key=Path(env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]).read_text(),
                   cert_serial_no=env["WECHATPAY_MERCHANT_SERIAL_NO"],
                   appid=env["WECHATPAY_APPID"], apiv3_key=env["WECHATPAY_APIV3_KEY"],
                   notify_url=notify_url,
                   public_key=Path(env["WECHATPAY_PUBLIC_KEY_FILE"]).read_text(),
                   public_key_id=env["WECHATPAY_PUBLIC_KEY_ID"], timeout=(3, WAIT))
    # The SDK's gateway is fixed to the real host; point it at the double.
    wx._core._gate_way = env["WECHATPAY_BASE_URL"]
    return wx


def test_the_sdk_is_served_by_the_double_and_verifies_its_answers(flow):
    """The SDK raises if an answer's signature does not verify, so each 2xx below is
    also the SDK accepting the double's signed answer."""
    wx = sdk_client(flow.stack.env, flow.stack.live_url + "/callbacks/wechatpay")
    code, message = wx.pay(description="SDK order", out_trade_no="SDK_0000001",
                           amount={"total": 100, "currency": "CNY"})
    assert code == 200, message
    code_url = json.loads(message)["code_url"]
    again = wx.pay(description="SDK order", out_trade_no="SDK_0000001",
                   amount={"total": 100, "currency": "CNY"})
    assert again == (200, message)  # the same order asked again: the same code_url
    code, message = wx.query(out_trade_no="SDK_0000001")
    assert code == 200 and json.loads(message)["trade_state"] == "NOTPAY"
    flow.press(code_url, "approve", notify=False)
    code, message = wx.query(out_trade_no="SDK_0000001")
    assert code == 200 and json.loads(message)["trade_state"] == "SUCCESS"
    code, message = wx.close(out_trade_no="SDK_0000001")
    assert code == 400 and json.loads(message)["code"] == "ORDERPAID"
    code, message = wx.refund(out_refund_no="SDKR0000001", out_trade_no="SDK_0000001",
                              amount={"refund": 50, "total": 100, "currency": "CNY"})
    assert code == 200 and json.loads(message)["status"] == "PROCESSING"
    code, message = wx.query_refund(out_refund_no="SDKR0000001")
    assert code == 200 and json.loads(message)["status"] == "SUCCESS"

    assert wx.pay(description="SDK order 2", out_trade_no="SDK_0000002",
                  amount={"total": 200, "currency": "CNY"})[0] == 200
    assert wx.close(out_trade_no="SDK_0000002")[0] == 204
    assert json.loads(wx.query(out_trade_no="SDK_0000002")[1])["trade_state"] == "CLOSED"
    code, message = wx.query(out_trade_no="SDK_0000404")
    assert code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST"


def test_the_double_refuses_a_request_signed_with_another_key(flow, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = tmp_path / "other.pem"
    other.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                      .private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    wx = sdk_client(flow.stack.env, "http://shop/cb",
                    WECHATPAY_MERCHANT_PRIVATE_KEY_FILE=str(other))
    code, message = wx.query(out_trade_no="SDK_0000001")
    assert code == 401 and json.loads(message)["code"] == "SIGN_ERROR"


def test_the_doubles_notifications_over_the_wire_are_accepted_by_the_sdk(flow, receiver):
    """A merchant that answers 500 twice: the double tries again on WeChat Pay's schedule
    (scaled to 1/100 in the tests), signing each attempt afresh, and the SDK's callback()
    accepts every attempt exactly as it arrived and decrypts the same resource."""
    hook, token = receiver.hook(fail_first=2)
    wx = sdk_client(flow.stack.env, hook)
    code, message = wx.pay(description="retry me", out_trade_no="SDK_RETRY_01",
                           amount={"total": 100, "currency": "CNY"})
    assert code == 200, message
    flow.press(json.loads(message)["code_url"], "approve")
    [sent] = flow.wait_delivered()
    calls = receiver.calls(token)
    assert [c.answered for c in calls] == [500, 500, 200] and sent["attempts"] == 3
    assert len({c.headers["Wechatpay-Nonce"] for c in calls}) == 3
    for call in calls:
        result = wx.callback(call.headers, call.body)
        assert result is not None, "the SDK refused a notification as it arrived"
        assert result["id"] == sent["payload"]["id"]
        assert result["resource"]["out_trade_no"] == "SDK_RETRY_01"
        assert result["resource"]["trade_state"] == "SUCCESS"


def test_a_declined_payment_is_found_failed_by_the_janitor(flow):
    payment, pay_url = flow.started()
    flow.press(pay_url, "decline")  # PAYERROR at the double, and no notification
    assert flow.at_double(payment["out_trade_no"]).status == "PAYERROR"
    run_janitor(flow, payment["id"])
    flow.wait_status(payment["id"], "failed")


def test_an_authentic_notification_we_cannot_decrypt_is_a_400_fail(flow):
    """Signed by WeChat Pay but sealed with another APIv3 key (a key mix-up on our side):
    refused as unreadable, so WeChat Pay keeps retrying until the key is fixed."""
    from dataclasses import replace

    from standins.wechatpay.protocol import seal_resource, signed_headers

    payment, payload = silently_paid(flow)
    keys = load_double_keys(flow.stack.settings.run_dir)
    body = json.dumps({
        "id": payload["id"], "create_time": payload["create_time"],
        "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": seal_resource(replace(keys, apiv3_key=b"k" * 32), payload["resource"],
                                  original_type="transaction", associated_data="transaction"),
    }).encode()
    answer = flow.post_callback({"Content-Type": "application/json",
                                 **signed_headers(keys, body)}, body)
    assert answer.status_code == 400 and answer.json()["code"] == "FAIL"
    assert flow.inbox(payload["id"]) == []
    assert flow.get(payment["id"])["status"] == "processing"


def test_no_key_secret_or_decrypted_payload_reaches_a_log(flow, caplog):
    caplog.set_level("DEBUG")
    payment, pay_url = flow.started("88.80")
    flow.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    [sent] = flow.wait_delivered()
    flow.idle()
    env = flow.stack.env
    secrets = [env["WECHATPAY_APIV3_KEY"],
               *Path(env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]).read_text().splitlines()[1:3],
               # Only inside the encrypted resource: the payer and the bank.
               sent["payload"]["resource"]["payer"]["openid"]]
    worker_log = (flow.stack.run_dir / "worker.log").read_text(errors="replace")
    assert "standins.deliver_notification" in worker_log  # the log we search is the real one
    logs = caplog.text + worker_log
    assert not [s for s in secrets if s in logs]


@pytest.mark.parametrize(("reason", "status", "outcome"), [
    ("customer asked", "SUCCESS", ProviderRefundStatus.SUCCEEDED),
    ("double:closed", "CLOSED", ProviderRefundStatus.FAILED),
    ("double:abnormal", "ABNORMAL", ProviderRefundStatus.ABNORMAL),
    ("double:processing", "PROCESSING", None),
])
def test_our_refund_query_reads_what_the_sdk_reads(flow, reason, status, outcome):
    """The SDK (an independent client) makes the refund and queries it; our connector's
    query_refund (refunds.check's question) names the same refund and outcome."""
    wx = sdk_client(flow.stack.env, "http://127.0.0.1:9/nowhere")  # notifications lost
    code, message = wx.pay(description="SDK order", out_trade_no="SDK_0000003",
                           amount={"total": 300, "currency": "CNY"})
    assert code == 200, message
    flow.press(json.loads(message)["code_url"], "approve", notify=False)
    code, message = wx.refund(out_refund_no="SDKR0000003", out_trade_no="SDK_0000003",
                              reason=reason, amount={"refund": 100, "total": 300,
                                                     "currency": "CNY"})
    assert code == 200 and json.loads(message)["status"] == "PROCESSING", message
    code, message = wx.query_refund(out_refund_no="SDKR0000003")
    assert code == 200, message
    by_sdk = json.loads(message)
    assert by_sdk["status"] == status

    connector = WechatPayProvider(load_credentials(flow.stack.settings.wechatpay),
                                  "http://127.0.0.1:9/nowhere")
    ours = connector.query_refund(RefundRequest(
        refund_id=3, out_refund_no="SDKR0000003", payment_reference="SDK_0000003",
        out_trade_no="SDK_0000003", amount=Decimal("1.00"), payment_amount=Decimal("3.00"),
        currency="CNY"))
    # amount.refund as the SDK reads it (whole fen), ours the same as a Decimal of yuan.
    assert by_sdk["amount"]["refund"] == 100
    assert ours == ProviderRefund(by_sdk["refund_id"], outcome, amount=Decimal("1.00"))
    with pytest.raises(ProviderRejected) as unknown:
        connector.query_refund(RefundRequest(
            refund_id=4, out_refund_no="SDKR0000404", payment_reference="SDK_0000003",
            out_trade_no="SDK_0000003", amount=Decimal("1.00"),
            payment_amount=Decimal("3.00"), currency="CNY"))
    assert (unknown.value.status, unknown.value.code) == (404, "RESOURCE_NOT_EXISTS")
    assert wx.query_refund(out_refund_no="SDKR0000404")[0] == 404  # the SDK agrees
