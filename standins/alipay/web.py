"""The Alipay double's blueprint, mounted by web/app.py at /doubles/alipay (dev/test)."""

from __future__ import annotations

from flask import Blueprint

from standins.alipay.gateway import gateway_bp
from standins.alipay.pages import pages_bp
from standins.alipay.testing import testing_bp

bp = Blueprint("alipay", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")
bp.register_blueprint(gateway_bp)
bp.register_blueprint(pages_bp, url_prefix="/pay")
bp.register_blueprint(testing_bp, url_prefix="/test")
