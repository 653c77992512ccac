"""Killing a Celery worker's pool processes while it works, and sending a stream of
callbacks from a few threads: the shared moves of the worker-kill fault tests."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests

from tests.support.callbacks import post_callback, signed_headers
from tests.support.processes import wait_until


def pool_processes(worker_pid: int) -> list[psutil.Process]:
    """The master's live pool processes: a killed one the master has not reaped yet is a
    zombie child for a moment, and not part of the pool."""
    alive = []
    for child in psutil.Process(worker_pid).children(recursive=False):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def kill_pool_in_rounds(worker_pid: int, rounds: int, progress: Callable[[], int],
                        step: int, pool_size: int = 2,
                        after_each: Callable[[], None] = lambda: None) -> list[int]:
    """`rounds` times: once the master has a whole pool again and that pool has moved
    `progress` on by `step`, SIGKILL every pool process, then call `after_each` (a stream
    paced by the rounds sends its next part). Returns how many died each round."""
    kills: list[int] = []
    done = progress()
    for _ in range(rounds):
        wait_until(lambda: len(pool_processes(worker_pid)) == pool_size, timeout=60,
                   message="the master to restart its pool processes")
        wait_until(lambda d=done: progress() >= d + step, timeout=60,
                   message="the new pool processes to get going")
        children = pool_processes(worker_pid)
        for child in children:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kills.append(len(children))
        done = progress()
        after_each()
    return kills


def post_callbacks(url: str, bodies: Iterable[bytes], threads: int = 6
                   ) -> list[requests.Response]:
    """Every body posted signed to the sandbox's callback endpoint, from `threads` threads
    with a connection each; the answers in order."""
    local = threading.local()

    def send(body: bytes) -> requests.Response:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        return post_callback(url, body, headers=signed_headers(body), session=local.http)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(send, bodies))
