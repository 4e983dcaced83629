"""Scraping a process's /metrics as Prometheus would, and waiting for a figure."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scraped(dict):
    """(sample name, sorted labels) -> value."""

    def value(self, name: str, **labels: str) -> float:
        return self.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> Scraped:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = Scraped()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def eventually(read, check, timeout: float = 20.0):
    """`read()` until `check` holds of it; the last reading is returned, for the assertion."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if check(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)
