"""The WeChat Pay double against the independent SDK (wechatpayv3) as an oracle, without
a network: the SDK accepts the double's notifications and signed answers, and the double
accepts the SDK's request signatures. Our connector reads the same notifications, so the
double and the connector are each checked against a third reading of the rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import build_authorization, load_private_key

from adapters.providers.base import CallbackRequest
from adapters.providers.wechatpay.callbacks import NotificationVerifier
from adapters.providers.wechatpay.credentials import load_credentials
from config import Settings, WechatPaySettings
from domain.callback_events import CallbackEventType
from standins.wechatpay.keys import ensure_keys, key_dir, load_double_keys
from standins.wechatpay.notify import (
    RETRY_SCHEDULE,
    accepted,
    refund_payload,
    render_notification,
    transaction_payload,
)
from standins.wechatpay.protocol import SignError, check_authorization, signed_headers

TRANSACTION = {"appid": None, "mchid": None, "out_trade_no": "P0000000042",
               "transaction_id": "4200000000202601010000000042", "trade_type": "NATIVE",
               "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
               "success_time": "2027-01-15T10:00:00+08:00",
               "amount": {"total": 8880, "payer_total": 8880, "currency": "CNY",
                          "payer_currency": "CNY"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    ensure_keys(folder, "http://127.0.0.1:9")
    return folder


@pytest.fixture(scope="module")
def env(run_dir) -> dict[str, str]:
    return ensure_keys(run_dir, "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def settings(run_dir) -> Settings:
    return Settings(database_url="postgresql://x", redis_url="redis://x",
                    broker_url="redis://x", run_dir=run_dir)


def sdk(env: dict[str, str], *, certificates: bool = False) -> WeChatPay:
    """The SDK as a merchant would set it up: public-key mode, or certificate mode
    reading the platform certificates from a directory."""
    key_mode = {} if certificates else {
        "public_key": Path(env["WECHATPAY_PUBLIC_KEY_FILE"]).read_text(),
        "public_key_id": env["WECHATPAY_PUBLIC_KEY_ID"]}
    return WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=env["WECHATPAY_MCHID"],
                     private_key=Path(env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]).read_text(),
                     cert_serial_no=env["WECHATPAY_MERCHANT_SERIAL_NO"],
                     appid=env["WECHATPAY_APPID"], apiv3_key=env["WECHATPAY_APIV3_KEY"],
                     notify_url="http://shop/callbacks/wechatpay",
                     cert_dir=env["WECHATPAY_PLATFORM_CERTS_DIR"] if certificates else None,
                     **key_mode)


def payment_notification(env: dict[str, str]) -> dict:
    return transaction_payload({**TRANSACTION, "appid": env["WECHATPAY_APPID"],
                                "mchid": env["WECHATPAY_MCHID"]})


@pytest.mark.parametrize("signer", ["public_key", "certificate"])
def test_the_sdk_accepts_the_doubles_notification_and_decrypts_the_same_resource(
        env, settings, signer):
    payload = {**payment_notification(env), "signer": signer}
    headers, body = render_notification(settings, payload)
    result = sdk(env, certificates=signer == "certificate").callback(headers, body)
    assert result is not None, "the SDK refused the double's notification"
    assert result["id"] == payload["id"]
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"] == payload["resource"]


@pytest.mark.parametrize("signer", ["public_key", "certificate"])
def test_our_connector_reads_the_doubles_notification_in_both_modes(env, settings, signer):
    creds = load_credentials(WechatPaySettings.from_env(env))
    verifier = NotificationVerifier(mchid=creds.mchid, apiv3_key=creds.apiv3_key,
                                    keys=creds.wechatpay_keys, tolerance_seconds=300)
    payload = {**payment_notification(env), "signer": signer}
    headers, body = render_notification(settings, payload)
    event = verifier.parse(CallbackRequest(headers, body), now=time.time())
    assert event.type is CallbackEventType.PAYMENT_SUCCEEDED
    assert (event.event_id, event.out_trade_no) == (payload["id"], "P0000000042")
    assert str(event.amount) == "88.80"


def test_a_refund_notification_reads_the_same_for_the_sdk_and_our_connector(env, settings):
    refund = {"refund_id": "50300000000000000000000000001", "out_refund_no": "R0000000007",
              "transaction_id": TRANSACTION["transaction_id"], "out_trade_no": "P0000000042",
              "user_received_account": "支付用户零钱", "status": "SUCCESS",
              "success_time": "2027-01-15T11:00:00+08:00",
              "amount": {"total": 8880, "refund": 1000, "payer_total": 8880,
                         "payer_refund": 1000, "currency": "CNY"}}
    payload = refund_payload(env["WECHATPAY_MCHID"], refund)
    headers, body = render_notification(settings, payload)
    assert sdk(env).callback(headers, body)["resource"]["refund_status"] == "SUCCESS"
    creds = load_credentials(WechatPaySettings.from_env(env))
    event = NotificationVerifier(mchid=creds.mchid, apiv3_key=creds.apiv3_key,
                                 keys=creds.wechatpay_keys, tolerance_seconds=300).parse(
        CallbackRequest(headers, body), now=time.time())
    assert event.type is CallbackEventType.REFUND_SUCCEEDED
    assert (event.out_refund_no, str(event.amount)) == ("R0000000007", "10.00")


def test_every_attempt_is_signed_afresh(env, settings):
    payload = payment_notification(env)
    first, _ = render_notification(settings, payload, timestamp=int(time.time()) - 30)
    second, body = render_notification(settings, payload)
    assert first["Wechatpay-Nonce"] != second["Wechatpay-Nonce"]
    assert first["Wechatpay-Timestamp"] != second["Wechatpay-Timestamp"]
    assert sdk(env).callback(second, body) is not None


def test_delivered_means_200_or_204_and_the_schedule_is_wechat_pays():
    assert accepted(200, b"") and accepted(204, b"")
    assert not any(accepted(s, b"") for s in (201, 302, 400, 401, 500))
    assert RETRY_SCHEDULE == (15, 15, 30, 3 * 60, 10 * 60, 20 * 60, 30 * 60, 30 * 60,
                              30 * 60, 60 * 60, 3 * 3600, 3 * 3600, 3 * 3600, 6 * 3600,
                              6 * 3600)


def sdk_request(env, method: str, path: str, data: dict | None):
    header = build_authorization(path, method, env["WECHATPAY_MCHID"],
                                 env["WECHATPAY_MERCHANT_SERIAL_NO"],
                                 load_private_key(Path(
                                     env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"]).read_text()),
                                 data=data)
    # The SDK sends what requests' json= makes of data: json.dumps with its defaults.
    return header, (json.dumps(data).encode() if data else b"")


@pytest.mark.parametrize(("method", "path", "data"), [
    ("POST", "/v3/pay/transactions/native", {"description": "测试", "amount": {"total": 1}}),
    ("GET", "/v3/pay/transactions/out-trade-no/P0000000042?mchid=1900000109", None),
])
def test_the_double_accepts_the_sdks_request_signature(env, run_dir, method, path, data):
    header, body = sdk_request(env, method, path, data)
    signer = check_authorization(load_double_keys(run_dir), header, method=method, url=path,
                                 body=body)
    assert signer.mchid == env["WECHATPAY_MCHID"]


def test_the_double_refuses_a_request_that_is_not_the_merchants(env, run_dir):
    keys = load_double_keys(run_dir)
    path, data = "/v3/pay/transactions/native", {"description": "x"}
    header, body = sdk_request(env, "POST", path, data)
    with pytest.raises(SignError):  # body changed after signing
        check_authorization(keys, header, method="POST", url=path, body=body + b" ")
    with pytest.raises(SignError):  # another URL
        check_authorization(keys, header, method="POST", url=path + "?x=1", body=body)
    with pytest.raises(SignError):  # another mchid claimed
        check_authorization(keys, header.replace(env["WECHATPAY_MCHID"], "1900000001"),
                            method="POST", url=path, body=body)
    with pytest.raises(SignError):  # too old
        check_authorization(keys, header, method="POST", url=path, body=body,
                            now=time.time() + 301)
    with pytest.raises(SignError):
        check_authorization(keys, "Bearer abc", method="POST", url=path, body=body)


@pytest.mark.parametrize("body", [b'{"code_url":"http://x/pay/abc"}', b""])
def test_the_sdk_verifies_the_doubles_answers(env, run_dir, body):
    keys = load_double_keys(run_dir)
    assert sdk(env)._core._verify_signature(signed_headers(keys, body), body.decode())
    assert sdk(env, certificates=True)._core._verify_signature(
        signed_headers(keys, body, signer="certificate"), body.decode())
    tampered = signed_headers(keys, body)
    assert not sdk(env)._core._verify_signature(tampered, body.decode() + " ")


def test_keys_live_under_run_dir_doubles_wechatpay(env, run_dir):
    folder = key_dir(run_dir)
    assert env["WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"].startswith(str(folder))
    assert (folder / "merchant_private_key.pem").stat().st_mode & 0o077 == 0
