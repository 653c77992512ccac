"""Loading the Alipay connector's settings once, at start (DESIGN.md §6b).

Every problem names the environment variable to fix. A key's contents never appear
in a message: only the file's path and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from config import AlipaySettings, ConfigError

# Alipay requires RSA2 keys of 2048 bits; smaller ones would sign but not be trusted.
MIN_KEY_BITS = 2048
MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class AlipayCredentials:
    app_id: str
    app_private_key: RSAPrivateKey  # signs our requests
    alipay_public_key: RSAPublicKey  # verifies Alipay's answers and notifications
    gateway_url: str


def load_credentials(settings: AlipaySettings) -> AlipayCredentials:
    app_id = _required(settings.app_id, "ALIPAY_APP_ID")
    if not (app_id.isascii() and app_id.isdigit() and len(app_id) <= 32):
        raise ConfigError("ALIPAY_APP_ID must be the app's id: digits only, at most 32")
    gateway_url = settings.gateway_url
    if not gateway_url.startswith(("https://", "http://")):
        raise ConfigError("ALIPAY_GATEWAY_URL must be an http(s):// URL")
    return AlipayCredentials(
        app_id=app_id,
        app_private_key=load_private_key(
            _required(settings.app_private_key_file, "ALIPAY_APP_PRIVATE_KEY_FILE"),
            "ALIPAY_APP_PRIVATE_KEY_FILE"),
        alipay_public_key=load_public_key(
            _required(settings.alipay_public_key_file, "ALIPAY_PUBLIC_KEY_FILE"),
            "ALIPAY_PUBLIC_KEY_FILE"),
        gateway_url=gateway_url,
    )


def load_private_key(path: str, variable: str) -> RSAPrivateKey:
    """A PEM (PKCS#1 or PKCS#8) or, as Alipay's key tool writes it, the bare base64 body."""
    data = _read(path, variable)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(_bare_base64(data), password=None)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{variable}: {path} is not an unencrypted RSA private key "
                          "(PEM or base64)") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"{variable}: {path} is not an RSA key (RSA2 needs one)")
    _check_size(key.key_size, path, variable)
    return key


def load_public_key(path: str, variable: str) -> RSAPublicKey:
    """A PEM (SubjectPublicKeyInfo or PKCS#1) or the bare base64 body Alipay shows."""
    data = _read(path, variable)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(_bare_base64(data))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{variable}: {path} is not an RSA public key (PEM or base64)"
                          ) from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigError(f"{variable}: {path} is not an RSA key (RSA2 needs one)")
    _check_size(key.key_size, path, variable)
    return key


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise ConfigError(f"{variable} is not set (PAYMENT_PROVIDERS routes a method to "
                          "alipay)")
    return value


def _read(path: str, variable: str) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"{variable}: {path} is too large to be a key")
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None


def _bare_base64(data: bytes) -> bytes:
    return base64.b64decode(b"".join(data.split()), validate=True)


def _check_size(bits: int, path: str, variable: str) -> None:
    if bits < MIN_KEY_BITS:
        raise ConfigError(f"{variable}: {path} holds a {bits}-bit key; RSA2 needs at "
                          f"least {MIN_KEY_BITS}")
