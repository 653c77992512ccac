"""What a test (or a developer at `make up`) may ask the Alipay double directly: a
trade as the double holds it, its notifications, and a refusal to stage.

    GET  /doubles/alipay/test/trades/<out_trade_no>
    POST /doubles/alipay/test/trades/<out_trade_no>/refund-refusal  {"sub_code": "..."}
    GET  /doubles/alipay/test/notifications
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from domain.errors import NotFound
from standins.models import StandinOrder, StandinRefund
from standins.notifications import notification_views
from web.deps import resources

testing_bp = Blueprint("alipay_testing", __name__)


@testing_bp.get("/trades/<out_trade_no>")
def get_trade(out_trade_no: str):
    with resources().uow() as uow:
        order = _order(uow.session, out_trade_no)
        refunds = uow.session.scalars(select(StandinRefund).where(
            StandinRefund.order_id == order.id).order_by(StandinRefund.id)).all()
        return jsonify({
            "out_trade_no": order.out_trade_no, "app_id": order.merchant,
            "amount_minor": order.amount_minor, "refunded_minor": order.refunded_minor,
            "status": order.status, "trade_no": order.transaction_id,
            "notify_url": order.notify_url, "subject": order.description,
            "request_body": order.request_body,
            "refunds": [{"out_request_no": r.out_refund_no, "amount_minor": r.amount_minor,
                         "status": r.status} for r in refunds]})


@testing_bp.post("/trades/<out_trade_no>/refund-refusal")
def stage_refund_refusal(out_trade_no: str):
    """The next refund of this trade is refused with `sub_code` (a 40004)."""
    sub_code = str((request.get_json(silent=True) or {}).get("sub_code")
                   or "ACQ.SELLER_BALANCE_NOT_ENOUGH")
    with resources().uow() as uow:
        order = _order(uow.session, out_trade_no)
        order.request_body = {**(order.request_body or {}), "test_refund_refusal": sub_code}
        uow.commit()
    return jsonify({"out_trade_no": out_trade_no, "refund_refusal": sub_code})


@testing_bp.get("/notifications")
def list_notifications():
    with resources().uow() as uow:
        return jsonify({"items": notification_views(uow.session, "alipay")})


def _order(session, out_trade_no: str) -> StandinOrder:
    order = session.scalars(select(StandinOrder).where(
        StandinOrder.provider == "alipay", StandinOrder.out_trade_no == out_trade_no)
    ).one_or_none()
    if order is None:
        raise NotFound("No such trade at the Alipay double", code="unknown_trade")
    return order
