"""A broker inside one process."""

from __future__ import annotations

import itertools
import threading
import time
import typing as t
from collections import deque
from operator import attrgetter

from .. import observe
from .broker import DEFAULT_HISTORY
from .broker import FanOutBroker
from .events import check_channel
from .events import check_event_name
from .events import check_limit
from .events import encode_data
from .events import event_id
from .events import History
from .events import new_epoch
from .events import Replay
from .events import StoredEvent

__all__ = [
    "MemoryBroker",
]

#: How many publishing keys a memory broker remembers, to publish each once.
_KEYS_KEPT = 10_000


class MemoryBroker(FanOutBroker):
    """A broker inside one process, for development and tests; works under
    threads and under gevent.

    :param history: how many events each channel keeps for replay.

    Its history lives as long as the broker: each broker has an epoch of its
    own (:attr:`epoch`), so an id from an earlier process gets a ``reset``.
    """

    remote = False

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        super().__init__()
        self.history = history
        self.epoch = new_epoch()
        self._lock = threading.Lock()
        self._newest = 0
        self._channels: dict[str, deque[StoredEvent]] = {}
        self._trimmed: dict[str, int] = {}
        self._keys: dict[str, str] = {}

    def publish(
        self,
        channel: str,
        data: object,
        *,
        event: str | None = None,
        key: str | None = None,
    ) -> str:
        check_channel(channel)
        check_event_name(event)
        with observe.span("flask_patterns.streams.publish", channel=channel):
            return self._publish(channel, data, event, key)

    def _publish(
        self, channel: str, data: object, event: str | None, key: str | None
    ) -> str:
        with self._lock:
            if key is not None and key in self._keys:
                return self._keys[key]
            self._newest += 1
            stored = StoredEvent(
                event_id(self.epoch, self._newest),
                channel,
                encode_data(data),
                event,
                published_at=time.time(),
                context=observe.carry(),
            )
            if key is not None:
                self._remember(key, stored.id)
            kept = self._channels.setdefault(channel, deque())
            kept.append(stored)
            if len(kept) > self.history:
                self._trimmed[channel] = kept.popleft().position
            self.fan_out.deliver(stored)
        return stored.id

    def _remember(self, key: str, published: str) -> None:
        """Keep the id ``key`` was published under, for the newest keys only
        (dicts keep insertion order, so the first one is the oldest)."""
        self._keys[key] = published
        if len(self._keys) > _KEYS_KEPT:
            del self._keys[next(iter(self._keys))]

    def events(self, channel: str) -> list[StoredEvent]:
        """The events ``channel`` still keeps, oldest first."""
        with self._lock:
            return list(self._channels.get(channel, ()))

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        with self._lock:
            channels = list(channels)
            events = sorted(
                (
                    e
                    for c in channels
                    for e in self._channels.get(c, ())
                    if e.position > after
                ),
                key=attrgetter("position"),
            )
            reset = any(self._trimmed.get(c, 0) > after for c in channels)
            return Replay(events, reset, self._newest, self.epoch)

    def recent(self, channel: str, limit: int) -> History:
        check_channel(channel)
        check_limit(limit)
        with self._lock:
            kept = self._channels.get(channel, deque())
            newest = list(itertools.islice(reversed(kept), limit))
            return History(newest[::-1], event_id(self.epoch, self._newest))

    def ping(self) -> None:
        """A memory broker always answers."""
