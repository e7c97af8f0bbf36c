"""What the library does, told to observers: metrics, traces and request ids
plug in here.

The units of work, the outbox and the streams report through the functions of
this module; each is a no-op while no observer is added, so a process that
watches nothing pays one check per report. :mod:`flask_patterns.metrics`
(Prometheus), :mod:`flask_patterns.tracing` (OpenTelemetry) and
:mod:`flask_patterns.logs` (request ids) are observers; an app can add its own
with :func:`add_observer`.

What an observer :meth:`~Observer.carry` returns is stored with an outbox
message and sent with a stream event, and handed back to
:meth:`~Observer.resume` where the message is delivered or the event written,
in another process and later: that is how a mail sent by the worker names the
request that caused it.
"""

from __future__ import annotations

import contextlib
import threading
import typing as t

__all__ = [
    "DISCONNECT_REASONS",
    "TRANSACTION_OUTCOMES",
    "Carried",
    "Observer",
    "add_observer",
    "after_commit_failed",
    "broker_seen",
    "carry",
    "events_sent",
    "observers",
    "outbox_delivered",
    "remove_observer",
    "resumed",
    "span",
    "stream_closed",
    "stream_opened",
    "stream_reset",
    "transaction_ended",
]

#: How a unit of work's transaction ended: committed, rolled back, rolled back
#: because the response vetoed the commit, or failed to commit.
TRANSACTION_OUTCOMES = ("commit", "rollback", "veto", "error")

#: Why a stream ended: the client left, fell too far behind (``slow``), took
#: nothing for the write deadline, reached its lifetime, was ended by a
#: shutdown or by ``end_channel`` (``channel_ended``), is in a history the
#: broker lost (``reset``), or could not replay it from a broker that is away
#: (``broker``).
DISCONNECT_REASONS = (
    "client",
    "slow",
    "write_timeout",
    "lifetime",
    "shutdown",
    "channel_ended",
    "reset",
    "broker",
)

#: What observers store with a message or an event: short strings by name.
Carried = t.Mapping[str, str]


class Observer:
    """Told what the library does. Every method does nothing here: override
    the ones you need. They must not raise, and the ones called per event
    (:meth:`events_sent`) must be cheap."""

    def transaction_ended(self, outcome: str, seconds: float | None) -> None:
        """A transaction ended with ``outcome`` (one of
        :data:`TRANSACTION_OUTCOMES`); ``seconds`` is how long its commit
        took, ``None`` for a rollback."""

    def after_commit_failed(self, callback: str, error: BaseException) -> None:
        """An after-commit callback, named ``callback``, raised ``error``."""

    def outbox_delivered(self, kind: str, result: str) -> None:
        """An attempt to deliver an outbox message of ``kind`` ended: ``sent``,
        ``retry`` (it failed and is tried again later) or ``failed`` (given
        up)."""

    def stream_opened(self) -> None:
        """A stream of this process started."""

    def stream_closed(self, reason: str) -> None:
        """A stream of this process ended, for ``reason`` (one of
        :data:`DISCONNECT_REASONS`)."""

    def events_sent(self, count: int, published_at: float | None) -> None:
        """``count`` streams of this process were written one event, published
        at ``published_at`` (``time.time()``, ``None`` for a replayed one)."""

    def stream_reset(self, reason: str) -> None:
        """A reconnecting client was sent a ``reset`` event, for ``reason``
        (``unknown id``, ``history lost`` or ``history expired``)."""

    def broker_seen(self, up: bool) -> None:
        """The broker answered (``up``) or failed to."""

    def span(
        self, name: str, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None] | None:
        """A context manager around the work called ``name``, or ``None``."""
        return None

    def carry(self) -> Carried:
        """What to store with a message or event made now."""
        return {}

    def resume(
        self, name: str, carried: Carried, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None] | None:
        """A context manager around the work called ``name`` done later for
        a message or event that ``carried`` was stored with, or ``None``."""
        return None


_lock = threading.Lock()
#: The observers added, in order; replaced whole, so readers need no lock.
_observers: tuple[Observer, ...] = ()


def observers() -> tuple[Observer, ...]:
    """The observers added, in order."""
    return _observers


def add_observer(observer: Observer) -> None:
    """Tell ``observer`` what the library does from now on (once, however
    often it is added)."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop telling ``observer``; never raises."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)


def transaction_ended(outcome: str, seconds: float | None = None) -> None:
    for observer in _observers:
        observer.transaction_ended(outcome, seconds)


def after_commit_failed(callback: str, error: BaseException) -> None:
    for observer in _observers:
        observer.after_commit_failed(callback, error)


def outbox_delivered(kind: str, result: str) -> None:
    for observer in _observers:
        observer.outbox_delivered(kind, result)


def stream_opened() -> None:
    for observer in _observers:
        observer.stream_opened()


def stream_closed(reason: str) -> None:
    for observer in _observers:
        observer.stream_closed(reason)


def events_sent(count: int, published_at: float | None) -> None:
    for observer in _observers:
        observer.events_sent(count, published_at)


def stream_reset(reason: str) -> None:
    for observer in _observers:
        observer.stream_reset(reason)


def broker_seen(up: bool) -> None:
    for observer in _observers:
        observer.broker_seen(up)


@contextlib.contextmanager
def _entered(managers: list[t.ContextManager[None]]) -> t.Iterator[None]:
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


_NOTHING: t.ContextManager[None] = contextlib.nullcontext()


def span(name: str, **attributes: str) -> t.ContextManager[None]:
    """A context manager around the work called ``name``: a span for a
    tracer, nothing for the rest."""
    if not _observers:
        return _NOTHING
    managers = [m for o in _observers if (m := o.span(name, attributes)) is not None]
    return _entered(managers) if managers else _NOTHING


def carry() -> dict[str, str] | None:
    """What the observers store with a message or event made now; ``None``
    when there is nothing to store."""
    if not _observers:
        return None
    carried: dict[str, str] = {}
    for observer in _observers:
        carried.update(observer.carry())
    return carried or None


def resumed(
    name: str, carried: Carried | None, **attributes: str
) -> t.ContextManager[None]:
    """A context manager around the work called ``name`` for a message or event
    stored with ``carried`` (what :func:`carry` returned, or ``None``)."""
    if not _observers:
        return _NOTHING
    managers = [
        m
        for o in _observers
        if (m := o.resume(name, carried or {}, attributes)) is not None
    ]
    return _entered(managers) if managers else _NOTHING
