"""The sandbox's Sandbox-Signature header (DESIGN.md §6). Pure: no I/O.

    Sandbox-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]
    v1 = hex(HMAC-SHA256(secret, "<t>." + raw body bytes))

The signature covers the exact bytes received, so a body re-serialised by anyone
on the way (even only whitespace) no longer verifies. Several v1 values may be
sent while a provider rotates its secret; any one matching is enough. The
timestamp bounds replays: it must be within the tolerance of our clock in both
directions (a far-future timestamp would otherwise make a captured callback
replayable for as long as it stays "in the future").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    check_timestamp,
)

SIGNATURE_HEADER = "Sandbox-Signature"
SCHEME = "v1"
# Far above any honest header (a timestamp and a few signatures): junk is refused early.
MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def build_signature_header(secrets: str | Sequence[str], body: bytes, timestamp: int) -> str:
    """The header a provider sends: one v1 per secret (several while rotating)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    parts = [f"t={timestamp}"] + [f"{SCHEME}={compute_signature(k, timestamp, body)}"
                                  for k in keys]
    return ",".join(parts)


def parse_signature_header(header: str | None) -> ParsedSignature:
    if header is None or not header.strip():
        raise MissingSignature(f"The {SIGNATURE_HEADER} header is missing")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignature(f"The {SIGNATURE_HEADER} header is too long")
    timestamps: list[str] = []
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MalformedSignature(f"The {SIGNATURE_HEADER} header must be "
                                     f"t=<unix seconds>,{SCHEME}=<hex>")
        if key == "t":
            timestamps.append(value.strip())
        elif key == SCHEME:
            candidates.append(value.strip())
        # Other schemes (v0, a future v2) are ignored, as providers add them over time.
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise MalformedSignature(f"The {SIGNATURE_HEADER} header needs exactly one "
                                 "t=<unix seconds>")
    if not candidates:
        raise MalformedSignature(f"The {SIGNATURE_HEADER} header has no {SCHEME} signature")
    if len(candidates) > MAX_SIGNATURES:
        raise MalformedSignature(f"The {SIGNATURE_HEADER} header has too many signatures")
    well_formed = tuple(c.lower() for c in candidates if _HEX_SHA256.fullmatch(c))
    if not well_formed:
        raise MalformedSignature(f"No {SCHEME} signature is 64 hexadecimal characters")
    return ParsedSignature(timestamp=int(timestamps[0]), signatures=well_formed)


def verify_signature(header: str | None, body: bytes, secrets: Sequence[str], *,
                     now: float, tolerance_seconds: int) -> int:
    """The signed timestamp if the header authenticates `body`, else a SignatureRejected."""
    parsed = parse_signature_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, parsed.timestamp, body)
        for candidate in parsed.signatures:
            # Constant time: the comparison must not tell an attacker how many
            # leading characters of a forged signature were right.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureMismatch("The callback signature does not match its body")
    check_timestamp(parsed.timestamp, now=now, tolerance_seconds=tolerance_seconds)
    return parsed.timestamp
