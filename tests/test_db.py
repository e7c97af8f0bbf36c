"""The unit of work: every request outcome, CLI commands, app-context tasks,
savepoints, streaming, and after-commit callbacks. Each test runs on SQLite and
on PostgreSQL and checks the rows, the callbacks and the pool."""

from __future__ import annotations

import logging
import sqlite3
import sys
import warnings

import click
import pytest
import sqlalchemy as sa
from flask import abort
from flask import Flask
from flask import redirect
from flask import stream_with_context
from sqlalchemy.orm import registry

from flask_patterns.db import after_commit
from flask_patterns.db import committed
from flask_patterns.db import Database
from flask_patterns.db import is_transient_error
from flask_patterns.db import rolled_back

from .conftest import child
from .conftest import db
from .conftest import item


class Conflict(Exception):
    pass


@pytest.fixture
def views(app, probe):
    """Views that write a row and register a callback, then end in one way each."""

    @app.errorhandler(Conflict)
    def conflict(error):
        return "conflict", 409

    @app.errorhandler(500)
    def server_error(error):
        return "our own 500 page", 500

    def write_and_register(name):
        probe.write(name)
        after_commit(probe.record(name))

    @app.post("/ok")
    def ok():
        write_and_register("ok")
        return "done"

    @app.post("/redirect")
    def redirected():
        write_and_register("redirect")
        return redirect("/ok")

    @app.post("/abort")
    def aborted():
        write_and_register("abort")
        abort(404)

    @app.post("/handled")
    def handled():
        write_and_register("handled")
        raise Conflict()

    @app.post("/returned-500")
    def returned_500():
        write_and_register("returned-500")
        return "broken", 500

    @app.post("/unhandled")
    def unhandled():
        write_and_register("unhandled")
        raise LookupError("boom")

    @app.post("/dangling")
    def dangling():
        write_and_register("dangling")
        db.session.execute(child.insert().values(item_id=999_999))
        return "looks fine"

    @app.post("/doomed")
    def doomed():
        write_and_register("doomed")
        db.set_rollback()
        return "rendered, but rolled back"

    return app


@pytest.mark.parametrize(
    ("path", "status", "committed_rows"),
    [
        ("/ok", 200, ["ok"]),
        ("/redirect", 302, ["redirect"]),
        ("/abort", 404, []),
        ("/handled", 409, []),
        ("/returned-500", 500, []),
        ("/unhandled", 500, []),
        ("/doomed", 200, []),
    ],
)
def test_request_outcome_decides_commit_and_callbacks(
    views, probe, path, status, committed_rows
):
    response = views.test_client().post(path)
    assert response.status_code == status
    assert probe.rows() == committed_rows
    assert probe.ran == committed_rows


def test_unhandled_exception_in_testing_mode_rolls_back(views, probe):
    views.config["TESTING"] = True
    with pytest.raises(LookupError):
        views.test_client().post("/unhandled")
    assert probe.rows() == []
    assert probe.ran == []


def test_failed_commit_reaches_the_apps_500_handler_never_a_false_200(
    views, probe, caplog
):
    response = views.test_client().post("/dangling")
    assert response.status_code == 500
    assert response.get_data(as_text=True) == "our own 500 page"
    assert probe.rows() == []
    assert probe.ran == []
    assert "IntegrityError" in caplog.text


def test_exception_in_a_later_after_request_handler_rolls_back(views, probe):
    @views.after_request
    def explode(response):
        raise RuntimeError("after_request failed")

    response = views.test_client().post("/ok")
    assert response.status_code == 500
    assert probe.rows() == []
    assert probe.ran == []


def test_request_with_no_database_work_still_runs_callbacks(app, probe):
    @app.post("/no-db")
    def no_db():
        after_commit(probe.record("mail"))
        return "ok"

    @app.post("/no-db-fails")
    def no_db_fails():
        after_commit(probe.record("mail"))
        return "bad", 400

    client = app.test_client()
    client.post("/no-db")
    client.post("/no-db-fails")
    assert probe.ran == ["mail"]


def test_callbacks_run_after_the_connection_is_back_in_the_pool(app, probe):
    seen = []

    @app.post("/")
    def view():
        probe.write("a")
        after_commit(lambda: seen.append(probe.checked_out()))
        return "ok"

    app.test_client().post("/")
    assert seen == [0]


def test_commit_veto_can_be_configured_by_import_string(database_url, tmp_path):
    app = Flask("veto")
    app.config["PATTERNS_DATABASE_URL"] = database_url
    app.config["PATTERNS_COMMIT_VETO"] = "tests.test_db:veto_redirects"
    local = Database(app)
    from .conftest import metadata

    metadata.create_all(local.engine_for(app))

    @app.post("/")
    def view():
        local.session.execute(item.insert().values(name="x"))
        return redirect("/")

    assert app.test_client().post("/").status_code == 302
    with local.engine_for(app).connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(item)) == 0
    local.engine_for(app).dispose()


def veto_redirects(response):
    return response.status_code >= 300


def test_explicit_commit_in_a_view_runs_callbacks_then_later_work_can_roll_back(
    app, probe
):
    @app.post("/")
    def view():
        probe.write("kept")
        after_commit(probe.record("kept"))
        db.session.commit()
        probe.write("dropped")
        after_commit(probe.record("dropped"))
        return "validation failed", 422

    assert app.test_client().post("/").status_code == 422
    assert probe.rows() == ["kept"]
    assert probe.ran == ["kept"]


def test_robust_callback_failure_is_logged_and_never_turns_into_a_500(
    app, probe, caplog
):
    def broken():
        raise ValueError("smtp down")

    @app.post("/")
    def view():
        probe.write("a")
        after_commit(broken)
        after_commit(probe.record("after"))
        return "ok"

    assert app.test_client().post("/").status_code == 200
    assert probe.rows() == ["a"]
    assert probe.ran == ["after"]
    assert "Error calling" in caplog.text
    assert "broken" in caplog.text


def test_non_robust_callback_failure_propagates_after_the_commit(app, probe):
    def broken():
        raise ValueError("smtp down")

    @app.post("/")
    def view():
        probe.write("a")
        after_commit(broken, robust=False)
        after_commit(probe.record("skipped"))
        return "ok"

    assert app.test_client().post("/").status_code == 500
    assert probe.rows() == ["a"]
    assert probe.ran == []


def test_signals_report_commits_and_rollbacks(views, probe):
    events = []

    def on_commit(sender):
        events.append(("committed", sender.name))

    def on_rollback(sender):
        events.append(("rolled back", sender.name))

    with committed.connected_to(on_commit), rolled_back.connected_to(on_rollback):
        client = views.test_client()
        client.post("/ok")
        client.post("/abort")
    assert events == [("committed", views.name), ("rolled back", views.name)]


def test_savepoint_in_a_request_keeps_the_outer_work(app, probe):
    @app.post("/")
    def view():
        probe.write("outer")
        after_commit(probe.record("outer"))
        try:
            with db.savepoint():
                probe.write("inner")
                after_commit(probe.record("inner"))
                raise Conflict()
        except Conflict:
            pass
        return "ok"

    app.test_client().post("/")
    assert probe.rows() == ["outer"]
    assert probe.ran == ["outer"]


class Item:
    """``item`` mapped for the ORM, to make a flush fail inside a savepoint."""

    def __init__(self, **values):
        self.__dict__.update(values)


registry().map_imperatively(Item, item)


def test_a_flush_that_fails_inside_a_savepoint_undoes_only_the_savepoint(app, probe):
    @app.post("/")
    def view():
        probe.write("outer")  # id 1
        try:
            with db.savepoint():
                db.session.add(Item(id=1, name="duplicate"))
                db.session.flush()
        except sa.exc.IntegrityError:
            pass
        probe.write("after")
        return "ok"

    response = app.test_client().post("/")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert probe.rows() == ["outer", "after"]


def test_commit_inside_a_savepoint_is_refused(app, probe):
    with app.app_context():
        with db.savepoint(), pytest.raises(RuntimeError, match=r"inside db\.savepoint"):
            db.session.commit()
        with db.savepoint(), pytest.raises(RuntimeError, match=r"inside db\.savepoint"):
            db.session.rollback()


# Streaming responses and disconnects


def test_stream_commits_before_streaming_and_rolls_back_writes_inside_it(app, probe):
    @app.post("/stream")
    def stream():
        probe.write("before")
        after_commit(probe.record("before"))

        @stream_with_context
        def body():
            yield "one\n"
            with db.transaction():
                probe.write("inside, explicit")
                after_commit(probe.record("inside, explicit"))
            yield "two\n"
            probe.write("inside, implicit")
            after_commit(probe.record("no transaction open: runs at once"))
            yield "three\n"

        return body()

    response = app.test_client().post("/stream")
    assert response.get_data(as_text=True) == "one\ntwo\nthree\n"
    assert probe.rows() == ["before", "inside, explicit"]
    assert probe.ran == [
        "before",
        "inside, explicit",
        "no transaction open: runs at once",
    ]


def test_client_disconnect_mid_stream_releases_everything(app, probe):
    @app.post("/stream")
    def stream():
        probe.write("before")

        @stream_with_context
        def body():
            probe.write("during")
            for number in range(1000):
                yield f"{number}\n"

        return body()

    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/stream", method="POST").get_environ()
    chunks = app.wsgi_app(environ, lambda status, headers: None)
    assert next(iter(chunks)) == b"0\n"
    chunks.close()
    assert probe.rows() == ["before"]
    assert probe.checked_out() == 0


# Tasks outside requests


def test_app_context_commits_on_clean_exit_and_rolls_back_on_error(app, probe):
    with app.app_context():
        probe.write("kept")
        after_commit(probe.record("kept"))
        assert probe.ran == []
    with pytest.raises(Conflict), app.app_context():
        probe.write("dropped")
        after_commit(probe.record("dropped"))
        raise Conflict()
    assert probe.rows() == ["kept"]
    assert probe.ran == ["kept"]


def test_app_context_with_a_caught_exception_still_commits(app, probe):
    with app.app_context():
        probe.write("kept")
        try:
            raise Conflict()
        except Conflict:
            pass
    assert probe.rows() == ["kept"]


def test_failed_commit_of_an_app_context_raises_after_cleanup(app, probe):
    with pytest.raises(sa.exc.IntegrityError), app.app_context():
        probe.write("a")
        after_commit(probe.record("a"))
        db.session.execute(child.insert().values(item_id=999_999))
    assert probe.rows() == []
    assert probe.ran == []


def test_run_in_task_commits_a_job(app, probe):
    from flask_patterns.context import run_in_task

    def job(name):
        probe.write(name)
        after_commit(probe.record(name))

    run_in_task(app, job, "job-1")
    with pytest.raises(ZeroDivisionError):
        run_in_task(app, lambda: (probe.write("job-2"), 1 / 0))
    assert probe.rows() == ["job-1"]
    assert probe.ran == ["job-1"]


@pytest.fixture
def commands(app, probe):
    def register(name):
        probe.write(name)
        after_commit(probe.record(name))

    @app.cli.command("ok")
    def ok():
        register("ok")

    @app.cli.command("fails")
    def fails():
        register("fails")
        raise Conflict()

    @app.cli.command("exit-0")
    def exit_0():
        register("exit-0")
        sys.exit(0)

    @app.cli.command("exit-1")
    def exit_1():
        register("exit-1")
        sys.exit(1)

    @app.cli.command("ctx-exit-0")
    @click.pass_context
    def ctx_exit_0(ctx):
        register("ctx-exit-0")
        ctx.exit(0)

    @app.cli.command("abort")
    def aborted():
        register("abort")
        raise click.Abort()

    return app.test_cli_runner()


@pytest.mark.parametrize(
    ("command", "exit_code", "committed_rows"),
    [
        ("ok", 0, ["ok"]),
        ("fails", 1, []),
        ("exit-0", 0, ["exit-0"]),
        ("exit-1", 1, []),
        ("ctx-exit-0", 0, ["ctx-exit-0"]),
        ("abort", 1, []),
    ],
)
def test_cli_command_outcome_decides_commit(
    commands, probe, command, exit_code, committed_rows
):
    result = commands.invoke(args=[command])
    assert result.exit_code == exit_code
    assert probe.rows() == committed_rows
    assert probe.ran == committed_rows


def test_flask_3_1_outer_app_context_does_not_swallow_request_boundaries(views, probe):
    with views.app_context():
        client = views.test_client()
        client.post("/ok")
        client.post("/abort")
        assert probe.rows() == ["ok"]
    assert probe.rows() == ["ok"]
    assert probe.ran == ["ok"]


def test_teardown_twice_is_harmless(app, probe):
    from flask_patterns.db import _teardown_request
    from flask_patterns.db import _teardown_task

    ctx = app.app_context()
    ctx.push()
    probe.write("a")
    _teardown_task(None)
    _teardown_task(None)
    _teardown_request(None)
    ctx.pop()
    assert probe.rows() == ["a"]


def test_database_needs_init_app_and_refuses_a_second_one(app):
    other = Flask("other")
    with other.app_context(), pytest.raises(RuntimeError, match="init_app"):
        Database().engine  # noqa: B018
    with pytest.raises(RuntimeError, match="already registered"):
        Database(app)


def test_relative_sqlite_path_lands_in_the_instance_folder(tmp_path):
    app = Flask("relative", instance_path=str(tmp_path / "instance"))
    app.config["PATTERNS_DATABASE_URL"] = "sqlite:///shop.sqlite"
    local = Database(app)
    assert local.engine_for(app).url.database == str(tmp_path / "instance/shop.sqlite")
    local.engine_for(app).dispose()


def test_plain_postgresql_urls_use_psycopg_3(tmp_path):
    app = Flask("pg", instance_path=str(tmp_path))
    app.config["PATTERNS_DATABASE_URL"] = "postgresql://127.0.0.1/test"
    local = Database(app)
    assert local.engine_for(app).url.drivername == "postgresql+psycopg"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url):
    app = Flask("sqlite")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    local = Database(app)
    with local.engine_for(app).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    local.engine_for(app).dispose()


def test_sqlite_reads_begin_deferred_and_writes_begin_immediate(sqlite_url):
    app = Flask("sqlite")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    local = Database(app)
    begins = []

    @sa.event.listens_for(local.engine_for(app), "before_cursor_execute")
    def watch(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            begins.append(statement)

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
    from flask_patterns.db import _writer_lock

    return _writer_lock(engine.url.database)._lock


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
    import os

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


# Retrying serialization failures


def test_transient_errors_are_recognised():
    class Orig(Exception):
        def __init__(self, sqlstate):
            self.sqlstate = sqlstate

    def error(code):
        return sa.exc.OperationalError("stmt", {}, Orig(code))

    assert is_transient_error(error("40001"))
    assert is_transient_error(error("40P01"))
    assert not is_transient_error(error("23505"))
    assert not is_transient_error(ValueError())


def test_retrying_needs_at_least_one_attempt():
    with pytest.raises(ValueError, match="at least 1"):
        db.retrying(0)


def test_retrying_reruns_a_view_after_a_serialization_failure(postgres_url, caplog):
    caplog.set_level(logging.INFO, logger="flask_patterns.db")
    app = Flask("retry")
    app.config["PATTERNS_DATABASE_URL"] = postgres_url
    app.config["PATTERNS_ENGINE_OPTIONS"] = {"isolation_level": "REPEATABLE READ"}
    local = Database(app)
    engine = local.engine_for(app)
    from .conftest import metadata

    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(item.insert().values(id=1, name="0"))
    attempts, mails = [], []

    @app.post("/")
    @local.retrying(attempts=3, backoff=0)
    def increment():
        attempts.append(1)
        current = local.session.execute(sa.select(item.c.name)).scalar_one()
        if len(attempts) == 1:
            with engine.begin() as other:  # a concurrent writer commits first
                other.execute(item.update().values(name="10"))
        local.session.execute(item.update().values(name=str(int(current) + 1)))
        after_commit(lambda: mails.append(current))
        return "ok"

    assert app.test_client().post("/").status_code == 200
    assert len(attempts) == 2
    assert mails == ["10"]
    with engine.connect() as connection:
        assert connection.scalar(sa.select(item.c.name)) == "11"
    assert "Retrying" in caplog.text
    assert engine.pool.checkedout() == 0
    engine.dispose()


def test_retrying_gives_up_after_the_last_attempt_and_on_other_errors(app, probe):
    calls = []

    @db.retrying(attempts=2, backoff=0)
    def job():
        calls.append(1)
        probe.write("x")
        db.session.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.DBAPIError), app.app_context():
        job()
    assert calls == [1]
    assert probe.rows() == []


def test_retrying_a_view_keeps_the_commit_veto(app, probe):
    @app.post("/")
    @db.retrying()
    def view():
        probe.write("x")
        after_commit(probe.record("x"))
        return "nope", 400

    assert app.test_client().post("/").status_code == 400
    assert probe.rows() == []
    assert probe.ran == []


def test_transaction_open_tells_whether_work_now_will_be_committed(app, probe):
    assert db.transaction_open is False
    with app.app_context():
        assert db.transaction_open is True
    with app.test_request_context():
        assert db.transaction_open is False
        with db.transaction():
            assert db.transaction_open is True

    @app.post("/")
    def view():
        return {"open": db.transaction_open}

    assert app.test_client().post("/").json == {"open": True}
