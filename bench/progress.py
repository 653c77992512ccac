"""Progress lines on stderr while a scenario runs, and the small statistics the report uses."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

Say = Callable[[str], None]


class Progress:
    """`say("...")` prints `[bench  12.3s] ...` to stderr; `ticking(...)` repeats a line
    every few seconds during a long phase, so a long run never looks hung."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        with self._lock:
            print(f"[bench {time.monotonic() - self._started:7.1f}s] {message}",
                  file=self._stream, flush=True)

    @contextmanager
    def ticking(self, line: Callable[[], str], every: float = 5.0) -> Iterator[None]:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(every):
                try:
                    self.say(line())
                except Exception as exc:  # a progress line must never break the run
                    self.say(f"(progress unavailable: {exc})")

        thread = threading.Thread(target=tick, name="bench-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
