"""The WeChat Pay double's keys and identities, made once under RUN_DIR/doubles/wechatpay/.

    merchant_private_key.pem   ours: signs our requests (WECHATPAY_MERCHANT_PRIVATE_KEY_FILE)
    merchant_public_key.pem    the double verifies our requests with it
    wechatpay_private_key.pem  the double's: signs its answers and notifications
    wechatpay_public_key.pem   WECHATPAY_PUBLIC_KEY_FILE (its id: WECHATPAY_PUBLIC_KEY_ID)
    platform_private_key.pem   a platform certificate's key (the older certificate mode)
    platform_certs/<SERIAL>.pem  that certificate (WECHATPAY_PLATFORM_CERTS_DIR)
    identity.json              mchid, appid, APIv3 key, merchant serial, public key id

Made in a scratch directory and renamed into place, so two processes starting at once
(make up and a test run) both end up with one complete set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DOUBLE_PATH = "/doubles/wechatpay"
_FILES = ("identity.json", "merchant_private_key.pem", "merchant_public_key.pem",
          "wechatpay_private_key.pem", "wechatpay_public_key.pem", "platform_private_key.pem")


def key_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "doubles" / "wechatpay"


def ensure_keys(run_dir: Path, public_base_url: str) -> dict[str, str]:
    """Our WECHATPAY_* settings for the double at `public_base_url` (keys made once)."""
    folder = key_dir(run_dir)
    if not all((folder / name).exists() for name in _FILES):
        _make(folder)
    identity = json.loads((folder / "identity.json").read_text())
    return {
        "WECHATPAY_MCHID": identity["mchid"],
        "WECHATPAY_APPID": identity["appid"],
        "WECHATPAY_APIV3_KEY": identity["apiv3_key"],
        "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE": str(folder / "merchant_private_key.pem"),
        "WECHATPAY_MERCHANT_SERIAL_NO": identity["merchant_serial_no"],
        "WECHATPAY_PUBLIC_KEY_FILE": str(folder / "wechatpay_public_key.pem"),
        "WECHATPAY_PUBLIC_KEY_ID": identity["public_key_id"],
        "WECHATPAY_PLATFORM_CERTS_DIR": str(folder / "platform_certs"),
        "WECHATPAY_BASE_URL": public_base_url.rstrip("/") + DOUBLE_PATH,
    }


@dataclass(frozen=True)
class DoubleKeys:
    """What the double itself holds: its signing keys and what it knows of the merchant."""

    mchid: str
    appid: str
    apiv3_key: bytes
    merchant_serial_no: str
    merchant_public_key: rsa.RSAPublicKey
    public_key_id: str
    wechatpay_private_key: rsa.RSAPrivateKey
    platform_serial: str
    platform_private_key: rsa.RSAPrivateKey


_loaded: dict[Path, DoubleKeys] = {}


def load_double_keys(run_dir: Path) -> DoubleKeys:
    folder = key_dir(run_dir)
    if folder not in _loaded:
        identity = json.loads((folder / "identity.json").read_text())
        _loaded[folder] = DoubleKeys(
            mchid=identity["mchid"], appid=identity["appid"],
            apiv3_key=identity["apiv3_key"].encode(),
            merchant_serial_no=identity["merchant_serial_no"],
            merchant_public_key=_public(folder / "merchant_public_key.pem"),
            public_key_id=identity["public_key_id"],
            wechatpay_private_key=_private(folder / "wechatpay_private_key.pem"),
            platform_serial=identity["platform_serial"],
            platform_private_key=_private(folder / "platform_private_key.pem"))
    return _loaded[folder]


def _make(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".wechatpay-", dir=folder.parent))
    try:
        merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        wechatpay = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = self_signed_certificate(platform, "Tenpay.com Root CA double")
        serial = format(cert.serial_number, "X")
        _write_private(scratch / "merchant_private_key.pem", merchant)
        _write_public(scratch / "merchant_public_key.pem", merchant.public_key())
        _write_private(scratch / "wechatpay_private_key.pem", wechatpay)
        _write_public(scratch / "wechatpay_public_key.pem", wechatpay.public_key())
        _write_private(scratch / "platform_private_key.pem", platform)
        (scratch / "platform_certs").mkdir()
        (scratch / "platform_certs" / f"{serial}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM))
        digits = "".join(secrets.choice(string.digits) for _ in range(40))
        identity = {
            "mchid": "19" + "".join(secrets.choice(string.digits) for _ in range(8)),
            "appid": "wx" + secrets.token_hex(8),
            # 32 printable characters, as merchants set it in the merchant platform.
            "apiv3_key": "".join(secrets.choice(string.ascii_letters + string.digits)
                                 for _ in range(32)),
            "merchant_serial_no": secrets.token_hex(20).upper(),
            "public_key_id": "PUB_KEY_ID_" + digits,
            "platform_serial": serial,
        }
        (scratch / "identity.json").write_text(json.dumps(identity, indent=2))
        try:
            os.rename(scratch, folder)
        except OSError:
            pass  # another process made the set first: keep theirs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str, *,
                            days: int = 3650) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256()))


def _write_private(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_public(path: Path, key: rsa.RSAPublicKey) -> None:
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo))


def _private(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public(path: Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key
