"""Buying a product: stock, order, the confirmation mail (real SMTP server) and the
live events commit together or not at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront.extensions import db
from storefront.extensions import streams
from storefront.models import Order
from storefront.models import Product
from storefront.models import User

from .conftest import CSRF


@pytest.fixture
def shop(app_factory, smtp_server):
    app = app_factory(SMTP_URL=smtp_server.url)
    app.test_cli_runner().invoke(args=["demo"])
    return app


def logged_in(app, email="ada@example.com"):
    client = app.test_client()
    token = CSRF.search(client.get("/login").get_data(as_text=True))[1]
    response = client.post(
        "/login",
        data={"email": email, "password": "storefront", "csrf_token": token},
    )
    assert response.status_code == 303
    return client


def buy(client, product_id):
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    token = CSRF.search(page)[1]
    return client.post(f"/products/{product_id}/purchase", data={"csrf_token": token})


def scalar(app, query):
    with db.engine_for(app).connect() as connection:
        return connection.scalar(query)


def product_id(app, slug):
    return scalar(app, sa.select(Product.id).where(Product.slug == slug))


def events(app, channel):
    with app.app_context():
        broker = streams.broker
    return [json.loads(e.data) for e in broker.replay([channel], 0).events]


def test_purchase_commits_the_order_then_mails_and_publishes(shop, smtp_server):
    client = logged_in(shop)
    kettle = product_id(shop, "pour-over-kettle")
    response = buy(client, kettle)
    assert response.status_code == 303
    assert response.headers["Location"] == "/orders"

    order_id = scalar(shop, sa.select(Order.id))
    assert scalar(shop, sa.select(Product.stock).where(Product.id == kettle)) == 7
    (mail,) = smtp_server.messages
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == f"Your order {order_id}: Pour-over kettle"
    body = mail.get_content()
    assert "Hello ada@example.com" in body
    assert f"Order:    {order_id}" in body
    assert "Price:    € 39.00" in body
    # On a line of its own: no mail client takes a full stop into the link.
    assert re.search(r"^http://\S+/orders\r?$", body, re.MULTILINE), body
    assert mail["Message-ID"].endswith("@storefront>")

    announced = events(shop, "activity")[-1]
    at = announced.pop("at")
    assert announced == {
        "kind": "purchase",
        "text": "Someone bought Pour-over kettle",
        "product": kettle,
    }
    assert at.endswith("+00:00"), "when it happened, in UTC"
    user_id = scalar(shop, sa.select(User.id).where(User.email == "ada@example.com"))
    assert events(shop, f"user:{user_id}") == [
        {
            "kind": "order",
            "text": f"Order {order_id} confirmed: Pour-over kettle",
            "at": at,
        }
    ]
    assert "Pour-over kettle" in client.get("/orders").get_data(as_text=True)


def test_out_of_stock_goes_back_to_the_product_and_commits_nothing(shop, smtp_server):
    client = logged_in(shop)
    tin = product_id(shop, "bean-tin")
    response = buy(client, tin)
    # Post/redirect/get: a reload of the page shown next buys nothing.
    assert response.status_code == 303
    assert response.headers["Location"] == f"/products/{tin}"
    assert "Bean tin is sold out" in client.get(f"/products/{tin}").get_data(
        as_text=True
    )
    assert scalar(shop, sa.select(sa.func.count()).select_from(Order)) == 0
    assert scalar(shop, sa.select(sa.func.count()).select_from(outbox_table)) == 0
    assert smtp_server.messages == []
    assert events(shop, "activity") == []


def test_an_exception_after_the_write_sends_no_mail_and_publishes_nothing(
    shop, smtp_server, monkeypatch
):
    from storefront import shop as shop_module

    def broken_flash(*args, **kwargs):
        raise RuntimeError("the page could not be rendered")

    shop.config["PROPAGATE_EXCEPTIONS"] = False
    client = logged_in(shop)
    kettle = product_id(shop, "pour-over-kettle")
    page = client.get(f"/products/{kettle}").get_data(as_text=True)
    monkeypatch.setattr(shop_module, "flash", broken_flash)
    response = client.post(
        f"/products/{kettle}/purchase", data={"csrf_token": CSRF.search(page)[1]}
    )
    assert response.status_code == 500
    assert scalar(shop, sa.select(Product.stock).where(Product.id == kettle)) == 8
    assert scalar(shop, sa.select(sa.func.count()).select_from(Order)) == 0
    assert scalar(shop, sa.select(sa.func.count()).select_from(outbox_table)) == 0
    assert smtp_server.messages == []
    assert events(shop, "activity") == []


def test_the_last_item_can_be_bought_once(shop):
    with db.engine_for(shop).begin() as connection:
        connection.execute(sa.update(Product).values(stock=1))
    first, second = logged_in(shop), logged_in(shop, "grace@example.com")
    cup = product_id(shop, "espresso-cup")
    assert buy(first, cup).status_code == 303
    assert buy(second, cup).headers["Location"] == f"/products/{cup}"
    assert scalar(shop, sa.select(Product.stock).where(Product.id == cup)) == 0


def test_purchase_needs_a_login_and_a_csrf_token(shop):
    anonymous = shop.test_client()
    response = anonymous.post("/products/1/purchase")
    assert response.status_code in (302, 400)
    client = logged_in(shop)
    assert client.post("/products/1/purchase").status_code == 400
    token = CSRF.search(client.get("/products/1").get_data(as_text=True))[1]
    missing = client.post("/products/999/purchase", data={"csrf_token": token})
    assert missing.status_code == 404
    assert scalar(shop, sa.select(sa.func.count()).select_from(Order)) == 0


def test_anonymous_buyers_are_sent_to_log_in_and_back(shop):
    client = shop.test_client()
    page = client.get("/products/1").get_data(as_text=True)
    assert "/login?next=/products/1" in page


def test_the_activity_page_gives_a_logged_in_user_their_own_channel(shop):
    client = logged_in(shop)
    response = client.get("/activity")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("stream_token=")
    assert "HttpOnly" in cookie
    assert "Path=/streams/" in cookie
    assert 'data-stream="/streams/live"' in response.get_data(as_text=True)
    stream = client.get("/streams/live", buffered=False)
    assert stream.status_code == 200
    stream.close()
    other = shop.test_client().get("/streams/live", buffered=False)
    assert other.status_code == 200, "anonymous visitors get the public feed"
    other.close()


def test_the_public_feed_names_a_buyer_only_by_a_chosen_public_name(shop):
    client = logged_in(shop)
    token = CSRF.search(client.get("/account").get_data(as_text=True))[1]
    saved = client.post(
        "/account/name", data={"display_name": "  Ada   L. ", "csrf_token": token}
    )
    assert saved.status_code == 303
    buy(client, product_id(shop, "espresso-cup"))
    grace = logged_in(shop, "grace@example.com")
    buy(grace, product_id(shop, "travel-mug"))
    texts = [event["text"] for event in events(shop, "activity")]
    assert texts == ["Ada L. bought Espresso cup", "Someone bought Travel mug"]


def test_no_part_of_an_address_reaches_the_public_feed_or_its_replay(shop):
    for email in ("ada@example.com", "grace@example.com"):
        buy(logged_in(shop, email), product_id(shop, "paper-filters"))
    with shop.app_context():
        broker = streams.broker
    replay = broker.replay(["activity"], 0)
    replayed = json.dumps([e.data for e in replay.events])
    for part in ("ada", "grace", "example", "@"):
        assert part not in replayed
    # From the first position of the broker's history.
    response = shop.test_client().get(
        "/streams/activity",
        headers={"Last-Event-ID": f"{replay.epoch}-0"},
        buffered=False,
    )
    frames = iter(response.response)
    sent = b"".join(next(frames) for _ in range(3)).decode()
    response.close()
    assert sent.count("Someone bought Paper filters") == 2
    assert "ada" not in sent
    assert "grace" not in sent


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 41, "at most 40 characters"),
        ("ada@example.com", "must not be an e-mail address"),
        ("Ada\u202egnp.exe", "control or format characters"),
    ],
)
def test_a_public_name_that_could_mislead_is_refused(shop, name, message):
    client = logged_in(shop)
    token = CSRF.search(client.get("/account").get_data(as_text=True))[1]
    response = client.post(
        "/account/name", data={"display_name": name, "csrf_token": token}
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/account")
    assert message in client.get("/account").get_data(as_text=True)
    assert scalar(shop, sa.select(User.display_name).where(User.id == 1)) is None


CRASH = """
import os, signal, sys
from flask_patterns.db import after_commit
from storefront import create_app
from storefront.mail import send_mail

app = create_app({"SERVER_NAME": "localhost"})
with app.app_context():
    # Runs first after the commit: the process dies before the mail is sent.
    after_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    send_mail(
        "ada@example.com", "product_purchased",
        user={"email": "ada@example.com"},
        product={"name": "Hand grinder", "price": "65.00"},
        order={"id": 42},
    )
"""


def test_the_worker_delivers_mail_left_by_a_killed_process_exactly_once(
    tmp_path, smtp_server
):
    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": f"sqlite:///{tmp_path}/shop.sqlite",
        "STOREFRONT_SECRET_KEY": "crash test",
        "STOREFRONT_SMTP_URL": smtp_server.url,
    }

    def run(*args):
        return subprocess.run(
            [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert run("-m", "flask", "--app", "storefront", "init-db").returncode == 0
    crashed = run("-c", CRASH)
    assert crashed.returncode == -9, crashed.stderr
    assert smtp_server.messages == []
    status = run("-m", "flask", "--app", "storefront", "outbox", "status")
    assert status.stdout.startswith("1 message(s) pending, the oldest for ")

    worker = run("-m", "flask", "--app", "storefront", "outbox", "work", "--once")
    assert worker.returncode == 0, worker.stderr
    assert "Delivered 1 message(s)." in worker.stdout
    again = run("-m", "flask", "--app", "storefront", "outbox", "work", "--once")
    assert again.returncode == 0
    (mail,) = smtp_server.messages
    assert mail["Subject"] == "Your order 42: Hand grinder"


def test_a_purchase_while_redis_is_down_reaches_the_feed_when_it_is_back(
    app_factory, smtp_server, redis_process
):
    import time

    shop = app_factory(SMTP_URL=smtp_server.url, REDIS_URL=redis_process.url)
    shop.test_cli_runner().invoke(args=["demo"])
    client = logged_in(shop)
    redis_process.stop()
    bought = buy(client, product_id(shop, "travel-mug"))
    assert bought.status_code == 303, "the purchase does not depend on Redis"
    assert scalar(shop, sa.select(sa.func.count()).select_from(Order)) == 1
    redis_process.start()
    deadline = time.monotonic() + 15
    while not events(shop, "activity"):
        assert time.monotonic() < deadline, "the held event never reached Redis"
        time.sleep(0.1)
    (event,) = events(shop, "activity")
    assert event["text"].endswith("bought Travel mug")
    user = scalar(shop, sa.select(User.id).where(User.email == "ada@example.com"))
    (private,) = events(shop, f"user:{user}")
    assert private["text"].startswith("Order ")
    with shop.app_context():
        streams.broker.close()
