"""`payments up`: the whole system in the foreground, for a laptop or a single box.

With DATABASE_URL / REDIS_URL unset it starts embedded PostgreSQL and Redis
under RUN_DIR (default .run/; data survives restarts), then migrates, creates
demo keys and runs web, worker, beat and Flower. Ctrl-C or SIGTERM stops all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import requests

from config import PROJECT_ROOT, Settings
from config_secrets import DEV_FLOWER_AUTH
from devstack.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ensure_database,
    free_port,
    port_is_free,
    wait_for_port,
)
from devstack.supervisor import Child, Supervisor, command_child, configure_logging

log = logging.getLogger("up")

APP_DATABASE = "payments"


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (the project's .venv)."""
    return str(Path(sys.executable).parent / name)


def _stable_port(run_dir: Path, name: str, preferred: int) -> int:
    """Reuse the port a server had last time (its clients may remember it)."""
    ports_file = run_dir / "ports.json"
    ports = json.loads(ports_file.read_text()) if ports_file.exists() else {}
    port = int(ports.get(name, preferred))
    if not port_is_free(port):
        port = free_port()
    ports[name] = port
    ports_file.write_text(json.dumps(ports, indent=2))
    return port


def _start_embedded_servers(sup: Supervisor, env: dict[str, str], run_dir: Path) -> None:
    logs = run_dir / "logs"
    if not env.get("DATABASE_URL"):
        pg = EmbeddedPostgres(run_dir / "postgres", _stable_port(run_dir, "postgres", 55432))
        sup.add(Child("postgres", lambda: pg.start(logs / "postgres.log"),
                      stop_signal=signal.SIGINT))  # SIGINT = PostgreSQL's fast shutdown
        pg.wait_ready()
        ensure_database(pg.url(), APP_DATABASE)
        env["DATABASE_URL"] = pg.url(APP_DATABASE)
        log.info("embedded PostgreSQL on 127.0.0.1:%d (data in %s)", pg.port, pg.data_dir)
    if not env.get("REDIS_URL"):
        rd = EmbeddedRedis(run_dir / "redis", _stable_port(run_dir, "redis", 56379))
        sup.add(Child("redis", lambda: rd.start(logs / "redis.log")))
        rd.wait_ready()
        env["REDIS_URL"] = rd.url()
        log.info("embedded Redis on 127.0.0.1:%d (append-only file in %s)", rd.port,
                 rd.data_dir)


def _write_stack_env(run_dir: Path, env: dict[str, str]) -> None:
    """So `payments ...` in another terminal finds the servers `make up` started."""
    # BROKER_URL too when set (RabbitMQ): a `payments callbacks replay` must publish to
    # the broker the workers consume, not to the locks' Redis.
    lines = [f"{k}={env[k]}" for k in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")
             if env.get(k)]
    (run_dir / "stack.env").write_text("\n".join(lines) + "\n")


def _app_children(env: dict[str, str], settings: Settings, logs: Path, web_port: int,
                  flower_port: int, workers: int) -> list[Child]:
    celery = [_bin("celery"), "-A", "workers.app"]
    return [
        command_child("web", [_bin("gunicorn"), "-c", "python:web.gunicorn_conf",
                              "web.wsgi:app", "--bind", f"127.0.0.1:{web_port}"], env, logs),
        command_child("worker", [*celery, "worker", "--loglevel", "INFO", "--concurrency",
                                 str(workers), "-Q", "callbacks,payments,maintenance",
                                 "--hostname", "worker@%h"], env, logs),
        # Merchant webhooks on a worker of their own: a shop's receiver that hangs for the
        # whole 10 s timeout then holds up only other webhooks, never a payment (§9).
        command_child("webhooks-worker", [*celery, "worker", "--loglevel", "INFO",
                                          "--concurrency", str(workers), "-Q", "webhooks",
                                          "--hostname", "webhooks@%h"], env, logs),
        command_child("beat", [*celery, "beat", "--loglevel", "INFO", "--schedule",
                               str(settings.run_dir / "celerybeat-schedule")], env, logs),
        command_child("flower", [*celery, "flower", f"--port={flower_port}",
                                 "--address=127.0.0.1",
                                 f"--basic-auth={settings.flower_basic_auth}"], env, logs),
    ]


def run(web_port: int | None = None, flower_port: int | None = None) -> int:
    configure_logging()
    env = dict(os.environ)
    run_dir = Path(env.get("RUN_DIR") or PROJECT_ROOT / ".run").resolve()
    env["RUN_DIR"] = str(run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    web_port = web_port or int(env.get("WEB_PORT", "8000"))
    flower_port = flower_port or int(env.get("FLOWER_PORT", "5555"))
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{web_port}")
    # The lenient dev setup unless the environment names another: `APP_ENV=production
    # make up` runs the strict one (every secret required) on a laptop.
    env.setdefault("APP_ENV", "dev")
    if env["APP_ENV"] in ("dev", "test"):
        env.setdefault("FLOWER_BASIC_AUTH", DEV_FLOWER_AUTH)
    env["PYTHONUNBUFFERED"] = "1"
    if env.get("PROVIDER_DOUBLES") == "1":
        _use_provider_doubles(env, run_dir)
    # Web and worker processes write metric samples here; /metrics adds them up.
    metrics_dir = run_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))

    sup = Supervisor()
    sup.install_signal_handlers()
    try:
        _start_embedded_servers(sup, env, run_dir)
        _write_stack_env(run_dir, env)
        settings = Settings.from_env(env)
        _check_providers(settings)
        from adapters.migrate import upgrade_to_head  # noqa: PLC0415 - after servers are up

        upgrade_to_head(settings.database_url)
        admin_key, user_key = _demo_keys(settings)
        demo_payment, demo_checkout = _demo_checkout(settings)
        *apps, flower = _app_children(env, settings, run_dir / "logs", web_port, flower_port,
                                      int(env.get("WORKER_CONCURRENCY", "2")))
        for child in apps:
            sup.add(child)
        wait_for_port(web_port, timeout=60)
        # Flower learns of workers when it starts or when asked to refresh: start it once
        # the worker answers, and have it look once, so its first API call lists it.
        _wait_for_worker(settings, sup, timeout=90)
        sup.add(flower)
        _prime_flower(flower_port, settings.flower_basic_auth, sup, timeout=60)
        _print_banner(settings, web_port, flower_port, admin_key, user_key, run_dir,
                      demo_payment, demo_checkout)
    except BaseException:
        sup.stop_all()
        raise
    sup.run_forever()
    return 0


def _wait_for_worker(settings: Settings, sup: Supervisor, timeout: float) -> None:
    from adapters.celery_app import make_celery  # noqa: PLC0415 - after servers are up

    app = make_celery(settings)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not sup.stopping:
            if app.control.ping(timeout=1.0):
                return
        log.warning("no worker answered a ping within %.0fs; starting Flower anyway", timeout)
    finally:
        app.close()


def _prime_flower(port: int, basic_auth: str, sup: Supervisor, timeout: float) -> None:
    """One `?refresh=1` call, repeated until Flower lists a worker (or time runs out)."""
    user, _, password = basic_auth.partition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not sup.stopping:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/api/workers",
                                  params={"refresh": "1"}, auth=(user, password), timeout=10)
            if answer.status_code == 200 and answer.json():
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    log.warning("Flower did not list a worker within %.0fs", timeout)


def _use_provider_doubles(env: dict[str, str], run_dir: Path) -> None:
    """PROVIDER_DOUBLES=1: wechat and alipay go to the local WeChat Pay and Alipay doubles
    (standins/), with keys made once under .run/doubles/. Settings already in the
    environment win, so one variable can still be pointed elsewhere."""
    from standins.keys import doubles_environment  # noqa: PLC0415

    for key, value in doubles_environment(run_dir, env["PUBLIC_BASE_URL"]).items():
        env.setdefault(key, value)
    log.info("provider doubles: wechat -> wechatpay, alipay -> alipay (keys in %s)",
             run_dir / "doubles")


def _check_providers(settings: Settings) -> None:
    """A routed provider with a missing or unreadable setting stops the start here, with
    the variable's name, before any process is started that would crash on it."""
    from adapters.providers.registry import build_registry  # noqa: PLC0415

    build_registry(settings, settings.payment_providers)


def _demo_keys(settings: Settings) -> tuple[str, str]:
    from adapters.resources import Resources  # noqa: PLC0415
    from services.api_keys import create_api_key  # noqa: PLC0415

    res = Resources(settings)
    try:
        admin = create_api_key(res.uow(), "admin", name="demo admin (make up)")
        user = create_api_key(res.uow(), "user", user_id=1, name="demo user 1 (make up)")
    finally:
        res.close()
    return admin, user


def _demo_checkout(settings: Settings) -> tuple[int, str]:
    """A fresh order (user 1, 88.00 CNY) and payment: its cashier page works at once."""
    from adapters.resources import Resources  # noqa: PLC0415
    from services.api_keys import Principal  # noqa: PLC0415
    from services.checkout import checkout_url  # noqa: PLC0415
    from services.orders import create_order  # noqa: PLC0415
    from services.payments import create_payment  # noqa: PLC0415

    res = Resources(settings)
    admin = Principal(key_id=0, role="admin", user_id=None)
    try:
        order = create_order(res, admin, total_amount="88.00", currency="CNY",
                             order_number=None, user_id=1)
        payment, _ = create_payment(res, admin, order_id=order["id"], method="wechat",
                                    amount=None)
    finally:
        res.close()
    return payment["id"], checkout_url(settings, payment["id"], payment["expires_at"])


def _print_banner(settings: Settings, web_port: int, flower_port: int, admin_key: str,
                  user_key: str, run_dir: Path, demo_payment: int, demo_checkout: str) -> None:
    base = f"http://127.0.0.1:{web_port}"
    print(
        f"""
  payments is up
    API          {base}/api/v1   (docs: {base}/docs)
    ready check  {base}/readyz
    Flower       http://127.0.0.1:{flower_port}   (login {settings.flower_basic_auth})
    logs         {run_dir / 'logs'}
    demo admin key   {admin_key}
    demo user key    {user_key}   (user_id 1)
    demo payment   {demo_payment}   (88.00 CNY, user 1, not paid yet)
    demo checkout  {demo_checkout}

  Ctrl-C stops everything.
""",
        flush=True,
    )
