"""What :class:`~flask_patterns.db.Database` keeps per app."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field

import sqlalchemy as sa
from flask import Flask

from .._registry import state_of
from .unit import Boundary
from .unit import CommitVeto
from .unit import UnitOfWork

__all__ = ["NAME", "DatabaseState", "database_state"]

#: The extension's name: its state is ``app.extensions["flask_patterns.db"]``.
NAME = "db"


@dataclass(frozen=True)
class DatabaseState:
    engine: sa.Engine
    veto: CommitVeto
    #: More arguments of each task's session (Flask-SQLAlchemy's query class).
    session_options: t.Mapping[str, t.Any] = field(default_factory=dict)

    def unit_of_work(
        self, boundary: Boundary, *, veto: bool = False, settled: bool = False
    ) -> UnitOfWork:
        """A unit of work on this app's engine and session options; ``veto``
        gives it the app's commit veto (a request's unit)."""
        return UnitOfWork(
            self.engine,
            boundary=boundary,
            veto=self.veto if veto else None,
            settled=settled,
            session_options=self.session_options,
        )


def database_state(app: Flask) -> DatabaseState:
    """The state :class:`~flask_patterns.db.Database` registered on ``app``."""
    return state_of(app, NAME, DatabaseState, what="Database")
