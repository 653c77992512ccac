"""Closed-loop HTTP load with wrk (Debian package `wrk`): each scenario writes the
requests it wants sent to a file, and `run_wrk` sends each of them once, as fast as
the server answers, from `connections` keep-alive connections."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("wrk_replay.lua")
THREADS = 1          # one wrk thread: on 2 cores the server needs the rest
CONNECTIONS = 16     # twice gunicorn's 2 workers x 4 threads: the server is never idle


class WrkMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str
    headers: dict[str, str]

    def line(self) -> str:
        fields = [self.method, self.path, self.body or "-",
                  *(f"{k}: {v}" for k, v in self.headers.items())]
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError("a wrk request field may hold no tab or newline")
        return "\t".join(fields)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int          # connect/read/write/timeout errors and non-2xx/3xx answers
    wraps: int           # times a thread ran out of prepared requests and started over
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk is not installed (Debian/Ubuntu: apt-get install wrk); "
                         "`make bench` installs it when run as root")
    return found


def write_requests(path: Path, requests: Iterable[Request]) -> int:
    count = 0
    with open(path, "w") as out:
        for request in requests:
            out.write(request.line() + "\n")
            count += 1
    return count


def run_wrk(base_url: str, requests_file: Path, seconds: float) -> WrkResult:
    proc = subprocess.run(
        [wrk_binary(), "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds:g}s",
         "--timeout", "10s", "-s", str(LUA_SCRIPT), base_url, "--",
         str(requests_file), str(THREADS)],
        capture_output=True, text=True, timeout=seconds + 60, check=False)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("WRK_JSON ")),
                   None)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(summary.removeprefix("WRK_JSON "))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                     errors=errors, wraps=data["wraps"], p50_ms=data["p50_us"] / 1000,
                     p99_ms=data["p99_us"] / 1000)
