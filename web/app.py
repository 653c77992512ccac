"""Flask app factory. Nothing connects until a request needs it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from adapters.resources import Resources
from config import Settings
from web.errors import register_error_handlers
from web.routes import health

API_PREFIX = "/api/v1"


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


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json = PaymentsJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.extensions["payments"] = resources or Resources(settings)

    register_error_handlers(app)
    app.register_blueprint(health.bp)
    for blueprint in _api_blueprints():
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    return app


def _api_blueprints() -> list[Any]:
    """API blueprints, one module per resource (see web/routes/)."""
    return []
