"""Our merchant references at the providers: out_trade_no and out_refund_no (§6b). Pure.

Each is derived from our own id, so it is stable (a retried call names the same payment)
and unique, and a callback's reference leads back to the row without a lookup table:

    out_trade_no  = <OUT_TRADE_NO_PREFIX> + "P" + the payment id, zero-padded to 10 digits
    out_refund_no = <OUT_TRADE_NO_PREFIX> + "R" + the refund id, likewise

Both providers accept 6 to 32 of [A-Za-z0-9_] (WeChat Pay also allows "-*|", Alipay
more, but this is what both allow). The prefix lets several deployments share one
merchant account: a reference with another prefix was never issued here (unmatched).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]{0,12}")
MAX_REFERENCE_LENGTH = 32
_ID_DIGITS = 10
_MAX_ID = 2**63 - 1  # BIGINT


@dataclass(frozen=True)
class MerchantReferences:
    prefix: str = ""

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError("OUT_TRADE_NO_PREFIX must be at most 12 of [A-Za-z0-9_]")

    def out_trade_no(self, payment_id: int) -> str:
        return self._make("P", payment_id)

    def out_refund_no(self, refund_id: int) -> str:
        return self._make("R", refund_id)

    def payment_id(self, out_trade_no: object) -> int | None:
        """Our payment id for a reference we issued; None for any other string."""
        return self._parse("P", out_trade_no)

    def refund_id(self, out_refund_no: object) -> int | None:
        return self._parse("R", out_refund_no)

    def _make(self, kind: str, number: int) -> str:
        if not 0 < number <= _MAX_ID:
            raise ValueError(f"not an id: {number}")
        return f"{self.prefix}{kind}{number:0{_ID_DIGITS}d}"

    def _parse(self, kind: str, value: object) -> int | None:
        if not isinstance(value, str) or len(value) > MAX_REFERENCE_LENGTH:
            return None
        head = self.prefix + kind
        digits = value[len(head):]
        if not value.startswith(head) or len(digits) < _ID_DIGITS:
            return None
        if not (digits.isascii() and digits.isdigit()):
            return None
        number = int(digits)
        # Exactly what _make writes: "P0000000042", never "P00000000042".
        if not 0 < number <= _MAX_ID or self._make(kind, number) != value:
            return None
        return number
