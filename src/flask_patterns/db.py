"""One pooled database session per task, committed or rolled back at the task's end,
with callbacks that run only after a commit.

The request boundary commits *before* the response leaves the application, so a
failed commit reaches the app's error handlers and the client sees a 500 instead
of a false success. See ``docs/unit-of-work.md`` for the full table of outcomes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import threading
import time
import typing as t
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field

import click
import sqlalchemy as sa
from blinker import Namespace
from flask import current_app
from flask import Flask
from flask import has_app_context
from flask import has_request_context
from flask import request
from flask.wrappers import Response
from sqlalchemy import event
from sqlalchemy.orm import Session
from werkzeug.utils import import_string

from .context import peek_task_state
from .context import pop_task_state
from .context import task_state

__all__ = [
    "Database",
    "TaskSession",
    "after_commit",
    "capture_on_commit_callbacks",
    "committed",
    "default_commit_veto",
    "is_transient_error",
    "rolled_back",
]

log = logging.getLogger("flask_patterns.db")

_signals = Namespace()

#: Sent with the app as sender after a task's transaction committed, before the
#: after-commit callbacks run.
committed = _signals.signal("committed")

#: Sent with the app as sender after a task's transaction rolled back.
rolled_back = _signals.signal("rolled-back")

_EXTENSION = "flask_patterns.db"
_STATE = "db"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
_savepoint_ids = itertools.count(1)

Callback = t.Callable[[], object]
CommitVeto = t.Callable[[Response], bool]
F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def default_commit_veto(response: Response) -> bool:
    """Veto the commit of a request that answered with an error (status >= 400)."""
    return response.status_code >= 400


def is_transient_error(error: BaseException) -> bool:
    """Tell whether ``error`` is a serialization failure or a deadlock, which a
    fresh attempt of the same transaction may not meet again."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    return getattr(error.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


@dataclass(eq=False)
class _Callback:
    func: Callback
    robust: bool
    savepoints: frozenset[int]
    capture: _Capture | None


@dataclass(eq=False)
class _Capture:
    callbacks: list[_Callback] = field(default_factory=list)


_capture: ContextVar[_Capture | None] = ContextVar(
    "flask_patterns.capture", default=None
)


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def _name(func: Callback) -> str:
    return str(getattr(func, "__qualname__", func))


def _run_callbacks(callbacks: list[_Callback], during: str) -> None:
    for callback in callbacks:
        if not callback.robust:
            callback.func()
            continue
        try:
            callback.func()
        except Exception:
            log.exception(
                "Error calling %s in after_commit() %s.", _name(callback.func), during
            )


class TaskSession(Session):
    """The session of one task. Its ``commit`` runs the task's after-commit
    callbacks and its ``rollback`` drops them, so an explicit
    ``db.session.commit()`` in a view keeps the callbacks in step with the data.
    """

    @property
    def _unit(self) -> _UnitOfWork:
        return t.cast(_UnitOfWork, self.info["unit_of_work"])

    def commit(self) -> None:
        unit = self._unit
        unit.refuse_inside_savepoint("commit")
        try:
            super().commit()
        except BaseException:
            unit.transaction_rolled_back()
            raise
        unit.transaction_committed()

    def rollback(self) -> None:
        unit = self._unit
        unit.refuse_inside_savepoint("rollback")
        try:
            super().rollback()
        finally:
            unit.transaction_rolled_back()

    def close(self) -> None:
        """Close the session; a transaction still open is rolled back, and the
        callbacks waiting for it are dropped with it."""
        was_open = self.in_transaction()
        try:
            super().close()
        finally:
            if was_open:
                self._unit.transaction_rolled_back()


class _UnitOfWork:
    """The transaction of one task and the callbacks waiting for its commit."""

    def __init__(
        self, engine: sa.Engine, *, boundary: str, veto: CommitVeto | None = None
    ) -> None:
        self.engine = engine
        #: The request boundary's commit veto (a request's unit only).
        self.veto = veto
        #: "request": decided by the request boundary; "task": decided when the
        #: application context ends; "block": decided by ``db.transaction()``.
        self.boundary = boundary
        self._session: TaskSession | None = None
        self.callbacks: list[_Callback] = []
        self.savepoints: list[int] = []
        self.rollback_only = False
        self.finished = False

    @property
    def session(self) -> TaskSession:
        if self._session is None:
            self._session = TaskSession(
                self.engine, expire_on_commit=False, info={"unit_of_work": self}
            )
        return self._session

    def refuse_inside_savepoint(self, action: str) -> None:
        if self.savepoints:
            raise RuntimeError(
                f"Cannot {action} the task's transaction inside db.savepoint();"
                " leave the block or raise to roll the savepoint back."
            )

    def add(self, callback: _Callback) -> None:
        self.callbacks.append(callback)

    def drop_savepoint(self, savepoint: int) -> None:
        kept = []
        for callback in self.callbacks:
            if savepoint in callback.savepoints:
                _forget_captured(callback)
            else:
                kept.append(callback)
        self.callbacks = kept

    def transaction_committed(self) -> None:
        callbacks = [c for c in self.callbacks if c.capture is None]
        self.callbacks = []
        if committed.receivers and has_app_context():
            committed.send(_app())
        _run_callbacks(callbacks, "after the transaction committed")

    def transaction_rolled_back(self) -> None:
        for callback in self.callbacks:
            _forget_captured(callback)
        self.callbacks = []
        if rolled_back.receivers and has_app_context():
            rolled_back.send(_app())

    def commit(self) -> None:
        """Commit, release the connection, then run the callbacks."""
        self.finished = True
        if self._session is None:
            self.transaction_committed()
            return
        try:
            self._session.commit()
        except BaseException:
            self.release()
            raise
        self.release()

    def rollback(self) -> None:
        """Roll back and release; never raises."""
        self.finished = True
        if self._session is None:
            self.transaction_rolled_back()
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


def _forget_captured(callback: _Callback) -> None:
    if callback.capture is not None:
        callback.capture.callbacks.remove(callback)


def _stack() -> list[_UnitOfWork]:
    return task_state(_STATE, list)


def _open_unit() -> _UnitOfWork | None:
    """The innermost unit of work still waiting for its decision, if any."""
    stack = peek_task_state(_STATE)
    if not stack or stack[-1].finished:
        return None
    return t.cast(_UnitOfWork, stack[-1])


def _state(app: Flask) -> _DatabaseState:
    try:
        return t.cast(_DatabaseState, app.extensions[_EXTENSION])
    except KeyError:
        raise RuntimeError(
            "The Database extension is not registered on this app:"
            " call db.init_app(app) first."
        ) from None


def _current_unit() -> _UnitOfWork:
    """The current task's innermost unit of work, created on first use.

    In a request context the request boundary creates the unit; one created here
    instead (in a streamed body after the request was settled, or in a bare
    ``test_request_context``) is settled from the start: nothing commits its work
    implicitly, and ``db.transaction()`` inside it opens a real transaction.
    """
    stack = _stack()
    if not stack:
        in_request = has_request_context()
        unit = _UnitOfWork(
            _state(current_app).engine, boundary="request" if in_request else "task"
        )
        unit.finished = in_request
        stack.append(unit)
    return stack[-1]


def after_commit(func: Callback, *, robust: bool = True) -> Callback:
    """Run ``func`` after the current task's transaction commits.

    Callbacks run in registration order, after the connection went back to the
    pool. They are dropped when the transaction (or the savepoint they were
    registered in) rolls back. With no transaction open, ``func`` runs at once.
    A robust callback that raises is logged and the others still run; a callback
    registered with ``robust=False`` raises and stops the ones after it.

    Returns ``func``, so it can be used as a decorator::

        @after_commit
        def send_mail() -> None: ...

    Bind loop variables with :func:`functools.partial`, not a closure.
    """
    if not callable(func):
        raise TypeError("after_commit() needs a callable.")
    capture = _capture.get()
    unit = _open_unit()
    if unit is None and has_app_context() and not peek_task_state(_STATE):
        unit = _current_unit()
    savepoints = frozenset(unit.savepoints) if unit else frozenset()
    callback = _Callback(func, robust, savepoints, capture)
    if capture is not None:
        capture.callbacks.append(callback)
    if unit is not None:
        unit.add(callback)
    elif capture is None:
        _run_callbacks([callback], "with no transaction open")
    return func


@contextlib.contextmanager
def capture_on_commit_callbacks(*, execute: bool = False) -> t.Iterator[list[Callback]]:
    """Collect the callbacks registered inside the block instead of running them at
    commit, for tests. The yielded list is filled when the block exits; callbacks
    of savepoints or transactions that rolled back are not in it.

    :param execute: run the captured callbacks at exit, including the ones they
        register themselves, in registration order.
    """
    capture = _Capture()
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
                    _run_callbacks(batch, "while executing captured callbacks")
        finally:
            _capture.reset(token)


@dataclass
class _DatabaseState:
    engine: sa.Engine
    veto: CommitVeto


def _resolve_veto(value: CommitVeto | str | None) -> CommitVeto:
    if value is None:
        return default_commit_veto
    if isinstance(value, str):
        return t.cast(CommitVeto, import_string(value))
    return value


def _normalize_url(url: str, instance_path: str) -> sa.URL:
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
        os.makedirs(instance_path, exist_ok=True)
        parsed = parsed.set(database=os.path.join(instance_path, database))
    return parsed


def _write_intended() -> bool:
    """Whether a transaction starting now will probably write: everything but a
    request with a safe method."""
    return not (has_request_context() and request.method in _SAFE_METHODS)


class _WriterLock:
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

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.owner = None
        self.generation += 1


_writer_locks: dict[str, _WriterLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(path: str) -> _WriterLock:
    with _writer_locks_guard:
        return _writer_locks.setdefault(os.path.realpath(path), _WriterLock())


def _reset_writer_locks() -> None:
    """In a forked child only the forking thread lives on: a lock held by any
    other would never be given back."""
    global _writer_locks_guard
    _writer_locks_guard = threading.Lock()
    for lock in _writer_locks.values():
        lock.reset()


os.register_at_fork(after_in_child=_reset_writer_locks)


class _SQLiteConnection(sqlite3.Connection):
    """A connection that gives the writer lock back as soon as its write
    transaction has ended, whichever way it ended."""

    writer_lock: _WriterLock | None = None
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


def _configure_sqlite(engine: sa.Engine, busy_timeout_ms: int) -> None:
    """WAL for readers beside a writer, a busy timeout instead of instant
    ``database is locked``, foreign keys on, and real ``BEGIN`` statements so that
    savepoints work (``BEGIN IMMEDIATE`` when the task will write, so a read lock
    is never upgraded into ``SQLITE_BUSY``)."""

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: t.Any, record: t.Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def checkin(dbapi_connection: t.Any, record: t.Any) -> None:
        # A COMMIT that fails on a deferred constraint leaves SQLite's transaction
        # open, while SQLAlchemy believes it ended and skips the reset rollback.
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(engine, "begin")
    def begin(connection: sa.Connection) -> None:
        if not _write_intended():
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection: object = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, _SQLiteConnection):
            try:
                dbapi_connection.take_writer_lock(busy_timeout_ms / 1000)
            except sqlite3.OperationalError as error:
                # What SQLAlchemy raises when SQLite's busy timeout runs out.
                raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, error) from None
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_connection, _SQLiteConnection):
                dbapi_connection.give_back_writer_lock()
            raise


def _create_engine(url: sa.URL, options: dict[str, t.Any]) -> sa.Engine:
    options = dict(options)
    busy_timeout = options.pop("sqlite_busy_timeout_ms", 5000)
    sqlite = url.get_backend_name() == "sqlite"
    in_memory = sqlite and url.database in (None, "", ":memory:")
    if not in_memory:
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_use_lifo", True)
    if sqlite and not in_memory and url.get_driver_name() in ("pysqlite", ""):
        assert url.database is not None
        lock = _writer_lock(url.database)
        connection_class = type(
            "SQLiteConnection", (_SQLiteConnection,), {"writer_lock": lock}
        )
        connect_args = dict(options.get("connect_args", {}))
        connect_args.setdefault("factory", connection_class)
        options["connect_args"] = connect_args
    engine = sa.create_engine(url, **options)
    if sqlite:
        _configure_sqlite(engine, busy_timeout)
    return engine


def _clean_exit(error: BaseException | None) -> bool:
    if error is None:
        return True
    if isinstance(error, SystemExit):
        return error.code in (None, 0)
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code == 0
    return False


class Database:
    """Give every task (request, CLI command, job) one session on a pooled
    connection, and settle its transaction when the task ends.

    :param app: register on this app at once, or later with :meth:`init_app`.
    :param url: default for ``PATTERNS_DATABASE_URL``; a relative SQLite path is
        placed in the instance folder.
    :param engine_options: passed to :func:`sqlalchemy.create_engine`, over
        ``PATTERNS_ENGINE_OPTIONS``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url: str | None = None,
        engine_options: t.Mapping[str, t.Any] | None = None,
    ) -> None:
        self._url = url
        self._engine_options = dict(engine_options or {})
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Create the engine for ``app`` and hook the task boundaries."""
        if _EXTENSION in app.extensions:
            raise RuntimeError("A Database is already registered on this app.")
        app.config.setdefault(
            "PATTERNS_DATABASE_URL", self._url or "sqlite:///flask_patterns.sqlite"
        )
        app.config.setdefault("PATTERNS_ENGINE_OPTIONS", {})
        app.config.setdefault("PATTERNS_COMMIT_VETO", None)
        url = _normalize_url(app.config["PATTERNS_DATABASE_URL"], app.instance_path)
        options = {**app.config["PATTERNS_ENGINE_OPTIONS"], **self._engine_options}
        app.extensions[_EXTENSION] = _DatabaseState(
            engine=_create_engine(url, options),
            veto=_resolve_veto(app.config["PATTERNS_COMMIT_VETO"]),
        )
        app.before_request(_begin_request)
        app.after_request(_settle_request)
        app.teardown_request(_teardown_request)
        app.teardown_appcontext(_teardown_task)

    @property
    def engine(self) -> sa.Engine:
        """The current app's engine."""
        return _state(current_app).engine

    def engine_for(self, app: Flask) -> sa.Engine:
        """The engine of ``app``, usable without an application context."""
        return _state(app).engine

    @property
    def session(self) -> TaskSession:
        """The current task's session, created on first use."""
        return _current_unit().session

    @property
    def transaction_open(self) -> bool:
        """Whether the current task has a transaction open: work done through
        :attr:`session` now will be committed (or rolled back) at its end. False
        outside a task, and once the task's transaction is settled (in a streamed
        body, or a bare ``test_request_context``)."""
        if not has_app_context():
            return False
        _current_unit()
        return _open_unit() is not None

    def set_rollback(self, rollback: bool = True) -> None:
        """Mark the current task's transaction so that it rolls back at the end,
        whatever the response says (``rollback=False`` clears the mark)."""
        _current_unit().rollback_only = rollback

    @contextlib.contextmanager
    def savepoint(self) -> t.Iterator[TaskSession]:
        """A nested transaction in the current task: rolled back with the
        after-commit callbacks registered inside it if the block raises,
        released (and its callbacks kept for the commit) if it does not. Once the
        task's own transaction is settled, it opens a :meth:`transaction`."""
        if _open_unit() is None and peek_task_state(_STATE):
            with self.transaction() as session:
                yield session
            return
        unit = _current_unit()
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
        if _open_unit() is not None:
            with self.savepoint() as session:
                yield session
            return
        stack = _stack()
        unit = _UnitOfWork(self.engine, boundary="block")
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
        """Decorate a view or a task function so that its transaction is retried
        on a serialization failure or a deadlock (PostgreSQL ``40001``/``40P01``).

        The decorated function commits its own work before returning (views
        only when the response is not vetoed); each failed attempt is rolled
        back with its callbacks, then run again after an exponential backoff.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1.")

        def decorator(func: F) -> F:
            @functools.wraps(func)
            def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
                for attempt in range(1, attempts + 1):
                    try:
                        return self._run_and_commit(func, args, kwargs)
                    except sa.exc.DBAPIError as error:
                        if attempt == attempts or not is_transient_error(error):
                            raise
                        log.info("Retrying %s after %s.", _name(func), error.orig)
                        time.sleep(backoff * 2 ** (attempt - 1))
                raise AssertionError("unreachable")  # pragma: no cover

            return t.cast(F, wrapper)

        return decorator

    def _run_and_commit(
        self, func: t.Callable[..., t.Any], args: t.Any, kwargs: t.Any
    ) -> t.Any:
        session = self.session
        try:
            result = func(*args, **kwargs)
            if has_request_context():
                result = current_app.make_response(result)
                if _state(current_app).veto(result):
                    session.rollback()
                    return result
            session.commit()
        except BaseException:
            if session.in_transaction():
                session.rollback()
            raise
        return result


def _begin_request() -> None:
    state = _state(current_app)
    _stack().append(_UnitOfWork(state.engine, boundary="request", veto=state.veto))


def _request_unit() -> _UnitOfWork | None:
    stack = peek_task_state(_STATE) or []
    for unit in reversed(stack):
        if unit.boundary == "request":
            return t.cast(_UnitOfWork, unit)
    return None


def _settle_request(response: Response) -> Response:
    """Commit the request's work before the response leaves the app, unless the
    response is vetoed or the task was marked for rollback. A failed commit
    raises here, so Flask turns it into a 500 through the app's error handlers."""
    unit = _request_unit()
    if unit is None or unit.finished:
        return response
    veto = unit.veto or _state(current_app).veto
    if unit.rollback_only or veto(response):
        unit.rollback()
    else:
        unit.commit()
    return response


def _teardown_request(error: BaseException | None) -> None:
    stack: list[_UnitOfWork] = peek_task_state(_STATE) or []
    boundaries = [i for i, unit in enumerate(stack) if unit.boundary == "request"]
    if not boundaries:
        return
    leftovers = stack[boundaries[-1] :]
    del stack[boundaries[-1] :]
    for leftover in reversed(leftovers):
        _discard(leftover)


def _teardown_task(error: BaseException | None) -> None:
    """End the task: commit a plain task that exited cleanly, roll back the rest,
    release every connection. A failed commit is raised after the cleanup, so the
    ``with`` block or CLI command that owned the task fails instead of losing
    data silently."""
    stack: list[_UnitOfWork] = pop_task_state(_STATE) or []
    failure: BaseException | None = None
    for unit in reversed(stack):
        if unit.boundary != "task" or unit.finished:
            _discard(unit)
            continue
        if _clean_exit(error) and not unit.rollback_only:
            try:
                unit.commit()
            except Exception as exc:
                log.exception("Committing the task's transaction failed.")
                failure = exc
        else:
            unit.rollback()
    if failure is not None:
        raise failure


def _discard(unit: _UnitOfWork) -> None:
    if unit.finished:
        unit.release()
    else:
        unit.rollback()
