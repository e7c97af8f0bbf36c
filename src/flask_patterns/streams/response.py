"""The stream itself: the body of a ``text/event-stream`` response, from the
opening frame and the catch-up to the live events, heartbeats and the end."""

from __future__ import annotations

import logging
import random
import time
import typing as t
from dataclasses import dataclass

from flask import Response

from ..sse import comment
from ..sse import ServerSentEvent
from .broker import Broker
from .broker import BrokerUnavailable
from .events import parse_event_id
from .listener import Listener
from .replay import catch_up_frames
from .replay import spread_retry

__all__ = [
    "StreamBody",
    "StreamSettings",
    "stream_response",
]

log = logging.getLogger("flask_patterns.streams")


@dataclass(frozen=True)
class StreamSettings:
    """How a stream behaves (see the ``PATTERNS_STREAMS_*`` settings)."""

    heartbeat: float
    retry_ms: int
    lifetime: float
    queue_limit: int


def stream_response(
    broker: Broker,
    channels: t.Iterable[str],
    last_event_id: str | None,
    settings: StreamSettings,
    give_back: t.Callable[[], None],
) -> Response:
    """The response that streams ``channels`` from ``broker``; ``give_back``
    runs when the server closes it."""
    listener = Listener(channels, maxsize=settings.queue_limit)
    frames = _frames(broker, listener, last_event_id, settings)
    return Response(
        StreamBody(frames, give_back),
        mimetype="text/event-stream",
        # A stream may carry private channels: no cache keeps any of it.
        headers={"Cache-Control": "private, no-store", "X-Accel-Buffering": "no"},
        # The frames are bytes already: hand them to the server as they are,
        # without two more iterator layers per frame.
        direct_passthrough=True,
    )


class StreamBody:
    """The response body of a stream: the server iterates the frames
    themselves (no layer per frame) and closes this, which runs ``give_back``
    even when the frames never started (a ``HEAD`` request)."""

    __slots__ = ("_frames", "_give_back")

    def __init__(
        self, frames: t.Generator[bytes, None, None], give_back: t.Callable[[], None]
    ) -> None:
        self._frames = frames
        self._give_back = give_back

    def __iter__(self) -> t.Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        try:
            self._frames.close()
        finally:
            self._give_back()


def _catch_up(
    broker: Broker, listener: Listener, last_event_id: str | None
) -> tuple[list[bytes], int | None]:
    if last_event_id is None:
        return [], None
    position = parse_event_id(last_event_id)
    replay = broker.replay(listener.channels, position or 0)
    return catch_up_frames(replay, position)


def _frames(
    broker: Broker,
    listener: Listener,
    last_event_id: str | None,
    settings: StreamSettings,
) -> t.Generator[bytes, None, None]:
    broker.subscribe(listener)  # before the replay, so nothing falls in between
    try:
        yield ServerSentEvent(None, retry=settings.retry_ms).encode() + comment("open")
        try:
            frames, last_sent = _catch_up(broker, listener, last_event_id)
        except BrokerUnavailable as error:
            log.warning(
                "A stream could not replay its history, retry hint sent: %s", error
            )
            yield spread_retry(settings.retry_ms)
            return
        yield from frames
        jitter = 1 - 0.2 * random.random()  # noqa: S311
        deadline = time.monotonic() + settings.lifetime * jitter
        while not listener.overflowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or listener.closing:
                yield spread_retry(settings.retry_ms)
                return
            stored = listener.receive(min(settings.heartbeat, remaining))
            if listener.interrupted():
                continue
            if stored is None:
                yield comment()
                continue
            if last_sent is not None and stored.position <= last_sent:
                continue
            last_sent = stored.position
            yield stored.frame
    finally:
        broker.unsubscribe(listener)
