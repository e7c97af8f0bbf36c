"""The stream itself: the body of a ``text/event-stream`` response, from the
opening frame and the catch-up to the live events, heartbeats and the end."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
import typing as t
from dataclasses import dataclass

from flask import Response

from .. import observe
from .._outage import Outages
from ..sse import comment
from ..sse import ServerSentEvent
from .broker import Broker
from .broker import BrokerUnavailable
from .detached import detachable
from .detached import DetachedStream
from .detached import open_detached
from .detached import response_head
from .events import parse_event_id
from .listener import Listener
from .replay import catch_up_frames
from .replay import spread_retry

__all__ = [
    "StreamBody",
    "StreamResponse",
    "StreamSettings",
    "client_socket",
    "stream_response",
]

log = logging.getLogger("flask_patterns.streams")

#: Streams that cannot replay their history (the broker is away) are logged
#: once per broker and outage, not once per client.
_replays: Outages[Broker] = Outages(
    log,
    "A stream could not replay its history, retry hint sent (to every stream"
    " until a replay works)",
    "Streams replay their history again",
    weak=True,
)

_OPEN = comment("open")


@dataclass(frozen=True)
class StreamSettings:
    """How a stream behaves (see the ``PATTERNS_STREAMS_*`` settings)."""

    heartbeat: float
    retry_ms: int
    lifetime: float
    queue_limit: int
    #: Seconds the client may take to accept a frame; 0 for no deadline.
    write_timeout: float = 0.0

    def opening(self) -> bytes:
        """The first frame: the ``retry:`` hint and a comment, sent at once."""
        return ServerSentEvent(None, retry=self.retry_ms).encode() + _OPEN

    def ends_at(self, now: float) -> float:
        """When a stream opened at ``now`` ends: its lifetime less up to 20 %,
        so that streams opened together do not all reconnect together."""
        return now + self.lifetime * (1 - 0.2 * random.random())  # noqa: S311


class _Socket(t.Protocol):
    def gettimeout(self) -> float | None: ...

    def settimeout(self, value: float | None) -> None: ...


def client_socket(environ: t.Mapping[str, t.Any]) -> _Socket | None:
    """The connection the server writes the response to, where the server
    says (gunicorn and Werkzeug do), to give its writes a deadline."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if hasattr(sock, "settimeout") else None


def stream_response(
    broker: Broker,
    channels: t.Iterable[str],
    last_event_id: str | None,
    settings: StreamSettings,
    give_back: t.Callable[[], None],
    sock: _Socket | None = None,
    *,
    detach: bool = False,
) -> Response:
    """The response that streams ``channels`` from ``broker``; ``give_back``
    runs when the server closes it. The server's writes to ``sock`` (see
    :func:`client_socket`) fail once a client has accepted nothing for
    ``settings.write_timeout`` seconds, which ends the stream. With
    ``detach``, a stream served by gunicorn's gevent worker leaves its
    request once it is live (see :mod:`.detached`)."""
    channels = frozenset(channels)
    listener = Listener(channels, maxsize=settings.queue_limit)
    frames = _frames(broker, listener, last_event_id, settings, sock)
    body = StreamBody(frames, give_back)

    def open_detached_stream(environ: t.Mapping[str, t.Any]) -> object | None:
        how = detachable(environ)
        if how is None:
            return None
        headers = response.get_wsgi_headers(t.cast(t.Any, environ)).to_wsgi_list()
        head = response_head(response.status, headers, how.chunked)
        return open_detached(
            how,
            broker,
            channels,
            settings,
            body.detach(),
            head,
            functools.partial(_catch_up_detached, broker, last_event_id),
        )

    response = StreamResponse(
        body,
        open_detached_stream if detach else None,
        mimetype="text/event-stream",
        # A stream may carry private channels: no cache keeps any of it.
        headers={"Cache-Control": "private, no-store", "X-Accel-Buffering": "no"},
        # The frames are bytes already: hand them to the server as they are,
        # without two more iterator layers per frame.
        direct_passthrough=True,
    )
    return response


class StreamResponse(Response):
    """A stream's response: served as the iterable of its frames, or, where
    the server allows, detached from its request once live."""

    def __init__(
        self,
        body: StreamBody,
        detach: t.Callable[[t.Mapping[str, t.Any]], object | None] | None,
        **options: t.Any,
    ) -> None:
        super().__init__(body, **options)
        self._detach = detach

    def __call__(self, environ: t.Any, start_response: t.Any) -> t.Iterable[bytes]:
        if self._detach is not None:
            handled = self._detach(environ)
            if handled is not None:
                return t.cast(t.Iterable[bytes], handled)
        return super().__call__(environ, start_response)


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

    def detach(self) -> t.Callable[[], None]:
        """Hand over ``give_back`` to a stream that goes on without this body;
        the frames never start and closing this gives nothing back."""
        give_back, self._give_back = self._give_back, _nothing
        self._frames.close()
        return give_back

    def close(self) -> None:
        try:
            self._frames.close()
        finally:
            self._give_back()


def _write_deadline(sock: _Socket | None, timeout: float) -> t.Callable[[], None]:
    """Give the server's writes to ``sock`` a deadline of ``timeout`` seconds
    (CPython and gevent apply it to a whole ``sendall``); returns what puts the
    timeout back as it was, for the next request on the connection."""
    if sock is None or timeout <= 0:
        return _nothing
    before = sock.gettimeout()
    sock.settimeout(timeout)

    def restore() -> None:
        with contextlib.suppress(OSError):  # the server may have closed it
            sock.settimeout(before)

    return restore


def _nothing() -> None:
    pass


def _catch_up(
    broker: Broker, listener: Listener, last_event_id: str | None
) -> tuple[list[bytes], int | None, str | None]:
    """The catch-up frames, the position of the last one and the epoch the
    stream is in (``None`` until its first event, for a fresh stream)."""
    if last_event_id is None:
        return [], None, None
    seen = parse_event_id(last_event_id)
    try:
        replay = broker.replay(listener.channels, seen[1] if seen else 0)
    except BrokerUnavailable as error:
        _replays[broker].failed(error)
        raise
    _replays[broker].ended()
    frames, last = catch_up_frames(replay, seen)
    return frames, last, replay.epoch


def _catch_up_detached(
    broker: Broker, last_event_id: str | None, stream: DetachedStream
) -> list[bytes]:
    frames, last, epoch = _catch_up(broker, stream, last_event_id)
    stream.epoch = epoch
    stream.last_sent = -1 if last is None else last
    return frames


def _frames(
    broker: Broker,
    listener: Listener,
    last_event_id: str | None,
    settings: StreamSettings,
    sock: _Socket | None,
) -> t.Generator[bytes, None, None]:
    restore_timeout = _write_deadline(sock, settings.write_timeout)
    ending = _Ending()
    observe.stream_opened()
    try:
        # Subscribe before the opening frame, so that a client that read it
        # gets every event published after, and before the replay, so that
        # nothing falls in between. Subscribing does not wait for a broker
        # that is away: the replay fails then, and the client retries.
        broker.subscribe(listener)
        yield ending.sent(settings.opening())
        try:
            frames, last_sent, epoch = _catch_up(broker, listener, last_event_id)
        except BrokerUnavailable:
            ending.reason = "broker"
            yield ending.sent(spread_retry(settings.retry_ms))
            return
        if frames:
            observe.events_sent(len(frames), None)
            for frame in frames:
                yield ending.sent(frame)
        deadline = settings.ends_at(time.monotonic())
        while not listener.overflowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or listener.closing:
                if listener.closing:
                    ending.reason = listener.close_reason
                else:
                    ending.reason = "lifetime"
                yield ending.sent(spread_retry(settings.retry_ms))
                return
            stored = listener.receive(min(settings.heartbeat, remaining))
            if listener.interrupted():
                continue
            if stored is None:
                yield ending.sent(comment())
                continue
            if stored.epoch != epoch:
                if epoch is not None:
                    # The broker lost the history this stream is in: the
                    # client reconnects and gets a reset.
                    ending.reason = "reset"
                    yield ending.sent(spread_retry(settings.retry_ms))
                    return
                epoch = stored.epoch
            elif last_sent is not None and stored.position <= last_sent:
                continue
            last_sent = stored.position
            # Told as it is handed to the server's write, as a detached
            # stream tells it as it writes.
            observe.events_sent(1, stored.published_at)
            yield ending.sent(stored.frame)
        ending.reason = "slow"
    finally:
        broker.unsubscribe(listener)
        restore_timeout()
        observe.stream_closed(ending.told(settings.write_timeout))


class _Ending:
    """Why a stream served by the server's writes ended. The server closes
    the stream's frames when a write fails: the client left, or, after a
    write that took the whole deadline, took nothing for it."""

    __slots__ = ("_since", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self._since = 0.0

    def sent(self, frame: bytes) -> bytes:
        """``frame``, handed to the server now: a close that comes instead
        of the server's next request for a frame ends the stream with this
        frame's write."""
        self._since = time.monotonic()
        return frame

    def told(self, write_timeout: float) -> str:
        if self.reason is not None:
            return self.reason
        took = time.monotonic() - self._since
        if write_timeout > 0 and took >= 0.9 * write_timeout:
            return "write_timeout"
        return "client"
