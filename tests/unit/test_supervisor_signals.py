"""The `make up` supervisor's signal handling: one log line per stop, however many
signals arrive (make passes a SIGTERM on as well)."""

from __future__ import annotations

import logging
import os
import signal

from devstack.supervisor import Supervisor


def test_a_second_sigterm_is_not_logged_again(caplog):
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        sup = Supervisor()
        sup.install_signal_handlers()
        with caplog.at_level(logging.INFO, logger="supervisor"):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        assert sup.stopping
        assert [r.getMessage() for r in caplog.records] == ["received SIGTERM, stopping"]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
