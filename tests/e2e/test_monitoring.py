"""The monitoring against a running stack: a real Prometheus (ops/prometheus's config and
rules) scrapes a real gunicorn and a real worker serving its own /metrics, as in
docker-compose.yml (each with a metrics directory of its own), while beat sends the
sweeps. After a little traffic (paid, declined, expired and refunded payments, forged
callbacks), every PromQL expression of the dashboard and of the recording rules is
evaluated through Prometheus' HTTP API and must return data: no dead panel, no metric
name that does not exist. Skipped where Debian's prometheus package is not installed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from config import PROJECT_ROOT
from devstack.embedded import free_port, wait_for_port
from devstack.scratch_servers import gunicorn as gunicorn_server
from tests.support.callbacks import event_body, post_callback, signed_headers
from tests.support.live_server import Api
from tests.support.payment_flow import PaymentFlow
from tests.support.private_stack import env_with, settings_with
from tests.support.processes import stop_process_group, wait_until
from tests.support.prometheus import OPS, PROMETHEUS, prometheus_server
from tests.support.worker import start_beat, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not found (apt-get install "
                       "prometheus; `make install` does it when run as root)"),
]

DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "dashboards" / "payments.json"
# Grafana's own variables, as it would fill them in for a recent time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard_expressions() -> dict[str, str]:
    """{panel title / legend: PromQL} of every target of the dashboard."""
    exprs = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            exprs[f"panel {panel['title']!r} {target['legendFormat']!r}"] = expr
    return exprs


def rule_groups() -> list[dict]:
    return [group for path in sorted((OPS / "rules").glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"]]


def recording_expressions() -> dict[str, str]:
    return {f"rule {rule['record']}": rule["expr"] for group in rule_groups()
            for rule in group["rules"] if "record" in rule}


def alert_metric_names() -> set[str]:
    """The raw metric names the alerts read (recording rules, with colons, excluded)."""
    names = set()
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                names |= set(re.findall(r"\b(payments_[a-z_]+|up)\b", rule["expr"]))
    return names


@pytest.fixture
def stack(clean_db, settings, stack_env, private_redis, tmp_path: Path):
    """gunicorn + worker (own /metrics) + beat on a private broker, and Prometheus."""
    web_port, worker_port = free_port(), free_port()
    base = {**env_with(stack_env, settings_with(settings, redis_url=private_redis.url)),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
            # Short sweeps: the expiry and the sweep-age figures show up within seconds.
            "SWEEP_INTERVAL_SECONDS": "1"}
    for role in ("web", "worker"):
        (tmp_path / f"metrics-{role}").mkdir()
    web_env = {**base, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics-web")}
    worker_env = {**base, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics-worker"),
                  "WORKER_METRICS_ADDRESS": f"127.0.0.1:{worker_port}"}
    with gunicorn_server(web_env, tmp_path / "web.log", port=web_port) as web_url:
        worker = start_worker(worker_env, tmp_path / "worker.log")
        beat = start_beat(base, tmp_path / "beat.log", tmp_path / "beat-schedule")
        try:
            wait_for_port(worker_port, timeout=30)
            targets = {"web": f"127.0.0.1:{web_port}", "worker": f"127.0.0.1:{worker_port}"}
            with prometheus_server(targets, tmp_path / "prometheus") as prometheus:
                yield web_url, prometheus
        finally:
            stop_process_group(beat)
            stop_process_group(worker)


def drive_traffic(flow: PaymentFlow, web_url: str) -> None:
    """One of each: paid and refunded, declined, expired by the sweep, forged callbacks."""
    paid, _ = flow.paid()
    refund = flow.admin.post(f"/api/v1/payments/{paid['id']}/refunds", json={"amount": "10.00"})
    assert refund.status_code == 202, refund.text

    declined = flow.payment(flow.order()["id"])
    flow.press(flow.pay(declined["id"]), "decline")

    due = flow.payment(flow.order()["id"])
    flow.move_back("payments", due["id"], 3600, "expires_at")

    for secret in ("wrong-secret", "another-wrong-secret"):
        forged = event_body(paid["id"])
        answer = post_callback(web_url, forged, headers=signed_headers(forged, secret=secret))
        assert answer.status_code == 401

    flow.wait_status(declined["id"], "failed")
    flow.wait_status(due["id"], "expired")
    flow.wait_refund(paid["id"], refund.json()["id"], "succeeded")


def test_every_dashboard_and_recording_rule_expression_returns_data(
        stack, clean_db, admin_key, settings):
    web_url, prometheus = stack
    flow = PaymentFlow(Api(web_url), admin_key, settings.sandbox_api_key, clean_db)
    wait_until(lambda: prometheus.targets_up() == {"web": True, "worker": True}, timeout=30,
               interval=0.5, message="prometheus scraping web and worker")

    started = time.monotonic()
    # Twice, a scrape apart: a labelled series appears at its first increment, and rates
    # and quantiles need it to move between two scrapes to be more than 0 or NaN.
    drive_traffic(flow, web_url)
    prometheus.wait_for_data_since(time.time())
    drive_traffic(flow, web_url)
    prometheus.wait_for_data_since(time.time())
    print(f"traffic and scrapes took {time.monotonic() - started:.1f} s")

    expressions = {**dashboard_expressions(), **recording_expressions()}
    empty, only_nan = [], []
    for name, expr in expressions.items():
        values = [float(sample["value"][1]) for sample in prometheus.query(expr)]
        if not values:
            empty.append(name)
        elif all(v != v for v in values):  # NaN: the series exist but never moved
            only_nan.append(name)
    assert not empty, f"no data for: {empty}"
    assert not only_nan, f"only NaN for: {only_nan}"

    # Every rule evaluates without error, and the alerts read only metrics that exist.
    rules = [rule for group in prometheus.get("rules")["groups"] for rule in group["rules"]]
    assert len(rules) == sum(len(group["rules"]) for group in rule_groups())
    assert [(rule["name"], rule.get("lastError")) for rule in rules
            if rule["health"] != "ok"] == []
    exported = set(prometheus.get("label/__name__/values"))
    assert alert_metric_names() - exported == set()

    # The worker's own endpoint carried the worker's figures; the web's the scrape gauges.
    by_job = {sample["metric"]["job"] for sample in
              prometheus.query('payments_task_seconds_count{task="callbacks.apply_batch"}')}
    assert by_job == {"worker"}
    assert {s["metric"]["job"] for s in prometheus.query("payments_ready")} == {"web"}
    assert prometheus.query('payments:sweep_age_intervals{sweep="expire_payments"}')
