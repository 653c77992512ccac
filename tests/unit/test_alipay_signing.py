"""Alipay RSA2: the exact text a request is signed over, pinned against a fixed key,
and python-alipay-sdk (the oracle) agreeing with our signer and verifier."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest
from alipay import AliPay

from adapters.providers.alipay import signing
from adapters.providers.alipay.gateway import request_params
from standins.alipay import crypto
from tests.support import alipay_keys as keys

PRECREATE_BIZ = {"out_trade_no": "P0000000042", "total_amount": "88.80", "subject": "Order 42"}
NOTIFY_URL = "https://shop.example/callbacks/alipay"
TIMESTAMP = "2026-12-01 16:45:00"
PINNED_STRING = (
    'app_id=2021000000000001&biz_content={"out_trade_no":"P0000000042",'
    '"total_amount":"88.80","subject":"Order 42"}&charset=utf-8&format=JSON'
    '&method=alipay.trade.precreate&notify_url=https://shop.example/callbacks/alipay'
    '&sign_type=RSA2&timestamp=2026-12-01 16:45:00&version=1.0')
# PKCS#1 v1.5 is deterministic: the same key and text always give this signature.
PINNED_SIGNATURE = (
    "yHba97A5ZfFGR7W5AfT4/hPUkBolF9VlL07s3yohenLBoO1PjD/MoGLALtetCESDnXrTsh/drkUUSXjAWfgBK"
    "GW2cnQr/7sESqoVYJyaD/bvsf3wAHYYxOYbGpZV59H0y9FYFrnpO5h9ZhTt3DcWQXn+6hLqrBQ/2yMU2tfr7j"
    "+5oi4aUsIzVnM7YvRQtn+blHWpV6fHvqhbYdoiEi3jzMI0JW/fCijTP1GuL78YVpzeDGnwe+yL9LRdcRdEjPT"
    "m8S7ev2RQqERsC0RgGk941YOg35IMVSeCi5ZOdQBGq0EM5vEA/c5f0lrzFswxQyqXxFbxx/XBmSYAZgh/r6R3"
    "4Q==")


def sdk() -> AliPay:
    return AliPay(appid=keys.APP_ID, app_notify_url=None,
                  app_private_key_string=keys.APP_PRIVATE_KEY_FILE.read_text(),
                  alipay_public_key_string=keys.ALIPAY_PUBLIC_KEY_FILE.read_text())


def precreate_params() -> dict[str, str]:
    return request_params(keys.credentials(), "alipay.trade.precreate", PRECREATE_BIZ,
                          notify_url=NOTIFY_URL, timestamp=TIMESTAMP)


def test_a_request_is_signed_over_the_sorted_parameters_but_sign():
    params = precreate_params()
    assert signing.signing_string(params) == PINNED_STRING
    assert params["sign"] == PINNED_SIGNATURE


def test_the_common_parameters_are_alipays():
    params = precreate_params()
    assert {k: params[k] for k in ("app_id", "method", "format", "charset", "sign_type",
                                   "timestamp", "version", "notify_url")} == {
        "app_id": keys.APP_ID, "method": "alipay.trade.precreate", "format": "JSON",
        "charset": "utf-8", "sign_type": "RSA2", "timestamp": TIMESTAMP, "version": "1.0",
        "notify_url": NOTIFY_URL}
    assert json.loads(params["biz_content"]) == PRECREATE_BIZ


def test_the_sdk_signs_the_same_request_identically():
    client = sdk()
    data = client.build_body("alipay.trade.precreate", dict(PRECREATE_BIZ),
                             notify_url=NOTIFY_URL, format="JSON", timestamp=TIMESTAMP)
    signed = dict(pair.split("=", 1) for pair in client.sign_data(data).split("&"))
    assert unquote_plus(signed["sign"]) == PINNED_SIGNATURE


def test_empty_parameters_are_left_out_of_the_signed_text():
    assert signing.signing_string({"b": "2", "a": "", "sign": "x", "c": "3"}) == "b=2&c=3"


def test_keys_sort_in_byte_order():
    assert signing.signing_string({"b": "1", "B": "2", "a_b": "3", "ab": "4"}) == (
        "B=2&a_b=3&ab=4&b=1")


def test_a_notification_is_signed_without_sign_and_sign_type():
    fields = {"notify_id": "n1", "trade_status": "TRADE_SUCCESS", "sign_type": "RSA2",
              "sign": "zzz"}
    assert signing.notification_signing_string(fields) == (
        "notify_id=n1&trade_status=TRADE_SUCCESS")


def test_the_doubles_notification_signature_verifies_with_the_sdk_and_with_us():
    fields = crypto.signed_notification({"notify_id": "n1", "app_id": keys.APP_ID,
                                         "subject": "中文 & =", "total_amount": "1.00"},
                                        keys.alipay_private_key())
    data = dict(fields)
    signature = data.pop("sign")
    assert sdk().verify(data, signature)
    public = keys.credentials().alipay_public_key
    assert signing.verify(signing.notification_signing_string(fields), signature, public)


@pytest.mark.parametrize("signature", ["", "not base64!", "QUJD", "A" * 2000])
def test_garbage_signatures_do_not_verify(signature):
    assert not signing.verify("a=1", signature, keys.credentials().alipay_public_key)


def test_our_request_signature_verifies_at_the_double():
    assert crypto.request_is_signed(precreate_params(), keys.app_public_key())
    tampered = {**precreate_params(), "biz_content":
                '{"out_trade_no":"P0000000042","total_amount":"0.01","subject":"Order 42"}'}
    assert not crypto.request_is_signed(tampered, keys.app_public_key())


# --- the signed answer's exact text ------------------------------------------------------

def test_the_signed_text_of_an_answer_is_sliced_not_reserialised():
    raw = '{"alipay_trade_query_response" : {"code":"10000", "msg" : "Success"},"sign":"s"}'
    assert signing.signed_response_text(raw, "alipay_trade_query_response") == (
        '{"code":"10000", "msg" : "Success"}')


def test_braces_and_the_key_inside_strings_do_not_confuse_the_slice():
    inner = '{"code":"40004","sub_msg":"bad } { alipay_trade_query_response","x":{"y":1}}'
    raw = '{"alipay_trade_query_response":' + inner + ',"sign":"s"}'
    assert signing.signed_response_text(raw, "alipay_trade_query_response") == inner


def test_a_nested_object_of_the_same_name_is_not_taken():
    raw = '{"other":{"alipay_trade_query_response":{"code":"1"}},"sign":"s"}'
    assert signing.signed_response_text(raw, "alipay_trade_query_response") is None


def test_the_doubles_answer_verifies_with_the_sdks_slicing_and_ours():
    # The SDK finds the object by counting braces, strings or not: a "}" inside a
    # value would defeat it (ours parses), so the double's texts carry none.
    body = crypto.signed_answer("alipay.trade.query", {"code": "10000", "msg": "Success",
                                                       "sub_msg": "中文说明"},
                                keys.alipay_private_key())
    assert sdk()._verify_and_return_sync_response(body, "alipay_trade_query_response")[
        "code"] == "10000"
    text = signing.signed_response_text(body, "alipay_trade_query_response")
    assert text is not None and signing.verify(text, json.loads(body)["sign"],
                                               keys.credentials().alipay_public_key)


def test_the_request_timestamp_is_beijing_time():
    from datetime import UTC, datetime

    from adapters.providers.alipay.gateway import beijing_timestamp

    assert beijing_timestamp(datetime(2026, 12, 1, 8, 45, tzinfo=UTC)) == "2026-12-01 16:45:00"
