"""Structured logs: one JSON object per line, for web and worker processes alike.

{"ts": "2026-01-01T12:00:00.123Z", "level": "INFO", "logger": "services.callbacks",
 "message": "...", "request_id": "...", "callback_id": 7, "payment_id": 42}

The ids come from adapters.log_context. configure_json_logging() is called by the
process entry points (web/wsgi.py, the worker's setup_logging signal), never at import.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from adapters.log_context import current_log_context

# LogRecord attributes that are not `extra=` fields a caller passed.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(current_log_context())
        for key, value in vars(record).items():  # `extra=` fields win over the context
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(level: int | str = logging.INFO) -> None:
    """The root logger writes JSON lines to stderr; handlers set before are replaced."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
