"""The development mailbox fails closed: it is served only in debug or with
``STOREFRONT_DEV_MAILBOX=true``; otherwise mail without an SMTP server waits in
the outbox, and start-up says so."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront.extensions import db
from storefront.extensions import outbox
from storefront.mailbox import PER_PAGE
from storefront.models import SentMail

from .conftest import CSRF

WARNING = "mail (activation and reset links included) stays queued in the outbox"


def sign_up(app, email):
    client = app.test_client()
    token = CSRF.search(client.get("/signup").get_data(as_text=True))[1]
    return client.post("/signup", data={"email": email, "csrf_token": token})


def outbox_rows(app):
    with db.engine_for(app).connect() as connection:
        return connection.execute(sa.select(outbox_table)).all()


def delivered(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(SentMail))


@pytest.fixture
def shipped(app_factory):
    """The app as deployed without SMTP: no debug, no flag."""
    return app_factory(DEV_MAILBOX=False)


def test_without_smtp_or_the_flag_the_mailbox_is_404_and_mail_waits(shipped):
    assert sign_up(shipped, "ada@example.com").status_code == 303
    assert shipped.test_client().get("/dev/mailbox").status_code == 404
    (row,) = outbox_rows(shipped)
    assert (row.sent_at, row.failed_at, row.attempts) == (None, None, 0)
    assert delivered(shipped) == 0
    with shipped.app_context():
        assert outbox.work() == 0, "the worker leaves it alone too"
    assert outbox_rows(shipped)[0].attempts == 0


def test_start_up_warns_when_mail_can_go_nowhere(app_factory, caplog):
    with caplog.at_level(logging.WARNING, logger="storefront"):
        app_factory(DEV_MAILBOX=False)
    assert WARNING in caplog.text
    assert "STOREFRONT_SMTP_URL" in caplog.text


@pytest.mark.parametrize(
    "config",
    [{"DEV_MAILBOX": True}, {"DEBUG": True}, {"SMTP_URL": "smtp://127.0.0.1:1"}],
)
def test_no_warning_when_mail_has_somewhere_to_go(app_factory, caplog, config):
    with caplog.at_level(logging.WARNING, logger="storefront"):
        app_factory(**{"DEV_MAILBOX": False, **config})
    assert WARNING not in caplog.text


def test_the_nav_links_the_mailbox_only_when_it_is_served(app_factory):
    on = app_factory().test_client().get("/").get_data(as_text=True)
    off = app_factory(DEV_MAILBOX=False).test_client().get("/").get_data(as_text=True)
    assert 'href="/dev/mailbox"' in on
    assert 'href="/dev/mailbox"' not in off


def test_debug_serves_the_mailbox_without_the_flag(app_factory):
    app = app_factory(DEV_MAILBOX=False, DEBUG=True)
    sign_up(app, "ada@example.com")
    page = app.test_client().get("/dev/mailbox").get_data(as_text=True)
    assert '<a href="http://127.0.0.1:5000/activate/' in page


def test_smtp_alone_does_not_serve_the_mailbox(app_factory, smtp_server):
    app = app_factory(DEV_MAILBOX=False, SMTP_URL=smtp_server.url)
    assert app.test_client().get("/dev/mailbox").status_code == 404


def test_mail_that_waited_goes_out_once_smtp_is_configured(app_factory, smtp_server):
    shipped = app_factory(DEV_MAILBOX=False)
    sign_up(shipped, "ada@example.com")
    configured = app_factory(DEV_MAILBOX=False, SMTP_URL=smtp_server.url)
    result = configured.test_cli_runner().invoke(args=["outbox", "work", "--once"])
    assert "Delivered 1 message(s)." in result.output
    (mail,) = smtp_server.messages
    assert mail["Subject"] == "Activate your Storefront account"


def test_the_mailbox_is_paginated_newest_first(app):
    with app.app_context():
        for n in range(PER_PAGE + 5):
            db.session.add(
                SentMail(recipient=f"{n}@example.com", subject=f"#{n}", body="")
            )
    client = app.test_client()
    first = client.get("/dev/mailbox").get_data(as_text=True)
    subjects = re.findall(r"<h2>#(\d+)</h2>", first)
    assert subjects == [str(n) for n in range(PER_PAGE + 4, 4, -1)]
    assert "Page 1 of 2 (25 mails)" in first
    assert 'href="/dev/mailbox?page=2"' in first
    second = client.get("/dev/mailbox?page=2").get_data(as_text=True)
    assert re.findall(r"<h2>#(\d+)</h2>", second) == ["4", "3", "2", "1", "0"]
    assert 'href="/dev/mailbox?page=1"' in second
    for odd in ("0", "-3", "abc", "99999999999999999999999"):
        page = client.get(f"/dev/mailbox?page={odd}")
        assert page.status_code == 200, odd


def test_mailbox_links_are_escaped_and_clickable(app):
    with app.app_context():
        db.session.add(
            SentMail(
                recipient="a@example.com",
                subject="<b>hi</b>",
                body='See http://127.0.0.1:5000/x?a=1&b="2" <script>',
            )
        )
    page = app.test_client().get("/dev/mailbox").get_data(as_text=True)
    assert '<a href="http://127.0.0.1:5000/x?a=1&amp;b=">' in page
    assert "&lt;script&gt;" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page


def test_a_full_stop_after_a_link_is_not_part_of_it(app):
    with app.app_context():
        db.session.add(
            SentMail(
                recipient="a@example.com",
                subject="Your order",
                body="See your orders at http://127.0.0.1:5000/orders.\n"
                "Or (http://127.0.0.1:5000/products/1), http://127.0.0.1:5000/?a=1!",
            )
        )
    page = app.test_client().get("/dev/mailbox").get_data(as_text=True)
    assert '<a href="http://127.0.0.1:5000/orders">' in page
    assert "http://127.0.0.1:5000/orders</a>." in page
    assert '<a href="http://127.0.0.1:5000/products/1">' in page
    assert '<a href="http://127.0.0.1:5000/?a=1">' in page
