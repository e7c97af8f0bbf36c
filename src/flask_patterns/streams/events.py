"""Events as brokers keep them, and the checks every channel, event name and id
goes through. Pure: no I/O, no Flask."""

from __future__ import annotations

import functools
import json
import re
import secrets
import string
import typing as t
from dataclasses import dataclass
from dataclasses import field

from ..sse import ServerSentEvent

__all__ = [
    "MAX_EVENT_ID",
    "History",
    "Replay",
    "StoredEvent",
    "check_channel",
    "check_event_name",
    "check_limit",
    "encode_data",
    "event_id",
    "http_chunk",
    "new_epoch",
    "parse_event_id",
]

#: The largest position a broker hands out (Redis' INCR stops at a signed
#: 64-bit integer); a larger ``Last-Event-ID`` is not one of ours.
MAX_EVENT_ID = 2**63 - 1

_EPOCH_ALPHABET = string.ascii_lowercase + string.digits
_EVENT_ID = re.compile(r"([a-z0-9]{1,16})-([0-9]{1,19})", re.ASCII)


def new_epoch() -> str:
    """A fresh history epoch: six random letters and digits (2 billion
    values), so that two histories practically never share one."""
    return "".join(secrets.choice(_EPOCH_ALPHABET) for _ in range(6))


def http_chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def event_id(epoch: str, position: int) -> str:
    """The id of the event at ``position`` in the history ``epoch``."""
    return f"{epoch}-{position}"


@dataclass(frozen=True)
class StoredEvent:
    """An event as the broker keeps it. Its id is ``"{epoch}-{position}"``:
    the epoch names the broker's history (it changes whenever that history is
    lost), the position increases across all channels of the broker, so one id
    resumes a stream of many channels."""

    id: str
    channel: str
    data: str
    event: str | None = None
    #: When the broker took the event (``time.time()``), for live events.
    published_at: float | None = field(default=None, compare=False)
    #: What the observers carried from the task that published it.
    context: t.Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    def to_sse(self) -> ServerSentEvent:
        return ServerSentEvent(self.data, event=self.event, id=self.id)

    @functools.cached_property
    def frame(self) -> bytes:
        """The encoded event, computed once however many streams send it."""
        return self.to_sse().encode()

    @functools.cached_property
    def chunk(self) -> bytes:
        """The frame as one chunk of a chunked HTTP/1.1 body, for the streams
        written to without the server (see :mod:`.sink`)."""
        return http_chunk(self.frame)

    @functools.cached_property
    def position(self) -> int:
        """The id's position, to compare events without parsing it again."""
        return int(self.id.rpartition("-")[2])

    @functools.cached_property
    def epoch(self) -> str:
        """The history the event belongs to."""
        return self.id.rpartition("-")[0]


@dataclass
class Replay:
    """What a reconnecting stream missed: the retained events after its
    position, oldest first; whether older events it never saw are gone
    (``reset``); the newest position the broker handed out, and the epoch of
    the history all of them belong to."""

    events: list[StoredEvent]
    reset: bool
    newest_position: int
    epoch: str


@dataclass
class History:
    """The newest events a channel keeps, oldest first, and the id to resume
    a stream from right after them (:attr:`last_event_id`): the newest
    position the broker handed out, in any channel, when they were read. A
    page that shows these events and then opens its stream with
    ``?last_event_id=`` gets every event published since, once: no gap, no
    duplicate. The id is there even when there is no event."""

    events: list[StoredEvent]
    last_event_id: str


def parse_event_id(value: str | None) -> tuple[str, int] | None:
    """The epoch and position an event id stands for, or ``None`` if it is not
    one of ours (not ``epoch-position``, or a position past
    :data:`MAX_EVENT_ID`)."""
    match = _EVENT_ID.fullmatch(value) if value else None
    if match is None:
        return None
    position = int(match[2])
    return (match[1], position) if position <= MAX_EVENT_ID else None


def check_channel(channel: str) -> None:
    """Refuse a channel name that could break a key, a pattern or a frame."""
    if not channel or any(c in channel for c in "\r\n\0 *?[]"):
        raise ValueError(f"Invalid channel name: {channel!r}")


def check_event_name(event: str | None) -> None:
    """Refuse an event name that cannot be framed."""
    if event is not None:
        ServerSentEvent(None, event=event)


def check_limit(limit: int) -> None:
    """Refuse a number of events to read that is not a whole number from 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"A number of events is an int from 0, not {limit!r}")


def encode_data(data: object) -> str:
    """A string as it is; anything else as compact JSON."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
