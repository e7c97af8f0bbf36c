"""The shop attacked as an outsider, or misused as a confused customer would:
forged and stale sessions, odd form bodies, addresses written several ways,
redirects off the site, hostile text on the staff and live pages."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa

from storefront.extensions import db
from storefront.logins import SESSION_KEY
from storefront.models import LoginSession
from storefront.models import Product
from storefront.models import SentMail
from storefront.models import User

from .conftest import add_user
from .conftest import copy_of
from .conftest import csrf_token
from .conftest import log_in_as

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture
def app(app_factory):
    """The shop with one product, answering unhandled exceptions as in
    production rather than raising them into the test."""
    app = app_factory(PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        db.session.add(Product(slug="mug", name="Mug", price_cents=900, stock=5))
    return app


def log_in(client, email="ada@example.com", password="storefront", **form):
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    return client.post("/login", data={**data, **form})


def logged_in(client):
    return client.get("/api/orders").status_code == 200


def headings(response):
    return re.findall(r"<h1>([^<]*)</h1>", response.get_data(as_text=True))


def users(app):
    with db.engine_for(app).connect() as connection:
        return list(connection.scalars(sa.select(User.email).order_by(User.id)))


def fullwidth(text):
    """``text`` in fullwidth letters (U+FF41 for "a"), which IDNA maps back."""
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


def mails(app):
    with db.engine_for(app).connect() as connection:
        rows = connection.execute(sa.select(SentMail.recipient, SentMail.subject))
        return [tuple(row) for row in rows]


# Sessions.


def test_a_login_over_another_ends_the_login_it_replaces(app):
    add_user(app, "ada@example.com")
    add_user(app, "bob@example.com")
    shared = app.test_client()
    log_in(shared, "ada@example.com")
    adas_copy = copy_of(app, shared)
    log_in(shared, "bob@example.com")
    assert logged_in(shared)
    assert not logged_in(adas_copy), "Ada's login ended when Bob's replaced it"
    with db.engine_for(app).connect() as connection:
        left = connection.scalar(sa.select(sa.func.count()).select_from(LoginSession))
    assert left == 1


@pytest.mark.parametrize("value", [1, ["token"], {"id": 1}, 2.5])
def test_a_session_with_a_login_of_another_shape_is_anonymous(app, value):
    user_id = add_user(app, "ada@example.com")
    client = app.test_client()
    with client.session_transaction() as session:
        session[SESSION_KEY] = value if value != 1 else user_id
    assert client.get("/orders").headers["Location"] == "/login?next=%2Forders"
    assert client.get("/api/orders").status_code == 401
    assert "Log in" in client.get("/").get_data(as_text=True)


def test_neither_a_remember_cookie_nor_an_old_login_key_logs_anyone_in(app):
    from flask_login.utils import encode_cookie

    user_id = add_user(app, "ada@example.com")
    client = app.test_client()
    with app.test_request_context():
        signed = encode_cookie(str(user_id))
    for cookie in [f"{user_id}|forged", signed]:
        client.set_cookie("remember_token", cookie)
        assert not logged_in(client)
    client = app.test_client()
    with client.session_transaction() as session:
        session["login"] = "a token of the login before Flask-Login"
    assert not logged_in(client)
    log_in(client)
    assert "remember_token" not in str(client.get("/orders").headers)


def test_a_form_sent_after_the_login_ended_elsewhere_returns_to_its_page(app):
    add_user(app, "ada@example.com")
    client = app.test_client()
    log_in(client)
    page = "http://localhost/products/1"
    token = csrf_token(client, "/products/1")
    with app.app_context():  # "log out everywhere", from another browser
        db.session.execute(sa.delete(LoginSession))
    buy = {"csrf_token": token, "purchase_key": "a-purchase-key"}
    response = client.post("/products/1/purchase", data=buy, headers={"Referer": page})
    assert response.headers["Location"] == "/login?next=%2Fproducts%2F1"
    again = log_in(client, next="/products/1")
    assert again.headers["Location"] == "/products/1"
    assert "Buy now" in client.get("/products/1").get_data(as_text=True)
    token = csrf_token(client, "/account")
    with app.app_context():
        db.session.execute(sa.delete(LoginSession))
    response = client.post("/account/name", data={"csrf_token": token})
    assert response.headers["Location"] == "/login", "no page to go back to"


# Odd form bodies.


def test_a_file_where_text_is_expected_is_read_as_a_missing_field(app, client):
    token = csrf_token(client)
    response = client.post(
        "/signup",
        data={"email": (io.BytesIO(b"ada@example.com"), "a.txt"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Enter a valid e-mail address." in response.get_data(as_text=True)
    assert users(app) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/login", {"email": 5, "password": "storefront"}),
        ("/login", {"email": "ada@example.com", "password": "storefront"}),
        ("/signup", [1, 2]),
        ("/reset", "ada@example.com"),
    ],
)
def test_a_json_body_is_not_a_form(app, client, path, body):
    add_user(app, "ada@example.com")
    response = client.post(path, json=body, headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 400
    assert "Enter a valid e-mail address." in response.get_data(as_text=True)
    assert not logged_in(client)


def test_a_form_body_that_is_not_utf8_is_refused_saying_so(app, client):
    body = b"email=ada\xff@example.com&csrf_token=" + csrf_token(client).encode()
    response = client.post(
        "/signup", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The form could not be read: its fields must be UTF-8 text." in page
    assert "This form has expired" not in page


# Addresses.


def test_one_mailbox_is_one_account_however_its_domain_is_written(app):
    client = app.test_client()
    spellings = [
        "ada@xn--bcher-kva.example",
        "ADA@BÜCHER.example",
        f"ada@{fullwidth('b')}ü{fullwidth('cher')}.example",
        "a\u0064a@bu\u0308cher.example",  # ü as u and a combining diaeresis
    ]
    for address in spellings:
        response = client.post(
            "/signup", data={"email": address, "csrf_token": csrf_token(client)}
        )
        assert response.headers["Location"] == "/login", address
    assert users(app) == ["ada@xn--bcher-kva.example"]
    assert {recipient for recipient, _ in mails(app)} == {"ada@xn--bcher-kva.example"}


def test_the_mail_limit_counts_every_spelling_of_an_address_as_one(app):
    add_user(app, "ada@example.com")
    client = app.test_client()
    for index in range(6):
        domain = fullwidth("example"[:index]) + "example"[index:]
        response = client.post(
            "/reset",
            data={"email": f"Ada@{domain}.com", "csrf_token": csrf_token(client)},
        )
        assert response.status_code == (303 if index < 5 else 429), domain
    assert {recipient for recipient, _ in mails(app)} == {"ada@example.com"}


# Redirects.

OFF_SITE = [
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "https:evil.example",
    "http://evil.example",
    "///evil.example",
    "/.//evil.example",
    "/%09/evil.example",
    "http://localhost@evil.example",
    "javascript:alert(1)",
    "/%0d%0aSet-Cookie:%20a=b",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_no_next_leads_off_the_site_before_or_after_the_login(app, target):
    add_user(app, "ada@example.com")
    client = app.test_client()
    response = log_in(client, next=target)
    assert (response.status_code, response.headers["Location"]) == (303, "/")
    query = {"next": target}
    response = client.get("/login", query_string=query)
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    logout = {"csrf_token": csrf_token(client, "/"), "next": target}
    response = client.post("/logout", query_string=query, data=logout)
    assert response.headers["Location"] == "/"


# Staff.


def test_the_staff_page_shows_hostile_mail_fields_as_text(app):
    from flask_patterns.outbox import outbox_table
    from storefront.extensions import outbox

    app.config["DEV_MAILBOX"] = False
    mail = {"recipient": f"{HOSTILE}@x.example", "subject": HOSTILE, "body": "b"}
    with app.test_request_context(), db.transaction():
        outbox.add("mail", mail)
    with db.engine_for(app).begin() as connection:
        connection.execute(outbox_table.update().values(last_error=HOSTILE))
    client = app.test_client()
    log_in_as(app, client, add_user(app, "staff@example.com", is_staff=True))
    page = client.get("/staff").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "<script>alert" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 3


def test_a_retry_key_that_is_no_outbox_key_reaches_no_query(app_factory, postgres_url):
    app = app_factory(DATABASE_URL=postgres_url, PROPAGATE_EXCEPTIONS=False)
    client = app.test_client()
    log_in_as(app, client, add_user(app, "staff@example.com", is_staff=True))
    token = csrf_token(client, "/staff")
    for key in ["%00", "x'%20OR%201=1--", "%C3%A9" * 36]:
        response = client.post(f"/staff/outbox/{key}/retry", data={"csrf_token": token})
        assert response.status_code == 303, key
        assert "nothing to retry" in client.get("/staff").get_data(as_text=True)


# The live page.


def test_the_live_page_carries_on_after_redis_restarts_and_shows_hostile_text(
    app_factory, live_server, redis_process, chromium
):
    """Redis restarted empty: the first event after it, which tells the open
    stream that the history is new, must reach the page too."""
    from storefront.extensions import streams

    app = app_factory(REDIS_URL=redis_process.url)
    with app.app_context():
        broker = streams.broker
    broker.publish("activity", {"text": HOSTILE})
    page = chromium.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(f"{live_server(app).url}/activity")
        page.wait_for_selector("#status:has-text('Live')")
        broker.publish("activity", {"text": HOSTILE, "at": '"><script>alert(3)'})
        # A selector, not wait_for_function: its polling evaluates a string,
        # which the page's CSP (no 'unsafe-eval') refuses.
        page.wait_for_selector("#feed li:nth-child(2)")
        assert page.locator("#feed li").count() == 2
        redis_process.kill()
        redis_process.start(empty=True)
        broker.publish("activity", {"text": HOSTILE})
        broker.publish("activity", {"text": "back again"})
        page.wait_for_selector("#feed li:has-text('back again')", timeout=20000)
        assert page.locator("#feed li .text").all_inner_texts() == [
            "back again",
            HOSTILE,
        ], "the history Redis has now, once"
        status = "Live (some older events are no longer available)"
        page.wait_for_selector(f"#status:has-text('{status}')")
        broker.publish("activity", {"text": "and on"})
        page.wait_for_selector("#feed li:has-text('and on')")
        assert page.locator("#feed img, #feed script").count() == 0
        assert dialogs == []
    finally:
        page.close()
        broker.close()
