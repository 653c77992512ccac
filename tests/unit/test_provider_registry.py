"""PAYMENT_PROVIDERS: which provider serves which method."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.providers.registry import build_registry, parse_provider_routes
from adapters.providers.sandbox import SandboxProvider
from config import ConfigError, Settings
from domain.methods import CATALOG

SETTINGS = Settings(database_url="postgresql+psycopg://u@127.0.0.1/db",
                    redis_url="redis://127.0.0.1:6379/0", broker_url="redis://127.0.0.1:6379/0",
                    public_base_url="http://shop.example", environment="test")


@pytest.mark.parametrize("spec", [None, "", " , "])
def test_unset_means_the_sandbox_for_every_method(spec):
    assert parse_provider_routes(spec) == {code: "sandbox" for code in CATALOG}


def test_named_methods_aliases_and_spaces():
    routes = parse_provider_routes(" wechat = acme , bank=sandbox",
                                   known_providers=frozenset({"sandbox", "acme"}))
    assert routes["wechat"] == "acme" and routes["bank_card"] == "sandbox"
    assert routes["alipay"] == "sandbox"


@pytest.mark.parametrize("spec, message", [
    ("wechat", "not method=provider"),
    ("wechat=", "not method=provider"),
    ("cheque=sandbox", "unknown payment method"),
    ("wechat=acme", "unknown provider"),
    ("wechat=sandbox,wechat=sandbox", "routed twice"),
])
def test_unclear_settings_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_provider_routes(spec)


def test_registry_builds_the_sandbox_adapter_from_settings_once():
    registry = build_registry(SETTINGS, "wechat=sandbox")
    provider = registry.for_method("bank")
    assert isinstance(provider.inner, SandboxProvider)  # counted by InstrumentedProvider
    assert provider.inner.base_url == "http://shop.example/sandbox"
    assert registry.by_name("sandbox") is provider is registry.for_method("wechat")
    with pytest.raises(KeyError):
        registry.by_name("acme")
    with pytest.raises(KeyError):
        registry.for_method("cheque")


def test_a_routed_provider_without_its_settings_stops_the_start_naming_the_variable():
    # Built with the registry (the web's and the worker's start), not at the first payment.
    with pytest.raises(ConfigError, match="WECHATPAY_"):
        build_registry(SETTINGS, "wechat=wechatpay")
    with pytest.raises(ConfigError, match="ALIPAY_"):
        build_registry(SETTINGS, "alipay=alipay")


def test_an_unrouted_provider_needs_nothing_and_takes_no_callbacks():
    registry = build_registry(SETTINGS, "")
    assert registry.for_callbacks("sandbox") is registry.by_name("sandbox")
    assert registry.for_callbacks("wechatpay") is None
    assert registry.for_callbacks("alipay") is None
    assert registry.for_callbacks("acme") is None


PRODUCTION = replace(SETTINGS, environment="production")


def test_outside_dev_the_sandbox_cannot_be_routed_and_unrouted_methods_are_disabled():
    with pytest.raises(ConfigError, match="sandbox.*dev or test"):
        build_registry(PRODUCTION, "wechat=sandbox")
    registry = build_registry(PRODUCTION, "")
    # Nothing silently to the sandbox: only the wallet's balance, which needs no provider.
    assert registry.available_methods == frozenset({"balance"})
    assert registry.for_callbacks("sandbox") is None
    with pytest.raises(KeyError):
        registry.for_method("wechat")
    with pytest.raises(KeyError):
        registry.by_name("sandbox")


def test_unrouted_methods_are_refused_and_listed_disabled():
    from domain.errors import InvalidInput
    from domain.methods import resolve_method
    from services.queries import list_payment_methods

    with pytest.raises(InvalidInput) as refused:
        resolve_method("wechat", available=frozenset({"alipay"}))
    assert refused.value.code == "unsupported_method"
    assert refused.value.extra["supported_methods"] == ["alipay"]
    listed = {m["code"]: m["enabled"] for m in
              list_payment_methods(frozenset({"alipay"}))["items"]}
    assert listed["alipay"] is True and listed["wechat"] is False
