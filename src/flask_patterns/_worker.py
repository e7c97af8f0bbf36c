"""The loop of a worker command (``flask outbox work``, ``flask streams
relay``): poll, wait out outages with backoff, stop cleanly on a signal."""

from __future__ import annotations

import logging
import random
import signal
import threading
import typing as t

import click
import sqlalchemy as sa

__all__ = ["OUTAGES", "run_worker"]

log = logging.getLogger("flask_patterns.worker")

#: What a worker waits out instead of exiting: the database or the broker
#: cannot be reached (a restart, a network cut, a full pool).
OUTAGES: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)

#: The first and the longest wait between two attempts during an outage, in
#: seconds; the wait doubles in between.
FIRST_BACKOFF = 0.5
BACKOFF_CAP = 30.0


def run_worker(
    step: t.Callable[[threading.Event], int],
    *,
    name: str,
    once: bool,
    interval: float,
    outages: tuple[type[Exception], ...] = OUTAGES,
    done: t.Callable[[int], None] = lambda count: None,
) -> None:
    """Call ``step`` every ``interval`` seconds until SIGTERM or SIGINT. It is
    handed the stop event, to finish the item in flight and return early;
    ``done`` gets what it returned. An outage (one of ``outages``) is logged
    when it starts and when it ends, and waited out with capped, jittered
    backoff; with ``once`` it is an error instead."""
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    delay = FIRST_BACKOFF
    outage = False
    try:
        while not stop.is_set():
            try:
                count = step(stop)
            except outages as error:
                if once:
                    raise click.ClickException(f"{name}: {error}") from error
                if not outage:
                    log.warning("%s waits for an outage to end: %s", name, error)
                outage = True
                stop.wait(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if outage:
                log.warning("%s works again.", name)
                outage, delay = False, FIRST_BACKOFF
            done(count)
            if once:
                return
            stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_on_signals(stop: threading.Event) -> dict[int, t.Any]:
    """Make SIGTERM and SIGINT set ``stop`` (in the main thread only, where
    Python delivers signals); returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: t.Any) -> None:
        stop.set()

    return {
        signum: signal.signal(signum, on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
