"""SQLite made fit for production: WAL, BEGIN IMMEDIATE for writers, one
writer at a time per file in a process."""

from __future__ import annotations

import os
import sqlite3
import warnings

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_patterns.db import Database


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url):
    app = Flask("sqlite")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    local = Database(app)
    with local.engine_for(app).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    local.engine_for(app).dispose()


def trace_begins(engine):
    """The BEGIN statements SQLite runs on the engine's connections, as SQLite's
    trace callback reports them (whoever sends them)."""
    begins = []

    @sa.event.listens_for(engine, "connect")
    def trace(dbapi_connection, record):
        dbapi_connection.set_trace_callback(
            lambda statement: statement.startswith("BEGIN") and begins.append(statement)
        )

    return begins


def test_an_engine_of_the_apps_own_keeps_its_pragmas_and_gets_real_begins(
    sqlite_url,
):
    engine = sa.create_engine(sqlite_url)
    begins = trace_begins(engine)
    app = Flask("own engine")
    local = Database(app, engine=engine)
    with app.app_context():
        connection = local.session.connection()
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    assert begins == ["BEGIN IMMEDIATE"], "the app's own pragmas, the library's BEGIN"
    engine.dispose()


def test_an_engine_that_begins_by_sqlalchemys_recipe_begins_once(sqlite_url):
    engine = sa.create_engine(sqlite_url)

    @sa.event.listens_for(engine, "connect")
    def no_driver_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def begin(connection):
        connection.exec_driver_sql("BEGIN")

    begins = trace_begins(engine)
    app = Flask("recipe")
    local = Database(app, engine=engine)
    with app.app_context():
        local.session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        local.session.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(LookupError), local.savepoint():
            local.session.execute(sa.text("INSERT INTO t VALUES (2)"))
            raise LookupError
    assert begins == ["BEGIN"], "the app's BEGIN, not a second one"
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT x FROM t").scalars().all()
    assert rows == [1], "the savepoint rolled back its own write only"
    engine.dispose()


def test_sqlite_reads_begin_deferred_and_writes_begin_immediate(sqlite_url):
    app = Flask("sqlite")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    local = Database(app)
    begins = trace_begins(local.engine_for(app))

    @app.route("/", methods=["GET", "POST"])
    def view():
        local.session.execute(sa.text("SELECT 1"))
        return "ok"

    client = app.test_client()
    client.get("/")
    client.post("/")
    with app.app_context():
        local.session.execute(sa.text("SELECT 1"))
    assert begins == ["BEGIN", "BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]
    local.engine_for(app).dispose()


def sqlite_database(sqlite_url, **engine_options):
    app = Flask("sqlite")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    local = Database(app, engine_options=engine_options)
    engine = local.engine_for(app)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    return app, local, engine


def writer_lock(engine):
    from flask_patterns.db.sqlite import writer_lock

    return writer_lock(engine.url.database)


def test_sqlite_writers_queue_on_a_lock_given_back_however_they_end(sqlite_url):
    app, local, engine = sqlite_database(sqlite_url)
    lock = writer_lock(engine)
    with app.app_context():
        local.session.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert lock.locked()
    assert not lock.locked()  # committed

    with pytest.raises(RuntimeError), app.app_context():
        local.session.execute(sa.text("INSERT INTO t VALUES (2)"))
        raise RuntimeError
    assert not lock.locked()  # rolled back

    connection = engine.connect()
    connection.exec_driver_sql("INSERT INTO t VALUES (3)")
    assert lock.locked()
    connection.invalidate()  # the DBAPI connection is closed mid-transaction
    connection.close()
    assert not lock.locked()

    raw = engine.raw_connection().dbapi_connection
    raw.take_writer_lock(1.0)
    raw.execute("BEGIN IMMEDIATE")
    raw.close()
    assert not lock.locked()
    # A commit on the closed connection fails as sqlite3's does, lock aside.
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.commit()

    with engine.connect() as reader:
        assert reader.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
    engine.dispose()


def test_a_forked_child_starts_with_the_writer_lock_free(sqlite_url):

    *_, engine = sqlite_database(sqlite_url)
    holder = engine.connect()
    holder.exec_driver_sql("INSERT INTO t VALUES (1)")
    lock = writer_lock(engine)
    assert lock.locked()
    with warnings.catch_warnings():
        # Python 3.12 warns about forking a process that runs threads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's writer is not here to give it back
        free = not writer_lock(engine).locked()
        # What the copied connection held belongs to the parent: giving it
        # back in the child is a no-op, not an error.
        holder.connection.dbapi_connection.give_back_writer_lock()
        os._exit(0 if free and not writer_lock(engine).locked() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lock.locked()  # the parent's own writer still holds it
    holder.rollback()
    holder.close()
    assert not lock.locked()
    engine.dispose()


def test_a_refused_commit_keeps_the_writer_lock_until_its_rollback(sqlite_url):
    *_, engine = sqlite_database(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE c (p INTEGER REFERENCES t (x) DEFERRABLE INITIALLY DEFERRED)"
        )
    lock = writer_lock(engine)
    connection = engine.connect()
    connection.exec_driver_sql("INSERT INTO c VALUES (42)")
    with pytest.raises(sa.exc.IntegrityError):
        connection.commit()
    connection.close()  # back to the pool, which rolls the transaction back
    assert not lock.locked()
    with engine.begin() as writer:
        writer.exec_driver_sql("INSERT INTO t VALUES (7)")
    engine.dispose()


def test_a_sqlite_writer_waits_for_the_one_before_and_times_out_as_sqlite_does(
    sqlite_url,
):
    import threading

    *_, engine = sqlite_database(sqlite_url, sqlite_busy_timeout_ms=300)
    holder = engine.connect()
    holder.exec_driver_sql("INSERT INTO t VALUES (1)")

    def write(value, results):
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
            results.append("ok")
        except sa.exc.OperationalError as error:
            results.append(str(error.orig))

    late = []
    thread = threading.Thread(target=write, args=(2, late))
    thread.start()
    thread.join()
    assert late == ["database is locked"]

    waiting = []
    thread = threading.Thread(target=write, args=(3, waiting))
    thread.start()
    holder.commit()
    holder.close()
    thread.join()
    assert waiting == ["ok"]
    with engine.connect() as reader:
        assert reader.exec_driver_sql("SELECT x FROM t").scalars().all() == [1, 3]
    engine.dispose()


def test_a_second_write_of_the_same_thread_does_not_wait_on_itself_forever(
    sqlite_url,
):
    *_, engine = sqlite_database(sqlite_url, sqlite_busy_timeout_ms=200)
    with engine.connect() as first:
        first.exec_driver_sql("INSERT INTO t VALUES (1)")
        locked = pytest.raises(sa.exc.OperationalError, match="database is locked")
        with locked, engine.begin() as second:
            second.exec_driver_sql("INSERT INTO t VALUES (2)")
        first.commit()
    assert not writer_lock(engine).locked()
    engine.dispose()
