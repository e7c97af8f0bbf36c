"""No form tells a stranger whether an address has an account: login, sign-up,
reset and "send the link again" answer the same and do the same work (counted:
password hashes, mails queued) for a known, a waiting and an unknown address."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront import passwords
from storefront.extensions import db
from storefront.extensions import streams

from .conftest import CSRF

ACTIVE, WAITING, UNKNOWN = "ada@example.com", "new@example.com", "nobody@example.com"


@pytest.fixture
def shop(app, runner, client):
    runner.invoke(args=["demo"])
    token = CSRF.search(client.get("/signup").get_data(as_text=True))[1]
    client.post("/signup", data={"email": WAITING, "csrf_token": token})
    return app


@pytest.fixture
def hashes(monkeypatch):
    """Counts the password hashes computed, whatever they are checked against."""
    counted = []
    real = passwords.check_password_hash

    def counting(stored, candidate):
        counted.append(stored)
        return real(stored, candidate)

    monkeypatch.setattr(passwords, "check_password_hash", counting)
    return counted


def queued(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(outbox_table))


def answer(app, path, form_page, **fields):
    """What a stranger sees of one submission (a fresh client each time), and
    how many mails it queued."""
    client = app.test_client()
    page = client.get(form_page).get_data(as_text=True)
    before = queued(app)
    response = client.post(path, data={**fields, "csrf_token": CSRF.search(page)[1]})
    shown = response.get_data(as_text=True)
    if response.status_code in (302, 303):
        shown = client.get(response.headers["Location"]).get_data(as_text=True)
    for email in (ACTIVE, WAITING, UNKNOWN):
        shown = shown.replace(email, "<address>")
    shown = CSRF.sub("csrf", shown)
    return (
        response.status_code,
        response.headers.get("Location"),
        shown,
        queued(app) - before,
    )


def test_login_answers_the_same_and_hashes_once_whoever_the_address_is(shop, hashes):
    seen = []
    for email in (ACTIVE, WAITING, UNKNOWN):
        hashes.clear()
        seen.append(answer(shop, "/login", "/login", email=email, password="wrong!"))
        assert len(hashes) == 1, f"{email}: {len(hashes)} hashes"
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][0] == 400
    assert "Wrong e-mail or password." in seen[0][2]


@pytest.mark.parametrize(
    ("path", "form_page"),
    [
        ("/signup", "/signup"),
        ("/reset", "/reset"),
        ("/activate/resend", "/signup"),
    ],
)
def test_address_forms_answer_the_same_and_queue_one_mail_each(
    shop, hashes, path, form_page
):
    seen = [answer(shop, path, form_page, email=email) for email in (ACTIVE, WAITING)]
    seen.append(answer(shop, path, form_page, email=UNKNOWN))
    assert seen[0] == seen[1] == seen[2]
    status, location, page, mails = seen[0]
    assert (status, location, mails) == (303, "/login", 1)
    assert "We sent a mail to <address>" in page
    assert hashes == [], "no password is involved"


def test_signing_up_publishes_nothing_on_the_public_feed(shop):
    answer(shop, "/signup", "/signup", email="another@example.com")
    with shop.app_context():
        broker = streams.broker
    assert broker.replay(["activity"], 0).events == []
