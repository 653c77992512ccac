"""Mounting the stand-ins in our web app: in dev and test only.

Anywhere else their routes do not exist (404): the sandbox's Approve button would
otherwise let anyone holding a cashier link mark an order paid with no money moving.
"""

from __future__ import annotations

from flask import Flask

SANDBOX_PREFIX = "/sandbox"
WECHATPAY_PREFIX = "/doubles/wechatpay"
ALIPAY_PREFIX = "/doubles/alipay"


def mount_standins(app: Flask) -> None:
    from standins.sandbox.web import bp as sandbox_bp

    # The built-in sandbox provider (DESIGN.md §6a), reached over HTTP like a real one.
    app.register_blueprint(sandbox_bp, url_prefix=SANDBOX_PREFIX)
    # The local WeChat Pay double (DESIGN.md §6b): WECHATPAY_BASE_URL points here.
    from standins.wechatpay.web import bp as wechatpay_bp

    app.register_blueprint(wechatpay_bp, url_prefix=WECHATPAY_PREFIX)
    # The local Alipay double (DESIGN.md §6b): ALIPAY_GATEWAY_URL points at its gateway.do.
    from standins.alipay.web import bp as alipay_bp

    app.register_blueprint(alipay_bp, url_prefix=ALIPAY_PREFIX)
