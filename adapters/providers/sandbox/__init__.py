"""The sandbox connector: client (calls and callbacks), signature (its HMAC scheme)."""

from adapters.providers.sandbox.client import SandboxProvider

__all__ = ["SandboxProvider"]
