"""The broker inside one process."""

from __future__ import annotations

from flask_patterns.streams import MemoryBroker


def test_events_lists_what_a_channel_keeps_oldest_first():
    broker = MemoryBroker(history=2)
    ids = [broker.publish("a", n) for n in range(3)]
    assert [e.id for e in broker.events("a")] == ids[1:]
    assert broker.events("never") == []


def test_ids_count_up_from_one_across_channels_in_the_brokers_epoch():
    broker = MemoryBroker()
    ids = [broker.publish(c, 0) for c in "aba"]
    assert ids == [f"{broker.epoch}-{n}" for n in (1, 2, 3)]
    replay = broker.replay(["a", "b"], 0)
    assert (replay.epoch, replay.newest_position) == (broker.epoch, 3)


def test_each_memory_broker_is_a_history_of_its_own():
    assert MemoryBroker().epoch != MemoryBroker().epoch
