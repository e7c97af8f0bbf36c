"""Where each form leads: post/redirect/get for every outcome, and sensible
pages after logging in and out."""

from __future__ import annotations

import html
import re
import urllib.parse

import sqlalchemy as sa

from storefront.extensions import db
from storefront.models import Product

from .conftest import add_user
from .conftest import csrf_token
from .conftest import log_in_as

PASSWORD = "storefront"


def log_in(client, next_url="", referer=None):
    headers = {"Referer": referer} if referer else {}
    return client.post(
        "/login",
        data={
            "email": "ada@example.com",
            "password": PASSWORD,
            "next": next_url,
            "csrf_token": csrf_token(client, "/signup"),
        },
        headers=headers,
    )


def test_someone_logged_in_does_not_see_the_login_form(app, client):
    log_in_as(app, client, add_user(app, "ada@example.com"))
    assert client.get("/login").headers["Location"] == "/"
    assert client.get("/login?next=/orders").headers["Location"] == "/orders"
    assert client.get("/login?next=//evil.example").headers["Location"] == "/"


def test_a_rejected_next_lands_on_the_products_not_the_login_form(app, client):
    add_user(app, "ada@example.com")
    form = "http://127.0.0.1:5000/login?next=//evil.example"
    response = log_in(client, "//evil.example", referer=form)
    assert (response.status_code, response.headers["Location"]) == (303, "/")
    assert "Welcome back." in client.get("/").get_data(as_text=True)


def test_a_safe_next_is_followed_after_the_login(app, client):
    add_user(app, "ada@example.com")
    start = client.get("/orders")
    assert start.headers["Location"] == "/login?next=%2Forders"
    page = client.get(start.headers["Location"]).get_data(as_text=True)
    assert "Log in to see that page." in page
    assert log_in(client, "/orders").headers["Location"] == "/orders"


def test_logging_out_from_a_page_that_needs_the_login_lands_on_the_products(
    app, client
):
    log_in_as(app, client, add_user(app, "ada@example.com"))
    response = client.post(
        "/logout",
        data={"csrf_token": csrf_token(client, "/orders")},
        headers={"Referer": "http://127.0.0.1:5000/orders"},
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/")
    assert "You are logged out." in client.get("/").get_data(as_text=True)


def test_a_failed_form_is_shown_again_at_its_own_address_with_the_message(client):
    response = client.post(
        "/signup", data={"email": "not an address", "csrf_token": csrf_token(client)}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'aria-invalid="true"' in page
    assert 'aria-describedby="email-error"' in page
    assert '<p class="field-error" id="email-error">Enter a valid e-mail address.' in (
        page
    )
    assert 'value="not an address"' in page, "what was typed stays"


def test_a_sold_out_purchase_redirects_so_a_reload_buys_nothing(app, client, runner):
    runner.invoke(args=["demo"])
    log_in_as(app, client, add_user(app, "new@example.com"))
    with app.app_context():
        tin = db.session.scalar(sa.select(Product.id).where(Product.slug == "bean-tin"))
    response = client.post(
        f"/products/{tin}/purchase",
        data={"csrf_token": csrf_token(client, f"/products/{tin}")},
    )
    assert (response.status_code, response.headers["Location"]) == (
        303,
        f"/products/{tin}",
    )
    page = client.get(f"/products/{tin}").get_data(as_text=True)
    assert "Sorry, Bean tin is sold out." in page
    assert '<p class="stock out">Sold out</p>' in page, "in red, as on the list"


def nav_login_link(page):
    """Where the header's "Log in" link of ``page`` leads."""
    found = re.search(r'<a href="([^"]*)">Log in</a>', page)
    assert found is not None, "no Log in link in the header"
    return html.unescape(found[1])


def next_of(link):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).get("next")


def test_the_header_login_link_comes_back_to_the_page_it_was_on(client):
    page = client.get("/activity").get_data(as_text=True)
    assert next_of(nav_login_link(page)) == ["/activity"], "no stray '?'"
    page = client.get("/activity?x=1").get_data(as_text=True)
    assert next_of(nav_login_link(page)) == ["/activity?x=1"]


def test_the_login_link_of_an_expired_form_does_not_lead_back_to_its_post(app, client):
    add_user(app, "ada@example.com")
    # The session cookie is gone: the form's token no longer matches.
    expired = client.post("/account/name", data={"display_name": "Ada"})
    page = expired.get_data(as_text=True)
    assert expired.status_code == 400
    assert "This form has expired" in page
    link = nav_login_link(page)
    assert next_of(link) is None, "/account/name only takes a POST"
    login_page = client.get(link).get_data(as_text=True)
    next_field = re.search(r'name="next"[^>]*value="([^"]*)"', login_page)
    response = log_in(client, next_field[1] if next_field else "")
    assert (response.status_code, response.headers["Location"]) == (303, "/")


def test_an_empty_current_password_is_asked_for_not_called_wrong(app, client):
    log_in_as(app, client, add_user(app, "ada@example.com"))
    response = client.post(
        "/account/password",
        data={
            "current": "",
            "password": "a new password",
            "csrf_token": csrf_token(client, "/account"),
        },
    )
    assert response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "Enter your current password." in page
    assert "is wrong" not in page
