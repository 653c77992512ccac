"""The sandbox provider's blueprint, mounted by web/app.py under /sandbox."""

from __future__ import annotations

from flask import Blueprint

from standins.sandbox.api import api_bp
from standins.sandbox.pages import pages_bp

bp = Blueprint("sandbox", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")
bp.register_blueprint(api_bp, url_prefix="/api")
bp.register_blueprint(pages_bp, url_prefix="/pay")
