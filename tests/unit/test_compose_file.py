"""docker-compose.yml cannot be run here (no Docker engine), so its promises are
checked as data: the roles, the single beat, migrations first, durable Redis, RabbitMQ as
the broker (quorum queues, publisher confirms), and the monitoring (Prometheus and Grafana
provisioned from ops/, scraping what the image serves)."""

from __future__ import annotations

import re

import yaml

from config import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_role_is_there():
    assert set(SERVICES) == {"postgres", "redis", "rabbitmq", "migrate", "web", "worker",
                             "webhooks-worker", "beat", "flower", "prometheus", "grafana"}
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
        assert deps["rabbitmq"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["command"] == ["payments", "db", "upgrade"]
    assert "migrate" not in SERVICES["migrate"]["depends_on"]
    for server in ("postgres", "redis", "rabbitmq", "web"):
        assert "healthcheck" in SERVICES[server]


def test_exactly_one_beat_and_workers_consume_every_queue():
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    worker = " ".join(SERVICES["worker"]["command"])
    assert "-Q callbacks,payments,maintenance" in worker
    # webhooks on a worker of their own, so a hanging receiver never delays a payment
    assert "-Q webhooks" in " ".join(SERVICES["webhooks-worker"]["command"])


# What an operator would put in .env: the values compose demands with ${NAME:?...}.
OPERATOR_SECRETS = {"CHECKOUT_TOKEN_SECRET": "k" * 40, "FLOWER_BASIC_AUTH": "ops:" + "p" * 40}


def _compose_env(given: dict[str, str]) -> dict[str, str]:
    """The web's environment as compose would resolve it with `given` set."""
    def resolve(value: object) -> str:
        match = re.fullmatch(r"\$\{(\w+)(:-|:\?)(.*)\}", str(value))
        if not match:
            return str(value)
        name, kind, rest = match.groups()
        if name in given:
            return given[name]
        assert kind == ":-", f"{name} is required and was not given"
        return rest
    return {k: resolve(v) for k, v in SERVICES["web"]["environment"].items()}


def test_secrets_have_no_defaults_in_compose_and_the_app_accepts_real_ones():
    env = SERVICES["web"]["environment"]
    for name in OPERATOR_SECRETS:
        assert str(env[name]).startswith(f"${{{name}:?"), name  # compose refuses without
    assert "SANDBOX_WEBHOOK_SECRET" not in env  # the sandbox does not exist in production
    settings = Settings.from_env(_compose_env(OPERATOR_SECRETS))
    assert settings.checkout_token_secret == OPERATOR_SECRETS["CHECKOUT_TOKEN_SECRET"]


def test_flower_is_not_published_by_default():
    assert "ports" not in SERVICES["flower"]
    assert SERVICES["flower"]["expose"] == ["5555"]


def test_compose_settings_are_the_ones_the_app_reads():
    settings = Settings.from_env(_compose_env(OPERATOR_SECRETS))
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


def _mounts(service: str) -> dict[str, str]:
    """{path in the container: path in the repository} of a service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            assert (PROJECT_ROOT / source).exists(), f"{service} mounts missing {source}"
            mounts[target] = source[2:]
    return mounts


def _exposed_ports() -> set[int]:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    return {int(p) for p in re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)
            .group(1).split()}


def test_prometheus_scrapes_the_ports_the_web_and_the_workers_serve():
    mounts = _mounts("prometheus")
    command = SERVICES["prometheus"]["command"]
    config_path = next(arg.split("=", 1)[1] for arg in command
                       if arg.startswith("--config.file="))
    config_dir, config_name = config_path.rsplit("/", 1)
    config = yaml.safe_load((PROJECT_ROOT / mounts[config_dir] / config_name).read_text())
    ports = {job["job_name"]: {(sd["names"][0], sd["port"]) for sd in job["dns_sd_configs"]}
             for job in config["scrape_configs"]}
    worker_address = SERVICES["worker"]["environment"]["WORKER_METRICS_ADDRESS"]
    worker_port = int(worker_address.rsplit(":", 1)[1])
    assert ports == {"web": {("web", 8000)}, "worker": {("worker", worker_port)}}
    assert {8000, worker_port} <= _exposed_ports()
    assert SERVICES["web"]["ports"] == ["8000:8000"]
    # Each process kind adds up its processes' samples in a directory of its own.
    for role in ("web", "worker"):
        metrics_dir = SERVICES[role]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert SERVICES[role]["tmpfs"] == [metrics_dir], role
    for role in ("migrate", "beat", "flower"):  # no directory there: they must not write one
        assert "PROMETHEUS_MULTIPROC_DIR" not in SERVICES[role]["environment"], role


def test_grafana_gets_the_datasource_and_the_dashboard_it_refers_to():
    import json

    mounts = _mounts("grafana")
    provisioning = PROJECT_ROOT / mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]  # the service
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "payments.yml").read_text())["providers"]
    dashboards_dir = providers[0]["options"]["path"]
    dashboard_files = list((PROJECT_ROOT / mounts[dashboards_dir]).glob("*.json"))
    assert [p.name for p in dashboard_files] == ["payments.json"]
    dashboard = json.loads(dashboard_files[0].read_text())
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/payments.json"
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"]
            for target in panel.get("targets", [])}
    assert uids == {datasources[0]["uid"]}
    assert all(panel.get("targets") for panel in dashboard["panels"] if panel["type"] != "row")


def test_the_prometheus_image_is_no_older_than_the_promtool_that_tests_the_rules():
    import shutil
    import subprocess

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found (apt-get install prometheus)")
    out = subprocess.run([promtool, "--version"], capture_output=True, text=True).stdout
    tested = _version(re.search(r"version (\d+\.\d+\.\d+)", out).group(1))
    image = _version(SERVICES["prometheus"]["image"].split(":v", 1)[1])
    # Newer servers of the same major version read these rules; an older one might not
    # know a function the tested promtool accepted.
    assert image[0] == tested[0] and image >= tested, (image, tested)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_rabbitmq_is_the_broker_with_quorum_queues_and_publisher_confirms():
    """What the apps build from compose's settings: the broker is the rabbitmq service
    (its user and vhost), every work queue a quorum queue, publishes confirmed; the locks
    stay in Redis."""
    from adapters.celery_app import QUEUES, make_celery

    rabbitmq = SERVICES["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.13")
    assert any(v.endswith(":/var/lib/rabbitmq") for v in rabbitmq["volumes"])  # durable
    assert "ports" not in rabbitmq  # only the apps' network reaches it
    assert rabbitmq["hostname"] == "rabbitmq"  # the node's name, so its data is found again
    settings = Settings.from_env(_compose_env(OPERATOR_SECRETS))
    env = rabbitmq["environment"]
    assert settings.broker_url == (f"amqp://{env['RABBITMQ_DEFAULT_USER']}:"
                                   f"{env['RABBITMQ_DEFAULT_PASS']}@rabbitmq:5672/"
                                   f"{env['RABBITMQ_DEFAULT_VHOST']}")
    assert settings.redis_url == "redis://redis:6379/0"
    app = make_celery(settings)
    queues = {q.name: q for q in app.conf.task_queues}
    assert set(queues) == set(QUEUES)
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} and q.durable
               and q.exchange.type == "topic" for q in queues.values())
    assert app.conf.broker_transport_options["confirm_publish"] is True
    # Redis stays one choice away, as `make up` runs it.
    redis_broker = Settings.from_env(_compose_env({**OPERATOR_SECRETS,
                                                   "BROKER_URL": "redis://redis:6379/0"}))
    assert redis_broker.broker_url == redis_broker.redis_url
    assert "confirm_publish" not in make_celery(redis_broker).conf.broker_transport_options


def test_flower_reads_rabbitmq_through_its_management_api():
    flower = SERVICES["flower"]
    assert "--broker_api=$FLOWER_BROKER_API" in flower["command"][-1].replace("$$", "$")
    assert flower["environment"]["FLOWER_BROKER_API"].endswith("@rabbitmq:15672/api/}")
