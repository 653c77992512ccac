"""gunicorn's own log lines as JSON, like every other line the service writes.

gunicorn logs through its `logger_class` (web/gunicorn_conf.py points here), not through
the root logger that web/wsgi.py configures, so its two loggers are formatted here:
- gunicorn.error ("Booting worker ...", worker timeouts): the same JsonFormatter;
- gunicorn.access: one JSON object per request, its fields given as `extra=`.

The handlers stay gunicorn's: `accesslog` / `errorlog` ("-" or a file path) decide where
the lines go; only the format changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn import glogging

from adapters.logging_setup import JsonFormatter
from web.request_context import REQUEST_ID_HEADER


class JsonLogger(glogging.Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # gunicorn picks files/streams and marks its handlers
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any],
               request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        try:
            fields = access_fields(resp, environ, request_time)
            self.access_log.info("%s %s %s", fields["method"], fields["path"],
                                 fields["status"], extra=fields)
        except Exception:  # a log line must never fail the request
            self.exception("could not write the access log line")


def access_fields(resp: Any, environ: dict[str, Any],
                  request_time: timedelta) -> dict[str, Any]:
    """The request's line. Deliberately left out: request headers (the API key travels in
    Authorization) and the query string (the cashier page's link carries its token as
    ?token=...); the path alone says which endpoint was hit."""
    status = str(resp.status or "").split(None, 1)[0]  # "200 OK", or set by error pages
    return {
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "status": int(status) if status.isdigit() else None,
        "duration_ms": round(request_time.total_seconds() * 1000, 3),
        "bytes": getattr(resp, "sent", None),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        # The app sets it on every response (web/request_context.py); gunicorn's own
        # error pages have none.
        "request_id": _header(resp.headers, REQUEST_ID_HEADER),
    }


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)
