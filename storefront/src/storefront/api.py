"""The JSON API. Views return model objects, which
:class:`flask_patterns.responses.JSONResponses` serializes through their
``to_json()``. Every error under ``/api/`` answers an RFC 9457
``application/problem+json`` document (:mod:`storefront.errors`).

Authentication is the shop's session cookie, so a request that changes something
(the image upload) must carry the CSRF token, in an ``X-CSRFToken`` header. Such a
view is exempt from Flask-WTF's automatic check, which runs before any view and
would answer an anonymous client 400 rather than 401, and calls the same check
itself once the user is known (:func:`csrf_protected`). The upload streams its
body (:func:`flask_patterns.bodies.stream_body`), so the check finds no form and
reads the header, never the body.
"""

from __future__ import annotations

import functools
import os
import typing as t

import sqlalchemy as sa
from flask import abort
from flask import Blueprint
from flask import current_app
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from flask_patterns.bodies import save_body
from flask_patterns.bodies import stream_body

from .extensions import csrf
from .extensions import db
from .images import check_declared_type
from .images import image_folder
from .images import IMAGE_TYPES
from .images import MAX_IMAGE_SIZE
from .logins import current_user
from .logins import staff_only
from .models import Order
from .models import Product
from .orders import checked_key
from .orders import place_order

bp = Blueprint("api", __name__, url_prefix="/api")

F = t.TypeVar("F", bound=t.Callable[..., ResponseReturnValue])


def api_login_required(view: F) -> F:
    """Answer 401 JSON to anonymous clients; the pages' ``logins.login_required``
    redirects them to the login form instead."""

    @functools.wraps(view)
    def wrapped(*args: t.Any, **kwargs: t.Any) -> ResponseReturnValue:
        if not current_user.is_authenticated:
            raise Unauthorized("Log in first.", www_authenticate=_login_challenge())
        return view(*args, **kwargs)

    return t.cast(F, wrapped)


def _login_challenge() -> WWWAuthenticate:
    """The challenge a 401 must carry (RFC 9110, 11.6.1): the credential is the
    session cookie the login form sets, in the ``Cookie`` scheme's terms."""
    return WWWAuthenticate(
        "Cookie",
        {
            "realm": "storefront",
            "form-action": url_for("accounts.login"),
            "cookie-name": current_app.config["SESSION_COOKIE_NAME"],
        },
    )


def csrf_protected(view: F) -> F:
    """Check the CSRF token (header or form) when the view is called: put it
    under :func:`api_login_required` on a view exempt from the automatic check."""

    @functools.wraps(view)
    def wrapped(*args: t.Any, **kwargs: t.Any) -> ResponseReturnValue:
        csrf.protect()
        return view(*args, **kwargs)

    return t.cast(F, wrapped)


def _product(product_id: int) -> Product:
    item = db.session.get(Product, product_id)
    if item is None:
        abort(404, f"There is no product {product_id}.")
    return item


@bp.get("/products")
def products() -> list[Product]:
    """Every product, by id."""
    return list(db.session.scalars(sa.select(Product).order_by(Product.id)))


# Flask's types list only the return values Flask itself converts.
@bp.get("/products/<int:product_id>")  # type: ignore[type-var]
def product(product_id: int) -> Product:
    """One product; 404 for an id that is none."""
    return _product(product_id)


@bp.get("/orders")
@api_login_required
def orders() -> list[Order]:
    """The logged-in user's orders, newest first."""
    mine = db.session.scalars(
        sa.select(Order)
        .where(Order.user_id == current_user.id)
        .order_by(Order.id.desc())
    )
    return list(mine)


@bp.post("/products/<int:product_id>/purchase")
@api_login_required
@csrf_protected
def purchase(product_id: int) -> t.Any:  # an Order, which JSONResponses converts
    """Buy one item: 201 and the order; with an ``Idempotency-Key`` header a
    repeated request answers 200 and the first order, buying nothing more;
    409 when it is sold out."""
    product = _product(product_id)
    placed = place_order(product, checked_key(request.headers.get("Idempotency-Key")))
    if placed.order is None:
        abort(409, f"{product.name} is sold out.")
    if placed.repeated:
        return placed.order, 200, {"Idempotent-Replayed": "true"}
    return placed.order, 201


@bp.put("/products/<int:product_id>/image")
@api_login_required
@staff_only("Only staff may change products.")
@csrf_protected
@stream_body(max_size=MAX_IMAGE_SIZE, content_types=IMAGE_TYPES)
def upload_image(product_id: int) -> ResponseReturnValue:
    """Store the body as the product's image, ``<product id>.<suffix>``, in
    constant memory; answer its size and SHA-256. Staff only; the body must
    start as its declared image type does (415 otherwise)."""
    _product(product_id)
    # No pooled connection stays checked out while a slow client uploads.
    db.session.close()
    folder = image_folder()
    os.makedirs(folder, exist_ok=True)
    suffix = IMAGE_TYPES[request.mimetype]
    saved = save_body(
        os.path.join(folder, f"{product_id}{suffix}"),
        allow_empty=False,
        check_head=check_declared_type,
    )
    for other in set(IMAGE_TYPES.values()) - {suffix}:
        stale = os.path.join(folder, f"{product_id}{other}")
        if os.path.exists(stale):
            os.unlink(stale)
    return {"sha256": saved.sha256, "size": saved.size}, 201


# Checked by csrf_protected instead, after the login check.
csrf.exempt(upload_image)
csrf.exempt(purchase)
