"""Login sessions that can be ended: a copied cookie stops working after a
logout, a password reset or change, and "log out everywhere"; the password is
chosen by whoever activates; a leftover stream token grants nothing."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from storefront.extensions import db
from storefront.extensions import streams
from storefront.models import LoginSession
from storefront.models import SentMail
from storefront.models import User

from .conftest import copy_of
from .conftest import CSRF

_LINK = re.compile(r"http://127\.0\.0\.1:5000(/\S+)")


def post(client, path, data=None, *, form_page="/"):
    token = CSRF.search(client.get(form_page).get_data(as_text=True))[1]
    return client.post(path, data={**(data or {}), "csrf_token": token})


def log_in(app, email="ada@example.com", password="storefront"):
    client = app.test_client()
    response = post(
        client, "/login", {"email": email, "password": password}, form_page="/login"
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def logged_in(client):
    return client.get("/orders").status_code == 200


def last_link(app):
    with db.engine_for(app).connect() as connection:
        body = connection.scalar(sa.select(SentMail.body).order_by(SentMail.id.desc()))
    return _LINK.search(body)[1]


def session_rows(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(LoginSession))


def test_a_copied_cookie_stops_working_after_logout(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    thief = copy_of(app, client)
    assert logged_in(thief)
    post(client, "/logout")
    assert not logged_in(client)
    assert not logged_in(thief)
    assert session_rows(app) == 0


def test_logging_out_one_browser_keeps_the_others(app, runner):
    runner.invoke(args=["demo"])
    laptop, phone = log_in(app), log_in(app)
    post(laptop, "/logout")
    assert logged_in(phone)


def test_a_password_reset_ends_every_session(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    thief = copy_of(app, client)
    anonymous = app.test_client()
    post(anonymous, "/reset", {"email": "ada@example.com"}, form_page="/reset")
    link = last_link(app)
    post(anonymous, link, {"password": "a new password"}, form_page=link)
    assert not logged_in(client)
    assert not logged_in(thief)
    log_in(app, password="a new password")


def change_password(client, *, current, new="a new password"):
    data = {"current": current, "password": new}
    return post(client, "/account/password", data, form_page="/account")


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, runner):
    runner.invoke(args=["demo"])
    client, other = log_in(app), log_in(app)
    thief = copy_of(app, client)
    response = change_password(client, current="storefront")
    assert response.status_code == 303
    assert logged_in(client), "a new session for the browser that changed it"
    assert not logged_in(thief), "the copy holds the old session"
    assert not logged_in(other)


def test_a_password_change_needs_the_current_password(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    response = change_password(client, current="a guess")
    assert (response.status_code, response.headers["Location"]) == (303, "/account")
    page = client.get("/account").get_data(as_text=True)
    assert "current password is wrong" in page
    assert logged_in(log_in(app, password="storefront"))


def test_log_out_everywhere_ends_every_session_of_the_account(app, runner):
    runner.invoke(args=["demo"])
    client, other = log_in(app), log_in(app)
    grace = log_in(app, "grace@example.com")
    response = post(client, "/account/logout-everywhere", form_page="/account")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert "logged out everywhere" in client.get("/").get_data(as_text=True)
    assert not logged_in(client)
    assert not logged_in(other)
    assert logged_in(grace), "other accounts are not touched"


def test_a_session_older_than_its_lifetime_is_over(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    with db.engine_for(app).begin() as connection:
        connection.execute(
            sa.update(LoginSession).values(
                created_at=sa.func.datetime("now", "-32 days")
            )
        )
    assert not logged_in(client)


def test_logout_deletes_the_stream_token_cookie(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    client.get("/activity")
    assert client.get_cookie("stream_token", path="/streams/") is not None
    response = post(client, "/logout")
    assert "stream_token=;" in " ".join(response.headers.getlist("Set-Cookie"))
    assert client.get_cookie("stream_token", path="/streams/") is None


def next_event(chunks):
    for chunk in chunks:
        if chunk.startswith(b"id:"):
            return chunk.decode()
    raise AssertionError("the stream ended")


def test_a_leftover_stream_token_grants_nothing_after_logout(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    client.get("/activity")
    token = client.get_cookie("stream_token", path="/streams/").value
    thief = copy_of(app, client)
    post(client, "/logout")
    thief.set_cookie("stream_token", token, path="/streams/")
    with app.app_context():
        ada = db.session.scalar(
            sa.select(User.id).where(User.email == "ada@example.com")
        )
        broker = streams.broker
    response = thief.get("/streams/live", buffered=False)
    assert response.status_code == 200, "the public feed stays open"
    chunks = iter(response.response)
    next(chunks)
    broker.publish(f"user:{ada}", {"text": "private: order 7 confirmed"})
    broker.publish("activity", {"text": "public"})
    assert "public" in next_event(chunks)
    response.close()


def test_the_private_channel_streams_while_the_login_lives(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    client.get("/activity")
    with app.app_context():
        ada = db.session.scalar(
            sa.select(User.id).where(User.email == "ada@example.com")
        )
        broker = streams.broker
    response = client.get("/streams/live", buffered=False)
    chunks = iter(response.response)
    next(chunks)
    broker.publish(f"user:{ada}", {"text": "private: order 7 confirmed"})
    assert "order 7 confirmed" in next_event(chunks)
    response.close()


# Account pre-hijacking


def test_signing_up_with_someone_elses_address_first_gains_nothing(app):
    attacker = app.test_client()
    # The attacker signs up with the victim's address (no password is taken)...
    post(attacker, "/signup", {"email": "victim@example.com"}, form_page="/signup")
    assert session_rows(app) == 0
    # ...the victim follows the link from their mailbox and chooses a password.
    victim = app.test_client()
    link = last_link(app)
    post(victim, link, {"password": "the victim's own"}, form_page=link)
    assert logged_in(victim)
    # The attacker's browser is not logged in, and no password of theirs works.
    assert not logged_in(attacker)
    for guess in ("", "correct horse", "password1"):
        response = post(
            attacker,
            "/login",
            {"email": "victim@example.com", "password": guess},
            form_page="/login",
        )
        assert response.status_code == 400
    with db.engine_for(app).connect() as connection:
        sessions = connection.execute(sa.select(LoginSession)).all()
    assert len(sessions) == 1, "only the victim's browser"


def test_activation_ends_any_session_made_before_it(app):
    post(
        app.test_client(), "/signup", {"email": "ada@example.com"}, form_page="/signup"
    )
    with app.app_context():
        from storefront.logins import create_login_session

        user = db.session.scalar(sa.select(User))
        early = create_login_session(user)
    link = last_link(app)
    post(app.test_client(), link, {"password": "chosen at last"}, form_page=link)
    early_client = app.test_client()
    with early_client.session_transaction() as session:
        session["login"] = early
    assert not logged_in(early_client)


def test_guessing_the_current_password_is_rate_limited(app, runner):
    runner.invoke(args=["demo"])
    client = log_in(app)
    token = CSRF.search(client.get("/account").get_data(as_text=True))[1]
    statuses = [
        client.post(
            "/account/password",
            data={
                "current": f"guess {n}",
                "password": "whatever1",
                "csrf_token": token,
            },
        ).status_code
        for n in range(11)
    ]
    assert statuses == [303] * 10 + [429]


@pytest.mark.parametrize(
    ("path", "form", "form_page"),
    [
        ("/account/logout-everywhere", {}, "/account"),
        ("/logout", {}, "/"),
        # Another user logs in in the same browser: the first login ends.
        ("/login", {"email": "grace@example.com", "password": "storefront"}, "/"),
    ],
)
def test_a_stream_opened_before_the_logout_ends_with_it(
    app, runner, path, form, form_page
):
    runner.invoke(args=["demo"])
    client = log_in(app)
    client.get("/activity")
    thief = copy_of(app, client)
    thief.set_cookie(
        "stream_token",
        client.get_cookie("stream_token", path="/streams/").value,
        path="/streams/",
    )
    stolen = thief.get("/streams/live", buffered=False)
    chunks = iter(stolen.response)
    next(chunks)
    post(client, path, form, form_page=form_page)
    rest = list(chunks)  # the stream ends instead of waiting for more
    assert rest[-1].startswith(b"retry: ")
    with app.app_context():
        broker = streams.broker
    assert broker.replay(["activity"], 0).events == [], "ended, nothing published"
    stolen.close()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_sign_ups_of_one_new_address_at_once_both_get_the_same_answer(
    app_factory, monkeypatch, request, database
):
    from storefront import accounts

    if database == "sqlite":
        app = app_factory()
    else:
        url = request.getfixturevalue("postgres_url")
        app = app_factory(
            DATABASE_URL=url.replace("postgresql://", "postgresql+psycopg://")
        )
    late = app.test_client()
    token = CSRF.search(late.get("/signup").get_data(as_text=True))[1]
    first = post(
        app.test_client(), "/signup", {"email": "race@example.com"}, form_page="/signup"
    )
    # The late request looked the address up before the first one committed,
    # so its insert conflicts.
    looked_up = []
    real_find = accounts._find

    def find_too_early(email):
        looked_up.append(email)
        return None if len(looked_up) == 1 else real_find(email)

    monkeypatch.setattr(accounts, "_find", find_too_early)
    second = late.post(
        "/signup", data={"email": "race@example.com", "csrf_token": token}
    )
    assert (first.status_code, second.status_code) == (303, 303)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(looked_up) == 2, "the conflict made it look again"
    with db.engine_for(app).connect() as connection:
        users = connection.scalar(sa.select(sa.func.count()).select_from(User))
        subjects = connection.scalars(sa.select(SentMail.subject)).all()
    assert users == 1
    assert subjects == ["Activate your Storefront account"] * 2


def test_an_activation_link_used_twice_at_once_works_once(
    app_factory, monkeypatch, postgres_url
):
    """Two requests passed the link's check; the one that writes second finds
    the account active (committed by the first) and gets the used-link page."""
    from storefront import accounts

    app = app_factory(
        DATABASE_URL=postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    post(
        app.test_client(), "/signup", {"email": "ada@example.com"}, form_page="/signup"
    )
    link = last_link(app)
    real_hash = accounts.hash_password

    def first_request_commits_meanwhile(password):
        with db.engine_for(app).begin() as other:
            other.execute(
                sa.update(User).values(
                    activated_at=sa.func.now(), password_hash=real_hash("the first")
                )
            )
        return real_hash(password)

    monkeypatch.setattr(accounts, "hash_password", first_request_commits_meanwhile)
    late = app.test_client()
    response = post(late, link, {"password": "the second"}, form_page=link)
    assert response.status_code == 400
    assert "does not work" in response.get_data(as_text=True)
    assert not logged_in(late)
    monkeypatch.setattr(accounts, "hash_password", real_hash)
    assert logged_in(log_in(app, password="the first"))
