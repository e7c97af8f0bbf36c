"""What every broker does, on the memory broker and on Redis alike."""

from __future__ import annotations

import json

import pytest

from flask_patterns.streams import Listener
from flask_patterns.streams import parse_event_id

from .conftest import history


def test_publish_returns_increasing_ids_and_keeps_history(broker):
    ids = [broker.publish("orders", {"n": n}) for n in range(3)]
    parsed = [parse_event_id(i) for i in ids]
    epochs = {epoch for epoch, _ in parsed}
    assert len(epochs) == 1, "one history"
    positions = [position for _, position in parsed]
    assert positions == sorted(set(positions))
    assert all(len(i) < 16 for i in ids), "short"
    assert broker.replay(["orders"], 0).epoch in epochs
    assert [i for i, _, _ in history(broker, "orders")] == ids
    assert [json.loads(d) for _, d, _ in history(broker, "orders")] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_publish_keeps_strings_as_they_are_and_the_event_name(broker):
    broker.publish("news", "plain text", event="note")
    assert history(broker, "news")[0][1:] == ("plain text", "note")


def test_channels_are_separate(broker):
    broker.publish("a", 1)
    broker.publish("b", 2)
    assert [d for _, d, _ in history(broker, "a")] == ["1"]
    assert [d for _, d, _ in history(broker, "b")] == ["2"]


def test_history_is_bounded(broker):
    for n in range(300):
        broker.publish("busy", n)
    kept = history(broker, "busy")
    # Redis trims whole stream nodes (100 entries by default), never fewer than asked.
    assert 3 <= len(kept) <= 3 + 100
    assert kept[-1][1] == "299"


def test_replay_says_when_events_after_a_position_are_gone(broker):
    first = position_of(broker.publish("busy", "first"))
    for n in range(300):
        broker.publish("busy", n)
    assert broker.replay(["busy"], first).reset
    newest = position_of(broker.publish("busy", "newest"))
    replay = broker.replay(["busy"], newest - 1)
    assert not replay.reset
    assert [e.data for e in replay.events] == ["newest"]
    assert replay.newest_position == newest


def test_replay_of_several_channels_is_in_publish_order(broker):
    ids = [broker.publish(channel, n) for n, channel in enumerate("abab")]
    replay = broker.replay(["a", "b", "never-published"], 0)
    assert [e.id for e in replay.events] == ids
    assert not replay.reset


def test_an_event_published_again_with_its_key_is_published_once(broker):
    listener = Listener(["orders"])
    broker.subscribe(listener)
    first = broker.publish("orders", "once", key="k-1")
    assert broker.publish("orders", "once", key="k-1") == first
    other = broker.publish("orders", "twice")
    assert [i for i, _, _ in history(broker, "orders")] == [first, other]
    assert [listener.receive(timeout=5).id for _ in range(2)] == [first, other]
    broker.unsubscribe(listener)


def position_of(event_id):
    return parse_event_id(event_id)[1]


@pytest.mark.parametrize("channel", ["", "a b", "a\nb", "a*", "x\0"])
def test_bad_channel_names_are_refused(broker, channel):
    with pytest.raises(ValueError, match="Invalid channel"):
        broker.publish(channel, 1)
    with pytest.raises(ValueError, match="Invalid channel"):
        broker.end_channel(channel)


def test_a_bad_event_name_is_refused(broker):
    with pytest.raises(ValueError):
        broker.publish("a", 1, event="two\nlines")
    assert history(broker, "a") == []


def test_a_subscribed_listener_gets_live_events_of_its_channels(broker):
    listener = Listener(["a"])
    broker.subscribe(listener)
    broker.publish("b", "not mine")
    event_id = broker.publish("a", "mine")
    got = listener.receive(timeout=5)
    assert (got.id, got.data) == (event_id, "mine")
    assert broker.open_listeners() == 1
    broker.unsubscribe(listener)
    assert broker.open_listeners() == 0


def test_ending_a_channel_ends_its_listeners_in_this_process(broker):
    mine, other = Listener(["user:1"]), Listener(["user:2"])
    broker.subscribe(mine)
    broker.subscribe(other)
    broker.end_channel("user:1")
    assert mine.receive(timeout=5) is None
    assert mine.closing
    assert not other.closing
    assert broker.close_streams() == 2
    assert other.closing
    broker.unsubscribe(mine)
    broker.unsubscribe(other)


def test_recent_is_the_newest_events_oldest_first_and_where_to_resume(broker):
    ids = [broker.publish("news", n) for n in range(3)]
    other = broker.publish("other", "elsewhere")
    recent = broker.recent("news", 2)
    assert [(e.id, e.data) for e in recent.events] == [(ids[1], "1"), (ids[2], "2")]
    assert all(e.channel == "news" for e in recent.events)
    # The newest position of the whole broker, not only of the channel.
    assert recent.last_event_id == other
    assert [e.id for e in broker.recent("news", 10).events] == ids


def test_recent_of_a_channel_without_events_still_says_where_to_resume(broker):
    newest = broker.publish("other", 1)
    recent = broker.recent("never-published", 5)
    assert (recent.events, recent.last_event_id) == ([], newest)
    assert broker.recent("other", 0).events == []


def test_recent_of_an_empty_broker_resumes_from_position_zero(broker):
    recent = broker.recent("news", 5)
    epoch, position = parse_event_id(recent.last_event_id)
    assert (recent.events, position) == ([], 0)
    assert parse_event_id(broker.publish("news", 1)) == (epoch, 1)


def test_recent_keeps_to_the_bounded_history(broker):
    for n in range(300):
        broker.publish("busy", n)
    events = broker.recent("busy", 2).events
    assert [e.data for e in events] == ["298", "299"]
    assert len(broker.recent("busy", 1000).events) == len(history(broker, "busy"))


@pytest.mark.parametrize("limit", [-1, 1.5, True, "3"])
def test_recent_refuses_a_limit_that_is_no_count(broker, limit):
    with pytest.raises(ValueError, match="number of events"):
        broker.recent("news", limit)


def test_recent_refuses_a_bad_channel_name(broker):
    with pytest.raises(ValueError, match="Invalid channel"):
        broker.recent("a b", 5)


def test_a_stream_opened_from_the_recent_id_misses_nothing_and_repeats_nothing(
    stream_app, broker
):
    from .conftest import open_stream

    shown = [broker.publish("activity", n) for n in range(2)]
    recent = broker.recent("activity", 20)
    assert [e.id for e in recent.events] == shown
    # Published between the page and its stream: the gap a fresh stream has.
    missed = broker.publish("activity", "in between")
    reader = open_stream(
        stream_app, f"/streams/activity?last_event_id={recent.last_event_id}"
    )
    live = broker.publish("activity", "live")
    assert [(e["id"], e["data"]) for e in reader.events(2)] == [
        (missed, "in between"),
        (live, "live"),
    ]
    reader.close()
