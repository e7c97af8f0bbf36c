"""The broker inside one process."""

from __future__ import annotations

from flask_patterns.streams import MemoryBroker


def test_events_lists_what_a_channel_keeps_oldest_first():
    broker = MemoryBroker(history=2)
    ids = [broker.publish("a", n) for n in range(3)]
    assert [e.id for e in broker.events("a")] == ids[1:]
    assert broker.events("never") == []


def test_ids_count_up_from_one_across_channels():
    broker = MemoryBroker()
    assert [broker.publish(c, 0) for c in "aba"] == ["1", "2", "3"]
    assert broker.replay(["a", "b"], 0).newest_position == 3
