"""The Prometheus metrics of units of work, after-commit callbacks, the outbox
and the broker, read from the exposition as Prometheus reads it, on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import pytest
from flask import abort
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_patterns import observe
from flask_patterns.db import after_commit
from flask_patterns.db import Database
from flask_patterns.metrics import Metrics
from flask_patterns.metrics import MetricsObserver
from flask_patterns.outbox import Outbox
from flask_patterns.streams import EventStreams
from flask_patterns.streams import MemoryBroker
from flask_patterns.streams import RedisBroker

from .conftest import child
from .conftest import db
from .conftest import insert
from .scraping import scrape_app

TRANSACTIONS = "flask_patterns_transactions_total"
COMMIT_COUNT = "flask_patterns_commit_duration_seconds_count"
CALLBACK_ERRORS = "flask_patterns_after_commit_errors_total"
DELIVERIES = "flask_patterns_outbox_deliveries_total"
MESSAGES = "flask_patterns_outbox_messages"
OLDEST = "flask_patterns_outbox_oldest_pending_age_seconds"
BROKER_UP = "flask_patterns_broker_up"


@pytest.fixture
def metrics(app):
    app.extensions["test.metrics"] = Metrics(app)
    return app.extensions["test.metrics"]


@pytest.fixture
def client(app, metrics, probe):
    @app.post("/write/<int:status>")
    def write(status):
        probe.write("written")
        if status >= 400:
            abort(status)
        return ""

    @app.post("/marked")
    def marked():
        probe.write("marked")
        db.set_rollback()
        return ""

    @app.post("/rolled-back")
    def rolled_back():
        probe.write("rolled back")
        db.session.rollback()
        return ""

    @app.post("/dangling")
    def dangling():
        db.session.execute(child.insert().values(item_id=999))
        return ""

    @app.post("/callback")
    def callback():
        probe.write("with a failing callback")
        after_commit(lambda: 1 / 0)
        return ""

    return app.test_client()


def outcomes(after, before):
    """How many transactions ended each way between two scrapes."""
    return {
        outcome: after.since(before, TRANSACTIONS, outcome=outcome)
        for outcome in observe.TRANSACTION_OUTCOMES
    }


def test_every_series_is_there_from_the_start(app, metrics):
    scrape = scrape_app(app)
    assert scrape.content_type.startswith("text/plain; version=")
    for outcome in observe.TRANSACTION_OUTCOMES:
        assert scrape.has(TRANSACTIONS, outcome=outcome)
    for result in ("sent", "retry", "failed"):
        assert scrape.has(DELIVERIES, result=result)
    for reason in observe.DISCONNECT_REASONS:
        assert scrape.has("flask_patterns_stream_disconnects_total", reason=reason)
    for name in (
        CALLBACK_ERRORS,
        COMMIT_COUNT,
        "flask_patterns_streams_open",
        "flask_patterns_stream_events_sent_total",
        "flask_patterns_stream_resets_total",
        "flask_patterns_stream_publish_to_send_seconds_count",
    ):
        assert scrape.has(name), name
    for le in ("0.0005", "10.0", "+Inf"):
        assert scrape.has("flask_patterns_commit_duration_seconds_bucket", le=le)
    for le in ("0.001", "30.0", "+Inf"):
        assert scrape.has("flask_patterns_stream_publish_to_send_seconds_bucket", le=le)
    # This app has no outbox.
    assert not scrape.has(MESSAGES, state="pending")


def test_a_committed_request_counts_a_commit_and_how_long_it_took(app, client):
    before = scrape_app(app)
    assert client.post("/write/200").status_code == 200
    after = scrape_app(app)
    assert outcomes(after, before) == {
        "commit": 1,
        "rollback": 0,
        "veto": 0,
        "error": 0,
    }
    assert after.since(before, COMMIT_COUNT) == 1
    assert 0 < after.since(before, "flask_patterns_commit_duration_seconds_sum") < 10
    bucket = "flask_patterns_commit_duration_seconds_bucket"
    assert after.since(before, bucket, le="10.0") == 1


def test_a_vetoed_request_counts_a_veto_and_no_commit(app, client):
    before = scrape_app(app)
    assert client.post("/write/409").status_code == 409
    after = scrape_app(app)
    assert outcomes(after, before) == {
        "commit": 0,
        "rollback": 0,
        "veto": 1,
        "error": 0,
    }
    assert after.since(before, COMMIT_COUNT) == 0


@pytest.mark.parametrize("path", ["/marked", "/rolled-back"])
def test_a_rollback_the_view_asked_for_counts_a_rollback(app, client, path):
    before = scrape_app(app)
    assert client.post(path).status_code == 200
    after = scrape_app(app)
    assert outcomes(after, before) == {
        "commit": 0,
        "rollback": 1,
        "veto": 0,
        "error": 0,
    }


def test_a_failing_commit_counts_an_error_and_no_rollback(app, client):
    before = scrape_app(app)
    assert client.post("/dangling").status_code == 500
    after = scrape_app(app)
    assert outcomes(after, before) == {
        "commit": 0,
        "rollback": 0,
        "veto": 0,
        "error": 1,
    }
    assert after.since(before, COMMIT_COUNT) == 1, "a failed commit takes time too"


def test_a_failing_robust_callback_counts_an_after_commit_error(app, client, caplog):
    before = scrape_app(app)
    with caplog.at_level(logging.CRITICAL):
        assert client.post("/callback").status_code == 200
    after = scrape_app(app)
    assert after.since(before, CALLBACK_ERRORS) == 1
    assert outcomes(after, before)["commit"] == 1


def test_a_scrape_is_no_transaction_of_its_own(app, metrics, outbox):
    before = scrape_app(app)
    after = scrape_app(app)
    assert set(outcomes(after, before).values()) == {0}
    assert after(MESSAGES, state="pending") == 0


def test_outbox_deliveries_count_sent_retry_and_failed_and_the_rows_follow(
    app, metrics, outbox, clock, caplog
):
    caplog.set_level(logging.CRITICAL, logger="flask_patterns.outbox")
    start = scrape_app(app)
    with app.app_context():
        outbox.add("mail", {"to": "ada"})
    sent = scrape_app(app)
    assert sent.since(start, DELIVERIES, result="sent") == 1
    assert (sent(MESSAGES, state="pending"), sent(OLDEST)) == (0, 0)

    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"to": "grace"})
    retried = scrape_app(app)
    assert retried.since(sent, DELIVERIES, result="retry") == 1
    assert retried(MESSAGES, state="pending") == 1
    clock(30)
    assert scrape_app(app)(OLDEST) == pytest.approx(30)

    with app.app_context():
        assert outbox.work() == 1
    worked = scrape_app(app)
    assert worked.since(retried, DELIVERIES, result="sent") == 1
    assert (worked(MESSAGES, state="pending"), worked(OLDEST)) == (0, 0)

    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 1
    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"to": "alan"})
    failed = scrape_app(app)
    assert failed.since(worked, DELIVERIES, result="failed") == 1
    assert failed.since(worked, DELIVERIES, result="retry") == 0
    assert (failed(MESSAGES, state="failed"), failed(MESSAGES, state="pending")) == (
        1,
        0,
    )


def test_the_outbox_state_counts_rows_whoever_wrote_them(app, metrics, outbox):
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=90)
    insert(app, str(uuid.uuid4()), "mail", '{"to": "ada"}', at=long_ago)
    insert(app, str(uuid.uuid4()), "mail", '{"to": "grace"}')
    scrape = scrape_app(app)
    assert scrape(MESSAGES, state="pending") == 2
    assert 90 <= scrape(OLDEST) < 120


def test_an_outbox_table_that_cannot_be_read_leaves_out_only_its_figures(
    tmp_path, caplog
):
    app = Flask("no_outbox_table")
    app.config["PATTERNS_DATABASE_URL"] = f"sqlite:///{tmp_path}/empty.db"
    database = Database(app)
    Outbox(app, db=database)
    app.extensions["test.metrics"] = Metrics(app)
    with caplog.at_level(logging.WARNING, logger="flask_patterns.metrics"):
        scrape = scrape_app(app)
    assert scrape.has(TRANSACTIONS, outcome="commit")
    assert not scrape.has(MESSAGES, state="pending")
    assert "The outbox metrics are left out" in caplog.text
    database.engine_for(app).dispose()


def test_a_memory_broker_is_always_up():
    app = Flask("memory_broker")
    EventStreams(app, broker=MemoryBroker())
    app.extensions["test.metrics"] = Metrics(app)
    observe.broker_seen(False)
    assert scrape_app(app)(BROKER_UP) == 1


def test_broker_up_follows_a_redis_that_stops_and_starts_again(redis_process):
    app = Flask("redis_broker")
    broker = RedisBroker(redis_process.url)
    EventStreams(app, broker=broker)
    app.extensions["test.metrics"] = Metrics(app)
    try:
        assert scrape_app(app)(BROKER_UP) == 1
        redis_process.stop()
        assert scrape_app(app)(BROKER_UP) == 0
        redis_process.start()
        assert scrape_app(app)(BROKER_UP) == 1
    finally:
        broker.close()


def test_events_sent_counts_each_stream_and_times_only_published_events():
    registry = CollectorRegistry()
    observer = MetricsObserver(registry)
    seconds = "flask_patterns_stream_publish_to_send_seconds"
    observer.events_sent(3, None)
    assert registry.get_sample_value("flask_patterns_stream_events_sent_total") == 3
    assert registry.get_sample_value(f"{seconds}_count") == 0
    observer.events_sent(2, time.time() - 0.2)
    assert registry.get_sample_value("flask_patterns_stream_events_sent_total") == 5
    assert registry.get_sample_value(f"{seconds}_count") == 1
    assert 0.2 <= registry.get_sample_value(f"{seconds}_sum") < 1
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "0.1"}) == 0
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "0.25"}) == 1


def test_metrics_registers_once_per_app_and_observes_once_per_process(app, metrics):
    with pytest.raises(RuntimeError, match="already registered"):
        Metrics(app)
    Metrics(Flask("another_app"))
    ours = [o for o in observe.observers() if isinstance(o, MetricsObserver)]
    assert len(ours) == 1


def test_an_app_without_metrics_cannot_render_them():
    app = Flask("without_metrics")
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        Metrics().exposition()
