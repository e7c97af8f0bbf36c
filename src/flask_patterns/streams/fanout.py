"""The open streams of one process, by channel, and the delivery of an event to
every one of them."""

from __future__ import annotations

import threading
import typing as t

from .. import observe
from ._clock import Clock
from ._gevent import original_get_ident
from ._gevent import patched_hub
from ._gevent import run_on_hub
from .events import StoredEvent
from .listener import Listener
from .listener import resume_parked

__all__ = [
    "FanOut",
]


class FanOut:
    """The listeners of one process, by channel. It is the :class:`Waker` of
    each: a :class:`Clock` ends their waits while there are listeners, and under
    gevent one hub callback resumes every listener an event reaches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._by_channel: dict[str, set[Listener]] = {}
        self._listeners: set[Listener] = set()
        self._clock: Clock | None = None
        #: Under gevent, the hub that resumes parked listeners.
        self.hub: t.Any = None
        self.current_greenlet: t.Callable[[], t.Any] = threading.current_thread
        self._hub_thread = 0

    def add(self, listener: Listener) -> None:
        """Deliver the listener's channels to it from now on."""
        with self.lock:
            if self._clock is None:
                # Started before anything is registered: if it cannot start,
                # the subscription fails whole.
                self._use_gevent()
                clock = Clock(self._listeners_or_stop, self._clock_failed)
                clock.start()
                self._clock = clock
            for channel in listener.channels:
                self._by_channel.setdefault(channel, set()).add(listener)
            self._listeners.add(listener)
            listener.attach(self)

    def remove(self, listener: Listener) -> None:
        """Stop delivering to the listener, and end the wait it is in, which no
        clock would end any more."""
        with self.lock:
            for channel in listener.channels:
                listeners = self._by_channel.get(channel)
                if listeners is not None:
                    listeners.discard(listener)
                    if not listeners:
                        del self._by_channel[channel]
            if listener in self._listeners:
                self._listeners.discard(listener)
                listener.attach(None)

    def deliver(self, event: StoredEvent) -> None:
        """Hand ``event`` to every listener of its channel; never blocks.
        Under gevent it runs on the hub's thread, where detached streams
        write: from another thread it is handed there."""
        if self.hub is not None and original_get_ident() != self._hub_thread:
            run_on_hub(self.hub, self._hub_thread, self.deliver, event)
            return
        with self.lock:
            listeners = list(self._by_channel.get(event.channel, ()))
        parked = [listener for listener in listeners if listener.push(event)]
        if Listener.written:
            written, Listener.written = Listener.written, 0
            observe.events_sent(written, event.published_at)
        if parked:
            self.resume(parked)

    def wake_by(self, when: float) -> None:
        clock = self._clock
        if clock is not None:
            clock.wake_by(when)

    def resume(self, listeners: list[Listener]) -> None:
        """Under gevent: switch to each parked listener's greenlet from ONE
        hub callback."""
        run_on_hub(self.hub, self._hub_thread, resume_parked, listeners)

    def channels(self) -> list[str]:
        """The channels some listener of this process wants."""
        with self.lock:
            return list(self._by_channel)

    def close_all(self, reason: str = "shutdown") -> int:
        """Ask every listener to end, for ``reason``; returns how many there
        were."""
        with self.lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.close(reason)
        return len(listeners)

    def close_channel(self, channel: str) -> int:
        """Ask the listeners of ``channel`` to end; returns how many."""
        with self.lock:
            listeners = list(self._by_channel.get(channel, ()))
        for listener in listeners:
            listener.close("channel_ended")
        return len(listeners)

    @property
    def clock_running(self) -> bool:
        """Whether a clock ends the waits of the listeners now."""
        return self._clock is not None

    def count(self) -> int:
        """How many listeners are subscribed."""
        with self.lock:
            return len(self._listeners)

    def _use_gevent(self) -> None:
        """Park listeners on gevent's hub if gevent patched ``threading``."""
        found = patched_hub()
        if found is None:
            self.hub = None
            return
        self.hub, self.current_greenlet = found
        self._hub_thread = original_get_ident()

    def _listeners_or_stop(self) -> list[Listener] | None:
        with self.lock:
            if not self._listeners:
                self._clock = None
                return None
            return list(self._listeners)

    def _clock_failed(self) -> None:
        with self.lock:
            self._clock = None
            for listener in self._listeners:
                listener.attach(None)
