"""The inbox of one stream, on its own (timed waits) and as a fan-out fills it."""

from __future__ import annotations

import threading
import time

from flask_patterns.streams import Listener
from flask_patterns.streams import StoredEvent


def stored(n):
    return StoredEvent(str(n), "a", f"event {n}")


def test_a_listener_wakes_for_an_offer_from_another_thread():
    listener = Listener(["a"])
    event = stored(1)
    threading.Timer(0.05, listener.offer, args=(event,)).start()
    assert listener.receive(timeout=5) is event
    assert listener.receive(timeout=0.01) is None


def test_an_unsubscribed_listener_waits_its_own_timeout():
    listener = Listener(["a"])
    started = time.monotonic()
    assert listener.receive(timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 2


def test_events_come_out_in_the_order_they_went_in():
    listener = Listener(["a"])
    for n in range(5):
        listener.offer(stored(n))
    assert [listener.receive(timeout=0).position for _ in range(5)] == list(range(5))


def test_a_listener_past_its_limit_overflows_instead_of_growing():
    listener = Listener(["a"], maxsize=3)
    for n in range(10):
        listener.offer(stored(n))
    assert listener.overflowed
    assert listener.interrupted()
    kept = [listener.receive(timeout=0) for _ in range(4)]
    assert [e.position for e in kept[:3]] == [0, 1, 2]
    assert kept[3] is None


def test_closing_ends_a_wait_at_once_and_marks_the_stream_to_end():
    listener = Listener(["a"])
    threading.Timer(0.05, listener.close).start()
    started = time.monotonic()
    assert listener.receive(timeout=30) is None
    assert time.monotonic() - started < 5
    assert listener.interrupted()
    assert not listener.overflowed


def test_push_says_whether_a_parked_greenlet_is_left_to_resume():
    listener = Listener(["a"])
    # A thread waits on an Event: push sets it, nothing is left to resume.
    assert listener.push(stored(1)) is False
    assert listener.receive(timeout=0) is not None
