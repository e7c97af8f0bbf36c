"""One log line when something starts failing and one when it works again,
however many attempts fail in between: a Redis that is away for a minute
must not write a line per retry, per stream or per message."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
import weakref

__all__ = ["Outage", "Outages"]

K = t.TypeVar("K")


class Outage:
    """Something that may keep failing: :meth:`failed` logs the first failure
    with its error, :meth:`ended` logs, once, how long the failures lasted and
    how many attempts failed. Safe to use from several threads.

    :param logger: where both lines go, at ``level``.
    :param started: the first line, followed by ``": <error>"``.
    :param ended: the last line, followed by how long and how many attempts.
    """

    def __init__(
        self,
        logger: logging.Logger,
        started: str,
        ended: str,
        *,
        level: int = logging.WARNING,
    ) -> None:
        self.logger = logger
        self.started = started
        self.ended_message = ended
        self.level = level
        self._lock = threading.Lock()
        #: When the first failure of the outage happened (``time.monotonic``).
        self._since: float | None = None
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, error: object, *, exc_info: bool = False) -> bool:
        """Count a failed attempt; the first of an outage is logged with
        ``error`` (and the traceback being handled, with ``exc_info``).
        Returns whether this one started the outage."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first:
            self.logger.log(
                self.level, "%s: %s", self.started, error, exc_info=exc_info
            )
        return first

    def ended(self, detail: str = "") -> bool:
        """An attempt worked: if an outage was going on, log its end (with
        ``detail`` appended, such as ``"; 5 events relayed"``). Returns
        whether one was."""
        with self._lock:
            since, failures = self._since, self._failures
            self._since, self._failures = None, 0
        if since is None:
            return False
        self.logger.log(
            self.level,
            "%s after %.1f s and %d failed attempt%s%s.",
            self.ended_message,
            time.monotonic() - since,
            failures,
            "" if failures == 1 else "s",
            detail,
        )
        return True


class Outages(t.Generic[K]):
    """One :class:`Outage` per key (a message kind, a broker), made on first
    use; ``{}`` in the two messages stands for the key.

    :param weak: forget the outage of a key once the key is gone (for keys
        that are objects, such as brokers).
    """

    def __init__(
        self, logger: logging.Logger, started: str, ended: str, *, weak: bool = False
    ) -> None:
        self.logger = logger
        self.started = started
        self.ended = ended
        self._lock = threading.Lock()
        self._by_key: t.MutableMapping[K, Outage] = (
            weakref.WeakKeyDictionary() if weak else {}
        )

    def __getitem__(self, key: K) -> Outage:
        with self._lock:
            outage = self._by_key.get(key)
            if outage is None:
                outage = Outage(
                    self.logger, self.started.format(key), self.ended.format(key)
                )
                self._by_key[key] = outage
            return outage
