"""The error pages in Chromium, at a laptop's and a phone's size: in the shop's
layout, with its navigation, no wider than the window, and nothing serious for
axe-core."""

from __future__ import annotations

import pytest

from .browsing import axe_violations
from .browsing import blocking
from .browsing import horizontal_overflow
from .browsing import screenshots
from .browsing import SIZES


@pytest.fixture
def shop(app_factory, live_server, unused_port):
    """The URL of the shop, served over HTTP."""
    return live_server(app_factory(PUBLIC_URL=f"http://127.0.0.1:{unused_port}")).url


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    yield context.new_page()
    context.close()


def check_error_page(page, axe, output_dir, name, heading):
    """The page shows ``heading`` in the layout, fits both sizes, passes axe."""
    assert page.locator("h1").inner_text() == heading
    assert page.locator("header.site nav a[href='/activity']").count() == 1
    for width, height in SIZES.values():
        page.set_viewport_size({"width": width, "height": height})
        assert horizontal_overflow(page) <= 0, f"{name} is wider at {width} px"
        assert blocking(axe_violations(page, axe)) == [], f"{name} at {width} px"
    screenshots(page, output_dir, name)


def test_a_404_page_in_the_layout(shop, page, axe, output_dir):
    response = page.goto(f"{shop}/no-such-page")
    assert response.status == 404
    check_error_page(page, axe, output_dir, "404", "Page not found")
    page.click("main a:has-text('Browse the products')")
    page.wait_for_url(f"{shop}/")


def test_a_form_sent_without_its_cookie_explains_itself(shop, page, axe, output_dir):
    page.goto(f"{shop}/login")
    page.context.clear_cookies()  # as when cookies are off, or the session ended
    page.fill("input[name=email]", "ada@example.com")
    page.fill("input[name=password]", "correct horse battery")
    with page.expect_response(f"{shop}/login") as answer:
        page.click("form.form button[type=submit]")
    assert answer.value.status == 400
    check_error_page(page, axe, output_dir, "400-csrf", "This form has expired")
    assert "reload the page and submit the form again" in page.inner_text("main")


def test_a_405_page_in_the_layout(shop, page, axe, output_dir):
    response = page.goto(f"{shop}/logout")
    assert response.status == 405
    assert "POST" in response.headers["allow"]
    check_error_page(page, axe, output_dir, "405", "This page cannot be used this way")
