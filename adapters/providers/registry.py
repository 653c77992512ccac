"""Which provider serves which payment method, from the PAYMENT_PROVIDERS setting.

    PAYMENT_PROVIDERS="wechat=sandbox,alipay=sandbox,bank_card=sandbox"

In dev and test every catalog method not named goes to the sandbox, so an empty
setting means "the sandbox for everything". Anywhere else the sandbox does not exist:
routing a method to it stops the start, and a method not routed to a real provider is
disabled (GET /payment-methods lists it with `enabled: false`), never silently sent to
the sandbox. A payment records the provider's name when it
starts, and later calls (status, close, refund) go to that provider by name, so
re-routing a method never strands payments already made elsewhere.

Every routed connector is built when the registry is (at the start of the web and
the worker), so a missing or unreadable key stops the start with a message naming
the variable, not the first payment. A provider nothing is routed to needs nothing,
and its callbacks are refused as an unknown provider's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module

from adapters.providers.base import Provider
from adapters.providers.instrumented import InstrumentedProvider
from adapters.providers.sandbox import SandboxProvider
from config import ConfigError, Settings
from domain.methods import ALIASES, CATALOG
from domain.wallet import BALANCE_METHOD

DEFAULT_PROVIDER = SandboxProvider.name
SETTING = "PAYMENT_PROVIDERS"

ProviderFactory = Callable[[Settings], Provider]



def _connector(module: str, cls: str) -> ProviderFactory:
    """A real provider's connector, imported only when it is built: a deployment that
    routes nothing to it never loads its crypto or reads its settings."""
    def build(settings: Settings) -> Provider:
        factory: ProviderFactory = getattr(import_module(module), cls).from_settings
        return factory(settings)
    return build


PROVIDER_FACTORIES: Mapping[str, ProviderFactory] = {
    SandboxProvider.name: SandboxProvider.from_settings,
    "wechatpay": _connector("adapters.providers.wechatpay", "WechatPayProvider"),
    "alipay": _connector("adapters.providers.alipay", "AlipayProvider"),
}


def parse_provider_routes(spec: str | None,
                          known_providers: frozenset[str] | None = None, *,
                          sandbox_allowed: bool = True) -> dict[str, str]:
    """method -> provider name for every routed catalog method (every one in dev/test,
    the sandbox standing in); ConfigError on anything unclear."""
    providers = known_providers if known_providers is not None else frozenset(
        PROVIDER_FACTORIES)
    routes = {code: DEFAULT_PROVIDER for code in CATALOG} if sandbox_allowed else {}
    named: set[str] = set()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        method, sep, provider = (part.strip() for part in item.partition("="))
        if not sep or not method or not provider:
            raise ConfigError(f"{SETTING}: {item!r} is not method=provider")
        code = ALIASES.get(method, method)
        if code not in CATALOG:
            raise ConfigError(f"{SETTING}: unknown payment method {method!r} "
                              f"(known: {', '.join(sorted(CATALOG))})")
        if provider not in providers:
            raise ConfigError(f"{SETTING}: unknown provider {provider!r} for {method} "
                              f"(known: {', '.join(sorted(providers))})")
        if code in named:
            raise ConfigError(f"{SETTING}: {code} is routed twice")
        if provider == DEFAULT_PROVIDER and not sandbox_allowed:
            raise ConfigError(f"{SETTING}: {method} is routed to the sandbox, which exists "
                              "only with APP_ENV dev or test; route it to a real provider "
                              "or leave it out (it is then disabled)")
        named.add(code)
        routes[code] = provider
    return routes


class ProviderRegistry:
    """Hands out provider connectors: by method for new payments, by name afterwards.
    The routed ones (and the sandbox) are built here; building connects to nothing."""

    def __init__(self, settings: Settings, routes: Mapping[str, str],
                 factories: Mapping[str, ProviderFactory] = PROVIDER_FACTORIES) -> None:
        self._settings = settings
        self._routes = dict(routes)
        self._factories = factories
        self._built: dict[str, Provider] = {}
        standing_in = {DEFAULT_PROVIDER} if settings.is_dev else set()
        for name in sorted({*standing_in, *self._routes.values()}):
            self.by_name(name)

    @property
    def routes(self) -> dict[str, str]:
        return dict(self._routes)

    @property
    def available_methods(self) -> frozenset[str]:
        """The methods this deployment can take: those a provider serves here, and the
        wallet's balance, which no provider ever sees; any other is disabled."""
        return frozenset(self._routes) | {BALANCE_METHOD}

    def for_method(self, method: str) -> Provider:
        code = ALIASES.get(method, method)
        if code not in self._routes:
            raise KeyError(f"no provider is routed for payment method {method!r}")
        return self.by_name(self._routes[code])

    @property
    def names(self) -> list[str]:
        """The providers built here (the routed ones and the sandbox): the only ones whose
        callbacks are taken."""
        return sorted(self._built)

    def for_callbacks(self, name: str) -> Provider | None:
        """The connector whose callbacks arrive at /callbacks/<name>: a built one only,
        so a name in a URL never makes us load a provider we were not configured for."""
        return self._built.get(name)

    def by_name(self, name: str) -> Provider:
        built = self._built.get(name)
        if built is not None:
            return built
        if name == DEFAULT_PROVIDER and not self._settings.is_dev:
            raise KeyError("the sandbox exists only with APP_ENV dev or test")
        factory = self._factories.get(name)
        if factory is None:
            raise KeyError(f"unknown payment provider {name!r}")
        provider = self._built[name] = InstrumentedProvider(factory(self._settings))
        return provider


def build_registry(settings: Settings, spec: str | None = None) -> ProviderRegistry:
    """The registry for `spec` (the PAYMENT_PROVIDERS value; None or "" = all sandbox)."""
    return ProviderRegistry(settings, parse_provider_routes(
        spec, sandbox_allowed=settings.is_dev))
