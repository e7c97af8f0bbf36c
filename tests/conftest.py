from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_patterns import outbox as outbox_module
from flask_patterns.db import Database
from flask_patterns.outbox import metadata as outbox_metadata
from flask_patterns.outbox import Outbox
from flask_patterns.outbox import outbox_table

metadata = sa.MetaData()
item = sa.Table(
    "item",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
)
# A foreign key checked only at COMMIT: inserting a dangling child makes the
# commit itself fail, on SQLite and PostgreSQL alike.
child = sa.Table(
    "child",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "item_id",
        sa.Integer,
        sa.ForeignKey("item.id", deferrable=True, initially="DEFERRED"),
    ),
)

db = Database()


def driver_url(url: str) -> str:
    """``url`` for an engine the test makes with SQLAlchemy itself: SQLAlchemy
    2.0 reads ``postgresql://`` as psycopg2, 2.1 as psycopg 3 (the library's own
    engines always use psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


class Probe:
    """What a test needs to check after a task: rows, callbacks, the pool."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.engine = db.engine_for(app)
        self.ran: list[t.Any] = []

    def rows(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.scalars(sa.select(item.c.name).order_by(item.c.id)))

    def checked_out(self) -> int:
        return t.cast(int, self.engine.pool.checkedout())  # type: ignore[attr-defined]

    def write(self, name: str) -> None:
        """Insert a row through the task's session."""
        db.session.execute(item.insert().values(name=name))

    def record(self, value: t.Any) -> t.Callable[[], None]:
        return lambda: self.ran.append(value)

    def clear(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(child.delete())
            connection.execute(item.delete())
        self.ran.clear()


@pytest.fixture
def app(database_url: str) -> t.Iterator[Flask]:
    app = Flask("unit_of_work")
    app.config["PATTERNS_DATABASE_URL"] = database_url
    db.init_app(app)
    metadata.create_all(db.engine_for(app))
    yield app
    db.engine_for(app).dispose()


@pytest.fixture
def probe(app: Flask) -> t.Iterator[Probe]:
    probe = Probe(app)
    yield probe
    assert probe.checked_out() == 0, "a connection was not returned to the pool"


class Flaky(Exception):
    pass


@pytest.fixture
def outbox(app, probe):
    box = Outbox(app, db=db)
    outbox_metadata.create_all(db.engine_for(app))
    box.delivered = []
    box.failures = 0

    @box.handler("mail")
    def send(message):
        if box.failures:
            box.failures -= 1
            raise Flaky(f"smtp down ({box.failures} more)")
        box.delivered.append((message.payload, message.key, message.attempts))

    return box


def insert(app, key, kind, payload, at=None):
    """A message written as a process that died before delivering it would."""
    now = at or dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        db.session.execute(
            outbox_table.insert().values(
                key=key,
                kind=kind,
                payload=payload,
                created_at=now,
                available_at=now,
                attempts=0,
            )
        )


def rows(app):
    with db.engine_for(app).connect() as connection:
        return connection.execute(sa.select(outbox_table).order_by("id")).all()


@pytest.fixture
def clock(monkeypatch):
    """Move the outbox's clock forward."""
    now = [dt.datetime.now(dt.timezone.utc)]
    monkeypatch.setattr(outbox_module, "_now", lambda: now[0])

    def advance(seconds):
        now[0] += dt.timedelta(seconds=seconds)

    return advance
