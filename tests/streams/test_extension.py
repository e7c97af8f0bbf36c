"""The Flask extension: publishing after the commit, ending channels, closing a
worker's streams, and its one state per app."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_patterns.streams import close_streams
from flask_patterns.streams import EventStreams
from flask_patterns.streams import MemoryBroker

from .conftest import make_app
from .conftest import open_count
from .conftest import open_stream


def test_event_streams_publish_after_the_task_commits(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    with app.app_context():
        assert EventStreams().broker is broker
        EventStreams().publish("activity", {"x": 1})
        assert broker.events("activity") == []
    assert [e.data for e in broker.events("activity")] == ['{"x":1}']


def test_event_streams_publish_nothing_when_the_task_rolls_back(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    extension = EventStreams()
    with pytest.raises(ZeroDivisionError), app.app_context():
        extension.publish("activity", {"x": 1})
        1 / 0  # noqa: B018
    assert broker.events("activity") == []


def test_event_streams_refuse_double_registration_and_missing_app(tmp_path):
    app = make_app(tmp_path, MemoryBroker())
    with pytest.raises(RuntimeError, match="already registered"):
        EventStreams(app)
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="init_app"):
        EventStreams().broker  # noqa: B018


def test_its_state_is_one_object_under_its_own_key(tmp_path):
    app = make_app(tmp_path)
    state = app.extensions["flask_patterns.streams"]
    with app.app_context():
        assert state.broker is EventStreams().broker


def test_the_renamed_queue_setting_is_named_in_the_error(tmp_path):
    app = Flask(__name__)
    app.config["PATTERNS_STREAMS_QUEUE"] = 10
    with pytest.raises(RuntimeError, match="PATTERNS_STREAMS_QUEUE_LIMIT"):
        EventStreams(app)


def test_every_setting_gets_its_default(tmp_path):
    app = make_app(tmp_path)
    defaults = {
        key: app.config[key]
        for key in app.config
        if key.startswith("PATTERNS_STREAMS_")
        and key
        not in ("PATTERNS_STREAMS_PUBLIC_CHANNELS", "PATTERNS_STREAMS_HEARTBEAT")
    }
    assert defaults == {
        "PATTERNS_STREAMS_RETRY_MS": 3000,
        "PATTERNS_STREAMS_MAX_LIFETIME": 3600.0,
        "PATTERNS_STREAMS_QUEUE_LIMIT": 256,
        "PATTERNS_STREAMS_TOKEN_COOKIE": "stream_token",
        "PATTERNS_STREAMS_TOKEN_MAX_AGE": 86400,
        "PATTERNS_STREAMS_MAX_PER_CLIENT": 10,
        "PATTERNS_STREAMS_WRITE_TIMEOUT": 30.0,
        "PATTERNS_STREAMS_DURABLE": True,
        "PATTERNS_STREAMS_DETACH": True,
    }


def test_closing_a_workers_streams_sends_a_spread_retry_hint(tmp_path):
    app = make_app(tmp_path)
    reader = open_stream(app, "/streams/activity")
    assert close_streams(app) == 1
    (hint,) = reader.frames(1)
    assert hint.startswith(b"retry: ")
    assert 3000 <= int(hint.split()[1]) <= 12000
    assert list(reader.chunks) == []
    reader.close()


def test_closing_the_streams_of_an_app_without_the_extension_closes_none():
    assert close_streams(Flask(__name__)) == 0


def test_ending_a_channel_ends_its_streams_after_the_commit_and_no_others(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    private = open_stream(app, "/streams/activity,user:ada")
    other = open_stream(app, "/streams/user:bob")
    with app.app_context():
        app.extensions["test.streams"].end_channel("user:ada")
        assert open_count(app, "127.0.0.1") == 2, "not before the commit"
    assert private.rest()[-1].startswith(b"retry: ")
    private.close()
    assert open_count(app, "127.0.0.1") == 1
    event_id = broker.publish("user:bob", "the other stream stays open")
    assert other.events(1)[0]["id"] == event_id
    other.close()


def test_nothing_is_ended_when_the_task_rolls_back(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    stream = open_stream(app, "/streams/user:ada")
    with pytest.raises(ZeroDivisionError), app.app_context():
        app.extensions["test.streams"].end_channel("user:ada")
        1 / 0  # noqa: B018
    event_id = broker.publish("user:ada", "still here")
    assert stream.events(1)[0]["id"] == event_id
    stream.close()


def test_ending_a_channel_checks_its_name(tmp_path):
    app = make_app(tmp_path)
    with app.app_context(), pytest.raises(ValueError, match="Invalid channel"):
        app.extensions["test.streams"].end_channel("a b")


def test_recent_reads_the_apps_broker_twenty_events_by_default(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    ids = [broker.publish("activity", n) for n in range(25)]
    with app.app_context():
        recent = EventStreams().recent("activity")
        assert [e.id for e in recent.events] == ids[5:]
        assert recent.last_event_id == ids[-1]
        assert [e.data for e in EventStreams().recent("activity", 2).events] == [
            "23",
            "24",
        ]


def test_recent_lets_broker_unavailable_through_to_the_caller(tmp_path, unused_port):
    from flask_patterns.streams import BrokerUnavailable
    from flask_patterns.streams import RedisBroker

    broker = RedisBroker(f"redis://127.0.0.1:{unused_port}/0")
    app = make_app(tmp_path, broker)
    with app.app_context(), pytest.raises(BrokerUnavailable, match=str(unused_port)):
        EventStreams().recent("activity")
    broker.close()
