"""What a hostile or unlucky client cannot do to a stream worker: hold more than
its share of streams, or crash a replay with an id or a Redis reply it did not
expect."""

from __future__ import annotations

import pytest
from flask import Flask
from flask import request

from flask_patterns.db import Database
from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import EventStreams
from flask_patterns.streams import MAX_EVENT_ID
from flask_patterns.streams import MemoryBroker
from flask_patterns.streams import parse_event_id
from flask_patterns.streams import RedisBroker
from flask_patterns.tokens import Tokens


def make_app(tmp_path, broker=None, **options):
    app = Flask(__name__)
    app.config.update(
        PATTERNS_DATABASE_URL=f"sqlite:///{tmp_path}/s.db",
        PATTERNS_STREAMS_PUBLIC_CHANNELS=["activity"],
        PATTERNS_STREAMS_HEARTBEAT=0.05,
        SECRET_KEY="stream limits",
    )
    Database(app)
    Tokens(app)
    streams = EventStreams(app, broker=broker or MemoryBroker(), **options)
    app.add_url_rule(
        "/streams/<path:names>",
        "stream",
        lambda names: streams.response(*names.split(",")),
    )
    app.extensions["test.streams"] = streams
    return app


def open_streams(client, count, path="/streams/activity", **kwargs):
    return [client.get(path, buffered=False, **kwargs) for _ in range(count)]


def open_count(app, client_key):
    with app.app_context():
        return app.extensions["test.streams"].open_streams(client_key)


# The cap on open streams per client


def test_a_client_over_the_cap_gets_429_with_retry_after_and_a_reason(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    held = open_streams(client, 10)
    assert [r.status_code for r in held] == [200] * 10
    refused = client.get("/streams/activity", buffered=False)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "at most 10 per client" in refused.get_data(as_text=True)
    assert not refused.content_type.startswith("text/event-stream")
    assert open_count(app, "127.0.0.1") == 10
    for response in held:
        response.close()


def test_a_closed_stream_gives_its_slot_back(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 2
    client = app.test_client()
    first, second = open_streams(client, 2)
    assert client.get("/streams/activity", buffered=False).status_code == 429
    first.close()
    assert open_count(app, "127.0.0.1") == 1
    third = client.get("/streams/activity", buffered=False)
    assert third.status_code == 200
    for response in (second, third):
        response.close()
    assert open_count(app, "127.0.0.1") == 0


def test_a_head_request_whose_stream_never_starts_gives_its_slot_back(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    for _ in range(3):
        response = client.head("/streams/activity")
        assert response.status_code == 200
        assert response.data == b""
        response.close()  # what a WSGI server does with every body
    assert open_count(app, "127.0.0.1") == 0


def test_clients_are_counted_apart(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    mine = client.get("/streams/activity", buffered=False)
    other = client.get(
        "/streams/activity",
        buffered=False,
        environ_overrides={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert (mine.status_code, other.status_code) == (200, 200)
    assert open_count(app, "192.0.2.7") == 1
    mine.close()
    other.close()


def test_the_client_key_decides_who_a_client_is(tmp_path):
    app = make_app(tmp_path, client_key=lambda: request.headers.get("X-User", "anon"))
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    ada = client.get("/streams/activity", headers={"X-User": "ada"}, buffered=False)
    again = client.get("/streams/activity", headers={"X-User": "ada"}, buffered=False)
    bob = client.get("/streams/activity", headers={"X-User": "bob"}, buffered=False)
    assert [r.status_code for r in (ada, again, bob)] == [200, 429, 200]
    ada.close()
    bob.close()


@pytest.mark.parametrize("off", [0, None])
def test_a_cap_of_zero_or_none_is_no_cap(tmp_path, off):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = off
    held = open_streams(app.test_client(), 15)
    assert {r.status_code for r in held} == {200}
    for response in held:
        response.close()


def test_a_refused_private_stream_takes_no_slot(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    assert client.get("/streams/user:ada").status_code == 403
    assert open_count(app, "127.0.0.1") == 0
    response = client.get("/streams/activity", buffered=False)
    assert response.status_code == 200
    response.close()


# Ids and replies a replay did not expect


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (str(MAX_EVENT_ID), MAX_EVENT_ID),
        (str(MAX_EVENT_ID + 1), None),
        (str(2**64 + 1), None),
        ("9" * 20, None),
        ("1" * 21, None),
        ("", None),
        ("-1", None),
        ("٣", None),
        (None, None),
    ],
)
def test_an_event_id_is_a_position_only_within_what_a_broker_hands_out(value, expected):
    assert parse_event_id(value) == expected


@pytest.fixture
def redis_broker(redis_url):
    broker = RedisBroker(redis_url, prefix="{limits}:", health_interval=0.5)
    yield broker
    broker.close()


def test_an_id_past_two_to_the_64_replays_as_a_reset_on_redis(tmp_path, redis_broker):
    newest = redis_broker.publish("activity", "x")
    app = make_app(tmp_path, redis_broker)
    response = app.test_client().get(
        "/streams/activity", headers={"Last-Event-ID": str(2**64 + 1)}, buffered=False
    )
    chunks = iter(response.response)
    next(chunks)  # the opening
    reset = next(chunks).decode()
    assert "event: reset" in reset
    assert f"id: {newest}" in reset
    response.close()


def test_an_error_reply_in_the_replay_pipeline_is_raised_not_iterated(redis_broker):
    redis_broker.publish("activity", "kept")
    # A key of the wrong type where a channel's history should be: XRANGE
    # answers WRONGTYPE inside the pipeline.
    redis_broker.client.set(redis_broker.stream_key("orders"), "not a stream")
    with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
        redis_broker.replay(["activity", "orders"], 0)


def test_a_channel_without_history_replays_empty_on_redis(redis_broker):
    replay = redis_broker.replay(["never-published"], 0)
    assert (replay.events, replay.reset) == ([], False)


def test_a_stream_whose_replay_fails_gets_a_retry_and_a_log_line(
    tmp_path, redis_broker, caplog
):
    redis_broker.client.set(redis_broker.stream_key("activity"), "not a stream")
    app = make_app(tmp_path, redis_broker)
    response = app.test_client().get(
        "/streams/activity", headers={"Last-Event-ID": "1"}, buffered=False
    )
    frames = list(response.response)
    assert frames[0].startswith(b"retry: ")
    assert frames[-1].startswith(b"retry: ")
    assert len(frames) == 2
    assert "could not replay" in caplog.text
    assert "WRONGTYPE" in caplog.text


# Ending the streams of a channel whose right to read has ended


def wait_for_end(response, timeout=10.0):
    """The frames a stream sent until it ended (failing if it does not)."""
    import time

    frames = []
    deadline = time.monotonic() + timeout
    for frame in response.response:
        frames.append(frame)
        assert time.monotonic() < deadline, f"still open: {frames[-3:]}"
    return frames


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_ending_a_channel_ends_its_streams_after_the_commit_and_no_others(
    tmp_path, request, kind
):
    if kind == "memory":
        publisher = listener_side = MemoryBroker()
    else:
        url = request.getfixturevalue("redis_url")
        # Two brokers on one Redis, as in two processes.
        publisher = RedisBroker(url, prefix="{end}:", health_interval=0.5)
        listener_side = RedisBroker(url, prefix="{end}:", health_interval=0.5)
        request.addfinalizer(publisher.close)
        request.addfinalizer(listener_side.close)
    app = make_app(tmp_path, listener_side)
    app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = ["*"]
    client = app.test_client()
    private = client.get("/streams/activity,user:ada", buffered=False)
    other = client.get("/streams/user:bob", buffered=False)
    next(iter(private.response))
    sending = make_app(tmp_path, publisher)
    with sending.app_context():
        sending.extensions["test.streams"].end_channel("user:ada")
        assert open_count(app, "127.0.0.1") == 2, "not before the commit"
    frames = wait_for_end(private)
    assert frames[-1].startswith(b"retry: "), frames
    private.close()
    assert open_count(app, "127.0.0.1") == 1
    publisher.publish("user:bob", "the other stream stays open")
    chunks = iter(other.response)
    assert any(b"stays open" in next(chunks) for _ in range(3))
    other.close()


def test_nothing_is_ended_when_the_task_rolls_back(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = ["*"]
    stream = app.test_client().get("/streams/user:ada", buffered=False)
    with pytest.raises(ZeroDivisionError), app.app_context():
        app.extensions["test.streams"].end_channel("user:ada")
        1 / 0  # noqa: B018
    assert open_count(app, "127.0.0.1") == 1
    broker.publish("user:ada", "still here")
    chunks = iter(stream.response)
    assert any(b"still here" in next(chunks) for _ in range(3))
    stream.close()


def test_ending_a_channel_checks_its_name(tmp_path):
    app = make_app(tmp_path)
    with app.app_context(), pytest.raises(ValueError, match="Invalid channel"):
        app.extensions["test.streams"].end_channel("a b")
