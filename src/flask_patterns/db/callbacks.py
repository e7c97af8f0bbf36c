"""Callbacks waiting for a commit, and capturing them in tests."""

from __future__ import annotations

import contextlib
import functools
import logging
import typing as t
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field

from .. import observe

__all__ = [
    "Callback",
    "Capture",
    "PendingCallback",
    "callback_name",
    "capture_on_commit_callbacks",
    "current_capture",
    "forget_captured",
    "run_callbacks",
]

log = logging.getLogger("flask_patterns.db")

Callback = t.Callable[[], object]


@dataclass(eq=False)
class PendingCallback:
    """A callback registered with ``after_commit``, and where it belongs: the
    savepoints open when it was registered, and the capture that holds it."""

    func: Callback
    robust: bool
    savepoints: frozenset[int]
    capture: Capture | None


@dataclass(eq=False)
class Capture:
    """The callbacks registered inside one ``capture_on_commit_callbacks``."""

    callbacks: list[PendingCallback] = field(default_factory=list)


_capture: ContextVar[Capture | None] = ContextVar(
    "flask_patterns.capture", default=None
)


def current_capture() -> Capture | None:
    """The innermost capture open in this context, if any."""
    return _capture.get()


def callback_name(func: Callback) -> str:
    """How logs, spans and metrics name ``func``: its qualified name, that of
    the function a :func:`functools.partial` wraps (not its arguments, which
    may be long or private)."""
    while isinstance(func, functools.partial):
        func = func.func
    return str(getattr(func, "__qualname__", func))


def run_callbacks(callbacks: list[PendingCallback], during: str) -> None:
    """Run ``callbacks`` in order: a robust one that raises is logged and the
    rest run; another one's exception stops them."""
    for callback in callbacks:
        name = callback_name(callback.func)
        try:
            with observe.span("flask_patterns.after_commit", callback=name):
                callback.func()
        except Exception as error:
            observe.after_commit_failed(name, error)
            if not callback.robust:
                raise
            log.exception("Error calling %s in after_commit() %s.", name, during)


def forget_captured(callback: PendingCallback) -> None:
    """Take a callback that will never run out of the capture holding it."""
    if callback.capture is not None:
        callback.capture.callbacks.remove(callback)


@contextlib.contextmanager
def capture_on_commit_callbacks(*, execute: bool = False) -> t.Iterator[list[Callback]]:
    """Collect the callbacks registered inside the block instead of running them at
    commit, for tests. The yielded list is filled when the block exits; callbacks
    of savepoints or transactions that rolled back are not in it.

    :param execute: run the captured callbacks at exit, including the ones they
        register themselves, in registration order.
    """
    capture = Capture()
    token = _capture.set(capture)
    result: list[Callback] = []
    try:
        yield result
    finally:
        try:
            done = 0
            while done < len(capture.callbacks):
                batch = capture.callbacks[done:]
                done = len(capture.callbacks)
                result.extend(callback.func for callback in batch)
                if execute:
                    run_callbacks(batch, "while executing captured callbacks")
        finally:
            _capture.reset(token)
