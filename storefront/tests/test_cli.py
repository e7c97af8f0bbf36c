from __future__ import annotations

import sqlalchemy as sa

from storefront.cli import DEMO_PRODUCTS
from storefront.extensions import db
from storefront.models import Product


def product_count(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(Product))


def test_init_db_creates_the_schema(app_factory, tmp_path):
    app = app_factory(DATABASE_URL=f"sqlite:///{tmp_path}/fresh.sqlite")
    with db.engine_for(app).begin() as connection:
        connection.exec_driver_sql("DROP TABLE product")
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "Schema ready" in result.output
    assert product_count(app) == 0


def test_demo_loads_products_once(app, runner):
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    assert product_count(app) == len(DEMO_PRODUCTS)
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0
    assert "Added 0 demo products" in second.output
    assert product_count(app) == len(DEMO_PRODUCTS)


def test_demo_before_init_db_explains_what_to_do(tmp_path):
    from storefront import create_app

    app = create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/e.db"})
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 1
    assert "init-db" in result.output
    assert "Traceback" not in result.output


def test_init_db_on_a_database_of_an_older_version_says_what_to_do(app_factory):
    app = app_factory()
    with db.engine_for(app).begin() as connection:
        connection.exec_driver_sql("ALTER TABLE user_account DROP COLUMN display_name")
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 1
    assert "older version of the shop" in result.output
    assert "user_account.display_name" in result.output
    assert "Traceback" not in result.output


def test_demo_includes_one_staff_user(app, runner):
    from storefront.models import User

    runner.invoke(args=["demo"])
    with db.engine_for(app).connect() as connection:
        staff = connection.scalars(sa.select(User.email).where(User.is_staff)).all()
    assert staff == ["staff@example.com"]
