"""SQLite as a production database: WAL, a busy timeout, real ``BEGIN``
statements (``BEGIN IMMEDIATE`` when the task will write), and one writer at a
time per file in a process."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import typing as t

import sqlalchemy as sa
from flask import has_request_context
from flask import request
from sqlalchemy import event

__all__ = [
    "SQLiteConnection",
    "WriterLock",
    "configure_sqlite",
    "configure_transactions",
    "write_intended",
    "writer_lock",
]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def write_intended() -> bool:
    """Whether a transaction starting now will probably write: everything but a
    request with a safe method."""
    return not (has_request_context() and request.method in _SAFE_METHODS)


class WriterLock:
    """The write transactions of one SQLite file in this process, one at a time.

    SQLite has one writer per database. A second ``BEGIN IMMEDIATE`` waits in
    SQLite's busy handler, which sleeps and polls in steps of up to 100 ms, so a
    thread often sleeps on after the writer is gone. Queuing the writers of a
    process on a lock first hands the database over as soon as it is free;
    other processes still meet the busy handler. A writer that waited here
    may wait in SQLite again for another process, so the longest wait is twice
    the busy timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None
        #: Bumped in a forked child, where the lock starts free again.
        self.generation = 0

    def acquire(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; return the generation to release.
        ``None`` when this thread (or greenlet) already writes through another
        connection: waiting would be waiting on itself, so SQLite's own busy
        timeout decides, as without the lock."""
        me = threading.get_ident()
        if self.owner == me:
            return None
        if not self._lock.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked")
        self.owner = me
        return self.generation

    def release(self, generation: int) -> None:
        if generation != self.generation:
            return  # taken before a fork, by a thread this process lacks
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        """Whether a writer holds the lock now."""
        return self._lock.locked()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.owner = None
        self.generation += 1


_locks: dict[str, WriterLock] = {}
_locks_guard = threading.Lock()


def writer_lock(path: str) -> WriterLock:
    with _locks_guard:
        return _locks.setdefault(os.path.realpath(path), WriterLock())


def _reset_locks() -> None:
    """In a forked child only the forking thread lives on: a lock held by any
    other would never be given back."""
    global _locks_guard
    _locks_guard = threading.Lock()
    for lock in _locks.values():
        lock.reset()


os.register_at_fork(after_in_child=_reset_locks)


class SQLiteConnection(sqlite3.Connection):
    """A connection that gives the writer lock back as soon as its write
    transaction has ended, whichever way it ended."""

    writer_lock: WriterLock | None = None
    #: The generation of the writer lock this connection holds, if it does.
    held: int | None = None

    def take_writer_lock(self, timeout: float) -> None:
        if self.writer_lock is not None and self.held is None:
            self.held = self.writer_lock.acquire(timeout)

    def give_back_writer_lock(self) -> None:
        held, self.held = self.held, None
        if held is not None and self.writer_lock is not None:
            self.writer_lock.release(held)

    def _transaction_ended(self) -> None:
        # A COMMIT refused by a deferred constraint leaves the transaction
        # open, and the lock held until its rollback.
        try:
            still_open = self.in_transaction
        except sqlite3.ProgrammingError:  # closed, so no transaction either
            still_open = False
        if not still_open:
            self.give_back_writer_lock()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._transaction_ended()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._transaction_ended()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.give_back_writer_lock()


def configure_sqlite(engine: sa.Engine, busy_timeout_ms: int) -> None:
    """WAL for readers beside a writer, a busy timeout instead of instant
    ``database is locked``, foreign keys on, and the transactions of
    :func:`configure_transactions`."""
    configure_transactions(engine, busy_timeout_ms)

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: t.Any, record: t.Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def configure_transactions(engine: sa.Engine, busy_timeout_ms: int) -> None:
    """Real ``BEGIN`` statements so that savepoints work (``BEGIN IMMEDIATE``
    when the task will write, so a read lock is never upgraded into
    ``SQLITE_BUSY``), and a transaction left open by a failed ``COMMIT`` rolled
    back at check-in. Leaves the connection's pragmas as they are."""

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: t.Any, record: t.Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "checkin")
    def checkin(dbapi_connection: t.Any, record: t.Any) -> None:
        # A COMMIT that fails on a deferred constraint leaves SQLite's transaction
        # open, while SQLAlchemy believes it ended and skips the reset rollback.
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()

    # The BEGIN goes through the dialect's do_begin hook rather than a "begin"
    # event: a listener of any connection event on an engine sends each of its
    # statements through SQLAlchemy's event dispatch, which cost 30 µs of a
    # 1 ms request (bench/unit_of_work.py, Flask-SQLAlchemy on SQLite). It runs
    # on the driver's connection, as pysqlite's own implicit BEGIN would, and
    # SQLAlchemy wraps its errors as for any statement.
    engine.dialect.do_begin = functools.partial(  # type: ignore[method-assign]
        _begin, busy_timeout_s=busy_timeout_ms / 1000
    )


def _begin(connection: t.Any, *, busy_timeout_s: float) -> None:
    """``BEGIN``, or ``BEGIN IMMEDIATE`` behind the file's writer lock when the
    task will write; ``connection`` is the pool's proxy of the driver's."""
    dbapi_connection: t.Any = connection.dbapi_connection
    if dbapi_connection.in_transaction:
        return  # begun by the app's own "begin" listener (SQLAlchemy's recipe)
    if not write_intended():
        dbapi_connection.execute("BEGIN")
        return
    if isinstance(dbapi_connection, SQLiteConnection):
        dbapi_connection.take_writer_lock(busy_timeout_s)
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_connection, SQLiteConnection):
            dbapi_connection.give_back_writer_lock()
        raise
