"""WeChat Pay notifications: what is accepted, what it becomes, every refusal, and the
answers in WeChat Pay's own format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapters.providers.base import CallbackRequest
from adapters.providers.wechatpay import WechatPayProvider
from adapters.providers.wechatpay.credentials import WechatPayCredentials
from adapters.providers.wechatpay.signing import PlatformCertificate, WechatPayKeys
from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    SignatureProbe,
    TimestampInFuture,
    TimestampTooOld,
    UnknownSigningKey,
    WrongMerchant,
)
from domain.callback_events import CallbackEventType
from domain.errors import InvalidInput
from tests.unit.wechatpay_support import (
    APIV3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    NOW,
    PUBLIC_KEY_ID,
    notification,
    private_key,
    signed_headers,
    transaction,
)

PLATFORM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(key: rsa.RSAPrivateKey, *, serial: int, days: int = 30,
                start: datetime | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com test")])
    begin = start or datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(begin).not_valid_after(begin + timedelta(days=days))
            .sign(key, hashes.SHA256()))


def provider(*, public_key: bool = True,
             certificates: dict[str, PlatformCertificate] | None = None) -> WechatPayProvider:
    keys = WechatPayKeys(
        public_key_id=PUBLIC_KEY_ID if public_key else None,
        public_key=private_key("wechatpay").public_key() if public_key else None,
        certificates=certificates or {})
    creds = WechatPayCredentials(mchid=MCHID, appid=APPID, apiv3_key=APIV3_KEY,
                                 merchant_serial_no=MERCHANT_SERIAL,
                                 merchant_private_key=private_key("merchant"),
                                 wechatpay_keys=keys, base_url="http://wechat.invalid")
    return WechatPayProvider(creds, "https://shop.example/callbacks/wechatpay",
                             tolerance_seconds=300)


def parse(body: bytes, headers: dict[str, str], *, now: float = NOW, wx=None):
    return (wx or provider()).parse_callback(CallbackRequest(headers, body), now=now)


def test_transaction_success_is_payment_succeeded_in_yuan():
    body = notification(transaction())
    event = parse(body, signed_headers(body))
    assert event.type is CallbackEventType.PAYMENT_SUCCEEDED
    assert event.event_id == "EV-2018022511223320873"
    assert event.amount == Decimal("88.80") and event.currency == "CNY"
    assert event.transaction_id == "4200000000202601010000000042"
    assert event.out_trade_no == "P0000000042" and event.out_refund_no is None
    assert event.payment_id is None and event.refund_id is None
    assert event.occurred_at == datetime(2027, 1, 15, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("event_type", "status", "expected"), [
    ("REFUND.SUCCESS", "SUCCESS", CallbackEventType.REFUND_SUCCEEDED),
    ("REFUND.CLOSED", "CLOSED", CallbackEventType.REFUND_FAILED),
    ("REFUND.ABNORMAL", "ABNORMAL", CallbackEventType.REFUND_ABNORMAL),
])
def test_refund_notifications(event_type, status, expected):
    resource = {"mchid": MCHID, "out_trade_no": "P0000000042",
                "transaction_id": "4200000000202601010000000042",
                "out_refund_no": "R0000000007", "refund_id": "50000000382019052709732678859",
                "refund_status": status, "user_received_account": "支付用户零钱",
                "amount": {"total": 8880, "refund": 1000, "payer_total": 8880,
                           "payer_refund": 1000}}
    if status == "SUCCESS":
        resource["success_time"] = "2027-01-15T11:00:00+08:00"
    body = notification(resource, event_type=event_type, associated_data="refund")
    event = parse(body, signed_headers(body))
    assert event.type is expected
    assert event.amount == Decimal("10.00") and event.currency == "CNY"
    assert (event.out_trade_no, event.out_refund_no) == ("P0000000042", "R0000000007")
    assert event.transaction_id == "50000000382019052709732678859"
    assert event.occurred_at is not None


@pytest.mark.parametrize("missing", ["Wechatpay-Signature", "Wechatpay-Timestamp",
                                     "Wechatpay-Nonce", "Wechatpay-Serial"])
def test_a_missing_header_is_refused(missing):
    body = notification(transaction())
    headers = signed_headers(body)
    del headers[missing]
    with pytest.raises(MissingSignature):
        parse(body, headers)


def test_a_tampered_body_is_refused():
    body = notification(transaction())
    headers = signed_headers(body)
    with pytest.raises(SignatureMismatch):
        parse(body.replace(b"EV-2018", b"EV-2019"), headers)


def test_a_signature_by_another_key_under_our_serial_is_refused():
    body = notification(transaction())
    with pytest.raises(SignatureMismatch):
        parse(body, signed_headers(body, key=private_key("merchant")))


def test_an_unknown_serial_is_refused():
    body = notification(transaction())
    with pytest.raises(UnknownSigningKey):
        parse(body, signed_headers(body, serial="PUB_KEY_ID_0000000000000000000000000000099"))


def test_a_signature_probe_is_refused():
    body = notification(transaction())
    headers = signed_headers(body)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    with pytest.raises(SignatureProbe):
        parse(body, headers)


@pytest.mark.parametrize(("offset", "error"), [(301, TimestampTooOld),
                                               (-301, TimestampInFuture)])
def test_a_timestamp_outside_the_tolerance_is_refused(offset, error):
    body = notification(transaction())
    headers = signed_headers(body, timestamp=NOW - offset)
    with pytest.raises(error):
        parse(body, headers)
    parse(body, signed_headers(body, timestamp=NOW - 300))  # the edge is still fine


def test_a_timestamp_that_is_not_unix_seconds_is_malformed():
    body = notification(transaction())
    headers = signed_headers(body)
    headers["Wechatpay-Timestamp"] = "2027-01-15"
    with pytest.raises(MalformedSignature):
        parse(body, headers)


def test_another_signature_type_is_malformed():
    body = notification(transaction())
    headers = signed_headers(body)
    headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"
    with pytest.raises(MalformedSignature):
        parse(body, headers)


def test_a_notification_for_another_merchant_is_refused():
    body = notification(transaction(mchid="1900000001"))
    with pytest.raises(WrongMerchant):
        parse(body, signed_headers(body))


@pytest.mark.parametrize("body", [
    notification(transaction(), key=b"k" * 32),  # sealed with another APIv3 key
    notification(transaction(trade_state="NOTPAY")),
    notification(transaction(amount={"total": "8880", "currency": "CNY"})),
    notification(transaction(), event_type="MCHTRANSFER.BILL.FINISHED"),
    b'{"id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource_type": "plain"}',
    b"not json",
])
def test_authentic_but_unreadable_is_invalid_input(body):
    with pytest.raises(InvalidInput):
        parse(body, signed_headers(body))


def test_a_platform_certificate_verifies_under_its_serial_beside_the_public_key():
    cert = certificate(PLATFORM_KEY, serial=0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
    certs = {"5157F09EFDC096DE15EBE81A47057A7232F1B8E1": PlatformCertificate(
        cert.public_key(), cert.not_valid_before_utc, cert.not_valid_after_utc)}
    both = provider(certificates=certs)
    body = notification(transaction())
    # During a switch both keys sign: each is accepted under its own serial (any case).
    for serial in ("5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                   "5157f09efdc096de15ebe81a47057a7232f1b8e1"):
        parse(body, signed_headers(body, key=PLATFORM_KEY, serial=serial), wx=both)
    parse(body, signed_headers(body), wx=both)
    only_certs = provider(public_key=False, certificates=certs)
    with pytest.raises(UnknownSigningKey):
        parse(body, signed_headers(body), wx=only_certs)
    with pytest.raises(SignatureMismatch):
        parse(body, signed_headers(body, serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1"),
              wx=only_certs)


def test_an_expired_platform_certificate_signs_nothing():
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=40)
    cert = certificate(PLATFORM_KEY, serial=0xABC, start=start, days=30)
    certs = {"ABC": PlatformCertificate(cert.public_key(), cert.not_valid_before_utc,
                                        cert.not_valid_after_utc)}
    body = notification(transaction())
    with pytest.raises(UnknownSigningKey):
        parse(body, signed_headers(body, key=PLATFORM_KEY, serial="ABC"),
              wx=provider(certificates=certs))


def test_answers_are_wechat_pays_format():
    wx = provider()
    for duplicate in (False, True):
        stored = wx.answer_stored(duplicate)
        assert (stored.status, stored.body) == (204, b"")
    refused = wx.answer_refused(401, "invalid_signature", "The signature does not match",
                                {"reason": "signature_mismatch"})
    assert refused.status == 401 and refused.content_type == "application/json"
    assert json.loads(refused.body) == {"code": "FAIL",
                                        "message": "The signature does not match"}
    assert wx.answer_refused(503, "unavailable", "try later", {}).status == 503
    assert wx.signature_header == "Wechatpay-Signature"
