"""The request fingerprint and key rules behind Idempotency-Key (services/idempotency.py)."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from services.idempotency import KEY_MAX_LENGTH, request_fingerprint, validate_key

BODY = b'{"total_amount": "10.00"}'


def test_same_request_same_fingerprint():
    assert (request_fingerprint("POST", "/api/v1/orders", BODY)
            == request_fingerprint("post", "/api/v1/orders", BODY))
    assert len(request_fingerprint("POST", "/api/v1/orders", BODY)) == 64


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/api/v1/orders", BODY),
    ("POST", "/api/v1/payments", BODY),
    ("POST", "/api/v1/orders", b'{"total_amount": "10.01"}'),
    ("POST", "/api/v1/orders", BODY + b" "),  # the raw bytes count, not the parsed JSON
])
def test_any_difference_changes_the_fingerprint(method, path, body):
    assert request_fingerprint(method, path, body) != request_fingerprint(
        "POST", "/api/v1/orders", BODY)


def test_where_the_path_ends_and_the_body_begins_matters():
    assert request_fingerprint("POST", "/a", b"bc") != request_fingerprint("POST", "/ab", b"c")


@pytest.mark.parametrize("key", ["k", "k" * KEY_MAX_LENGTH, "550e8400-e29b-41d4-a716"])
def test_keys_of_1_to_255_characters_are_accepted(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * (KEY_MAX_LENGTH + 1)])
def test_other_lengths_are_400(key):
    with pytest.raises(InvalidInput) as caught:
        validate_key(key)
    assert caught.value.code == "invalid_idempotency_key"
