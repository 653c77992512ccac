"""The WeChat Pay settings of §6b, loaded and checked once at start.

Every failure is a ConfigError naming the environment variable to fix. Nothing here
logs or repeats a key or the APIv3 secret: messages say what is wrong, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.providers.wechatpay.signing import (
    PlatformCertificate,
    WechatPayKeys,
    normalize_serial,
)
from config import ConfigError, WechatPaySettings

APIV3_KEY_BYTES = 32  # AES-256


@dataclass(frozen=True)
class WechatPayCredentials:
    mchid: str
    appid: str
    apiv3_key: bytes
    merchant_serial_no: str
    merchant_private_key: rsa.RSAPrivateKey
    wechatpay_keys: WechatPayKeys
    base_url: str


def load_credentials(settings: WechatPaySettings) -> WechatPayCredentials:
    mchid = _required(settings.mchid, "WECHATPAY_MCHID")
    appid = _required(settings.appid, "WECHATPAY_APPID")
    apiv3_key = _required(settings.apiv3_key, "WECHATPAY_APIV3_KEY").encode()
    if len(apiv3_key) != APIV3_KEY_BYTES:
        raise ConfigError(f"WECHATPAY_APIV3_KEY must be {APIV3_KEY_BYTES} bytes, "
                          f"got {len(apiv3_key)}")
    serial_no = _required(settings.merchant_serial_no, "WECHATPAY_MERCHANT_SERIAL_NO")
    private_key = _private_key(_required(settings.merchant_private_key_file,
                                         "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"))
    keys = _wechatpay_keys(settings)
    return WechatPayCredentials(mchid=mchid, appid=appid, apiv3_key=apiv3_key,
                                merchant_serial_no=serial_no,
                                merchant_private_key=private_key, wechatpay_keys=keys,
                                base_url=settings.base_url.rstrip("/"))


def _wechatpay_keys(settings: WechatPaySettings) -> WechatPayKeys:
    if (settings.public_key_file is None) != (settings.public_key_id is None):
        missing = ("WECHATPAY_PUBLIC_KEY_ID" if settings.public_key_id is None
                   else "WECHATPAY_PUBLIC_KEY_FILE")
        raise ConfigError(f"{missing} is not set (WECHATPAY_PUBLIC_KEY_FILE and "
                          "WECHATPAY_PUBLIC_KEY_ID go together)")
    public_key = (_public_key(settings.public_key_file, "WECHATPAY_PUBLIC_KEY_FILE")
                  if settings.public_key_file else None)
    if settings.public_key_id is not None and not settings.public_key_id.startswith(
            "PUB_KEY_ID_"):
        raise ConfigError("WECHATPAY_PUBLIC_KEY_ID must look like PUB_KEY_ID_...")
    certificates = (_certificates(settings.platform_certs_dir)
                    if settings.platform_certs_dir else {})
    if public_key is None and not certificates:
        raise ConfigError("WECHATPAY_PUBLIC_KEY_FILE (with WECHATPAY_PUBLIC_KEY_ID) or "
                          "WECHATPAY_PLATFORM_CERTS_DIR with at least one certificate is "
                          "needed to verify WeChat Pay")
    return WechatPayKeys(public_key_id=settings.public_key_id, public_key=public_key,
                         certificates=certificates)


def _required(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise ConfigError(f"{name} is not set (needed for the wechatpay provider)")
    return value.strip()


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _private_key(path: str) -> rsa.RSAPrivateKey:
    name = "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"
    try:
        key = serialization.load_pem_private_key(_read(path, name), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ConfigError(f"{name}: {path} must hold an RSA key of 2048 bits or more")
    return key


def _public_key(path: str, name: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path, name))
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: {path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{name}: {path} must hold an RSA public key")
    return key


def _certificates(directory: str) -> dict[str, PlatformCertificate]:
    """Every *.pem in the directory, by the serial inside it (the file names are only a
    convenience: the certificate's own serial is what Wechatpay-Serial names)."""
    name = "WECHATPAY_PLATFORM_CERTS_DIR"
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"{name}: {directory} is not a directory")
    found: dict[str, PlatformCertificate] = {}
    for path in sorted(folder.glob("*.pem")):
        try:
            cert = x509.load_pem_x509_certificate(_read(str(path), name))
        except ValueError:
            raise ConfigError(f"{name}: {path.name} is not a PEM X.509 certificate") from None
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(f"{name}: {path.name} does not hold an RSA key")
        serial = normalize_serial(format(cert.serial_number, "X"))
        found[serial] = PlatformCertificate(key, cert.not_valid_before_utc,
                                            cert.not_valid_after_utc)
    return found
