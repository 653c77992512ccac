"""The double's side of WeChat Pay's wire rules: it checks the merchant's Authorization,
signs its own answers and notifications, and seals notification resources.

Written apart from our connector (adapters/providers/wechatpay) on purpose: the two meet
only on the wire, and the SDK oracle (wechatpayv3) checks each against the published
rules, so one misreading cannot hide in code they share.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from standins.wechatpay.keys import DoubleKeys

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
# The real service refuses a request signed more than five minutes off its clock.
REQUEST_CLOCK_SKEW_SECONDS = 300
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


class SignError(Exception):
    """WeChat Pay's 401 SIGN_ERROR: the request's signature does not check out."""


@dataclass(frozen=True)
class AuthorizedRequest:
    mchid: str
    serial_no: str


def check_authorization(keys: DoubleKeys, header: str | None, *, method: str, url: str,
                        body: bytes, now: float | None = None) -> AuthorizedRequest:
    """The request's signer, if the Authorization header is the merchant's and covers
    exactly this method, URL (path and query) and body."""
    if not header or not header.startswith(AUTH_SCHEME + " "):
        raise SignError(f"Authorization must use the {AUTH_SCHEME} scheme")
    params: dict[str, str] = {}
    for item in header[len(AUTH_SCHEME) + 1:].split(","):
        match = _AUTH_PARAM.fullmatch(item)
        if match is None:
            raise SignError("Authorization parameters must be name=\"value\"")
        params[match.group(1)] = match.group(2)
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - set(params)
    if missing:
        raise SignError(f"Authorization lacks {', '.join(sorted(missing))}")
    if params["mchid"] != keys.mchid:
        raise SignError("mchid is not a merchant of this service")
    if params["serial_no"].upper() != keys.merchant_serial_no.upper():
        raise SignError("serial_no names no API certificate of this merchant")
    if not params["timestamp"].isdigit() or abs(
            (time.time() if now is None else now) - int(params["timestamp"])
    ) > REQUEST_CLOCK_SKEW_SECONDS:
        raise SignError("timestamp is too far from the current time")
    signed = "\n".join([method, url, params["timestamp"], params["nonce_str"], ""]).encode()
    try:
        keys.merchant_public_key.verify(base64.b64decode(params["signature"]),
                                        signed + body + b"\n",
                                        padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise SignError("the signature does not verify") from None
    return AuthorizedRequest(mchid=params["mchid"], serial_no=params["serial_no"])


def signed_headers(keys: DoubleKeys, body: bytes, *, signer: str = "public_key",
                   timestamp: int | None = None) -> dict[str, str]:
    """Wechatpay-* headers for an answer or notification body, signed now. `signer`:
    "public_key" (PUB_KEY_ID_... mode) or "certificate" (the platform certificate)."""
    if signer == "certificate":
        key, serial = keys.platform_private_key, keys.platform_serial
    else:
        key, serial = keys.wechatpay_private_key, keys.public_key_id
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": serial, "Wechatpay-Signature-Type": AUTH_SCHEME,
            "Wechatpay-Signature": rsa_sign(key, f"{ts}\n{nonce}\n".encode() + body + b"\n")}


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def seal_resource(keys: DoubleKeys, plaintext: dict[str, Any], *, original_type: str,
                  associated_data: str) -> dict[str, str]:
    """An encrypt-resource object: AES-256-GCM with the APIv3 key and a fresh 12-character
    nonce (the ciphertext carries the 16-byte tag at its end, base64 as a whole)."""
    nonce = secrets.token_urlsafe(9)[:12]
    data = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode()
    sealed = AESGCM(keys.apiv3_key).encrypt(nonce.encode(), data, associated_data.encode())
    return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(sealed).decode(),
            "associated_data": associated_data, "nonce": nonce}
