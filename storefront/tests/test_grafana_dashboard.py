"""The Grafana dashboard, ``deploy/grafana/flask-patterns.json``, asks Prometheus
only for series that the storefront's ``/metrics`` really serves, with labels
and label values those series really have, and has a panel for each thing an
operator watches.

The series are read from a scrape of a real app (text format, parsed by
prometheus_client), so a metric renamed in :mod:`flask_patterns.metrics`, or a
name misspelt in the dashboard, fails here instead of drawing an empty panel.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest
from flask.testing import FlaskClient

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "flask-patterns.json"
)
#: Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"job", "instance"})

SERIES = re.compile(r"\bflask_patterns_[A-Za-z0-9_:]*")
SELECTOR = re.compile(r"\b(flask_patterns_[A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(flask_patterns_\w*)[^,]*,\s*(\w+)\s*\)")
QUANTILE = re.compile(r"histogram_quantile\(\s*([0-9.]+)\s*,")

#: Sample name -> label name -> the values served.
Served = dict[str, dict[str, set[str]]]


class Watched(t.NamedTuple):
    """A panel the dashboard must have: one of its queries reads ``series``,
    per second when ``rate``, split by the label ``by``, and its queries
    together draw the ``quantiles`` of a histogram."""

    name: str
    series: str
    rate: bool = False
    by: str | None = None
    quantiles: frozenset[str] = frozenset()


WATCHED = [
    Watched("streams open", "flask_patterns_streams_open"),
    Watched(
        "disconnects by reason",
        "flask_patterns_stream_disconnects_total",
        rate=True,
        by="reason",
    ),
    Watched(
        "events sent per second", "flask_patterns_stream_events_sent_total", rate=True
    ),
    Watched(
        "publish-to-send latency",
        "flask_patterns_stream_publish_to_send_seconds_bucket",
        rate=True,
        by="le",
        quantiles=frozenset({"0.5", "0.9", "0.99"}),
    ),
    Watched("broker up", "flask_patterns_broker_up"),
    Watched(
        "commits by outcome",
        "flask_patterns_transactions_total",
        rate=True,
        by="outcome",
    ),
    Watched(
        "commit duration p99",
        "flask_patterns_commit_duration_seconds_bucket",
        rate=True,
        by="le",
        quantiles=frozenset({"0.99"}),
    ),
    Watched(
        "after-commit errors", "flask_patterns_after_commit_errors_total", rate=True
    ),
    Watched("outbox backlog", "flask_patterns_outbox_messages", by="state"),
    Watched("oldest pending age", "flask_patterns_outbox_oldest_pending_age_seconds"),
    Watched(
        "outbox deliveries by result",
        "flask_patterns_outbox_deliveries_total",
        rate=True,
        by="result",
    ),
]


def load_dashboard() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], json.loads(DASHBOARD.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every panel, including those inside rows (a collapsed row holds its own)."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_expressions(panel: dict[str, t.Any]) -> list[str]:
    return [target["expr"] for target in panel.get("targets", []) if "expr" in target]


def variable_query(variable: dict[str, t.Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def expressions(dashboard: dict[str, t.Any]) -> list[str]:
    """The PromQL of every panel target and of every query variable."""
    found = [e for panel in panels(dashboard) for e in panel_expressions(panel)]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable_query(variable))
    return found


@pytest.fixture
def served(client: FlaskClient) -> Served:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    samples: Served = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples


def test_the_dashboard_queries_some_series_of_each_kind() -> None:
    names = {name for e in expressions(load_dashboard()) for name in SERIES.findall(e)}
    assert any(name.endswith("_total") for name in names)
    assert any(name.endswith("_bucket") for name in names)
    assert "flask_patterns_streams_open" in names


def test_every_series_the_dashboard_queries_is_served(served: Served) -> None:
    unknown = {
        name: e
        for e in expressions(load_dashboard())
        for name in SERIES.findall(e)
        if name not in served
    }
    assert not unknown, f"not served by /metrics: {unknown}"


def literal(operator: str, value: str) -> bool:
    """Whether a matcher names one value (not a pattern or a variable)."""
    return operator in ("=", "!=") and "$" not in value


def test_every_label_the_dashboard_selects_is_on_its_series(served: Served) -> None:
    wrong = []
    for e in expressions(load_dashboard()):
        for name, matchers in SELECTOR.findall(e):
            labels = served.get(name, {})
            for label, operator, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    wrong.append(f"{name} has no label {label!r}")
                elif literal(operator, value) and value not in labels[label]:
                    wrong.append(f"{name} has no {label}={value!r}")
        for name, label in LABEL_VALUES.findall(e):
            if label not in TARGET_LABELS and label not in served.get(name, {}):
                wrong.append(f"{name} has no label {label!r}")
    assert not wrong, wrong


def test_every_label_the_dashboard_groups_by_is_on_its_series(served: Served) -> None:
    wrong = []
    for e in expressions(load_dashboard()):
        names = set(SERIES.findall(e))
        for grouping in GROUPING.findall(e):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                if label in TARGET_LABELS:
                    continue
                wrong.extend(
                    f"{name} has no label {label!r}: {e}"
                    for name in names
                    if label not in served.get(name, {})
                )
    assert not wrong, wrong


def shows(panel: dict[str, t.Any], watched: Watched) -> bool:
    reading = [
        e for e in panel_expressions(panel) if watched.series in SERIES.findall(e)
    ]
    rated = re.compile(rf"\b(?:rate|irate|increase)\(\s*{watched.series}\b")
    if watched.rate:
        reading = [e for e in reading if rated.search(e)]
    if watched.by is not None:
        reading = [
            e
            for e in reading
            if any(
                watched.by in (part.strip() for part in grouping.split(","))
                for grouping in GROUPING.findall(e)
            )
        ]
    drawn = {q for e in reading for q in QUANTILE.findall(e)}
    return bool(reading) and watched.quantiles <= drawn


@pytest.mark.parametrize("watched", WATCHED, ids=lambda watched: watched.name)
def test_the_dashboard_has_a_panel_for(watched: Watched) -> None:
    assert any(shows(panel, watched) for panel in panels(load_dashboard()))


def test_every_family_the_library_serves_is_on_the_dashboard(served: Served) -> None:
    queried = {
        name for e in expressions(load_dashboard()) for name in SERIES.findall(e)
    }
    families = {
        re.sub(r"_(total|created|bucket|sum|count)$", "", name)
        for name in served
        if name.startswith("flask_patterns_")
    }
    missing = {
        family
        for family in families
        if not any(re.sub(r"_(total|bucket)$", "", q) == family for q in queried)
    }
    assert not missing, f"served but on no panel: {sorted(missing)}"


def test_every_panel_queries_the_chosen_prometheus_data_source() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == chosen, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == chosen for target in panel["targets"])
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == chosen, variable["name"]


def test_the_dashboard_is_a_current_grafana_one() -> None:
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["refresh"]
    assert dashboard["time"]["from"].startswith("now-")
    for panel in panels(dashboard):
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
