"""`make up` on a machine with no database or Redis configured: the whole stack comes
up on embedded servers, Flower sees the worker, and SIGTERM leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import requests

from config import PROJECT_ROOT
from devstack.embedded import free_port
from tests.support.callbacks import event_body, post_callback
from tests.support.processes import wait_until
from tests.support.readme import run_sh, sh_block
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_using(run_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            environ = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(run_dir) in cmdline or environ.get("RUN_DIR") == str(run_dir):
            found.append(proc)
    return [p for p in found if p.pid != os.getpid() and _alive(p)]


@contextmanager
def _make_up(tmp_path: Path, **extra_env: str) -> Iterator[dict]:
    """`make up` exactly as a newcomer runs it (plus `extra_env`), torn down after."""
    run_dir = tmp_path / "run"
    web_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
    env.update(RUN_DIR=str(run_dir), WEB_PORT=str(web_port), FLOWER_PORT=str(flower_port),
               FLOWER_BASIC_AUTH="ops:secret-test", **extra_env)
    out_path = tmp_path / "make-up.out"
    with open(out_path, "wb") as out:
        make = subprocess.Popen(["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "up"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    info = {"make": make, "run_dir": run_dir, "web": f"http://127.0.0.1:{web_port}",
            "flower": f"http://127.0.0.1:{flower_port}", "out": out_path}
    try:
        yield info
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        for proc in _processes_using(run_dir):
            proc.kill()


@pytest.fixture
def stack(tmp_path: Path):
    with _make_up(tmp_path) as info:
        yield info


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_make_up_runs_the_stack_on_embedded_servers_and_stops_cleanly(stack):
    make: subprocess.Popen = stack["make"]

    def up() -> bool:
        if make.poll() is not None:
            raise AssertionError("make up exited:\n" + stack["out"].read_text()[-4000:])
        return _ready(stack["web"])

    wait_until(up, timeout=240, interval=0.5, message="GET /readyz = 200")
    ready = requests.get(stack["web"] + "/readyz", timeout=5).json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}

    # Embedded servers were started under RUN_DIR, not the machine's.
    stack_env = (stack["run_dir"] / "stack.env").read_text()
    assert ":5432/" not in stack_env and ":6379/" not in stack_env

    output = wait_until(lambda: "demo admin key" in stack["out"].read_text()
                        and stack["out"].read_text(), timeout=30, message="banner")
    admin_key = re.search(r"demo admin key\s+(\S+)", output).group(1)
    assert admin_key.startswith("pk_admin_")
    demo_payment = int(re.search(r"demo payment\s+(\d+)", output).group(1))
    demo_checkout = re.search(r"demo checkout\s+(\S+)", output).group(1)
    assert f"/checkout/{demo_payment}?" in demo_checkout
    assert requests.get(demo_checkout, timeout=10).status_code == 200

    # Flower is behind basic auth and lists the worker on the first call, no refresh.
    assert requests.get(stack["flower"] + "/api/workers", timeout=10).status_code == 401
    workers = requests.get(stack["flower"] + "/api/workers", auth=("ops", "secret-test"),
                           timeout=10).json()
    assert any(name.startswith("worker@") for name in workers), workers

    # The README's walkthrough, as written: order, payment, pay_url, approve, refund.
    walked = run_sh(sh_block("export ADMIN_KEY="), base_url=stack["web"],
                    replace={"pk_admin_...": admin_key})
    [refund] = json.loads(walked.strip().splitlines()[-1])["items"]
    assert (refund["amount"], refund["status"]) == ("30.00", "succeeded")
    # Its test callback pays the demo payment (88.00, not silently refused).
    answer = run_sh(sh_block("Sandbox-Signature"), base_url=stack["web"],
                    replace={"PAYMENT=1 ": f"PAYMENT={demo_payment} "})
    assert json.loads(answer) == {"received": True, "duplicate": False}
    admin = {"Authorization": f"Bearer {admin_key}"}
    wait_until(lambda: requests.get(f"{stack['web']}/api/v1/payments/{demo_payment}",
                                    headers=admin, timeout=10).json()["status"] == "succeeded",
               timeout=30, message="the demo payment paid by the README's callback")

    # Worker processes' metrics reach the web's /metrics scrape (multiprocess mode):
    # beat sends the sweeps at start-up, the worker runs them.
    def task_metrics() -> str:
        text = requests.get(stack["web"] + "/metrics", timeout=5).text
        return text if 'payments_task_seconds_count{task="maintenance.expire_payments"}' in text \
            else ""

    wait_until(task_metrics, timeout=60, interval=1, message="worker task metrics in /metrics")
    # A callback for no known payment: the web counts it stored, the worker unmatched.
    body = event_body(987_654_321)
    assert post_callback(stack["web"], body).status_code == 200

    def callback_metrics() -> str:
        text = requests.get(stack["web"] + "/metrics", timeout=5).text
        return text if ('outcome="unmatched"' in text and 'outcome="stored"' in text
                        and "payments_callback_inbox_backlog" in text) else ""

    wait_until(callback_metrics, timeout=30, interval=1, message="callback metrics")

    # Merchant webhooks go out through the stack's own webhooks worker (DESIGN.md §9).
    with webhook_receiver() as receiver:
        hook_url, token = receiver.hook()
        admin = {"Authorization": f"Bearer {admin_key}"}
        api = stack["web"] + "/api/v1"
        assert requests.post(f"{api}/webhook-endpoints", json={"url": hook_url, "events": [
            "payment.cancelled"]}, headers=admin, timeout=10).status_code == 201
        order = requests.post(f"{api}/orders", json={"total_amount": "5.00", "user_id": 1},
                              headers=admin, timeout=10).json()
        payment = requests.post(f"{api}/payments", json={"order_id": order["id"]},
                                headers=admin, timeout=10).json()
        assert requests.post(f"{api}/payments/{payment['id']}/cancel", headers=admin,
                             timeout=10).status_code == 200
        delivered = wait_until(lambda: receiver.calls(token), timeout=60, interval=0.5,
                               message="a webhook delivered by make up's webhooks worker")
        assert delivered[0].headers["Payments-Event-Type"] == "payment.cancelled"

    # A crashed worker is restarted by the supervisor.
    supervisor_pid = _descendants(make.pid)[0].pid
    tree = _descendants(supervisor_pid)
    worker_leader = next(p for p in tree if "worker" in " ".join(p.cmdline())
                         and p.ppid() == supervisor_pid)
    worker_leader.kill()
    wait_until(lambda: any(p.pid != worker_leader.pid and p.ppid() == supervisor_pid
                           and "worker" in " ".join(p.cmdline())
                           for p in _descendants(supervisor_pid)),
               timeout=30, message="worker restarted")

    everything = [psutil.Process(make.pid), *_descendants(make.pid)]
    # make, supervisor, postgres, redis, web, worker, webhooks-worker, beat, flower
    assert len(everything) >= 9

    started = time.monotonic()
    os.kill(make.pid, signal.SIGTERM)
    make.wait(timeout=60)
    wait_until(lambda: not any(_alive(p) for p in everything), timeout=60,
               message="every process of the stack to exit")
    assert _processes_using(stack["run_dir"]) == []
    assert time.monotonic() - started < 60


def test_provider_doubles_make_up_pays_through_both_doubles(tmp_path):
    """The README's one setting: `PROVIDER_DOUBLES=1 make up` routes wechat and alipay to
    the local doubles; a payment of each is paid on the double's page, notified, applied."""
    [command] = [line for line in sh_block("PROVIDER_DOUBLES=1 make up").splitlines()
                 if "make up" in line]
    assert command.split("#")[0].split() == ["PROVIDER_DOUBLES=1", "make", "up"]
    with _make_up(tmp_path, PROVIDER_DOUBLES="1") as stack:
        make: subprocess.Popen = stack["make"]

        def up() -> bool:
            if make.poll() is not None:
                raise AssertionError("make up exited:\n" + stack["out"].read_text()[-4000:])
            return _ready(stack["web"])

        wait_until(up, timeout=240, interval=0.5, message="GET /readyz = 200")
        output = wait_until(lambda: "demo admin key" in stack["out"].read_text()
                            and stack["out"].read_text(), timeout=30, message="banner")
        admin = {"Authorization": "Bearer "
                 + re.search(r"demo admin key\s+(\S+)", output).group(1)}
        api = stack["web"] + "/api/v1"
        for method, provider in (("wechat", "wechatpay"), ("alipay", "alipay")):
            order = requests.post(f"{api}/orders", headers=admin, timeout=10,
                                  json={"total_amount": "12.30", "user_id": 1}).json()
            payment = requests.post(f"{api}/payments", headers=admin, timeout=10,
                                    json={"order_id": order["id"], "method": method}).json()
            assert payment["provider"] == provider
            assert requests.post(f"{api}/payments/{payment['id']}/pay", headers=admin,
                                 timeout=10).status_code == 202
            pay_url = wait_until(lambda p=payment: requests.get(
                f"{api}/payments/{p['id']}", headers=admin, timeout=10).json()["pay_url"],
                timeout=60, message=f"{provider} pay_url")
            assert pay_url.startswith(f"{stack['web']}/doubles/{provider}/pay/")
            assert requests.post(pay_url + "/approve", timeout=10,
                                 allow_redirects=False).status_code == 303
            paid = wait_until(lambda p=payment: (lambda v: v["status"] == "succeeded" and v)(
                requests.get(f"{api}/payments/{p['id']}", headers=admin, timeout=10).json()),
                timeout=90, message=f"{provider} notification applied")
            assert paid["out_trade_no"] == f"P{payment['id']:010d}"
            assert requests.get(f"{api}/orders/{order['id']}", headers=admin,
                                timeout=10).json()["status"] == "paid"
        # The doubles' keys were made under RUN_DIR, once.
        assert (stack["run_dir"] / "doubles" / "wechatpay").is_dir()
        assert (stack["run_dir"] / "doubles" / "alipay").is_dir()
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(60)
