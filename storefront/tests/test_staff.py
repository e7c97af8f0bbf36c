"""The staff page: recent orders, the outbox by state, and retrying what failed."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront.extensions import db
from storefront.extensions import outbox
from storefront.mail import send_mail
from storefront.models import Order
from storefront.models import Product

from .conftest import add_user
from .conftest import csrf_token
from .conftest import log_in_as


@pytest.fixture
def shop(app, runner):
    runner.invoke(args=["demo"])
    app.config["DEV_MAILBOX"] = False  # mail stays in the outbox
    return app


def queue_mail(app, recipient):
    """A mail in the outbox, as a view would have left it; returns its key."""
    with app.test_request_context(), db.transaction():
        send_mail(
            recipient, "reset_password", link="https://x/reset/SECRET", minutes=60
        )
    with db.engine_for(app).connect() as connection:
        return connection.scalar(
            sa.select(outbox_table.c.key).order_by(outbox_table.c.id.desc())
        )


def fail(app, key, error="SMTP 550: mailbox unavailable"):
    with db.engine_for(app).begin() as connection:
        connection.execute(
            outbox_table.update()
            .where(outbox_table.c.key == key)
            .values(
                failed_at=dt.datetime.now(dt.timezone.utc),
                attempts=8,
                last_error=error,
            )
        )


def row(app, key):
    with db.engine_for(app).connect() as connection:
        return connection.execute(
            sa.select(outbox_table).where(outbox_table.c.key == key)
        ).one()


def client_of(app, email, **fields):
    client = app.test_client()
    log_in_as(app, client, add_user(app, email, **fields))
    return client


def test_visitors_log_in_first_and_customers_are_refused(shop):
    visitor = shop.test_client().get("/staff")
    assert visitor.status_code == 302
    assert visitor.headers["Location"] == "/login?next=%2Fstaff"
    customer = client_of(shop, "eve@example.com").get("/staff")
    assert customer.status_code == 403
    assert "for the shop&#39;s staff" in customer.get_data(as_text=True)


def test_only_staff_see_the_staff_link(shop):
    page = client_of(shop, "eve@example.com").get("/").get_data(as_text=True)
    assert 'href="/staff"' not in page
    page = client_of(shop, "boss@example.com", is_staff=True).get("/")
    assert 'href="/staff"' in page.get_data(as_text=True)


def test_staff_see_every_customers_recent_orders(shop):
    buyer = add_user(shop, "buyer@example.com")
    with shop.app_context():
        kettle = db.session.scalar(
            sa.select(Product).where(Product.slug == "pour-over-kettle")
        )
        db.session.add(Order(user_id=buyer, product_id=kettle.id, price_cents=4500))
    page = client_of(shop, "boss@example.com", is_staff=True).get("/staff")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "No. 1" in text
    assert "buyer@example.com" in text
    assert "Pour-over kettle" in text
    assert "45.00" in text


def test_the_outbox_shows_pending_and_failed_mail_without_its_body(shop):
    pending = queue_mail(shop, "ada@example.com")
    failed = queue_mail(shop, "grace@example.com")
    fail(shop, failed)
    text = (
        client_of(shop, "boss@example.com", is_staff=True)
        .get("/staff")
        .get_data(as_text=True)
    )
    assert "1 pending" in text
    assert "1 failed" in text
    assert "0 sent" in text
    assert "To ada@example.com: Choose a new Storefront password" in text
    assert "To grace@example.com: Choose a new Storefront password" in text
    assert "SMTP 550: mailbox unavailable" in text
    assert f"/staff/outbox/{failed}/retry" in text
    assert f"/staff/outbox/{pending}/retry" not in text, "only failed ones retry"
    assert "SECRET" not in text, "a mail's body (and its link) is never shown"


def test_retrying_a_failed_message_makes_it_pending_and_due_now(shop):
    key = queue_mail(shop, "grace@example.com")
    fail(shop, key)
    staff = client_of(shop, "boss@example.com", is_staff=True)
    response = staff.post(
        f"/staff/outbox/{key}/retry", data={"csrf_token": csrf_token(staff, "/staff")}
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/staff")
    again = row(shop, key)
    assert (again.failed_at, again.attempts) == (None, 0)
    page = staff.get("/staff").get_data(as_text=True)
    assert f"Message {key} will be sent again." in page
    assert "1 pending" in page
    assert "0 failed" in page
    with shop.app_context():
        shop.config["DEV_MAILBOX"] = True
        assert outbox.work() == 1, "the worker delivers it on its next pass"


def test_retrying_every_failed_message_and_one_that_is_not_failed(shop):
    keys = [queue_mail(shop, f"user{n}@example.com") for n in range(3)]
    for key in keys[:2]:
        fail(shop, key)
    staff = client_of(shop, "boss@example.com", is_staff=True)
    token = csrf_token(staff, "/staff")
    staff.post("/staff/outbox/retry", data={"csrf_token": token})
    assert "2 failed messages will be sent again." in staff.get("/staff").get_data(
        as_text=True
    )
    assert all(row(shop, key).failed_at is None for key in keys)
    staff.post(f"/staff/outbox/{keys[2]}/retry", data={"csrf_token": token})
    page = staff.get("/staff").get_data(as_text=True)
    assert "not failed (any more): nothing to retry" in page
    staff.post("/staff/outbox/retry", data={"csrf_token": token})
    assert "No message had failed." in staff.get("/staff").get_data(as_text=True)


def test_a_retry_needs_staff_and_a_csrf_token(shop):
    key = queue_mail(shop, "grace@example.com")
    fail(shop, key)
    staff = client_of(shop, "boss@example.com", is_staff=True)
    assert staff.post(f"/staff/outbox/{key}/retry").status_code == 400
    customer = client_of(shop, "eve@example.com")
    token = csrf_token(customer, "/account")
    refused = customer.post(f"/staff/outbox/{key}/retry", data={"csrf_token": token})
    assert refused.status_code == 403
    assert row(shop, key).failed_at is not None
