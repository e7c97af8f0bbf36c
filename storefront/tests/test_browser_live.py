"""The live activity page in a real browser (Debian's Chromium through
Playwright): what already happened is there at once, the stream carries on from
it without a gap or a repeat, and the page says how its connection is."""

from __future__ import annotations

import pytest

from storefront.extensions import streams

from .browsing import axe_violations
from .browsing import blocking
from .browsing import horizontal_overflow
from .browsing import screenshots

LIVE = "#status:has-text('Live')"


@pytest.fixture
def shop(app_factory, live_server):
    """The app, its broker and its address."""
    app = app_factory()
    with app.app_context():
        broker = streams.broker
    return app, broker, live_server(app).url


def texts(page):
    return page.locator("#feed li .text").all_inner_texts()


def test_what_already_happened_is_on_the_page_as_it_loads(shop, chromium, output_dir):
    _, broker, url = shop
    for n, name in enumerate(["Espresso cup", "Hand grinder", "Pour-over kettle"]):
        broker.publish(
            "activity",
            {"text": f"Someone bought {name}", "at": f"2024-12-07T14:0{n}:00+00:00"},
        )
    # In the HTML itself: a browser without JavaScript shows it too.
    without_js = chromium.new_context(java_script_enabled=False)
    try:
        page = without_js.new_page()
        page.goto(f"{url}/activity")
        assert texts(page)[0] == "Someone bought Pour-over kettle"
        assert page.locator("#feed li time").first.inner_text() == "7 Dec, 14:02"
    finally:
        without_js.close()

    page = chromium.new_page()
    try:
        page.goto(f"{url}/activity")
        assert texts(page) == [
            "Someone bought Pour-over kettle",
            "Someone bought Hand grinder",
            "Someone bought Espresso cup",
        ]
        page.wait_for_selector(LIVE)
        assert page.locator("#status").get_attribute("aria-live") == "polite"
        assert page.locator("#status").get_attribute("role") == "status"
        assert not page.locator("#empty").is_visible()
        for path in screenshots(page, output_dir, "activity"):
            assert path.stat().st_size > 0
        assert horizontal_overflow(page) <= 0
    finally:
        page.close()


def test_an_event_after_the_load_appears_once_above_the_history(shop, chromium):
    _, broker, url = shop
    for n in range(3):
        broker.publish("activity", {"text": f"earlier {n}"})
    page = chromium.new_page()
    try:
        page.goto(f"{url}/activity")
        page.wait_for_selector(LIVE)
        broker.publish("activity", {"text": "just now"})
        page.wait_for_selector("#feed li:has-text('just now')", timeout=5000)
        broker.publish("activity", {"text": "a marker after it"})
        page.wait_for_selector("#feed li:has-text('a marker after it')")
        assert texts(page) == [
            "a marker after it",
            "just now",
            "earlier 2",
            "earlier 1",
            "earlier 0",
        ]
    finally:
        page.close()


def test_an_event_published_before_the_stream_connects_is_not_lost(shop, chromium):
    _, broker, url = shop
    broker.publish("activity", {"text": "shown by the server"})
    page = chromium.new_page()

    def publish_first(route):
        # The page is rendered; its stream has not reached the server yet.
        broker.publish("activity", {"text": "published in between"})
        route.continue_()

    page.route("**/streams/activity*", publish_first)
    try:
        page.goto(f"{url}/activity")
        page.wait_for_selector("#feed li:has-text('published in between')")
        page.wait_for_selector(LIVE)
        broker.publish("activity", {"text": "live"})
        page.wait_for_selector("#feed li:has-text('live')")
        assert texts(page) == ["live", "published in between", "shown by the server"]
    finally:
        page.close()


def test_the_empty_page_says_so_until_the_first_event(shop, chromium, output_dir):
    _, broker, url = shop
    page = chromium.new_page()
    try:
        page.goto(f"{url}/activity")
        empty = page.locator("#empty")
        assert empty.inner_text() == (
            "Nothing has happened yet. Purchases show up here the moment they happen."
        )
        assert empty.is_visible()
        page.wait_for_selector(LIVE)
        screenshots(page, output_dir, "activity-empty")
        broker.publish("activity", {"text": "the first purchase"})
        page.wait_for_selector("#feed li:has-text('the first purchase')")
        assert not empty.is_visible()
    finally:
        page.close()


def test_history_and_live_times_read_alike_in_the_readers_time_zone(shop, chromium):
    _, broker, url = shop
    broker.publish("activity", {"text": "before", "at": "2024-12-07T14:03:00+00:00"})
    context = chromium.new_context(timezone_id="Asia/Kolkata")  # UTC+05:30
    try:
        page = context.new_page()
        page.goto(f"{url}/activity")
        page.wait_for_selector(LIVE)
        broker.publish("activity", {"text": "after", "at": "2024-12-07T18:40:00Z"})
        page.wait_for_selector("#feed li:has-text('after')")
        times = page.locator("#feed li time")
        assert times.all_inner_texts() == ["8 Dec, 00:10", "7 Dec, 19:33"]
        assert times.last.get_attribute("datetime") == "2024-12-07T14:03:00+00:00"
    finally:
        context.close()


def test_the_page_works_while_redis_is_down_and_goes_live_when_it_is_back(
    app_factory, live_server, redis_process, chromium, output_dir
):
    app = app_factory(REDIS_URL=redis_process.url)
    with app.app_context():
        broker = streams.broker
    broker.publish("activity", {"text": "kept in Redis"})
    url = live_server(app).url
    redis_process.stop()
    page = chromium.new_page()
    try:
        page.goto(f"{url}/activity")
        assert (
            page.locator("#history-note")
            .inner_text()
            .startswith("Recent activity cannot be shown right now.")
        )
        assert not page.locator("#empty").is_visible()
        page.screenshot(path=output_dir / "redis-down.png", full_page=True)
        redis_process.start()
        page.wait_for_selector(LIVE, timeout=15000)
        broker.publish("activity", {"text": "back again"})
        page.wait_for_selector("#feed li:has-text('back again')", timeout=15000)
    finally:
        page.close()
        broker.close()


def test_the_states_of_the_page_have_no_serious_accessibility_problem(
    shop, chromium, axe
):
    _, broker, url = shop
    source = axe
    page = chromium.new_page()
    try:
        page.goto(f"{url}/activity")
        page.wait_for_selector(LIVE)
        assert blocking(axe_violations(page, source)) == [], "empty"
        broker.publish(
            "activity", {"text": "Someone bought a mug", "at": "2024-12-07T14:03:00Z"}
        )
        page.wait_for_selector("#feed li:has-text('a mug')")
        page.reload()
        page.wait_for_selector(LIVE)
        assert blocking(axe_violations(page, source)) == [], "with history"
    finally:
        page.close()
