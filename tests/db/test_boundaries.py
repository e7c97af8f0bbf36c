"""Where tasks end: every request outcome, streamed bodies, app contexts, jobs
and CLI commands. Each test runs on SQLite and on PostgreSQL and checks the
rows, the callbacks and the pool."""

from __future__ import annotations

import sys

import click
import pytest
import sqlalchemy as sa
from flask import stream_with_context

from flask_patterns.db import after_commit

from ..conftest import child
from ..conftest import db
from .conftest import Conflict


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
    from flask_patterns.db.boundaries import teardown_request
    from flask_patterns.db.boundaries import teardown_task

    ctx = app.app_context()
    ctx.push()
    probe.write("a")
    teardown_task(None)
    teardown_task(None)
    teardown_request(None)
    ctx.pop()
    assert probe.rows() == ["a"]
