"""The Alipay double's keys: made once, reused, and the settings they give our side."""

from __future__ import annotations

from adapters.providers.alipay import AlipayProvider, signing
from config import Settings
from standins.alipay.crypto import rsa2_sign
from standins.alipay.keys import ensure_keys, key_dir, load_double_keys


def test_keys_are_made_once_and_point_our_connector_at_the_double(tmp_path):
    env = ensure_keys(tmp_path, "http://127.0.0.1:8123/")
    first = {name: path.read_bytes() for name, path in
             ((p.name, p) for p in key_dir(tmp_path).iterdir() if not p.name.startswith("."))}
    assert ensure_keys(tmp_path, "http://127.0.0.1:8123") == env
    assert {p.name: p.read_bytes() for p in key_dir(tmp_path).iterdir()
            if not p.name.startswith(".")} == first
    assert env["ALIPAY_GATEWAY_URL"] == "http://127.0.0.1:8123/doubles/alipay/gateway.do"
    assert set(env) == {"ALIPAY_APP_ID", "ALIPAY_APP_PRIVATE_KEY_FILE",
                        "ALIPAY_PUBLIC_KEY_FILE", "ALIPAY_GATEWAY_URL"}
    assert (key_dir(tmp_path) / "app_private_key.pem").stat().st_mode & 0o077 == 0

    settings = Settings.from_env({"APP_ENV": "test", "DATABASE_URL": "postgresql://x/y",
                                  "REDIS_URL": "redis://x",
                                  **env})
    ours = AlipayProvider.from_settings(settings).credentials
    theirs = load_double_keys(tmp_path)
    assert ours.app_id == theirs.app_id and len(ours.app_id) == 16
    # What the double signs, we verify; what we sign, the double verifies.
    assert signing.verify("a=1", rsa2_sign("a=1", theirs.alipay_private_key),
                          ours.alipay_public_key)
    assert signing.verify("b=2", signing.sign("b=2", ours.app_private_key),
                          theirs.app_public_key)
