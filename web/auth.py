"""Bearer API keys: who is calling, and may they."""

from __future__ import annotations

from collections.abc import Callable
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


def _authenticate_request() -> Principal:
    header = request.headers.get("Authorization", "").strip()
    scheme, _, key = header.partition(" ")
    if not header:
        raise Unauthorized("Missing API key: send Authorization: Bearer <key>",
                           code="missing_api_key")
    if scheme.lower() != "bearer":
        # Someone sent a credential, just not ours (Basic, a bare key, a token scheme).
        what = "a bare value" if not key else f"the {scheme[:20]!r} scheme"
        raise Unauthorized(f"Authorization must be \"Bearer <key>\" with an API key; got "
                           f"{what}", code="invalid_api_key", expected="Bearer <key>")
    if not key.strip():
        raise Unauthorized("Missing API key: send Authorization: Bearer <key>",
                           code="missing_api_key")
    principal = authenticate(resources().uow(), key.strip())
    if principal is None:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    return principal


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
