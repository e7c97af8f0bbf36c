"""The Flask extension: one engine per app, one unit of work per task."""

from __future__ import annotations

import contextlib
import itertools
import os
import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask import has_app_context
from flask.wrappers import Response
from werkzeug.utils import import_string

from .._registry import refuse_second
from .._registry import register
from . import boundaries
from . import fsa
from .engine import adopt_engine
from .engine import create_engine
from .engine import resolve_url
from .engine import sqlite_file
from .retrying import retrying
from .state import database_state
from .state import DatabaseState
from .state import NAME
from .tasks import current_unit
from .tasks import open_unit
from .tasks import task_started
from .tasks import units
from .unit import Boundary
from .unit import CommitVeto
from .unit import TaskSession

__all__ = ["Database", "default_commit_veto"]

_savepoint_ids = itertools.count(1)

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def default_commit_veto(response: Response) -> bool:
    """Veto the commit of a request that answered with an error (status >= 400)."""
    return response.status_code >= 400


def _refuse_engine_settings(app: Flask, given: str) -> None:
    """An app given an engine must not also name a URL or engine options: one
    of them would be silently ignored."""
    for key in ("PATTERNS_DATABASE_URL", "PATTERNS_ENGINE_OPTIONS"):
        if app.config.get(key):
            raise RuntimeError(
                f"{key} is set, but Database was given {given}: keep one of them."
            )


def _resolve_veto(value: CommitVeto | str | None) -> CommitVeto:
    if value is None:
        return default_commit_veto
    if isinstance(value, str):
        return t.cast(CommitVeto, import_string(value))
    return value


class Database:
    """Give every task (request, CLI command, job) one session on a pooled
    connection, and settle its transaction when the task ends.

    :param app: register on this app at once, or later with :meth:`init_app`.
    :param url: default for ``PATTERNS_DATABASE_URL``; a relative SQLite path is
        placed in the instance folder.
    :param engine_options: passed to :func:`sqlalchemy.create_engine`, over
        ``PATTERNS_ENGINE_OPTIONS``.
    :param engine: an engine the app made itself, used instead of one made
        from a URL (see :func:`~flask_patterns.db.engine.adopt_engine`); it
        excludes ``url``, ``engine_options`` and both settings.
    :param flask_sqlalchemy: the app's ``flask_sqlalchemy.SQLAlchemy``
        extension, registered on the app first: its engine is used, and its
        ``db.session`` becomes the task's session (see :mod:`.fsa`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url: str | None = None,
        engine_options: t.Mapping[str, t.Any] | None = None,
        engine: sa.Engine | None = None,
        flask_sqlalchemy: t.Any = None,
    ) -> None:
        given = (engine is not None) + (flask_sqlalchemy is not None)
        if given > 1 or (given and (url is not None or engine_options)):
            raise TypeError(
                "Database takes one of an engine, a Flask-SQLAlchemy extension,"
                " or a url and engine_options."
            )
        self._url = url
        self._engine_options = dict(engine_options or {})
        self._engine = engine
        self._flask_sqlalchemy = flask_sqlalchemy
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        engine: sa.Engine | None = None,
        flask_sqlalchemy: t.Any = None,
    ) -> None:
        """Create the engine for ``app`` (or use ``engine``, or the engine of
        ``flask_sqlalchemy``, over the ones given at creation) and hook the
        task boundaries."""
        refuse_second(app, NAME, what="Database")
        if engine is not None and flask_sqlalchemy is not None:
            raise TypeError("init_app takes an engine or Flask-SQLAlchemy, not both.")
        if engine is None and flask_sqlalchemy is None:
            engine, flask_sqlalchemy = self._engine, self._flask_sqlalchemy
        app.config.setdefault("PATTERNS_COMMIT_VETO", None)
        veto = _resolve_veto(app.config["PATTERNS_COMMIT_VETO"])
        if flask_sqlalchemy is not None:
            _refuse_engine_settings(app, "Flask-SQLAlchemy")
            state = DatabaseState(
                engine=adopt_engine(fsa.engine_of(flask_sqlalchemy, app)),
                veto=veto,
                session_options=fsa.share_session(flask_sqlalchemy),
            )
        elif engine is not None:
            _refuse_engine_settings(app, "an engine")
            state = DatabaseState(engine=adopt_engine(engine), veto=veto)
        else:
            state = DatabaseState(engine=self._engine_from_config(app), veto=veto)
        register(app, NAME, state, what="Database")
        app.before_request(boundaries.begin_request)
        app.after_request(boundaries.settle_request)
        app.teardown_request(boundaries.teardown_request)
        app.teardown_appcontext(boundaries.teardown_task)

    def _engine_from_config(self, app: Flask) -> sa.Engine:
        app.config.setdefault(
            "PATTERNS_DATABASE_URL", self._url or "sqlite:///flask_patterns.sqlite"
        )
        app.config.setdefault("PATTERNS_ENGINE_OPTIONS", {})
        url = resolve_url(app.config["PATTERNS_DATABASE_URL"], app.instance_path)
        options = {**app.config["PATTERNS_ENGINE_OPTIONS"], **self._engine_options}
        engine = create_engine(url, options)
        path = sqlite_file(url)
        if path is not None and path.startswith(app.instance_path + os.sep):
            os.makedirs(app.instance_path, exist_ok=True)
        return engine

    @property
    def engine(self) -> sa.Engine:
        """The current app's engine."""
        return database_state(current_app).engine

    def engine_for(self, app: Flask) -> sa.Engine:
        """The engine of ``app``, usable without an application context."""
        return database_state(app).engine

    @property
    def session(self) -> TaskSession:
        """The current task's session, created on first use."""
        return current_unit().session

    @property
    def transaction_open(self) -> bool:
        """Whether the current task has a transaction open: work done through
        :attr:`session` now will be committed (or rolled back) at its end. False
        outside a task, and once the task's transaction is settled (in a streamed
        body, or a bare ``test_request_context``)."""
        if not has_app_context():
            return False
        current_unit()
        return open_unit() is not None

    def set_rollback(self, rollback: bool = True) -> None:
        """Mark the current task's transaction so that it rolls back at the end,
        whatever the response says (``rollback=False`` clears the mark)."""
        current_unit().rollback_only = rollback

    @contextlib.contextmanager
    def savepoint(self) -> t.Iterator[TaskSession]:
        """A nested transaction in the current task: rolled back with the
        after-commit callbacks registered inside it if the block raises,
        released (and its callbacks kept for the commit) if it does not. Once the
        task's own transaction is settled, it opens a :meth:`transaction`."""
        if open_unit() is None and task_started():
            with self.transaction() as session:
                yield session
            return
        unit = current_unit()
        session = unit.session
        savepoint = next(_savepoint_ids)
        nested = session.begin_nested()
        unit.savepoints.append(savepoint)
        try:
            yield session
        except BaseException:
            unit.savepoints.remove(savepoint)
            # A failed flush leaves the savepoint deactivated, not closed: it
            # still has to be rolled back, or the whole session stays failed.
            if session.get_nested_transaction() is nested:
                nested.rollback()
            unit.drop_savepoint(savepoint)
            raise
        unit.savepoints.remove(savepoint)
        try:
            nested.commit()
        except BaseException:
            unit.drop_savepoint(savepoint)
            raise

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[TaskSession]:
        """An explicit transaction, like Django's ``atomic()``: committed when the
        block exits (then its callbacks run) and rolled back if it raises. Inside
        a transaction that is still open, it is a :meth:`savepoint` instead."""
        if open_unit() is not None:
            with self.savepoint() as session:
                yield session
            return
        stack = units()
        unit = database_state(current_app).unit_of_work(Boundary.BLOCK)
        stack.append(unit)
        try:
            yield unit.session
        except BaseException:
            unit.rollback()
            raise
        else:
            if unit.rollback_only:
                unit.rollback()
            else:
                unit.commit()
        finally:
            stack.remove(unit)

    def retrying(
        self, attempts: int = 3, *, backoff: float = 0.05
    ) -> t.Callable[[F], F]:
        """Same as :func:`flask_patterns.db.retrying.retrying`."""
        return retrying(attempts, backoff=backoff)
