"""The pay page a customer is sent to (pay_url): amount, method, Approve, Decline.

Forms post back and are redirected to the page (post/redirect/get), which then
shows the result. Errors here are small HTML pages, or JSON for a client that
asks for JSON.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from domain.errors import DomainError
from standins.sandbox import tickets
from web.deps import resources
from web.errors import STATUS_BY_KIND, error_response

pages_bp = Blueprint("sandbox_pages", __name__)

RESULT_MESSAGES = {"approved": "Payment approved.", "declined": "Payment declined."}


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json")


@pages_bp.errorhandler(DomainError)
def page_error(exc: DomainError):
    status = STATUS_BY_KIND[exc.kind]
    if _wants_json():
        return error_response(status, exc.detail, exc.code, **exc.extra)
    return render_template("sandbox_error.html", status=status, detail=exc.detail,
                           code=exc.code), status


@pages_bp.get("/<ticket>")
def pay_page(ticket: str):
    view = tickets.pay_page_view(resources(), ticket)
    if _wants_json():
        return jsonify(view)
    message = RESULT_MESSAGES.get(request.args.get("result", ""))
    return render_template("sandbox_pay.html", payment=view, message=message)


@pages_bp.post("/<ticket>/approve")
def approve(ticket: str):
    return _decided(ticket, tickets.decide(resources(), ticket, approve=True), "approved")


@pages_bp.post("/<ticket>/decline")
def decline(ticket: str):
    return _decided(ticket, tickets.decide(resources(), ticket, approve=False), "declined")


def _decided(ticket: str, view: dict[str, object], result: str):
    if _wants_json():
        return jsonify(view)
    return redirect(url_for(".pay_page", ticket=ticket, result=result), code=303)
