"""The shop's schema under Alembic: its tables and the library's (the outbox,
the held events) in one migration history, in ``storefront/schema/``.

``flask --app storefront db upgrade`` applies the migrations (``init-db`` does
too), ``db downgrade REV``, ``db current``, and ``db revision -m "..."``
writes a new one from the difference between the models and the database.
Alembic is used directly rather than through Flask-Migrate, which needs
Flask-SQLAlchemy: the engine is the one ``flask_patterns.db.Database`` made.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import click
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from flask.cli import AppGroup

from flask_patterns.outbox import metadata as outbox_metadata
from flask_patterns.streams.relay import metadata as relay_metadata

from .extensions import db
from .models import Base

SCHEMA = Path(__file__).resolve().parent / "schema"


def target_metadata() -> list[sa.MetaData]:
    """Every table the shop's database holds: the models', the outbox's and the
    held events'."""
    return [Base.metadata, outbox_metadata, relay_metadata]


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic configuration that runs on ``connection``, with no ini file."""
    config = Config()
    config.set_main_option("script_location", str(SCHEMA))
    config.attributes["connection"] = connection
    return config


def run(action: t.Callable[..., object], *args: t.Any, **kwargs: t.Any) -> None:
    """Run an Alembic command in one transaction on the app's engine."""
    with db.engine.begin() as connection:
        action(alembic_config(connection), *args, **kwargs)


def has_history(engine: sa.Engine) -> bool:
    """Whether Alembic has recorded a revision in this database."""
    return sa.inspect(engine).has_table("alembic_version")


def commands() -> click.Group:
    group = AppGroup("db", help="Migrate the shop's schema (Alembic).")

    @group.command("upgrade")
    @click.argument("revision", default="head")
    def upgrade(revision: str) -> None:
        """Apply the migrations up to REVISION (the newest by default)."""
        run(command.upgrade, revision)
        click.echo(f"Schema at {revision}.")

    @group.command("downgrade")
    @click.argument("revision")
    def downgrade(revision: str) -> None:
        """Undo the migrations down to REVISION (``base``: an empty schema)."""
        run(command.downgrade, revision)
        click.echo(f"Schema at {revision}.")

    @group.command("current")
    def current() -> None:
        """Show the revision the database is at."""
        run(command.current)

    @group.command("stamp")
    @click.argument("revision", default="head")
    def stamp(revision: str) -> None:
        """Record REVISION without running anything (a schema made otherwise)."""
        run(command.stamp, revision)
        click.echo(f"Recorded the schema as {revision}.")

    @group.command("revision")
    @click.option("-m", "--message", required=True)
    def revision(message: str) -> None:
        """Write a migration from the difference between the models and the
        database (review it before you commit it)."""
        run(command.revision, message=message, autogenerate=True)

    return group
