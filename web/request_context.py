"""A request id for every request: the caller's `X-Request-ID` when it is sane, else a
fresh one; returned in the response header and put in the log context for the
request's duration, so the request's log lines and the tasks it enqueues carry it."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from adapters.log_context import close_log_scope, open_log_scope

REQUEST_ID_HEADER = "X-Request-ID"
# The same header as the WSGI server hands it over: read from the environ directly, not
# through request.headers' per-call name translation (every request pays for it, B1).
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
# Ids from outside are echoed into logs and headers: short, and no odd characters.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def install_request_context(app: Flask) -> None:
    app.before_request(_open)
    app.after_request(_echo)
    app.teardown_request(_close)


def _open() -> None:
    given = request.environ.get(_REQUEST_ID_ENVIRON)
    request_id = given if given and _SANE_ID.match(given) else uuid.uuid4().hex
    g.request_id = request_id
    g.log_scope = open_log_scope(request_id=request_id)


def _echo(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _close(_exc: BaseException | None) -> None:
    close_log_scope(g.pop("log_scope", None))
