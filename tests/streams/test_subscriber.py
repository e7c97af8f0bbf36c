"""The one subscriber connection of a process, through Redis restarts, silent
sockets and a history that went away."""

from __future__ import annotations

import json

import pytest

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import parse_event_id
from flask_patterns.streams import RedisBroker

from .conftest import make_app
from .conftest import open_stream
from .conftest import redis_stream_app


def test_a_crash_of_a_redis_that_loses_no_write_loses_no_event(tmp_path, redis_process):
    # appendfsync always: the history survives the crash, and the broker is
    # told it may keep its epoch.
    broker = RedisBroker(redis_process.url, history_survives_restart=True)
    app = make_app(tmp_path, broker)
    publisher = RedisBroker(redis_process.url, history_survives_restart=True)
    staying = open_stream(app, "/streams/activity")
    first = publisher.publish("activity", "before")
    assert staying.events(1)[0]["id"] == first

    redis_process.kill()
    with pytest.raises(BrokerUnavailable):
        publisher.publish("activity", "while down")
    redis_process.start()
    # Published before the subscriber is back: only the catch-up can deliver these.
    missed = [publisher.publish("activity", n) for n in range(3)]
    assert {parse_event_id(i)[0] for i in [first, *missed]} == {broker.current()[0]}
    assert [e["id"] for e in staying.events(3)] == missed

    returning = open_stream(app, "/streams/activity", **{"Last-Event-ID": first})
    assert [e["id"] for e in returning.events(3)] == missed
    for reader in (staying, returning):
        reader.close()
    publisher.close()
    broker.close()


@pytest.mark.parametrize("empty", [False, True], ids=["with-aof", "empty"])
def test_a_redis_restart_starts_a_new_history_and_every_stream_resets(
    tmp_path, redis_process, empty
):
    # By default a restart may have lost writes (an older snapshot, a replica
    # that lagged): the same positions would come back for other events.
    app, broker = redis_stream_app(tmp_path, redis_process.url)
    publisher = RedisBroker(redis_process.url)
    staying = open_stream(app, "/streams/activity")
    before = [publisher.publish("activity", n) for n in range(3)]
    assert [e["id"] for e in staying.events(3)] == before

    redis_process.kill()
    redis_process.start(empty=empty)
    after = [publisher.publish("activity", f"after {n}") for n in range(5)]
    assert parse_event_id(after[0])[0] != parse_event_id(before[0])[0]
    assert staying.rest()[-1].startswith(b"retry: "), "the old stream ends"

    # A client back with its old id (a position that exists again) is reset,
    # never replayed events of another history.
    returning = open_stream(app, "/streams/activity", **{"Last-Event-ID": before[0]})
    (reset,) = returning.events(1)
    assert (reset["event"], reset["id"]) == ("reset", after[-1])
    assert json.loads(reset["data"]) == {"reason": "history lost"}
    newest = publisher.publish("activity", "live")
    assert returning.events(1)[0]["id"] == newest
    returning.close()
    publisher.close()
    broker.close()


def drop_idle_connections(pool):
    """Disconnect the connections waiting in ``pool``, not the one in use."""
    try:
        pool.disconnect(inuse_connections=False)  # redis-py 7 and newer
    except TypeError:
        # Before 7, a blocking pool keeps its idle connections in a queue.
        for connection in list(pool.pool.queue):
            if connection is not None:
                connection.disconnect()


def test_a_half_open_subscriber_socket_is_noticed_and_replaced(
    tmp_path, redis_process, redis_relay
):
    relayed = f"redis://127.0.0.1:{redis_relay.port}/0"
    app, broker = redis_stream_app(tmp_path, relayed)
    publisher = RedisBroker(redis_process.url)
    reader = open_stream(app, "/streams/activity")
    assert broker.wait_until_subscribed(timeout=5)

    # Only the subscriber's socket stays open through the relay; it goes silent.
    drop_idle_connections(broker.client.connection_pool)
    redis_relay.freeze()
    event_id = publisher.publish("activity", "after the freeze")
    # Pings every 0.2 s, unanswered for 0.6 s: the subscriber reconnects and
    # catches up from the stream history.
    assert reader.events(1, timeout=5)[0]["id"] == event_id
    reader.close()
    publisher.close()
    broker.close()


def test_an_event_published_while_redis_py_reconnects_the_subscriber_arrives(
    tmp_path, redis_process, monkeypatch
):
    import redis

    from flask_patterns.streams import RedisBroker

    from ..observing import recording

    app, broker = redis_stream_app(tmp_path, redis_process.url)
    admin = redis.Redis.from_url(redis_process.url)
    reader = open_stream(app, "/streams/activity")
    try:
        assert broker.wait_until_subscribed(timeout=5)
        # An event whose notification the subscriber never hears, as if it
        # came while its connection was away: it is in the history only.
        with monkeypatch.context() as patch:
            patch.setattr(RedisBroker, "notify_key", property(lambda self: "nowhere"))
            missed = broker.publish("activity", "while the subscriber was away")
        # redis-py reconnects a dropped pub/sub connection by itself and
        # subscribes again, without a word: only a catch-up delivers what the
        # gap held.
        with recording() as recorder:
            assert admin.client_kill_filter(_type="pubsub") == 1
            later = broker.publish("activity", "after")
            assert [e["id"] for e in reader.events(2, timeout=5)] == [missed, later]
        if int(redis.__version__.split(".")[0]) >= 6:
            # redis-py 5.x raises instead of reconnecting by itself, which goes
            # through the outage path (and its catch-up) as it should.
            assert (False,) not in recorder.of("broker"), "a reconnect that worked"
    finally:
        admin.close()
        reader.close()
        broker.close()


def test_streams_are_reset_when_redis_loses_the_history_under_them(tmp_path, redis_url):
    import redis

    app, broker = redis_stream_app(tmp_path, redis_url)
    reader = open_stream(app, "/streams/activity")
    for n in range(3):
        broker.publish("activity", n)
    last = reader.events(3)[-1]["id"]
    redis.Redis.from_url(redis_url).flushdb()
    broker.publish("activity", "after the flush")  # id 1 again
    (hint,) = reader.frames(1)
    assert hint.startswith(b"retry: "), "the stream ends instead of starving"
    returning = open_stream(app, "/streams/activity", **{"Last-Event-ID": last})
    assert returning.events(1)[0]["event"] == "reset"
    returning.close()
    broker.close()


def test_waiting_for_the_subscriber_says_whether_it_listens(redis_process):
    broker = RedisBroker(redis_process.url)
    assert broker.wait_until_subscribed(timeout=0.1) is False, "not started yet"
    broker.subscriber.start()
    assert broker.wait_until_subscribed(timeout=5) is True
    broker.close()


def test_a_stream_opens_at_once_while_redis_is_away(tmp_path, redis_process, caplog):
    import time

    app, broker = redis_stream_app(tmp_path, redis_process.url)
    redis_process.stop()
    started = time.monotonic()
    fresh = open_stream(app, "/streams/activity")  # asserts the opening frame
    returning = open_stream(app, "/streams/activity", **{"Last-Event-ID": "e-1"})
    # Not the subscriber's 5 s wait for a first listen, twice.
    assert time.monotonic() - started < 4
    (hint,) = returning.rest()
    assert hint.startswith(b"retry: ")
    assert "could not replay its history" in caplog.text
    redis_process.start()
    assert broker.wait_until_subscribed(timeout=10)
    event_id = RedisBroker(redis_process.url).publish("activity", "back")
    # Opened before the subscriber ever listened: closed to reconnect and
    # replay, or delivered; never silently starved.
    (frame,) = fresh.frames(1)
    assert frame.startswith(b"retry: ") or event_id.encode() in frame
    fresh.close()
    returning.close()
    broker.close()
