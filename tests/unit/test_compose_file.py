"""docker-compose.yml cannot be run here (no Docker engine), so its promises are
checked as data: the roles, the single beat, migrations first, durable Redis."""

from __future__ import annotations

import re

import yaml

from config import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_role_is_there():
    assert set(SERVICES) == {"postgres", "redis", "migrate", "web", "worker",
                             "webhooks-worker", "beat", "flower"}
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["redis"]["image"] == "redis:7"


def test_redis_keeps_the_queue_across_restarts_and_never_evicts():
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_apps_start_after_a_successful_migration_on_healthy_servers():
    for role in ("web", "worker", "webhooks-worker", "beat", "flower"):
        deps = SERVICES[role]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["command"] == ["payments", "db", "upgrade"]
    assert "migrate" not in SERVICES["migrate"]["depends_on"]
    for server in ("postgres", "redis", "web"):
        assert "healthcheck" in SERVICES[server]


def test_exactly_one_beat_and_workers_consume_every_queue():
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    worker = " ".join(SERVICES["worker"]["command"])
    assert "-Q callbacks,payments,maintenance" in worker
    # webhooks on a worker of their own, so a hanging receiver never delays a payment
    assert "-Q webhooks" in " ".join(SERVICES["webhooks-worker"]["command"])


def test_compose_settings_are_the_ones_the_app_reads():
    env = {k: re.sub(r"\$\{\w+:-(.*)\}", r"\1", str(v))
           for k, v in SERVICES["web"]["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://payments:")
    assert settings.payment_ttl_seconds == 1800 and settings.order_ttl_seconds == 86400


def test_the_image_contains_every_package_the_project_installs():
    import tomllib

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    packages = [p.rstrip("*") for p in setuptools["packages"]["find"]["include"]]
    modules = setuptools["py-modules"]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for name in packages:
        assert f"COPY {name}/ {name}/" in dockerfile, name
    for module in modules:
        assert f"{module}.py" in dockerfile, module


def test_the_web_starts_gunicorn_with_the_shared_config():
    """compose's web runs the image's CMD (it sets no command of its own)."""
    import json

    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    command = SERVICES["web"].get("command") or json.loads(
        re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    assert command[0] == "gunicorn"
    assert command[command.index("-c") + 1] == "python:web.gunicorn_conf"
    # The settings live in the config: none given inline to drift from it.
    assert not {"--workers", "--threads", "--access-logfile"} & set(command)
    assert re.search(r"^ENV WEB_WORKERS=4$", dockerfile, re.MULTILINE)
