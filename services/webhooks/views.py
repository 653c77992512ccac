"""The API view of a payment, order or refund, as SQL that builds an event's JSON.

An event carries the object as the API showed it at that moment (§9). Building it
in PostgreSQL, from the rows the change just wrote, lets a set-based sweep write
100,000 events without loading a row into Python. The fields and formats are
those of services/queries.py (payment_fields, order_detail) and
services/refunds.py (refund_view): money as "100.00" strings, timestamps in ISO
8601 with offset; tests/integration/test_events_api.py compares the two.

Each *_EVENT_DATA is an SQL expression over its alias's row: the event's whole `data`,
{"object": <the view>}.
"""

from __future__ import annotations

from babel.numbers import list_currencies

from domain.money import DEFAULT_CURRENCY, minor_units

# The ISO currencies whose minor unit is not the cent (JPY 0, BHD 3, ...), from the same
# table as domain.money, so an event writes 1000 JPY as "1000", as the API does.
_ODD_CURRENCIES = {code: minor_units(code) for code in list_currencies()
                   if minor_units(code) != 2}
assert minor_units(DEFAULT_CURRENCY) == 2


def _ts(column: str) -> str:
    # The column as it is: to_jsonb of a row, and jsonb_build_object, write a timestamptz in
    # PostgreSQL's own JSON form, ISO 8601 with the offset (as to_jsonb(column) does, without
    # the scalar it builds first). A third of the cost of to_char() per row (B4).
    return column


def _decimals_sql(currency: str) -> str:
    """The currency's decimals (domain.money.minor_units) as SQL: a CASE over the ISO
    currencies whose minor unit is not the cent, built once from the same table."""
    cases = " ".join(f"WHEN '{code}' THEN {digits}"
                     for code, digits in sorted(_ODD_CURRENCIES.items()))
    # The default currency first: one comparison for nearly every row of a sweep.
    return (f"CASE WHEN {currency} = '{DEFAULT_CURRENCY}' THEN 2 "
            f"ELSE CASE {currency} {cases} ELSE 2 END END")


def _money(column: str, currency: str) -> str:
    """Written with exactly the currency's decimals, as domain.money.in_units does."""
    return f"round({column}, {_decimals_sql(currency)})::text"


def _event_data(fields: dict[str, str]) -> str:
    """{"object": {field: value, ...}} as to_jsonb of a row whose columns are the fields.

    The same JSON as jsonb_build_object('object', jsonb_build_object(field, value, ...)),
    built for ~60% of its cost (4.4 against 7.0 us for a payment, B4): to_jsonb of a row
    writes the nested object in one pass, where jsonb_build_object looks up every
    argument's type and output function again for every row, keys included, and the
    outer call copies the inner object once more.
    """
    columns = ", ".join(f'{value} AS "{name}"' for name, value in fields.items())
    return (f"(SELECT to_jsonb(event_data) FROM (SELECT view_row AS object "
            f"FROM (SELECT {columns}) AS view_row) AS event_data)")


# `p` is a row of payments. Each field is the payments column of the same name (the money
# ones written with the currency's decimals, which `currency` gives).
_PAYMENT_FIELDS = {
    "id": "p.id", "order_id": "p.order_id", "amount": _money("p.amount", "p.currency"),
    "currency": "p.currency", "method": "p.method", "status": "p.status",
    "provider": "p.provider", "transaction_id": "p.transaction_id",
    "out_trade_no": "p.out_trade_no", "pay_url": "p.pay_url", "attempt": "p.attempt",
    "fee": _money("p.fee", "p.currency"),
    "refunded_amount": _money("p.refunded_amount", "p.currency"),
    "created_at": _ts("p.created_at"), "updated_at": _ts("p.updated_at"),
    "expires_at": _ts("p.expires_at"), "paid_at": _ts("p.paid_at"),
    "needs_review": "p.needs_review",
}
PAYMENT_EVENT_DATA = _event_data(_PAYMENT_FIELDS)
# The payments columns the payment's event data reads: what a writer's RETURNING must give.
PAYMENT_VIEW_COLUMNS = tuple(_PAYMENT_FIELDS)

# `o` is a row of orders; its totals and history are read in the same statement.
ORDER_EVENT_DATA = _event_data({
    "id": "o.id", "order_number": "o.order_number", "user_id": "o.user_id",
    "total_amount": _money("o.total_amount", "o.currency"), "currency": "o.currency",
    "status": "o.status", "purpose": "o.purpose",
    "amount_paid": _money(
        "(SELECT coalesce(sum(x.amount) FILTER (WHERE x.status IN ('succeeded', "
        "'partially_refunded', 'refunded')), 0) FROM payments x WHERE x.order_id = o.id)",
        "o.currency"),
    "amount_refunded": _money(
        "(SELECT coalesce(sum(x.refunded_amount), 0) FROM payments x "
        "WHERE x.order_id = o.id)", "o.currency"),
    "created_at": _ts("o.created_at"), "updated_at": _ts("o.updated_at"),
    "history": "(SELECT coalesce(jsonb_agg(jsonb_build_object('from', h.from_status, "
               "'to', h.to_status, 'reason', h.reason, 'actor', h.actor, 'at', "
               + _ts("h.created_at") + ") ORDER BY h.id), '[]'::jsonb) "
               "FROM order_status_history h WHERE h.order_id = o.id)",
})

# `r` is a row of refunds.
REFUND_EVENT_DATA = _event_data({
    "id": "r.id", "payment_id": "r.payment_id", "amount": _money("r.amount", "r.currency"),
    "currency": "r.currency", "status": "r.status", "reason": "r.reason",
    "provider_refund_id": "r.provider_refund_id", "out_refund_no": "r.out_refund_no",
    "needs_review": "r.needs_review", "created_at": _ts("r.created_at"),
    "updated_at": _ts("r.updated_at"), "completed_at": _ts("r.completed_at"),
})

# `ri` is a row of reconciliation_items, `rr` its run.
RECONCILIATION_ITEM_EVENT_DATA = _event_data({
    "id": "ri.id", "run_id": "ri.run_id", "provider": "rr.provider",
    "statement_date": "to_jsonb(rr.statement_date)", "object": "ri.object",
    "kind": "ri.kind", "status": "ri.status", "reference": "ri.reference",
    "payment_id": "ri.payment_id", "refund_id": "ri.refund_id",
    "our_amount": "ri.our_amount::text", "provider_amount": "ri.provider_amount::text",
    "our_currency": "ri.our_currency", "provider_currency": "ri.provider_currency",
    "our_transaction_id": "ri.our_transaction_id",
    "provider_transaction_id": "ri.provider_transaction_id", "detail": "ri.detail",
    "created_at": _ts("ri.created_at"),
})
