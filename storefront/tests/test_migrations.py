"""The migrations make exactly the models' schema, on SQLite and PostgreSQL,
and go down and up again; init-db applies them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storefront import create_app
from storefront.cli import LATER_COLUMNS
from storefront.extensions import db
from storefront.migrate import target_metadata

#: The newest migration.
HEAD = "0002"


@pytest.fixture
def empty_app(database_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "migrations",
            "DATABASE_URL": database_url,
            "REDIS_URL": None,
            "DEV_MAILBOX": True,
            "PATTERNS_ASSETS_ROOT": str(tmp_path / "assets"),
        }
    )
    yield app
    db.engine_for(app).dispose()


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def differences(app):
    with db.engine_for(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, target_metadata())


def tables(app):
    return set(sa.inspect(db.engine_for(app)).get_table_names())


def revision(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.text("SELECT version_num FROM alembic_version"))


def test_upgrading_an_empty_database_gives_exactly_the_models_schema(empty_app):
    assert cli(empty_app, "db", "upgrade") == "Schema at head.\n"
    assert differences(empty_app) == []
    expected = {t.name for m in target_metadata() for t in m.sorted_tables}
    assert tables(empty_app) == expected | {"alembic_version"}


def test_downgrade_then_upgrade_works(empty_app):
    cli(empty_app, "db", "upgrade")
    cli(empty_app, "db", "downgrade", "base")
    assert tables(empty_app) == {"alembic_version"}
    cli(empty_app, "db", "upgrade")
    assert differences(empty_app) == []
    cli(empty_app, "demo")  # the schema takes the demo data


def test_the_migrated_schema_keeps_the_check_constraints(empty_app):
    cli(empty_app, "db", "upgrade")
    cli(empty_app, "demo")
    refused = pytest.raises(sa.exc.IntegrityError)
    with refused, db.engine_for(empty_app).begin() as connection:
        connection.execute(sa.text("UPDATE product SET stock = -1"))


def test_init_db_applies_the_migrations_to_an_empty_database(empty_app):
    assert "Schema ready" in cli(empty_app, "init-db")
    assert revision(empty_app) == HEAD
    assert differences(empty_app) == []


def test_init_db_records_a_database_made_before_migrations(empty_app):
    with empty_app.app_context():
        for metadata in target_metadata():
            metadata.create_all(db.engine)
    assert "Schema ready" in cli(empty_app, "init-db")
    assert revision(empty_app) == HEAD
    assert differences(empty_app) == []


def test_init_db_upgrades_a_database_made_before_migrations_by_the_first_version(
    empty_app,
):
    with empty_app.app_context():
        for metadata in target_metadata():
            metadata.create_all(db.engine)
        with db.engine.begin() as connection:
            for name in LATER_COLUMNS:
                table, column = name.split(".")
                connection.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    assert "Schema ready" in cli(empty_app, "init-db")
    assert revision(empty_app) == HEAD
    assert differences(empty_app) == []
