"""The migrations make exactly the models' schema, on SQLite and PostgreSQL,
and go down and up again; init-db applies them."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storefront import create_app
from storefront.cli import LATER_COLUMNS
from storefront.extensions import db
from storefront.migrate import target_metadata
from storefront.passwords import hash_password

from .conftest import csrf_token

#: The newest migration.
HEAD = "0003"


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


#: Addresses as the shop stored them before it normalized them (trimmed and
#: lowered only), by account id, and what the upgrade makes of each.
OLD_ADDRESSES = {
    1: ("ada@bücher.example", "ada@xn--bcher-kva.example"),
    2: ("jose\u0301@example.com", "jos\u00e9@example.com"),
    3: ("carl@intranet.local", "carl@intranet.local"),
    # One mailbox, two accounts: the one in the new form already keeps it...
    4: ("bob@bu\u0308cher.example", "bob@bu\u0308cher.example"),
    5: ("bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example"),
    # ... and otherwise the oldest takes it.
    6: ("eve@bücher.example", "eve@xn--bcher-kva.example"),
    7: ("eve@bu\u0308cher.example", "eve@bu\u0308cher.example"),
}


def emails(app):
    with db.engine_for(app).connect() as connection:
        rows = connection.execute(sa.text("SELECT id, email FROM user_account"))
        return dict(rows.all())


def test_upgrading_writes_stored_addresses_in_the_form_the_forms_look_up(
    empty_app, caplog
):
    cli(empty_app, "db", "upgrade", "0002")
    accounts = sa.table(
        "user_account",
        *(sa.column(name) for name in ["id", "email", "password_hash"]),
        sa.column("activated_at"),
        sa.column("created_at"),
        sa.column("is_staff"),
    )
    now = dt.datetime.now(dt.timezone.utc)
    with db.engine_for(empty_app).begin() as connection:
        connection.execute(
            sa.insert(accounts),
            [
                {
                    "id": id_,
                    "email": old,
                    "password_hash": hash_password("storefront"),
                    "activated_at": now,
                    "created_at": now,
                    "is_staff": False,
                }
                for id_, (old, _) in OLD_ADDRESSES.items()
            ],
        )
    with caplog.at_level(logging.WARNING, logger="storefront.schema"):
        cli(empty_app, "db", "upgrade")
    assert emails(empty_app) == {id_: new for id_, (_, new) in OLD_ADDRESSES.items()}
    warned = [r.getMessage() for r in caplog.records if r.name == "storefront.schema"]
    assert len(warned) == 2
    assert warned[0].startswith("Account 4 (bob@bu\u0308cher.example) is the mailbox")
    assert "of account 5 (bob@xn--bcher-kva.example)" in warned[0]
    assert warned[1].startswith("Account 7 ")
    assert "of account 6 (eve@xn--bcher-kva.example)" in warned[1]
    # The accounts log in as typed, and one mailbox cannot sign up again.
    for typed in ["Ada@Bücher.example", "jose\u0301@example.com", "eve@BÜCHER.example"]:
        client = empty_app.test_client()
        form = {"email": typed, "password": "storefront"}
        response = client.post(
            "/login", data={**form, "csrf_token": csrf_token(client)}
        )
        assert (response.status_code, response.headers["Location"]) == (303, "/"), typed
    client = empty_app.test_client()
    again = {"email": "ada@bücher.example", "csrf_token": csrf_token(client)}
    assert client.post("/signup", data=again).status_code == 303
    assert len(emails(empty_app)) == len(OLD_ADDRESSES)


def test_init_db_rewrites_the_addresses_of_a_database_made_before_migrations(
    empty_app,
):
    with empty_app.app_context():
        for metadata in target_metadata():
            metadata.create_all(db.engine)
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO user_account (email, is_staff, created_at)"
                    " VALUES ('ada@bücher.example', false, CURRENT_TIMESTAMP)"
                )
            )
    cli(empty_app, "init-db")
    assert list(emails(empty_app).values()) == ["ada@xn--bcher-kva.example"]
    assert revision(empty_app) == HEAD
