"""The JSON API: model objects as JSON, and the streamed image upload."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import tracemalloc
import typing as t

import pytest
from flask import render_template_string

from storefront.extensions import db
from storefront.images import MAX_IMAGE_SIZE
from storefront.models import Order
from storefront.models import Product

from .conftest import add_user
from .conftest import CSRF
from .conftest import log_in_as

MIB = 1 << 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
WEBP = b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(range(256)) * 4


@pytest.fixture
def app(app_factory, tmp_path):
    return app_factory(PRODUCT_IMAGE_FOLDER=str(tmp_path / "images"))


@pytest.fixture
def images(tmp_path):
    return tmp_path / "images"


@pytest.fixture
def shop(app, runner):
    runner.invoke(args=["demo"])


def add_order(app, user_id: int, product_id: int) -> None:
    with app.app_context():
        price = db.session.get(Product, product_id).price_cents
        db.session.add(Order(user_id=user_id, product_id=product_id, price_cents=price))


def log_in(
    app, client, email="staff@shop.test", *, staff: bool = True
) -> tuple[int, str]:
    """Log in as a new user (staff by default: they may upload images); return
    its id and the CSRF token the pages give it."""
    user_id = add_user(app, email, is_staff=staff)
    log_in_as(app, client, user_id)
    return user_id, CSRF.search(client.get("/").get_data(as_text=True))[1]


def put_image(client, token: str | None, body: bytes = PNG, **kwargs: t.Any) -> t.Any:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["X-CSRFToken"] = token
    kwargs.setdefault("content_type", "image/png")
    path = kwargs.pop("path", "/api/products/1/image")
    return client.put(path, data=body, headers=headers, **kwargs)


# Model objects as JSON.


def test_products_are_listed_as_json(shop, client):
    response = client.get("/api/products")
    assert response.mimetype == "application/json"
    products = response.get_json()
    assert [p["slug"] for p in products][:2] == ["espresso-cup", "pour-over-kettle"]
    assert products[0] == {
        "id": 1,
        "slug": "espresso-cup",
        "name": "Espresso cup",
        "description": "Thick porcelain, keeps a shot hot.",
        "price": "9.00",
        "price_cents": 900,
        "stock": 25,
        "created_at": products[0]["created_at"],
    }
    assert (
        dt.datetime.fromisoformat(products[0]["created_at"]).tzinfo == dt.timezone.utc
    )


def test_one_product_is_its_to_json(shop, app, client):
    response = client.get("/api/products/2")
    assert response.status_code == 200
    with app.app_context():
        expected = json.loads(json.dumps(db.session.get(Product, 2).to_json()))
    assert response.get_json() == expected


def test_an_unknown_product_is_a_json_404(shop, client):
    response = client.get("/api/products/999")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "There is no product 999.",
    }


def test_orders_need_a_login_and_answer_401_json(client):
    response = client.get("/api/orders")
    assert response.status_code == 401
    assert response.get_json()["detail"] == "Log in first."
    # A 401 names how to authenticate: the login form's session cookie.
    challenge = response.www_authenticate
    assert challenge.type == "cookie"
    assert challenge.parameters == {
        "realm": "storefront",
        "form-action": "/login",
        "cookie-name": client.application.config["SESSION_COOKIE_NAME"],
    }


def test_orders_are_the_users_own_with_their_products(shop, app, client):
    me, _ = log_in(app, client)
    other = add_user(app, "other@shop.test")
    add_order(app, me, 2)
    add_order(app, other, 3)
    add_order(app, me, 4)
    orders = client.get("/api/orders").get_json()
    assert [order["product"]["slug"] for order in orders] == [
        "paper-filters",
        "pour-over-kettle",
    ]
    assert orders[0]["price_cents"] == 450


def test_templates_tojson_gives_the_same_json_as_the_api(shop, app, client):
    with app.test_request_context():
        product = db.session.get(Product, 1)
        rendered = render_template_string("{{ product|tojson }}", product=product)
    assert json.loads(rendered) == client.get("/api/products/1").get_json()


# The streamed image upload.


def test_an_image_upload_is_stored_with_its_size_and_sha256(shop, app, client, images):
    _, token = log_in(app, client)
    response = put_image(client, token)
    assert response.status_code == 201
    assert response.get_json() == {
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "size": len(PNG),
    }
    assert (images / "1.png").read_bytes() == PNG
    assert [p.name for p in images.iterdir()] == ["1.png"]


def test_a_new_image_of_another_type_replaces_the_old_one(shop, app, client, images):
    _, token = log_in(app, client)
    put_image(client, token)
    response = put_image(client, token, JPEG, content_type="image/jpeg")
    assert response.status_code == 201
    assert [p.name for p in images.iterdir()] == ["1.jpg"]


def test_uploading_needs_a_login(shop, client, images):
    response = put_image(client, None)
    assert response.status_code == 401
    assert response.get_json()["detail"] == "Log in first."
    assert not images.exists()


def test_uploading_needs_the_csrf_token_header(shop, app, client, images):
    log_in(app, client)
    response = put_image(client, None)
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["detail"]
    assert not images.exists()


def test_a_token_in_a_form_body_is_not_read_because_the_body_is_not_parsed(
    shop, app, client
):
    _, token = log_in(app, client)
    response = put_image(
        client,
        None,
        f"csrf_token={token}".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "CSRF token is missing" in response.get_json()["detail"]


def test_a_wrong_content_type_answers_415(shop, app, client, images):
    _, token = log_in(app, client)
    response = put_image(client, token, b"GIF89a", content_type="image/gif")
    assert response.status_code == 415
    assert response.get_json()["detail"] == (
        "Send the body as one of: image/jpeg, image/png, image/webp (not image/gif)."
    )
    assert not images.exists()


def test_an_unknown_product_answers_404(shop, app, client, images):
    _, token = log_in(app, client)
    response = put_image(client, token, path="/api/products/999/image")
    assert response.status_code == 404
    assert not images.exists()


def test_an_empty_image_answers_400(shop, app, client, images):
    _, token = log_in(app, client)
    response = put_image(client, token, b"")
    assert response.status_code == 400
    assert response.get_json()["detail"] == "The request body is empty."
    assert list(images.iterdir()) == []


def test_a_content_length_over_100_mb_answers_413_before_reading(shop, app, client):
    _, token = log_in(app, client)
    response = put_image(
        client,
        token,
        environ_overrides={
            "CONTENT_LENGTH": str(MAX_IMAGE_SIZE + 1),
            "wsgi.input": io.BytesIO(b""),
        },
    )
    assert response.status_code == 413
    assert response.get_json()["detail"] == (
        "The request body is over the limit of 104857600 bytes (100 MiB)."
    )


def test_a_chunked_upload_over_100_mb_answers_413_and_leaves_no_file(
    shop, app, client, images
):
    _, token = log_in(app, client)
    response = put_image(
        client,
        token,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": GeneratedBody(MAX_IMAGE_SIZE + MIB),
            "wsgi.input_terminated": True,
        },
    )
    assert response.status_code == 413
    assert list(images.iterdir()) == []


def test_a_truncated_upload_answers_400_and_leaves_no_file(shop, app, client, images):
    _, token = log_in(app, client)
    response = put_image(
        client,
        token,
        environ_overrides={"CONTENT_LENGTH": "50000", "wsgi.input": io.BytesIO(PNG)},
    )
    assert response.status_code == 400
    assert response.get_json()["detail"] == (
        f"The request body ended after {len(PNG)} of the 50000 bytes announced in"
        " Content-Length."
    )
    assert list(images.iterdir()) == []


class GeneratedBody(io.RawIOBase):
    """A request body made on the fly by a generator, so that the test never
    holds it whole; ``sha256`` is the hash of what was read so far."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.hasher = hashlib.sha256()
        self._chunks = self._generate(size, chunk)
        self._pending = b""

    @staticmethod
    def _generate(size: int, chunk: int) -> t.Iterator[bytes]:
        block = (PNG * (chunk // len(PNG) + 1))[:chunk]
        for offset in range(0, size, chunk):
            yield block[: min(chunk, size - offset)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self.hasher.update(self._pending[:size])
        self._pending = self._pending[size:]
        return size


def test_a_100_mb_upload_grows_memory_by_less_than_20_mb(shop, app, client, images):
    _, token = log_in(app, client)
    body = GeneratedBody(MAX_IMAGE_SIZE)
    tracemalloc.start()
    try:
        response = put_image(
            client,
            token,
            environ_overrides={
                "CONTENT_LENGTH": str(MAX_IMAGE_SIZE),
                "wsgi.input": body,
            },
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json() == {
        "sha256": body.hasher.hexdigest(),
        "size": MAX_IMAGE_SIZE,
    }
    assert (images / "1.png").stat().st_size == MAX_IMAGE_SIZE
    print(f"peak traced memory during a 100 MiB upload: {peak / MIB:.2f} MiB")
    assert peak < 20 * MIB


# Who may upload, and what an upload must be.


def test_only_staff_may_upload_images(shop, app, client, images):
    _, token = log_in(app, client, "customer@shop.test", staff=False)
    response = put_image(client, token)
    assert response.status_code == 403
    assert response.get_json()["detail"] == "Only staff may change products."
    assert not images.exists()


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (b"<html><script>alert(document.cookie)</script></html>", "image/png"),
        (PNG, "image/jpeg"),
        (JPEG, "image/webp"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "image/webp"),
        (b"\x89PNG", "image/png"),
    ],
)
def test_a_body_that_is_not_its_declared_image_type_answers_415(
    shop, app, client, images, body, declared
):
    _, token = log_in(app, client)
    put_image(client, token)  # a good image first: it must stay
    response = put_image(client, token, body, content_type=declared)
    assert response.status_code == 415
    assert response.get_json()["detail"].startswith(
        f"The body is not a {declared} image"
    )
    assert [p.name for p in images.iterdir()] == ["1.png"]
    assert (images / "1.png").read_bytes() == PNG


@pytest.mark.parametrize(
    ("body", "declared", "suffix"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (WEBP, "image/webp", "webp"),
    ],
)
def test_a_stored_image_is_served_with_its_type_nosniff_and_a_sandbox(
    shop, app, client, images, body, declared, suffix
):
    _, token = log_in(app, client)
    assert put_image(client, token, body, content_type=declared).status_code == 201
    page = client.get("/products/1").get_data(as_text=True)
    url = re.search(r'<img class="product-image" src="([^"]+)"', page)[1]
    assert url.startswith("/products/1/image?v=")
    served = client.get(url, buffered=True)
    assert served.status_code == 200
    assert served.data == body
    assert served.mimetype == declared
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert [p.name for p in images.iterdir()] == [f"1.{suffix}"]


def test_a_product_without_an_image_shows_none_and_its_image_url_is_404(shop, client):
    assert "product-image" not in client.get("/products/2").get_data(as_text=True)
    assert client.get("/products/2/image").status_code == 404


def test_a_replaced_image_gets_a_new_url(shop, app, client):
    _, token = log_in(app, client)
    put_image(client, token)
    first = re.search(r'src="(/products/1/image[^"]+)"', client.get("/products/1").text)
    put_image(client, token, JPEG, content_type="image/jpeg")
    second = re.search(
        r'src="(/products/1/image[^"]+)"', client.get("/products/1").text
    )
    assert first[1] != second[1]
    assert client.get(second[1], buffered=True).mimetype == "image/jpeg"
