"""Every page of the shop in Chromium, as each kind of visitor, at a laptop's
and a phone's size: axe-core finds nothing serious or critical, nothing is
wider than the window, keyboard focus is always visible, and every product
has a picture."""

from __future__ import annotations

import itertools
import pathlib
import re
import struct
import typing as t
import zlib

import pytest
import sqlalchemy as sa
from conftest import free_port
from conftest import LiveServer

from flask_patterns.outbox import outbox_table
from storefront.cli import DEMO_PASSWORD
from storefront.cli import DEMO_STAFF
from storefront.cli import DEMO_USERS
from storefront.extensions import db
from storefront.images import image_folder
from storefront.images import image_url
from storefront.images import placeholder_url
from storefront.mail import send_mail
from storefront.models import Order
from storefront.models import Product
from storefront.models import User

from .browsing import axe_violations
from .browsing import blocking
from .browsing import horizontal_overflow
from .browsing import screenshots
from .browsing import SIZES
from .conftest import mail_bodies
from .conftest import make_app

ANONYMOUS, USER, STAFF = "anonymous", "user", "staff"
ANYONE = (ANONYMOUS, USER)
LOGINS = {USER: DEMO_USERS[0], STAFF: DEMO_STAFF}


def fail_login(page: t.Any) -> None:
    """Submit the login form with a wrong password."""
    page.fill("form.form [name=email]", DEMO_USERS[1])
    page.fill("form.form [name=password]", "not the password")
    with page.expect_navigation():
        page.click("form.form button[type=submit]")


class Page(t.NamedTuple):
    """A page to check: its path (``{placeholders}`` filled from the site's
    data), who looks at it, a text it must show (so the check looked at the
    page meant), and what to do on it first."""

    name: str
    path: str
    who: tuple[str, ...]
    shows: str
    then: t.Callable[[t.Any], None] | None = None


PAGES = [
    Page("home", "/", (*ANYONE, STAFF), "Espresso cup"),
    Page("product-image", "/products/{with_image}", (*ANYONE, STAFF), "in stock"),
    Page("product", "/products/{without_image}", (*ANYONE, STAFF), "in stock"),
    Page("product-sold-out", "/products/{sold_out}", ANYONE, "Sold out"),
    Page("login", "/login?next=/orders", (ANONYMOUS,), "Forgot your password?"),
    Page(
        "login-failed", "/login", (ANONYMOUS,), "Wrong e-mail or password.", fail_login
    ),
    Page("signup", "/signup", ANYONE, "Create an account"),
    Page("reset", "/reset", ANYONE, "Forgot your password?"),
    Page("activate", "/activate/{activation}", ANYONE, "Choose your password"),
    Page("activate-invalid", "/activate/not-a-token", ANYONE, "does not work"),
    Page("reset-password", "/reset/{reset}", ANYONE, "Choose a new password"),
    Page("reset-invalid", "/reset/not-a-token", ANYONE, "does not work"),
    Page("orders", "/orders", (USER,), "Pour-over kettle"),
    Page("account", "/account", (USER,), "Your account"),
    Page("activity", "/activity", ANYONE, "Live activity"),
    Page("mailbox", "/dev/mailbox", ANYONE, "To new@example.com"),
    Page("not-found", "/no-such-page", ANYONE, "not found"),
    Page("forbidden", "/staff", (USER,), "for the shop's staff"),
    Page("staff", "/staff", (STAFF,), "SMTP 550: mailbox unavailable"),
]
VISITS = [(page, who) for page in PAGES for who in page.who]


def png(width: int, height: int) -> bytes:
    """A real PNG image: a colour gradient of the given size."""
    rows = (
        b"\x00"
        + bytes(
            itertools.chain.from_iterable(
                (x * 255 // width, 110, y * 255 // height) for x in range(width)
            )
        )
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def submit(tab: t.Any, url: str, **fields: str) -> None:
    """Fill in the form on ``url`` and send it."""
    tab.goto(url)
    for name, value in fields.items():
        tab.fill(f"form.form [name={name}]", value)
    with tab.expect_navigation():
        tab.click("form.form button[type=submit]")


def given_up_on(app: t.Any, recipient: str) -> None:
    """A mail in the outbox that failed every attempt, for the staff page."""
    app.config["DEV_MAILBOX"] = False  # no transport: the mail stays queued
    with app.test_request_context(), db.transaction():
        send_mail(recipient, "no_account", signup="http://127.0.0.1/signup")
    app.config["DEV_MAILBOX"] = True
    with db.engine_for(app).begin() as connection:
        connection.execute(
            outbox_table.update()
            .where(outbox_table.c.sent_at.is_(None))
            .values(
                failed_at=sa.func.now(),
                attempts=8,
                last_error="SMTP 550: mailbox unavailable",
            )
        )


class Site(t.NamedTuple):
    url: str
    app: t.Any
    values: dict[str, str]
    tabs: dict[str, t.Any]


@pytest.fixture(scope="module")
def site(tmp_path_factory: t.Any, chromium: t.Any) -> t.Iterator[Site]:
    """The demo shop served over HTTP with one product image, an order, a
    pending sign-up and a reset request; a browser tab for each kind of
    visitor, logged in through the form."""
    port = free_port()
    app = make_app(
        tmp_path_factory.mktemp("a11y"), PUBLIC_URL=f"http://127.0.0.1:{port}"
    )
    app.test_cli_runner().invoke(args=["demo"])
    with app.app_context():
        products = {p.name: p for p in db.session.scalars(sa.select(Product))}
        pictured = products["Espresso cup"]
        folder = pathlib.Path(image_folder())
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{pictured.id}.png").write_bytes(png(480, 300))
        user = db.session.scalar(sa.select(User.id).where(User.email == LOGINS[USER]))
        for name in ("Pour-over kettle", "Paper filters"):
            bought = products[name]
            db.session.add(
                Order(
                    user_id=user, product_id=bought.id, price_cents=bought.price_cents
                )
            )
        values = {
            "with_image": str(pictured.id),
            "without_image": str(products["Hand grinder"].id),
            "sold_out": str(products["Bean tin"].id),
        }
    server = LiveServer(app, port)
    contexts = {who: chromium.new_context() for who in (ANONYMOUS, USER, STAFF)}
    tabs = {who: context.new_page() for who, context in contexts.items()}
    try:
        for who, email in LOGINS.items():
            submit(
                tabs[who], f"{server.url}/login", email=email, password=DEMO_PASSWORD
            )
            assert tabs[who].url == f"{server.url}/", f"{email} could not log in"
        # After the logins, which a reset link is bound to.
        anonymous = tabs[ANONYMOUS]
        submit(anonymous, f"{server.url}/signup", email="new@example.com")
        submit(anonymous, f"{server.url}/reset", email=LOGINS[USER])
        for purpose, pattern in (
            ("activation", r"/activate/(\S+)"),
            ("reset", r"/reset/(\S+)"),
        ):
            values[purpose] = next(
                m[1] for body in mail_bodies(app) if (m := re.search(pattern, body))
            )
        given_up_on(app, "grace@example.com")
        yield Site(server.url, app, values, tabs)
    finally:
        for context in contexts.values():
            context.close()
        server.stop()
        db.engine_for(app).dispose()


def set_size(tab: t.Any, size: str) -> None:
    width, height = SIZES[size]
    tab.set_viewport_size({"width": width, "height": height})


@pytest.mark.parametrize(
    ("page", "who"), VISITS, ids=[f"{p.name}-{w}" for p, w in VISITS]
)
def test_a_page_has_no_serious_violation_and_fits_both_sizes(
    site: Site, axe: str, output_dir: pathlib.Path, page: Page, who: str
) -> None:
    tab = site.tabs[who]
    url = site.url + page.path.format(**site.values)
    tab.goto(url)
    if page.then is not None:
        page.then(tab)
    assert tab.url == url, f"{page.name} as {who} went to {tab.url}"
    assert page.shows.lower() in tab.locator("main").inner_text().lower()
    for size in SIZES:
        set_size(tab, size)
        found = blocking(axe_violations(tab, axe))
        assert found == [], f"{page.name} as {who} at {size}:\n" + "\n".join(found)
        overflow = horizontal_overflow(tab)
        assert overflow <= 0, f"{page.name} as {who} is {overflow}px too wide at {size}"
    screenshots(tab, output_dir, f"{page.name}-{who}")


FOCUSED = """() => {
    const element = document.activeElement;
    const style = getComputedStyle(element);
    return {
        tag: element.tagName, text: element.textContent.trim().slice(0, 40),
        href: element.getAttribute("href"), id: element.id,
        inMain: document.getElementById("main").contains(element),
        outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
    };
}"""


def box_in_view(tab: t.Any, selector: str) -> bool:
    """Whether the element is at least partly inside the window."""
    box = tab.locator(selector).bounding_box()
    return (
        box is not None and box["y"] + box["height"] > 0 and box["x"] + box["width"] > 0
    )


@pytest.mark.parametrize("size", SIZES)
def test_the_skip_link_is_the_first_tab_stop_and_moves_focus_to_main(
    site: Site, size: str
) -> None:
    tab = site.tabs[USER]
    set_size(tab, size)
    tab.goto(site.url + "/")
    assert not box_in_view(tab, ".skip-link"), (
        "the skip link shows before it is focused"
    )
    tab.keyboard.press("Tab")
    first = tab.evaluate(FOCUSED)
    assert (first["text"], first["href"]) == ("Skip to content", "#main")
    assert box_in_view(tab, ".skip-link"), "the focused skip link is not visible"
    tab.keyboard.press("Enter")
    assert tab.evaluate(FOCUSED)["id"] == "main"
    tab.keyboard.press("Tab")
    after = tab.evaluate(FOCUSED)
    assert after["inMain"], (
        f"Tab after skipping went to {after['text']!r}, outside main"
    )


@pytest.mark.parametrize(
    ("who", "path"), [(ANONYMOUS, "/login"), (USER, "/products/{without_image}")]
)
def test_every_focused_link_button_and_input_has_a_visible_outline(
    site: Site, who: str, path: str
) -> None:
    tab = site.tabs[who]
    tab.goto(site.url + path.format(**site.values))
    seen: list[dict[str, t.Any]] = []
    for _ in range(40):
        tab.keyboard.press("Tab")
        focused = tab.evaluate(FOCUSED)
        if focused["tag"] == "BODY" or (seen and focused == seen[0]):
            break
        seen.append(focused)
    assert {"A", "BUTTON"} <= {f["tag"] for f in seen}
    if who == ANONYMOUS:
        assert "INPUT" in {f["tag"] for f in seen}
    invisible = [f for f in seen if f["outline"] == "none" or f["width"] < 2]
    assert invisible == [], f"focused without a visible outline: {invisible}"


def test_the_product_list_shows_each_product_with_its_image_or_the_placeholder(
    site: Site,
) -> None:
    tab = site.tabs[ANONYMOUS]
    with site.app.test_request_context():
        names = set(db.session.scalars(sa.select(Product.name)))
        uploaded = image_url(db.session.get(Product, int(site.values["with_image"])))
        placeholder = placeholder_url()
    assert uploaded is not None
    assert uploaded.startswith(f"/products/{site.values['with_image']}/image?v=")
    for size in SIZES:
        set_size(tab, size)
        tab.goto(site.url + "/")
        rows = tab.eval_on_selector_all(
            ".products li",
            """items => items.map(item => {
                const image = item.querySelector("img");
                const box = image && image.getBoundingClientRect();
                return {
                    name: item.querySelector("a").textContent.trim(),
                    src: image && image.getAttribute("src"), alt: image && image.alt,
                    loaded: Boolean(image && image.complete && image.naturalWidth > 0),
                    size: box && [box.width, box.height],
                };
            })""",
        )
        sources = {row["name"]: row["src"] for row in rows}
        assert set(sources) == names
        assert sources.pop("Espresso cup") == uploaded
        assert set(sources.values()) == {placeholder}
        for row in rows:
            assert row["loaded"], f"the picture of {row['name']} did not load at {size}"
            assert row["alt"] == "", "the product name is the link text already"
            assert row["size"] == [64, 64], f"{row['name']} at {size}: {row['size']}"


def test_the_product_page_names_its_image_and_leaves_the_placeholder_unnamed(
    site: Site,
) -> None:
    tab = site.tabs[ANONYMOUS]
    set_size(tab, "phone")
    try:
        for key, alt in (("with_image", "Espresso cup"), ("without_image", "")):
            tab.goto(site.url + f"/products/{site.values[key]}")
            image = tab.locator("article img")
            assert image.count() == 1
            assert image.get_attribute("alt") == alt
            assert image.evaluate("i => i.complete && i.naturalWidth > 0")
            box = image.bounding_box()
            assert box is not None
            assert 0 < box["width"] <= SIZES["phone"][0] - 32, f"{key}: {box}"
    finally:
        set_size(tab, "desktop")
