"""The page an Alipay QR code leads to: opening it is the buyer's scan; Approve (with
or without a notification to the merchant) or Decline. JSON for a client that asks."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from standins.alipay import trades
from web.deps import resources

pages_bp = Blueprint("alipay_pages", __name__)


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json")


@pages_bp.get("/<token>")
def pay_page(token: str):
    trade = trades.scan(resources(), token)
    if _wants_json():
        return jsonify(trade)
    return render_template("alipay_pay.html", trade=trade, token=token)


@pages_bp.post("/<token>/approve")
def approve(token: str):
    quiet = request.values.get("notify") == "0"
    return _decided(token, trades.decide(resources(), token, approve=True,
                                         send_notification=not quiet))


@pages_bp.post("/<token>/decline")
def decline(token: str):
    return _decided(token, trades.decide(resources(), token, approve=False))


def _decided(token: str, trade: dict[str, object]):
    if _wants_json():
        return jsonify(trade)
    return redirect(url_for(".pay_page", token=token), code=303)
