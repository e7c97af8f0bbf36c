"""What a broker is to :class:`~flask_patterns.streams.EventStreams`, and the
in-process side all brokers share."""

from __future__ import annotations

import typing as t

from .events import check_channel
from .events import History
from .events import Replay
from .fanout import FanOut
from .listener import Listener

__all__ = [
    "DEFAULT_HISTORY",
    "Broker",
    "BrokerUnavailable",
    "FanOutBroker",
]

#: How many events a channel keeps for replay, by default.
DEFAULT_HISTORY = 1000


class BrokerUnavailable(Exception):
    """The broker cannot be reached, or answered an error."""


class Broker(t.Protocol):
    """What :class:`~flask_patterns.streams.EventStreams` needs from a broker."""

    #: Whether the broker lives outside the process and can be unreachable:
    #: events published in a unit of work are then held in the database until
    #: it answers (see :mod:`flask_patterns.streams.relay`).
    remote: bool

    def publish(
        self,
        channel: str,
        data: object,
        *,
        event: str | None = None,
        key: str | None = None,
    ) -> str:
        """Append an event to ``channel``'s history, deliver it to the listeners
        of every process and return its id. An event published again with the
        same ``key`` is not appended twice: the first one's id is returned."""

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        """The retained events of ``channels`` after position ``after``, in
        the broker's current history (:attr:`Replay.epoch`)."""

    def recent(self, channel: str, limit: int) -> History:
        """The newest ``limit`` retained events of ``channel``, oldest first,
        and the id a stream resumes from right after them, read together
        without going through the whole history."""

    def subscribe(self, listener: Listener) -> None:
        """Start delivering the listener's channels to it."""

    def unsubscribe(self, listener: Listener) -> None:
        """Stop delivering to the listener; never raises."""

    def close_streams(self) -> int:
        """Ask every open stream of this process to end; returns their number."""

    def end_channel(self, channel: str) -> None:
        """Ask the open streams carrying ``channel``, in every process, to end
        (with a retry hint), so that each is authorized again when it
        reconnects."""

    def ping(self) -> None:
        """Return if the broker answers, raise :exc:`BrokerUnavailable` if not."""


class FanOutBroker:
    """The in-process side every broker shares: the open streams of this
    process, fanned out by channel (:attr:`fan_out`)."""

    def __init__(self) -> None:
        self.fan_out = FanOut()

    def subscribe(self, listener: Listener) -> None:
        self.fan_out.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.fan_out.remove(listener)

    def close_streams(self) -> int:
        return self.fan_out.close_all()

    def end_channel(self, channel: str) -> None:
        check_channel(channel)
        self.fan_out.close_channel(channel)

    def open_listeners(self) -> int:
        """How many streams of this process are subscribed."""
        return self.fan_out.count()
