"""What observers are told about streams and brokers: each stream's start
and end with its reason, the events written and when they were published,
resets, the broker's state, and the context that travels with an event."""

from __future__ import annotations

import time

import pytest
from conftest import wait_for

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import close_streams
from flask_patterns.streams import Listener
from flask_patterns.streams import RedisBroker

from ..observing import recording
from .conftest import make_app
from .conftest import open_stream


@pytest.fixture
def recorder():
    with recording() as recorder:
        yield recorder


def test_a_stream_is_told_open_each_event_it_writes_and_its_end(
    stream_app, broker, recorder
):
    reader = open_stream(stream_app, "/streams/activity")
    assert recorder.of("opened") == [()]
    before = time.time()
    broker.publish("activity", 1)
    reader.events(1)
    broker.publish("activity", 2)
    reader.events(1)
    reader.close()
    sent = recorder.of("sent")
    assert [count for count, _ in sent] == [1, 1]
    assert all(before <= published <= time.time() for _, published in sent)
    assert recorder.of("closed") == [("client",)]


def test_a_stream_that_reached_its_lifetime_is_told_so(stream_app, recorder):
    stream_app.config["PATTERNS_STREAMS_MAX_LIFETIME"] = 0.2
    reader = open_stream(stream_app, "/streams/activity")
    reader.rest()
    reader.close()
    assert recorder.of("closed") == [("lifetime",)]


def test_streams_closed_for_a_shutdown_are_told_so(stream_app, recorder):
    reader = open_stream(stream_app, "/streams/activity")
    assert close_streams(stream_app) == 1
    reader.rest()
    reader.close()
    assert recorder.of("closed") == [("shutdown",)]


def test_streams_of_an_ended_channel_are_told_so(stream_app, broker, recorder):
    reader = open_stream(stream_app, "/streams/activity")
    other = open_stream(stream_app, "/streams/other")
    with stream_app.app_context():
        stream_app.extensions["test.streams"].end_channel("activity")
    reader.rest()
    reader.close()
    other.close()
    assert sorted(recorder.of("closed")) == [("channel_ended",), ("client",)]


def test_a_slow_stream_is_told_as_slow(stream_app, broker, recorder):
    stream_app.config["PATTERNS_STREAMS_QUEUE_LIMIT"] = 2
    reader = open_stream(stream_app, "/streams/activity")
    for n in range(5):
        broker.publish("activity", n)
    reader.rest()
    reader.close()
    assert recorder.of("closed") == [("slow",)]


def test_a_client_from_another_history_is_told_as_a_reset(stream_app, broker, recorder):
    reader = open_stream(stream_app, "/streams/activity", **{"Last-Event-ID": "x-1"})
    (reset,) = reader.events(1)
    assert reset["event"] == "reset"
    reader.close()
    assert recorder.of("reset") == [("history lost",)]
    # The catch-up is written at once: an event with no publish time.
    assert recorder.of("sent") == [(1, None)]


def test_a_stream_whose_replay_fails_is_told_as_a_broker_end(
    tmp_path, redis_url, recorder
):
    broker = RedisBroker(redis_url, prefix="{observed-failing}:")
    broker.client.set(broker.stream_key("activity"), "not a stream")
    app = make_app(tmp_path, broker)
    reader = open_stream(app, "/streams/activity", **{"Last-Event-ID": "1"})
    reader.rest()
    reader.close()
    broker.client.delete(broker.stream_key("activity"))
    broker.close()
    assert recorder.of("closed") == [("broker",)]
    assert ("broker", False) in recorder.told


def test_an_event_carries_its_publish_time_and_context_to_other_processes(
    redis_url, recorder
):
    publisher = RedisBroker(redis_url, prefix="{observed}:")
    receiver = RedisBroker(redis_url, prefix="{observed}:", health_interval=0.2)
    listener = Listener(["activity"])
    receiver.subscribe(listener)
    try:
        assert receiver.wait_until_subscribed(5)
        before = time.time()
        publisher.publish("activity", {"n": 1})
        stored = listener.receive(5)
        assert stored is not None
        assert before <= stored.published_at <= time.time()
        assert stored.context == {"origin": "test"}
        assert (
            "resumed",
            "flask_patterns.streams.deliver",
            {"origin": "test"},
            {"channel": "activity"},
        ) in recorder.told
        assert ("span", "flask_patterns.streams.publish", {"channel": "activity"}) in (
            recorder.told
        )
        assert ("broker", True) in recorder.told
    finally:
        receiver.unsubscribe(listener)
        receiver.close()
        publisher.close()


def test_a_broker_that_stops_answering_is_told_down_then_up(redis_process, recorder):
    broker = RedisBroker(redis_process.url, prefix="{observed}:")
    try:
        broker.publish("activity", 1)
        redis_process.stop()
        with pytest.raises(BrokerUnavailable):
            broker.publish("activity", 2)
        redis_process.start()
        wait_for(lambda: _answers(broker))
    finally:
        broker.close()
    states = [up for (up,) in recorder.of("broker")]
    assert states[0] is True
    assert False in states
    assert states[-1] is True
    assert states.index(False) > 0


def _answers(broker):
    try:
        broker.ping()
    except BrokerUnavailable:
        return False
    return True


@pytest.mark.parametrize(
    "notification",
    [
        ["e-1", "activity", "1", ""],  # from a publisher before publish times
        ["e-1", "activity", "1", "", "soon", "{not json"],
        ["e-1", "activity", "1", "", "", "[1, 2]"],
    ],
)
def test_an_event_with_no_or_malformed_context_is_still_delivered(
    redis_url, notification
):
    import json

    broker = RedisBroker(redis_url, prefix="{observed-old}:")
    listener = Listener(["activity"])
    broker.fan_out.add(listener)
    try:
        broker.subscriber.deliver(json.dumps(notification).encode())
        stored = listener.receive(1)
    finally:
        broker.fan_out.remove(listener)
        broker.close()
    assert (stored.id, stored.data) == ("e-1", "1")
    assert stored.published_at is None
    assert stored.context is None


def test_a_detached_stream_given_up_twice_gives_its_slot_back_once(recorder):
    from flask_patterns.streams import MemoryBroker
    from flask_patterns.streams.detached import DetachedStream
    from flask_patterns.streams.response import StreamSettings

    given_back = []
    settings = StreamSettings(heartbeat=15, retry_ms=3000, lifetime=60, queue_limit=8)
    stream = DetachedStream(
        ["activity"],
        MemoryBroker(),
        settings,
        lambda: given_back.append(1),
        chunked=True,
    )
    stream.close_reason = "client"
    # A failed shutdown after the first abandon leads to a second one.
    stream.abandon()
    stream.abandon()
    assert given_back == [1]
    assert recorder.of("closed") == [("client",)]
    assert DetachedStream.open_count == 0
