"""Engines from URLs: the drivers and pool settings a task-per-connection app
wants, and SQLite made fit for it."""

from __future__ import annotations

import os
import typing as t
import weakref

import sqlalchemy as sa

from .sqlite import configure_sqlite
from .sqlite import configure_transactions
from .sqlite import SQLiteConnection
from .sqlite import writer_lock

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_CONNECT_TIMEOUT",
    "adopt_engine",
    "create_engine",
    "resolve_url",
    "sqlite_file",
]


def resolve_url(url: str, instance_path: str) -> sa.URL:
    """``url`` as the engine will use it: ``postgresql://`` with psycopg 3, and
    a relative SQLite path in ``instance_path``. Pure: creates nothing."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not os.path.isabs(database)
    ):
        parsed = parsed.set(database=os.path.join(instance_path, database))
    return parsed


def sqlite_file(url: sa.URL) -> str | None:
    """The file of a SQLite database on disk, or ``None`` (another database, or
    one in memory)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


#: Seconds a new PostgreSQL connection may take, unless the URL's or the
#: options' ``connect_timeout`` says otherwise. libpq's own default is to wait
#: for ever on a server that accepts the connection and never answers.
DEFAULT_CONNECT_TIMEOUT = 5
#: The PostgreSQL drivers on libpq, which take ``connect_timeout`` (pg8000 and
#: asyncpg name theirs ``timeout`` and refuse an unknown argument).
_LIBPQ_DRIVERS = ("psycopg", "psycopg2")

#: Milliseconds a SQLite connection waits for a lock before ``database is
#: locked``, unless ``sqlite_busy_timeout_ms`` says otherwise.
DEFAULT_BUSY_TIMEOUT_MS = 5000


def create_engine(url: sa.URL, options: dict[str, t.Any]) -> sa.Engine:
    """An engine for ``url``: pre-ping and LIFO pools, a connection timeout on
    PostgreSQL through libpq, and for a SQLite file its pragmas, real
    ``BEGIN`` statements and the per-file writer lock.

    ``options`` go to :func:`sqlalchemy.create_engine`, except
    ``sqlite_busy_timeout_ms`` (5000).
    """
    options = dict(options)
    busy_timeout = options.pop("sqlite_busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS)
    sqlite = url.get_backend_name() == "sqlite"
    in_memory = sqlite and url.database in (None, "", ":memory:")
    if not in_memory:
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_use_lifo", True)
    if url.get_driver_name() in _LIBPQ_DRIVERS and "connect_timeout" not in url.query:
        connect_args = dict(options.get("connect_args", {}))
        connect_args.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        options["connect_args"] = connect_args
    if sqlite and not in_memory and url.get_driver_name() in ("pysqlite", ""):
        assert url.database is not None
        lock = writer_lock(url.database)
        connection_class = type(
            "SQLiteConnection", (SQLiteConnection,), {"writer_lock": lock}
        )
        connect_args = dict(options.get("connect_args", {}))
        connect_args.setdefault("factory", connection_class)
        options["connect_args"] = connect_args
    engine = sa.create_engine(url, **options)
    if sqlite:
        configure_sqlite(engine, busy_timeout)
        _configured.add(engine)
    return engine


#: The SQLite engines whose connections already get real ``BEGIN``s.
_configured: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def adopt_engine(engine: sa.Engine) -> sa.Engine:
    """An engine the app made itself, used as it is: its pool, options, driver
    and SQLite pragmas stay. A SQLite engine gets, once, the real ``BEGIN``
    statements savepoints need, without which a rolled-back savepoint would
    keep its writes (:func:`~flask_patterns.db.sqlite.configure_transactions`)."""
    if engine.url.get_backend_name() == "sqlite" and engine not in _configured:
        configure_transactions(engine, DEFAULT_BUSY_TIMEOUT_MS)
        _configured.add(engine)
    return engine
