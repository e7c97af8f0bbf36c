"""The app and views shared by the tests of the unit of work."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import abort
from flask import Flask
from flask import redirect

from flask_patterns.db import after_commit

from ..conftest import child
from ..conftest import db
from ..conftest import driver_url
from ..conftest import metadata


@pytest.fixture(params=["url", "own engine", "flask-sqlalchemy"])
def app(request, database_url):
    """Every unit-of-work test runs with the engine the library makes from
    the URL, with an engine the app made itself (plain
    ``sqlalchemy.create_engine``), and in an app that uses Flask-SQLAlchemy,
    on SQLite and on PostgreSQL."""
    app = Flask("unit_of_work")
    if request.param == "url":
        app.config["PATTERNS_DATABASE_URL"] = database_url
        db.init_app(app)
    elif request.param == "own engine":
        db.init_app(
            app, engine=foreign_keys_on(sa.create_engine(driver_url(database_url)))
        )
    else:
        from flask_sqlalchemy import SQLAlchemy

        app.config["SQLALCHEMY_DATABASE_URI"] = driver_url(database_url)
        fsa = SQLAlchemy(app)
        with app.app_context():
            foreign_keys_on(fsa.engine)
        db.init_app(app, flask_sqlalchemy=fsa)
    metadata.create_all(db.engine_for(app))
    yield app
    db.engine_for(app).dispose()


def foreign_keys_on(engine: sa.Engine) -> sa.Engine:
    """An engine of the app's own keeps its pragmas, so an app on SQLite turns
    foreign keys on itself, as the docs show; the outcome tests need them."""
    if engine.url.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def connect(dbapi_connection, record):
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    return engine


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


class ForcedError(Exception):
    pass


@pytest.fixture
def task(app):
    with app.app_context():
        yield


@pytest.fixture
def do(probe):
    def do(number, robust=True):
        probe.write(str(number))
        after_commit(probe.record(number), robust=robust)

    return do


@pytest.fixture
def assert_done(probe):
    def assert_done(numbers):
        assert probe.ran == numbers
        assert probe.rows() == [str(n) for n in numbers]

    return assert_done
