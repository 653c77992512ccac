"""Bearer API keys: who is calling, and may they."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from domain.errors import DomainError, Forbidden
from services.api_keys import Principal, authenticate
from web.deps import resources

F = TypeVar("F", bound=Callable[..., Any])


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
        principal = (authenticate(resources().uow(), key)
                     if scheme.lower() == "bearer" and key else None)
        caller = _Caller(header, scheme, key, principal)
        g._caller = caller
    return caller


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


def require_key(admin: bool = False) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.principal = _authenticate_request()
            if admin and not g.principal.is_admin:
                raise Forbidden("This operation needs an admin key", code="admin_only")
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorator
