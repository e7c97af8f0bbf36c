"""A purchase repeated with the same one-time key (a double click, a browser
retrying after a lost response, an API client retrying) buys nothing more and
answers with the first order."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from flask_patterns.outbox import outbox_table
from storefront.extensions import db
from storefront.models import Order
from storefront.models import Product

from .conftest import CSRF
from .test_purchase import logged_in
from .test_purchase import product_id
from .test_purchase import scalar

_KEY = re.compile(r'name="purchase_key"[^>]*value="([^"]+)"')


@pytest.fixture
def shop(app_factory, smtp_server):
    app = app_factory(SMTP_URL=smtp_server.url)
    app.test_cli_runner().invoke(args=["demo"])
    return app


def form_of(client, pid):
    page = client.get(f"/products/{pid}").get_data(as_text=True)
    return {"csrf_token": CSRF.search(page)[1], "purchase_key": _KEY.search(page)[1]}


def count(app, model):
    return scalar(app, sa.select(sa.func.count()).select_from(model))


def stock(app, pid):
    return scalar(app, sa.select(Product.stock).where(Product.id == pid))


def test_each_rendering_of_the_form_has_a_key_of_its_own(shop):
    client = logged_in(shop)
    pid = product_id(shop, "travel-mug")
    assert form_of(client, pid)["purchase_key"] != form_of(client, pid)["purchase_key"]


def test_a_repeated_form_post_buys_once_and_shows_the_first_order(shop, smtp_server):
    client = logged_in(shop)
    pid = product_id(shop, "travel-mug")
    before = stock(shop, pid)
    form = form_of(client, pid)
    first = client.post(f"/products/{pid}/purchase", data=form)
    again = client.post(f"/products/{pid}/purchase", data=form)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == "/orders"
    order = scalar(shop, sa.select(Order.id))
    page = client.get("/orders").get_data(as_text=True)
    assert f"Order {order} was already placed; nothing more was bought." in page
    assert count(shop, Order) == 1
    assert stock(shop, pid) == before - 1
    assert len(smtp_server.messages) == 1, "one confirmation mail"
    assert scalar(shop, sa.select(sa.func.count()).select_from(outbox_table)) == 1
    # A new rendering of the form is a new purchase.
    assert client.post(f"/products/{pid}/purchase", data=form_of(client, pid))
    assert count(shop, Order) == 2


def test_the_same_key_from_another_buyer_is_their_own_purchase(shop):
    ada, grace = logged_in(shop), logged_in(shop, "grace@example.com")
    pid = product_id(shop, "travel-mug")
    form = form_of(ada, pid)
    ada.post(f"/products/{pid}/purchase", data=form)
    grace.post(
        f"/products/{pid}/purchase",
        data={**form, "csrf_token": form_of(grace, pid)["csrf_token"]},
    )
    assert count(shop, Order) == 2


@pytest.mark.parametrize("key", ["short", "x" * 65, "has space!", "ü" * 10])
def test_a_malformed_key_is_refused(shop, key):
    client = logged_in(shop)
    pid = product_id(shop, "travel-mug")
    form = {**form_of(client, pid), "purchase_key": key}
    answer = client.post(f"/products/{pid}/purchase", data=form)
    assert answer.status_code == 400
    assert count(shop, Order) == 0


def api_token(client):
    return CSRF.search(client.get("/").get_data(as_text=True))[1]


def test_the_api_buys_once_per_idempotency_key(shop):
    client = logged_in(shop)
    pid = product_id(shop, "travel-mug")
    headers = {"X-CSRFToken": api_token(client), "Idempotency-Key": "retry-me-1234"}
    first = client.post(f"/api/products/{pid}/purchase", headers=headers)
    assert first.status_code == 201
    again = client.post(f"/api/products/{pid}/purchase", headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert first.get_json()["product"]["id"] == pid
    assert count(shop, Order) == 1
    without = client.post(
        f"/api/products/{pid}/purchase", headers={"X-CSRFToken": headers["X-CSRFToken"]}
    )
    assert without.status_code == 201, "no key: every request is a purchase"
    assert count(shop, Order) == 2


def test_the_api_answers_a_sold_out_product_with_409_and_buys_nothing(shop):
    client = logged_in(shop)
    pid = product_id(shop, "travel-mug")
    with shop.app_context():
        db.session.execute(sa.update(Product).values(stock=0))
    token = api_token(client)
    answer = client.post(
        f"/api/products/{pid}/purchase",
        headers={"X-CSRFToken": token, "Idempotency-Key": "sold-out-123"},
    )
    assert answer.status_code == 409
    assert answer.get_json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "Travel mug is sold out.",
    }
    assert count(shop, Order) == 0


def test_the_api_purchase_needs_a_login_and_the_csrf_token(shop):
    pid = product_id(shop, "travel-mug")
    assert shop.test_client().post(f"/api/products/{pid}/purchase").status_code == 401
    client = logged_in(shop)
    assert client.post(f"/api/products/{pid}/purchase").status_code == 400
    assert count(shop, Order) == 0


def test_two_requests_with_one_key_at_once_buy_once(
    app_factory, smtp_server, postgres_url
):
    shop = app_factory(SMTP_URL=smtp_server.url, DATABASE_URL=postgres_url)
    shop.test_cli_runner().invoke(args=["demo"])
    clients = [logged_in(shop) for _ in range(2)]
    pid = product_id(shop, "travel-mug")
    headers = {"Idempotency-Key": "at-once-12345"}
    answers = []
    barrier = threading.Barrier(2)

    def buy(client):
        token = api_token(client)
        barrier.wait()
        answers.append(
            client.post(
                f"/api/products/{pid}/purchase",
                headers={**headers, "X-CSRFToken": token},
            ).status_code
        )

    threads = [threading.Thread(target=buy, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 201]
    assert count(shop, Order) == 1
