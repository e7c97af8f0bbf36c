"""Events as brokers keep them, and the checks every channel, event name and id
goes through. Pure: no I/O, no Flask."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from ..sse import ServerSentEvent

__all__ = [
    "MAX_EVENT_ID",
    "Replay",
    "StoredEvent",
    "check_channel",
    "check_event_name",
    "encode_data",
    "parse_event_id",
]

#: The largest id a broker hands out (Redis' INCR stops at a signed 64-bit
#: integer); a larger ``Last-Event-ID`` is not one of ours.
MAX_EVENT_ID = 2**63 - 1


@dataclass(frozen=True)
class StoredEvent:
    """An event as the broker keeps it. Ids are decimal integers, increasing
    across all channels of a broker, so one id resumes a stream of many
    channels."""

    id: str
    channel: str
    data: str
    event: str | None = None

    def to_sse(self) -> ServerSentEvent:
        return ServerSentEvent(self.data, event=self.event, id=self.id)

    @functools.cached_property
    def frame(self) -> bytes:
        """The encoded event, computed once however many streams send it."""
        return self.to_sse().encode()

    @functools.cached_property
    def position(self) -> int:
        """The id as a number, to compare events without parsing it again."""
        return int(self.id)


@dataclass
class Replay:
    """What a reconnecting stream missed: the retained events after its
    position, oldest first; whether older events it never saw are gone
    (``reset``); and the newest position the broker handed out."""

    events: list[StoredEvent]
    reset: bool
    newest_position: int


def parse_event_id(value: str | None) -> int | None:
    """The position an event id stands for, or ``None`` if it is not one of ours
    (not decimal digits, or past :data:`MAX_EVENT_ID`)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    position = int(value)
    return position if position <= MAX_EVENT_ID else None


def check_channel(channel: str) -> None:
    """Refuse a channel name that could break a key, a pattern or a frame."""
    if not channel or any(c in channel for c in "\r\n\0 *?[]"):
        raise ValueError(f"Invalid channel name: {channel!r}")


def check_event_name(event: str | None) -> None:
    """Refuse an event name that cannot be framed."""
    if event is not None:
        ServerSentEvent(None, event=event)


def encode_data(data: object) -> str:
    """A string as it is; anything else as compact JSON."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
