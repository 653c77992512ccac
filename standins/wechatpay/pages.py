"""The double's pay page, where a code_url leads: amount, Approve, Decline, and "Approve
without notifying" (paid at WeChat Pay, but the notification never comes: what the
janitor, services/provider_sync.py, exists for). Post/redirect/get."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from standins.wechatpay import orders
from standins.wechatpay.keys import load_double_keys
from standins.wechatpay.orders import WechatError
from web.deps import resources

pages_bp = Blueprint("wechatpay_pages", __name__)

MESSAGES = {"approved": "支付成功 Payment approved.",
            "approved_silently": "Payment approved; no notification was sent.",
            "declined": "支付失败 Payment declined."}


@pages_bp.errorhandler(WechatError)
def page_error(exc: WechatError):
    return render_template("wechatpay_pay.html", order=None, error=exc.message,
                           message=None), exc.status


@pages_bp.get("/<token>")
def pay_page(token: str):
    view = orders.pay_page_view(resources(), token)
    return render_template("wechatpay_pay.html", order=view, error=None,
                           message=MESSAGES.get(request.args.get("result", "")))


@pages_bp.post("/<token>/approve")
def approve(token: str):
    res = resources()
    notify = request.form.get("notify", request.args.get("notify", "1")) != "0"
    orders.approve(res, load_double_keys(res.settings.run_dir), token,
                   send_notification=notify)
    return _done(token, "approved" if notify else "approved_silently")


@pages_bp.post("/<token>/decline")
def decline(token: str):
    orders.decline(resources(), token)
    return _done(token, "declined")


def _done(token: str, result: str):
    """Post/redirect/get for a person; the order as JSON for a client that asks for it."""
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
            "application/json"):
        return jsonify(orders.pay_page_view(resources(), token))
    return redirect(url_for(".pay_page", token=token, result=result), 303)
