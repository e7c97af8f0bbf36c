"""Engines from URLs."""

from __future__ import annotations

import socket
import threading
import time
import types

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_patterns.db import Database
from flask_patterns.db.engine import create_engine


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


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers, as a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def time_to_fail(engine, cap=15.0):
    """Seconds until connecting fails with libpq's timeout; fails the test if
    it still waits after ``cap`` (the silent port then resets the attempt)."""
    outcome = []

    def connect():
        started = time.monotonic()
        try:
            engine.connect()
        except sa.exc.OperationalError as error:
            outcome.append((str(error.orig), time.monotonic() - started))

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(cap)
    engine.dispose()
    assert outcome, f"still connecting after {cap} s"
    message, waited = outcome[0]
    assert "timeout expired" in message
    return waited


def test_a_postgresql_server_that_never_answers_fails_a_connection_in_5_s(
    silent_port,
):
    url = sa.make_url(f"postgresql+psycopg://shop@127.0.0.1:{silent_port}/shop")
    # libpq alone waits for ever; the default gives up after 5 s.
    assert 4.5 <= time_to_fail(create_engine(url, {})) < 8


def test_a_connect_timeout_of_the_url_or_the_options_wins(silent_port):
    url = sa.make_url(f"postgresql+psycopg://shop@127.0.0.1:{silent_port}/shop")
    in_url = create_engine(url.update_query_dict({"connect_timeout": "2"}), {})
    assert 1.5 <= time_to_fail(in_url) < 4
    given = {"connect_args": {"connect_timeout": 2, "application_name": "shop"}}
    assert 1.5 <= time_to_fail(create_engine(url, given)) < 4
    assert given["connect_args"] == {"connect_timeout": 2, "application_name": "shop"}


def test_a_postgresql_driver_not_on_libpq_is_not_given_connect_timeout():
    """pg8000 refuses an argument it does not know; its own is ``timeout``."""
    given = {}

    def connect(**arguments):
        given.update(arguments)
        raise Refused("no server here")

    class Refused(Exception):
        pass

    pg8000 = types.SimpleNamespace(
        __version__="1.31.2",
        paramstyle="format",
        connect=connect,
        **dict.fromkeys(
            ["Error", "DatabaseError", "OperationalError", "InterfaceError"], Refused
        ),
        ProgrammingError=Refused,
    )
    url = sa.make_url("postgresql+pg8000://shop@127.0.0.1:1/shop")
    engine = create_engine(url, {"module": pg8000})
    with pytest.raises(sa.exc.DBAPIError, match="no server here"):
        engine.connect()
    assert given == {"host": "127.0.0.1", "port": 1, "user": "shop", "database": "shop"}
