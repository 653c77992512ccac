"""Shared pieces of the WeChat Pay unit tests: the fixed test keys, and notifications
built and signed the way the published rules say (independently of the connector)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS = Path(__file__).parent / "wechatpay_keys"
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
APIV3_KEY = b"0123456789abcdefABCDEF0123456789"
PUBLIC_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
MERCHANT_SERIAL = "444F4864EA9B34415A5B0A2A4E9E1A5C1E8F2B77"
NOW = 1_800_000_000


def private_key(name: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS / f"{name}_private_key.pem").read_bytes(),
                                             password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def seal(resource: dict[str, Any], *, key: bytes = APIV3_KEY, nonce: str = "fdasflkjo23f",
         associated_data: str = "transaction") -> dict[str, str]:
    sealed = AESGCM(key).encrypt(nonce.encode(), json.dumps(resource).encode(),
                                 associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(sealed).decode(),
            "nonce": nonce, "associated_data": associated_data,
            "original_type": associated_data}


def transaction(**changes: Any) -> dict[str, Any]:
    resource = {"appid": APPID, "mchid": MCHID, "out_trade_no": "P0000000042",
                "transaction_id": "4200000000202601010000000042", "trade_type": "NATIVE",
                "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                "success_time": "2027-01-15T10:00:00+08:00",
                "amount": {"total": 8880, "payer_total": 8880, "currency": "CNY",
                           "payer_currency": "CNY"}}
    resource.update(changes)
    return resource


def notification(resource: dict[str, Any], *, event_type: str = "TRANSACTION.SUCCESS",
                 event_id: str = "EV-2018022511223320873", **seal_args: Any) -> bytes:
    return json.dumps({"id": event_id, "create_time": "2027-01-15T10:00:01+08:00",
                       "resource_type": "encrypt-resource", "event_type": event_type,
                       "summary": "支付成功", "resource": seal(resource, **seal_args)}
                      ).encode()


def signed_headers(body: bytes, *, key: rsa.RSAPrivateKey | None = None,
                   serial: str = PUBLIC_KEY_ID, timestamp: int = NOW,
                   nonce: str = "d824f2e086d3c1df967785d13fcd22ef") -> dict[str, str]:
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = (key or private_key("wechatpay")).sign(message, padding.PKCS1v15(),
                                                       hashes.SHA256())
    return {"Wechatpay-Timestamp": str(timestamp), "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": serial, "Wechatpay-Signature": base64.b64encode(
                signature).decode(), "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}
