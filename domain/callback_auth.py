"""Why a provider callback was refused as not authentic. Pure.

Each provider's connector has its own signature scheme (adapters/providers/*); they all
refuse with one of these, so the audit trail, the metrics and the 401 read the same
whichever provider it was. `reason` is logged, audited and counted; the body never is.
"""

from __future__ import annotations

from domain.errors import Unauthenticated


class SignatureRejected(Unauthenticated):
    """The callback is not authentic; `reason` says why (logged and audited, also sent back)."""

    reason = "invalid_signature"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, code="invalid_signature", reason=self.reason)


class MissingSignature(SignatureRejected):
    reason = "missing_signature"


class MalformedSignature(SignatureRejected):
    reason = "malformed_signature"


class SignatureMismatch(SignatureRejected):
    reason = "signature_mismatch"


class TimestampTooOld(SignatureRejected):
    reason = "timestamp_too_old"


class TimestampInFuture(SignatureRejected):
    reason = "timestamp_in_future"


class UnknownSigningKey(SignatureRejected):
    """Signed by a key we were never given (WeChat Pay's Wechatpay-Serial)."""

    reason = "unknown_key"


class SignatureProbe(SignatureRejected):
    """WeChat Pay's WECHATPAY/SIGNTEST probes: a deliberately wrong signature that a
    merchant must refuse, to show it verifies at all."""

    reason = "signature_probe"


class WrongMerchant(SignatureRejected):
    """Authentic for someone, but addressed to another app or merchant (Alipay's app_id)."""

    reason = "wrong_merchant"


def check_timestamp(timestamp: int, *, now: float, tolerance_seconds: int) -> None:
    """|now - timestamp| within the tolerance, in both directions: a far-future timestamp
    would otherwise keep a captured callback replayable for as long as it stays ahead."""
    age = now - timestamp
    if age > tolerance_seconds:
        raise TimestampTooOld(f"The signature timestamp is older than {tolerance_seconds} s")
    if -age > tolerance_seconds:
        raise TimestampInFuture(
            f"The signature timestamp is more than {tolerance_seconds} s in the future")
