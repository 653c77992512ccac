"""Merchant webhooks, the events feed and notifications in the OpenAPI document (§9).

web/openapi.py merges webhook_paths() (built there, once its helpers exist),
WEBHOOK_SCHEMAS and WEBHOOK_PARAMETERS.
"""

from __future__ import annotations

from domain.webhook_models import DELIVERY_STATUSES, NOTIFICATION_TYPES
from domain.webhooks import ALL_EVENTS, EventType
from web.openapi_schemas import ID, TIMESTAMP, Schema, array, nullable, obj, ref, string

API = "/api/v1"
TAG = "webhooks"
EVENT_ID = string("evt_<n>", pattern="^evt_[0-9]+$", examples=["evt_42"])
LIMIT = {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}

WEBHOOK_PARAMETERS: dict[str, Schema] = {
    "EndpointId": {"name": "endpoint_id", "in": "path", "required": True,
                   "description": "Webhook endpoint id", "schema": ID},
    "EventId": {"name": "event_id", "in": "path", "required": True,
                "description": "Event id (evt_...)", "schema": EVENT_ID},
    "NotificationId": {"name": "notification_id", "in": "path", "required": True,
                       "description": "Notification id", "schema": ID},
}

_EVENT_NAMES = array(string(enum=[ALL_EVENTS, *(e.value for e in EventType)]))
_ENDPOINT_FIELDS: dict[str, Schema] = dict(
    id=ID, url=string(format="uri"), description=nullable(string()), events=_EVENT_NAMES,
    enabled={"type": "boolean"}, disabled_reason=nullable(string()),
    failing_since=nullable(TIMESTAMP) | {"description": "Every delivery has failed since"},
    secret_rotation_ends_at=nullable(TIMESTAMP) | {
        "description": "Until then the previous secret signs beside the current one"},
    created_at=TIMESTAMP, updated_at=TIMESTAMP)

WEBHOOK_SCHEMAS: dict[str, Schema] = {
    "EventType": string(enum=[e.value for e in EventType]),
    "Event": obj(["id", "type", "created_at", "data"], id=EVENT_ID, type=ref("EventType"),
                 created_at=TIMESTAMP,
                 data=obj(["object"], object={
                     "type": "object", "description": "The payment, order, refund or "
                     "reconciliation item as the "
                     "API showed it when the event happened"})),
    "EventPage": obj(["items", "has_more", "next_after"], items=array(ref("Event")),
                     has_more={"type": "boolean"},
                     next_after=nullable(EVENT_ID) | {"description": "Pass as `after`"}),
    "EventRedelivery": obj(["event_id", "deliveries"], event_id=EVENT_ID,
                           deliveries={"type": "integer", "description": "Deliveries queued"}),
    "WebhookEndpointCreate": obj(
        ["url", "events"], url=string("http(s); outside dev/test no loopback, private, "
                                      "link-local or metadata address", format="uri"),
        events=_EVENT_NAMES | {"description": '["*"] for every event, or names'},
        description=string(maxLength=500)) | {"additionalProperties": False},
    "WebhookEndpointUpdate": obj(
        url=string(format="uri"), events=_EVENT_NAMES, enabled={"type": "boolean"},
        description=nullable(string(maxLength=500))) | {"additionalProperties": False},
    "WebhookEndpoint": obj(list(_ENDPOINT_FIELDS), **_ENDPOINT_FIELDS),
    "WebhookEndpointWithSecret": obj(
        [*_ENDPOINT_FIELDS, "secret"], **_ENDPOINT_FIELDS,
        secret=string("whsec_...: shown only in this answer", pattern="^whsec_",
                      examples=["whsec_3q2-7wEXAMPLEsecretC0nJ8mYv1aZ"])),
    "WebhookEndpointList": obj(["items"], items=array(ref("WebhookEndpoint"))),
    "WebhookAttempt": obj(["number", "duration_ms", "at"], number={"type": "integer"},
                          status_code=nullable({"type": "integer"}),
                          duration_ms={"type": "integer"}, error=nullable(string()),
                          response_body=nullable(string("The first 1 KiB of the answer")),
                          at=TIMESTAMP),
    "WebhookDelivery": obj(
        ["id", "event_id", "event_type", "status", "attempts"], id=ID, event_id=EVENT_ID,
        event_type=ref("EventType"), status=string(enum=list(DELIVERY_STATUSES)),
        attempts={"type": "integer"}, last_status_code=nullable({"type": "integer"}),
        last_error=nullable(string()), next_attempt_at=nullable(TIMESTAMP),
        delivered_at=nullable(TIMESTAMP), created_at=TIMESTAMP,
        attempt_log=array(ref("WebhookAttempt"))),
    "WebhookDeliveryPage": obj(["items", "next_before"], items=array(ref("WebhookDelivery")),
                               next_before=nullable(ID) | {"description": "Pass as `before`"}),
    "Notification": obj(
        ["id", "type", "order_id", "payment_id", "read", "created_at"], id=ID,
        type=string(enum=list(NOTIFICATION_TYPES)), order_id=ID, payment_id=ID,
        refund_id=nullable(ID), read={"type": "boolean"}, read_at=nullable(TIMESTAMP),
        created_at=TIMESTAMP),
    "NotificationPage": obj(["items", "next_before"], items=array(ref("Notification")),
                            next_before=nullable(ID)),
}

_BAD_ENDPOINT = ("`invalid_url`, `forbidden_url` (an address outside dev/test may not "
                 "reach), `invalid_events`, `unknown_event`, `unknown_field`, "
                 "`invalid_field`, `malformed_json`")
_NO_ENDPOINT = "No such endpoint (`webhook_endpoint_not_found`)"


def webhook_paths() -> dict[str, dict[str, Schema]]:
    from web.openapi import _ok, api_post, operation, p, query  # noqa: PLC0415 - no cycle

    base = f"{API}/webhook-endpoints"
    one = f"{base}/{{endpoint_id}}"
    return {
        base: {
            "post": api_post(
                "createWebhookEndpoint", "Register a webhook endpoint", TAG, auth="admin",
                body="WebhookEndpointCreate", body_required=True,
                ok={201: _ok("The endpoint with its secret: shown only now",
                             ref("WebhookEndpointWithSecret"))},
                errors={400: _BAD_ENDPOINT}),
            "get": operation("listWebhookEndpoints", "The endpoints (never their secrets)",
                             TAG, auth="admin",
                             ok={200: _ok("Oldest first", ref("WebhookEndpointList"))})},
        one: {
            "get": operation("getWebhookEndpoint", "One endpoint (never its secret)", TAG,
                             auth="admin", params=[p("EndpointId")],
                             ok={200: _ok("The endpoint", ref("WebhookEndpoint"))},
                             errors={404: _NO_ENDPOINT}),
            "patch": operation("updateWebhookEndpoint", "Change url, events, enabled", TAG,
                               auth="admin", params=[p("EndpointId")],
                               body="WebhookEndpointUpdate", body_required=True,
                               ok={200: _ok("The endpoint", ref("WebhookEndpoint"))},
                               errors={400: _BAD_ENDPOINT + ", `empty_update`",
                                       404: _NO_ENDPOINT}),
            "delete": operation("deleteWebhookEndpoint", "Delete an endpoint and its "
                                "deliveries (the events stay)", TAG, auth="admin",
                                params=[p("EndpointId")], ok={204: _ok("Deleted", None)},
                                errors={404: _NO_ENDPOINT})},
        f"{one}/rotate-secret": {"post": api_post(
            "rotateWebhookSecret", "A new secret; the old one signs beside it for 24 h", TAG,
            auth="admin", params=[p("EndpointId")],
            ok={200: _ok("The endpoint with its new secret: shown only now",
                         ref("WebhookEndpointWithSecret"))}, errors={404: _NO_ENDPOINT})},
        f"{one}/deliveries": {"get": operation(
            "listWebhookDeliveries", "An endpoint's deliveries, newest first, with every "
            "attempt", TAG, auth="admin",
            params=[p("EndpointId"),
                    query("status", string(enum=list(DELIVERY_STATUSES)), "Only this status"),
                    query("limit", LIMIT, "Items per page"),
                    query("before", ID, "Deliveries older than this id (next_before)")],
            ok={200: _ok("One page", ref("WebhookDeliveryPage"))},
            errors={400: "`invalid_field`", 404: _NO_ENDPOINT})},
        f"{API}/events": {"get": operation(
            "listEvents", "Events oldest first, to catch up on missed webhooks", TAG,
            auth="admin",
            description="In the order their transactions committed; an event appears once "
                        "every transaction older than its own has ended, so following "
                        "`next_after` never skips one.",
            params=[query("type", ref("EventType"), "Only this type"),
                    query("after", EVENT_ID, "Only events after this one (next_after)"),
                    query("limit", LIMIT, "Items per page")],
            ok={200: _ok("One page", ref("EventPage"))},
            errors={400: "`unknown_event`, `invalid_event_id`, `unknown_cursor`, "
                         "`invalid_field`"})},
        f"{API}/events/{{event_id}}": {"get": operation(
            "getEvent", "One event", TAG, auth="admin", params=[p("EventId")],
            ok={200: _ok("The event", ref("Event"))},
            errors={404: "No such event (`event_not_found`)"})},
        f"{API}/events/{{event_id}}/redeliver": {"post": api_post(
            "redeliverEvent", "Send an event again to its endpoints", TAG, auth="admin",
            params=[p("EventId")],
            ok={202: _ok("Queued", ref("EventRedelivery"))},
            errors={404: "No such event (`event_not_found`)",
                    409: "`no_subscribed_endpoint`: no enabled endpoint wants it"})},
        f"{API}/notifications": {"get": operation(
            "listNotifications", "A customer's in-app notifications, newest first",
            "notifications",
            params=[query("user_id", ID, "Only this user's (admin keys)"),
                    query("unread", {"type": "boolean"}, "Only unread ones"),
                    query("limit", LIMIT, "Items per page"),
                    query("before", ID, "Older than this id (next_before)")],
            ok={200: _ok("A user key sees its own", ref("NotificationPage"))},
            errors={400: "`invalid_field`",
                    403: "A user key asking for another user_id (`admin_only`)"})},
        f"{API}/notifications/{{notification_id}}/read": {"post": api_post(
            "markNotificationRead", "Mark a notification read (idempotent)", "notifications",
            params=[p("NotificationId")], ok={200: _ok("The notification", ref("Notification"))},
            errors={404: "No such notification, or not yours (`notification_not_found`)"})},
    }
