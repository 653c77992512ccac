"""Test knobs of a sandbox payment ("test_options"). Pure: parsing and defaults.

Set when the payment is created (`test_options` in the create request) or later
with POST /sandbox/api/payments/<ticket>/test-options (only the fields sent
change). They apply to callbacks created after they are set:

- deliver_twice (bool): each callback is sent twice with the same event id; the
  copy goes once the original has been delivered.
- fail_first (int, 0..20): the sandbox pretends the first N attempts of each
  callback failed: nothing is sent, the attempt is counted, the backoff applies.
- delay_seconds (int, 0..3600): no attempt before this long after the callback
  was created.
- out_of_order (bool): callbacks of the ticket go out in reversed pairs. The
  next callback is held; when the ticket's following callback is created, that
  one is sent first and the held one only after it was delivered. A declined
  ticket may then still be approved once (the customer tried again on the same
  page), which is what makes payment.failed-then-succeeded arrive reversed; a
  refund after a held payment callback reverses payment and refund the same way.
  A callback still held when out_of_order is switched off is released at once.
- fail_refunds (bool): refunds are accepted, then end in refund.failed.
- callback_url (str, dev/test only): where callbacks go instead of
  PUBLIC_BASE_URL/callbacks/sandbox.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from domain.errors import InvalidInput

MAX_FAIL_FIRST = 20
MAX_DELAY_SECONDS = 3600
MAX_URL_LENGTH = 2000


@dataclass(frozen=True)
class TestOptions:
    __test__ = False  # not a pytest class, whatever its name says

    deliver_twice: bool = False
    fail_first: int = 0
    delay_seconds: int = 0
    out_of_order: bool = False
    fail_refunds: bool = False
    callback_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> TestOptions:
        """Options as stored on a ticket (already validated when they were set)."""
        known = {k: v for k, v in (stored or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _invalid(detail: str, field: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_test_options", field=f"test_options.{field}")


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(f"test_options.{field} must be true or false", field)
    return value


def _whole(value: object, field: str, maximum: int) -> int:
    # JSON numbers arrive as int (or Decimal for 1.0): only whole, in range.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _invalid(f"test_options.{field} must be a whole number from 0 to {maximum}",
                       field)
    return value


def _url(value: object, allow: bool) -> str | None:
    if value is None:
        return None
    if not allow:
        raise _invalid("test_options.callback_url is only honoured in dev and test",
                       "callback_url")
    if (not isinstance(value, str) or len(value) > MAX_URL_LENGTH
            or not value.startswith(("http://", "https://"))):
        raise _invalid("test_options.callback_url must be an http(s) URL", "callback_url")
    return value


def apply_test_options(current: TestOptions, changes: object, *,
                       allow_callback_url: bool) -> TestOptions:
    """`current` with the fields in `changes` (a JSON object) replaced; 400 on anything
    unknown or out of range, so a typo in a test never silently does nothing."""
    if changes is None:
        return current
    if not isinstance(changes, dict):
        raise InvalidInput("test_options must be a JSON object", code="invalid_test_options",
                           field="test_options")
    unknown = sorted(set(changes) - set(TestOptions.__dataclass_fields__))
    if unknown:
        raise InvalidInput(f"unknown test option(s): {', '.join(unknown)}",
                           code="invalid_test_options", field="test_options")
    updates: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("deliver_twice", "out_of_order", "fail_refunds"):
            updates[name] = _bool(value, name)
        elif name == "fail_first":
            updates[name] = _whole(value, name, MAX_FAIL_FIRST)
        elif name == "delay_seconds":
            updates[name] = _whole(value, name, MAX_DELAY_SECONDS)
        else:
            updates[name] = _url(value, allow_callback_url)
    return replace(current, **updates)
