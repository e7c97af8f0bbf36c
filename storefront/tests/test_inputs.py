"""Input that would otherwise be a 500, or a way in: ids past the database's
range, control characters, addresses that cannot be mailed, yes/no settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import storefront
from storefront.security import MAX_ID

from .conftest import csrf_token
from .conftest import mail_bodies

TEMPLATES = Path(storefront.__file__).parent / "templates"


# Input that would otherwise be a 500


def int_routes(app):
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "<int:" in rule.rule and "GET" in rule.methods
    )


@pytest.mark.parametrize(
    "digits", [str(MAX_ID + 1), str(2**63), str(2**64 + 1), "9" * 5000]
)
def test_an_id_past_the_databases_range_is_a_404_on_every_route(app, client, digits):
    routes = int_routes(app)
    assert "/products/<int:product_id>" in routes
    assert "/api/products/<int:product_id>" in routes
    for route in routes:
        path = re.sub(r"<int:[a-z_]+>", digits, route)
        assert client.get(path).status_code == 404, path


def test_the_largest_id_is_still_looked_up(client):
    assert client.get(f"/api/products/{MAX_ID}").get_json()["detail"] == (
        f"There is no product {MAX_ID}."
    )


FORMS = [
    ("/signup", "/signup", {"email": "ada\x00@example.com"}),
    ("/login", "/login", {"email": "ada@example.com", "password": "pw\x00"}),
    ("/reset", "/reset", {"email": "\x07ada@example.com"}),
    ("/activate/resend", "/signup", {"email": "ada@example.com\x1b"}),
]


@pytest.fixture(params=["sqlite", "postgres"])
def any_database_app(request, app_factory):
    if request.param == "sqlite":
        return app_factory()
    url = request.getfixturevalue("postgres_url")
    return app_factory(
        DATABASE_URL=url.replace("postgresql://", "postgresql+psycopg://")
    )


@pytest.mark.parametrize(("path", "form_page", "fields"), FORMS)
def test_control_characters_in_a_form_answer_400_with_a_message(
    any_database_app, path, form_page, fields
):
    client = any_database_app.test_client()
    token = csrf_token(client, form_page)
    response = client.post(path, data={**fields, "csrf_token": token})
    assert response.status_code == 400
    assert "must not contain control characters" in response.get_data(as_text=True)
    assert mail_bodies(any_database_app) == []


def test_control_characters_in_the_query_answer_400(client):
    response = client.get("/login?next=/orders%00")
    assert response.status_code == 400
    assert "control characters (field &#39;next&#39;)" in response.text


def test_tabs_and_line_breaks_are_ordinary_input(app, client):
    token = csrf_token(client)
    response = client.post(
        "/signup", data={"email": "\tada@example.com\r\n", "csrf_token": token}
    )
    assert response.status_code == 303
    assert len(mail_bodies(app)) == 1


def test_a_huge_address_is_refused_at_once_by_every_form(app, client):
    huge = "a@" + "." * 100_000 + "@"
    for path, form_page in (
        ("/signup", "/signup"),
        ("/reset", "/reset"),
        ("/activate/resend", "/signup"),
    ):
        response = client.post(
            path, data={"email": huge, "csrf_token": csrf_token(client, form_page)}
        )
        follow = client.get(response.headers["Location"]) if response.location else None
        page = (follow or response).get_data(as_text=True)
        assert "Enter a valid e-mail address." in page, path
    assert mail_bodies(app) == []


@pytest.mark.parametrize(
    "address",
    [
        "ada@example",
        "@example.com",
        "ada@.com",
        "ada@example.",
        "a b@example.com",
        "ada@exa@mple.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_addresses_that_cannot_be_mailed_are_refused(app, client, address):
    response = client.post(
        "/signup", data={"email": address, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 400
    assert "Enter a valid e-mail address." in response.get_data(as_text=True)


def test_ids_in_other_scripts_digits_are_not_ids(shop_client):
    assert shop_client.get("/products/1").status_code == 200
    assert shop_client.get("/products/%D9%A1").status_code == 404
    assert shop_client.get("/api/products/%D9%A1").status_code == 404


@pytest.fixture
def shop_client(app, runner):
    runner.invoke(args=["demo"])
    return app.test_client()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("off", False),
        ("no", False),
        ("", False),
    ],
)
def test_dev_mailbox_takes_yes_or_no_words(monkeypatch, tmp_path, value, expected):
    from storefront import create_app

    monkeypatch.setenv("STOREFRONT_DEV_MAILBOX", value)
    app = create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    assert app.config["DEV_MAILBOX"] is expected
    app.test_cli_runner().invoke(args=["init-db"])
    status = app.test_client().get("/dev/mailbox").status_code
    assert status == (200 if expected else 404)


@pytest.mark.parametrize("value", ["maybe", "Flase", "2"])
def test_a_dev_mailbox_value_that_is_not_yes_or_no_stops_the_app(
    monkeypatch, tmp_path, value
):
    from storefront import create_app

    monkeypatch.setenv("STOREFRONT_DEV_MAILBOX", value)
    with pytest.raises(ValueError, match="STOREFRONT_DEV_MAILBOX"):
        create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
