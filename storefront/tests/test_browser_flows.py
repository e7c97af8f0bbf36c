"""The shop's flows in a real browser (Debian's Chromium through Playwright):
where each form leads, what a reload does, and the staff page's retry."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront.cli import DEMO_PASSWORD
from storefront.cli import DEMO_STAFF
from storefront.cli import DEMO_USERS
from storefront.extensions import db
from storefront.mail import send_mail
from storefront.models import Order
from storefront.models import Product

from .browsing import screenshots


@pytest.fixture
def shop(app_factory, live_server):
    app = app_factory()
    app.test_cli_runner().invoke(args=["demo"])
    return app, live_server(app).url


def log_in(tab, url, email, next_url=""):
    tab.goto(f"{url}/login" + (f"?next={next_url}" if next_url else ""))
    tab.fill("form.form [name=email]", email)
    tab.fill("form.form [name=password]", DEMO_PASSWORD)
    with tab.expect_navigation():
        tab.click("form.form button[type=submit]")


def orders(app):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(Order))


def test_sold_out_lands_on_the_product_and_a_reload_buys_nothing(
    shop, chromium, output_dir
):
    app, url = shop
    with db.engine_for(app).begin() as connection:
        connection.execute(sa.update(Product).values(stock=1))
        cup = connection.scalar(
            sa.select(Product.id).where(Product.slug == "espresso-cup")
        )
    first, second = chromium.new_page(), chromium.new_page()
    try:
        for tab, email in ((first, DEMO_USERS[0]), (second, DEMO_USERS[1])):
            log_in(tab, url, email)
            tab.goto(f"{url}/products/{cup}")
        with first.expect_navigation():
            first.click("button:has-text('Buy now')")
        assert first.url == f"{url}/orders"
        # The second page still shows the form: the last one was just taken.
        with second.expect_navigation():
            second.click("button:has-text('Buy now')")
        assert second.url == f"{url}/products/{cup}"
        assert "Sorry, Espresso cup is sold out." in second.inner_text("main")
        screenshots(second, output_dir, "sold-out")
        second.reload()
        assert second.url == f"{url}/products/{cup}"
        assert "Sorry" not in second.inner_text("main"), "the message was shown once"
        assert orders(app) == 1, "the reload sent nothing"
        first.reload()
        assert "Thank you!" not in first.inner_text("main")
        assert orders(app) == 1
    finally:
        first.close()
        second.close()


def test_login_logout_and_a_refused_next_land_on_sensible_pages(
    shop, chromium, output_dir
):
    _, url = shop
    tab = chromium.new_page()
    try:
        tab.goto(f"{url}/orders")
        assert tab.url == f"{url}/login?next=%2Forders"
        assert "Log in to see that page." in tab.inner_text("main")
        log_in(tab, url, DEMO_USERS[0], next_url="/orders")
        assert tab.url == f"{url}/orders"
        assert "No. " not in tab.inner_text("main")  # none yet
        tab.goto(f"{url}/login")
        assert tab.url == f"{url}/", "logged in: no login form"
        tab.goto(f"{url}/orders")
        with tab.expect_navigation():
            tab.click("button:has-text('Log out')")
        assert tab.url == f"{url}/"
        assert "You are logged out." in tab.inner_text("main")
        log_in(tab, url, DEMO_USERS[0], next_url="//evil.example/")
        assert tab.url == f"{url}/"
        assert "Welcome back." in tab.inner_text("main")
        screenshots(tab, output_dir, "after-login")
    finally:
        tab.close()


def test_a_refused_form_shows_its_message_next_to_the_field(shop, chromium, output_dir):
    _, url = shop
    tab = chromium.new_page()
    try:
        tab.goto(f"{url}/signup")
        # The browser lets this through; the shop does not.
        tab.fill("form.form [name=email]", "ada@example")
        with tab.expect_navigation():
            tab.click("form.form button[type=submit]")
        field = tab.locator("#email")
        assert field.get_attribute("aria-invalid") == "true"
        described = tab.locator(f"#{field.get_attribute('aria-describedby')}")
        assert described.inner_text() == "Enter a valid e-mail address."
        assert field.input_value() == "ada@example", "what was typed stays"
        screenshots(tab, output_dir, "signup-refused")
    finally:
        tab.close()


def test_staff_retry_a_failed_mail_from_their_page(shop, chromium, output_dir):
    app, url = shop
    app.config["DEV_MAILBOX"] = False  # no transport: mail stays queued
    with app.test_request_context(), db.transaction():
        send_mail("grace@example.com", "no_account", signup=f"{url}/signup")
    with db.engine_for(app).begin() as connection:
        connection.execute(
            outbox_table.update().values(
                failed_at=dt.datetime.now(dt.timezone.utc),
                attempts=8,
                last_error="SMTP 550: mailbox unavailable",
            )
        )
    tab = chromium.new_page()
    try:
        log_in(tab, url, DEMO_STAFF)
        tab.click("nav a:has-text('Staff')")
        tab.wait_for_url(f"{url}/staff")
        assert "0 pending · 1 failed · 0 sent" in " ".join(
            tab.inner_text(".outbox-counts").split()
        )
        assert "SMTP 550: mailbox unavailable" in tab.inner_text("main")
        screenshots(tab, output_dir, "staff-failed")
        with tab.expect_navigation():
            tab.click(".message button:has-text('Retry')")
        assert tab.url == f"{url}/staff"
        assert "will be sent again" in tab.inner_text("main")
        assert "1 pending · 0 failed · 0 sent" in " ".join(
            tab.inner_text(".outbox-counts").split()
        )
        assert "No message has failed." in tab.inner_text("main")
        screenshots(tab, output_dir, "staff-retried")
    finally:
        tab.close()
