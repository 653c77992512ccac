"""The sandbox provider's pure parts: test knobs, callback bodies, retry schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.callback_events import parse_callback_body
from domain.errors import InvalidInput
from standins.sandbox.events import backoff_seconds, event_body, new_id
from standins.sandbox.options import TestOptions, apply_test_options


def test_options_change_only_the_fields_sent():
    first = apply_test_options(TestOptions(), {"fail_first": 3, "deliver_twice": True},
                               allow_callback_url=True)
    second = apply_test_options(first, {"out_of_order": True}, allow_callback_url=True)
    assert (second.fail_first, second.deliver_twice, second.out_of_order) == (3, True, True)
    assert TestOptions.from_json(second.to_json()) == second
    assert apply_test_options(second, None, allow_callback_url=True) == second


@pytest.mark.parametrize("changes", [
    [], {"fail_first": -1}, {"fail_first": 21}, {"fail_first": True}, {"delay_seconds": 3601},
    {"deliver_twice": "yes"}, {"callback_url": "ftp://x"}, {"unknown": 1},
])
def test_bad_options_are_refused(changes):
    with pytest.raises(InvalidInput) as info:
        apply_test_options(TestOptions(), changes, allow_callback_url=True)
    assert info.value.code == "invalid_test_options"


def test_callback_url_only_in_dev():
    with pytest.raises(InvalidInput, match="only honoured in dev"):
        apply_test_options(TestOptions(), {"callback_url": "http://x/hook"},
                           allow_callback_url=False)


def test_event_bodies_have_the_callback_shape_our_endpoint_reads():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw = event_body("evt_1", "refund.succeeded", merchant_payment_id=12,
                     amount=Decimal("30.00"), currency="CNY", transaction_id="txn_9",
                     occurred_at=at, refund_id=4)
    assert json.loads(raw) == {"id": "evt_1", "type": "refund.succeeded", "data": {
        "payment_id": 12, "transaction_id": "txn_9", "amount": "30.00", "currency": "CNY",
        "occurred_at": "2026-01-02T03:04:05+00:00", "refund_id": 4}}
    event = parse_callback_body(raw)
    assert (event.refund_id, event.amount, event.occurred_at) == (4, Decimal("30.00"), at)


def test_backoff_doubles_to_a_minute():
    assert [backoff_seconds(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_ids_are_prefixed_and_unguessable():
    ids = {new_id("evt") for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("evt_") and len(i) == 28 for i in ids)
