"""Fixtures of the end-to-end tests against the provider doubles."""

from __future__ import annotations

import pytest

from tests.support.alipay_double import AlipayDouble
from tests.support.payment_flow import PaymentFlow


@pytest.fixture
def alipay_flow(doubles) -> PaymentFlow:
    """Our API on the doubles stack, as an admin (alipay routes to the Alipay double)."""
    return PaymentFlow(doubles.api, doubles.admin_key(), "", doubles.resources)


@pytest.fixture
def alipay(doubles) -> AlipayDouble:
    return AlipayDouble(doubles.api, doubles.run_dir)
