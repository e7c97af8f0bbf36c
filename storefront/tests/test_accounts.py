"""Account flows end to end through the test client: sign up, activation mail,
activation link where the password is chosen, log in with ?next=, log out,
password reset."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from storefront.extensions import db
from storefront.models import SentMail
from storefront.models import User

from .conftest import CSRF

PUBLIC = "http://127.0.0.1:5000"
_LINK = re.compile(re.escape(PUBLIC) + r"(/\S+)")


def csrf_token(client, path="/signup"):
    return CSRF.search(client.get(path).get_data(as_text=True))[1]


def post(client, path, data, *, form_page=None):
    token = csrf_token(client, form_page or path)
    return client.post(path, data={**data, "csrf_token": token})


def mails(app):
    with db.engine_for(app).connect() as connection:
        rows = connection.execute(sa.select(SentMail).order_by(SentMail.id)).all()
    return [(row.recipient, row.subject, row.body) for row in rows]


def link_in(mail):
    return _LINK.search(mail[2])[1]


def user(app, email):
    with db.engine_for(app).connect() as connection:
        return connection.execute(sa.select(User).where(User.email == email)).first()


def sign_up(client, email="ada@example.com"):
    return post(client, "/signup", {"email": email})


def activation_link(app, email="ada@example.com"):
    return link_in(next(m for m in reversed(mails(app)) if "Activate" in m[1]))


def activate(app, client, email="ada@example.com", password="correct horse"):
    sign_up(client, email)
    link = activation_link(app, email)
    return post(client, link, {"password": password}, form_page=link)


def log_in(client, email="ada@example.com", password="correct horse", next_url=""):
    return post(
        client,
        "/login",
        {"email": email, "password": password, "next": next_url},
        form_page="/signup",  # /login redirects someone logged in already
    )


def test_sign_up_sends_an_activation_mail_after_the_commit(app, client):
    response = sign_up(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    (mail,) = mails(app)
    assert mail[0] == "ada@example.com"
    assert mail[1] == "Activate your Storefront account"
    assert "/activate/" in link_in(mail)
    account = user(app, "ada@example.com")
    assert account.activated_at is None
    assert account.password_hash is None


def test_the_activation_page_sets_the_password_and_logs_in(app, client):
    sign_up(client)
    link = activation_link(app)
    page = client.get(link)
    assert page.status_code == 200
    assert "Choose your password" in page.get_data(as_text=True)
    assert user(app, "ada@example.com").activated_at is None, "GET changes nothing"
    response = post(client, link, {"password": "correct horse"}, form_page=link)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert user(app, "ada@example.com").activated_at is not None
    assert "Your orders" in client.get("/orders").get_data(as_text=True)


def test_a_short_password_on_the_activation_page_activates_nothing(app, client):
    sign_up(client)
    link = activation_link(app)
    response = post(client, link, {"password": "short"}, form_page=link)
    assert response.status_code == 400
    assert "at least 8" in response.get_data(as_text=True)
    assert user(app, "ada@example.com").activated_at is None


def test_sign_up_with_a_bad_address_creates_nothing(app, client):
    response = sign_up(client, "not-an-email")
    assert response.status_code == 400
    assert "valid e-mail" in response.get_data(as_text=True)
    assert mails(app) == []
    assert user(app, "not-an-email") is None


def test_sign_up_for_an_active_account_mails_the_owner_instead(app, client):
    activate(app, client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    again = sign_up(client)
    assert again.headers["Location"] == "/login"
    assert [subject for _, subject, _ in mails(app)] == [
        "Activate your Storefront account",
        "You already have a Storefront account",
    ]


def test_activation_link_works_once(app, client):
    response = activate(app, client)
    assert response.status_code == 303
    link = activation_link(app)
    again = client.get(link)
    assert again.status_code == 400
    page = again.get_data(as_text=True)
    assert "does not work" in page
    assert "Send a new activation link" in page
    # The activation logged this browser in: it is not told to log in.
    assert "You are logged in as\nada@example.com, so that account is active" in page
    assert "just\n<a" not in page

    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    page = client.get(link).get_data(as_text=True)
    assert 'If your account is active, just\n<a href="/login">log in</a>' in page


USERNAME_FIELD = (
    '<input type="email" value="ada@example.com" autocomplete="username"'
    " hidden readonly>"
)


def test_pages_that_set_a_password_name_the_account_for_password_managers(app, client):
    sign_up(client)
    choose = client.get(activation_link(app)).get_data(as_text=True)
    assert USERNAME_FIELD in choose
    activate(app, client)
    account = client.get("/account").get_data(as_text=True)
    assert USERNAME_FIELD in account
    assert account.count('autocomplete="username"') == 1, "the password form only"
    post(client, "/reset", {"email": "ada@example.com"}, form_page="/reset")
    reset_link = link_in(next(m for m in reversed(mails(app)) if "/reset/" in m[2]))
    assert USERNAME_FIELD in client.get(reset_link).get_data(as_text=True)


def test_expired_activation_link_offers_a_new_one(app, client, monkeypatch):
    sign_up(client)
    link = activation_link(app)
    later = time.time() + app.config["ACTIVATION_MAX_AGE"] + 60
    monkeypatch.setattr(time, "time", lambda: later)
    response = client.get(link)
    assert response.status_code == 400
    assert "has expired" in response.get_data(as_text=True)
    assert user(app, "ada@example.com").activated_at is None

    monkeypatch.undo()
    resend = post(client, "/activate/resend", {"email": "ada@example.com"})
    assert resend.status_code == 303
    fresh = activation_link(app)
    post(client, fresh, {"password": "correct horse"}, form_page=fresh)
    assert user(app, "ada@example.com").activated_at is not None


@pytest.mark.parametrize("garbage", ["x", "a.b.c", "A" * 300, "%00"])
def test_garbage_activation_links_get_the_page_not_an_error(client, garbage):
    response = client.get(f"/activate/{garbage}")
    assert response.status_code == 400
    assert "does not work" in response.get_data(as_text=True)


def test_login_keeps_next_through_the_form_and_lands_there(app, client):
    activate(app, client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    start = client.get("/orders")
    assert start.status_code == 302
    login_page = client.get(start.headers["Location"]).get_data(as_text=True)
    assert re.search(r'name="next"[^>]*value="/orders"', login_page)
    response = log_in(client, next_url="/orders")
    assert response.status_code == 303
    assert response.headers["Location"] == "/orders"
    assert "Your orders" in client.get("/orders").get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ],
)
def test_login_refuses_to_redirect_off_site(app, client, target):
    activate(app, client)
    response = log_in(client, next_url=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_login_with_a_wrong_password_or_inactive_account_is_refused(app, client):
    activate(app, client)
    wrong = log_in(client, password="wrong password")
    assert wrong.status_code == 400
    assert "Wrong e-mail or password" in wrong.get_data(as_text=True)
    sign_up(client, "grace@example.com")
    inactive = log_in(client, "grace@example.com")
    assert inactive.status_code == 400
    assert "Wrong e-mail or password" in inactive.get_data(as_text=True)


def test_logout_ends_the_session(app, client):
    activate(app, client)
    assert client.get("/orders").status_code == 200
    response = post(client, "/logout", {}, form_page="/")
    assert response.status_code == 303
    assert client.get("/orders").status_code == 302


def test_password_reset_link_works_once(app, client):
    activate(app, client)
    post(client, "/reset", {"email": "ada@example.com"})
    reset_mail = mails(app)[-1]
    assert reset_mail[1] == "Choose a new Storefront password"
    link = link_in(reset_mail)
    assert client.get(link).status_code == 200
    changed = post(client, link, {"password": "new password!"}, form_page=link)
    assert changed.status_code == 303
    assert log_in(client, password="correct horse").status_code == 400
    assert log_in(client, password="new password!").status_code == 303
    assert client.get(link).status_code == 400


def test_password_reset_link_dies_when_the_user_logs_in(app, client):
    activate(app, client)
    post(client, "/reset", {"email": "ada@example.com"})
    link = link_in(mails(app)[-1])
    log_in(client)
    assert client.get(link).status_code == 400


def test_a_reset_link_also_activates_an_account_never_activated(app, client):
    sign_up(client)
    post(client, "/reset", {"email": "ada@example.com"})
    link = link_in(mails(app)[-1])
    post(client, link, {"password": "chosen later"}, form_page=link)
    assert user(app, "ada@example.com").activated_at is not None
    assert log_in(client, password="chosen later").status_code == 303


def test_forms_without_a_csrf_token_are_refused(app, client):
    response = client.post("/signup", data={"email": "ada@example.com"})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert user(app, "ada@example.com") is None


def test_login_attempts_are_rate_limited(app, client):
    statuses = [log_in(client, password="guess").status_code for _ in range(12)]
    assert statuses[:10] == [400] * 10
    assert statuses[-1] == 429


def test_reset_requests_are_rate_limited(app, client):
    statuses = [
        post(client, "/reset", {"email": "x@example.com"}).status_code for _ in range(6)
    ]
    assert statuses == [303] * 5 + [429]
