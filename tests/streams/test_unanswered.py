"""A Redis that stops answering (a hung server, a network that drops packets)
costs each call one reply timeout, not one per retry; a Redis that restarts is
still reconnected to at once."""

from __future__ import annotations

import time

import pytest

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import RedisBroker

#: The default reply timeout, in seconds.
REPLY_TIMEOUT = 1.0


@pytest.fixture
def broker(redis_process):
    broker = RedisBroker(redis_process.url)
    broker.ping()
    broker.publish("c", "before")
    yield broker
    broker.close()


CALLS = {
    "ping": lambda broker: broker.ping(),
    "publish": lambda broker: broker.publish("c", "during", key="k"),
    "recent": lambda broker: broker.recent("c", 10),
    "replay": lambda broker: broker.replay(["c"], 0),
    "current": lambda broker: broker.current(),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_call_to_a_frozen_redis_fails_after_one_reply_timeout(
    broker, redis_process, call
):
    with redis_process.frozen():
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="Timeout"):
            CALLS[call](broker)
        waited = time.monotonic() - started
        # One timeout: the two retries of the old defaults made it three (3 s),
        # and up to nine after a reconnect (46 s in all).
        assert REPLY_TIMEOUT * 0.9 <= waited < REPLY_TIMEOUT * 2.5, waited
    # Once it answers again, so does the broker, on its next call. A timed-out
    # publish may still have reached Redis, so it is sent again with its key
    # (as the relay does with a held event), and is in the history once.
    if call == "publish":
        broker.publish("c", "during", key="k")
        assert [e.data for e in broker.recent("c", 10).events] == ["before", "during"]
    else:
        assert [e.data for e in broker.recent("c", 10).events] == ["before"]


def test_each_call_to_a_frozen_redis_costs_one_timeout_not_more(broker, redis_process):
    with redis_process.frozen():
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(BrokerUnavailable):
                broker.ping()
        waited = time.monotonic() - started
    assert waited < 3 * REPLY_TIMEOUT * 2.5, waited
    broker.ping()


def test_a_restarted_redis_is_reconnected_to_within_the_call(broker, redis_process):
    redis_process.kill()
    redis_process.start()
    # The pooled connection is dead; the call gets a reset, reconnects and
    # succeeds without the caller seeing an error.
    assert broker.publish("c", "after")
    assert [e.data for e in broker.recent("c", 10).events] == ["before", "after"]
