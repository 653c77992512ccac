"""A real Prometheus server for tests: ops/prometheus's own scrape config and rules, with
the compose stack's DNS discovery swapped for the test processes' addresses and a 1 s
scrape and evaluation interval. It listens on a free loopback port, keeps its data in the
test's temp dir and is stopped (with its process group) at the end."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from config import PROJECT_ROOT
from devstack.scratch_servers import listening_process
from tests.support.processes import wait_until

OPS = PROJECT_ROOT / "ops" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
INTERVAL = "1s"


def scrape_config_for(targets: dict[str, str]) -> dict[str, Any]:
    """ops/prometheus/prometheus.yml with {job name: host:port} as its targets; every job
    of the real config must be given one, so a renamed job cannot go unnoticed."""
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=INTERVAL, evaluation_interval=INTERVAL,
                            scrape_timeout=INTERVAL)
    config["rule_files"] = [str(OPS / pattern) for pattern in config["rule_files"]]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), f"the test gives targets for {set(targets)}, config has {jobs}"
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs")
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) of `expr` now."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def targets_up(self) -> dict[str, bool]:
        """{job: its target was scraped successfully last time}."""
        return {target["labels"]["job"]: target["health"] == "up"
                for target in self.get("targets")["activeTargets"]}

    def wait_for_data_since(self, since: float, timeout: float = 30) -> None:
        """Until every target was scraped successfully after `since` (unix time) and every
        rule group evaluated after that: what happened before `since` is queryable.
        Waiting on Prometheus' own timestamps, not a sleep: a scrape that timed out on a
        busy machine is simply waited past."""
        def scraped() -> float | None:  # the last scrape's end, once all began after since
            targets = self.get("targets")["activeTargets"]
            starts = [_unix(t["lastScrape"]) for t in targets if t["health"] == "up"]
            if len(starts) < len(targets) or min(starts) <= since:
                return None
            return max(_unix(t["lastScrape"]) + t["lastScrapeDuration"] for t in targets)

        last_scrape = wait_until(scraped, timeout=timeout, interval=0.2,
                                 message="a successful scrape of every target")
        wait_until(lambda: all(_unix(group["lastEvaluation"]) > last_scrape
                               for group in self.get("rules")["groups"]),
                   timeout=timeout, interval=0.2, message="the rules evaluated again")


@contextmanager
def prometheus_server(targets: dict[str, str], run_dir: Path) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` ({job: host:port}); yields once it is ready."""
    assert PROMETHEUS is not None, "prometheus is not installed"
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config_for(targets)))

    def command(port: int) -> list[str]:
        return [PROMETHEUS, f"--config.file={config_path}",
                f"--storage.tsdb.path={run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]

    with listening_process(command, {}, run_dir / "prometheus.log") as port:
        server = Prometheus(f"http://127.0.0.1:{port}")
        wait_until(lambda: _ready(server.url), timeout=30, message="prometheus ready")
        yield server


def _unix(rfc3339: str) -> float:
    """Prometheus' timestamps carry nanoseconds; Python reads up to microseconds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False
