"""B1's floor: the least a callback ingest on this stack can do, written by hand. The same
gunicorn and Flask as ours; per request an HMAC check of the sandbox signature, one
prepared psycopg INSERT ... ON CONFLICT DO NOTHING with a durable commit, one Redis push.
No framework of ours, no SQLAlchemy, no Celery, no metrics or logs: what is left of ours
above this is what our code costs."""

import hashlib
import hmac
import json
import threading
import time
from functools import cache

import psycopg
import redis
from flask import Flask, jsonify, request
from sqlalchemy.engine import make_url

from config import Settings

app = Flask(__name__)
_local = threading.local()
QUEUE = "bench-floor:callbacks"
INSERT = ("INSERT INTO provider_callbacks (provider, event_id, event_type, payment_id, "
          "raw_body, payload, status) VALUES ('sandbox', %s, %s, %s, %s, %s::jsonb, "
          "'received') ON CONFLICT (provider, event_id) DO NOTHING RETURNING id")


@cache
def _setup() -> tuple[Settings, bytes, str, redis.Redis]:  # at the first request, not import
    settings = Settings.from_env()
    dsn = make_url(settings.database_url).set(drivername="postgresql").render_as_string(False)
    return (settings, settings.sandbox_webhook_secret.encode(), dsn,
            redis.Redis.from_url(settings.redis_url))


@app.post("/callbacks/sandbox")
def ingest():
    settings, secret, dsn, queue = _setup()
    body = request.get_data()
    fields = dict(p.split("=", 1) for p in request.headers.get("Sandbox-Signature", "").split(",")
                  if "=" in p)
    expected = hmac.new(secret, f"{fields.get('t', '')}.".encode() + body,
                        hashlib.sha256).hexdigest()
    if (not hmac.compare_digest(expected, fields.get("v1", ""))
            or abs(time.time() - int(fields.get("t", "0"))) > settings.callback_tolerance_seconds):
        return jsonify(detail="bad signature"), 401
    event = json.loads(body)
    conn = getattr(_local, "conn", None) or psycopg.connect(dsn)
    _local.conn = conn
    with conn.transaction():  # committed (synchronous_commit on) before the answer
        row = conn.execute(INSERT, (event["id"], event["type"], event["data"]["payment_id"],
                                    body, body.decode()), prepare=True).fetchone()
    if row is not None:
        queue.lpush(QUEUE, row[0])
    return jsonify(received=True, duplicate=row is None)
