"""Which pay_url the cashier page may turn into a link. Pure.

A pay_url comes from a provider's answer; the page links it only when its scheme is one
a provider is known to use, so a provider answer (or a row) carrying `javascript:` or
`data:` can never run in the customer's browser:
- https: any provider's pay page or QR link (Alipay's https://qr.alipay.com/...);
- weixin: WeChat Pay's Native code_url (weixin://wxpay/bizpayurl?pr=...);
- http: only on our own origin (PUBLIC_BASE_URL), where the dev stand-ins live.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAFE_SCHEMES = frozenset({"https", "weixin"})


def linkable_pay_url(url: str | None, own_origin: str) -> str | None:
    """`url` if the page may link it, else None (the QR code is still drawn)."""
    if not url or any(ord(ch) < 0x21 for ch in url):  # no spaces or control characters
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme in SAFE_SCHEMES and (parts.netloc or scheme == "weixin"):
        return url
    if scheme == "http" and _origin(url) == _origin(own_origin):
        return url
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
