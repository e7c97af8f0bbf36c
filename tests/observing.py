"""An observer that records what it is told, for the tests of the hooks."""

from __future__ import annotations

import contextlib
import threading
import typing as t

from flask_patterns import observe


class Recorder(observe.Observer):
    """Keeps every report as a tuple, and carries ``{"origin": origin}``."""

    def __init__(self, origin: str = "test") -> None:
        self.origin = origin
        self.told: list[tuple[t.Any, ...]] = []
        self.lock = threading.Lock()

    def _tell(self, *report: t.Any) -> None:
        with self.lock:
            self.told.append(report)

    def of(self, kind: str) -> list[tuple[t.Any, ...]]:
        """The reports of ``kind``, without it."""
        with self.lock:
            return [report[1:] for report in self.told if report[0] == kind]

    def transaction_ended(self, outcome: str, seconds: float | None) -> None:
        self._tell("transaction", outcome, seconds)

    def after_commit_failed(self, callback: str, error: BaseException) -> None:
        self._tell("after_commit_failed", callback, str(error))

    def outbox_delivered(self, kind: str, result: str) -> None:
        self._tell("outbox", kind, result)

    def stream_opened(self) -> None:
        self._tell("opened")

    def stream_closed(self, reason: str) -> None:
        self._tell("closed", reason)

    def events_sent(self, count: int, published_at: float | None) -> None:
        self._tell("sent", count, published_at)

    def stream_reset(self, reason: str) -> None:
        self._tell("reset", reason)

    def broker_seen(self, up: bool) -> None:
        self._tell("broker", up)

    @contextlib.contextmanager
    def _around(self, kind: str, name: str, *details: t.Any) -> t.Iterator[None]:
        self._tell(kind, name, *details)
        try:
            yield
        except BaseException as error:
            self._tell("failed", name, type(error).__name__)
            raise
        self._tell("done", name)

    def span(
        self, name: str, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None]:
        return self._around("span", name, dict(attributes))

    def carry(self) -> observe.Carried:
        return {"origin": self.origin}

    def resume(
        self, name: str, carried: observe.Carried, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None]:
        return self._around("resumed", name, dict(carried), dict(attributes))


@contextlib.contextmanager
def recording(origin: str = "test") -> t.Iterator[Recorder]:
    """A recorder added for the block."""
    recorder = Recorder(origin)
    observe.add_observer(recorder)
    try:
        yield recorder
    finally:
        observe.remove_observer(recorder)
