"""WeChat Pay settings are checked once at start; each failure names its variable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from adapters.providers.wechatpay import WechatPayProvider
from adapters.providers.wechatpay.credentials import load_credentials
from config import ConfigError, Settings, WechatPaySettings
from standins.wechatpay.keys import ensure_keys


@pytest.fixture(scope="module")
def double_env(tmp_path_factory) -> dict[str, str]:
    return ensure_keys(tmp_path_factory.mktemp("run"), "http://127.0.0.1:9")


def settings_from(env: dict[str, str]) -> WechatPaySettings:
    return WechatPaySettings.from_env(env)


def test_the_doubles_keys_load_in_both_modes(double_env):
    creds = load_credentials(settings_from(double_env))
    keys = creds.wechatpay_keys
    assert keys.public_key_id == double_env["WECHATPAY_PUBLIC_KEY_ID"]
    assert keys.public_key_id.startswith("PUB_KEY_ID_")
    assert len(keys.certificates) == 1
    serial = next(iter(keys.certificates))
    assert (Path(double_env["WECHATPAY_PLATFORM_CERTS_DIR"]) / f"{serial}.pem").exists()
    assert creds.base_url == "http://127.0.0.1:9/doubles/wechatpay"
    assert len(creds.apiv3_key) == 32


def test_ensure_keys_is_made_once_and_reused(tmp_path):
    first = ensure_keys(tmp_path, "http://a")
    assert ensure_keys(tmp_path, "http://a") == first


def test_from_settings_builds_the_connector(double_env):
    settings = replace(Settings(database_url="postgresql://x", redis_url="redis://x",
                                broker_url="redis://x",
                                public_base_url="http://shop"),
                       wechatpay=settings_from(double_env))
    wx = WechatPayProvider.from_settings(settings)
    assert wx.notify_url == "http://shop/callbacks/wechatpay"


@pytest.mark.parametrize("name", [
    "WECHATPAY_MCHID", "WECHATPAY_APPID", "WECHATPAY_APIV3_KEY",
    "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE", "WECHATPAY_MERCHANT_SERIAL_NO",
])
def test_a_missing_setting_is_named(double_env, name):
    env = {k: v for k, v in double_env.items() if k != name}
    with pytest.raises(ConfigError, match=name):
        load_credentials(settings_from(env))


def test_public_key_file_and_id_go_together(double_env):
    env = {k: v for k, v in double_env.items() if k != "WECHATPAY_PUBLIC_KEY_ID"}
    with pytest.raises(ConfigError, match="WECHATPAY_PUBLIC_KEY_ID"):
        load_credentials(settings_from(env))


def test_some_way_to_verify_wechat_pay_is_needed(double_env):
    env = {k: v for k, v in double_env.items() if k not in (
        "WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_PUBLIC_KEY_FILE", "WECHATPAY_PLATFORM_CERTS_DIR")}
    with pytest.raises(ConfigError, match="WECHATPAY_PUBLIC_KEY_FILE"):
        load_credentials(settings_from(env))
    # Certificate mode alone is enough.
    env["WECHATPAY_PLATFORM_CERTS_DIR"] = double_env["WECHATPAY_PLATFORM_CERTS_DIR"]
    assert load_credentials(settings_from(env)).wechatpay_keys.public_key is None


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("WECHATPAY_APIV3_KEY", "too-short", "32 bytes"),
    ("WECHATPAY_MERCHANT_PRIVATE_KEY_FILE", "/nonexistent/key.pem", "cannot read"),
    ("WECHATPAY_PUBLIC_KEY_FILE", "/nonexistent/pub.pem", "cannot read"),
    ("WECHATPAY_PUBLIC_KEY_ID", "12345", "PUB_KEY_ID_"),
    ("WECHATPAY_PLATFORM_CERTS_DIR", "/nonexistent/certs", "not a directory"),
])
def test_an_invalid_setting_is_named_without_its_value(double_env, name, value, problem):
    env = {**double_env, name: value}
    with pytest.raises(ConfigError, match=name) as caught:
        load_credentials(settings_from(env))
    assert problem in str(caught.value)


def test_a_file_that_is_not_a_key_is_named(double_env, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    for name in ("WECHATPAY_MERCHANT_PRIVATE_KEY_FILE", "WECHATPAY_PUBLIC_KEY_FILE"):
        with pytest.raises(ConfigError, match=name) as caught:
            load_credentials(settings_from({**double_env, name: str(junk)}))
        assert "nope" not in str(caught.value)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ABC.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="WECHATPAY_PLATFORM_CERTS_DIR"):
        load_credentials(settings_from({**double_env,
                                        "WECHATPAY_PLATFORM_CERTS_DIR": str(certs)}))


def test_the_apiv3_key_never_appears_in_an_error(double_env):
    secret = double_env["WECHATPAY_APIV3_KEY"]
    with pytest.raises(ConfigError) as caught:
        load_credentials(settings_from({**double_env, "WECHATPAY_APIV3_KEY": secret + "x"}))
    assert secret not in str(caught.value)
