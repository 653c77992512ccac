"""Alipay notifications at our door: what verifies and how it reads, every refusal, and
the answers Alipay understands (`success`, else `fail`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from adapters.providers.alipay import AlipayProvider
from adapters.providers.alipay.callbacks import parse_notification
from adapters.providers.base import CallbackRequest
from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    WrongMerchant,
)
from domain.callback_events import CallbackEventType
from domain.errors import InvalidInput
from standins.alipay.crypto import signed_notification
from tests.support import alipay_keys as keys

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def fields(**changes: str) -> dict[str, str]:
    base = {"notify_id": "2026120100222164500012345678", "notify_type": "trade_status_sync",
            "notify_time": "2026-12-01 16:45:03", "app_id": keys.APP_ID, "charset": "utf-8",
            "version": "1.0", "trade_no": "2026120122001400000000000001",
            "out_trade_no": "P0000000042", "trade_status": "TRADE_SUCCESS",
            "total_amount": "88.80", "buyer_id": "2088102177846880",
            "gmt_payment": "2026-12-01 16:45:00", "subject": "订单 42"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def body(signed: dict[str, str], charset: str = "utf-8") -> bytes:
    return urlencode(signed, encoding=charset).encode("ascii")


def signed(**changes: str) -> dict[str, str]:
    return signed_notification(fields(**changes), keys.alipay_private_key())


def parse(raw: bytes, headers=None):
    return parse_notification(CallbackRequest(headers=headers or FORM, body=raw),
                              app_id=keys.APP_ID,
                              alipay_public_key=keys.credentials().alipay_public_key)


def test_trade_success_is_a_payment_succeeded_named_by_out_trade_no():
    event = parse(body(signed()))
    assert event.type is CallbackEventType.PAYMENT_SUCCEEDED
    assert event.event_id == "2026120100222164500012345678"
    assert event.amount == Decimal("88.80") and event.currency == "CNY"
    assert event.transaction_id == "2026120122001400000000000001"
    assert event.out_trade_no == "P0000000042"
    assert event.payment_id is None and event.refund_id is None
    assert event.occurred_at == datetime(2026, 12, 1, 16, 45,
                                         tzinfo=timezone(timedelta(hours=8)))


def test_trade_finished_is_a_success_too():
    assert parse(body(signed(trade_status="TRADE_FINISHED"))).type is (
        CallbackEventType.PAYMENT_SUCCEEDED)


def test_trade_closed_is_a_payment_failed():
    event = parse(body(signed(trade_status="TRADE_CLOSED", gmt_payment=None,
                              gmt_close="2026-12-01 17:00:00")))
    assert event.type is CallbackEventType.PAYMENT_FAILED
    assert event.occurred_at.hour == 17


def test_a_refund_notification_reads_as_the_trade_status_it_carries():
    # refund_fee is the trade's total refunded, not this refund: it is not a refund event.
    event = parse(body(signed(out_biz_no="R0000000007", refund_fee="10.00",
                              gmt_refund="2026-12-01 18:00:00")))
    assert event.type is CallbackEventType.PAYMENT_SUCCEEDED
    assert event.amount == Decimal("88.80") and event.out_refund_no is None


def test_a_gbk_notification_is_decoded_with_its_own_charset():
    event = parse(body(signed(charset="gbk"), charset="gbk"))
    assert event.out_trade_no == "P0000000042"


# --- refusals: not authentic (401 at the route) -----------------------------------------

def test_a_missing_sign_is_refused():
    unsigned = signed()
    del unsigned["sign"]
    with pytest.raises(MissingSignature):
        parse(body(unsigned))


def test_a_tampered_field_is_refused():
    tampered = {**signed(), "total_amount": "0.01"}
    with pytest.raises(SignatureMismatch):
        parse(body(tampered))


def test_an_added_field_is_refused():
    with pytest.raises(SignatureMismatch):
        parse(body({**signed(), "refund_fee": "88.80"}))


def test_a_signature_by_another_key_is_refused():
    forged = signed_notification(fields(), keys.load_private_key(
        str(keys.APP_PRIVATE_KEY_FILE), "T"))
    with pytest.raises(SignatureMismatch):
        parse(body(forged))


def test_another_app_id_is_refused_even_when_alipay_signed_it():
    with pytest.raises(WrongMerchant):
        parse(body(signed(app_id="2021009999999999")))


def test_sign_type_rsa_is_refused():
    with pytest.raises(MalformedSignature):
        parse(body({**signed(), "sign_type": "RSA"}))


def test_a_repeated_field_is_refused():
    with pytest.raises(MalformedSignature):
        parse(body(signed()) + b"&total_amount=0.01")


# --- authentic but not readable (400) ----------------------------------------------------

def test_json_is_not_a_notification():
    with pytest.raises(InvalidInput):
        parse(b'{"a": 1}', headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("changes", [
    {"trade_status": "WAIT_BUYER_PAY"}, {"total_amount": "abc"}, {"total_amount": "1.001"},
    {"out_trade_no": None}, {"notify_id": None}, {"trade_no": None},
    {"gmt_payment": "yesterday"},
])
def test_signed_but_unreadable_is_invalid_input(changes):
    with pytest.raises(InvalidInput):
        parse(body(signed(**changes)))


def test_an_unknown_charset_is_invalid_input():
    with pytest.raises(InvalidInput):
        parse(body(signed(charset="ebcdic")))


# --- answers --------------------------------------------------------------------------

def provider() -> AlipayProvider:
    return AlipayProvider(keys.credentials(), "https://shop.example/callbacks/alipay")


@pytest.mark.parametrize("duplicate", [False, True])
def test_stored_is_answered_success_in_plain_text(duplicate):
    answer = provider().answer_stored(duplicate)
    assert (answer.status, answer.body) == (200, b"success")
    assert answer.content_type.startswith("text/plain")


@pytest.mark.parametrize("status", [400, 401, 413, 503])
def test_refused_is_answered_fail_with_the_status(status):
    answer = provider().answer_refused(status, "invalid_signature", "nope", {"x": 1})
    assert (answer.status, answer.body) == (status, b"fail")
    assert answer.content_type.startswith("text/plain")
