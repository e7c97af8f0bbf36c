"""Error answers: a page in the shop's layout for pages, an RFC 9457
``application/problem+json`` document under ``/api/``, the exception's headers
kept, and nothing of a 500's internals shown."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa
from flask import abort

from storefront.errors import SERVER_ERROR_DETAIL
from storefront.extensions import db
from storefront.models import Product

from .conftest import add_user
from .conftest import csrf_token
from .conftest import log_in_as

SECRET = "connection to 10.0.0.7 refused for user shop_admin"
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
MIB = 1 << 20


def boom() -> str:
    """A view whose bug the visitor must not see."""
    raise RuntimeError(SECRET)


def forbidden() -> str:
    """A view this visitor may not open."""
    abort(403)


def conflict() -> str:
    """A view whose change clashed with another."""
    abort(409, "The cart changed in another tab.")


def too_many() -> str:
    """A view refusing for a while, saying how long."""
    abort(429, retry_after=90)


@pytest.fixture
def app(app_factory):
    """The shop, with views that fail in each way, and unhandled exceptions
    answered as in production rather than raised into the test."""
    app = app_factory(PROPAGATE_EXCEPTIONS=False)
    app.add_url_rule("/boom", view_func=boom)
    app.add_url_rule("/api/boom", "api_boom", view_func=boom)
    app.add_url_rule("/forbidden", view_func=forbidden)
    app.add_url_rule("/conflict", view_func=conflict)
    app.add_url_rule("/slow-down", view_func=too_many)
    return app


def page_of(response, status):
    """The HTML of an error page, after the checks every error page passes."""
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "private, no-store"
    html = response.get_data(as_text=True)
    assert VIEWPORT in html
    assert 'href="/activity"' in html, "the navigation is there"
    assert f"Error {status}" in html
    assert '<a href="/">Back to the home page</a>' in html
    return html


def plain_page_of(response, status):
    """The HTML of the plain error page, sent when the layout cannot be."""
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert VIEWPORT in html
    return html


def problem_of(response, status):
    """The problem document of an API error, after the checks every one passes."""
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["type"] == "about:blank"
    assert problem["status"] == status
    return problem


def text_of(html):
    """The words of a page, its tags and line breaks gone."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# Pages.


def test_an_unknown_page_is_a_404_page_pointing_to_the_products(client):
    html = page_of(client.get("/no-such-page"), 404)
    assert "<title>Page not found · Storefront</title>" in html
    assert "There is nothing at this address" in text_of(html)
    assert '<a href="/">Browse the products</a>' in html


def test_a_bad_field_is_a_400_page_naming_the_field(client):
    html = page_of(client.get("/?q=a%00b"), 400)
    assert "Something in the request was wrong" in html
    assert "check what you entered and try again" in text_of(html)
    assert "must not contain control characters (field &#39;q&#39;)" in html


def test_a_form_without_its_csrf_token_explains_what_to_do(client):
    response = client.post("/login", data={"email": "ada@example.com"})
    html = page_of(response, 400)
    words = text_of(html)
    assert "This form has expired" in words
    assert "are cookies turned off for this site?" in words
    assert "Go back, reload the page and submit the form again." in words
    assert "CSRF" not in words, "no jargon"


def test_a_form_whose_session_cookie_was_lost_explains_what_to_do(app, client):
    token = csrf_token(client, "/login")
    other = app.test_client()  # the same token, without the cookie it belongs to
    response = other.post("/login", data={"email": "a@b.test", "csrf_token": token})
    html = page_of(response, 400)
    assert "This form has expired" in html
    assert "CSRF" not in text_of(html), "no jargon"


def test_a_forbidden_page_is_a_403_page(client):
    html = page_of(client.get("/forbidden"), 403)
    assert "You may not open this page" in html
    assert "Your account does not have access to this." in text_of(html)


def test_a_wrong_method_is_a_405_page_that_keeps_allow(client):
    response = client.get("/logout")
    html = page_of(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert "This page cannot be used this way" in html
    assert "does not answer a GET request: it takes POST," in text_of(html)


def test_a_conflict_is_a_409_page_with_the_apps_reason(client):
    html = page_of(client.get("/conflict"), 409)
    assert "Reload the page to see how things are now" in text_of(html)
    assert "The cart changed in another tab." in html


def test_a_form_over_the_limit_is_a_413_page(client):
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": "x" * MIB, "csrf_token": token})
    html = page_of(response, 413)
    words = text_of(html)
    assert "That was too much to send" in words
    assert "The form or upload was larger than the shop accepts" in words
    assert "over the limit of 1048576 bytes (1 MiB)." in words


def test_too_many_logins_are_a_429_page_saying_when_to_try_again(client):
    token = csrf_token(client, "/login")
    form = {"email": "ada@example.com", "password": "guess", "csrf_token": token}
    statuses = [client.post("/login", data=form).status_code for _ in range(10)]
    assert 429 not in statuses
    response = client.post("/login", data=form)
    html = page_of(response, 429)
    seconds = int(response.headers["Retry-After"])
    # A one-minute window; Flask-Limiter's reset time rounds up by a second.
    assert 1 <= seconds <= 61
    words = text_of(html)
    assert "Too many attempts" in words
    assert re.search(r"Please try again in \d+ seconds?\.", words), words
    assert "The limit is 10 per 1 minute." in words


def test_a_retry_after_the_exception_carries_is_kept_and_said(client):
    response = client.get("/slow-down")
    html = page_of(response, 429)
    assert response.headers["Retry-After"] == "90"
    assert "Please try again in 90 seconds." in text_of(html)


def test_a_500_page_says_it_was_logged_and_shows_nothing_inside(client, caplog):
    response = client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    html = page_of(response, 500)
    assert "Something went wrong on our side" in html
    assert "The error was logged. Please try again in a moment." in html
    assert "<code>req-boom-1</code>" in html, "the reference to quote"
    assert SECRET not in html
    assert "RuntimeError" not in html
    assert "Traceback" not in html
    logged = [
        r for r in caplog.records if r.exc_info and r.exc_info[1].args == (SECRET,)
    ]
    assert len(logged) == 1, "Flask logged it, once"


def test_an_abort_500_is_logged_too(app, client, caplog):
    app.add_url_rule("/abort", view_func=lambda: abort(500, "the ledger is locked"))
    html = page_of(client.get("/abort"), 500)
    assert "the ledger is locked" not in html
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "500 answered: the ledger is locked"
    ]


def test_the_500_page_renders_when_the_database_is_broken(app, client):
    Product.__table__.drop(db.engine_for(app))
    html = page_of(client.get("/"), 500)
    assert "The error was logged." in html
    assert "no such table" not in html


def test_a_plain_500_page_when_the_layout_itself_fails(app, client, caplog):
    # As a template context that loads the user from the database would.
    app.context_processor(lambda: {"products": db.session.scalars(sa.select(Product))})
    Product.__table__.drop(db.engine_for(app))
    html = plain_page_of(client.get("/"), 500)
    assert "Something went wrong on our side" in html
    assert '<a href="/">Back to the home page</a>' in html
    assert "no such table" not in html
    assert "The 500 error page could not be rendered" in caplog.text


def test_an_untrusted_host_gets_a_plain_400_page_and_no_alarm(client, caplog):
    html = plain_page_of(client.get("/", headers={"Host": "evil.test"}), 400)
    assert "Something in the request was wrong" in html
    assert "Host &#39;evil.test&#39; is not trusted." in html
    assert "could not be rendered" not in caplog.text


def test_a_page_asked_for_as_json_is_still_html(client):
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert "Page not found" in page_of(response, 404)


# The API.


def test_an_unknown_api_address_is_a_problem_document(client):
    problem = problem_of(client.get("/api/nope"), 404)
    assert problem["title"] == "Not Found"
    assert problem["detail"].startswith("The requested URL was not found")


def test_an_unknown_product_is_a_problem_document_with_the_apps_words(client):
    problem = problem_of(client.get("/api/products/999"), 404)
    assert problem == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "There is no product 999.",
    }


def test_a_wrong_method_on_the_api_keeps_allow(client):
    response = client.delete("/api/products")
    problem = problem_of(response, 405)
    assert problem["title"] == "Method Not Allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_a_body_over_the_limit_on_the_api_is_a_413_document(app, client):
    log_in_as(app, client, add_user(app, "ada@shop.test"))
    response = client.post(
        "/api/products/1/purchase",
        data={"note": "x" * MIB},
    )
    problem = problem_of(response, 413)
    assert problem["title"] == "Request Entity Too Large"
    assert problem["detail"] == (
        "The request body is over the limit of 1048576 bytes (1 MiB)."
    )


def test_a_missing_csrf_token_on_the_api_is_a_400_document(app, client):
    log_in_as(app, client, add_user(app, "ada@shop.test"))
    problem = problem_of(client.post("/api/products/1/purchase"), 400)
    assert problem["title"] == "Bad Request"
    assert problem["detail"] == "The CSRF token is missing."


def test_a_login_required_is_a_401_document(client):
    problem = problem_of(client.get("/api/orders"), 401)
    assert problem["detail"] == "Log in first."


def test_a_500_on_the_api_shows_nothing_inside(client, caplog):
    response = client.get("/api/boom")
    problem = problem_of(response, 500)
    assert problem["title"] == "Internal Server Error"
    assert problem["detail"] == SERVER_ERROR_DETAIL
    assert SECRET not in response.get_data(as_text=True)
    assert SECRET in caplog.text, "the log has it"


def test_the_api_asked_for_html_still_answers_a_problem_document(client):
    response = client.get("/api/nope", headers={"Accept": "text/html"})
    problem_of(response, 404)


def test_the_mail_limit_says_its_own_message_and_when_in_plain_words(app):
    from .conftest import csrf_token as token_of

    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    for n in range(6):
        client = app.test_client()
        response = client.post(
            "/reset",
            data={"email": "ada@example.com", "csrf_token": token_of(client, "/reset")},
            environ_base={"REMOTE_ADDR": f"192.0.2.{n + 1}"},
        )
    words = text_of(page_of(response, 429))
    assert "Too many mails to this address; try again in an hour." in words
    assert "Please try again in 60 minutes." in words, words


# The database away.


@pytest.fixture
def shop_on_postgres(app_factory, postgres_url, postgres_relay):
    """The shop on PostgreSQL through a relay the test can cut."""
    url = sa.make_url(postgres_url).set(host="127.0.0.1", port=postgres_relay.port)
    return app_factory(
        DATABASE_URL=url.render_as_string(hide_password=False),
        PROPAGATE_EXCEPTIONS=False,
    )


def test_a_database_that_cannot_be_reached_is_a_503_to_try_again(
    shop_on_postgres, postgres_relay, caplog
):
    client = shop_on_postgres.test_client()
    assert client.get("/").status_code == 200
    postgres_relay.cut()
    response = client.get("/")
    html = page_of(response, 503)
    assert response.headers["Retry-After"] == "30"
    assert "The shop is unavailable for a moment" in html
    assert "nothing was done. Please try again in 30 seconds." in text_of(html)
    assert "127.0.0.1" not in html, "nothing of the connection is shown"
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged[0].getMessage().startswith("The database is unavailable: ")
    assert logged[0].exc_info is not None
    problem = problem_of(client.get("/api/products/1"), 503)
    assert problem["detail"].startswith("The shop cannot reach its data right now")
    postgres_relay.restore()
    assert client.get("/").status_code == 200


def test_another_database_error_is_still_a_500(shop_on_postgres, caplog):
    with db.engine_for(shop_on_postgres).begin() as connection:
        connection.execute(sa.text("DROP TABLE product CASCADE"))
    html = page_of(shop_on_postgres.test_client().get("/"), 500)
    assert "The error was logged." in html
    assert "Exception on / [GET]" in caplog.text
