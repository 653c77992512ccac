"""The Alipay connector's reading of gateway answers: each trade status and business
code to our terms, and every answer it must not trust. The gateway here is a stub
transport answering in Alipay's signed layout (the live double is in the e2e tests)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from adapters.providers.alipay import AlipayProvider
from adapters.providers.base import (
    PaymentRequest,
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from config import ConfigError, Settings
from standins.alipay.crypto import request_is_signed, signed_answer
from tests.support import alipay_keys as keys


class StubGateway:
    """Answers each method with the next content queued for it, signed by 'Alipay'."""

    def __init__(self) -> None:
        self.answers: dict[str, list] = {}
        self.requests: list[dict[str, str]] = []

    def queue(self, method: str, content: dict | str, *, sign: bool = True) -> None:
        self.answers.setdefault(method, []).append((content, sign))

    def post(self, url, data, timeout, headers):
        self.requests.append(dict(data))
        assert request_is_signed(data, keys.app_public_key())
        content, sign = self.answers[data["method"]].pop(0)
        response = requests.Response()
        response.status_code = 200
        if isinstance(content, str):
            response._content = content.encode()
        else:
            response._content = signed_answer(data["method"], content,
                                              keys.alipay_private_key() if sign else None
                                              ).encode()
        return response

    def biz(self, index: int = -1) -> dict:
        return json.loads(self.requests[index]["biz_content"])


@pytest.fixture
def gateway() -> StubGateway:
    return StubGateway()


@pytest.fixture
def provider(gateway) -> AlipayProvider:
    return AlipayProvider(keys.credentials(), "https://shop.example/callbacks/alipay",
                          session=gateway)  # type: ignore[arg-type]


OK = {"code": "10000", "msg": "Success"}


def refused(sub_code: str) -> dict:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x"}


def payment(**changes) -> PaymentRequest:
    values = {"payment_id": 42, "out_trade_no": "P0000000042", "amount": Decimal("88.80"),
              "currency": "CNY", "method": "alipay", "description": "Order 42",
              "idempotency_key": "k"}
    values.update(changes)
    return PaymentRequest(**values)


def refund_request(**changes) -> RefundRequest:
    values = {"refund_id": 7, "out_refund_no": "R0000000007",
              "payment_reference": "P0000000042", "out_trade_no": "P0000000042",
              "amount": Decimal("10.00"), "payment_amount": Decimal("88.80"),
              "currency": "CNY"}
    values.update(changes)
    return RefundRequest(**values)


def test_precreate_sends_yuan_and_our_notify_url_and_returns_the_qr_code(provider, gateway):
    gateway.queue("alipay.trade.precreate", {**OK, "out_trade_no": "P0000000042",
                                             "qr_code": "https://qr.alipay.com/bax1"})
    created = provider.create_payment(payment())
    assert (created.reference, created.pay_url, created.qr_payload) == (
        "P0000000042", "https://qr.alipay.com/bax1", "https://qr.alipay.com/bax1")
    assert gateway.biz() == {"out_trade_no": "P0000000042", "total_amount": "88.80",
                             "subject": "Order 42", "timeout_express": "30m"}
    assert gateway.requests[0]["notify_url"] == "https://shop.example/callbacks/alipay"


def test_precreate_of_a_paid_trade_is_already_paid(provider, gateway):
    gateway.queue("alipay.trade.precreate", refused("ACQ.TRADE_HAS_SUCCESS"))
    with pytest.raises(ProviderRejected) as caught:
        provider.create_payment(payment())
    assert caught.value.code == "already_paid"


def test_a_currency_other_than_yuan_is_refused_before_any_call(provider, gateway):
    with pytest.raises(ProviderRejected):
        provider.create_payment(payment(currency="USD"))
    assert gateway.requests == []


@pytest.mark.parametrize(("trade_status", "expected"), [
    ("WAIT_BUYER_PAY", ProviderPaymentStatus.PENDING),
    ("TRADE_SUCCESS", ProviderPaymentStatus.SUCCEEDED),
    ("TRADE_FINISHED", ProviderPaymentStatus.SUCCEEDED),
    ("TRADE_CLOSED", ProviderPaymentStatus.CLOSED),
])
def test_query_maps_trade_status(provider, gateway, trade_status, expected):
    gateway.queue("alipay.trade.query", {**OK, "trade_no": "2026T1", "trade_status":
                                         trade_status, "total_amount": "88.80"})
    status = provider.query_status("P0000000042")
    assert status.status is expected
    assert (status.transaction_id, status.amount, status.currency) == (
        "2026T1", Decimal("88.80"), "CNY")
    assert gateway.biz() == {"out_trade_no": "P0000000042"}


def test_a_trade_nobody_scanned_is_pending(provider, gateway):
    gateway.queue("alipay.trade.query", refused("ACQ.TRADE_NOT_EXIST"))
    assert provider.query_status("P0000000042").status is ProviderPaymentStatus.PENDING


def test_close_is_fine_when_closed_or_never_scanned(provider, gateway):
    gateway.queue("alipay.trade.close", OK)
    gateway.queue("alipay.trade.close", refused("ACQ.TRADE_NOT_EXIST"))
    provider.close("P0000000042")
    provider.close("P0000000042")


def test_close_of_a_paid_trade_is_already_paid(provider, gateway):
    gateway.queue("alipay.trade.close", refused("ACQ.TRADE_STATUS_ERROR"))
    gateway.queue("alipay.trade.query", {**OK, "trade_no": "T", "trade_status":
                                         "TRADE_SUCCESS", "total_amount": "88.80"})
    with pytest.raises(ProviderRejected) as caught:
        provider.close("P0000000042")
    assert caught.value.code == "already_paid"


def test_close_of_a_closed_trade_that_alipay_calls_a_status_error_is_fine(provider, gateway):
    gateway.queue("alipay.trade.close", refused("ACQ.TRADE_STATUS_ERROR"))
    gateway.queue("alipay.trade.query", {**OK, "trade_no": "T", "trade_status":
                                         "TRADE_CLOSED", "total_amount": "88.80"})
    provider.close("P0000000042")


def test_refund_with_fund_change_y_succeeded(provider, gateway):
    gateway.queue("alipay.trade.refund", {**OK, "fund_change": "Y", "refund_fee": "10.00"})
    result = provider.refund(refund_request())
    assert result.outcome is ProviderRefundStatus.SUCCEEDED
    # refund_fee is the trade's total refunded, not this refund's amount: kept as such.
    assert (result.amount, result.refunded_total) == (None, Decimal("10.00"))
    assert gateway.biz() == {"out_trade_no": "P0000000042", "refund_amount": "10.00",
                             "out_request_no": "R0000000007"}


def test_the_refund_query_gives_this_refunds_amount_in_yuan(provider, gateway):
    gateway.queue("alipay.trade.fastpay.refund.query", {
        **OK, "out_request_no": "R0000000007", "refund_amount": "9.99",
        "refund_status": "REFUND_SUCCESS"})
    answer = provider.query_refund(refund_request())
    assert answer.outcome is ProviderRefundStatus.SUCCEEDED
    assert answer.amount == Decimal("9.99") and isinstance(answer.amount, Decimal)
    gateway.queue("alipay.trade.fastpay.refund.query", {
        **OK, "refund_amount": "9.9x", "refund_status": "REFUND_SUCCESS"})  # not yuan
    with pytest.raises(ProviderUnavailable):
        provider.query_refund(refund_request())


def test_refund_repeated_with_fund_change_n_is_confirmed_by_the_refund_query(provider,
                                                                            gateway):
    gateway.queue("alipay.trade.refund", {**OK, "fund_change": "N", "refund_fee": "10.00"})
    gateway.queue("alipay.trade.fastpay.refund.query", {
        **OK, "out_request_no": "R0000000007", "refund_amount": "10.00",
        "refund_status": "REFUND_SUCCESS"})
    answer = provider.refund(refund_request())
    assert answer.outcome is ProviderRefundStatus.SUCCEEDED
    assert answer.amount == Decimal("10.00")  # the query's, this refund's alone
    assert gateway.biz() == {"out_trade_no": "P0000000042", "out_request_no": "R0000000007"}


def test_fund_change_n_without_a_refund_found_is_asked_again_later(provider, gateway):
    gateway.queue("alipay.trade.refund", {**OK, "fund_change": "N"})
    gateway.queue("alipay.trade.fastpay.refund.query", OK)
    with pytest.raises(ProviderUnavailable):
        provider.refund(refund_request())


def test_a_business_refusal_of_a_refund_is_a_failed_refund(provider, gateway):
    gateway.queue("alipay.trade.refund", refused("ACQ.SELLER_BALANCE_NOT_ENOUGH"))
    assert provider.refund(refund_request()).outcome is ProviderRefundStatus.FAILED


@pytest.mark.parametrize("content", [
    {"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"},
    refused("ACQ.SYSTEM_ERROR"),
])
def test_alipay_saying_try_later_is_unavailable(provider, gateway, content):
    gateway.queue("alipay.trade.refund", content)
    with pytest.raises(ProviderUnavailable):
        provider.refund(refund_request())


def test_an_invalid_signature_refusal_is_rejected(provider, gateway):
    gateway.queue("alipay.trade.query", {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-signature"})
    with pytest.raises(ProviderRejected) as caught:
        provider.query_status("P0000000042")
    assert caught.value.code == "isv.invalid-signature"


# --- answers not to be trusted --------------------------------------------------------

def test_an_unsigned_answer_is_not_trusted(provider, gateway, caplog):
    gateway.queue("alipay.trade.query", {**OK, "trade_status": "TRADE_SUCCESS",
                                         "trade_no": "T", "total_amount": "88.80"}, sign=False)
    with pytest.raises(ProviderUnavailable):
        provider.query_status("P0000000042")
    assert "not trusted" in caplog.text


def test_an_answer_altered_after_signing_is_not_trusted(provider, gateway, caplog):
    genuine = signed_answer("alipay.trade.query", {**OK, "trade_status": "WAIT_BUYER_PAY",
                                                   "total_amount": "88.80"},
                            keys.alipay_private_key())
    gateway.queue("alipay.trade.query", genuine.replace("WAIT_BUYER_PAY", "TRADE_SUCCESS"))
    with pytest.raises(ProviderUnavailable):
        provider.query_status("P0000000042")
    assert "does not verify" in caplog.text and "TRADE_SUCCESS" not in caplog.text


def test_an_answer_that_is_not_json_is_not_trusted(provider, gateway):
    gateway.queue("alipay.trade.query", "<html>502 Bad Gateway</html>")
    with pytest.raises(ProviderUnavailable):
        provider.query_status("P0000000042")


def test_the_sign_covers_the_exact_text_even_reformatted_json_fails(provider, gateway):
    genuine = json.loads(signed_answer("alipay.trade.query", {
        **OK, "trade_status": "WAIT_BUYER_PAY", "total_amount": "88.80"},
        keys.alipay_private_key()))
    gateway.queue("alipay.trade.query", json.dumps(genuine, indent=2))
    with pytest.raises(ProviderUnavailable):
        provider.query_status("P0000000042")


def test_network_failures_are_unavailable():
    provider = AlipayProvider(keys.credentials("http://127.0.0.1:9/gateway.do"), "u")
    with pytest.raises(ProviderUnavailable):
        provider.query_status("P0000000042")


# --- settings ---------------------------------------------------------------------------

def settings(**env: str) -> Settings:
    base = {"APP_ENV": "test", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x",
            "ALIPAY_APP_ID": keys.APP_ID,
            "ALIPAY_APP_PRIVATE_KEY_FILE": str(keys.APP_PRIVATE_KEY_FILE),
            "ALIPAY_PUBLIC_KEY_FILE": str(keys.ALIPAY_PUBLIC_KEY_FILE)}
    base.update(env)
    return Settings.from_env({k: v for k, v in base.items() if v})


def test_from_settings_loads_the_keys_and_our_notify_url():
    provider = AlipayProvider.from_settings(settings(PUBLIC_BASE_URL="https://shop.example",
                                                     PAYMENT_TTL_SECONDS="90"))
    assert provider.notify_url == "https://shop.example/callbacks/alipay"
    assert provider.timeout_express == "2m"  # whole minutes, rounded up
    assert provider.credentials.app_id == keys.APP_ID


@pytest.mark.parametrize(("env", "variable"), [
    ({"ALIPAY_APP_ID": ""}, "ALIPAY_APP_ID"),
    ({"ALIPAY_APP_ID": "not-an-id"}, "ALIPAY_APP_ID"),
    ({"ALIPAY_APP_PRIVATE_KEY_FILE": ""}, "ALIPAY_APP_PRIVATE_KEY_FILE"),
    ({"ALIPAY_APP_PRIVATE_KEY_FILE": "/nonexistent.pem"}, "ALIPAY_APP_PRIVATE_KEY_FILE"),
    ({"ALIPAY_APP_PRIVATE_KEY_FILE": str(keys.ALIPAY_PUBLIC_KEY_FILE)},
     "ALIPAY_APP_PRIVATE_KEY_FILE"),
    ({"ALIPAY_PUBLIC_KEY_FILE": ""}, "ALIPAY_PUBLIC_KEY_FILE"),
    ({"ALIPAY_PUBLIC_KEY_FILE": str(keys.FIXTURES / "README.md")}, "ALIPAY_PUBLIC_KEY_FILE"),
    ({"ALIPAY_GATEWAY_URL": "ftp://x"}, "ALIPAY_GATEWAY_URL"),
])
def test_a_bad_setting_stops_the_start_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        AlipayProvider.from_settings(settings(**env))


def test_a_bare_base64_key_as_alipays_tool_writes_it_loads(tmp_path):
    lines = keys.ALIPAY_PUBLIC_KEY_FILE.read_text().splitlines()
    bare = tmp_path / "alipay_public_key.txt"
    bare.write_text("".join(line for line in lines if not line.startswith("-----")))
    provider = AlipayProvider.from_settings(settings(ALIPAY_PUBLIC_KEY_FILE=str(bare)))
    assert provider.credentials.alipay_public_key.key_size == 2048


def test_the_request_form_carries_every_common_parameter(provider, gateway):
    gateway.queue("alipay.trade.query", refused("ACQ.TRADE_NOT_EXIST"))
    provider.query_status("P0000000042")
    sent = gateway.requests[0]
    assert set(sent) == {"app_id", "method", "format", "charset", "sign_type", "timestamp",
                         "version", "biz_content", "sign"}
