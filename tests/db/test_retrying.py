"""Retrying transactions after serialization failures."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_patterns.db import after_commit
from flask_patterns.db import Database
from flask_patterns.db import is_transient_error

from ..conftest import db
from ..conftest import item

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
    from ..conftest import metadata

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
