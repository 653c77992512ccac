"""The cashier page (/checkout/<payment id>?token=...): no API key, the link's token is
the credential (services/checkout.py). The page is HTML; what its script calls is JSON.

Nothing is fetched from elsewhere: the script and styles are ours (web/static/), the QR
code is drawn here as SVG from the provider's payload.
"""

from __future__ import annotations

import io
import re

import segno
from flask import Blueprint, Response, jsonify, render_template, request, send_file, url_for
from markupsafe import Markup, escape

from domain.errors import NotFound
from domain.money import format_amount
from services import checkout
from web.checkout_labels import LABELS, language, method_glyph, method_name
from web.deps import resources
from web.errors import error_response
from web.json_body import json_body

bp = Blueprint("checkout", __name__)


def _token() -> str:
    return request.args.get("token", "")


@bp.errorhandler(NotFound)
def not_found_page(exc: NotFound):
    """The page itself answers a dead link with a small HTML 404; its JSON endpoints keep
    the usual error body."""
    if request.endpoint != "checkout.page":
        return error_response(404, exc.detail, exc.code, **exc.extra)
    lang = language(request)
    return render_template("checkout_404.html", lang=lang, labels=LABELS[lang]), 404


@bp.get("/checkout/<int:payment_id>")
def page(payment_id: int):
    view = checkout.checkout_page(resources(), payment_id, _token())
    lang = language(request)
    methods = [{**m, "label": method_name(lang, m["code"], m["name"]),
                "glyph": method_glyph(lang, m["code"])} for m in view["methods"]]
    for m in methods:
        if "balance" in m:  # the wallet's, shown beside it
            m["balance"] = format_amount(m["balance"])
    urls = {
        "status": url_for(".status", payment_id=payment_id, token=view["token"]),
        "pay": url_for(".pay", payment_id=payment_id, token=view["token"]),
        "retry": url_for(".retry", payment_id=payment_id, token=view["token"]),
        "qr": url_for(".qr", payment_id=payment_id, token=view["token"]),
    }
    response = Response(render_template(
        "checkout.html", lang=lang, labels=LABELS[lang], view=view, methods=methods,
        amount=format_amount(view["amount"], view["currency"]), urls=urls,
        shop=_shop(), order_number_groups=breakable(view["order_number"]),
        method_labels={m["code"]: m["label"] for m in methods},
        method_label=method_name(lang, view["method"], view["method_name"])))
    # The link is the credential: keep it out of caches and other sites' Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/checkout/shop-logo")
def shop_logo():
    """SHOP_LOGO_FILE, served by us so the page still fetches nothing from elsewhere."""
    path = resources().settings.shop_logo_file
    if path is None:
        raise NotFound("No shop logo is configured", code="not_found")
    response = send_file(path, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# Order numbers are cut into groups after each separator; a group of at most this many
# characters never breaks inside (one longer than a phone's line may).
_GROUP_MAX = 24
_SEPARATED = re.compile(r"[^-_.]*[-_.]?")


def breakable(order_number: str) -> Markup:
    """ORD-20260131-9F2C… as groups a line may break between, and only between."""
    groups = [g for g in _SEPARATED.findall(order_number) if g]
    return Markup("").join(
        Markup('<span class="group">{}</span>').format(g) if len(g) <= _GROUP_MAX
        else escape(g) for g in groups)


def _shop() -> dict[str, str | None]:
    settings = resources().settings
    return {"name": settings.shop_name,
            "logo_url": url_for(".shop_logo") if settings.shop_logo_file else None}


@bp.get("/checkout/<int:payment_id>/status")
def status(payment_id: int):
    response = jsonify(checkout.checkout_status(resources(), payment_id, _token()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/checkout/<int:payment_id>/pay")
def pay(payment_id: int):
    body = json_body(("method",))
    return jsonify(checkout.start_checkout_payment(resources(), payment_id, _token(),
                                                   method=body.get("method"))), 202


@bp.post("/checkout/<int:payment_id>/retry")
def retry(payment_id: int):
    json_body(())
    view = checkout.retry_checkout_payment(resources(), payment_id, _token())
    return jsonify(view), 201 if view["created"] else 200


@bp.get("/checkout/<int:payment_id>/qr.svg")
def qr(payment_id: int):
    payload = checkout.checkout_qr_payload(resources(), payment_id, _token())
    buffer = io.BytesIO()
    segno.make(payload, error="m").save(buffer, kind="svg", scale=6, border=2,
                                        xmldecl=False)
    response = Response(buffer.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response
