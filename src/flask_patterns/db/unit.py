"""The unit of work: the transaction of one task, and its session."""

from __future__ import annotations

import enum
import logging
import time
import typing as t

import sqlalchemy as sa
from blinker import Namespace
from flask import current_app
from flask import has_app_context
from flask.wrappers import Response
from sqlalchemy.orm import Session

from .. import observe
from .callbacks import forget_captured
from .callbacks import PendingCallback
from .callbacks import run_callbacks

__all__ = [
    "Boundary",
    "CommitVeto",
    "TaskSession",
    "UnitOfWork",
    "committed",
    "rolled_back",
]

log = logging.getLogger("flask_patterns.db")

_signals = Namespace()

#: Sent with the app as sender after a task's transaction committed, before the
#: after-commit callbacks run.
committed = _signals.signal("committed")

#: Sent with the app as sender after a task's transaction rolled back.
rolled_back = _signals.signal("rolled-back")

CommitVeto = t.Callable[[Response], bool]


class Boundary(enum.Enum):
    """Who decides whether a unit of work commits."""

    #: The request boundary, from the response (see ``PATTERNS_COMMIT_VETO``).
    REQUEST = "request"
    #: The end of the application context: commit on a clean exit.
    TASK = "task"
    #: A ``db.transaction()`` block: commit when it exits without raising.
    BLOCK = "block"


def _app() -> t.Any:
    return current_app._get_current_object()  # type: ignore[attr-defined]


class TaskSession(Session):
    """The session of one task. Its ``commit`` runs the task's after-commit
    callbacks and its ``rollback`` drops them, so an explicit
    ``db.session.commit()`` in a view keeps the callbacks in step with the data.
    """

    @property
    def _unit(self) -> UnitOfWork:
        return t.cast(UnitOfWork, self.info["unit_of_work"])

    #: Set when a commit failed, so that the rollback after it is not told
    #: to the observers as a second ending of the same transaction.
    _failed_commit = False

    def commit(self) -> None:
        """Commit now, then run the ``after_commit`` callbacks registered so
        far; a failed commit drops them. Refused inside ``db.savepoint()``."""
        unit = self._unit
        unit.refuse_inside_savepoint("commit")
        told = self.in_transaction() and bool(observe.observers())
        started = time.perf_counter()
        try:
            with observe.span("flask_patterns.db.commit"):
                super().commit()
        except BaseException:
            if told:
                # The transaction may stay open until rolled back: that
                # rollback ends the same transaction.
                self._failed_commit = self.in_transaction()
                observe.transaction_ended("error", time.perf_counter() - started)
            unit.drop_callbacks()
            raise
        if told:
            observe.transaction_ended("commit", time.perf_counter() - started)
        unit.run_commit_callbacks()

    def rollback(self) -> None:
        """Roll back now and drop the callbacks waiting for the commit.
        Refused inside ``db.savepoint()``."""
        unit = self._unit
        unit.refuse_inside_savepoint("rollback")
        self._tell_rollback(unit)
        try:
            super().rollback()
        finally:
            unit.drop_callbacks()

    def close(self) -> None:
        """Close the session; a transaction still open is rolled back, and the
        callbacks waiting for it are dropped with it."""
        was_open = self.in_transaction()
        if was_open:
            self._tell_rollback(self._unit)
        try:
            super().close()
        finally:
            if was_open:
                self._unit.drop_callbacks()

    def _tell_rollback(self, unit: UnitOfWork) -> None:
        if self._failed_commit:
            self._failed_commit = False
        elif self.in_transaction() and observe.observers():
            observe.transaction_ended("veto" if unit.vetoed else "rollback")


class UnitOfWork:
    """The transaction of one task and the callbacks waiting for its commit.

    :param settled: a unit that starts settled commits nothing implicitly (one
        made in a streamed body, after the request boundary decided).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        boundary: Boundary,
        veto: CommitVeto | None = None,
        settled: bool = False,
        session_options: t.Mapping[str, t.Any] | None = None,
    ) -> None:
        self.engine = engine
        self.session_options = session_options or {}
        #: The request boundary's commit veto (a request's unit only).
        self.veto = veto
        self.boundary = boundary
        self._session: TaskSession | None = None
        self.callbacks: list[PendingCallback] = []
        self.savepoints: list[int] = []
        self.rollback_only = False
        #: Set when the request boundary rolls back because the response
        #: vetoed the commit.
        self.vetoed = False
        #: Whether the transaction was decided (committed or rolled back), or
        #: never will be by its boundary.
        self.settled = settled

    @property
    def session(self) -> TaskSession:
        if self._session is None:
            self._session = TaskSession(
                self.engine,
                expire_on_commit=False,
                info={"unit_of_work": self},
                **self.session_options,
            )
        return self._session

    def refuse_inside_savepoint(self, action: str) -> None:
        if self.savepoints:
            raise RuntimeError(
                f"Cannot {action} the task's transaction inside db.savepoint();"
                " leave the block or raise to roll the savepoint back."
            )

    def add(self, callback: PendingCallback) -> None:
        self.callbacks.append(callback)

    def drop_savepoint(self, savepoint: int) -> None:
        """Drop the callbacks registered inside ``savepoint``."""
        kept = []
        for callback in self.callbacks:
            if savepoint in callback.savepoints:
                forget_captured(callback)
            else:
                kept.append(callback)
        self.callbacks = kept

    def run_commit_callbacks(self) -> None:
        """The transaction committed: send ``committed``, then run the
        callbacks (captured ones wait for their capture)."""
        callbacks = [c for c in self.callbacks if c.capture is None]
        self.callbacks = []
        if committed.receivers and has_app_context():
            committed.send(_app())
        run_callbacks(callbacks, "after the transaction committed")

    def drop_callbacks(self) -> None:
        """The transaction rolled back: drop its callbacks, send
        ``rolled_back``."""
        for callback in self.callbacks:
            forget_captured(callback)
        self.callbacks = []
        if rolled_back.receivers and has_app_context():
            rolled_back.send(_app())

    def commit(self) -> None:
        """Commit, release the connection, then run the callbacks."""
        self.settled = True
        if self._session is None:
            self.run_commit_callbacks()
            return
        try:
            self._session.commit()
        except BaseException:
            self.release()
            raise
        self.release()

    def rollback(self) -> None:
        """Roll back and release; never raises."""
        self.settled = True
        if self._session is None:
            self.drop_callbacks()
            return
        try:
            self._session.rollback()
        except Exception:
            log.exception("Rolling back the task's transaction failed.")
        self.release()

    def release(self) -> None:
        """Give the connection back to the pool; never raises. The unit forgets
        its session, so releasing twice closes it once."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.close()
        except Exception:
            log.exception("Closing the task's session failed.")

    def discard(self) -> None:
        """End a unit its boundary left behind: roll back what is still
        undecided, release the connection."""
        if self.settled:
            self.release()
        else:
            self.rollback()
