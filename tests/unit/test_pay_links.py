"""Which pay_url the cashier page links (domain/pay_links.py): only schemes providers use."""

from __future__ import annotations

import pytest

from domain.pay_links import linkable_pay_url

OURS = "http://127.0.0.1:8000"


@pytest.mark.parametrize("url", [
    "weixin://wxpay/bizpayurl?pr=abc123",           # WeChat Pay Native code_url
    "https://qr.alipay.com/bax03431ljhokirwl38f00a7",  # Alipay precreate qr_code
    "https://pay.example.com/checkout/1",
    "http://127.0.0.1:8000/sandbox/pay/tkt_1",       # the dev stand-ins, on our own origin
])
def test_provider_schemes_are_linked(url):
    assert linkable_pay_url(url, OURS) == url


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)",
    "java\tscript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox", "http://evil.example/pay", "//evil.example/pay", "https:",
    "ftp://files.example/pay", "", None,
])
def test_anything_else_is_not_linked(url):
    assert linkable_pay_url(url, OURS) is None
