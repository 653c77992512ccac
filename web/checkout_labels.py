"""The cashier page's words, in English and Simplified Chinese, picked by Accept-Language."""

from __future__ import annotations

from flask import Request

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Checkout",
        "secure": "Secure checkout",
        "amount_due": "Amount due",
        "paying_with": "Paying with",
        "footer": "Payments are confirmed by the payment provider; this page updates by itself.",
        "order": "Order",
        "amount": "Amount",
        "method": "Payment method",
        "pay": "Pay",
        "paying": "Starting the payment…",
        "scan": "Scan the QR code to pay, or open the pay page:",
        "open_pay_page": "Open the pay page",
        "waiting": "Waiting for your payment…",
        "time_left": "Time left",
        "status": "Status",
        "succeeded": "Payment succeeded",
        "succeeded_text": "Thank you. Your order is paid.",
        "failed": "Payment failed",
        "failed_text": "The payment did not go through.",
        "retry": "Try again",
        "retry_wait": "You can try again in {s} s.",
        "no_retry": "No further attempts are possible for this order.",
        "cancelled": "Payment cancelled",
        "cancelled_text": "This payment was cancelled.",
        "expired": "Payment expired",
        "expired_text": "The time to pay has run out.",
        "error": "Something went wrong; please try again.",
        "not_found": "This payment link is not valid or has expired.",
        "status_init": "Awaiting payment",
        "status_processing": "Paying",
        "status_succeeded": "Paid",
        "status_failed": "Failed",
        "status_cancelled": "Cancelled",
        "status_expired": "Expired",
        "status_partially_refunded": "Partly refunded",
        "status_refunded": "Refunded",
        "wallet_balance": "Balance",
    },
    "zh": {
        "title": "收银台",
        "secure": "安全支付",
        "amount_due": "应付金额",
        "paying_with": "支付方式：",
        "footer": "支付结果由支付机构确认，本页面会自动更新。",
        "order": "订单号",
        "amount": "金额",
        "method": "支付方式",
        "pay": "立即支付",
        "paying": "正在发起支付…",
        "scan": "请扫描二维码支付，或打开支付页面：",
        "open_pay_page": "打开支付页面",
        "waiting": "等待支付结果…",
        "time_left": "剩余时间",
        "status": "状态",
        "succeeded": "支付成功",
        "succeeded_text": "感谢您的购买，订单已支付。",
        "failed": "支付失败",
        "failed_text": "本次支付未成功。",
        "retry": "重新支付",
        "retry_wait": "请在 {s} 秒后重试。",
        "no_retry": "该订单已无法再次支付。",
        "cancelled": "支付已取消",
        "cancelled_text": "该笔支付已被取消。",
        "expired": "支付已过期",
        "expired_text": "支付时间已用完。",
        "error": "出现错误，请重试。",
        "not_found": "该支付链接无效或已过期。",
        "status_init": "待支付",
        "status_processing": "支付中",
        "status_succeeded": "已支付",
        "status_failed": "支付失败",
        "status_cancelled": "已取消",
        "status_expired": "已过期",
        "status_partially_refunded": "部分退款",
        "status_refunded": "已退款",
        "wallet_balance": "余额",
    },
}

METHOD_NAMES_ZH = {"wechat": "微信支付", "alipay": "支付宝", "bank_card": "银行卡",
                   "balance": "余额支付"}
# The letter on each method's coloured tile (no images: the page fetches nothing else).
METHOD_GLYPHS = {"en": {"wechat": "W", "alipay": "A", "bank_card": "C", "balance": "B"},
                 "zh": {"wechat": "微", "alipay": "支", "bank_card": "卡", "balance": "余"}}


def language(request: Request) -> str:
    """zh for a browser whose first choice is any Chinese, else en."""
    preferred = next(iter(request.accept_languages.values()), "")
    return "zh" if preferred.lower().startswith("zh") else "en"


def method_glyph(lang: str, code: str) -> str:
    return METHOD_GLYPHS[lang].get(code, code[:1].upper())


def method_name(lang: str, code: str, default: str) -> str:
    return METHOD_NAMES_ZH.get(code, default) if lang == "zh" else default
