"""python-alipay-sdk (an independent reading of Alipay's protocol) against the double:
the double accepts the SDK's signed requests, the SDK verifies the double's answers
and its notifications. With our connector's own tests against the double, neither
side can hide a misreading that both share."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
import requests
from alipay import AliPay
from alipay.exceptions import AliPayException

from adapters.providers.alipay import AlipayProvider
from adapters.providers.alipay.gateway import Gateway, request_params
from adapters.providers.alipay.keys import load_credentials
from adapters.providers.base import ProviderRefund, ProviderRefundStatus, RefundRequest
from standins.alipay import notify
from standins.alipay.keys import key_dir
from tests.support import alipay_keys
from tests.support.alipay_double import AlipayDouble

pytestmark = pytest.mark.slow


@pytest.fixture
def sdk(doubles) -> AliPay:
    folder = key_dir(doubles.run_dir)
    client = AliPay(appid=(folder / "app_id").read_text().strip(),
                    app_notify_url=doubles.live_url + "/callbacks/alipay",
                    app_private_key_string=(folder / "app_private_key.pem").read_text(),
                    alipay_public_key_string=(folder / "alipay_public_key.pem").read_text(),
                    sign_type="RSA2")
    # The SDK knows only Alipay's two gateways; it reads this attribute for each call.
    client._gateway = doubles.settings.alipay.gateway_url
    return client


@pytest.fixture
def alipay(doubles) -> AlipayDouble:
    return AlipayDouble(doubles.api, doubles.run_dir)


def test_the_sdks_calls_are_accepted_and_their_answers_verify(doubles, sdk, alipay):
    # Each call raises if the answer's signature does not verify for the SDK.
    created = sdk.api_alipay_trade_precreate(subject="SDK order", out_trade_no="SDK0000001",
                                             total_amount="12.34")
    assert created["code"] == "10000"
    assert created["qr_code"].startswith(doubles.live_url + "/doubles/alipay/pay/")
    assert alipay.trade("SDK0000001")["notify_url"] == doubles.live_url + "/callbacks/alipay"
    assert sdk.api_alipay_trade_query(out_trade_no="SDK0000001")["sub_code"] == (
        "ACQ.TRADE_NOT_EXIST")  # nobody has scanned the code yet
    alipay.scan(created["qr_code"])
    assert sdk.api_alipay_trade_query(out_trade_no="SDK0000001")["trade_status"] == (
        "WAIT_BUYER_PAY")
    alipay.press(created["qr_code"], "approve", notify="0")
    queried = sdk.api_alipay_trade_query(out_trade_no="SDK0000001")
    assert (queried["trade_status"], queried["total_amount"]) == ("TRADE_SUCCESS", "12.34")

    closing = sdk.api_alipay_trade_close(out_trade_no="SDK0000001")
    assert (closing["code"], closing["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    refunded = sdk.api_alipay_trade_refund(refund_amount="2.34", out_trade_no="SDK0000001",
                                           out_request_no="SDKR000001")
    assert (refunded["code"], refunded["fund_change"]) == ("10000", "Y")
    again = sdk.api_alipay_trade_refund(refund_amount="2.34", out_trade_no="SDK0000001",
                                        out_request_no="SDKR000001")
    assert (again["code"], again["fund_change"]) == ("10000", "N")
    found = sdk.api_alipay_trade_fastpay_refund_query("SDKR000001", out_trade_no="SDK0000001")
    assert found["refund_status"] == "REFUND_SUCCESS"


def test_a_closed_unpaid_trade_via_the_sdk(sdk, alipay):
    created = sdk.api_alipay_trade_precreate(subject="SDK order", out_trade_no="SDK0000002",
                                             total_amount="1.00")
    alipay.scan(created["qr_code"])
    assert sdk.api_alipay_trade_close(out_trade_no="SDK0000002")["code"] == "10000"
    assert sdk.api_alipay_trade_query(out_trade_no="SDK0000002")["trade_status"] == (
        "TRADE_CLOSED")


def test_a_request_signed_with_another_key_is_refused_as_alipay_does(doubles, sdk):
    # Our app id, but signed with a key the double was never given.
    stranger = AliPay(appid=sdk.appid, app_notify_url=None,
                      app_private_key_string=alipay_keys.APP_PRIVATE_KEY_FILE.read_text(),
                      alipay_public_key_string=(key_dir(doubles.run_dir) /
                                                "alipay_public_key.pem").read_text())
    stranger._gateway = sdk._gateway
    # The refusal itself is signed by the double, and verifies for the SDK.
    refused = stranger.api_alipay_trade_query(out_trade_no="SDK0000003")
    assert (refused["code"], refused["sub_code"]) == ("40002", "isv.invalid-signature")


def test_an_unknown_app_id_gets_an_unsigned_refusal_the_sdk_rejects(sdk):
    sdk._appid = "2021000000009999"
    with pytest.raises(AliPayException):
        sdk.api_alipay_trade_query(out_trade_no="SDK0000003")


def test_the_sdk_verifies_the_doubles_notifications(doubles, sdk, alipay):
    created = sdk.api_alipay_trade_precreate(subject="中文 订单", out_trade_no="SDK0000004",
                                             total_amount="8.88")
    alipay.scan(created["qr_code"])
    alipay.press(created["qr_code"], "approve")
    [sent] = alipay.wait_delivered(1)
    # Rendered again as the double renders each attempt (stamped and signed afresh).
    headers, body = notify.render(doubles.settings, sent["payload"])
    data = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
    signature = data.pop("sign")
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert sdk.verify(data, signature)
    assert data["trade_status"] == "TRADE_SUCCESS" and data["subject"] == "中文 订单"
    assert not sdk.verify({**data, "total_amount": "0.01"}, signature)


@pytest.mark.parametrize(("change", "answered_as", "expected"), [
    ({"sign": None}, "alipay.trade.query", ("40001", "isv.missing-signature")),
    ({"sign_type": "RSA"}, "alipay.trade.query", ("40002", "isv.invalid-signature-type")),
    # Changed after signing: the signature fails before the value is looked at.
    ({"timestamp": "yesterday"}, "alipay.trade.query", ("40002", "isv.invalid-signature")),
    ({"method": "alipay.trade.pay"}, "error", ("40002", "isv.invalid-signature")),
])
def test_the_gateway_refuses_malformed_requests_in_alipays_words(doubles, change,
                                                                  answered_as, expected):
    credentials = load_credentials(doubles.settings.alipay)
    params = request_params(credentials, "alipay.trade.query", {"out_trade_no": "SDK0000009"})
    params.update(change)
    raw = requests.post(credentials.gateway_url, timeout=30,
                        data={k: v for k, v in params.items() if v is not None}).content
    # The refusal is signed by the double (the SDK will not read an error_response at all).
    answer = Gateway(credentials).verified_answer(answered_as, raw)
    assert (answer.code, answer.sub_code) == expected


def test_our_refund_query_reads_what_the_sdk_reads(doubles, sdk, alipay):
    """alipay.trade.fastpay.refund.query through the SDK and through our connector's
    query_refund (refunds.check's question): a refund made is REFUND_SUCCESS for both;
    a number never refunded has no refund_status for the SDK and no outcome for us."""
    created = sdk.api_alipay_trade_precreate(subject="SDK order", out_trade_no="SDK0000005",
                                             total_amount="5.00")
    alipay.scan(created["qr_code"])
    alipay.press(created["qr_code"], "approve", notify="0")
    refunded = sdk.api_alipay_trade_refund(refund_amount="1.50", out_trade_no="SDK0000005",
                                           out_request_no="SDKR000005")
    assert (refunded["code"], refunded["fund_change"]) == ("10000", "Y")
    connector = AlipayProvider(load_credentials(doubles.settings.alipay),
                               doubles.live_url + "/callbacks/alipay")

    def ask(out_request_no: str) -> tuple[dict, ProviderRefund]:
        by_sdk = sdk.api_alipay_trade_fastpay_refund_query(out_request_no,
                                                           out_trade_no="SDK0000005")
        ours = connector.query_refund(RefundRequest(
            refund_id=5, out_refund_no=out_request_no, payment_reference="SDK0000005",
            out_trade_no="SDK0000005", amount=Decimal("1.50"),
            payment_amount=Decimal("5.00"), currency="CNY"))
        return by_sdk, ours

    by_sdk, ours = ask("SDKR000005")
    assert (by_sdk["code"], by_sdk["refund_status"], by_sdk["refund_amount"]) == (
        "10000", "REFUND_SUCCESS", "1.50")
    # refund_amount as the SDK reads it (a yuan string), ours a Decimal of the same yuan.
    assert ours == ProviderRefund("SDKR000005", ProviderRefundStatus.SUCCEEDED,
                                  amount=Decimal(by_sdk["refund_amount"]))
    assert ours.amount == Decimal("1.50")
    by_sdk, ours = ask("SDKR000404")
    assert by_sdk["code"] == "10000" and "refund_status" not in by_sdk
    assert ours == ProviderRefund("SDKR000404", None)
