"""The order and payment state machines of DESIGN.md §4."""

from __future__ import annotations

import pytest

from domain.errors import InvalidTransition
from domain.statuses import (
    ACTIVE_PAYMENT_STATUSES,
    ORDER_TRANSITIONS,
    PAID_PAYMENT_STATUSES,
    PAYMENT_TRANSITIONS,
    RETRYABLE_PAYMENT_STATUSES,
    OrderStatus,
    PaymentStatus,
    check_order_transition,
    check_payment_transition,
    order_sources,
    payment_sources,
)

O, P = OrderStatus, PaymentStatus  # noqa: E741 - short names keep the matrices readable

ORDER_ALLOWED = {
    (O.PENDING, O.PAID), (O.PENDING, O.CANCELLED), (O.PENDING, O.EXPIRED),
    (O.PAID, O.SHIPPED), (O.PAID, O.REFUNDING), (O.PAID, O.CANCELLED),
    (O.SHIPPED, O.COMPLETED), (O.SHIPPED, O.REFUNDING),
    (O.COMPLETED, O.REFUNDING),
    (O.REFUNDING, O.REFUNDED), (O.REFUNDING, O.PAID),
}


@pytest.mark.parametrize("current", list(O))
@pytest.mark.parametrize("target", list(O))
def test_order_matrix_is_exactly_the_design(current, target):
    if (current, target) in ORDER_ALLOWED:
        assert check_order_transition(current, target) == target
    else:
        with pytest.raises(InvalidTransition) as err:
            check_order_transition(current, target)
        assert err.value.code == "invalid_transition"
        assert err.value.extra == {"current_status": current.value,
                                   "requested_status": target.value}


@pytest.mark.parametrize("terminal", [O.CANCELLED, O.EXPIRED, O.REFUNDED])
def test_terminal_order_statuses_go_nowhere(terminal):
    assert ORDER_TRANSITIONS[terminal] == frozenset()


def test_unknown_order_target_is_an_invalid_transition():
    with pytest.raises(InvalidTransition):
        check_order_transition("pending", "flying")


PAYMENT_ALLOWED = {
    (P.INIT, P.PROCESSING), (P.INIT, P.SUCCEEDED), (P.INIT, P.FAILED),
    (P.INIT, P.CANCELLED), (P.INIT, P.EXPIRED),
    (P.PROCESSING, P.SUCCEEDED), (P.PROCESSING, P.FAILED), (P.PROCESSING, P.CANCELLED),
    (P.PROCESSING, P.EXPIRED),
    (P.FAILED, P.SUCCEEDED), (P.CANCELLED, P.SUCCEEDED), (P.EXPIRED, P.SUCCEEDED),
    (P.SUCCEEDED, P.PARTIALLY_REFUNDED), (P.SUCCEEDED, P.REFUNDED),
    (P.PARTIALLY_REFUNDED, P.PARTIALLY_REFUNDED), (P.PARTIALLY_REFUNDED, P.REFUNDED),
}


@pytest.mark.parametrize("current", list(P))
@pytest.mark.parametrize("target", list(P))
def test_payment_matrix_is_exactly_the_design(current, target):
    if (current, target) in PAYMENT_ALLOWED:
        assert check_payment_transition(current, target) == target
    else:
        with pytest.raises(InvalidTransition):
            check_payment_transition(current, target)


@pytest.mark.parametrize("regression", [P.FAILED, P.EXPIRED, P.CANCELLED, P.INIT,
                                        P.PROCESSING])
def test_a_success_is_never_regressed(regression):
    for paid in PAID_PAYMENT_STATUSES:
        assert regression not in PAYMENT_TRANSITIONS[paid]


def test_status_groups():
    assert ACTIVE_PAYMENT_STATUSES == {P.INIT, P.PROCESSING}
    assert RETRYABLE_PAYMENT_STATUSES == {P.FAILED, P.EXPIRED, P.CANCELLED}
    assert PAID_PAYMENT_STATUSES == {P.SUCCEEDED, P.PARTIALLY_REFUNDED, P.REFUNDED}


def test_sources_are_the_where_clause_of_a_compare_and_set():
    assert order_sources(O.PAID) == {O.PENDING, O.REFUNDING}
    assert payment_sources(P.SUCCEEDED) == {P.INIT, P.PROCESSING, P.FAILED, P.CANCELLED,
                                            P.EXPIRED}
    assert payment_sources(P.PROCESSING) == {P.INIT}
