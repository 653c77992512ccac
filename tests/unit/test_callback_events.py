"""The §6 callback body: what is accepted, and a clear 400 for everything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.callback_events import CallbackEventType, parse_callback_body
from domain.errors import InvalidInput


def body(**overrides) -> dict:
    data = {"payment_id": 123, "transaction_id": "txn_1", "amount": "100.00",
            "currency": "CNY", "occurred_at": "2026-01-31T12:00:00Z"}
    data.update(overrides.pop("data", {}))
    doc = {"id": "evt_1", "type": "payment.succeeded", "data": data}
    doc.update(overrides)
    return doc


def parse(doc) -> object:
    return parse_callback_body(json.dumps(doc).encode() if not isinstance(doc, bytes) else doc)


def test_payment_succeeded_is_parsed_into_a_typed_event():
    event = parse(body())
    assert event.event_id == "evt_1"
    assert event.type is CallbackEventType.PAYMENT_SUCCEEDED
    assert event.payment_id == 123
    assert event.transaction_id == "txn_1"
    assert event.amount == Decimal("100.00") and isinstance(event.amount, Decimal)
    assert event.currency == "CNY"
    assert event.refund_id is None
    assert event.occurred_at == datetime(2026, 1, 31, 12, tzinfo=UTC)


def test_amount_as_json_number_keeps_exact_decimal():
    event = parse_callback_body(
        b'{"id":"e","type":"payment.succeeded","data":{"payment_id":1,'
        b'"transaction_id":"t","amount":0.10,"currency":"usd"}}')
    assert event.amount == Decimal("0.10")
    assert event.currency == "USD"
    assert event.occurred_at is None


def test_payment_failed_needs_no_transaction_id():
    event = parse(body(type="payment.failed", data={"transaction_id": None}))
    assert event.type is CallbackEventType.PAYMENT_FAILED
    assert event.transaction_id is None


@pytest.mark.parametrize("event_type", ["refund.succeeded", "refund.failed"])
def test_refund_events_carry_their_refund_id(event_type):
    event = parse(body(type=event_type, data={"refund_id": 7}))
    assert event.type.is_refund
    assert event.refund_id == 7


def test_ids_given_as_digit_strings_are_accepted():
    event = parse(body(type="refund.succeeded", data={"payment_id": "42", "refund_id": "7"}))
    assert (event.payment_id, event.refund_id) == (42, 7)


@pytest.mark.parametrize("raw, code", [
    (b"", "malformed_json"),
    (b"   ", "malformed_json"),
    (b"not json", "malformed_json"),
    (b"[1, 2]", "malformed_json"),
    (b'"a string"', "malformed_json"),
    (b'{"id": "e", "amount": NaN}', "malformed_json"),
    (b"\xff\xfe{}", "malformed_json"),
    (b'{"id": "evt_\\u0000", "type": "payment.succeeded", "data": {}}', "malformed_json"),
    (b"[" * 100000 + b"]" * 100000, "malformed_json"),
])
def test_not_a_json_object(raw, code):
    with pytest.raises(InvalidInput) as info:
        parse(raw)
    assert info.value.code == code


@pytest.mark.parametrize("doc, field", [
    ({"type": "payment.succeeded", "data": {}}, "id"),
    (body(id=""), "id"),
    (body(id=123), "id"),
    (body(id="e" * 129), "id"),
    (body(type="payment.refunded"), "type"),
    (body(type=None), "type"),
    ({**body(), "data": None}, "data"),
    ({**body(), "data": []}, "data"),
    (body(data={"payment_id": None}), "data.payment_id"),
    (body(data={"payment_id": 0}), "data.payment_id"),
    (body(data={"payment_id": -5}), "data.payment_id"),
    (body(data={"payment_id": True}), "data.payment_id"),
    (body(data={"payment_id": "12a"}), "data.payment_id"),
    (body(data={"payment_id": 2**63}), "data.payment_id"),
    (body(data={"payment_id": 1.5}), "data.payment_id"),
    (body(data={"transaction_id": None}), "data.transaction_id"),
    (body(data={"transaction_id": ""}), "data.transaction_id"),
    (body(data={"transaction_id": 5}), "data.transaction_id"),
    (body(data={"currency": None}), "data.currency"),
    (body(type="refund.succeeded"), "data.refund_id"),
    (body(type="refund.failed", data={"refund_id": "x"}), "data.refund_id"),
    (body(data={"occurred_at": "yesterday"}), "data.occurred_at"),
    (body(data={"occurred_at": 12}), "data.occurred_at"),
])
def test_wrong_shape_names_the_field(doc, field):
    with pytest.raises(InvalidInput) as info:
        parse(doc)
    assert info.value.code == "invalid_callback"
    assert info.value.extra["field"] == field


def test_missing_amount():
    doc = body()
    del doc["data"]["amount"]
    with pytest.raises(InvalidInput) as info:
        parse(doc)
    assert info.value.extra["field"] == "data.amount"


@pytest.mark.parametrize("amount", ["0", "-1.00", "1.001", "abc", "Infinity", None, True, [1]])
def test_bad_amounts(amount):
    with pytest.raises(InvalidInput) as info:
        parse(body(data={"amount": amount}))
    assert info.value.code == "invalid_amount"


def test_unknown_currency():
    with pytest.raises(InvalidInput) as info:
        parse(body(data={"currency": "XXX"}))
    assert info.value.code == "invalid_currency"


def test_the_stored_form_reads_back_as_the_same_event():
    from domain.callback_events import CallbackEvent, event_payload, parse_callback_event

    original = CallbackEvent(
        event_id="EV-1", type=CallbackEventType.REFUND_ABNORMAL, payment_id=None,
        amount=Decimal("12.30"), currency="CNY", transaction_id="5030",
        refund_id=None, occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        out_trade_no="P0000000009", out_refund_no="R0000000003")
    assert parse_callback_event(event_payload(original)) == original


def test_an_unresolved_reference_needs_no_payment_id():
    event = parse(body(data={"payment_id": None, "out_trade_no": "P0000000001"}))
    assert event.payment_id is None and event.out_trade_no == "P0000000001"


@pytest.mark.parametrize("transaction_id, storable", [
    ("4200001234", True),
    ("交易-42 \U0001F600", True),  # non-ASCII, an astral character (escaped as a pair)
    ("txn\x00", False),  # jsonb cannot hold NUL
    ("txn\ud800", False),  # nor a lone surrogate
])
def test_the_stored_form_of_an_event_from_any_wire_format(transaction_id, storable):
    """A provider whose format is not JSON (a form, a decrypted resource) can hand over
    any string: the stored form refuses what PostgreSQL's jsonb cannot hold."""
    from domain.callback_events import CallbackEvent, parse_callback_event, storable_payload

    event = CallbackEvent(event_id="EV-2", type=CallbackEventType.PAYMENT_SUCCEEDED,
                          payment_id=7, amount=Decimal("1.00"), currency="CNY",
                          transaction_id=transaction_id)
    if not storable:
        with pytest.raises(InvalidInput) as info:
            storable_payload(event)
        assert info.value.code == "malformed_json"
        return
    assert parse_callback_event(json.loads(storable_payload(event))) == event
