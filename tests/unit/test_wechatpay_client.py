"""The connector's calls against canned WeChat Pay answers (no network): what it sends,
how it signs, and how every kind of answer maps to our two failures."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from adapters.metrics import PROVIDER_CALLS
from adapters.providers.base import (
    PaymentRequest,
    ProviderPaymentStatus,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from adapters.providers.instrumented import UNVERIFIED_ANSWER, InstrumentedProvider
from tests.unit.test_wechatpay_callbacks import provider
from tests.unit.wechatpay_support import MCHID, MERCHANT_SERIAL, private_key, signed_headers


class CannedWechat(requests.adapters.BaseAdapter):
    """Answers each request with the next canned (status, body, signed?) and keeps it."""

    def __init__(self, *answers: tuple[int, object, bool]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        status, payload, signed = self.answers.pop(0)
        body = b"" if payload is None else json.dumps(payload).encode()
        response = requests.Response()
        response.status_code, response._content = status, body
        response.headers.update(signed_headers(body, timestamp=1_800_000_000) if signed
                                else {})
        response.request, response.url = request, request.url
        return response

    def close(self):
        pass


def connector(*answers):
    wx = provider()
    adapter = CannedWechat(*answers)
    wx._http.mount("http://", adapter)
    return wx, adapter


PAYMENT = PaymentRequest(payment_id=42, out_trade_no="P0000000042", amount=Decimal("88.80"),
                         currency="CNY", method="wechat", description="Order 7",
                         idempotency_key="k")


def test_native_order_is_signed_over_the_exact_bytes_sent():
    wx, wechat = connector((200, {"code_url": "weixin://wxpay/bizpayurl?pr=abc"}, True))
    made = wx.create_payment(PAYMENT)
    assert (made.reference, made.pay_url, made.qr_payload) == (
        "P0000000042", "weixin://wxpay/bizpayurl?pr=abc", "weixin://wxpay/bizpayurl?pr=abc")
    [sent] = wechat.sent
    assert sent.url == "http://wechat.invalid/v3/pay/transactions/native"
    assert json.loads(sent.body) == {
        "appid": "wxd678efh567hg6787", "mchid": MCHID, "description": "Order 7",
        "out_trade_no": "P0000000042",
        "notify_url": "https://shop.example/callbacks/wechatpay",
        "amount": {"total": 8880, "currency": "CNY"}}
    auth = sent.headers["Authorization"]
    fields = dict(re.findall(r'(\w+)="([^"]*)"', auth))
    assert auth.startswith("WECHATPAY2-SHA256-RSA2048 ")
    assert (fields["mchid"], fields["serial_no"]) == (MCHID, MERCHANT_SERIAL)
    message = (f"POST\n/v3/pay/transactions/native\n{fields['timestamp']}\n"
               f"{fields['nonce_str']}\n").encode() + sent.body + b"\n"
    private_key("merchant").public_key().verify(base64.b64decode(fields["signature"]),
                                                message, padding.PKCS1v15(), hashes.SHA256())


def test_a_2xx_whose_signature_does_not_verify_is_no_answer_and_is_counted():
    counter = PROVIDER_CALLS.labels("wechatpay", "create", "unverified")
    before = counter._value.get()
    wx, _ = connector((200, {"code_url": "weixin://x"}, False))
    with pytest.raises(ProviderUnavailable, match="signature") as caught:
        InstrumentedProvider(wx).create_payment(PAYMENT)
    assert caught.value.code == UNVERIFIED_ANSWER
    assert counter._value.get() == before + 1


def test_query_maps_trade_state_and_amount_and_signs_the_query_string():
    wx, wechat = connector(
        (200, {"trade_state": "SUCCESS", "transaction_id": "4200001",
               "amount": {"total": 8880, "currency": "CNY"}}, True),
        (200, {"trade_state": "NOTPAY", "out_trade_no": "P0000000042"}, True),
        (200, {"trade_state": "CLOSED"}, True),
        (200, {"trade_state": "REFUND", "transaction_id": "4200001",
               "amount": {"total": 8880, "currency": "CNY"}}, True))
    paid = wx.query_status("P0000000042")
    assert (paid.status, paid.amount, paid.transaction_id) == (
        ProviderPaymentStatus.SUCCEEDED, Decimal("88.80"), "4200001")
    assert wechat.sent[0].path_url == f"/v3/pay/transactions/out-trade-no/P0000000042?mchid={MCHID}"
    assert wechat.sent[0].body is None
    assert wx.query_status("P0000000042").status is ProviderPaymentStatus.PENDING
    assert wx.query_status("P0000000042").status is ProviderPaymentStatus.CLOSED
    assert wx.query_status("P0000000042").status is ProviderPaymentStatus.SUCCEEDED


def test_close_is_204_and_a_paid_order_is_already_paid():
    wx, wechat = connector((204, None, True))
    wx.close("P0000000042")
    assert json.loads(wechat.sent[0].body) == {"mchid": MCHID}
    wx, _ = connector((400, {"code": "ORDERPAID", "message": "该订单已支付"}, True))
    with pytest.raises(ProviderRejected) as caught:
        wx.close("P0000000042")
    assert caught.value.code == "already_paid"
    wx, _ = connector((400, {"code": "ORDER_CLOSED", "message": "订单已关闭"}, True))
    wx.close("P0000000042")  # closed already: fine


def test_refund_sends_both_amounts_in_fen_and_waits_for_the_notification():
    wx, wechat = connector((200, {"refund_id": "5030001", "status": "PROCESSING"}, True))
    made = wx.refund(RefundRequest(refund_id=7, out_refund_no="R0000000007",
                                   payment_reference="P0000000042", out_trade_no="P0000000042",
                                   amount=Decimal("10.00"), payment_amount=Decimal("88.80"),
                                   currency="CNY", reason="customer asked"))
    assert (made.reference, made.outcome) == ("5030001", None)
    sent = json.loads(wechat.sent[0].body)
    assert sent["amount"] == {"refund": 1000, "total": 8880, "currency": "CNY"}
    assert (sent["out_refund_no"], sent["notify_url"]) == (
        "R0000000007", "https://shop.example/callbacks/wechatpay")


def test_the_refund_query_reads_amount_refund_in_fen_as_yuan():
    request = RefundRequest(refund_id=7, out_refund_no="R0000000007",
                            payment_reference="P0000000042", out_trade_no="P0000000042",
                            amount=Decimal("10.00"), payment_amount=Decimal("88.80"),
                            currency="CNY")
    wx, _ = connector((200, {"refund_id": "5030001", "status": "SUCCESS",
                             "amount": {"refund": 999, "total": 8880, "currency": "CNY"}},
                       True))
    answer = wx.query_refund(request)
    assert answer.amount == Decimal("9.99") and isinstance(answer.amount, Decimal)
    for amount in ({"refund": "999"}, {"refund": 9.99}, {}, None):  # not whole fen
        wx, _ = connector((200, {"refund_id": "5030001", "status": "SUCCESS",
                                 "amount": amount}, True))
        with pytest.raises(ProviderUnavailable):
            wx.query_refund(request)


@pytest.mark.parametrize(("status", "error"), [
    (500, ProviderUnavailable), (503, ProviderUnavailable), (429, ProviderUnavailable),
    (400, ProviderRejected), (403, ProviderRejected), (404, ProviderRejected),
])
def test_error_answers_map_to_our_two_failures_with_wechats_code(status, error):
    wx, _ = connector((status, {"code": "SOME_CODE", "message": "说明"}, False))
    with pytest.raises(error) as caught:
        wx.query_status("P0000000042")
    assert (caught.value.status, caught.value.code) == (status, "SOME_CODE")


def test_no_connection_is_unavailable():
    wx = provider()
    wx._creds = type(wx._creds)(**{**wx._creds.__dict__, "base_url": "http://127.0.0.1:9"})
    with pytest.raises(ProviderUnavailable):
        wx.query_status("P0000000042")


def test_a_reference_that_is_not_ours_never_reaches_a_url():
    wx, wechat = connector()
    with pytest.raises(ProviderRejected):
        wx.query_status("../../v3/refund")
    assert wechat.sent == []
