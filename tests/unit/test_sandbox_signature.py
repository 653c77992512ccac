"""The Sandbox-Signature header: what authenticates a callback and why anything else fails."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from adapters.providers.sandbox.signature import (
    build_signature_header,
    compute_signature,
    parse_signature_header,
    verify_signature,
)
from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    SignatureRejected,
    TimestampInFuture,
    TimestampTooOld,
)

SECRET = "whsec_test"
BODY = b'{"id":"evt_1","type":"payment.succeeded"}'
NOW = 1_800_000_000


def verify(header, body=BODY, secrets=(SECRET,), now=NOW, tolerance=300):
    return verify_signature(header, body, list(secrets), now=now, tolerance_seconds=tolerance)


def test_signature_is_hmac_sha256_of_timestamp_dot_raw_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == expected
    assert build_signature_header(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_valid_header_returns_its_timestamp():
    assert verify(build_signature_header(SECRET, BODY, NOW)) == NOW


def test_any_one_of_several_v1_values_may_match_secret_rotation():
    header = build_signature_header(["old-secret", SECRET], BODY, NOW)
    assert header.count("v1=") == 2
    assert verify(header) == NOW
    # and the other way round: our side knows two secrets, the provider signs with one
    assert verify(build_signature_header("old-secret", BODY, NOW),
                  secrets=(SECRET, "old-secret")) == NOW


def test_spaces_uppercase_hex_and_unknown_schemes_are_tolerated():
    sig = compute_signature(SECRET, NOW, BODY).upper()
    assert verify(f" t={NOW} , v0=abc , v1={sig} ") == NOW


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header):
    with pytest.raises(MissingSignature) as info:
        verify(header)
    assert info.value.reason == "missing_signature"


@pytest.mark.parametrize("header", [
    "garbage",
    "t=abc,v1=" + "a" * 64,
    f"v1={'a' * 64}",                                   # no timestamp
    f"t={NOW},t={NOW},v1={'a' * 64}",                   # two timestamps
    f"t={NOW}",                                         # no signature
    f"t={NOW},v1=not-hex-at-all",                       # bad hex
    f"t={NOW},v1={'g' * 64}",                           # hex-looking but not hex
    f"t={NOW},v1={'a' * 63}",                           # wrong length
    f"t=-{NOW},v1={'a' * 64}",
    f"t={NOW},v1={'a' * 64}," + ",".join(["v1=" + "b" * 64] * 8),  # too many
    "t=1," + "x" * 5000,
])
def test_malformed_headers(header):
    with pytest.raises(MalformedSignature) as info:
        verify(header)
    assert info.value.reason == "malformed_signature"


def test_wrong_secret_is_a_mismatch():
    with pytest.raises(SignatureMismatch) as info:
        verify(build_signature_header("someone-else", BODY, NOW))
    assert info.value.reason == "signature_mismatch"


def test_body_changed_after_signing_is_a_mismatch():
    header = build_signature_header(SECRET, BODY, NOW)
    with pytest.raises(SignatureMismatch):
        verify(header, body=BODY.replace(b"succeeded", b"failed"))


def test_reserialised_json_is_a_mismatch():
    header = build_signature_header(SECRET, BODY, NOW)
    with pytest.raises(SignatureMismatch):
        verify(header, body=BODY.replace(b'":"', b'": "'))


def test_signature_for_another_timestamp_is_a_mismatch():
    sig = compute_signature(SECRET, NOW - 1, BODY)
    with pytest.raises(SignatureMismatch):
        verify(f"t={NOW},v1={sig}")


def test_well_formed_hex_that_is_not_the_signature_is_a_mismatch():
    with pytest.raises(SignatureMismatch):
        verify(f"t={NOW},v1={'0' * 64}")


def test_tolerance_applies_in_both_directions():
    for skew in (-300, -1, 0, 1, 300):
        assert verify(build_signature_header(SECRET, BODY, NOW + skew)) == NOW + skew
    with pytest.raises(TimestampTooOld) as old:
        verify(build_signature_header(SECRET, BODY, NOW - 301))
    assert old.value.reason == "timestamp_too_old"
    with pytest.raises(TimestampInFuture) as future:
        verify(build_signature_header(SECRET, BODY, NOW + 301))
    assert future.value.reason == "timestamp_in_future"


def test_every_failure_is_a_401_domain_error_with_its_reason():
    with pytest.raises(SignatureRejected) as info:
        verify("garbage")
    assert info.value.kind == "unauthorized"
    assert info.value.code == "invalid_signature"
    assert info.value.extra == {"reason": "malformed_signature"}


def test_parse_keeps_only_well_formed_candidates():
    parsed = parse_signature_header(f"t={NOW},v1=zz,v1={'A' * 64}")
    assert parsed.timestamp == NOW
    assert parsed.signatures == ("a" * 64,)
