"""Imports every double, so each registers its notification format (a worker that
sends standins.deliver_notification needs them all)."""

import standins.alipay.notify  # noqa: F401
import standins.wechatpay.notify  # noqa: F401
