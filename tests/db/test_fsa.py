"""An app that uses Flask-SQLAlchemy 3.1 and hands it to Database: one
engine, one session per task, and Flask-SQLAlchemy's own API on top."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_patterns.db import after_commit
from flask_patterns.db import Database

from ..conftest import driver_url


@pytest.fixture
def shop(database_url):
    """``(app, fsa, db, Product, ran)``: Flask-SQLAlchemy registered first,
    then the unit of work given it."""
    app = Flask("fsa_shop")
    app.config["SQLALCHEMY_DATABASE_URI"] = driver_url(database_url)
    fsa = SQLAlchemy(app)

    class Product(fsa.Model):  # type: ignore[name-defined]
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    database = Database(flask_sqlalchemy=fsa)
    database.init_app(app)
    with app.app_context():
        fsa.create_all()
    ran: list[str] = []
    yield app, fsa, database, Product, ran
    with app.app_context():
        fsa.drop_all()
        fsa.engine.dispose()


def names(app, fsa, product):
    with app.app_context():
        return sorted(p.name for p in fsa.session.scalars(sa.select(product)))


def test_one_engine_and_one_session_per_task(shop):
    app, fsa, database, product, _ = shop
    with app.app_context():
        assert database.engine is fsa.engine

    @app.post("/add")
    def add():
        assert fsa.session() is database.session
        fsa.session.add(product(name="mug"))
        database.session.flush()
        # Model.query and db.paginate see what the task flushed.
        assert [p.name for p in product.query.all()] == ["mug"]
        page = fsa.paginate(sa.select(product), page=1, per_page=10)
        assert [p.name for p in page.items] == ["mug"]
        # Its legacy query class too, with the *_or_404 helpers.
        assert fsa.session.query(product).filter_by(name="mug").first_or_404()
        return "added"

    assert app.test_client().post("/add").text == "added"
    assert names(app, fsa, product) == ["mug"]


def test_writes_through_flask_sqlalchemys_session_alone_are_committed(shop):
    app, fsa, _, product, _ = shop

    @app.post("/add")
    def add():
        fsa.session.add(product(name="never lost"))
        return "no commit() call"

    assert app.test_client().post("/add").status_code == 200
    assert names(app, fsa, product) == ["never lost"]


def test_get_or_404_answers_404_and_the_request_rolls_back(shop):
    app, fsa, _, product, ran = shop

    @app.post("/buy/<int:pid>")
    def buy(pid):
        fsa.session.add(product(name="written before the 404"))
        after_commit(lambda: ran.append("mail"))
        return fsa.get_or_404(product, pid).name

    assert app.test_client().post("/buy/7").status_code == 404
    assert names(app, fsa, product) == []
    assert ran == []


def test_explicit_commit_and_rollback_keep_the_callbacks_in_step(shop):
    app, fsa, _, product, ran = shop

    @app.post("/both")
    def both():
        fsa.session.add(product(name="kept"))
        after_commit(lambda: ran.append("after the explicit commit"))
        fsa.session.commit()
        fsa.session.add(product(name="dropped"))
        after_commit(lambda: ran.append("never"))
        fsa.session.rollback()
        return "done"

    assert app.test_client().post("/both").text == "done"
    assert ran == ["after the explicit commit"]
    assert names(app, fsa, product) == ["kept"]


def test_a_savepoint_through_either_name_rolls_back_alone(shop):
    app, fsa, database, product, _ = shop
    with app.app_context():
        fsa.session.add(product(name="outer"))
        with pytest.raises(LookupError), database.savepoint():
            fsa.session.add(product(name="inner"))
            fsa.session.flush()
            raise LookupError
    assert names(app, fsa, product) == ["outer"]


def test_a_cli_command_commits_on_a_clean_exit(shop):
    app, fsa, _, product, _ = shop

    @app.cli.command("add")
    def add():
        fsa.session.add(product(name="from the cli"))

    result = app.test_cli_runner().invoke(args=["add"])
    assert result.exit_code == 0, result.output
    assert names(app, fsa, product) == ["from the cli"]


def test_an_app_without_database_keeps_flask_sqlalchemys_session(shop, sqlite_url):
    _, fsa, _, product, _ = shop
    other = Flask("plain_fsa")
    other.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    fsa.init_app(other)
    with other.app_context():
        fsa.create_all()
        fsa.session.add(product(name="by hand"))
        fsa.session.commit()
        assert [p.name for p in product.query.all()] == ["by hand"]
        engine = fsa.engine
    engine.dispose()  # once the session gave its connection back at teardown


def test_flask_sqlalchemy_must_be_registered_first(database_url):
    app = Flask("wrong_order")
    app.config["SQLALCHEMY_DATABASE_URI"] = driver_url(database_url)
    fsa = SQLAlchemy()
    with pytest.raises(RuntimeError, match="Register Flask-SQLAlchemy on the app"):
        Database(app, flask_sqlalchemy=fsa)
    with pytest.raises(TypeError, match="one of an engine"):
        Database(flask_sqlalchemy=fsa, url=database_url)


def test_binds_are_refused_rather_than_written_outside_the_task(sqlite_url):
    app = Flask("binds")
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    app.config["SQLALCHEMY_BINDS"] = {"archive": sqlite_url}
    fsa = SQLAlchemy(app)
    with pytest.raises(RuntimeError, match="SQLALCHEMY_BINDS is set"):
        Database(app, flask_sqlalchemy=fsa)
    with app.app_context():
        for engine in fsa.engines.values():
            engine.dispose()
