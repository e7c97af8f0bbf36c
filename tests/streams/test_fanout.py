"""The listeners of one process: delivery by channel, the clock that ends their
waits, and parked greenlets under gevent."""

from __future__ import annotations

import math
import threading
import time

import pytest

from flask_patterns.streams import Listener
from flask_patterns.streams import StoredEvent
from flask_patterns.streams._clock import Clock
from flask_patterns.streams.fanout import FanOut

from .conftest import run_under_gevent


def subscribed(fan_out, *channels):
    listener = Listener(channels or ["a"])
    fan_out.add(listener)
    return listener


def wait_for(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up"
        time.sleep(0.01)


def test_an_event_reaches_the_listeners_of_its_channel_only():
    fan_out = FanOut()
    mine, both, other = (
        subscribed(fan_out, "a"),
        subscribed(fan_out, "a", "b"),
        subscribed(fan_out, "b"),
    )
    event = StoredEvent("1", "a", "x")
    fan_out.deliver(event)
    assert mine.receive(timeout=1) is event
    assert both.receive(timeout=1) is event
    assert other.receive(timeout=0) is None
    assert sorted(fan_out.channels()) == ["a", "b"]
    for listener in (mine, both, other):
        fan_out.remove(listener)
    assert fan_out.channels() == []
    assert fan_out.count() == 0


def test_closing_a_channel_ends_its_listeners_only():
    fan_out = FanOut()
    mine, other = subscribed(fan_out, "user:1"), subscribed(fan_out, "user:2")
    assert fan_out.close_channel("user:1") == 1
    assert mine.closing
    assert not other.closing
    assert fan_out.close_all() == 2
    assert other.closing


def test_a_subscribed_listener_times_out_on_the_clock():
    fan_out = FanOut()
    listener = subscribed(fan_out)
    started = time.monotonic()
    assert listener.receive(timeout=0.2) is None
    assert 0.19 < time.monotonic() - started < 1
    assert listener.wake_at == math.inf
    fan_out.remove(listener)


def test_the_clock_runs_only_while_there_are_listeners():
    fan_out = FanOut()
    assert not fan_out.clock_running
    listeners = [subscribed(fan_out, "a"), subscribed(fan_out, "b")]
    assert fan_out.clock_running
    for listener in listeners:
        fan_out.remove(listener)
    wait_for(lambda: not fan_out.clock_running)
    # A new listener starts it again, and its waits end on time.
    fan_out.add(listeners[0])
    assert fan_out.clock_running
    assert listeners[0].receive(timeout=0.05) is None
    fan_out.remove(listeners[0])


def test_a_zero_timeout_does_not_wait_for_the_clock():
    fan_out = FanOut()
    listener = subscribed(fan_out)
    started = time.monotonic()
    assert listener.receive(timeout=0) is None
    assert time.monotonic() - started < 0.05
    fan_out.remove(listener)


def test_a_failed_clock_leaves_listeners_on_timers(monkeypatch, caplog):
    monkeypatch.setattr(Clock, "tick", "not a number of seconds")
    fan_out = FanOut()
    listener = subscribed(fan_out)
    wait_for(lambda: not fan_out.clock_running)
    assert "The stream clock failed" in caplog.text
    started = time.monotonic()
    assert listener.receive(timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 2
    fan_out.deliver(StoredEvent("1", "a", "still delivered"))
    assert listener.receive(timeout=1).data == "still delivered"
    fan_out.remove(listener)


def test_a_clock_that_cannot_start_fails_the_subscription_whole(monkeypatch):
    class NoThreads(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr("flask_patterns.streams._clock.threading.Thread", NoThreads)
    fan_out = FanOut()
    with pytest.raises(RuntimeError, match="start new thread"):
        fan_out.add(Listener(["a"]))
    assert fan_out.count() == 0
    assert not fan_out.clock_running


def test_removing_a_listener_ends_a_wait_no_clock_would_end():
    fan_out = FanOut()
    listener = subscribed(fan_out)
    threading.Timer(0.1, fan_out.remove, args=(listener,)).start()
    started = time.monotonic()
    assert listener.receive(timeout=30) is None
    assert time.monotonic() - started < 5


GEVENT_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import time

import gevent

from flask_patterns.streams import Listener, MemoryBroker

broker = MemoryBroker()
listeners = [Listener(["activity"]) for _ in range(200)]
for listener in listeners:
    broker.subscribe(listener)
received = {id(listener): [] for listener in listeners}


def consume(listener):
    while len(received[id(listener)]) < 10:
        stored = listener.receive(timeout=5)
        assert stored is not None, "timed out"
        received[id(listener)].append(stored.data)


consumers = [gevent.spawn(consume, listener) for listener in listeners]
for n in range(10):
    broker.publish("activity", n)
    gevent.sleep(0.01)
gevent.joinall(consumers, timeout=10, raise_error=True)
assert all(r == [str(n) for n in range(10)] for r in received.values())

idle = Listener(["quiet"])
started = time.monotonic()
assert idle.receive(timeout=0.2) is None
assert 0.15 < time.monotonic() - started < 2

waiter = gevent.spawn(idle.receive, 30)
gevent.sleep(0.05)
idle.close()
assert waiter.get(timeout=1) is None and idle.interrupted()

# Subscribed listeners wait without a timer each: the broker's clock ends
# their waits, so a thousand waiting streams add no watcher to the loop.
loop = gevent.get_hub().loop
quiet = [Listener(["quiet"]) for _ in range(1000)]
for listener in quiet:
    broker.subscribe(listener)
gevent.sleep(0.3)
before = loop.activecnt
waits = [gevent.spawn(listener.receive, 0.5) for listener in quiet]
gevent.sleep(0.1)
assert loop.activecnt - before < 10, loop.activecnt - before
started = time.monotonic()
gevent.joinall(waits, timeout=5)
assert all(w.ready() and w.value is None for w in waits)
assert 0.2 < time.monotonic() - started < 2
print("ok")
"""


GEVENT_PARKING_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import gevent
from gevent import threadpool

from flask_patterns.streams import Listener, MemoryBroker

broker = MemoryBroker()


def subscribed(channel="activity"):
    listener = Listener([channel])
    broker.subscribe(listener)
    return listener


# A greenlet killed while it waits leaves the others unharmed, and the next
# event does not switch to it.
doomed, alive = subscribed(), subscribed()
waits = {
    "doomed": gevent.spawn(doomed.receive, 30),
    "alive": gevent.spawn(alive.receive, 30),
}
gevent.sleep(0.05)
waits["doomed"].kill()
broker.publish("activity", "after the kill")
assert waits["alive"].get(timeout=2).data == "after the kill"
assert waits["doomed"].dead
broker.unsubscribe(doomed)
broker.unsubscribe(alive)

# close() and unsubscribe() end a wait at once.
closing, leaving = subscribed(), subscribed()
waits = [gevent.spawn(closing.receive, 30), gevent.spawn(leaving.receive, 30)]
gevent.sleep(0.05)
closing.close()
broker.unsubscribe(leaving)
assert [w.get(timeout=2) for w in waits] == [None, None]
assert closing.interrupted()
broker.unsubscribe(closing)

# An event published from a native thread reaches parked greenlets.
listeners = [subscribed() for _ in range(50)]
waits = [gevent.spawn(x.receive, 30) for x in listeners]
gevent.sleep(0.05)
pool = threadpool.ThreadPool(1)
pool.spawn(broker.publish, "activity", "from a thread").get(timeout=5)
assert [w.get(timeout=5).data for w in waits] == ["from a thread"] * 50
print("ok")
"""


def test_parked_listeners_survive_kills_closes_and_other_threads_under_gevent():
    run_under_gevent(GEVENT_PARKING_SCRIPT)


def test_memory_broker_and_listeners_work_under_gevent():
    run_under_gevent(GEVENT_SCRIPT)
