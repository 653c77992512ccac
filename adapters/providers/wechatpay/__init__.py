"""The WeChat Pay API v3 connector: client (calls), callbacks (notifications),
signing (its RSA signatures and AES-GCM resources), credentials (its settings)."""

from adapters.providers.wechatpay.client import WechatPayProvider

__all__ = ["WechatPayProvider"]
