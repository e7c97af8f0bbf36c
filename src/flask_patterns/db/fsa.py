"""One unit of work shared with Flask-SQLAlchemy.

An app that already uses Flask-SQLAlchemy hands its extension to
:class:`~flask_patterns.db.Database` (``Database(app, flask_sqlalchemy=db)``).
Then there is one engine, Flask-SQLAlchemy's, and one session per task: its
``db.session``, ``Model.query``, ``db.paginate`` and ``db.get_or_404`` all use
the task's session, which the request boundary commits before the response
(or rolls back on the veto), and whose explicit ``commit()`` and
``rollback()`` keep the after-commit callbacks in step. Nothing is written
through a second session that nobody commits, and no task waits on its own
lock.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask import has_app_context

from .._registry import is_registered
from .state import NAME
from .tasks import current_unit
from .unit import TaskSession

__all__ = ["TaskSessionProxy", "engine_of", "share_session"]


class TaskSessionProxy:
    """What Flask-SQLAlchemy's ``db.session`` becomes: calling it, or using it
    as a session, gives the current task's session. In an app without a
    :class:`~flask_patterns.db.Database`, Flask-SQLAlchemy's own scoped
    session answers, as before."""

    def __init__(self, scoped: t.Any) -> None:
        self._scoped = scoped

    def _target(self) -> t.Any:
        if has_app_context() and is_registered(current_app, NAME):
            return current_unit().session
        return self._scoped()

    def __call__(self) -> TaskSession:
        return t.cast(TaskSession, self._target())

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._target(), name)

    def remove(self) -> None:
        """Flask-SQLAlchemy's teardown: the unit of work releases the task's
        session itself, at the end of the task; an app without it keeps
        Flask-SQLAlchemy's."""
        if not (has_app_context() and is_registered(current_app, NAME)):
            self._scoped.remove()


def engine_of(extension: t.Any, app: Flask) -> sa.Engine:
    """Flask-SQLAlchemy's default engine for ``app``; it must be registered
    on ``app`` first."""
    if "sqlalchemy" not in app.extensions:
        raise RuntimeError(
            "Register Flask-SQLAlchemy on the app before Database: Database uses"
            " its engine (call db.init_app(app) first)."
        )
    if app.config.get("SQLALCHEMY_BINDS"):
        raise RuntimeError(
            "SQLALCHEMY_BINDS is set, but the unit of work shares only"
            " Flask-SQLAlchemy's default engine: models bound elsewhere would be"
            " written outside the task's transaction."
        )
    with app.app_context():
        return t.cast(sa.Engine, extension.engine)


def share_session(extension: t.Any) -> dict[str, t.Any]:
    """Make ``extension.session`` the task's session; returns the session
    arguments that keep Flask-SQLAlchemy's query class."""
    if not isinstance(extension.session, TaskSessionProxy):
        extension.session = TaskSessionProxy(extension.session)
    return {"query_cls": extension.Query}
