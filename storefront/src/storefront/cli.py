"""``flask --app storefront ...`` commands."""

from __future__ import annotations

import datetime as dt

import click
import sqlalchemy as sa
from alembic import command
from flask.cli import with_appcontext

from . import migrate
from .extensions import db
from .models import Base
from .models import Product
from .models import User
from .passwords import hash_password

DEMO_PRODUCTS = [
    (
        "espresso-cup",
        "Espresso cup",
        "Thick porcelain, keeps a shot hot.",
        900,
        25,
    ),
    ("pour-over-kettle", "Pour-over kettle", "Gooseneck, 1 litre, stovetop.", 3900, 8),
    ("hand-grinder", "Hand grinder", "Conical steel burrs, 40 clicks.", 6500, 5),
    ("paper-filters", "Paper filters", "100 unbleached cone filters.", 450, 120),
    ("bean-tin", "Bean tin", "Airtight, holds 250 g of beans.", 1500, 0),
    ("travel-mug", "Travel mug", "Double wall, leak-proof lid.", 2400, 14),
]
DEMO_USERS = ["ada@example.com", "grace@example.com"]
#: May upload product images.
DEMO_STAFF = "staff@example.com"
DEMO_PASSWORD = "storefront"  # noqa: S105 - demo accounts, printed on purpose


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Bring the schema to the newest migration. A database made before the
    shop had migrations gets its missing tables, and is recorded as the first
    migration if it has the first migration's columns, or as the last one that
    changed the schema if it has every column, then upgraded from there."""
    if migrate.has_history(db.engine) or not _has_tables():
        migrate.run(command.upgrade, "head")
    else:
        for metadata in migrate.target_metadata():
            metadata.create_all(db.engine)
        missing = missing_columns()
        if set(missing) <= LATER_COLUMNS:
            # The data migrations after the schema's still have to run.
            migrate.run(command.stamp, LAST_SCHEMA if not missing else FIRST_REVISION)
            migrate.run(command.upgrade, "head")
        else:
            raise click.ClickException(
                "The database was made by an older version of the shop and lacks"
                f" {', '.join(missing)}. Recreate it (for the embedded default,"
                " delete the SQLite file in the instance folder) and run init-db"
                " again."
            )
    click.echo(f"Schema ready on {db.engine.url.render_as_string(hide_password=True)}.")


#: The migration that matches a schema made by ``create_all`` before there were
#: migrations.
FIRST_REVISION = "0001"
#: The newest migration that changes the schema: a database made by
#: ``create_all`` with every column is at this one (later ones change data).
LAST_SCHEMA = "0002"
#: The ``table.column`` names that migrations after the first one add.
LATER_COLUMNS = {"outbox_message.context", "flask_patterns_held_event.context"}


def _has_tables() -> bool:
    names = set(sa.inspect(db.engine).get_table_names())
    return bool(names & set(Base.metadata.tables))


def missing_columns() -> list[str]:
    """The ``table.column`` names the models have and the database lacks."""
    inspector = sa.inspect(db.engine)
    missing = []
    for table in (t for m in migrate.target_metadata() for t in m.sorted_tables):
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing += [
            f"{table.name}.{c.name}" for c in table.columns if c.name not in present
        ]
    return missing


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Load the demo products and users (existing ones are left alone)."""
    try:
        existing = set(db.session.scalars(sa.select(Product.slug)))
    except sa.exc.DBAPIError as error:
        raise click.ClickException(
            "Cannot read the products; create the schema first with"
            f" 'flask --app storefront init-db' ({error.orig})."
        ) from error
    added = 0
    for slug, name, description, price_cents, stock in DEMO_PRODUCTS:
        if slug in existing:
            continue
        db.session.add(
            Product(
                slug=slug,
                name=name,
                description=description,
                price_cents=price_cents,
                stock=stock,
            )
        )
        added += 1
    click.echo(f"Added {added} demo products ({len(existing)} were already there).")
    known = set(db.session.scalars(sa.select(User.email)))
    for email in [*DEMO_USERS, DEMO_STAFF]:
        if email not in known:
            db.session.add(
                User(
                    email=email,
                    password_hash=hash_password(DEMO_PASSWORD),
                    activated_at=dt.datetime.now(dt.timezone.utc),
                    is_staff=email == DEMO_STAFF,
                )
            )
    click.echo(
        f"Demo users: {', '.join(DEMO_USERS)}, and {DEMO_STAFF} (staff)"
        f" (password: {DEMO_PASSWORD})."
    )
