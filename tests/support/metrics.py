"""Scraping `/metrics` as Prometheus does: the text format parsed by prometheus_client's parser."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "scrape-me-0123456789abcdef"

# A sample: its name and its labels (sorted), e.g. ("siwa_bearer_checks_total", (("outcome",
# "success"),)).
Series = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> dict[Series, float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, token: str = METRICS_TOKEN) -> dict[Series, float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    """One sample's value; 0 for a series that does not exist (yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict[Series, float], after: dict[Series, float], name: str,
          **labels: str) -> float:
    """How much a counter grew between two scrapes (metrics are per process, not per app)."""
    return value(after, name, **labels) - value(before, name, **labels)
