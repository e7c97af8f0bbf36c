"""The stream on the wire: the opening frame, live events, heartbeats, replay
and reset, slow clients, the end of a stream."""

from __future__ import annotations

import json

import pytest

from .conftest import make_app
from .conftest import open_count
from .conftest import open_stream


def test_stream_headers_and_opening_frame_are_sent_at_once(stream_app):
    reader = open_stream(stream_app, "/streams/activity")
    headers = reader.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Connection" not in headers
    reader.close()


def test_live_events_reach_an_open_stream(stream_app, broker):
    reader = open_stream(stream_app, "/streams/activity")
    event_id = broker.publish("activity", {"sku": "mug"}, event="purchase")
    assert reader.events(1) == [
        {"event": "purchase", "id": event_id, "data": '{"sku":"mug"}'}
    ]
    reader.close()


def test_idle_stream_sends_heartbeat_comments(stream_app, broker):
    reader = open_stream(stream_app, "/streams/activity")
    assert next(reader.chunks) == b":\n\n"
    reader.close()


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnect_replays_missed_events_without_gap_or_duplicate(
    stream_app, broker, how
):
    first, second, third = (broker.publish("activity", n) for n in range(3))
    if how == "header":
        reader = open_stream(
            stream_app, "/streams/activity", **{"Last-Event-ID": first}
        )
    else:
        reader = open_stream(stream_app, f"/streams/activity?last_event_id={first}")
    fourth = broker.publish("activity", 3)
    assert [e["id"] for e in reader.events(3)] == [second, third, fourth]
    reader.close()


def test_reconnect_past_retention_gets_a_reset_event(stream_app, broker):
    ids = [broker.publish("activity", n) for n in range(300)]
    reader = open_stream(stream_app, "/streams/activity", **{"Last-Event-ID": ids[0]})
    (reset,) = reader.events(1)
    assert reset["event"] == "reset"
    assert reset["id"] == ids[-1]
    assert json.loads(reset["data"]) == {"reason": "history expired"}
    live = broker.publish("activity", "after")
    assert reader.events(1)[0]["id"] == live
    reader.close()


@pytest.mark.parametrize(
    "bad_id",
    ["garbage", "-1", "1" * 30, "99999999", str(2**63), str(2**64 + 1), "٣"],
)
def test_unknown_or_future_ids_get_a_reset_event(stream_app, broker, bad_id):
    newest = broker.publish("activity", "x")
    reader = open_stream(stream_app, "/streams/activity", **{"Last-Event-ID": bad_id})
    (reset,) = reader.events(1)
    assert (reset["event"], reset["id"]) == ("reset", newest)
    reader.close()


def test_one_stream_carries_several_channels_in_publish_order(stream_app, broker):
    start = broker.publish("a", "before")
    a1 = broker.publish("a", "a1")
    b1 = broker.publish("b", "b1")
    reader = open_stream(stream_app, "/streams/a,b", **{"Last-Event-ID": start})
    b2 = broker.publish("b", "b2")
    broker.publish("c", "not subscribed")
    a2 = broker.publish("a", "a2")
    assert [e["id"] for e in reader.events(4)] == [a1, b1, b2, a2]
    reader.close()


def test_slow_client_is_disconnected_while_fast_ones_keep_up(stream_app, broker):
    stream_app.config["PATTERNS_STREAMS_QUEUE_LIMIT"] = 4
    slow = open_stream(stream_app, "/streams/activity")
    fast = open_stream(stream_app, "/streams/activity")
    received = []
    for n in range(20):
        broker.publish("activity", n)
        received += fast.events(1)
    assert [e["data"] for e in received] == [str(n) for n in range(20)]
    assert list(slow.chunks) == [], "the slow stream ends without sending more"
    fast.close()
    slow.close()


def test_stream_ends_after_its_lifetime(stream_app, broker):
    stream_app.config["PATTERNS_STREAMS_MAX_LIFETIME"] = 0.2
    reader = open_stream(stream_app, "/streams/activity")
    rest = reader.rest()
    assert len(rest) == 1
    assert rest[0].startswith(b"retry: ")
    reader.close()


def test_closed_streams_release_their_listener_and_slot(stream_app, broker):
    readers = [open_stream(stream_app, "/streams/activity") for _ in range(3)]
    assert broker.open_listeners() == 3
    assert open_count(stream_app, "127.0.0.1") == 3
    for reader in readers:
        reader.close()
    assert broker.open_listeners() == 0
    assert open_count(stream_app, "127.0.0.1") == 0


def test_stream_needs_valid_channels(stream_app):
    streams = stream_app.extensions["test.streams"]
    with stream_app.test_request_context():
        with pytest.raises(ValueError, match="at least one"):
            streams.response()
        with pytest.raises(ValueError, match="Invalid channel"):
            streams.response("a b")


def test_a_stream_whose_replay_fails_gets_a_retry_and_a_log_line(
    tmp_path, redis_url, caplog
):
    from flask_patterns.streams import RedisBroker

    broker = RedisBroker(redis_url, prefix="{failing}:")
    broker.client.set(broker.stream_key("activity"), "not a stream")
    app = make_app(tmp_path, broker)
    reader = open_stream(app, "/streams/activity", **{"Last-Event-ID": "1"})
    rest = reader.rest()
    assert len(rest) == 1
    assert rest[0].startswith(b"retry: ")
    assert "could not replay" in caplog.text
    assert "WRONGTYPE" in caplog.text
    reader.close()
    broker.close()
