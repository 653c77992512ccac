"""Reading a /metrics scrape in tests."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def scrape(base_url: str) -> Samples:
    """{(sample name, {(label, value), ...}): value} of GET /metrics."""
    response = requests.get(base_url + "/metrics", timeout=30)
    response.raise_for_status()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter nobody has touched yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def has(samples: Samples, name: str) -> bool:
    return any(key[0] == name for key in samples)
