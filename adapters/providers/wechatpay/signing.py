"""WeChat Pay API v3's signatures and encryption, as its published rules give them. Pure.

Requests (we sign, with the merchant API key):

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",
                   timestamp="..",serial_no=".."
    signature = base64(RSA-SHA256 PKCS#1 v1.5 over
                       "METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n")

URL is the path plus "?query" as sent (no scheme or host); body is the exact bytes sent,
empty for a GET. Answers and notifications (WeChat Pay signs, with the key that the
Wechatpay-Serial header names): the same signature over "timestamp\\nnonce\\nbody\\n" from
the Wechatpay-Timestamp / Wechatpay-Nonce headers; a 204's body is empty, so its last
line is "\\n" alone. Notification resources are AEAD_AES_256_GCM with the 32-byte APIv3
key, the resource's own 12-character nonce and its associated_data (both as UTF-8).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-RSA2048"


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes a request's signature covers."""
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def answer_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes an answer's or a notification's signature covers."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(
        private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def new_nonce() -> str:
    # 32 characters, as the published examples; only its uniqueness matters.
    return secrets.token_hex(16).upper()


def authorization(*, mchid: str, serial_no: str, private_key: rsa.RSAPrivateKey,
                  method: str, url: str, body: bytes, timestamp: str, nonce: str) -> str:
    signature = sign(private_key, request_message(method, url, timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def decrypt_resource(apiv3_key: bytes, *, nonce: str, associated_data: str,
                     ciphertext: str) -> bytes | None:
    """The plaintext, or None when it does not authenticate (wrong key, tampered)."""
    try:
        data = base64.b64decode(ciphertext, validate=True)
        return AESGCM(apiv3_key).decrypt(nonce.encode(), data, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class PlatformCertificate:
    """A platform certificate's public key and the window it may sign in."""

    public_key: rsa.RSAPublicKey
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class WechatPayKeys:
    """WeChat Pay's verification keys by the serial its headers name: the public key
    (PUB_KEY_ID_... mode) and/or platform certificates (by certificate serial, in
    hexadecimal). Merchants switching from certificates to the public key receive
    both kinds during the switch, so both are looked up."""

    public_key_id: str | None = None
    public_key: rsa.RSAPublicKey | None = None
    certificates: dict[str, PlatformCertificate] = field(default_factory=dict)

    def key_for(self, serial: str, *, now: float) -> rsa.RSAPublicKey | None:
        if self.public_key is not None and serial == self.public_key_id:
            return self.public_key
        cert = self.certificates.get(normalize_serial(serial))
        if cert is None:
            return None
        moment = datetime.fromtimestamp(now, UTC)
        # An expired (or not yet valid) certificate signs nothing.
        return cert.public_key if cert.not_before <= moment <= cert.not_after else None


def normalize_serial(serial: str) -> str:
    """A certificate serial as upper-case hex without leading zeros (the headers and the
    file names write it in either case)."""
    try:
        return format(int(serial, 16), "X")
    except ValueError:
        return serial
