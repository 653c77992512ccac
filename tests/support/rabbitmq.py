"""A RabbitMQ broker for the tests that run against it too (issue #18).

The server is the machine's (RABBITMQ_URL, default amqp://guest:guest@127.0.0.1:5672/):
the suite cannot start one of its own (no wheel ships a RabbitMQ), so where none answers
those tests are skipped, saying so. Each run gets a virtual host of its own, made with
`rabbitmqctl` (the management plugin is often not enabled), so nothing leaks between runs
or into the server's other users; where rabbitmqctl cannot be used, the server's own vhost
is used. Before each test every queue of ours (the work queues and native delayed
delivery's) is purged over AMQP, so no message leaks between tests (a vhost per test
would cost about 6 s of rabbitmqctl each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import amqp
import pytest

from adapters.celery_app import QUEUES

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
CTL_TIMEOUT = 60


def server_url() -> str:
    return os.environ.get("RABBITMQ_URL") or DEFAULT_URL


def _connect(url: str) -> amqp.Connection:
    parts = urlsplit(url)
    vhost = parts.path[1:] or "/"
    conn = amqp.Connection(host=f"{parts.hostname}:{parts.port or 5672}",
                           userid=parts.username or "guest",
                           password=parts.password or "guest",
                           virtual_host=vhost, connect_timeout=3)
    conn.connect()
    return conn


def unreachable_reason(url: str) -> str | None:
    """None when an AMQP connection can be opened, else why not."""
    try:
        _connect(url).close()
    except Exception as exc:  # refused, timed out, auth: each is a reason to skip
        return f"no RabbitMQ at {_safe(url)} ({type(exc).__name__}: {exc})"
    return None


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}"


def _with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def _ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                          timeout=CTL_TIMEOUT, check=False)


def _can_make_vhosts(url: str) -> bool:
    """rabbitmqctl speaks to the local node only; a RABBITMQ_URL elsewhere gets none."""
    host = urlsplit(url).hostname
    return bool(shutil.which("rabbitmqctl")) and host in ("127.0.0.1", "localhost", "::1")


# Native delayed delivery's queues (kombu.transport.native_delayed_delivery): a countdown
# retry of an earlier test may still wait in one of them.
DELAYED_QUEUES = tuple(f"celery_delayed_{level}" for level in range(28))


def purge_our_queues(url: str) -> None:
    """Empty every work queue and delayed-delivery queue that exists. Purged, not
    deleted: a web of an earlier test in this process shares kombu's process-wide
    producer pool, which remembers the queues it declared and would not declare a deleted
    one again (its messages would go to an exchange with no queue bound)."""
    conn = _connect(url)
    try:
        for name in (*QUEUES, *DELAYED_QUEUES):
            channel = conn.channel()  # a missing queue's 404 closes its channel
            try:
                channel.queue_purge(name)
                channel.close()
            except amqp.exceptions.NotFound:
                pass
    finally:
        conn.close()


def delete_our_queues(url: str) -> None:
    """Every work queue and delayed-delivery queue, with their messages (at the end of a
    run on a vhost that is not ours)."""
    conn = _connect(url)
    try:
        channel = conn.channel()
        for name in (*QUEUES, *DELAYED_QUEUES):
            channel.queue_delete(name)  # one that does not exist is fine
        channel.close()
    finally:
        conn.close()


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A broker URL on a fresh vhost (deleted afterwards), or pytest.skip. Call
    purge_our_queues(url) before each test that uses it."""
    base = server_url()
    reason = unreachable_reason(base)
    if reason:
        pytest.skip(reason + "; set RABBITMQ_URL to run the RabbitMQ broker tests")
    if not _can_make_vhosts(base):
        yield base
        delete_our_queues(base)
        return
    vhost = f"payments-test-{uuid.uuid4().hex[:12]}"
    user = urlsplit(base).username or "guest"
    made = _ctl("add_vhost", vhost)
    if made.returncode != 0:
        raise RuntimeError(f"rabbitmqctl add_vhost failed: {made.stderr or made.stdout}")
    try:
        allowed = _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        if allowed.returncode != 0:
            raise RuntimeError(f"rabbitmqctl set_permissions failed: {allowed.stderr}")
        yield _with_vhost(base, vhost)
    finally:
        _ctl("delete_vhost", vhost)


def queue_message_count(url: str, name: str) -> int:
    """Messages ready in a queue (a passive declare: it must exist)."""
    conn = _connect(url)
    try:
        channel = conn.channel()
        _, count, _ = channel.queue_declare(name, passive=True)
        return int(count)
    finally:
        conn.close()


def declares_as_classic(url: str, name: str) -> str | None:
    """Declare `name` as a plain durable classic queue: None when the broker accepts it
    (it is a classic queue, or did not exist), else the broker's refusal, which names the
    argument that differs (a quorum queue: x-queue-type)."""
    conn = _connect(url)
    try:
        channel = conn.channel()
        try:
            channel.queue_declare(name, durable=True, auto_delete=False)
        except amqp.exceptions.PreconditionFailed as exc:
            return str(exc)
        return None
    finally:
        try:
            conn.close()
        except Exception:  # the channel the refusal closed
            pass
