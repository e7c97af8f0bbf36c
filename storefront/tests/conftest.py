from __future__ import annotations

import re
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner

from storefront import create_app
from storefront.extensions import db
from storefront.migrate import target_metadata

#: The CSRF token of a form in a page: ``CSRF.search(page)[1]``.
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def make_app(tmp_path: t.Any, **config: t.Any) -> Flask:
    settings: dict[str, t.Any] = {
        "TESTING": True,
        "SECRET_KEY": "test secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite'}",
        "REDIS_URL": None,
        # Most tests read mail from the development mailbox; the tests of the
        # shipped default turn it off.
        "DEV_MAILBOX": True,
        # A build left in the instance folder must not switch tests to it.
        "PATTERNS_ASSETS_ROOT": str(tmp_path / "assets"),
    }
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        for metadata in target_metadata():
            metadata.create_all(db.engine)
    return app


@pytest.fixture
def app_factory(tmp_path: t.Any) -> t.Iterator[t.Callable[..., Flask]]:
    """Build apps on this test's SQLite file (with the schema), override any setting
    with keyword arguments; their pools are closed after the test."""
    apps: list[Flask] = []

    def factory(**config: t.Any) -> Flask:
        apps.append(make_app(tmp_path, **config))
        return apps[-1]

    yield factory
    for app in apps:
        db.engine_for(app).dispose()


@pytest.fixture
def app(app_factory: t.Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def csrf_token(client: FlaskClient, path: str = "/signup") -> str:
    """The CSRF token of the form on ``path``."""
    page = client.get(path).get_data(as_text=True)
    found = CSRF.search(page)
    assert found is not None, f"no form with a CSRF token on {path}"
    return found[1]


def mail_bodies(app: Flask) -> list[str]:
    """The bodies of the mail delivered to the development mailbox."""
    import sqlalchemy as sa

    from storefront.models import SentMail

    with db.engine_for(app).connect() as connection:
        return list(connection.scalars(sa.select(SentMail.body)))


def add_user(app: Flask, email: str, **fields: t.Any) -> int:
    """An active user (password ``storefront``); returns its id."""
    import datetime as dt

    from storefront.models import User
    from storefront.passwords import hash_password

    with app.app_context():
        user = User(
            email=email,
            password_hash=hash_password("storefront"),
            activated_at=dt.datetime.now(dt.timezone.utc),
            **fields,
        )
        db.session.add(user)
        db.session.flush()
        return user.id


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another client holding a copy of ``client``'s session cookie, as a
    thief with the cookie would."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None, "the client has no session cookie to copy"
    thief.set_cookie("session", cookie.value)
    return thief


def log_in_as(app: Flask, client: FlaskClient, user_id: int, **request: t.Any) -> None:
    """Give ``client`` a live login session of the user, without the form."""
    from storefront.logins import create_login_session
    from storefront.logins import SESSION_KEY
    from storefront.models import User

    with app.app_context():
        token = create_login_session(db.session.get(User, user_id))
    with client.session_transaction(**request) as session:
        session[SESSION_KEY] = token


@pytest.fixture(scope="session")
def axe() -> str:
    """The axe-core source, installed from the npm registry into the
    repository's ``.cache/`` the first time (fails in CI without npm)."""
    import pathlib
    import shutil
    import subprocess

    from conftest import service_missing

    from .browsing import axe_script

    try:
        return axe_script(pathlib.Path(__file__).parents[2] / ".cache")
    except (RuntimeError, subprocess.CalledProcessError) as error:
        reason = "npm is not installed" if shutil.which("npm") is None else error
        service_missing(f"axe-core cannot be installed: {reason}")


@pytest.fixture(scope="session")
def topology(
    tmp_path_factory: t.Any,
    postgres_server: str,
    redis_server: str,
    nginx: str,
    port_factory: t.Callable[[], int],
) -> t.Iterator[t.Any]:
    """The shipped topology (``deploy/up.py``, as ``make up`` runs it), shared by
    every test that drives it through nginx."""
    from .deployment import start_topology
    from .deployment import stop_topology

    running = start_topology(
        tmp_path_factory.mktemp("topology"), postgres_server, redis_server, port_factory
    )
    yield running
    stop_topology(running, postgres_server)
