"""The Alipay double's own small rules: what counts as delivered, how long a code lives,
and that each attempt of a notification is stamped and signed afresh."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl

import pytest

from adapters.providers.alipay import signing
from config import Settings
from standins.alipay.keys import ensure_keys, load_double_keys
from standins.alipay.notify import SCHEDULE, accepted, render
from standins.alipay.trades import DEFAULT_TIMEOUT, amount_value, express_timeout


@pytest.mark.parametrize(("body", "delivered"), [
    (b"success", True), (b"fail", False), (b"SUCCESS", False), (b"success\n", False),
    (b"", False), (b'{"received": true}', False)])
def test_only_the_seven_characters_success_count_as_delivered(body, delivered):
    assert accepted(200, body) is delivered


def test_the_retry_schedule_is_alipays():
    assert [int(s) for s in SCHEDULE] == [240, 600, 600, 3600, 7200, 21600, 54000]


@pytest.mark.parametrize(("value", "expected"), [
    ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)),
    ("20d", DEFAULT_TIMEOUT), ("0m", DEFAULT_TIMEOUT), ("1c", DEFAULT_TIMEOUT),
    (None, DEFAULT_TIMEOUT)])
def test_timeout_express(value, expected):
    assert express_timeout({"timeout_express": value}) == expected


@pytest.mark.parametrize(("value", "ok"), [
    ("88.80", True), ("1", True), ("0.01", True), ("0", False), ("-1", False),
    ("1.001", False), ("abc", False), (None, False), ("NaN", False)])
def test_amounts_are_yuan_with_two_places(value, ok):
    assert (amount_value(value) is not None) is ok


def test_each_attempt_is_stamped_and_signed_afresh(tmp_path):
    ensure_keys(tmp_path, "http://127.0.0.1:1")
    settings = Settings.from_env({"APP_ENV": "test", "DATABASE_URL": "postgresql://x/y",
                                  "REDIS_URL": "redis://x",
                                  "RUN_DIR": str(tmp_path)})
    headers, body = render(settings, {"notify_id": "n1", "trade_status": "TRADE_SUCCESS",
                                      "subject": "中文"})
    assert headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    fields = dict(parse_qsl(body.decode("ascii")))
    assert fields["sign_type"] == "RSA2" and fields["notify_time"]
    public = load_double_keys(tmp_path).alipay_private_key.public_key()
    assert signing.verify(signing.notification_signing_string(fields), fields["sign"], public)
