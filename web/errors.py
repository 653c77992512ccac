"""The one place that maps errors to HTTP: `{"detail", "code", ...extra}`, always JSON."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from domain.errors import DomainError

log = logging.getLogger(__name__)

STATUS_BY_KIND = {
    "invalid": 400,
    "not_found": 404,
    "forbidden": 403,
    "conflict": 409,
    "too_soon": 429,
    "unprocessable": 422,
    "unauthorized": 401,
    "too_large": 413,
    "unsupported_media_type": 415,
}


def error_response(status: int, detail: str, code: str, **extra: object):
    response = jsonify({"detail": detail, "code": code, **extra})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        response = error_response(STATUS_BY_KIND[exc.kind], exc.detail, exc.code, **exc.extra)
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
        response = error_response(exc.code or 500, exc.description or exc.name, code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: DBAPIError):
        log.error("database unavailable: %s", exc.orig)
        response = error_response(503, "The database is unavailable; try again shortly",
                                  "database_unavailable")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "Internal server error", "internal_error")
