"""Placing an order, once per purchase key: the stock, the order, the
confirmation mail (outbox) and the live events commit together, or not at all,
and a repeated request with the same key returns the first order."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from werkzeug.exceptions import BadRequest

from .extensions import db
from .extensions import streams
from .links import public_url
from .live import ACTIVITY
from .live import timestamp
from .live import user_channel
from .logins import current_user
from .mail import send_mail
from .models import Order
from .models import Product

_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")


def new_purchase_key() -> str:
    """A one-time key for a purchase form."""
    return secrets.token_urlsafe(16)


def checked_key(value: str | None) -> str | None:
    """``value`` as a purchase key (8 to 64 letters, digits, ``-`` or ``_``),
    ``None`` if there is none; 400 for anything else."""
    if value is None or value == "":
        return None
    if not _KEY.fullmatch(value):
        raise BadRequest("A purchase key is 8 to 64 letters, digits, '-' or '_'.")
    return value


@dataclass(frozen=True)
class Placed:
    """The outcome: the order (``None`` when sold out), and whether it was
    placed by an earlier request with the same key."""

    order: Order | None
    repeated: bool = False


def place_order(product: Product, key: str | None) -> Placed:
    """Buy one ``product`` for the logged-in user, once per ``key``."""
    if key is not None:
        earlier = _order_with_key(key)
        if earlier is not None:
            return Placed(earlier, repeated=True)
    order = Order(
        user_id=current_user.id,
        product_id=product.id,
        price_cents=product.price_cents,
        purchase_key=key,
    )
    try:
        # The key is claimed before the stock is taken: of two requests with
        # the same key, the second waits here for the first and then finds it.
        with db.savepoint() as session:
            session.add(order)
            session.flush()
    except sa.exc.IntegrityError:
        earlier = _order_with_key(key) if key is not None else None
        if earlier is None:
            raise
        return Placed(earlier, repeated=True)
    # One conditional UPDATE: two buyers of the last item cannot both get it.
    taken = db.session.execute(
        sa.update(Product)
        .where(Product.id == product.id, Product.stock > 0)
        .values(stock=Product.stock - 1)
        .returning(Product.stock)
    ).first()
    if taken is None:
        db.set_rollback()
        return Placed(None)
    _announce(product, order)
    return Placed(order)


def _order_with_key(key: str) -> Order | None:
    return db.session.scalar(
        sa.select(Order).where(
            Order.user_id == current_user.id, Order.purchase_key == key
        )
    )


def _announce(product: Product, order: Order) -> None:
    send_mail(
        current_user.email,
        "product_purchased",
        user=current_user,
        product=product,
        order=order,
        orders=public_url("shop.orders"),
    )
    # The public feed names a buyer only by the name they chose to show.
    at = timestamp()
    streams.publish(
        ACTIVITY,
        {
            "kind": "purchase",
            "text": f"{current_user.public_name} bought {product.name}",
            "product": product.id,
            "at": at,
        },
    )
    streams.publish(
        user_channel(current_user.id),
        {
            "kind": "order",
            "text": f"Order {order.id} confirmed: {product.name}",
            "at": at,
        },
    )
