"""The committed Alipay test keys (tests/fixtures/alipay) and helpers to sign with them
as the pretend Alipay does."""

from __future__ import annotations

from pathlib import Path

from adapters.providers.alipay.keys import AlipayCredentials, load_private_key, load_public_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alipay"
APP_ID = "2021000000000001"
APP_PRIVATE_KEY_FILE = FIXTURES / "app_private_key.pem"
APP_PUBLIC_KEY_FILE = FIXTURES / "app_public_key.pem"
ALIPAY_PRIVATE_KEY_FILE = FIXTURES / "alipay_private_key.pem"
ALIPAY_PUBLIC_KEY_FILE = FIXTURES / "alipay_public_key.pem"


def credentials(gateway_url: str = "http://127.0.0.1:9/gateway.do") -> AlipayCredentials:
    return AlipayCredentials(APP_ID, load_private_key(str(APP_PRIVATE_KEY_FILE), "T"),
                             load_public_key(str(ALIPAY_PUBLIC_KEY_FILE), "T"), gateway_url)


def alipay_private_key():
    return load_private_key(str(ALIPAY_PRIVATE_KEY_FILE), "T")


def app_public_key():
    return load_public_key(str(APP_PUBLIC_KEY_FILE), "T")
