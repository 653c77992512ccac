"""Flask app factory. Nothing connects until a request needs it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from adapters.metrics import initialise_series
from adapters.resources import Resources
from config import Settings
from standins.web import mount_standins
from web.auth import install_auth
from web.errors import register_error_handlers
from web.idempotency import install_idempotency
from web.json_body import install_body_limit
from web.rate_limits import install_rate_limits
from web.request_context import install_request_context
from web.routes import callbacks, checkout, docs, health, metrics
from web.security_headers import install_security_headers

API_PREFIX = "/api/v1"
_MAX_SYNC_CALLABLES = 1024


class PaymentsJSON(DefaultJSONProvider):
    """Money leaves as "100.00" strings; timestamps as ISO 8601 with offset."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, datetime):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


class PaymentsFlask(Flask):
    """Flask, with its check of each view and hook for `async def` made once per function:
    Flask inspects every one again on every call, a dozen per request (B1)."""

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._sync_callables: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self._sync_callables.get(func)
        if known is None:
            known = super().ensure_sync(func)
            # Views, hooks and error handlers: registered once, a bounded set. Anything
            # beyond that is checked each time, as Flask does, rather than kept for ever.
            if len(self._sync_callables) < _MAX_SYNC_CALLABLES:
                self._sync_callables[func] = known
        return known


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = PaymentsFlask(__name__)
    app.json = PaymentsJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.extensions["payments"] = res = resources or Resources(settings)
    # Every routed provider's keys are loaded and checked now: a missing or unreadable
    # one stops the start with the variable's name, not the first payment. Their callback
    # series start at 0, so a first failure is an increase Prometheus can see.
    initialise_series(res.providers.names)

    install_request_context(app)  # first: every later hook and log line has the id
    register_error_handlers(app)
    install_body_limit(app)  # before anything reads a body
    install_security_headers(app)
    install_auth(app)
    install_idempotency(app, API_PREFIX)
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    # Providers post to /callbacks/<provider> at the root, outside the versioned API.
    app.register_blueprint(callbacks.provider_bp)
    install_rate_limits(app, settings)  # counted by the callbacks view, refusals only
    if settings.is_dev:
        # The sandbox and the provider doubles: stand-ins, never mounted in production.
        mount_standins(app)
    # The customer's cashier page: no API key, the checkout link's token instead.
    app.register_blueprint(checkout.bp)
    for blueprint in _api_blueprints():
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    return app


def _api_blueprints() -> list[Any]:
    """API blueprints, one module per resource (see web/routes/)."""
    from web.routes import (  # noqa: PLC0415
        events,  # §9, with notifications and webhooks
        methods,
        notifications,
        orders,
        payments,
        reconciliation,  # issue #17: the daily statements against our books
        refunds,
        wallets,
        webhooks,
    )

    return [orders.bp, payments.bp, refunds.bp, methods.bp, callbacks.admin_bp,
            wallets.bp, webhooks.bp, events.bp, notifications.bp, reconciliation.bp]
