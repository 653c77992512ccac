"""out_trade_no / out_refund_no (DESIGN.md §6b): stable, unique, and read back exactly."""

from __future__ import annotations

import re

import pytest

from domain.references import MerchantReferences

BOTH_PROVIDERS_ACCEPT = re.compile(r"[A-Za-z0-9_]{6,32}")


@pytest.mark.parametrize("prefix", ["", "shop1_", "A" * 12])
@pytest.mark.parametrize("number", [1, 42, 10**10 - 1, 10**10, 2**63 - 1])
def test_references_fit_both_providers_and_lead_back_to_the_id(prefix, number):
    refs = MerchantReferences(prefix)
    trade, refund = refs.out_trade_no(number), refs.out_refund_no(number)
    assert BOTH_PROVIDERS_ACCEPT.fullmatch(trade) and BOTH_PROVIDERS_ACCEPT.fullmatch(refund)
    assert refs.payment_id(trade) == number and refs.refund_id(refund) == number
    assert refs.payment_id(refund) is None and refs.refund_id(trade) is None


def test_the_format_is_fixed():
    assert MerchantReferences().out_trade_no(42) == "P0000000042"
    assert MerchantReferences("s1_").out_refund_no(7) == "s1_R0000000007"


@pytest.mark.parametrize("other", [
    "P42", "P00000000042", "X0000000042", "other_P0000000042", "P000000004a", "P0000000000",
    "P" + "9" * 19, "", None, 42, "P٠٠٠٠٠٠٠٠٤٢",
])
def test_anything_we_did_not_issue_reads_as_none(other):
    assert MerchantReferences().payment_id(other) is None


def test_a_deployment_never_claims_another_prefix_s_references():
    ours, theirs = MerchantReferences("shopA"), MerchantReferences("shopB")
    assert ours.payment_id(theirs.out_trade_no(5)) is None


@pytest.mark.parametrize("prefix", ["has-dash", "x" * 13, "空"])
def test_a_prefix_both_providers_would_refuse_is_refused(prefix):
    with pytest.raises(ValueError):
        MerchantReferences(prefix)
