"""The thread that ends the waits of the listeners of one process."""

from __future__ import annotations

import logging
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from .listener import Listener

log = logging.getLogger("flask_patterns.streams")


class Clock:
    """One thread (a greenlet under gevent) that looks at every listener each
    ``tick`` seconds and wakes those whose wait is due, instead of a timer
    started and cancelled by each of 10,000 streams for each event. It looks
    only when a wait is due (or a second has passed, in case a thread lowered
    :attr:`next_look` while it looked).

    :param listeners: the listeners to look at now, or ``None`` when there are
        none left: the clock then stops (and the caller forgets it, atomically).
    :param failed: called if the clock dies, to hand the listeners back to
        timed waits.
    """

    tick = 0.1
    longest_sleep = 1.0

    def __init__(
        self,
        listeners: t.Callable[[], list[Listener] | None],
        failed: t.Callable[[], None],
    ) -> None:
        self._listeners = listeners
        self._failed = failed
        #: The monotonic time of the earliest wait the clock must end.
        self.next_look = 0.0
        self._thread = threading.Thread(
            target=self._run, name="flask-patterns-clock", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake_by(self, when: float) -> None:
        """Look again no later than ``when``."""
        if when < self.next_look:
            self.next_look = when

    def _run(self) -> None:
        stopped = False
        try:
            self._tick_until_idle()
            stopped = True
        except Exception:
            log.exception("The stream clock failed; streams fall back to timers.")
        finally:
            if not stopped:
                self._failed()

    def _tick_until_idle(self) -> None:
        last_look = time.monotonic()
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            if now < self.next_look and now - last_look < self.longest_sleep:
                continue
            listeners = self._listeners()
            if listeners is None:
                return
            last_look = now
            next_look = now + self.longest_sleep
            for listener in listeners:
                wake_at = listener.wake_at
                if wake_at <= now:
                    listener.wake()
                elif wake_at < next_look:
                    next_look = wake_at
            self.next_look = next_look
