"""`payments webhooks test URL`: one signed `ping` event, so a shop can check its receiver.

Signed like every delivery (Payments-Signature with the endpoint's live secrets, or the
secret given), sent through the same SSRF rule, timeout and 1 KiB read; nothing is stored.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from adapters import webhook_http
from adapters.resources import Resources
from domain.errors import InvalidInput
from domain.webhook_models import WebhookEndpoint
from domain.webhooks import EVENT_ID_PREFIX, PING_EVENT, check_url
from services.transitions import utc_now
from services.webhooks.delivery import signed_headers
from services.webhooks.endpoints import address_vetter, live_secrets


def send_ping(res: Resources, url: str, secret: str | None = None) -> dict[str, Any]:
    check_url(url)
    if secret is None:
        with res.uow() as uow:
            endpoint = uow.session.scalars(select(WebhookEndpoint)
                                           .where(WebhookEndpoint.url == url)
                                           .order_by(WebhookEndpoint.id)).first()
            if endpoint is None:
                raise InvalidInput("no webhook endpoint has this url: register it first, or "
                                   "pass --secret", code="unknown_endpoint")
            secrets = live_secrets(endpoint, utc_now(uow.session))
    else:
        secrets = [secret]
    event_id = f"{EVENT_ID_PREFIX}ping_{uuid.uuid4().hex[:16]}"
    body = json.dumps({
        "id": event_id, "type": PING_EVENT,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "data": {"object": {"message": "a test event from `payments webhooks test`"}},
    }, separators=(",", ":")).encode()
    response = webhook_http.post(url, body, signed_headers(secrets, body, event_id, PING_EVENT),
                                 vet=address_vetter(res.settings))
    return {"event_id": event_id, "delivered": response.delivered,
            "status_code": response.status_code, "error": response.error,
            "duration_ms": response.duration_ms, "response_body": response.body}
