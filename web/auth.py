"""Bearer API keys: who is calling, and may they."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy import Connection

from adapters.db import UnitOfWork
from domain.errors import DomainError, Forbidden
from services.api_keys import Principal, authenticate, authenticate_on
from web.deps import resources

F = TypeVar("F", bound=Callable[..., Any])
_KEEPS_CONNECTION = "keeps_key_lookup_connection"  # the mark on such a view
_HELD = "_key_lookup_connection"  # g: the connection such a view's lookup ran on


def install_auth(app: Flask) -> None:
    app.teardown_request(_return_held_connection)


class Unauthorized(DomainError):
    kind = "unauthorized"
    default_code = "unauthorized"


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


@dataclass(frozen=True)
class _Caller:
    header: str  # the Authorization header, stripped
    scheme: str
    key: str
    principal: Principal | None  # None: no key, not a Bearer one, or not a valid one


def request_principal() -> Principal | None:
    """Who the request's Bearer key belongs to (None: no key or an invalid one). Parsed
    and looked up once per request, however many hooks and views ask."""
    return _caller().principal


def _caller() -> _Caller:
    caller: _Caller | None = g.get("_caller")
    if caller is None:
        header = request.headers.get("Authorization", "").strip()
        scheme, _, key = header.partition(" ")
        key = key.strip()
        principal = (_look_up(key) if scheme.lower() == "bearer" and key else None)
        caller = _Caller(header, scheme, key, principal)
        g._caller = caller
    return caller


def _look_up(key: str) -> Principal | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, _KEEPS_CONNECTION, False):
        return authenticate(resources().uow(), key)
    conn = resources().uow().held_connection()
    setattr(g, _HELD, conn)  # given back at teardown, whatever happens in between
    return authenticate_on(conn, key)


def request_uow() -> UnitOfWork:
    """A unit of work for the view; for one marked `keeps_connection`, on the connection
    its key was looked up on, so the request checks out one connection, not two."""
    conn: Connection | None = g.get(_HELD)
    uow = resources().uow()
    return uow if conn is None else uow.on(conn)


def _return_held_connection(exc: BaseException | None) -> None:
    conn: Connection | None = g.pop(_HELD, None)
    if conn is not None:
        conn.close()


def _authenticate_request() -> Principal:
    caller = _caller()
    if not caller.header:
        raise Unauthorized("Missing API key: send Authorization: Bearer <key>",
                           code="missing_api_key")
    if caller.scheme.lower() != "bearer":
        # Someone sent a credential, just not ours (Basic, a bare key, a token scheme).
        what = "a bare value" if not caller.key else f"the {caller.scheme[:20]!r} scheme"
        raise Unauthorized(f"Authorization must be \"Bearer <key>\" with an API key; got "
                           f"{what}", code="invalid_api_key", expected="Bearer <key>")
    if not caller.key:
        raise Unauthorized("Missing API key: send Authorization: Bearer <key>",
                           code="missing_api_key")
    if caller.principal is None:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    return caller.principal


def require_key(admin: bool = False, *, keeps_connection: bool = False) -> Callable[[F], F]:
    """`keeps_connection`: the key lookup's pooled connection is kept for the view's
    request_uow() (payment creation: one checkout a request instead of two, B5). Only
    for a view whose work is one unit of work: a second one nested in it on the same
    connection would join its transaction instead of committing on its own."""
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.principal = _authenticate_request()
            if admin and not g.principal.is_admin:
                raise Forbidden("This operation needs an admin key", code="admin_only")
            return view(*args, **kwargs)
        setattr(wrapper, _KEEPS_CONNECTION, keeps_connection)
        return wrapper  # type: ignore[return-value]
    return decorator
