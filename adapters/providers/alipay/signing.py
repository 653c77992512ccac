"""Alipay's RSA2 signatures (SHA256withRSA, PKCS#1 v1.5, base64). Pure: no I/O.

Three things are signed, each over a different text:
- a request: the sorted `k=v&k=v` of every non-empty parameter but `sign`, values as
  they are (not URL-encoded: the encoding is only for the wire);
- a notification: the same over its form fields without `sign` and `sign_type`
  (Alipay's own SDKs leave sign_type out of the notification's check, unlike a request);
- an answer: the exact text of the `<method>_response` object as it appears in the raw
  body. It is never re-serialised: a JSON library's spacing, key order or escaping
  would change the bytes Alipay signed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

SIGN_TYPE = "RSA2"
# Longer than any RSA-4096 signature in base64 (684 characters): junk is refused early.
MAX_SIGNATURE_LENGTH = 1024


def signing_string(params: Mapping[str, str], *, exclude: Iterable[str] = ("sign",)) -> str:
    """The text a request or a notification is signed over: sorted by key (byte order,
    as Alipay sorts), empty values left out, joined with & and =."""
    skipped = frozenset(exclude)
    return "&".join(f"{key}={params[key]}" for key in sorted(params)
                    if key not in skipped and params[key] not in ("", None))


def notification_signing_string(params: Mapping[str, str]) -> str:
    return signing_string(params, exclude=("sign", "sign_type"))


def sign(message: str, key: RSAPrivateKey) -> str:
    signature = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(message: str, signature: str, key: RSAPublicKey) -> bool:
    """True when `signature` (base64) is the key's RSA2 signature of `message`."""
    if not signature or len(signature) > MAX_SIGNATURE_LENGTH:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def response_key(method: str) -> str:
    """alipay.trade.query -> alipay_trade_query_response"""
    return method.replace(".", "_") + "_response"


def signed_response_text(raw: str, key: str) -> str | None:
    """The exact text of the top-level `key` object in an answer, or None if absent.

    The outer object is walked member by member with a JSON decoder, noting where each
    value starts and ends in the raw text; the slice for `key` is what Alipay signed.
    A decoder, unlike counting braces, is not fooled by a brace inside a string value
    (a sub_msg may quote anything), nor by the same word nested deeper.
    """
    decoder = json.JSONDecoder()
    index = _skip_space(raw, 0)
    if not raw.startswith("{", index):
        return None
    index = _skip_space(raw, index + 1)
    try:
        while index < len(raw) and raw[index] != "}":
            name, index = decoder.raw_decode(raw, index)
            index = _skip_space(raw, index)
            if not isinstance(name, str) or not raw.startswith(":", index):
                return None
            start = _skip_space(raw, index + 1)
            value, end = decoder.raw_decode(raw, start)
            if name == key:
                return raw[start:end] if isinstance(value, dict) else None
            index = _skip_space(raw, end)
            if raw.startswith(",", index):
                index = _skip_space(raw, index + 1)
    except ValueError:
        return None
    return None


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index
