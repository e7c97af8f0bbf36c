"""Reading the metrics as Prometheus reads them, for the tests of
:mod:`flask_patterns.metrics`."""

from __future__ import annotations

import typing as t
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One exposition, parsed: ``scrape("name_total", label="value")`` is the
    value of that sample."""

    def __init__(self, text: str, content_type: str = "text/plain") -> None:
        self.content_type = content_type
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.values[key] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.values[(name, frozenset(labels.items()))]

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.values

    def since(self, before: Scrape, name: str, **labels: str) -> float:
        """How far the sample moved since ``before``."""
        return self(name, **labels) - before(name, **labels)


def scrape_app(app: t.Any) -> Scrape:
    """The exposition of ``app``'s :class:`~flask_patterns.metrics.Metrics`."""
    with app.app_context():
        body, content_type = app.extensions["test.metrics"].exposition()
    return Scrape(body.decode(), content_type)


def scrape_url(url: str) -> Scrape:
    """``GET url``, parsed."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return Scrape(response.read().decode(), response.headers["Content-Type"])
