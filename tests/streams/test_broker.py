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
