"""Merchant webhooks and the events feed (DESIGN.md §9): the rules, no I/O.

Which changes are events, what an endpoint may subscribe to and point at, and when
a failed delivery is tried again. The addresses are judged here; resolving a name
to them is the adapter's job (adapters/webhook_http.py), so the same rule runs at
registration and again on the address a delivery actually connects to.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from enum import StrEnum
from urllib.parse import urlsplit

from domain.errors import InvalidInput
from domain.statuses import OrderStatus, PaymentStatus


class EventType(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_EXPIRED = "payment.expired"
    PAYMENT_NEEDS_REVIEW = "payment.needs_review"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    ORDER_PAID = "order.paid"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_EXPIRED = "order.expired"
    ORDER_REFUNDED = "order.refunded"
    # A discrepancy the daily reconciliation found (issue #17): the item's view.
    RECONCILIATION_MISMATCH = "reconciliation.mismatch"


# Sent only by `payments webhooks test URL`: never stored, never subscribable.
PING_EVENT = "ping"
ALL_EVENTS = "*"
EVENT_ID_PREFIX = "evt_"
SECRET_PREFIX = "whsec_"

PAYMENT_EVENTS = {
    PaymentStatus.SUCCEEDED: EventType.PAYMENT_SUCCEEDED,
    PaymentStatus.FAILED: EventType.PAYMENT_FAILED,
    PaymentStatus.CANCELLED: EventType.PAYMENT_CANCELLED,
    PaymentStatus.EXPIRED: EventType.PAYMENT_EXPIRED,
}
ORDER_EVENTS = {
    OrderStatus.CANCELLED: EventType.ORDER_CANCELLED,
    OrderStatus.EXPIRED: EventType.ORDER_EXPIRED,
    OrderStatus.REFUNDED: EventType.ORDER_REFUNDED,
}
# The customer's in-app notifications (seed 003) that go with an event.
NOTIFICATION_TYPES = {
    EventType.PAYMENT_SUCCEEDED: "payment_succeeded",
    EventType.PAYMENT_FAILED: "payment_failed",
    EventType.REFUND_SUCCEEDED: "refund_succeeded",
}


def payment_event(to: PaymentStatus) -> EventType | None:
    """The event of a payment moving to `to` (a late success is payment.succeeded too)."""
    return PAYMENT_EVENTS.get(to)


def order_event(current: OrderStatus, to: OrderStatus) -> EventType | None:
    """order.paid only when the order is first paid: refunding -> paid (a refund that
    failed) is told by refund.failed, so fulfilment does not ship the order twice."""
    if to is OrderStatus.PAID:
        return EventType.ORDER_PAID if current is OrderStatus.PENDING else None
    return ORDER_EVENTS.get(to)


def public_event_id(event_id: int) -> str:
    return f"{EVENT_ID_PREFIX}{event_id}"


def parse_event_id(value: str, field: str = "after") -> int:
    """`evt_123` -> 123; anything else is a 400 naming the field."""
    digits = value[len(EVENT_ID_PREFIX):] if value.startswith(EVENT_ID_PREFIX) else ""
    if not digits.isdigit() or not 0 < int(digits) < 2**63:
        raise InvalidInput(f"{field} must be an event id such as evt_123",
                           code="invalid_event_id", field=field)
    return int(digits)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


# --- what an endpoint subscribes to and where it points ---------------------------------

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500


def check_events(value: object) -> list[str]:
    """["*"] or a non-empty list of known event names (kept in the order given, once)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput('events must be ["*"] or a non-empty list of event names',
                           code="invalid_events", field="events")
    names = list(dict.fromkeys(value))
    if ALL_EVENTS in names:
        if len(names) > 1:
            raise InvalidInput('"*" already means every event; send it alone',
                               code="invalid_events", field="events")
        return names
    known = {e.value for e in EventType}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"unknown event name(s): {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(known))}", code="unknown_event",
                           field="events", unknown=unknown)
    return names


def check_url(value: object) -> tuple[str, int]:
    """An absolute http(s) URL without credentials; returns (host, port) to vet."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("url must be an http(s) URL", code="invalid_url", field="url")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters",
                           code="invalid_url", field="url")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL", code="invalid_url", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL with a host",
                           code="invalid_url", field="url")
    if parts.username or parts.password:
        raise InvalidInput("url must not carry a user name or password", code="invalid_url",
                           field="url")
    if any(c.isspace() for c in value):
        raise InvalidInput("url must not contain spaces", code="invalid_url", field="url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(f"description must be a string of at most "
                           f"{MAX_DESCRIPTION_LENGTH} characters", code="invalid_field",
                           field="description")
    return value


# --- SSRF: the addresses a webhook may not reach ----------------------------------------

# Cloud metadata services beyond 169.254.169.254 (link-local, refused anyway): Alibaba
# Cloud's sits in the shared (CGNAT) range, AWS's IPv6 one in a unique-local block.
_METADATA = (ipaddress.ip_network("100.100.100.200/32"), ipaddress.ip_network("fd00:ec2::254/128"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def refused_address(address: str) -> str | None:
    """Why `address` (an IP literal) is no place for a webhook, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _METADATA) or str(ip) == "169.254.169.254":
        return f"{ip} is a cloud metadata address"
    # The most telling name first (0.0.0.0 and fe80::1 count as "private" too).
    for flag, what in (("is_loopback", "loopback"), ("is_unspecified", "unspecified"),
                       ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, flag):
            return f"{ip} is a {what} address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return f"{ip} is a shared (carrier-grade NAT) address"
    return None


def refused_addresses(host: str, addresses: Iterable[str]) -> str | None:
    """A name is refused when ANY address it resolves to is: an attacker's DNS can
    answer with a public and a private address and let the client pick."""
    found = list(addresses)
    if not found:
        return f"{host} does not resolve to any address"
    for address in found:
        reason = refused_address(address)
        if reason:
            return reason if host == address else f"{host} resolves to {reason}"
    return None


# --- retries ---------------------------------------------------------------------------

DEFAULT_RETRY_SCHEDULE = (60, 300, 1800, 3600, 7200, 21600, 43200, 86400, 86400, 86400)
# An endpoint whose every delivery failed for this long is disabled.
DISABLE_AFTER_SECONDS = 3 * 86400


def retry_delay(schedule: Sequence[int], failures: int) -> int | None:
    """Seconds to wait after the `failures`-th failed attempt of this round; None when
    the schedule is used up (the delivery is failed). The first attempt is at once."""
    if failures < 1:
        return 0
    return schedule[failures - 1] if failures <= len(schedule) else None


def parse_schedule(raw: str) -> tuple[int, ...]:
    """"60,300,..." -> (60, 300, ...): positive whole seconds, at least one."""
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"not a comma-separated list of seconds: {raw!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"needs one or more positive numbers of seconds: {raw!r}")
    return values
