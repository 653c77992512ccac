"""Webhook endpoints, managed by admins (DESIGN.md §9).

The secret is shown twice at most: in the answer that creates the endpoint and in the
one that rotates it. Every other view leaves it out (endpoint_view has no such field),
and nothing here logs it. A rotated secret keeps signing beside the new one for
ROTATION_OVERLAP, so a shop can deploy the new one without dropping a delivery.

Outside dev/test an endpoint may not point at loopback, private, link-local or
metadata addresses (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS=1): the name is resolved
now, and again at every delivery (delivery.py), so a name that later resolves
elsewhere (DNS rebinding) is refused then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from adapters import webhook_http
from adapters.resources import Resources
from config import Settings
from domain.errors import InvalidInput, NotFound
from domain.webhook_models import WebhookEndpoint
from domain.webhooks import (
    check_description,
    check_events,
    check_url,
    new_secret,
    refused_addresses,
)
from services.transitions import utc_now

ROTATION_OVERLAP = timedelta(hours=24)
# The body fields each takes (the views refuse any other: 400 unknown_field).
CREATE_FIELDS = ("url", "events", "description")
UPDATE_FIELDS = ("url", "events", "enabled", "description")
MAX_BIGINT = 2**63 - 1

View = dict[str, Any]


def address_vetter(settings: Settings) -> Callable[[str, list[str]], str | None] | None:
    """The SSRF rule for this deployment: None (anything goes) in dev/test or with
    WEBHOOK_ALLOW_PRIVATE_NETWORKS=1, else refused_addresses."""
    if settings.is_dev or settings.webhooks.allow_private_networks:
        return None
    return refused_addresses


def check_target(settings: Settings, url: object) -> str:
    """A URL an endpoint may have, or InvalidInput (400) saying why not."""
    host, port = check_url(url)
    vet = address_vetter(settings)
    if vet is not None:
        try:
            addresses = webhook_http.resolve(host, port)
        except OSError:
            addresses = []
        refusal = vet(host, addresses)
        if refusal:
            raise InvalidInput(f"url is not allowed: {refusal}", code="forbidden_url",
                               field="url")
    assert isinstance(url, str)
    return url


def endpoint_view(endpoint: WebhookEndpoint) -> View:
    return {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "events": list(endpoint.events), "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason,
            "failing_since": endpoint.failing_since,
            "secret_rotation_ends_at": endpoint.previous_secret_expires_at,
            "created_at": endpoint.created_at, "updated_at": endpoint.updated_at}


def create_endpoint(res: Resources, body: dict[str, Any]) -> View:
    url = check_target(res.settings, body.get("url"))
    events = check_events(body.get("events"))
    description = check_description(body.get("description"))
    secret = new_secret()
    with res.uow() as uow:
        endpoint = WebhookEndpoint(url=url, events=events, description=description,
                                   enabled=True, secret=secret)
        uow.session.add(endpoint)
        uow.session.flush()
        uow.session.refresh(endpoint)
        view = {**endpoint_view(endpoint), "secret": secret}
        uow.commit()
    return view


def list_endpoints(res: Resources) -> View:
    with res.uow() as uow:
        rows = uow.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
        return {"items": [endpoint_view(e) for e in rows]}


def find_endpoint(session: Session, endpoint_id: int, *, lock: bool = False
                  ) -> WebhookEndpoint:
    if not 0 < endpoint_id <= MAX_BIGINT:
        raise NotFound("Webhook endpoint not found", code="webhook_endpoint_not_found")
    query = (select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
             .execution_options(populate_existing=True))
    endpoint = session.scalars(query.with_for_update() if lock else query).first()
    if endpoint is None:
        raise NotFound("Webhook endpoint not found", code="webhook_endpoint_not_found")
    return endpoint


def get_endpoint(res: Resources, endpoint_id: int) -> View:
    with res.uow() as uow:
        return endpoint_view(find_endpoint(uow.session, endpoint_id))


def update_endpoint(res: Resources, endpoint_id: int, body: dict[str, Any]) -> View:
    """PATCH: only the fields sent change; all are checked before anything is written."""
    if not body:
        raise InvalidInput(f"send at least one of {', '.join(sorted(UPDATE_FIELDS))}",
                           code="empty_update")
    changes: dict[str, Any] = {}
    if "url" in body:
        changes["url"] = check_target(res.settings, body["url"])
    if "events" in body:
        changes["events"] = check_events(body["events"])
    if "description" in body:
        changes["description"] = check_description(body["description"])
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidInput("enabled must be true or false", code="invalid_field",
                               field="enabled")
        changes["enabled"] = body["enabled"]
    with res.uow() as uow:
        endpoint = find_endpoint(uow.session, endpoint_id, lock=True)
        for field, value in changes.items():
            setattr(endpoint, field, value)
        if changes.get("enabled") is True:  # switched on again: a fresh start
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        elif changes.get("enabled") is False:
            endpoint.disabled_reason = "disabled by an admin"
        endpoint.updated_at = utc_now(uow.session)
        uow.session.flush()
        view = endpoint_view(endpoint)
        uow.commit()
    return view


def delete_endpoint(res: Resources, endpoint_id: int) -> None:
    """Its deliveries and their attempts go with it (ON DELETE CASCADE); events stay."""
    with res.uow() as uow:
        find_endpoint(uow.session, endpoint_id, lock=True)
        uow.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
        uow.commit()


def rotate_secret(res: Resources, endpoint_id: int) -> View:
    """A new secret; the current one keeps signing beside it for 24 h. Rotating again
    within those 24 h retires the oldest at once (two live secrets at most)."""
    secret = new_secret()
    with res.uow() as uow:
        endpoint = find_endpoint(uow.session, endpoint_id, lock=True)
        now = utc_now(uow.session)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret = secret
        endpoint.updated_at = now
        uow.session.flush()
        view = {**endpoint_view(endpoint), "secret": secret}
        uow.commit()
    return view


def live_secrets(endpoint: WebhookEndpoint, now: Any) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one
    while its overlap lasts."""
    secrets = [endpoint.secret]
    if (endpoint.previous_secret and endpoint.previous_secret_expires_at is not None
            and endpoint.previous_secret_expires_at > now):
        secrets.append(endpoint.previous_secret)
    return secrets

