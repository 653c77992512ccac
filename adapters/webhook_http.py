"""POSTing one webhook: to an address that was vetted, within 10 s, no redirects.

The name in the URL is resolved here, the caller's rule judges every address it
resolved to (domain.webhooks.refused_addresses), and the connection then goes to
exactly the address that was judged: resolving twice (once to check, once to
connect, as a plain HTTP client would) is what DNS rebinding exploits. TLS still
checks the certificate against the name in the URL (SNI and hostname check).
A redirect is an answer like any other (a 3xx is not a 2xx: retried later), and
at most 1 KiB of the answer is read: a receiver cannot make us download much.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024
USER_AGENT = "payments-webhooks/1"


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int | None  # None: no HTTP answer (refused, timeout, connection error)
    body: str | None  # the first 1 KiB of the answer, as text
    error: str | None  # why it is not a 2xx, or None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: Mapping[str, str], *,
         vet: Callable[[str, list[str]], str | None] | None,
         timeout: float = TIMEOUT_SECONDS) -> WebhookResponse:
    """POST `body`; `vet(host, addresses)` returns why not (then nothing is sent) or None.
    With vet=None (dev/test, or private networks allowed) any address is used."""
    started = time.monotonic()
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def done(status: int | None, text: str | None, error: str | None) -> WebhookResponse:
        return WebhookResponse(status, text, error, int((time.monotonic() - started) * 1000))

    try:
        addresses = resolve(host, port)
    except OSError as exc:
        return done(None, None, f"could not resolve {host}: {exc}")
    refusal = vet(host, addresses) if vet is not None else None
    if refusal:
        return done(None, None, f"refused: {refusal}")
    connection_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, addresses[0], timeout)

    def left() -> float:
        """Each socket operation gets what is left of the one deadline, so a receiver
        that trickles its answer cannot stretch the 10 s."""
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise TimeoutError(f"no answer within {timeout:g} s")
        if connection.sock is not None:
            connection.sock.settimeout(remaining)
        return remaining

    try:
        connection.connect()
        left()
        connection.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
        left()
        response = connection.getresponse()
        left()
        text = response.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return done(None, None, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()
    error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
    return done(response.status, text, error)
