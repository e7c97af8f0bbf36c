"""The inbox of one open stream."""

from __future__ import annotations

import math
import threading
import time
import typing as t
from collections import deque

from .events import StoredEvent

__all__ = [
    "DEFAULT_QUEUE_LIMIT",
    "Listener",
    "Waker",
    "resume_parked",
]

#: The events a stream may have waiting before it is disconnected.
DEFAULT_QUEUE_LIMIT = 256


class Waker(t.Protocol):
    """What a listener needs from the fan-out it is subscribed to: someone to
    end its waits on time, and under gevent a hub to park its greenlet on."""

    #: Under gevent, the hub that resumes parked listeners; ``None`` otherwise.
    hub: t.Any
    #: The running greenlet (under gevent) or thread.
    current_greenlet: t.Callable[[], t.Any]

    def wake_by(self, when: float) -> None:
        """End, at the monotonic time ``when``, the wait about to begin."""

    def resume(self, listeners: list[Listener]) -> None:
        """Switch back to the parked greenlets of ``listeners``."""


class Listener:
    """The inbox of one open stream, filled by the broker. A listener that falls
    more than ``maxsize`` events behind is marked ``overflowed`` instead of
    growing or slowing the others; its stream then ends and the client replays.

    A deque and an event rather than a ``queue.Queue``: delivering to 10,000
    streams is one :meth:`push` each per event, and under gevent a ``Queue``
    costs about ten times as much time and memory. For the same reason a
    listener subscribed to a broker waits without a timer of its own (the
    broker's :class:`Waker` ends its wait when the timeout has passed), and
    under gevent parks its greenlet for the broker to resume with all the
    others an event reaches (:func:`resume_parked`).
    """

    #: Events the listeners that write to their clients themselves (detached
    #: streams, on gevent's hub) wrote since the fan-out last told the
    #: observers: counted per event, not per stream and event.
    written: t.ClassVar[int] = 0

    __slots__ = (
        "_items",
        "_parked",
        "_ready",
        "_waker",
        "channels",
        "close_reason",
        "closing",
        "maxsize",
        "overflowed",
        "wake_at",
    )

    def __init__(
        self, channels: t.Iterable[str], *, maxsize: int = DEFAULT_QUEUE_LIMIT
    ) -> None:
        self.channels = frozenset(channels)
        self.maxsize = maxsize
        self.overflowed = False
        self.closing = False
        #: Why it was closed (see :data:`flask_patterns.observe.DISCONNECT_REASONS`).
        self.close_reason = "shutdown"
        self._items: deque[StoredEvent] = deque()
        self._ready = threading.Event()
        #: Set while subscribed to a fan-out, which ends waits at ``wake_at``.
        self._waker: Waker | None = None
        self.wake_at = math.inf
        # Under gevent, the greenlet waiting in receive(), if any.
        self._parked: t.Any = None

    def attach(self, waker: Waker | None) -> None:
        """Let ``waker`` end this listener's waits from now on (``None``: back
        to timed waits), and end the wait in progress, which the previous one
        would have ended."""
        previous, self._waker = self._waker, waker
        if waker is None:
            self._wake_through(previous)

    def offer(self, event: StoredEvent) -> None:
        """Add an event (from any thread or greenlet); never blocks."""
        if self.push(event):
            self.wake()

    def push(self, event: StoredEvent) -> bool:
        """Add an event and end the wait of a thread; returns whether a parked
        greenlet is left for the caller to resume (with others, in one go)."""
        if not self.overflowed:
            if len(self._items) >= self.maxsize:
                self.overflowed = True
            else:
                self._items.append(event)
        if self._parked is not None:
            return True
        self._ready.set()
        return False

    def receive(self, timeout: float) -> StoredEvent | None:
        """The next event, waiting up to ``timeout`` seconds; ``None`` when the
        time ran out or the listener was closed or overflowed, or now and then
        a little early, so treat ``None`` as "nothing yet". A subscribed
        listener's timeout ends on the broker's clock: within 0.1 s, or about
        a second when threads race the clock."""
        if not self._items:
            # Clear before looking again: an offer in between sets it anew.
            self._ready.clear()
            if (
                not self._items
                and not self.closing
                and not self.overflowed
                and timeout > 0
            ):
                waker = self._waker
                if waker is None:
                    self._ready.wait(timeout)
                else:
                    self.wake_at = wake_at = time.monotonic() + timeout
                    waker.wake_by(wake_at)
                    if waker.hub is None:
                        self._ready.wait()
                    else:
                        self._park(waker)
                    self.wake_at = math.inf
        return self._items.popleft() if self._items else None

    def _park(self, waker: Waker) -> None:
        """Under gevent: wait for the broker to switch back to this greenlet.
        One hub callback then resumes every stream an event reaches, where an
        Event per stream takes a callback each."""
        me = waker.current_greenlet()
        self._parked = me
        # An offer from another OS thread may have come between the caller's
        # look and the line above, and seen nothing parked: look again.
        if self._items or self.closing or self.overflowed:
            self._parked = None
            return
        try:
            waker.hub.switch()
        finally:
            if self._parked is me:
                self._parked = None

    def wake(self) -> None:
        """End the current wait of :meth:`receive` (it returns ``None``)."""
        self._wake_through(self._waker)

    def _wake_through(self, waker: Waker | None) -> None:
        if self._parked is not None and waker is not None:
            waker.resume([self])
        self._ready.set()

    def close(self, reason: str = "shutdown") -> None:
        """Ask the stream to end (with a reconnection hint), for ``reason``."""
        self.close_reason = reason
        self.closing = True
        self.wake()

    def interrupted(self) -> bool:
        """Whether the stream must end: closed, or fallen behind. Another thread
        or greenlet may have set either flag during the last wait."""
        return self.overflowed or self.closing


def resume_parked(listeners: list[Listener]) -> None:
    """Run by the hub: switch to every listener still parked. A greenlet that
    left its wait otherwise (killed, say) is not parked any more."""
    for listener in listeners:
        parked = listener._parked
        if parked is not None:
            listener._parked = None
            parked.switch()
