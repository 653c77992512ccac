"""The Alipay connector: client (calls), gateway (one signed call and its verified
answer), callbacks (notifications), signing (RSA2), keys (settings loaded once)."""

from adapters.providers.alipay.client import AlipayProvider

__all__ = ["AlipayProvider"]
