"""Durable publishing: events held with the transaction that publishes them and
relayed to Redis after the commit, also when Redis was away at that moment."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_patterns.db import Database
from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import EventStreams
from flask_patterns.streams import MemoryBroker
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.extension import event_relay
from flask_patterns.streams.relay import held_event_table
from flask_patterns.streams.relay import metadata

_engines = []


@pytest.fixture(autouse=True)
def _dispose_engines():
    yield
    while _engines:
        _engines.pop().dispose()


def durable_app(database_url, broker, *, tables=True):
    app = Flask(__name__)
    app.config["PATTERNS_DATABASE_URL"] = database_url
    db = Database(app)
    streams = EventStreams(app, broker=broker)
    _engines.append(db.engine_for(app))
    if tables:
        with app.app_context():
            metadata.create_all(db.engine)
    return app, db, streams


def held(app):
    with app.app_context():
        return event_relay(app).held()


def published(broker, channel):
    return [e.data for e in broker.replay([channel], 0).events]


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def redis_broker(redis_process):
    broker = RedisBroker(redis_process.url)
    yield broker
    broker.close()


def test_an_event_is_held_in_the_transaction_and_relayed_after_the_commit(
    database_url, redis_broker
):
    app, db, streams = durable_app(database_url, redis_broker)
    with app.app_context():
        streams.publish("orders", {"n": 1})
        # In the transaction, not yet at the broker.
        rows = db.session.execute(sa.select(held_event_table.c.data)).scalars()
        assert list(rows) == ['{"n":1}']
        assert published(redis_broker, "orders") == []
    assert published(redis_broker, "orders") == ['{"n":1}']
    assert held(app) == 0, "forgotten once the broker has it"


def test_a_rolled_back_transaction_holds_and_publishes_nothing(
    database_url, redis_broker
):
    app, _, streams = durable_app(database_url, redis_broker)
    with pytest.raises(ZeroDivisionError), app.app_context():
        streams.publish("orders", "never")
        1 / 0  # noqa: B018
    assert held(app) == 0
    assert published(redis_broker, "orders") == []


def test_events_committed_while_redis_is_down_are_relayed_in_order_when_it_is_back(
    database_url, redis_process, redis_broker, caplog
):
    app, _, streams = durable_app(database_url, redis_broker)
    redis_process.stop()
    caplog.set_level(logging.WARNING, "flask_patterns")
    for n in range(5):
        with app.app_context():
            streams.publish("orders", n)
            streams.publish("other", f"o{n}")
    assert held(app) == 10
    away = [r for r in caplog.records if "broker is away" in r.getMessage()]
    assert len(away) == 1, "one line per outage, not one per event"

    redis_process.start()
    wait_for(lambda: held(app) == 0)
    assert published(redis_broker, "orders") == [str(n) for n in range(5)]
    assert published(redis_broker, "other") == [f"o{n}" for n in range(5)]
    wait_for(lambda: any("answers again" in r.getMessage() for r in caplog.records))
    # Back to the fast path.
    with app.app_context():
        streams.publish("orders", 5)
    assert published(redis_broker, "orders")[-1] == "5"


def test_older_held_events_of_a_channel_go_out_before_a_new_one(
    database_url, redis_broker
):
    app, db, streams = durable_app(database_url, redis_broker)
    relay = None
    with app.app_context():
        relay = event_relay(app)
        # What a process that died after its commit left behind.
        with db.transaction() as session:
            relay.hold(session, "orders", "left behind", None)
        streams.publish("orders", "new")
    assert published(redis_broker, "orders") == ["left behind", "new"]
    assert relay.held() == 0


def test_an_event_relayed_twice_reaches_the_broker_once(database_url, redis_broker):
    app, db, _ = durable_app(database_url, redis_broker)
    with app.app_context():
        relay = event_relay(app)
        with db.transaction() as session:
            held_id = relay.hold(session, "orders", "once", None)
        (row,) = relay._rows(held_event_table.c.id == held_id, limit=1)
        # A relay that published and died before forgetting the row.
        redis_broker.publish(row.channel, row.data, key=row.key)
        assert relay.relay_all() == 1
    assert published(redis_broker, "orders") == ["once"]


def test_the_worker_command_relays_what_is_held(database_url, redis_process):
    broker = RedisBroker(redis_process.url)
    app, db, _ = durable_app(database_url, broker)
    with app.app_context(), db.transaction() as session:
        event_relay(app).hold(session, "orders", "from a dead process", None)
    redis_process.stop()
    result = app.test_cli_runner().invoke(args=["streams", "relay", "--once"])
    assert result.exit_code == 1
    assert "Redis at 127.0.0.1" in result.output
    redis_process.start()
    result = app.test_cli_runner().invoke(args=["streams", "relay", "--once"])
    assert result.exit_code == 0, result.output
    assert "Relayed 1 held event(s)." in result.output
    assert published(broker, "orders") == ["from a dead process"]
    broker.close()


def test_best_effort_events_are_not_held_and_are_lost_while_redis_is_down(
    database_url, redis_process, redis_broker, caplog
):
    app, _, streams = durable_app(database_url, redis_broker)
    app.config["PATTERNS_STREAMS_DURABLE"] = False
    redis_process.stop()
    with app.app_context():
        streams.publish("orders", "lost")
        streams.publish("orders", "held", durable=True)
    assert held(app) == 1
    assert "Error calling" in caplog.text, "the lost one is logged"
    redis_process.start()
    wait_for(lambda: held(app) == 0)
    assert published(redis_broker, "orders") == ["held"]


def test_publishing_outside_a_unit_of_work_raises_when_redis_is_down(
    database_url, redis_process, redis_broker
):
    _, _, streams = durable_app(database_url, redis_broker)
    app = Flask(__name__)
    EventStreams(app, broker=redis_broker)  # no Database: no unit of work
    redis_process.stop()
    with app.app_context(), pytest.raises(BrokerUnavailable):
        streams.publish("orders", "at once")


def test_a_missing_table_is_named_with_the_way_out(database_url, redis_broker):
    app, _, streams = durable_app(database_url, redis_broker, tables=False)
    missing = pytest.raises(RuntimeError, match="flask_patterns_held_event")
    with missing as caught, app.app_context():
        streams.publish("orders", 1)
    assert "metadata.create_all" in str(caught.value)
    assert "PATTERNS_STREAMS_DURABLE = False" in str(caught.value)


def test_an_in_process_broker_needs_no_table(tmp_path):
    broker = MemoryBroker()
    app, _, streams = durable_app(f"sqlite:///{tmp_path}/m.db", broker, tables=False)
    with app.app_context():
        streams.publish("orders", "direct")
        assert broker.events("orders") == []
    assert [e.data for e in broker.events("orders")] == ["direct"]
