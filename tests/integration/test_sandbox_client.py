"""The provider adapter (adapters/providers/sandbox.py) against the live sandbox over HTTP,
and how it maps failures: no answer or 5xx -> ProviderUnavailable, 4xx -> ProviderRejected."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from adapters.providers.base import (
    PaymentRequest,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from adapters.providers.instrumented import InstrumentedProvider
from adapters.providers.registry import build_registry
from adapters.providers.sandbox import SandboxProvider
from devstack.embedded import free_port
from tests.support.live_server import serve


@pytest.fixture
def provider(api, settings) -> SandboxProvider:
    # settings.public_base_url is the live test server: the adapter's normal configuration.
    return SandboxProvider.from_settings(settings)


def payment(payment_id: int, amount: str, method: str = "wechat") -> PaymentRequest:
    return PaymentRequest(payment_id=payment_id, out_trade_no=f"P{payment_id:010d}",
                          amount=Decimal(amount), currency="CNY", method=method,
                          description="Order test", idempotency_key=f"payment-{payment_id}")


def _calls(call: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("payments_provider_calls_total", {
        "provider": "sandbox", "call": call, "outcome": outcome}) or 0.0


def refund(reference: str, refund_id: int, amount: str) -> RefundRequest:
    return RefundRequest(refund_id=refund_id, out_refund_no=f"R{refund_id:010d}",
                         payment_reference=reference, out_trade_no="P0000000021",
                         amount=Decimal(amount), payment_amount=Decimal("50.00"),
                         currency="CNY")


def test_the_name_it_gives_routes_later_calls_back_to_the_same_provider(provider, settings):
    """Provider.name is stored on the payment; every later call (status query, close,
    refund) is routed by it. What one adapter created, the one found by name knows."""
    made = provider.create_payment(payment(13, "7.00"))
    found = build_registry(settings).by_name(provider.name)
    assert found.query_status(made.reference).amount == Decimal("7.00")
    found.close(made.reference)
    assert provider.query_status(made.reference).status == ProviderPaymentStatus.CLOSED


def test_create_query_close_round_trip(provider, settings):
    made = provider.create_payment(payment(11, "88.80", "alipay"))
    assert made.pay_url == f"{settings.public_base_url}/sandbox/pay/{made.reference}"
    assert made.qr_payload == made.pay_url
    again = provider.create_payment(payment(11, "88.80", "alipay"))
    assert again == made  # a redelivered initiate finds the same provider payment
    status = provider.query_status(made.reference)
    assert (status.status, status.transaction_id, status.amount, status.currency) == (
        ProviderPaymentStatus.PENDING, None, Decimal("88.80"), "CNY")
    provider.close(made.reference)
    provider.close(made.reference)  # closing twice is fine
    assert provider.query_status(made.reference).status == ProviderPaymentStatus.CLOSED
    card = provider.create_payment(payment(12, "5.00", "bank_card"))
    assert card.qr_payload is None


def test_paid_payment_status_refund_and_close_refused(api, provider):
    made = provider.create_payment(payment(21, "50.00", "wechat"))
    assert api.post(f"/sandbox/pay/{made.reference}/approve",
                    allow_redirects=False).status_code == 303
    status = provider.query_status(made.reference)
    assert status.status == ProviderPaymentStatus.SUCCEEDED
    assert status.transaction_id.startswith("txn_") and status.amount == Decimal("50.00")
    refund_ref = provider.refund(refund(made.reference, 3, "20.00"))
    assert refund_ref.reference.startswith("rfd_") and refund_ref.outcome is None
    # Idempotent: a repeat is the same refund, answered as it stands (refunds.check asks so)
    again = provider.refund(refund(made.reference, 3, "20.00"))
    assert again == ProviderRefund(refund_ref.reference, ProviderRefundStatus.SUCCEEDED,
                                   amount=Decimal("20.00"))
    # The status query (refunds.check asks so) names the same refund and its outcome.
    assert provider.query_refund(refund(made.reference, 3, "20.00")) == again
    with pytest.raises(ProviderRejected) as no_refund:
        provider.query_refund(refund(made.reference, 5, "1.00"))
    assert no_refund.value.status == 404 and no_refund.value.code == "unknown_refund"
    # Counted like every other call, as refund_query (payments_provider_calls_total).
    counted = InstrumentedProvider(provider)
    before = {o: _calls("refund_query", o) for o in ("ok", "rejected")}
    assert counted.query_refund(refund(made.reference, 3, "20.00")) == again
    with pytest.raises(ProviderRejected):
        counted.query_refund(refund(made.reference, 5, "1.00"))
    assert {o: _calls("refund_query", o) - before[o] for o in before} == {"ok": 1,
                                                                         "rejected": 1}
    with pytest.raises(ProviderRejected) as too_much:
        provider.refund(refund(made.reference, 4, "30.01"))
    assert too_much.value.status == 400 and too_much.value.code == "refund_exceeds_remaining"
    with pytest.raises(ProviderRejected) as paid:
        provider.close(made.reference)
    assert paid.value.status == 409 and paid.value.code == "already_paid"


def test_4xx_is_rejected(provider, live_url, settings):
    with pytest.raises(ProviderRejected) as unknown:
        provider.query_status("tkt_doesnotexist")
    assert unknown.value.status == 404
    wrong_key = SandboxProvider(live_url + "/sandbox", "not-the-secret")
    with pytest.raises(ProviderRejected) as unauthorized:
        wrong_key.create_payment(payment(31, "1.00", "wechat"))
    assert unauthorized.value.status == 401
    with pytest.raises(ProviderRejected) as bad_method:
        provider.create_payment(payment(32, "1.00", "cheque"))
    assert bad_method.value.status == 400 and bad_method.value.code == "unsupported_method"


def test_connection_refused_is_unavailable(settings):
    nobody = SandboxProvider(f"http://127.0.0.1:{free_port()}/sandbox",
                             settings.sandbox_api_key)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as info:
        nobody.create_payment(payment(41, "1.00", "wechat"))
    assert info.value.status is None and "ConnectionError" in info.value.detail
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def troubled_provider():
    """A server that answers 503 on one path and too slowly on another."""
    app = Flask("troubled_provider")

    @app.route("/sandbox/api/payments/<ticket>", methods=["GET", "POST"])
    def troubled(ticket: str):
        if ticket == "tkt_slow":
            time.sleep(2)
            return {"status": "pending"}
        if ticket == "tkt_garbled":
            return "<html>a proxy page</html>", 200
        return {"detail": "down for maintenance", "code": "unavailable"}, 503

    with serve(app) as url:
        yield url


def test_5xx_timeouts_and_unreadable_answers_are_unavailable(troubled_provider):
    provider = SandboxProvider(troubled_provider + "/sandbox", "key", timeout=(2.0, 0.5))
    with pytest.raises(ProviderUnavailable) as down:
        provider.query_status("tkt_down")
    assert down.value.status == 503 and down.value.code == "unavailable"
    with pytest.raises(ProviderUnavailable) as slow:
        provider.query_status("tkt_slow")
    assert "Timeout" in slow.value.detail
    with pytest.raises(ProviderUnavailable, match="unexpected response"):
        provider.query_status("tkt_garbled")


def test_a_malformed_reference_is_refused_before_any_request(settings):
    provider = SandboxProvider.from_settings(settings)
    with pytest.raises(ProviderRejected):
        provider.query_status("../../api/refunds")
