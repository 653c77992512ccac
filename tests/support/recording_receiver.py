"""A stand-in merchant endpoint for provider callbacks: records what arrives, and can
answer 500 to the first N requests. Each test takes its own hook path, so a late
request from an earlier test never lands in its records."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, request

from tests.support.live_server import serve


@dataclass(frozen=True)
class ReceivedCall:
    received_at: float
    headers: dict[str, str]
    body: bytes
    answered: int


class RecordingReceiver:
    def __init__(self) -> None:
        self.base_url = ""  # set once served
        self._lock = threading.Lock()
        self._calls: dict[str, list[ReceivedCall]] = defaultdict(list)
        self._failures_left: dict[str, int] = {}

    def hook(self, fail_first: int = 0) -> tuple[str, str]:
        """A new (url, token): the first `fail_first` requests to it get a 500."""
        token = uuid.uuid4().hex
        with self._lock:
            self._failures_left[token] = fail_first
        return f"{self.base_url}/hook/{token}", token

    def calls(self, token: str) -> list[ReceivedCall]:
        with self._lock:
            return list(self._calls[token])

    def app(self) -> Flask:
        app = Flask("recording_receiver")

        @app.post("/hook/<token>")
        def hook(token: str):
            with self._lock:
                failing = self._failures_left.get(token, 0) > 0
                if failing:
                    self._failures_left[token] -= 1
                status = 500 if failing else 200
                self._calls[token].append(ReceivedCall(time.time(), dict(request.headers),
                                                       request.get_data(), status))
            return ({"error": "pretending to be down"} if failing else {"received": True},
                    status)

        return app


@contextmanager
def served_receiver() -> Iterator[RecordingReceiver]:
    """A RecordingReceiver served over real HTTP, its base_url set, for as long as the
    block runs."""
    rec = RecordingReceiver()
    with serve(rec.app()) as url:
        rec.base_url = url
        yield rec
