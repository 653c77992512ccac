"""Row ids as they arrive from outside: in JSON bodies, paths and task messages.

Every id is a PostgreSQL BIGINT, so anything above MAX_BIGINT names no row (and would
make the driver raise instead of the lookup answering "not found")."""

from __future__ import annotations

from typing import TypeGuard

MAX_BIGINT = 2**63 - 1


def is_int(value: object) -> TypeGuard[int]:
    """A real integer: JSON true/false arrive as bool, which Python counts as int."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_positive_id(value: object) -> int | None:
    """A JSON integer or a string of digits (providers differ) within 1..MAX_BIGINT;
    None when it is anything else."""
    number: int | None = None
    if is_int(value):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    if number is None or not 0 < number <= MAX_BIGINT:
        return None
    return number
