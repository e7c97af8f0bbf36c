"""Streams that leave their request once they are live.

Under gunicorn's gevent worker, a stream would otherwise keep a greenlet
parked for its whole life: a Python data stack page and a copy of the C stack
(about 6 KiB), the server's request, environ and response objects, and a
switch into the greenlet, a generator step and the server's write path for
every event. A detached stream writes its response head, opening frame and
catch-up through the server's socket like any response, then keeps only its
connection (a duplicate of the socket's file descriptor) and a small object
in the fan-out, and tells gunicorn the request is handled. From then on:

- each event is written by the fan-out itself, with one non-blocking
  ``write`` per stream, chunk-framed as gunicorn frames a body;
- what a full socket buffer does not take waits in the stream until the
  socket is writable again (a watcher on gevent's loop); a client that takes
  nothing for ``write_timeout`` seconds, or falls ``queue_limit`` frames
  behind, is cut off and the others never wait for it;
- the stream clock writes the heartbeats and ends the stream after its
  lifetime, with a spread ``retry:`` hint, as a close of the channel or of
  every stream (a shutdown) does.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import resource
import socket
import sys
import threading
import time
import typing as t

from werkzeug.http import http_date

from .. import observe
from ..sse import comment
from ._gevent import original_get_ident
from ._gevent import patched_hub
from ._gevent import run_on_hub
from .broker import Broker
from .broker import BrokerUnavailable
from .events import http_chunk
from .events import StoredEvent
from .listener import Listener
from .listener import Waker
from .replay import spread_retry

if t.TYPE_CHECKING:
    from .response import StreamSettings

__all__ = [
    "SPARE_FILES",
    "Detachable",
    "DetachedStream",
    "close_detached_streams",
    "detachable",
    "open_detached",
    "response_head",
]


#: Files a worker keeps for everything but detached streams.
SPARE_FILES = 256

_LAST_CHUNK = b"0\r\n\r\n"
_HEARTBEAT = comment()
_HEARTBEAT_CHUNK = http_chunk(_HEARTBEAT)


class _Socket(t.Protocol):
    def fileno(self) -> int: ...

    def sendall(self, data: bytes) -> None: ...

    def gettimeout(self) -> float | None: ...

    def settimeout(self, value: float | None) -> None: ...

    def shutdown(self, how: int) -> None: ...


class Detachable(t.NamedTuple):
    """A request whose stream may leave it: the server's socket, whether the
    server frames bodies in chunks, and what tells gunicorn it is handled."""

    sock: _Socket
    chunked: bool
    handled: object


def detachable(environ: t.Mapping[str, t.Any]) -> Detachable | None:
    """What a stream needs to leave this request, or ``None`` when it must
    stay: only a bodiless ``GET`` over HTTP/1.1 (chunked, as gunicorn frames
    it) or HTTP/1.0, on a plain (not TLS) gevent socket of gunicorn's gevent
    worker, while the process has files to spare, may leave."""
    if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn/"):
        return None
    protocol = environ.get("SERVER_PROTOCOL")
    if environ.get("REQUEST_METHOD") != "GET" or protocol not in (
        "HTTP/1.1",
        "HTTP/1.0",
    ):
        return None
    if environ.get("CONTENT_LENGTH") not in (None, "", "0") or environ.get(
        "HTTP_TRANSFER_ENCODING"
    ):
        return None
    sock: t.Any = environ.get("gunicorn.socket")
    gevent_socket = getattr(sys.modules.get("gevent.socket"), "socket", None)
    # Exactly gevent's socket: its TLS socket is a subclass whose bytes on the
    # wire are not the frames.
    if gevent_socket is None or type(sock) is not gevent_socket:
        return None
    if patched_hub() is None or DetachedStream.open_count >= _file_budget():
        return None
    try:
        handled = importlib.import_module("gunicorn.workers.base_async").ALREADY_HANDLED
    except (ImportError, AttributeError):
        return None
    try:
        if os.get_blocking(sock.fileno()):
            return None
    except OSError:
        return None
    return Detachable(sock, protocol == "HTTP/1.1", handled)


def _file_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, soft - SPARE_FILES) if soft != resource.RLIM_INFINITY else 2**31


class DetachedStream(Listener):
    """One stream that left its request: its connection's file descriptor
    and what it must still write. It lives in the fan-out like a
    :class:`Listener`, but nothing ever waits in :meth:`receive`: every method
    runs on gevent's hub thread, never blocks, and writes to the connection
    at once."""

    __slots__ = (
        "_backlog",
        "_broker",
        "_chunked",
        "_ends_at",
        "_fd",
        "_give_back",
        "_heartbeat_at",
        "_held",
        "_hub",
        "_hub_thread",
        "_settings",
        "_unsent",
        "_unsent_since",
        "_watcher",
        "epoch",
        "last_sent",
    )

    #: How many streams of this process are detached or detaching.
    open_count = 0
    _lock = threading.Lock()
    _open: t.ClassVar[set[DetachedStream]] = set()

    def __init__(
        self,
        channels: t.Iterable[str],
        broker: Broker,
        settings: StreamSettings,
        give_back: t.Callable[[], None],
        *,
        chunked: bool,
    ) -> None:
        # Not Listener.__init__: no queue and no event to wait on.
        self.channels = frozenset(channels)
        self.maxsize = settings.queue_limit
        self.overflowed = False
        self.closing = False
        self.close_reason = "shutdown"
        self.wake_at = float("inf")
        self._parked = None
        self._waker: Waker | None = None
        self._broker = broker
        self._settings = settings
        self._give_back = give_back
        self._chunked = chunked
        self._fd = -1
        #: Events that arrived before the stream went live.
        self._held: list[StoredEvent] | None = []
        self._unsent = bytearray()
        self._unsent_since = 0.0
        self._backlog = 0
        self._watcher: t.Any = None
        self._heartbeat_at = self._ends_at = float("inf")
        hub = patched_hub()
        self._hub = hub[0] if hub else None
        self._hub_thread = original_get_ident()
        self.epoch: str | None = None
        self.last_sent = -1
        # Counted from now, so that streams starting at the same time cannot
        # all pass the file budget.
        self._register(True)

    def _register(self, held: bool) -> None:
        with DetachedStream._lock:
            if held:
                DetachedStream._open.add(self)
            else:
                DetachedStream._open.discard(self)
            DetachedStream.open_count = len(DetachedStream._open)

    # The fan-out's side.

    def attach(self, waker: Waker | None) -> None:
        self._waker = waker

    def push(self, event: StoredEvent) -> bool:
        """Write the event now (or hold it while the stream starts); never
        leaves a greenlet to resume."""
        if self._held is not None:
            if len(self._held) >= self.maxsize:
                self.overflowed = True
            else:
                self._held.append(event)
        elif self._fd >= 0:
            self._send(event)
        return False

    def offer(self, event: StoredEvent) -> None:
        self.push(event)

    def wake(self) -> None:
        """Run by the stream clock once :attr:`wake_at` has passed: cut a
        client that took nothing for the write deadline, end the stream after
        its lifetime, or write a heartbeat."""
        if self._fd < 0:
            return
        now = time.monotonic()
        timeout = self._settings.write_timeout
        if self._unsent and timeout > 0 and now - self._unsent_since >= timeout:
            self._end(retry=False, reason="write_timeout")
            return
        if now >= self._ends_at:
            reason = self.close_reason if self.closing else "lifetime"
            self._end(retry=True, reason=reason)
            return
        if now >= self._heartbeat_at:
            self._heartbeat_at = now + self._settings.heartbeat
            self._write(_HEARTBEAT_CHUNK if self._chunked else _HEARTBEAT)
        self._schedule()

    def close(self, reason: str = "shutdown") -> None:
        """End the stream with a spread ``retry:`` hint, from any thread."""
        self.close_reason = reason
        self.closing = True
        if self._hub is not None and original_get_ident() != self._hub_thread:
            run_on_hub(self._hub, self._hub_thread, self._end_soon)
        elif self._fd >= 0:
            self._end(retry=True, reason=reason)

    def _end_soon(self, reason: str | None = None) -> None:
        """From the hub itself, which must never wait (ending takes the
        fan-out's lock): have the clock end the stream at its next tick."""
        if reason is not None:
            self.close_reason = reason
        if self._waker is None:
            self._end(retry=True, reason=self.close_reason)
            return
        self.closing = True
        self._ends_at = self.wake_at = 0.0
        self._waker.wake_by(0.0)

    def receive(self, timeout: float) -> StoredEvent | None:
        raise TypeError("A detached stream writes its events itself.")

    def interrupted(self) -> bool:
        return self.overflowed or self.closing or self._fd < 0

    # Starting.

    def go_live(self, fd: int) -> None:
        """Take over the connection ``fd``: write what arrived meanwhile and
        write every event from now on."""
        self._fd = fd
        held, self._held = self._held or [], None
        now = time.monotonic()
        settings = self._settings
        self._heartbeat_at = now + settings.heartbeat
        self._ends_at = settings.ends_at(now)
        if self.overflowed:
            self._end(retry=False, reason="slow")
            return
        for event in held:
            self._send(event)
        if Listener.written:
            written, Listener.written = Listener.written, 0
            observe.events_sent(written, held[-1].published_at)
        if self.closing:
            self._end(retry=True, reason=self.close_reason)
        elif self._fd >= 0:
            self._schedule()

    def abandon(self) -> None:
        """Give up before going live: unsubscribe and give the slot back;
        once."""
        give_back, self._give_back = self._give_back, _given_back
        if give_back is _given_back:
            return
        self._held = None
        observe.stream_closed(self.close_reason)
        self._register(False)
        self._broker.unsubscribe(self)
        give_back()

    # Writing.

    def _send(self, event: StoredEvent) -> None:
        if event.epoch != self.epoch:
            if self.epoch is not None:
                # The broker lost this stream's history: the client
                # reconnects and gets a reset.
                self._end(retry=True, reason="reset")
                return
            self.epoch = event.epoch
        elif event.position <= self.last_sent:
            return
        self.last_sent = event.position
        if self._unsent:
            self._backlog += 1
            if self._backlog > self.maxsize:
                self.overflowed = True
                self._end(retry=False, reason="slow")
                return
        Listener.written += 1
        self._write(event.chunk if self._chunked else event.frame)

    def _write(self, data: bytes) -> None:
        """Write framed bytes after what is left to send, without blocking."""
        if self._unsent:
            self._unsent += data
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client left
            self._end(retry=False, reason="client")
            return
        if sent < len(data):
            self._unsent += data[sent:]
            self._unsent_since = time.monotonic()
            self._watch_writable()
            self._schedule()

    def _watch_writable(self) -> None:
        if self._hub is None:
            return
        if self._watcher is None:
            self._watcher = self._hub.loop.io(self._fd, 2)
        self._watcher.start(self._flush)

    def _flush(self) -> None:
        """Run by the hub when the connection takes bytes again."""
        if self._fd < 0:
            return
        try:
            sent = os.write(self._fd, self._unsent)
        except BlockingIOError:
            return
        except OSError:
            self._end_soon("client")
            return
        del self._unsent[:sent]
        # The deadline runs from the last byte the client took.
        self._unsent_since = time.monotonic()
        if not self._unsent:
            self._backlog = 0
            self._watcher.stop()
        self._schedule()

    def _schedule(self) -> None:
        wake_at = min(self._heartbeat_at, self._ends_at)
        timeout = self._settings.write_timeout
        if self._unsent and timeout > 0:
            wake_at = min(wake_at, self._unsent_since + timeout)
        self.wake_at = wake_at
        if self._waker is not None:
            self._waker.wake_by(wake_at)

    def _end(self, retry: bool, reason: str) -> None:
        """Write the last frames if the connection takes them, close it,
        unsubscribe and give the slot back; once."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        observe.stream_closed(reason)
        last = spread_retry(self._settings.retry_ms) if retry else b""
        if self._chunked:
            last = (http_chunk(last) if last else b"") + _LAST_CHUNK
        if not self._unsent and last:
            with contextlib.suppress(OSError):
                os.write(fd, last)
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        self._unsent = bytearray()
        with contextlib.suppress(OSError):
            os.close(fd)
        self._register(False)
        self.wake_at = float("inf")
        self._broker.unsubscribe(self)
        self._give_back()


def _given_back() -> None:
    """What a stream holds once it gave its slot back."""


def _frame(data: bytes, chunked: bool) -> bytes:
    return http_chunk(data) if chunked else data


def open_detached(
    how: Detachable,
    broker: Broker,
    channels: t.Iterable[str],
    settings: StreamSettings,
    give_back: t.Callable[[], None],
    head: bytes,
    catch_up: t.Callable[[DetachedStream], list[bytes]],
) -> object:
    """Start the stream on the request's connection and detach it; returns
    what tells gunicorn the request is handled.

    The head, the opening frame and the catch-up go out through the server's
    socket within the write deadline, blocking only this request's greenlet.
    Events published meanwhile are held, then written in order once the
    stream is live, so that none falls between the replay and the live ones.
    """
    stream = DetachedStream(channels, broker, settings, give_back, chunked=how.chunked)
    observe.stream_opened()
    sock = how.sock
    before = sock.gettimeout()
    if settings.write_timeout > 0:
        sock.settimeout(settings.write_timeout)
    try:
        broker.subscribe(stream)
        sock.sendall(head + _frame(settings.opening(), how.chunked))
        try:
            frames = catch_up(stream)
        except BrokerUnavailable:
            # Logged by catch_up, once per outage.
            frames = [spread_retry(settings.retry_ms)]
            stream.closing = True
            stream.close_reason = "broker"
        if frames:
            sock.sendall(b"".join(_frame(frame, how.chunked) for frame in frames))
            if not stream.closing:
                observe.events_sent(len(frames), None)
        if stream.closing:
            if how.chunked:
                sock.sendall(_LAST_CHUNK)
            stream.abandon()
            sock.shutdown(socket.SHUT_RDWR)
            return how.handled
        fd = os.dup(sock.fileno())
    except BaseException as error:
        if not stream.closing:
            stream.close_reason = (
                "write_timeout" if isinstance(error, TimeoutError) else "client"
            )
        stream.abandon()
        raise
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(before)
    # gunicorn reads the connection for a next request: it finds its end and
    # closes its own descriptor, while the stream keeps the duplicate.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    stream.go_live(fd)
    return how.handled


def response_head(status: str, headers: list[tuple[str, str]], chunked: bool) -> bytes:
    """The status line and headers of a detached stream's response: the app's
    headers, and what gunicorn would add."""
    lines = [f"HTTP/1.1 {status}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Date: {http_date()}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    # The connection carries this one response: it is never read again.
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def close_detached_streams() -> int:
    """End every detached stream of this process with a retry hint; returns
    how many there were. Run at exit, so that even a worker stopped without
    the stream pool's hooks tells its clients when to come back."""
    with DetachedStream._lock:
        streams = list(DetachedStream._open)
    for stream in streams:
        stream._end(retry=True, reason="shutdown")
    return len(streams)


atexit.register(close_detached_streams)
