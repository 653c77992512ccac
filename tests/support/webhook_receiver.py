"""A shop's webhook receiver for tests: a real HTTP server that records every request,
refuses the first N attempts of each event (by Payments-Event-Id) and may hang.

Each test takes its own hook path, so a late delivery from an earlier test never
lands in its records.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, request

from domain.webhook_signature import EVENT_ID_HEADER
from tests.support.live_server import serve


@dataclass(frozen=True)
class Delivery:
    received_at: float
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID_HEADER, "")


@dataclass
class _Hook:
    refuse_first: int
    hang_seconds: float
    seen: Counter[str]
    started: int = 0


class WebhookReceiver:
    def __init__(self) -> None:
        self.base_url = ""
        self._lock = threading.Lock()
        self._hooks: dict[str, _Hook] = {}
        self._calls: dict[str, list[Delivery]] = defaultdict(list)
        self._stop = threading.Event()  # ends every hang at teardown

    def hook(self, refuse_first: int = 0, hang_seconds: float = 0.0) -> tuple[str, str]:
        """A new (url, token): each event's first `refuse_first` attempts get a 503; every
        request first waits `hang_seconds` (a receiver that never answers in time)."""
        token = uuid.uuid4().hex
        with self._lock:
            self._hooks[token] = _Hook(refuse_first, hang_seconds, Counter())
        return f"{self.base_url}/hook/{token}", token

    def calls(self, token: str) -> list[Delivery]:
        with self._lock:
            return list(self._calls[token])

    def started(self, token: str) -> int:
        """Requests that arrived, answered or still hanging."""
        with self._lock:
            return self._hooks[token].started

    def event_ids(self, token: str) -> set[str]:
        return {c.event_id for c in self.calls(token) if c.answered == 200}

    def app(self) -> Flask:
        app = Flask("webhook_receiver")

        @app.post("/hook/<token>")
        def hook(token: str):
            with self._lock:
                spec = self._hooks.get(token, _Hook(0, 0.0, Counter()))
                spec.started += 1
            if spec.hang_seconds:
                self._stop.wait(spec.hang_seconds)
            event_id = request.headers.get(EVENT_ID_HEADER, "")
            with self._lock:
                spec.seen[event_id] += 1
                status = 503 if spec.seen[event_id] <= spec.refuse_first else 200
                self._calls[token].append(Delivery(time.time(), dict(request.headers),
                                                   request.get_data(), status))
            if status != 200:
                return {"error": "pretending to be down"}, status
            return {"received": True}, 200

        return app

    def stop_hanging(self) -> None:
        self._stop.set()


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with serve(receiver.app()) as url:
        receiver.base_url = url
        try:
            yield receiver
        finally:
            receiver.stop_hanging()
