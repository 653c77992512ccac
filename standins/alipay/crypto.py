"""The pretend Alipay's side of RSA2: verify a merchant's request, sign its answers and
notifications. Written apart from our connector's signing on purpose: the two meet
only on the wire, and python-alipay-sdk checks each of them, so one misreading of the
protocol cannot hide in code they share.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey


def content_to_sign(params: Mapping[str, str], *, skip: tuple[str, ...]) -> str:
    """Alipay's canonical text: keys in ascending order, empty values dropped."""
    items = sorted((k, v) for k, v in params.items() if k not in skip and v)
    return "&".join(f"{k}={v}" for k, v in items)


def rsa2_sign(text: str, key: RSAPrivateKey) -> str:
    raw = key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def request_is_signed(params: Mapping[str, str], key: RSAPublicKey) -> bool:
    """A merchant request: everything but `sign` is covered, sign_type included."""
    try:
        raw = base64.b64decode(params.get("sign", ""), validate=True)
        key.verify(raw, content_to_sign(params, skip=("sign",)).encode("utf-8"),
                   padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def signed_answer(method: str, content: dict[str, Any], key: RSAPrivateKey | None) -> str:
    """The answer in Alipay's layout, the response object first and `sign` over its
    exact text. key=None: unsigned, as Alipay answers an app it does not know."""
    name = method.replace(".", "_") + "_response"
    # Alipay's own spacing: compact, non-ASCII as is.
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    if key is None:
        return f'{{"{name}":{text}}}'
    return f'{{"{name}":{text},"sign":"{rsa2_sign(text, key)}"}}'


def signed_notification(fields: Mapping[str, str], key: RSAPrivateKey) -> dict[str, str]:
    """A notification's fields with sign_type and sign; sign leaves both out."""
    signed = {**fields, "sign_type": "RSA2"}
    signed["sign"] = rsa2_sign(content_to_sign(signed, skip=("sign", "sign_type")), key)
    return signed
