"""Engines from URLs."""

from __future__ import annotations

from flask import Flask

from flask_patterns.db import Database


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
