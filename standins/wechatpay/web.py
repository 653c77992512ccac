"""The WeChat Pay double's blueprint, mounted by web/app.py under /doubles/wechatpay
(dev and test only): the API v3 endpoints under /v3, the pay page under /pay."""

from __future__ import annotations

from flask import Blueprint

from standins.wechatpay.api import api_bp
from standins.wechatpay.pages import pages_bp

bp = Blueprint("wechatpay_double", __name__, template_folder="templates")
bp.register_blueprint(api_bp, url_prefix="/v3")
bp.register_blueprint(pages_bp, url_prefix="/pay")
