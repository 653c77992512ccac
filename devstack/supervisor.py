"""A small process supervisor for `make up`: start children, restart the ones that
crash, and on Ctrl-C / SIGTERM stop every one of them, grandchildren included.

Each child runs in its own session (process group), so stopping a child's group
also stops what it forked: gunicorn's workers, Celery's pool processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("supervisor")

RESTART_BACKOFF_MAX = 30.0
STOP_GRACE_SECONDS = 15.0


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop_signal: int = signal.SIGTERM
    restart: bool = True
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    started_at: float = field(default=0.0)

    def launch(self) -> None:
        self.process = self.start()
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


def command_child(name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                  stop_signal: int = signal.SIGTERM) -> Child:
    def start() -> subprocess.Popen[bytes]:
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    return Child(name=name, start=start, stop_signal=stop_signal)


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self._stopping = False

    def add(self, child: Child, launch: bool = True) -> Child:
        self.children.append(child)
        if launch:
            child.launch()
        return child

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            # `make up` passes a SIGTERM on to us as well: say it once.
            if not self._stopping:
                log.info("received %s, stopping", signal.Signals(signum).name)
            self._stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run_forever(self, poll_seconds: float = 0.5) -> None:
        """Watch the children until told to stop; restart the ones that die."""
        while not self._stopping:
            self.restart_dead_children()
            time.sleep(poll_seconds)
        self.stop_all()

    def restart_dead_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if proc is None or proc.poll() is None:
                if proc is None and child.restart and now >= child.next_start_at:
                    child.launch()
                continue
            # The leader died; make sure nothing it forked is left behind.
            _kill_group(proc.pid, signal.SIGKILL)
            if not child.restart:
                continue
            uptime = now - child.started_at
            child.restarts = 0 if uptime > 60 else child.restarts + 1
            delay = min(RESTART_BACKOFF_MAX, 0.5 * (2 ** child.restarts))
            log.warning("%s exited with %s; restarting in %.1fs", child.name,
                        proc.returncode, delay)
            child.process = None
            child.next_start_at = now + delay

    def stop_all(self) -> None:
        """Stop in reverse start order: apps first, then the servers they use."""
        for child in reversed(self.children):
            proc = child.process
            if proc is None:
                continue
            _kill_group(proc.pid, child.stop_signal)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                log.warning("%s did not stop in %.0fs; killing", child.name, STOP_GRACE_SECONDS)
            # Whatever is still in the group (the leader, or its orphans) goes now.
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            log.info("stopped %s", child.name)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s [%(name)s] %(message)s", datefmt="%H:%M:%S")
    # Alembic narrates every plugin it loads; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
