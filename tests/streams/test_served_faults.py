"""Clients that follow a stream as ``EventSource`` does (reconnecting with their
last id) while the Redis under a real gevent worker is killed and restarted:
each gets every event exactly once and in order, or a ``reset`` and then every
event after it; never a silent gap."""

from __future__ import annotations

import json
import selectors
import time

import pytest

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import RedisBroker

from .serving import Client
from .serving import Served

FOLLOWERS = 200


class Follower:
    """Reconnects with its last id whenever its stream ends, after a short
    delay, as a browser does after a ``retry:`` hint."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict[str, str]] = []
        self.client = self._connect(None)
        self.reconnect_at: float | None = None

    def _connect(self, last_event_id: str | None) -> Client:
        client = Client(self.port, last_event_id)
        with selectors.DefaultSelector() as connected:
            connected.register(client.sock, selectors.EVENT_WRITE)
            assert connected.select(timeout=5), "not connected"
        client.send_request()
        return client

    def close(self) -> None:
        self.client.close()

    @property
    def last_id(self) -> str | None:
        return self.events[-1]["id"] if self.events else None

    def step(self, now: float) -> None:
        if self.reconnect_at is not None and now >= self.reconnect_at:
            self.reconnect_at = None
            self.client = self._connect(self.last_id)

    def read(self) -> None:
        seen = len(self.client.events)
        self.client.read()
        self.events += self.client.events[seen:]
        if self.client.ended:
            self.client.close()
            self.reconnect_at = time.monotonic() + 0.3


def follow(followers, until, timeout):
    started = time.monotonic()
    while not until():
        assert time.monotonic() - started < timeout, "timed out"
        selector = selectors.DefaultSelector()
        for follower in followers:
            if follower.reconnect_at is None:
                selector.register(follower.client.sock, selectors.EVENT_READ, follower)
        for key, _ in selector.select(timeout=0.1):
            key.data.read()
        selector.close()
        now = time.monotonic()
        for follower in followers:
            follower.step(now)


def publish_when_back(broker, data, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return broker.publish("activity", data)
        except BrokerUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("survives", "empty"),
    [(True, False), (False, False), (False, True)],
    ids=["aof-kept-history", "restart-new-history", "restart-empty"],
)
def test_followers_miss_nothing_silently_when_redis_is_killed_and_restarted(
    redis_process, survives, empty
):
    from conftest import free_port

    served = Served(
        redis_process.url,
        free_port(),
        redis_process.directory / "gunicorn.log",
        survives="1" if survives else "0",
        heartbeat=1,
    )
    broker = RedisBroker(redis_process.url, history_survives_restart=survives)
    followers: list[Follower] = []
    try:
        followers += [Follower(served.port) for _ in range(FOLLOWERS)]
        time.sleep(1)
        before = [broker.publish("activity", f"before {n}") for n in range(20)]
        follow(followers, lambda: all(f.last_id == before[-1] for f in followers), 30)

        redis_process.kill()
        with pytest.raises(BrokerUnavailable):
            broker.publish("activity", "never published")
        time.sleep(1)
        redis_process.start(empty=empty)
        after = [publish_when_back(broker, f"after {n}") for n in range(20)]
        for n in range(20, 40):
            time.sleep(0.05)
            after.append(broker.publish("activity", f"after {n}"))
        follow(followers, lambda: all(f.last_id == after[-1] for f in followers), 60)
    finally:
        for follower in followers:
            follower.close()
        served.stop()
        broker.close()

    resets = 0
    for follower in followers:
        ids = [e["id"] for e in follower.events if e.get("event") != "reset"]
        kinds = [e.get("event") for e in follower.events]
        if survives:
            assert "reset" not in kinds
            assert ids == before + after, "every event exactly once, in order"
            continue
        # The old history's events, a reset, then every event after it.
        assert kinds.count("reset") == 1, kinds
        at = kinds.index("reset")
        reset = follower.events[at]
        assert json.loads(reset["data"])["reason"] == "history lost"
        assert ids[:at] == before
        tail = ids[at:]
        assert tail == after[len(after) - len(tail) :], "no gap after the reset"
        if tail and tail[0] != after[0]:
            assert reset["id"] == after[after.index(tail[0]) - 1]
        resets += 1
    assert resets == (0 if survives else FOLLOWERS)
