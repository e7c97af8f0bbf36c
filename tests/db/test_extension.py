"""The extension: registration, the commit veto setting, savepoints and
explicit transactions, ``transaction_open``."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import redirect
from sqlalchemy.orm import registry

from flask_patterns.db import after_commit
from flask_patterns.db import Database

from ..conftest import db
from ..conftest import driver_url
from ..conftest import item
from .conftest import Conflict


def test_database_needs_init_app_and_refuses_a_second_one(app):
    other = Flask("other")
    with other.app_context(), pytest.raises(RuntimeError, match="init_app"):
        Database().engine  # noqa: B018
    with pytest.raises(RuntimeError, match="already registered"):
        Database(app)


def test_commit_veto_can_be_configured_by_import_string(database_url, tmp_path):
    app = Flask("veto")
    app.config["PATTERNS_DATABASE_URL"] = database_url
    app.config["PATTERNS_COMMIT_VETO"] = "tests.db.test_extension:veto_redirects"
    local = Database(app)
    from ..conftest import metadata

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


def test_an_engine_of_the_apps_own_is_used_as_it_is(database_url):
    engine = sa.create_engine(
        driver_url(database_url), pool_size=3, pool_pre_ping=False
    )
    app = Flask("own engine")
    database = Database(app, engine=engine)
    item.metadata.create_all(engine)

    @app.post("/write")
    def write():
        database.session.execute(item.insert().values(name="own"))
        return "ok"

    assert database.engine_for(app) is engine
    assert engine.pool.size() == 3  # type: ignore[attr-defined]
    assert "PATTERNS_DATABASE_URL" not in app.config
    assert app.test_client().post("/write").text == "ok"
    with engine.connect() as connection:
        assert list(connection.scalars(sa.select(item.c.name))) == ["own"]
    item.metadata.drop_all(engine)
    engine.dispose()


def test_one_engine_serves_two_apps_and_their_savepoints(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    item.metadata.create_all(engine)
    apps = [Flask("first"), Flask("second")]
    database = Database(engine=engine)
    for app in apps:
        database.init_app(app)
    for name, app in zip(("a", "b"), apps, strict=True):
        with app.app_context():
            database.session.execute(item.insert().values(name=name))
            with contextlib.suppress(Conflict), database.savepoint():
                database.session.execute(item.insert().values(name="undone"))
                raise Conflict
    with engine.connect() as connection:
        rows = list(connection.scalars(sa.select(item.c.name).order_by(item.c.id)))
    assert rows == ["a", "b"], "each savepoint rolled back alone, on both apps"
    engine.dispose()


def test_an_engine_excludes_a_url_and_engine_settings(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(TypeError, match="one of an engine"):
        Database(engine=engine, url=sqlite_url)
    with pytest.raises(TypeError, match="one of an engine"):
        Database(engine=engine, engine_options={"echo": True})
    app = Flask("both")
    app.config["PATTERNS_DATABASE_URL"] = sqlite_url
    with pytest.raises(RuntimeError, match="PATTERNS_DATABASE_URL is set"):
        Database(app, engine=engine)
    engine.dispose()
